//! Role definitions: the Key Vault and Managed HSM built-ins with their
//! real ids and dataActions, custom roles, and action matching with `*`
//! wildcards.
//!
//! Actions are full strings (`Microsoft.KeyVault/vaults/keys/sign/action`)
//! compared case-insensitively, as Azure does, against `dataActions` minus
//! `notDataActions`. Every operation's action comes from the one operation
//! table ([`crate::operation::Operation`]), role administration included
//! (`Microsoft.KeyVault/vaults/roleAssignments/write/action`): Coffer has no
//! ARM control plane, so `actions`/`notActions` are kept for the API's
//! shape only and grant nothing.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::operation::Operation;

/// Prefix of every Key Vault (vault) data action.
pub const VAULT_PREFIX: &str = crate::operation::DATA_ACTION_PREFIX;
/// Prefix of every Managed HSM data action.
pub const MHSM_PREFIX: &str = "Microsoft.KeyVault/managedHsm/";

/// Creating role assignments.
pub const ASSIGNMENTS_WRITE: &str = "Microsoft.KeyVault/vaults/roleAssignments/write/action";
/// Deleting role assignments.
pub const ASSIGNMENTS_DELETE: &str = "Microsoft.KeyVault/vaults/roleAssignments/delete/action";
/// Creating or changing custom role definitions.
pub const DEFINITIONS_WRITE: &str = "Microsoft.KeyVault/vaults/roleDefinitions/write/action";
/// Deleting custom role definitions.
pub const DEFINITIONS_DELETE: &str = "Microsoft.KeyVault/vaults/roleDefinitions/delete/action";

/// Whether a role is built in or made by a user (`properties.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleType {
    /// Shipped with the service; cannot be changed or deleted.
    #[serde(rename = "AKVBuiltInRole")]
    BuiltIn,
    /// Created through the administration API.
    #[serde(rename = "CustomRole")]
    Custom,
}

/// One permission block of a role: what it allows minus what it excludes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// Control-plane actions: kept for the API's shape, grant nothing.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Control-plane actions excluded from `actions`.
    #[serde(default)]
    pub not_actions: Vec<String>,
    /// Data actions.
    #[serde(default)]
    pub data_actions: Vec<String>,
    /// Data actions excluded from `data_actions` (not a deny: another role
    /// may still grant them).
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

impl Permission {
    /// Whether this block grants the data action `action`.
    pub fn grants(&self, action: &str) -> bool {
        self.data_actions.iter().any(|p| matches(p, action))
            && !self.not_data_actions.iter().any(|p| matches(p, action))
    }
}

/// A role definition (built-in or custom).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinition {
    /// GUID (the definition's `name`).
    pub id: String,
    /// Display name (`roleName`); may be empty.
    pub role_name: String,
    /// Free text.
    pub description: String,
    /// Built in or custom.
    pub role_type: RoleType,
    /// Permission blocks; the role grants an action when any block does.
    pub permissions: Vec<Permission>,
    /// Scopes the role may be assigned at (`/` for every role Coffer keeps).
    pub assignable_scopes: Vec<String>,
}

impl RoleDefinition {
    /// Whether the role grants `action`.
    pub fn grants(&self, action: &str) -> bool {
        self.permissions.iter().any(|p| p.grants(action))
    }

    /// The roles a holder of this role may assign or unassign, when it is
    /// restricted (Key Vault Data Access Administrator: the eight data
    /// roles); `None`: any role, within what the holder itself holds.
    pub fn delegable_roles(&self) -> Option<&'static [&'static str]> {
        (self.id == DATA_ACCESS_ADMINISTRATOR).then_some(DATA_ROLES)
    }
}

/// Case-insensitive glob match: `*` matches any run of characters
/// (`/` included), so `keys/*` covers every key action and `*/read` every
/// read action.
pub fn matches(pattern: &str, action: &str) -> bool {
    let p = pattern.as_bytes();
    let a = action.as_bytes();
    let (mut pi, mut ai) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ai < a.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ai));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&a[ai]) {
            pi += 1;
            ai += 1;
        } else if let Some((sp, sa)) = star {
            pi = sp + 1;
            ai = sa + 1;
            star = Some((sp, sa + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Key Vault Administrator.
pub const ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";
/// Key Vault Reader.
pub const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
/// Key Vault Secrets Officer.
pub const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
/// Key Vault Secrets User.
pub const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
/// Key Vault Crypto Officer.
pub const CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";
/// Key Vault Crypto User.
pub const CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
/// Key Vault Crypto Service Encryption User.
pub const CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
/// Key Vault Crypto Service Release User.
pub const CRYPTO_SERVICE_RELEASE_USER: &str = "08bbd89e-9f13-488c-ac41-acfcb10c90ab";
/// Key Vault Certificates Officer.
pub const CERTIFICATES_OFFICER: &str = "a4417e6f-fecd-4de8-b567-7b0420556985";
/// Key Vault Certificate User.
pub const CERTIFICATE_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
/// Key Vault Data Access Administrator.
pub const DATA_ACCESS_ADMINISTRATOR: &str = "8b54135c-b56d-4d72-a534-26097cfdc8d8";

/// The roles a Data Access Administrator may assign (Azure's list).
pub const DATA_ROLES: &[&str] = &[
    CERTIFICATES_OFFICER,
    CERTIFICATE_USER,
    CRYPTO_OFFICER,
    CRYPTO_SERVICE_ENCRYPTION_USER,
    CRYPTO_USER,
    READER,
    SECRETS_OFFICER,
    SECRETS_USER,
];

/// The Key Vault built-in roles, in the order the docs table lists them.
pub const VAULT_BUILT_INS: &[&str] = &[
    ADMINISTRATOR,
    READER,
    SECRETS_OFFICER,
    SECRETS_USER,
    CRYPTO_OFFICER,
    CRYPTO_USER,
    CRYPTO_SERVICE_ENCRYPTION_USER,
    CRYPTO_SERVICE_RELEASE_USER,
    CERTIFICATES_OFFICER,
    CERTIFICATE_USER,
    DATA_ACCESS_ADMINISTRATOR,
];

/// Every data action of a vault, as the service names them.
pub const VAULT_DATA_ACTIONS: &[&str] = &[
    "secrets/getSecret/action",
    "secrets/setSecret/action",
    "secrets/readMetadata/action",
    "secrets/update/action",
    "secrets/backup/action",
    "secrets/restore/action",
    "secrets/recover/action",
    "secrets/purge/action",
    "secrets/delete",
    "keys/read",
    "keys/delete",
    "keys/create/action",
    "keys/import/action",
    "keys/update/action",
    "keys/rotate/action",
    "keys/backup/action",
    "keys/restore/action",
    "keys/recover/action",
    "keys/purge/action",
    "keys/encrypt/action",
    "keys/decrypt/action",
    "keys/wrap/action",
    "keys/unwrap/action",
    "keys/sign/action",
    "keys/verify/action",
    "keys/release/action",
    "keyrotationpolicies/read",
    "keyrotationpolicies/write",
    "certificates/read",
    "certificates/delete",
    "certificates/create/action",
    "certificates/import/action",
    "certificates/update/action",
    "certificates/backup/action",
    "certificates/restore/action",
    "certificates/recover/action",
    "certificates/purge/action",
    // Coffer's own: revocation by a `Coffer` issuer (Key Vault has no
    // private CA). `certificates/*` grants it.
    "certificates/revoke/action",
    "certificatecas/read",
    "certificatecas/write",
    "certificatecas/delete",
    "certificatecontacts/write",
];

/// Every action Coffer knows (full strings): what "grants no more than the
/// granter holds" is checked over.
pub fn all_actions() -> &'static [String] {
    static ALL: OnceLock<Vec<String>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<String> = VAULT_DATA_ACTIONS
            .iter()
            .map(|a| format!("{VAULT_PREFIX}{a}"))
            .collect();
        all.extend(Operation::ALL.iter().map(|op| op.data_action()));
        for def in built_ins() {
            for p in &def.permissions {
                all.extend(p.data_actions.iter().filter(|a| !a.contains('*')).cloned());
            }
        }
        all.sort();
        all.dedup();
        all
    })
}

/// The built-in role with this GUID.
pub fn built_in(id: &str) -> Option<&'static RoleDefinition> {
    built_ins().iter().find(|d| d.id.eq_ignore_ascii_case(id))
}

/// Every built-in role: the Key Vault roles, then the Managed HSM roles.
pub fn built_ins() -> &'static [RoleDefinition] {
    static ROLES: OnceLock<Vec<RoleDefinition>> = OnceLock::new();
    ROLES.get_or_init(|| {
        let read_all = vec!["Microsoft.Authorization/*/read".to_owned()];
        let vault = |id: &str, name: &str, desc: &str, data: &[&str], actions: &[String]| {
            built(id, name, desc, VAULT_PREFIX, data, actions)
        };
        let mhsm = |id: &str, name: &str, data: &[&str]| {
            built(id, name, "Managed HSM built-in role.", MHSM_PREFIX, data, &[])
        };
        let rbac3 = [
            "roleAssignments/read/action",
            "roleAssignments/write/action",
            "roleAssignments/delete/action",
            "roleDefinitions/read/action",
            "roleDefinitions/write/action",
            "roleDefinitions/delete/action",
        ];
        let mut crypto_officer = rbac3.to_vec();
        crypto_officer.extend([
            "keys/deletedKeys/read/action",
            "keys/deletedKeys/delete",
            "keys/deletedKeys/recover/action",
            "keys/export/action",
        ]);
        let mut mhsm_admin = rbac3.to_vec();
        mhsm_admin.extend([
            "securitydomain/download/action",
            "securitydomain/upload/action",
            "securitydomain/download/read",
            "securitydomain/upload/read",
            "securitydomain/transferkey/read",
            "backup/start/action",
            "backup/status/action",
            "restore/start/action",
            "restore/status/action",
        ]);
        vec![
            vault(
                ADMINISTRATOR,
                "Key Vault Administrator",
                "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets, and manage its role assignments.",
                // `*` covers role administration too: Coffer has no ARM layer
                // whose Owner would assign roles, the vault's administrator
                // does (see README "Access control").
                &["*"],
                &read_all,
            ),
            vault(
                READER,
                "Key Vault Reader",
                "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material.",
                &["*/read", "secrets/readMetadata/action"],
                &read_all,
            ),
            vault(
                SECRETS_OFFICER,
                "Key Vault Secrets Officer",
                "Perform any action on the secrets of a key vault, except manage permissions.",
                &["secrets/*"],
                &read_all,
            ),
            vault(
                SECRETS_USER,
                "Key Vault Secrets User",
                "Read secret contents.",
                &["secrets/getSecret/action", "secrets/readMetadata/action"],
                &[],
            ),
            vault(
                CRYPTO_OFFICER,
                "Key Vault Crypto Officer",
                "Perform any action on the keys of a key vault, except manage permissions.",
                &["keys/*", "keyrotationpolicies/*"],
                &read_all,
            ),
            vault(
                CRYPTO_USER,
                "Key Vault Crypto User",
                "Perform cryptographic operations using keys.",
                &[
                    "keys/read",
                    "keys/update/action",
                    "keys/backup/action",
                    "keys/encrypt/action",
                    "keys/decrypt/action",
                    "keys/wrap/action",
                    "keys/unwrap/action",
                    "keys/sign/action",
                    "keys/verify/action",
                ],
                &[],
            ),
            vault(
                CRYPTO_SERVICE_ENCRYPTION_USER,
                "Key Vault Crypto Service Encryption User",
                "Read metadata of keys and perform wrap/unwrap operations.",
                &["keys/read", "keys/wrap/action", "keys/unwrap/action"],
                &[],
            ),
            vault(
                CRYPTO_SERVICE_RELEASE_USER,
                "Key Vault Crypto Service Release User",
                "Release keys.",
                &["keys/release/action"],
                &[],
            ),
            vault(
                CERTIFICATES_OFFICER,
                "Key Vault Certificates Officer",
                "Perform any action on the certificates of a key vault, except manage permissions.",
                &["certificatecas/*", "certificates/*", "certificatecontacts/write"],
                &read_all,
            ),
            vault(
                CERTIFICATE_USER,
                "Key Vault Certificate User",
                "Read entire certificate contents including secret and key portion.",
                &[
                    "certificates/read",
                    "secrets/getSecret/action",
                    "secrets/readMetadata/action",
                    "keys/read",
                ],
                &[],
            ),
            vault(
                DATA_ACCESS_ADMINISTRATOR,
                "Key Vault Data Access Administrator",
                "Manage access to the vault by adding or removing role assignments for the Key Vault Certificates Officer, Certificate User, Crypto Officer, Crypto Service Encryption User, Crypto User, Reader, Secrets Officer or Secrets User roles.",
                // Azure grants these as ARM actions under a condition; here
                // they are data actions and the condition is
                // [`RoleDefinition::delegable_roles`].
                &[
                    "roleAssignments/read/action",
                    "roleAssignments/write/action",
                    "roleAssignments/delete/action",
                    "roleDefinitions/read/action",
                ],
                &[
                    "Microsoft.Authorization/roleAssignments/write".to_owned(),
                    "Microsoft.Authorization/roleAssignments/delete".to_owned(),
                    "Microsoft.Authorization/*/read".to_owned(),
                ],
            ),
            mhsm(
                "a290e904-7015-4bba-90c8-60543313cdb4",
                "Managed HSM Administrator",
                &mhsm_admin,
            ),
            mhsm(
                "515eb02d-2335-4d2d-92f2-b1cbdf9c3778",
                "Managed HSM Crypto Officer",
                &crypto_officer,
            ),
            mhsm(
                "21dbd100-6940-42c2-9190-5d6cb909625b",
                "Managed HSM Crypto User",
                &[
                    "roleDefinitions/read/action",
                    "roleAssignments/read/action",
                    "keys/read/action",
                    "keys/write/action",
                    "keys/create",
                    "keys/delete",
                    "keys/rotate/action",
                    "keys/import/action",
                    "keys/release/action",
                    "keys/backup/action",
                    "keys/restore/action",
                    "keys/encrypt/action",
                    "keys/decrypt/action",
                    "keys/wrap/action",
                    "keys/unwrap/action",
                    "keys/sign/action",
                    "keys/verify/action",
                    "keys/derive/action",
                    "rng/action",
                ],
            ),
            mhsm(
                "4bd23610-cdcf-4971-bdee-bdc562cc28e4",
                "Managed HSM Policy Administrator",
                &rbac3,
            ),
            mhsm(
                "2c18b078-7c48-4d3a-af88-5a3a1b3f82b3",
                "Managed HSM Crypto Auditor",
                &[
                    "roleAssignments/read/action",
                    "roleDefinitions/read/action",
                    "keys/read/action",
                    "keys/deletedKeys/read/action",
                ],
            ),
            mhsm(
                "33413926-3206-4cdd-b39a-83574fe37a17",
                "Managed HSM Crypto Service Encryption User",
                &["keys/read/action", "keys/wrap/action", "keys/unwrap/action"],
            ),
            mhsm(
                "21dbd100-6940-42c2-9190-5d6cb909625c",
                "Managed HSM Crypto Service Release User",
                &["keys/release/action"],
            ),
            mhsm(
                "7b127d3c-77bd-4e3e-bbe0-dbb8971fa7f8",
                "Managed HSM Backup",
                &["backup/start/action", "backup/status/action", "keys/backup/action"],
            ),
            mhsm(
                "6efe6056-5259-49d2-8b3d-d3d73544b20b",
                "Managed HSM Restore",
                &["restore/start/action", "restore/status/action", "keys/restore/action"],
            ),
        ]
    })
}

fn built(
    id: &str,
    name: &str,
    description: &str,
    prefix: &str,
    data: &[&str],
    actions: &[String],
) -> RoleDefinition {
    RoleDefinition {
        id: id.to_owned(),
        role_name: name.to_owned(),
        description: description.to_owned(),
        role_type: RoleType::BuiltIn,
        permissions: vec![Permission {
            actions: actions.to_vec(),
            not_actions: Vec::new(),
            data_actions: data.iter().map(|a| format!("{prefix}{a}")).collect(),
            not_data_actions: Vec::new(),
        }],
        assignable_scopes: vec!["/".to_owned()],
    }
}
