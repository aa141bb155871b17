//! The certificate policy: its shape (Key Vault's wire names, which are
//! also the stored form), the defaults the service fills in, validation,
//! and the policy derived from an imported certificate.

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use coffer_crypto::{Curve, KeyType};

/// PKCS#12 content type of a certificate's secret.
pub const PKCS12: &str = "application/x-pkcs12";
/// PEM content type of a certificate's secret.
pub const PEM: &str = "application/x-pem-file";
/// The issuer of self-signed certificates.
pub const ISSUER_SELF: &str = "Self";
/// The issuer of certificates completed by a merge.
pub const ISSUER_UNKNOWN: &str = "Unknown";
/// Key usages Key Vault knows (exact spelling).
pub const KEY_USAGES: &[&str] = &[
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];
/// serverAuth.
pub const EKU_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
/// clientAuth.
pub const EKU_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
/// Longest subject.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// A certificate policy (`CertificatePolicy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Key properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_props: Option<KeyProps>,
    /// Secret properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_props: Option<SecretProps>,
    /// X.509 properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_props: Option<X509Props>,
    /// Lifetime actions (at most one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_actions: Option<Vec<LifetimeAction>>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerRef>,
    /// Attributes of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<PolicyAttributes>,
}

/// `key_props`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyProps {
    /// Whether the private key may leave in the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM` (case-insensitive on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kty: Option<String>,
    /// RSA bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    /// Whether a renewal keeps the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_key: Option<bool>,
    /// EC curve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
}

/// `secret_props`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretProps {
    /// `application/x-pkcs12` or `application/x-pem-file`.
    #[serde(
        rename = "contentType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
}

/// `x509_props`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct X509Props {
    /// Subject distinguished name (`CN=…, O=…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Extended key usages (OIDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ekus: Option<Vec<String>>,
    /// Subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sans: Option<Sans>,
    /// Key usages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_usage: Option<Vec<String>>,
    /// Validity in months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_months: Option<u32>,
    /// Basic constraints. Key Vault answers `{"ca": false}` and takes no
    /// input here; Coffer reads `{"ca": true}` as "make a CA certificate"
    /// (the root or intermediate of a `Coffer` issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_constraints: Option<BasicConstraints>,
}

/// `x509_props.basic_constraints`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicConstraints {
    /// The certificate is a CA.
    #[serde(default)]
    pub ca: bool,
    /// Longest chain of intermediates below this CA (`None`: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_len_constraint: Option<u8>,
}

/// `sans`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sans {
    /// rfc822 names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<String>>,
    /// DNS names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<Vec<String>>,
    /// User principal names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upns: Option<Vec<String>>,
    /// URIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// IP addresses.
    #[serde(
        rename = "ipAddresses",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_addresses: Option<Vec<String>>,
}

impl Sans {
    fn is_empty(&self) -> bool {
        [
            &self.emails,
            &self.dns_names,
            &self.upns,
            &self.uris,
            &self.ip_addresses,
        ]
        .iter()
        .all(|v| v.as_ref().is_none_or(Vec::is_empty))
    }
}

/// One lifetime action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LifetimeAction {
    /// When it fires.
    #[serde(default)]
    pub trigger: Trigger,
    /// What it does.
    #[serde(default)]
    pub action: Action,
}

/// A lifetime action's trigger (exactly one of the two).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// Percentage of the lifetime (1–99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_percentage: Option<u32>,
    /// Days before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_before_expiry: Option<u32>,
}

/// A lifetime action's action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// `AutoRenew` or `EmailContacts`.
    #[serde(default)]
    pub action_type: String,
}

/// `issuer` of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IssuerRef {
    /// `Self`, `Unknown` or an issuer's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Certificate type (for partner issuers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    /// Certificate transparency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_transparency: Option<bool>,
}

/// `attributes` of a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyAttributes {
    /// Enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Creation, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// Last change, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<u64>,
}

/// The key a policy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyChoice {
    /// Key type.
    pub kty: KeyType,
    /// RSA bits.
    pub key_size: Option<u32>,
    /// EC curve.
    pub curve: Option<Curve>,
}

fn bad(m: impl Into<String>) -> EngineError {
    EngineError::BadParameter(m.into())
}

impl Policy {
    /// The issuer name (`Unknown` when none is given, as Key Vault).
    pub fn issuer_name(&self) -> &str {
        self.issuer
            .as_ref()
            .and_then(|i| i.name.as_deref())
            .unwrap_or(ISSUER_UNKNOWN)
    }

    /// Whether the issuer is `Self` (any case).
    pub fn is_self(&self) -> bool {
        self.issuer_name().eq_ignore_ascii_case(ISSUER_SELF)
    }

    /// Whether the issuer is `Unknown` (any case).
    pub fn is_unknown(&self) -> bool {
        self.issuer_name().eq_ignore_ascii_case(ISSUER_UNKNOWN)
    }

    /// Whether the policy makes a CA certificate (`basic_constraints.ca`).
    pub fn is_ca(&self) -> bool {
        self.x509_props
            .as_ref()
            .and_then(|x| x.basic_constraints.as_ref())
            .is_some_and(|b| b.ca)
    }

    /// The secret's content type.
    pub fn content_type(&self) -> &str {
        self.secret_props
            .as_ref()
            .and_then(|s| s.content_type.as_deref())
            .unwrap_or(PKCS12)
    }

    /// Whether the private key goes into the secret.
    pub fn exportable(&self) -> bool {
        let kp = self.key_props.as_ref();
        kp.and_then(|k| k.exportable).unwrap_or(true) && !self.key().is_ok_and(|k| k.kty.is_hsm())
    }

    /// Whether renewals keep the key.
    pub fn reuse_key(&self) -> bool {
        self.key_props
            .as_ref()
            .and_then(|k| k.reuse_key)
            .unwrap_or(false)
    }

    /// Validity in months.
    pub fn validity_months(&self) -> u32 {
        self.x509_props
            .as_ref()
            .and_then(|x| x.validity_months)
            .unwrap_or(12)
    }

    /// The key the policy asks for.
    pub fn key(&self) -> Result<KeyChoice, EngineError> {
        let kp = self.key_props.clone().unwrap_or_default();
        let kty = match kp.kty.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("RSA") => KeyType::Rsa,
            Some("RSA-HSM") => KeyType::RsaHsm,
            Some("EC") => KeyType::Ec,
            Some("EC-HSM") => KeyType::EcHsm,
            Some(other) => {
                return Err(bad(format!(
                "Key type {other} is not valid for a certificate: use RSA, RSA-HSM, EC or EC-HSM"
            )))
            }
        };
        let curve = match kp.crv.as_deref() {
            None => None,
            Some("P-256") => Some(Curve::P256),
            Some("P-384") => Some(Curve::P384),
            Some("P-521") => Some(Curve::P521),
            Some("P-256K") => Some(Curve::P256K),
            Some(other) => return Err(bad(format!("Curve {other} is not supported"))),
        };
        let is_ec = matches!(kty, KeyType::Ec | KeyType::EcHsm);
        Ok(KeyChoice {
            kty,
            key_size: if is_ec { None } else { kp.key_size },
            curve: if is_ec { curve } else { None },
        })
    }

    /// The policy with the service's defaults filled in and checked (what
    /// create stores): RSA 2048 exportable, PKCS#12, serverAuth +
    /// clientAuth, digitalSignature + keyEncipherment, 12 months, AutoRenew
    /// at 80 % for Self and a named issuer, EmailContacts at 80 % otherwise.
    pub fn completed(mut self, now: u64) -> Result<Policy, EngineError> {
        let key = self.key()?;
        let mut kp = self.key_props.take().unwrap_or_default();
        kp.kty = Some(kty_name(key.kty).to_owned());
        if key.curve.is_none() && matches!(key.kty, KeyType::Ec | KeyType::EcHsm) {
            kp.crv = Some("P-256".into());
        }
        if matches!(key.kty, KeyType::Rsa | KeyType::RsaHsm) {
            let size = kp.key_size.unwrap_or(2048);
            if !matches!(size, 2048 | 3072 | 4096) {
                return Err(bad(format!(
                    "RSA key size {size} is not supported: use 2048, 3072 or 4096"
                )));
            }
            kp.key_size = Some(size);
        }
        if key.kty.is_hsm() && kp.exportable == Some(true) {
            return Err(bad("A key of an HSM type cannot be exportable"));
        }
        kp.exportable = Some(kp.exportable.unwrap_or(!key.kty.is_hsm()));
        kp.reuse_key = Some(kp.reuse_key.unwrap_or(false));
        self.key_props = Some(kp);

        let ct = self.content_type().to_owned();
        if ct != PKCS12 && ct != PEM {
            return Err(bad(format!(
                "Content type {ct} is not supported: use {PKCS12} or {PEM}"
            )));
        }
        self.secret_props = Some(SecretProps {
            content_type: Some(ct),
        });

        let mut x = self.x509_props.take().unwrap_or_default();
        let subject = x.subject.clone().unwrap_or_default();
        let sans = x.sans.clone().unwrap_or_default();
        if subject.trim().is_empty() && sans.is_empty() {
            return Err(bad(
                "The policy needs a subject or at least one subject alternative name",
            ));
        }
        if subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(bad(format!(
                "The subject is longer than {MAX_SUBJECT_CHARS} characters"
            )));
        }
        let ca = x.basic_constraints.as_ref().is_some_and(|b| b.ca);
        if x.ekus.is_none() {
            // A CA certificate carries no EKU by default: an EKU on a CA
            // restricts what every certificate below it may be used for.
            x.ekus = Some(if ca {
                Vec::new()
            } else {
                vec![EKU_SERVER_AUTH.into(), EKU_CLIENT_AUTH.into()]
            });
        }
        for eku in x.ekus.iter().flatten() {
            if super::issue::oid_arcs(eku).is_none() {
                return Err(bad(format!("Extended key usage {eku} is not an OID")));
            }
        }
        if x.key_usage.is_none() {
            x.key_usage = Some(if ca {
                vec![
                    "keyCertSign".into(),
                    "cRLSign".into(),
                    "digitalSignature".into(),
                ]
            } else {
                vec!["digitalSignature".into(), "keyEncipherment".into()]
            });
        }
        if ca && !x.key_usage.iter().flatten().any(|k| k == "keyCertSign") {
            return Err(bad(
                "A CA certificate (basic_constraints.ca) needs the keyCertSign key usage",
            ));
        }
        for ku in x.key_usage.iter().flatten() {
            if !KEY_USAGES.contains(&ku.as_str()) {
                return Err(bad(format!("Key usage {ku} is not valid")));
            }
        }
        let months = x.validity_months.unwrap_or(12);
        if !(1..=1200).contains(&months) {
            return Err(bad("validity_months must be between 1 and 1200"));
        }
        x.validity_months = Some(months);
        self.x509_props = Some(x);

        let mut issuer = self.issuer.take().unwrap_or_default();
        let name = issuer.name.take().unwrap_or_else(|| ISSUER_UNKNOWN.into());
        issuer.name = Some(if name.eq_ignore_ascii_case(ISSUER_SELF) {
            ISSUER_SELF.into()
        } else if name.eq_ignore_ascii_case(ISSUER_UNKNOWN) {
            ISSUER_UNKNOWN.into()
        } else {
            name
        });
        self.issuer = Some(issuer);

        let actions = self.lifetime_actions.take().unwrap_or_else(|| {
            // A CA is renewed on purpose (its contacts are told), never
            // behind the back of everything that trusts it.
            let action_type = if self.is_unknown() || ca {
                "EmailContacts"
            } else {
                "AutoRenew"
            };
            vec![LifetimeAction {
                trigger: Trigger {
                    lifetime_percentage: Some(80),
                    days_before_expiry: None,
                },
                action: Action {
                    action_type: action_type.into(),
                },
            }]
        });
        check_actions(&actions, months)?;
        self.lifetime_actions = Some(actions);

        let mut attrs = self.attributes.take().unwrap_or_default();
        attrs.enabled = Some(attrs.enabled.unwrap_or(true));
        attrs.created = Some(attrs.created.unwrap_or(now));
        attrs.updated = Some(now);
        self.attributes = Some(attrs);
        Ok(self)
    }

    /// This policy changed by `patch` (members not sent stay), completed.
    pub fn patched(&self, patch: Policy, now: u64) -> Result<Policy, EngineError> {
        let mut next = self.clone();
        if let Some(kp) = patch.key_props {
            let mut cur = next.key_props.take().unwrap_or_default();
            merge(&mut cur.exportable, kp.exportable);
            merge(&mut cur.kty, kp.kty);
            merge(&mut cur.key_size, kp.key_size);
            merge(&mut cur.reuse_key, kp.reuse_key);
            merge(&mut cur.crv, kp.crv);
            next.key_props = Some(cur);
        }
        if let Some(sp) = patch.secret_props {
            let mut cur = next.secret_props.take().unwrap_or_default();
            merge(&mut cur.content_type, sp.content_type);
            next.secret_props = Some(cur);
        }
        if let Some(xp) = patch.x509_props {
            let mut cur = next.x509_props.take().unwrap_or_default();
            merge(&mut cur.subject, xp.subject);
            merge(&mut cur.ekus, xp.ekus);
            merge(&mut cur.sans, xp.sans);
            merge(&mut cur.key_usage, xp.key_usage);
            merge(&mut cur.validity_months, xp.validity_months);
            merge(&mut cur.basic_constraints, xp.basic_constraints);
            next.x509_props = Some(cur);
        }
        merge(&mut next.lifetime_actions, patch.lifetime_actions);
        if let Some(i) = patch.issuer {
            let mut cur = next.issuer.take().unwrap_or_default();
            merge(&mut cur.name, i.name);
            merge(&mut cur.cty, i.cty);
            merge(&mut cur.cert_transparency, i.cert_transparency);
            next.issuer = Some(cur);
        }
        if let Some(a) = patch.attributes {
            let mut cur = next.attributes.take().unwrap_or_default();
            merge(&mut cur.enabled, a.enabled);
            next.attributes = Some(cur);
        }
        next.completed(now)
    }
}

fn merge<T>(into: &mut Option<T>, from: Option<T>) {
    if from.is_some() {
        *into = from;
    }
}

/// Key Vault's spelling of a certificate key type.
pub fn kty_name(kty: KeyType) -> &'static str {
    match kty {
        KeyType::Rsa => "RSA",
        KeyType::RsaHsm => "RSA-HSM",
        KeyType::Ec => "EC",
        KeyType::EcHsm => "EC-HSM",
        KeyType::Oct => "oct",
        KeyType::OctHsm => "oct-HSM",
    }
}

fn check_actions(actions: &[LifetimeAction], months: u32) -> Result<(), EngineError> {
    if actions.len() > 1 {
        return Err(bad("At most one action is allowed"));
    }
    for a in actions {
        if !matches!(a.action.action_type.as_str(), "AutoRenew" | "EmailContacts") {
            return Err(bad(format!(
                "Lifetime action {} is not valid: use AutoRenew or EmailContacts",
                a.action.action_type
            )));
        }
        match (a.trigger.lifetime_percentage, a.trigger.days_before_expiry) {
            (Some(p), None) if (1..=99).contains(&p) => {}
            (None, Some(d)) if d >= 1 && d <= months * 27 => {}
            (Some(_), Some(_)) => {
                return Err(bad(
                    "A lifetime action's trigger has either lifetime_percentage or days_before_expiry, not both",
                ))
            }
            _ => {
                return Err(bad(format!(
                    "A lifetime action's trigger needs lifetime_percentage 1-99 or days_before_expiry 1-{}",
                    months * 27
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(issuer: &str) -> Policy {
        Policy {
            x509_props: Some(X509Props {
                subject: Some("CN=app.example.com".into()),
                ..Default::default()
            }),
            issuer: Some(IssuerRef {
                name: Some(issuer.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_key_vaults() {
        let p = minimal("self").completed(1000).unwrap();
        let kp = p.key_props.as_ref().unwrap();
        assert_eq!(kp.kty.as_deref(), Some("RSA"));
        assert_eq!(kp.key_size, Some(2048));
        assert_eq!(kp.exportable, Some(true));
        assert_eq!(p.content_type(), PKCS12);
        assert_eq!(p.issuer_name(), "Self");
        let x = p.x509_props.as_ref().unwrap();
        assert_eq!(x.validity_months, Some(12));
        assert_eq!(
            x.ekus.as_deref().unwrap(),
            [EKU_SERVER_AUTH, EKU_CLIENT_AUTH]
        );
        let actions = p.lifetime_actions.as_ref().unwrap();
        assert_eq!(actions[0].action.action_type, "AutoRenew");
        let unknown = minimal("unknown").completed(1000).unwrap();
        assert_eq!(
            unknown.lifetime_actions.unwrap()[0].action.action_type,
            "EmailContacts"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let mut two = minimal("Self");
        let action = LifetimeAction {
            trigger: Trigger {
                lifetime_percentage: Some(50),
                days_before_expiry: None,
            },
            action: Action {
                action_type: "AutoRenew".into(),
            },
        };
        two.lifetime_actions = Some(vec![action.clone(), action]);
        let err = two.completed(1).unwrap_err().to_string();
        assert!(err.contains("At most one action is allowed"), "{err}");

        let mut nothing = minimal("Self");
        nothing.x509_props = None;
        assert!(nothing.completed(1).is_err());

        let mut hsm_export = minimal("Self");
        hsm_export.key_props = Some(KeyProps {
            kty: Some("rsa-hsm".into()),
            exportable: Some(true),
            ..Default::default()
        });
        assert!(hsm_export.completed(1).is_err());

        let mut ku = minimal("Self");
        ku.x509_props.as_mut().unwrap().key_usage = Some(vec!["DigitalSignature".into()]);
        assert!(ku.completed(1).is_err());
    }

    #[test]
    fn patch_keeps_members_not_sent() {
        let p = minimal("Self").completed(1).unwrap();
        let patch = Policy {
            x509_props: Some(X509Props {
                validity_months: Some(24),
                ..Default::default()
            }),
            ..Default::default()
        };
        let next = p.patched(patch, 2).unwrap();
        let x = next.x509_props.unwrap();
        assert_eq!(x.validity_months, Some(24));
        assert_eq!(x.subject.as_deref(), Some("CN=app.example.com"));
        assert_eq!(next.attributes.unwrap().created, Some(1));
    }
}
