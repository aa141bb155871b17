//! The data-plane RBAC administration API that
//! `azure-keyvault-administration`'s `KeyVaultAccessControlClient` calls:
//! `/{scope}/providers/Microsoft.Authorization/roleDefinitions|roleAssignments`
//! (scope `/`, `/keys`, `/keys/{name}`, …). Parse → authz engine → render;
//! the engine applies separation of duties.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::authorize::Authorized;
use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::JsonBody;
use super::operations::{ADMIN_ASSIGNMENT, ADMIN_ASSIGNMENTS, ADMIN_DEFINITION, ADMIN_DEFINITIONS};
use super::AkvState;
use crate::engine::authz::{
    AssignmentFilter, AssignmentSpec, DefinitionSpec, Permission, RoleAssignment, RoleDefinition,
    RoleType, ScopePath,
};

/// The path segment between a scope and the collection name.
const PROVIDER: &str = "/providers/Microsoft.Authorization/";
/// `id` prefix of role definitions.
const DEFINITION_ID_PREFIX: &str =
    "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/";

/// The administration routes, at every scope the API allows (the tails are
/// the operation table's, so each classifies under any scope).
pub fn routes() -> Router<AkvState> {
    let mut router = Router::new();
    let scopes = [
        "",
        "/keys",
        "/secrets",
        "/certificates",
        "/keys/{name}",
        "/secrets/{name}",
        "/certificates/{name}",
    ];
    for scope in scopes {
        router = router
            .route(
                &format!("{scope}{ADMIN_DEFINITIONS}"),
                get(list_definitions),
            )
            .route(
                &format!("{scope}{ADMIN_DEFINITION}"),
                get(get_definition)
                    .put(put_definition)
                    .delete(delete_definition),
            )
            .route(
                &format!("{scope}{ADMIN_ASSIGNMENTS}"),
                get(list_assignments),
            )
            .route(
                &format!("{scope}{ADMIN_ASSIGNMENT}"),
                get(get_assignment)
                    .put(put_assignment)
                    .delete(delete_assignment),
            );
    }
    router
}

/// The scope and the trailing name of an administration path.
fn scope_and_name(uri: &Uri) -> Result<(ScopePath, Option<String>), ApiError> {
    let path = uri.path();
    let at = path
        .to_ascii_lowercase()
        .find(&PROVIDER.to_ascii_lowercase())
        .ok_or_else(|| ApiError::bad_parameter("Not a role administration path"))?;
    let scope = ScopePath::parse(&path[..at])?;
    let rest = &path[at + PROVIDER.len()..];
    let name = rest.split_once('/').map(|(_, n)| n.to_owned());
    Ok((scope, name))
}

fn named(uri: &Uri) -> Result<(ScopePath, String), ApiError> {
    match scope_and_name(uri)? {
        (scope, Some(name)) if !name.is_empty() => Ok((scope, name)),
        _ => Err(ApiError::bad_parameter("A name is required")),
    }
}

/// `{"value":[...]}` of a listing.
#[derive(Serialize)]
struct Listing<T> {
    value: Vec<T>,
}

/// A role definition as the API renders it.
#[derive(Serialize)]
pub struct DefinitionOut {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    properties: DefinitionProps,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DefinitionProps {
    #[serde(default)]
    role_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "type", default)]
    role_type: Option<String>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    assignable_scopes: Vec<String>,
}

#[derive(Deserialize)]
struct DefinitionIn {
    properties: DefinitionProps,
}

fn render_definition(d: RoleDefinition) -> DefinitionOut {
    DefinitionOut {
        id: format!("{DEFINITION_ID_PREFIX}{}", d.id),
        name: d.id,
        kind: "Microsoft.Authorization/roleDefinitions",
        properties: DefinitionProps {
            role_name: Some(d.role_name),
            description: Some(d.description),
            role_type: Some(
                match d.role_type {
                    RoleType::BuiltIn => "AKVBuiltInRole",
                    RoleType::Custom => "CustomRole",
                }
                .to_owned(),
            ),
            permissions: d.permissions,
            assignable_scopes: d.assignable_scopes,
        },
    }
}

/// A role assignment as the API renders it.
#[derive(Serialize)]
pub struct AssignmentOut {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    properties: AssignmentPropsOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentPropsOut {
    scope: String,
    principal_id: String,
    role_definition_id: String,
    /// Coffer's condition: the assignment applies only to tokens with MFA.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_mfa: bool,
    /// Coffer's condition: the assignment applies only to requests from
    /// these address ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    source_cidrs: Vec<String>,
}

#[derive(Deserialize)]
struct AssignmentIn {
    properties: AssignmentPropsIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentPropsIn {
    role_definition_id: String,
    principal_id: String,
    #[serde(default)]
    require_mfa: bool,
    /// Coffer's extension (absent from the Azure API, so SDK-made
    /// assignments have none): IPv4/IPv6 addresses or CIDRs.
    #[serde(default)]
    source_cidrs: Vec<String>,
}

fn render_assignment(a: RoleAssignment) -> AssignmentOut {
    let scope = ScopePath::parse(&a.scope).unwrap_or_else(|_| ScopePath::root());
    AssignmentOut {
        id: format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            scope.id_prefix(),
            a.name
        ),
        name: a.name,
        kind: "Microsoft.Authorization/roleAssignments",
        properties: AssignmentPropsOut {
            scope: a.scope,
            principal_id: a.principal_id,
            role_definition_id: format!("{DEFINITION_ID_PREFIX}{}", a.role_definition_id),
            require_mfa: a.require_mfa,
            source_cidrs: a.source_cidrs,
        },
    }
}

/// `GET /{scope}/providers/Microsoft.Authorization/roleDefinitions`
async fn list_definitions(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    uri: Uri,
) -> Result<Json<Listing<DefinitionOut>>, ApiError> {
    scope_and_name(&uri)?;
    let defs = st.authz.list_definitions(Some(&ctx.vault)).await?;
    let wanted = definition_filter(ctx.param("$filter"))?;
    Ok(Json(Listing {
        value: defs
            .into_iter()
            .filter(|d| {
                wanted
                    .as_deref()
                    .is_none_or(|n| d.role_name.eq_ignore_ascii_case(n))
            })
            .map(render_definition)
            .collect(),
    }))
}

/// `roleName eq '{name}'`, the one filter of definition listings.
fn definition_filter(filter: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    quoted_after(f, "rolename eq ").map(Some).ok_or_else(|| {
        ApiError::bad_parameter(format!(
            "Unsupported $filter {f:?}: use roleName eq '{{name}}'"
        ))
    })
}

/// The quoted value of `{prefix}'{value}'` (prefix compared case-insensitively).
fn quoted_after(filter: &str, prefix: &str) -> Option<String> {
    let lower = filter.to_ascii_lowercase();
    let rest = lower
        .strip_prefix(prefix)
        .map(|_| &filter[prefix.len()..])?;
    let value = rest.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    Some(value.to_owned())
}

/// `GET .../roleDefinitions/{id}`
async fn get_definition(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    uri: Uri,
) -> Result<Json<DefinitionOut>, ApiError> {
    let (_, id) = named(&uri)?;
    let d = st.authz.get_definition(Some(&ctx.vault), &id).await?;
    Ok(Json(render_definition(d)))
}

/// `PUT .../roleDefinitions/{id}`: 201 with the definition.
async fn put_definition(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    Authorized(actor): Authorized,
    uri: Uri,
    JsonBody(body): JsonBody<DefinitionIn>,
) -> Result<(StatusCode, Json<DefinitionOut>), ApiError> {
    let (scope, id) = named(&uri)?;
    if !scope.is_root() {
        return Err(ApiError::bad_parameter(
            "Role definitions can be created at scope / only",
        ));
    }
    let p = body.properties;
    if p.role_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("CustomRole"))
    {
        return Err(ApiError::bad_parameter(
            "Only roles of type CustomRole can be created",
        ));
    }
    let spec = DefinitionSpec {
        role_name: p.role_name.unwrap_or_default(),
        description: p.description.unwrap_or_default(),
        permissions: p.permissions,
        assignable_scopes: p.assignable_scopes,
    };
    let d = st
        .authz
        .put_definition(&actor, Some(&ctx.vault), &id, spec)
        .await?;
    Ok((StatusCode::CREATED, Json(render_definition(d))))
}

/// `DELETE .../roleDefinitions/{id}`: 200 with the deleted definition.
async fn delete_definition(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    Authorized(actor): Authorized,
    uri: Uri,
) -> Result<Json<DefinitionOut>, ApiError> {
    let (_, id) = named(&uri)?;
    let d = st
        .authz
        .delete_definition(&actor, Some(&ctx.vault), &id)
        .await?;
    Ok(Json(render_definition(d)))
}

/// `GET /{scope}/providers/Microsoft.Authorization/roleAssignments`
/// with `$filter=atScope()` or `principalId eq '{id}'`.
async fn list_assignments(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    uri: Uri,
) -> Result<Json<Listing<AssignmentOut>>, ApiError> {
    let (scope, _) = scope_and_name(&uri)?;
    let filter = assignment_filter(ctx.param("$filter"))?;
    let list = st
        .authz
        .list_assignments(Some(&ctx.vault), &scope, &filter)
        .await?;
    Ok(Json(Listing {
        value: list.into_iter().map(render_assignment).collect(),
    }))
}

fn assignment_filter(filter: Option<&str>) -> Result<AssignmentFilter, ApiError> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(AssignmentFilter::Related);
    };
    if f.eq_ignore_ascii_case("atScope()") {
        return Ok(AssignmentFilter::AtScope);
    }
    if let Some(id) = quoted_after(f, "principalid eq ") {
        return Ok(AssignmentFilter::Principal(id));
    }
    Err(ApiError::bad_parameter(format!(
        "Unsupported $filter {f:?}: use atScope() or principalId eq '{{id}}'"
    )))
}

/// `GET .../roleAssignments/{name}`
async fn get_assignment(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    uri: Uri,
) -> Result<Json<AssignmentOut>, ApiError> {
    let (_, name) = named(&uri)?;
    let a = st.authz.get_assignment(Some(&ctx.vault), &name).await?;
    Ok(Json(render_assignment(a)))
}

/// `PUT .../roleAssignments/{name}`: 201 with the assignment.
async fn put_assignment(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    Authorized(actor): Authorized,
    uri: Uri,
    JsonBody(body): JsonBody<AssignmentIn>,
) -> Result<(StatusCode, Json<AssignmentOut>), ApiError> {
    let (scope, name) = named(&uri)?;
    let p = body.properties;
    let spec = AssignmentSpec {
        scope: scope.as_str().to_owned(),
        principal_id: p.principal_id,
        role_definition_id: p.role_definition_id,
        require_mfa: p.require_mfa,
        source_cidrs: p.source_cidrs,
    };
    let a = st
        .authz
        .put_assignment(&actor, Some(&ctx.vault), &name, spec)
        .await?;
    Ok((StatusCode::CREATED, Json(render_assignment(a))))
}

/// `DELETE .../roleAssignments/{name}`: 200 with the deleted assignment.
async fn delete_assignment(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    Authorized(actor): Authorized,
    uri: Uri,
) -> Result<Json<AssignmentOut>, ApiError> {
    let (_, name) = named(&uri)?;
    let a = st
        .authz
        .delete_assignment(&actor, Some(&ctx.vault), &name)
        .await?;
    Ok(Json(render_assignment(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_scope_and_name() {
        let uri: Uri = "/keys/K1/providers/Microsoft.Authorization/roleAssignments/abc?x=1"
            .parse()
            .unwrap();
        let (scope, name) = scope_and_name(&uri).unwrap();
        assert_eq!((scope.as_str(), name.as_deref()), ("/keys/k1", Some("abc")));
        let uri: Uri = "/providers/Microsoft.Authorization/roleDefinitions"
            .parse()
            .unwrap();
        let (scope, name) = scope_and_name(&uri).unwrap();
        assert_eq!((scope.as_str(), name), ("/", None));
    }

    #[test]
    fn filters_parse_or_are_refused() {
        assert_eq!(assignment_filter(None).unwrap(), AssignmentFilter::Related);
        assert_eq!(
            assignment_filter(Some("atScope()")).unwrap(),
            AssignmentFilter::AtScope
        );
        assert_eq!(
            assignment_filter(Some("principalId eq 'AbC'")).unwrap(),
            AssignmentFilter::Principal("AbC".into())
        );
        assert!(assignment_filter(Some("principalId eq AbC")).is_err());
        assert!(assignment_filter(Some("1 eq 1")).is_err());
        assert_eq!(
            definition_filter(Some("roleName eq 'Key Vault Reader'")).unwrap(),
            Some("Key Vault Reader".into())
        );
    }
}
