//! Which [`Operation`] a Key Vault request is: the route table that
//! authorization, audit and metrics read.
//!
//! A request is classified by its method and the route pattern the router
//! matched (axum's [`MatchedPath`]), never by parsing the path again. A
//! request that classifies as nothing is not a Key Vault operation; callers
//! that gate access must refuse it (fail closed).

use axum::extract::{MatchedPath, Request};
use axum::http::Method;

pub use crate::engine::operation::{Collection, Operation};

/// One row of the route table: method, axum route pattern, operation.
pub type Route = (Method, &'static str, Operation);

/// The route table of the Key Vault data plane. Route patterns are exactly
/// the strings registered with the router (an empty version segment,
/// `/keys/{name}//sign`, means the latest version). The administration rows
/// hold only the tail of their pattern: they classify under any scope.
pub static ROUTES: &[Route] = &[
    (Method::GET, "/secrets", Operation::SecretList),
    (Method::POST, "/secrets/restore", Operation::SecretRestore),
    // A secret may be called "restore": only POST is the restore route.
    (Method::PUT, "/secrets/restore", Operation::SecretSet),
    (Method::GET, "/secrets/restore", Operation::SecretGet),
    (Method::DELETE, "/secrets/restore", Operation::SecretDelete),
    (Method::PUT, "/secrets/{name}", Operation::SecretSet),
    (Method::GET, "/secrets/{name}", Operation::SecretGet),
    (Method::DELETE, "/secrets/{name}", Operation::SecretDelete),
    (Method::GET, "/secrets/{name}/", Operation::SecretGet),
    (Method::PATCH, "/secrets/{name}/", Operation::SecretUpdate),
    (
        Method::GET,
        "/secrets/{name}/versions",
        Operation::SecretListVersions,
    ),
    (
        Method::POST,
        "/secrets/{name}/backup",
        Operation::SecretBackup,
    ),
    (
        Method::GET,
        "/secrets/{name}/{version}",
        Operation::SecretGet,
    ),
    (
        Method::PATCH,
        "/secrets/{name}/{version}",
        Operation::SecretUpdate,
    ),
    (Method::GET, "/deletedsecrets", Operation::SecretListDeleted),
    (
        Method::GET,
        "/deletedsecrets/{name}",
        Operation::SecretGetDeleted,
    ),
    (
        Method::DELETE,
        "/deletedsecrets/{name}",
        Operation::SecretPurge,
    ),
    (
        Method::POST,
        "/deletedsecrets/{name}/recover",
        Operation::SecretRecover,
    ),
    (Method::GET, "/keys", Operation::KeyList),
    (Method::POST, "/keys/restore", Operation::KeyRestore),
    (Method::POST, "/rng", Operation::KeyGetRandomBytes),
    (Method::PUT, "/keys/{name}", Operation::KeyImport),
    (Method::GET, "/keys/{name}", Operation::KeyGet),
    (Method::DELETE, "/keys/{name}", Operation::KeyDelete),
    (Method::GET, "/keys/{name}/", Operation::KeyGet),
    (Method::PATCH, "/keys/{name}/", Operation::KeyUpdate),
    (Method::POST, "/keys/{name}/create", Operation::KeyCreate),
    (Method::POST, "/keys/{name}/rotate", Operation::KeyRotate),
    (Method::POST, "/keys/{name}/backup", Operation::KeyBackup),
    (
        Method::GET,
        "/keys/{name}/versions",
        Operation::KeyListVersions,
    ),
    (
        Method::GET,
        "/keys/{name}/rotationpolicy",
        Operation::KeyRotationPolicyGet,
    ),
    (
        Method::PUT,
        "/keys/{name}/rotationpolicy",
        Operation::KeyRotationPolicySet,
    ),
    (Method::GET, "/keys/{name}/{version}", Operation::KeyGet),
    (
        Method::PATCH,
        "/keys/{name}/{version}",
        Operation::KeyUpdate,
    ),
    (
        Method::GET,
        "/keys/{name}/{version}/attestation",
        Operation::KeyGetAttestation,
    ),
    (
        Method::POST,
        "/keys/{name}/{version}/encrypt",
        Operation::KeyEncrypt,
    ),
    (Method::POST, "/keys/{name}//encrypt", Operation::KeyEncrypt),
    (
        Method::POST,
        "/keys/{name}/{version}/decrypt",
        Operation::KeyDecrypt,
    ),
    (Method::POST, "/keys/{name}//decrypt", Operation::KeyDecrypt),
    (
        Method::POST,
        "/keys/{name}/{version}/wrapkey",
        Operation::KeyWrap,
    ),
    (Method::POST, "/keys/{name}//wrapkey", Operation::KeyWrap),
    (
        Method::POST,
        "/keys/{name}/{version}/unwrapkey",
        Operation::KeyUnwrap,
    ),
    (
        Method::POST,
        "/keys/{name}//unwrapkey",
        Operation::KeyUnwrap,
    ),
    (
        Method::POST,
        "/keys/{name}/{version}/sign",
        Operation::KeySign,
    ),
    (Method::POST, "/keys/{name}//sign", Operation::KeySign),
    (
        Method::POST,
        "/keys/{name}/{version}/verify",
        Operation::KeyVerify,
    ),
    (Method::POST, "/keys/{name}//verify", Operation::KeyVerify),
    (
        Method::POST,
        "/keys/{name}/{version}/release",
        Operation::KeyRelease,
    ),
    (Method::POST, "/keys/{name}//release", Operation::KeyRelease),
    (Method::GET, "/deletedkeys", Operation::KeyListDeleted),
    (Method::GET, "/deletedkeys/{name}", Operation::KeyGetDeleted),
    (Method::DELETE, "/deletedkeys/{name}", Operation::KeyPurge),
    (
        Method::POST,
        "/deletedkeys/{name}/recover",
        Operation::KeyRecover,
    ),
    (
        Method::PUT,
        "/keys/{name}/restore",
        Operation::KeyRestoreFromFullBackup,
    ),
    (Method::GET, "/certificates", Operation::CertificateList),
    (
        Method::POST,
        "/certificates/restore",
        Operation::CertificateRestore,
    ),
    (
        Method::GET,
        "/certificates/contacts",
        Operation::CertificateContactsGet,
    ),
    (
        Method::PUT,
        "/certificates/contacts",
        Operation::CertificateContactsSet,
    ),
    (
        Method::DELETE,
        "/certificates/contacts",
        Operation::CertificateContactsDelete,
    ),
    (
        Method::GET,
        "/certificates/issuers",
        Operation::CertificateIssuersList,
    ),
    (
        Method::GET,
        "/certificates/issuers/{issuer}",
        Operation::CertificateIssuerGet,
    ),
    (
        Method::PUT,
        "/certificates/issuers/{issuer}",
        Operation::CertificateIssuerSet,
    ),
    (
        Method::PATCH,
        "/certificates/issuers/{issuer}",
        Operation::CertificateIssuerUpdate,
    ),
    (
        Method::DELETE,
        "/certificates/issuers/{issuer}",
        Operation::CertificateIssuerDelete,
    ),
    (
        Method::GET,
        "/certificates/{name}",
        Operation::CertificateGet,
    ),
    (
        Method::DELETE,
        "/certificates/{name}",
        Operation::CertificateDelete,
    ),
    (
        Method::GET,
        "/certificates/{name}/",
        Operation::CertificateGet,
    ),
    (
        Method::PATCH,
        "/certificates/{name}/",
        Operation::CertificateUpdate,
    ),
    (
        Method::POST,
        "/certificates/{name}/create",
        Operation::CertificateCreate,
    ),
    (
        Method::POST,
        "/certificates/{name}/import",
        Operation::CertificateImport,
    ),
    (
        Method::GET,
        "/certificates/{name}/versions",
        Operation::CertificateListVersions,
    ),
    (
        Method::POST,
        "/certificates/{name}/backup",
        Operation::CertificateBackup,
    ),
    (
        Method::GET,
        "/certificates/{name}/policy",
        Operation::CertificatePolicyGet,
    ),
    (
        Method::PATCH,
        "/certificates/{name}/policy",
        Operation::CertificatePolicyUpdate,
    ),
    (
        Method::GET,
        "/certificates/{name}/pending",
        Operation::CertificatePendingGet,
    ),
    (
        Method::PATCH,
        "/certificates/{name}/pending",
        Operation::CertificatePendingUpdate,
    ),
    (
        Method::DELETE,
        "/certificates/{name}/pending",
        Operation::CertificatePendingDelete,
    ),
    (
        Method::POST,
        "/certificates/{name}/pending/merge",
        Operation::CertificatePendingMerge,
    ),
    (
        Method::GET,
        "/certificates/{name}/{version}",
        Operation::CertificateGet,
    ),
    (
        Method::PATCH,
        "/certificates/{name}/{version}",
        Operation::CertificateUpdate,
    ),
    (
        Method::GET,
        "/deletedcertificates",
        Operation::CertificateListDeleted,
    ),
    (
        Method::GET,
        "/deletedcertificates/{name}",
        Operation::CertificateGetDeleted,
    ),
    (
        Method::DELETE,
        "/deletedcertificates/{name}",
        Operation::CertificatePurge,
    ),
    (
        Method::POST,
        "/deletedcertificates/{name}/recover",
        Operation::CertificateRecover,
    ),
    // Coffer's CA, outside the Key Vault namespace: the vault is the
    // path's `{vault}`, not the Host's.
    (
        Method::POST,
        "/v1/pki/{vault}/{issuer}/revoke",
        Operation::CertificateRevoke,
    ),
    (
        Method::GET,
        "/v1/pki/{vault}/{issuer}/revocations",
        Operation::CertificateRevocationsList,
    ),
    (Method::POST, "/backup", Operation::BackupStart),
    (Method::POST, "/prebackup", Operation::BackupStart),
    (
        Method::GET,
        "/backup/{job}/pending",
        Operation::BackupStatus,
    ),
    (Method::PUT, "/restore", Operation::RestoreStart),
    (Method::PUT, "/prerestore", Operation::RestoreStart),
    (
        Method::GET,
        "/restore/{job}/pending",
        Operation::RestoreStatus,
    ),
    (Method::GET, "/settings", Operation::SettingsGet),
    (Method::GET, "/settings/{name}", Operation::SettingsGet),
    (Method::PATCH, "/settings/{name}", Operation::SettingsUpdate),
    (
        Method::GET,
        ADMIN_DEFINITIONS,
        Operation::RoleDefinitionList,
    ),
    (Method::GET, ADMIN_DEFINITION, Operation::RoleDefinitionGet),
    (Method::PUT, ADMIN_DEFINITION, Operation::RoleDefinitionSet),
    (
        Method::DELETE,
        ADMIN_DEFINITION,
        Operation::RoleDefinitionDelete,
    ),
    (
        Method::GET,
        ADMIN_ASSIGNMENTS,
        Operation::RoleAssignmentList,
    ),
    (Method::GET, ADMIN_ASSIGNMENT, Operation::RoleAssignmentGet),
    (
        Method::PUT,
        ADMIN_ASSIGNMENT,
        Operation::RoleAssignmentCreate,
    ),
    (
        Method::DELETE,
        ADMIN_ASSIGNMENT,
        Operation::RoleAssignmentDelete,
    ),
];

/// Tail of the role-definition collection route, under any scope
/// (`/providers/…`, `/keys/providers/…`, `/keys/{name}/providers/…`).
pub const ADMIN_DEFINITIONS: &str = "/providers/Microsoft.Authorization/roleDefinitions";
/// Tail of one role definition's route.
pub const ADMIN_DEFINITION: &str = "/providers/Microsoft.Authorization/roleDefinitions/{id}";
/// Tail of the role-assignment collection route.
pub const ADMIN_ASSIGNMENTS: &str = "/providers/Microsoft.Authorization/roleAssignments";
/// Tail of one role assignment's route.
pub const ADMIN_ASSIGNMENT: &str = "/providers/Microsoft.Authorization/roleAssignments/{name}";

/// The operation of `method` on the route `pattern`. The administration
/// routes classify under any scope prefix: their pattern is the scope's
/// pattern followed by one of the `ADMIN_*` tails.
pub fn classify(method: &Method, pattern: &str) -> Option<Operation> {
    let exact = ROUTES
        .iter()
        .find(|(m, p, _)| m == method && *p == pattern)
        .map(|(_, _, op)| *op);
    exact.or_else(|| {
        let tail = pattern.find("/providers/Microsoft.Authorization/")?;
        let tail = &pattern[tail..];
        ROUTES
            .iter()
            .find(|(m, p, _)| m == method && *p == tail)
            .map(|(_, _, op)| *op)
    })
}

/// The operation of a routed request, or `None` when the router matched no
/// Key Vault route (middleware outside the router) or the route is not in
/// the table.
pub fn of(req: &Request) -> Option<Operation> {
    let pattern = req.extensions().get::<MatchedPath>()?;
    classify(req.method(), pattern.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_is_unique() {
        let rows = ROUTES;
        let keys: HashSet<_> = rows.iter().map(|(m, p, _)| (m.clone(), *p)).collect();
        assert_eq!(keys.len(), rows.len());
    }

    #[test]
    fn every_routed_operation_has_a_row() {
        let rows = ROUTES;
        let internal = [
            Operation::KeyRotateIfDue,
            Operation::CertificateEnroll,
            Operation::CertificateRenew,
        ];
        for op in Operation::ALL {
            let routed = rows.iter().any(|(_, _, o)| o == op);
            assert_eq!(routed, !internal.contains(op), "{op}");
        }
    }

    #[test]
    fn administration_routes_classify_under_every_scope() {
        for scope in ["", "/keys", "/keys/{name}", "/{scope}/{name}"] {
            let p = format!("{scope}{ADMIN_ASSIGNMENT}");
            assert_eq!(
                classify(&Method::PUT, &p),
                Some(Operation::RoleAssignmentCreate)
            );
        }
        assert_eq!(classify(&Method::POST, ADMIN_ASSIGNMENT), None);
        assert_eq!(classify(&Method::GET, "/nothing"), None);
    }
}
