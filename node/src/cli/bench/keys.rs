//! Crypto workloads of `coffer bench`: one key is created before the run
//! and every operation posts the same prepared request to its versioned
//! `sign` / `encrypt` / `decrypt` route, so the load generator adds no
//! per-operation work beyond sending it.

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use coffer_client::{Client, Request};
use serde_json::{json, Value};

use super::Workload;

/// api-version of the keys requests (the Azure SDKs' 7.4).
const API_VERSION: &str = "7.4";

/// A parsed `--key-type`: `RSA-2048`, `RSA-HSM-2048`, `EC-P256` (or
/// `EC-P-256`), `EC-HSM-P256`, `oct-256`, `oct-HSM-256`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Key Vault `kty`.
    pub kty: &'static str,
    /// RSA modulus or oct key bits.
    pub size: Option<u32>,
    /// EC curve name (`P-256`, …).
    pub crv: Option<&'static str>,
}

impl KeySpec {
    /// Parses a `--key-type` value.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let (kty, rest) = ["RSA-HSM", "EC-HSM", "oct-HSM", "RSA", "EC", "oct"]
            .into_iter()
            .find_map(|k| Some((k, s.strip_prefix(k)?.strip_prefix('-')?)))
            .with_context(|| {
                format!("unknown key type {s:?} (e.g. RSA-2048, EC-P256, oct-256, RSA-HSM-2048)")
            })?;
        if kty.starts_with("EC") {
            let crv = match rest.replace('-', "").as_str() {
                "P256" => "P-256",
                "P384" => "P-384",
                "P521" => "P-521",
                "P256K" => "P-256K",
                _ => bail!("unknown curve in key type {s:?}"),
            };
            return Ok(Self {
                kty,
                size: None,
                crv: Some(crv),
            });
        }
        let size = rest
            .parse()
            .with_context(|| format!("bad key size in key type {s:?}"))?;
        Ok(Self {
            kty,
            size: Some(size),
            crv: None,
        })
    }

    fn create_body(&self) -> Value {
        let mut b = json!({ "kty": self.kty });
        if let Some(size) = self.size {
            b["key_size"] = json!(size);
        }
        if let Some(crv) = self.crv {
            b["crv"] = json!(crv);
        }
        b
    }

    fn is_rsa(&self) -> bool {
        self.kty.starts_with("RSA")
    }

    fn is_oct(&self) -> bool {
        self.kty.starts_with("oct")
    }

    /// Signature algorithm and digest length for this key.
    fn sign_alg(&self) -> anyhow::Result<(&'static str, usize)> {
        Ok(match (self.is_rsa(), self.crv) {
            (true, _) => ("RS256", 32),
            (false, Some("P-256")) => ("ES256", 32),
            (false, Some("P-384")) => ("ES384", 48),
            (false, Some("P-521")) => ("ES512", 64),
            (false, Some("P-256K")) => ("ES256K", 32),
            _ => bail!("{} keys cannot sign", self.kty),
        })
    }

    /// Encryption algorithm for this key.
    fn enc_alg(&self) -> anyhow::Result<String> {
        match (self.is_rsa(), self.is_oct(), self.size) {
            (true, _, _) => Ok("RSA-OAEP-256".into()),
            (_, true, Some(bits)) => Ok(format!("A{bits}GCM")),
            _ => bail!("{} keys cannot encrypt", self.kty),
        }
    }
}

/// Creates the benchmark key and returns the request every operation sends.
pub async fn prepare(
    client: &Client,
    workload: Workload,
    key_type: &str,
    name: &str,
    value_size: usize,
) -> anyhow::Result<Request> {
    let spec = KeySpec::parse(key_type)?;
    let created = post(client, &format!("/keys/{name}/create"), &spec.create_body())
        .await
        .context("creating the benchmark key")?;
    let kid = created["key"]["kid"]
        .as_str()
        .context("key bundle has no kid")?;
    // `…/keys/{name}/{version}`: operations name the version, as SDK clients do.
    let path = kid
        .find("/keys/")
        .map(|i| kid[i..].to_string())
        .context("kid has no /keys/ path")?;
    let (route, body) = match workload {
        Workload::Sign => {
            let (alg, len) = spec.sign_alg()?;
            ("sign", json!({ "alg": alg, "value": b64(&vec![7u8; len]) }))
        }
        Workload::Encrypt => {
            let alg = spec.enc_alg()?;
            // RSA-OAEP-256 with 2048 bits takes at most 190 bytes.
            let len = if spec.is_rsa() {
                value_size.min(190)
            } else {
                value_size
            };
            (
                "encrypt",
                json!({ "alg": alg, "value": b64(&vec![5u8; len]) }),
            )
        }
        Workload::Decrypt => (
            "decrypt",
            decrypt_body(client, &spec, &path, value_size).await?,
        ),
        _ => bail!("{workload:?} is not a crypto workload"),
    };
    let req = Request::post(format!("{path}/{route}?api-version={API_VERSION}")).json(&body)?;
    // One round trip up front so a refused operation fails the run, not every op.
    client
        .send(req.clone())
        .await?
        .error_for_status()
        .with_context(|| format!("{route} with the benchmark key"))?;
    Ok(req)
}

/// Encrypts a value once (with the public key for RSA; the GCM output for
/// oct) and returns the decrypt body that undoes it.
async fn decrypt_body(
    client: &Client,
    spec: &KeySpec,
    path: &str,
    value_size: usize,
) -> anyhow::Result<Value> {
    let alg = spec.enc_alg()?;
    let len = if spec.is_rsa() { 32 } else { value_size };
    let enc = post(
        client,
        &format!("{path}/encrypt"),
        &json!({ "alg": alg, "value": b64(&vec![5u8; len]) }),
    )
    .await
    .context("encrypting the value to decrypt")?;
    let mut body = json!({ "alg": alg, "value": enc["value"] });
    for field in ["iv", "tag"] {
        if let Some(v) = enc.get(field) {
            body[field] = v.clone();
        }
    }
    Ok(body)
}

async fn post(client: &Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let req = Request::post(format!("{path}{sep}api-version={API_VERSION}")).json(body)?;
    Ok(client.send(req).await?.error_for_status()?.json()?)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_types_parse_with_and_without_hsm() {
        let s = KeySpec::parse("RSA-HSM-2048").unwrap();
        assert_eq!((s.kty, s.size, s.crv), ("RSA-HSM", Some(2048), None));
        let s = KeySpec::parse("EC-P-256").unwrap();
        assert_eq!((s.kty, s.crv), ("EC", Some("P-256")));
        assert_eq!(s.sign_alg().unwrap(), ("ES256", 32));
        let s = KeySpec::parse("oct-256").unwrap();
        assert_eq!(s.enc_alg().unwrap(), "A256GCM");
        assert!(s.sign_alg().is_err());
        assert!(KeySpec::parse("DSA-1024").is_err());
        assert!(KeySpec::parse("EC-P999").is_err());
    }
}
