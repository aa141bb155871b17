//! Azure Key Vault data-plane API.
