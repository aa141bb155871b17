//! Network rules of one vault (Key Vault's `networkAcls`): which client
//! addresses may reach it. Kept in the vault record, so they replicate with
//! it and go when the vault goes. The API layer decides what the client
//! address of a request is; this module only answers "is it allowed".

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::EngineError;

/// Largest number of `ipRules` a vault may have (Key Vault allows 1000).
pub const MAX_IP_RULES: usize = 1000;

/// What happens to an address no rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DefaultAction {
    /// Every address is allowed (the rules are then moot).
    #[default]
    Allow,
    /// Only addresses in `ipRules` are allowed.
    Deny,
}

/// Who passes whatever the address (Key Vault's `AzureServices` trusted
/// services; Coffer's trusted caller is the operator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bypass {
    /// Nobody: the operator's root token is held to the rules too.
    #[default]
    None,
    /// Requests with the root token (break-glass) pass from any address.
    Operator,
}

/// One allowed range, as Key Vault writes it: `{"value":"10.0.0.0/24"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRule {
    /// An IPv4 or IPv6 address or CIDR range (stored as a CIDR).
    pub value: String,
}

/// A vault's network rules (`networkAcls`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAcls {
    /// Allow or deny addresses no rule matches.
    #[serde(default)]
    pub default_action: DefaultAction,
    /// Who passes regardless of the address.
    #[serde(default)]
    pub bypass: Bypass,
    /// Allowed address ranges.
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
}

impl NetworkAcls {
    /// Checks the rules and writes every range in canonical CIDR form
    /// (`10.1.2.3` → `10.1.2.3/32`, host bits cleared, duplicates dropped).
    pub fn normalized(mut self) -> Result<Self, EngineError> {
        self.ip_rules =
            canonical_ranges("ipRules", self.ip_rules.iter().map(|r| r.value.as_str()))?
                .into_iter()
                .map(|value| IpRule { value })
                .collect();
        Ok(self)
    }

    /// Whether `addr` may reach the vault by address alone (the bypass is
    /// the caller's to apply: it needs the credential).
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.default_action == DefaultAction::Allow
            || any_contains(self.ip_rules.iter().map(|r| r.value.as_str()), addr)
    }
}

/// Checks address ranges (a vault's `ipRules`, an application's bound
/// CIDRs) and writes each in canonical CIDR form (`10.1.2.3` →
/// `10.1.2.3/32`, host bits cleared, duplicates dropped); `what` names
/// them in the error. At most [`MAX_IP_RULES`].
pub fn canonical_ranges<'a>(
    what: &str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, EngineError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let net = parse_range(value).ok_or_else(|| {
            EngineError::BadParameter(format!(
                "{what} value {value:?} is not an IPv4 or IPv6 address or CIDR range"
            ))
        })?;
        let value = net.to_string();
        if out.contains(&value) {
            continue;
        }
        if out.len() == MAX_IP_RULES {
            return Err(EngineError::BadParameter(format!(
                "at most {MAX_IP_RULES} {what} are allowed"
            )));
        }
        out.push(value);
    }
    Ok(out)
}

/// Whether one of `ranges` (as [`canonical_ranges`] writes them) contains
/// `addr` (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn any_contains<'a>(ranges: impl IntoIterator<Item = &'a str>, addr: IpAddr) -> bool {
    let addr = addr.to_canonical();
    ranges
        .into_iter()
        .filter_map(parse_range)
        .any(|net| net.contains(&addr))
}

/// Whether an address binding (Vault's `token_bound_cidrs`) lets `addr`
/// through: no ranges bind nothing, else one must contain it.
pub fn binding_allows(ranges: &[String], addr: IpAddr) -> bool {
    ranges.is_empty() || any_contains(ranges.iter().map(String::as_str), addr)
}

/// An address (a single-host range) or a CIDR range, host bits cleared.
fn parse_range(value: &str) -> Option<IpNet> {
    let value = value.trim();
    if let Ok(net) = value.parse::<IpNet>() {
        return Some(net.trunc());
    }
    value
        .parse::<IpAddr>()
        .ok()
        .map(|a| IpNet::from(a.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acls(action: DefaultAction, rules: &[&str]) -> NetworkAcls {
        NetworkAcls {
            default_action: action,
            bypass: Bypass::None,
            ip_rules: rules
                .iter()
                .map(|r| IpRule { value: (*r).into() })
                .collect(),
        }
        .normalized()
        .unwrap()
    }

    #[test]
    fn deny_allows_only_the_ranges_v4_and_v6() {
        let a = acls(
            DefaultAction::Deny,
            &["10.1.2.0/24", "192.0.2.7", "2001:db8::/32"],
        );
        let yes = [
            "10.1.2.1",
            "10.1.2.255",
            "192.0.2.7",
            "2001:db8::1",
            "::ffff:10.1.2.9",
        ];
        for ip in yes {
            assert!(a.allows(ip.parse().unwrap()), "{ip}");
        }
        let no = ["10.1.3.1", "192.0.2.8", "2001:db9::1", "127.0.0.1", "::1"];
        for ip in no {
            assert!(!a.allows(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn an_empty_binding_binds_nothing_and_a_binding_checks_the_canonical_address() {
        assert!(binding_allows(&[], "203.0.113.1".parse().unwrap()));
        let bound = canonical_ranges("bound CIDRs", ["10.1.2.3/24", "2001:db8::1"]).unwrap();
        assert_eq!(bound, ["10.1.2.0/24", "2001:db8::1/128"]);
        for ip in ["10.1.2.200", "::ffff:10.1.2.9", "2001:db8::1"] {
            assert!(binding_allows(&bound, ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.1.3.1", "2001:db8::2", "127.0.0.1"] {
            assert!(!binding_allows(&bound, ip.parse().unwrap()), "{ip}");
        }
        let too_many: Vec<String> = (0..=MAX_IP_RULES)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        assert!(matches!(
            canonical_ranges("bound CIDRs", too_many.iter().map(String::as_str)),
            Err(EngineError::BadParameter(_))
        ));
    }

    #[test]
    fn allow_lets_everyone_in() {
        let a = acls(DefaultAction::Allow, &["10.0.0.0/8"]);
        assert!(a.allows("203.0.113.1".parse().unwrap()));
    }

    #[test]
    fn ranges_are_stored_canonical_and_bad_ones_refused() {
        let a = acls(DefaultAction::Deny, &["10.1.2.3/24", "10.1.2.0/24", "::1"]);
        let values: Vec<&str> = a.ip_rules.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(values, ["10.1.2.0/24", "::1/128"]);
        for bad in ["10.0.0.0/33", "host.example", "", "10.0.0.0/8/8"] {
            let r = NetworkAcls {
                ip_rules: vec![IpRule { value: bad.into() }],
                ..NetworkAcls::default()
            }
            .normalized();
            assert!(matches!(r, Err(EngineError::BadParameter(_))), "{bad}");
        }
    }

    #[test]
    fn the_shape_is_key_vaults() {
        let a: NetworkAcls = serde_json::from_str(
            r#"{"defaultAction":"Deny","bypass":"Operator","ipRules":[{"value":"10.0.0.0/8"}]}"#,
        )
        .unwrap();
        assert_eq!(a.default_action, DefaultAction::Deny);
        assert_eq!(a.bypass, Bypass::Operator);
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["ipRules"][0]["value"], "10.0.0.0/8");
        assert_eq!(back["defaultAction"], "Deny");
    }
}
