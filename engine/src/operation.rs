//! The operations of the Key Vault data plane, named once.
//!
//! Every request the Key Vault API serves is exactly one [`Operation`]. The
//! operation carries the two names the rest of the house needs: the
//! `operationName` of an Azure `AuditEvent` record and the RBAC `dataAction`
//! a caller must hold. Authorization, audit and metrics all read them from
//! here, so a new route is named in one place (the API's route table maps
//! method and path to an operation; this module knows nothing of HTTP).
//!
//! Names and actions follow `akv/CERTS-AND-MONITORING.md` §9 and
//! `akv/IDENTITY.md` §7. Where the real service has no action for a Coffer
//! route (`/rng`, settings, the administration API on a vault rather than a
//! Managed HSM) the action is formed the same way under the vault prefix.

/// Prefix of every vault dataAction.
pub const DATA_ACTION_PREFIX: &str = "Microsoft.KeyVault/vaults/";

macro_rules! operations {
    ($( $(#[$doc:meta])* $op:ident => $action:literal, $collection:ident; )*) => {
        /// One operation of the Key Vault data plane (see the module docs).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $( $(#[$doc])* $op, )*
        }

        impl Operation {
            /// Every operation, in declaration order.
            pub const ALL: &'static [Operation] = &[$(Operation::$op,)*];

            /// The `operationName` of the operation's audit record
            /// (`SecretGet`, `KeySign`, …).
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$op => stringify!($op),)*
                }
            }

            /// The RBAC dataAction the caller must hold, without the
            /// [`DATA_ACTION_PREFIX`] (`secrets/getSecret/action`).
            pub fn action(self) -> &'static str {
                match self {
                    $(Operation::$op => $action,)*
                }
            }

            /// Which collection of a vault the operation acts on; the scope
            /// of an RBAC check is the vault, this collection, or one object in it.
            pub fn collection(self) -> Collection {
                match self {
                    $(Operation::$op => Collection::$collection,)*
                }
            }
        }
    };
}

/// The collection an operation acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `/secrets/{name}`.
    Secrets,
    /// `/keys/{name}`.
    Keys,
    /// `/certificates/{name}`.
    Certificates,
    /// Role definitions and assignments, backup, restore, settings, `/rng`:
    /// scoped to the whole vault.
    Vault,
}

impl Collection {
    /// The scope segment of the collection (`/secrets`), or `None` for
    /// vault-wide operations.
    pub fn scope(self) -> Option<&'static str> {
        match self {
            Collection::Secrets => Some("/secrets"),
            Collection::Keys => Some("/keys"),
            Collection::Certificates => Some("/certificates"),
            Collection::Vault => None,
        }
    }
}

operations! {
    /// `PUT /secrets/{name}`.
    SecretSet => "secrets/setSecret/action", Secrets;
    /// `GET /secrets/{name}[/{version}]`: the value.
    SecretGet => "secrets/getSecret/action", Secrets;
    /// `PATCH /secrets/{name}/{version}`.
    SecretUpdate => "secrets/update/action", Secrets;
    /// `DELETE /secrets/{name}`.
    SecretDelete => "secrets/delete", Secrets;
    /// `GET /secrets`: metadata only.
    SecretList => "secrets/readMetadata/action", Secrets;
    /// `GET /secrets/{name}/versions`.
    SecretListVersions => "secrets/readMetadata/action", Secrets;
    /// `POST /secrets/{name}/backup`.
    SecretBackup => "secrets/backup/action", Secrets;
    /// `POST /secrets/restore`.
    SecretRestore => "secrets/restore/action", Secrets;
    /// `GET /deletedsecrets/{name}`.
    SecretGetDeleted => "secrets/readMetadata/action", Secrets;
    /// `GET /deletedsecrets`.
    SecretListDeleted => "secrets/readMetadata/action", Secrets;
    /// `DELETE /deletedsecrets/{name}`.
    SecretPurge => "secrets/purge/action", Secrets;
    /// `POST /deletedsecrets/{name}/recover`.
    SecretRecover => "secrets/recover/action", Secrets;

    /// `POST /keys/{name}/create`.
    KeyCreate => "keys/create/action", Keys;
    /// `PUT /keys/{name}`.
    KeyImport => "keys/import/action", Keys;
    /// `GET /keys/{name}[/{version}]`.
    KeyGet => "keys/read", Keys;
    /// `PATCH /keys/{name}/{version}`.
    KeyUpdate => "keys/update/action", Keys;
    /// `DELETE /keys/{name}`.
    KeyDelete => "keys/delete", Keys;
    /// `GET /keys`.
    KeyList => "keys/read", Keys;
    /// `GET /keys/{name}/versions`.
    KeyListVersions => "keys/read", Keys;
    /// `POST /keys/{name}/{version}/encrypt`.
    KeyEncrypt => "keys/encrypt/action", Keys;
    /// `POST /keys/{name}/{version}/decrypt`.
    KeyDecrypt => "keys/decrypt/action", Keys;
    /// `POST /keys/{name}/{version}/sign`.
    KeySign => "keys/sign/action", Keys;
    /// `POST /keys/{name}/{version}/verify`.
    KeyVerify => "keys/verify/action", Keys;
    /// `POST /keys/{name}/{version}/wrapkey`.
    KeyWrap => "keys/wrap/action", Keys;
    /// `POST /keys/{name}/{version}/unwrapkey`.
    KeyUnwrap => "keys/unwrap/action", Keys;
    /// `POST /keys/{name}/backup`.
    KeyBackup => "keys/backup/action", Keys;
    /// `POST /keys/restore`.
    KeyRestore => "keys/restore/action", Keys;
    /// `PUT /keys/{name}/restore`: one key from a full backup's folder
    /// (scoped to that key, like the blob restore it performs).
    KeyRestoreFromFullBackup => "keys/restore/action", Keys;
    /// `GET /deletedkeys/{name}`.
    KeyGetDeleted => "keys/read", Keys;
    /// `GET /deletedkeys`.
    KeyListDeleted => "keys/read", Keys;
    /// `DELETE /deletedkeys/{name}`.
    KeyPurge => "keys/purge/action", Keys;
    /// `POST /deletedkeys/{name}/recover`.
    KeyRecover => "keys/recover/action", Keys;
    /// `POST /keys/{name}/rotate`.
    KeyRotate => "keys/rotate/action", Keys;
    /// Rotation by the key's own policy (leader work, no route).
    KeyRotateIfDue => "keys/rotate/action", Keys;
    /// `GET /keys/{name}/rotationpolicy`.
    KeyRotationPolicyGet => "keyrotationpolicies/read", Keys;
    /// `PUT /keys/{name}/rotationpolicy`.
    KeyRotationPolicySet => "keyrotationpolicies/write", Keys;
    /// `POST /keys/{name}/{version}/release`.
    KeyRelease => "keys/release/action", Keys;
    /// `GET /keys/{name}/{version}/attestation`.
    KeyGetAttestation => "keys/read", Keys;
    /// `POST /rng` (a Managed HSM action; vaults have none).
    KeyGetRandomBytes => "rng/action", Vault;

    /// `POST /certificates/{name}/create`.
    CertificateCreate => "certificates/create/action", Certificates;
    /// `POST /certificates/{name}/import`.
    CertificateImport => "certificates/import/action", Certificates;
    /// `GET /certificates/{name}[/{version}]`.
    CertificateGet => "certificates/read", Certificates;
    /// `PATCH /certificates/{name}/{version}`.
    CertificateUpdate => "certificates/update/action", Certificates;
    /// `DELETE /certificates/{name}`.
    CertificateDelete => "certificates/delete", Certificates;
    /// `GET /certificates`.
    CertificateList => "certificates/read", Certificates;
    /// `GET /certificates/{name}/versions`.
    CertificateListVersions => "certificates/read", Certificates;
    /// `POST /certificates/{name}/backup`.
    CertificateBackup => "certificates/backup/action", Certificates;
    /// `POST /certificates/restore`.
    CertificateRestore => "certificates/restore/action", Certificates;
    /// `GET /deletedcertificates/{name}`.
    CertificateGetDeleted => "certificates/read", Certificates;
    /// `GET /deletedcertificates`.
    CertificateListDeleted => "certificates/read", Certificates;
    /// `DELETE /deletedcertificates/{name}`.
    CertificatePurge => "certificates/purge/action", Certificates;
    /// `POST /deletedcertificates/{name}/recover`.
    CertificateRecover => "certificates/recover/action", Certificates;
    /// `GET /certificates/{name}/policy`.
    CertificatePolicyGet => "certificates/read", Certificates;
    /// `PATCH /certificates/{name}/policy`.
    CertificatePolicyUpdate => "certificates/update/action", Certificates;
    /// `GET /certificates/{name}/pending`.
    CertificatePendingGet => "certificates/read", Certificates;
    /// `PATCH /certificates/{name}/pending` (cancel).
    CertificatePendingUpdate => "certificates/update/action", Certificates;
    /// `DELETE /certificates/{name}/pending`.
    CertificatePendingDelete => "certificates/delete", Certificates;
    /// `POST /certificates/{name}/pending/merge`: completes a create.
    CertificatePendingMerge => "certificates/create/action", Certificates;
    /// `GET /certificates/contacts`.
    CertificateContactsGet => "certificates/read", Certificates;
    /// `PUT /certificates/contacts`.
    CertificateContactsSet => "certificatecontacts/write", Certificates;
    /// `DELETE /certificates/contacts`.
    CertificateContactsDelete => "certificatecontacts/write", Certificates;
    /// `GET /certificates/issuers/{issuer}`.
    CertificateIssuerGet => "certificatecas/read", Certificates;
    /// `PUT /certificates/issuers/{issuer}`.
    CertificateIssuerSet => "certificatecas/write", Certificates;
    /// `PATCH /certificates/issuers/{issuer}`.
    CertificateIssuerUpdate => "certificatecas/write", Certificates;
    /// `DELETE /certificates/issuers/{issuer}`.
    CertificateIssuerDelete => "certificatecas/delete", Certificates;
    /// `GET /certificates/issuers`.
    CertificateIssuersList => "certificatecas/read", Certificates;
    /// `POST /v1/pki/{vault}/{issuer}/revoke`: revokes a certificate a
    /// `Coffer` issuer made. Coffer's own action (Key Vault has no private
    /// CA); `certificates/*` grants it, so Certificates Officer and
    /// Administrator hold it.
    CertificateRevoke => "certificates/revoke/action", Certificates;
    /// `GET /v1/pki/{vault}/{issuer}/revocations`: what the issuer revoked
    /// (the CRL publishes the same to anyone).
    CertificateRevocationsList => "certificates/read", Certificates;
    /// Issuance by an issuer (internal, no route).
    CertificateEnroll => "certificates/create/action", Certificates;
    /// Automatic renewal by a lifetime action (internal, no route).
    CertificateRenew => "certificates/create/action", Certificates;

    /// `GET {scope}/providers/Microsoft.Authorization/roleDefinitions`.
    RoleDefinitionList => "roleDefinitions/read/action", Vault;
    /// `GET …/roleDefinitions/{id}`.
    RoleDefinitionGet => "roleDefinitions/read/action", Vault;
    /// `PUT …/roleDefinitions/{id}`.
    RoleDefinitionSet => "roleDefinitions/write/action", Vault;
    /// `DELETE …/roleDefinitions/{id}`.
    RoleDefinitionDelete => "roleDefinitions/delete/action", Vault;
    /// `GET {scope}/providers/Microsoft.Authorization/roleAssignments`.
    RoleAssignmentList => "roleAssignments/read/action", Vault;
    /// `GET …/roleAssignments/{name}`.
    RoleAssignmentGet => "roleAssignments/read/action", Vault;
    /// `PUT …/roleAssignments/{name}`.
    RoleAssignmentCreate => "roleAssignments/write/action", Vault;
    /// `DELETE …/roleAssignments/{name}`.
    RoleAssignmentDelete => "roleAssignments/delete/action", Vault;
    /// `POST /backup` and `POST /prebackup`.
    BackupStart => "backup/start/action", Vault;
    /// `GET /backup/{job}/pending`.
    BackupStatus => "backup/status/action", Vault;
    /// `PUT /restore` and `PUT /prerestore`.
    RestoreStart => "restore/start/action", Vault;
    /// `GET /restore/{job}/pending`.
    RestoreStatus => "restore/status/action", Vault;
    /// `GET /settings` and `GET /settings/{name}`.
    SettingsGet => "settings/read/action", Vault;
    /// `PATCH /settings/{name}`.
    SettingsUpdate => "settings/write/action", Vault;
}

impl Operation {
    /// The operation whose `operationName` is `name` (as audit records
    /// carry it).
    pub fn named(name: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// Whether the operation reads a secret's value or a key, or uses a key
    /// (its dataAction is a read, `getSecret`, or a cryptographic use):
    /// what "first access" rules watch.
    pub fn reads_or_uses_object(self) -> bool {
        let action = self.action();
        // `keys/read`, not `keyrotationpolicies/read`: a policy is no key.
        matches!(self.collection(), Collection::Secrets | Collection::Keys)
            && (action == "keys/read"
                || action == "secrets/getSecret/action"
                || [
                    "encrypt", "decrypt", "sign", "verify", "wrap", "unwrap", "release",
                ]
                .iter()
                .any(|use_| action == format!("keys/{use_}/action")))
    }

    /// The full dataAction (`Microsoft.KeyVault/vaults/keys/sign/action`).
    pub fn data_action(self) -> String {
        format!("{DATA_ACTION_PREFIX}{}", self.action())
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_follow_the_audit_schema() {
        let names: HashSet<_> = Operation::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
        assert_eq!(Operation::SecretGet.name(), "SecretGet");
        assert_eq!(
            Operation::CertificateIssuersList.name(),
            "CertificateIssuersList"
        );
    }

    #[test]
    fn reads_and_key_uses_are_told_from_writes_and_metadata() {
        for op in [
            Operation::SecretGet,
            Operation::KeyGet,
            Operation::KeySign,
            Operation::KeyUnwrap,
            Operation::KeyRelease,
        ] {
            assert!(op.reads_or_uses_object(), "{op}");
        }
        for op in [
            Operation::SecretSet,
            Operation::SecretList,
            Operation::SecretBackup,
            Operation::KeyDelete,
            Operation::KeyRotationPolicySet,
            Operation::KeyRotationPolicyGet,
            Operation::CertificateGet,
            Operation::KeyGetRandomBytes,
        ] {
            assert!(!op.reads_or_uses_object(), "{op}");
        }
        assert_eq!(Operation::named("KeySign"), Some(Operation::KeySign));
        assert_eq!(Operation::named("keysign"), None);
    }

    #[test]
    fn actions_carry_the_vault_prefix_and_match_their_collection() {
        assert_eq!(
            Operation::KeySign.data_action(),
            "Microsoft.KeyVault/vaults/keys/sign/action"
        );
        for op in Operation::ALL {
            let action = op.action();
            assert!(!action.starts_with('/') && !action.ends_with('/'), "{op}");
            // An action on a collection names that collection's resource
            // types, so a role scoped to `/keys` never grants a secret action.
            let head = action.split('/').next().unwrap_or_default();
            let expected: &[&str] = match op.collection() {
                Collection::Secrets => &["secrets"],
                Collection::Keys => &["keys", "keyrotationpolicies"],
                Collection::Certificates => {
                    &["certificates", "certificatecas", "certificatecontacts"]
                }
                Collection::Vault => &[
                    "rng",
                    "roleDefinitions",
                    "roleAssignments",
                    "backup",
                    "restore",
                    "settings",
                ],
            };
            assert!(expected.contains(&head), "{op}: {action}");
        }
    }
}
