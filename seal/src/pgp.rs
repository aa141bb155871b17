//! Encrypting a share (or a token) to one custodian's OpenPGP public key, so
//! that the operator who runs a ceremony never sees it in clear.
//!
//! The output is an ASCII-armored OpenPGP message (SEIPDv1, AES-256, one
//! recipient): the form every OpenPGP implementation reads — a custodian runs
//! `gpg --decrypt share-1.asc`. The plaintext is exactly the text the node
//! would otherwise have printed (a share's hex, a token), with no newline.
//!
//! Keys are accepted ASCII-armored (`gpg --armor --export`) or as base64 of
//! the binary key (`gpg --export | base64 -w0`, Vault's form). The key's
//! self-signatures are verified and an encryption-capable, unexpired
//! (sub)key is chosen; a key that cannot encrypt is refused before anything
//! is generated, so a ceremony never hands out a share nobody can read.

use base64::Engine as _;
use pgp::composed::{ArmorOptions, Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, PublicKeyTrait};

/// Why a public key could not be used or a message not produced. Messages
/// name the key by position and fingerprint only, never the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgpError {
    /// Not an OpenPGP public key (armored or base64 binary).
    #[error("not an OpenPGP public key: {0}")]
    Parse(String),
    /// The key's self-signatures do not verify.
    #[error("the OpenPGP key {0} has invalid self-signatures")]
    BadSignature(String),
    /// Neither the primary key nor a subkey may encrypt.
    #[error("the OpenPGP key {0} has no usable encryption (sub)key")]
    NoEncryptionKey(String),
    /// The key has expired.
    #[error("the OpenPGP key {0} has expired")]
    Expired(String),
    /// Encryption itself failed.
    #[error("OpenPGP encryption failed: {0}")]
    Encrypt(String),
}

/// A custodian's parsed, checked public key.
#[derive(Clone)]
pub struct CustodianKey {
    key: SignedPublicKey,
    fingerprint: String,
}

impl std::fmt::Debug for CustodianKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustodianKey({})", self.fingerprint)
    }
}

impl CustodianKey {
    /// Parses and checks an armored or base64-binary public key.
    pub fn parse(text: &str) -> Result<Self, PgpError> {
        let text = text.trim();
        let key = if text.starts_with("-----BEGIN") {
            SignedPublicKey::from_string(text)
                .map(|(k, _)| k)
                .map_err(|e| PgpError::Parse(e.to_string()))?
        } else {
            let compact: String = text.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| {
                    PgpError::Parse("neither ASCII armor nor base64 of a binary key".into())
                })?;
            SignedPublicKey::from_bytes(&bytes[..]).map_err(|e| PgpError::Parse(e.to_string()))?
        };
        let fingerprint = hex::encode(key.fingerprint().as_bytes());
        key.verify()
            .map_err(|_| PgpError::BadSignature(fingerprint.clone()))?;
        if key
            .expires_at()
            .is_some_and(|at| at.timestamp() < unix_now())
        {
            return Err(PgpError::Expired(fingerprint));
        }
        let parsed = Self { key, fingerprint };
        if !parsed.can_encrypt() {
            return Err(PgpError::NoEncryptionKey(parsed.fingerprint));
        }
        Ok(parsed)
    }

    /// Hex fingerprint of the primary key, as `gpg --fingerprint` shows it
    /// (without spaces): what custodians compare during a ceremony.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn can_encrypt(&self) -> bool {
        self.encryption_subkey().is_some() || self.key.primary_key.is_encryption_key()
    }

    /// The first subkey whose binding signature allows encryption.
    fn encryption_subkey(&self) -> Option<&pgp::composed::SignedPublicSubKey> {
        self.key.public_subkeys.iter().find(|sub| {
            sub.key.is_encryption_key()
                && sub.signatures.iter().any(|sig| {
                    let flags = sig.key_flags();
                    flags.encrypt_comms() || flags.encrypt_storage()
                })
        })
    }

    /// Encrypts `plaintext` to this key; returns the armored message.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<String, PgpError> {
        // pgp 0.17 takes rand 0.8's traits; rand_core 0.6's OsRng provides them.
        let mut rng = rand_core_06::OsRng;
        let mut builder = MessageBuilder::from_bytes("", plaintext.to_vec())
            .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        let result = match self.encryption_subkey() {
            Some(sub) => builder.encrypt_to_key(&mut rng, &sub.key),
            None => builder.encrypt_to_key(&mut rng, &self.key.primary_key),
        };
        result.map_err(|e| PgpError::Encrypt(e.to_string()))?;
        builder
            .to_armored_string(rng, ArmorOptions::default())
            .map_err(|e| PgpError::Encrypt(e.to_string()))
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Parses one key per share holder, in share order, and checks that the
/// count matches `shares`. Errors name the position (1-based).
pub fn parse_keys(keys: &[String], shares: u8) -> Result<Vec<CustodianKey>, String> {
    if keys.len() != usize::from(shares) {
        return Err(format!(
            "{} OpenPGP keys given for {shares} shares: give exactly one key per share, in share order",
            keys.len()
        ));
    }
    keys.iter()
        .enumerate()
        .map(|(i, k)| CustodianKey::parse(k).map_err(|e| format!("key {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use pgp::composed::{Message, SignedSecretKey};
    use pgp::types::Password;

    use super::*;

    /// A test custodian made with `gpg --quick-gen-key … future-default`
    /// (ed25519 primary, cv25519 encryption subkey, no passphrase).
    pub(crate) const PUBLIC: &str = include_str!("testdata/custodian.pub.asc");
    const SECRET: &str = include_str!("testdata/custodian.sec.asc");

    pub(crate) fn decrypt(armored: &str) -> Vec<u8> {
        let (secret, _) = SignedSecretKey::from_string(SECRET).unwrap();
        let (message, _) = Message::from_string(armored).unwrap();
        let mut message = message.decrypt(&Password::empty(), &secret).unwrap();
        message.as_data_vec().unwrap()
    }

    #[test]
    fn a_share_encrypted_to_a_gpg_key_decrypts_with_its_secret_key() {
        let key = CustodianKey::parse(PUBLIC).unwrap();
        assert_eq!(
            key.fingerprint(),
            "62ac3d5732d62834e3c0edaa2a689d5e20c416bb"
        );
        let armored = key.encrypt(b"0123abcd").unwrap();
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));
        assert!(!armored.contains("0123abcd"));
        assert_eq!(decrypt(&armored), b"0123abcd");
        // Each encryption uses a fresh session key.
        assert_ne!(key.encrypt(b"0123abcd").unwrap(), armored);
    }

    #[test]
    fn base64_of_the_binary_key_is_accepted() {
        let (key, _) = SignedPublicKey::from_string(PUBLIC).unwrap();
        let mut bytes = Vec::new();
        pgp::ser::Serialize::to_writer(&key, &mut bytes).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let parsed = CustodianKey::parse(&b64).unwrap();
        assert_eq!(decrypt(&parsed.encrypt(b"x").unwrap()), b"x");
    }

    #[test]
    fn garbage_and_wrong_counts_are_refused_by_position() {
        assert!(matches!(
            CustodianKey::parse("not a key"),
            Err(PgpError::Parse(_))
        ));
        // One character of the armored body changed: the packet no longer
        // parses or its self-signature fails.
        let mut lines: Vec<String> = PUBLIC.lines().map(str::to_string).collect();
        let body = lines.iter().position(|l| l.len() > 60).unwrap() + 2;
        let flipped = if lines[body].starts_with('A') {
            "B"
        } else {
            "A"
        };
        lines[body].replace_range(0..1, flipped);
        assert!(CustodianKey::parse(&lines.join("\n")).is_err());
        let keys = vec![PUBLIC.to_string(), "junk".to_string()];
        let err = parse_keys(&keys, 2).unwrap_err();
        assert!(err.starts_with("key 2:"), "{err}");
        let err = parse_keys(&keys[..1], 2).unwrap_err();
        assert!(err.contains("1 OpenPGP keys given for 2 shares"), "{err}");
    }
}
