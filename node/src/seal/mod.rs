//! Seal: Shamir-split unseal key, root key, keyring and the AES-256-GCM-SIV barrier.
