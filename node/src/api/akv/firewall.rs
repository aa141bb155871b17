//! Vault network rules (`coffer operator vault network …`), enforced in
//! front of authentication: a request from an address the vault's rules do
//! not allow is refused with 403 `ForbiddenByFirewall` before its token is
//! verified, so a blocked network cannot make the node spend signature
//! checks (or lockout counters) on it. A request without any credential
//! still gets the 401 challenge first, as from Key Vault: it reveals
//! nothing, and the SDKs' first request is always one.
//!
//! The client address is the TCP peer. `X-Forwarded-For` is believed only
//! when the peer is a configured proxy (`[server] trusted_proxies`), and
//! then only up to the first hop that is not itself a trusted proxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use super::context::request_vault;
use super::errors::ApiError;
use crate::api::auth::bearer_token;
use crate::engine::network::{Bypass, NetworkAcls};
use crate::engine::vaults::VaultsEngine;
use crate::operator::Operator;

/// The client address of a request as the network rules judge it, in the
/// request's extensions for the checks after authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// What the firewall needs.
#[derive(Clone)]
pub struct FirewallState {
    /// Vault records (their network rules).
    pub vaults: Arc<VaultsEngine>,
    /// Seal state and the root token (the operator bypass).
    pub operator: Arc<Operator>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<IpNet>>,
    /// `{vault}.{vault_domain}` hosts select `{vault}`.
    pub vault_domain: Option<String>,
    /// Vault of requests whose Host does not name one.
    pub default_vault: String,
}

/// The client address: the TCP peer, or — when the peer is a trusted
/// proxy — the nearest `X-Forwarded-For` hop that is not one. A malformed
/// hop ends the walk at the proxy that sent it.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_proxy = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    let mut client = peer.to_canonical();
    if !is_proxy(&client) {
        return client;
    }
    // Hops are appended left to right, so the nearest is the last one; every
    // header line counts, in order.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(addr) => {
                client = addr.to_canonical();
                if !is_proxy(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// The client address of `req`: the [`ClientAddr`] already resolved for
/// it, else [`client_addr`] of its TCP peer (loopback for in-process
/// routers without a listener: unit tests).
pub fn client_of(req: &Request, trusted: &[IpNet]) -> IpAddr {
    if let Some(ClientAddr(addr)) = req.extensions().get::<ClientAddr>() {
        return *addr;
    }
    let peer = match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => addr.ip(),
        None => IpAddr::from([127, 0, 0, 1]),
    };
    client_addr(peer, req.headers(), trusted)
}

/// The outermost layer of every route: resolves the request's client
/// address once, so the network rules, application CIDR bindings, the
/// token endpoint and the audit record all judge and name the same client.
pub async fn resolve_client(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = client_of(&req, &trusted);
    req.extensions_mut().insert(ClientAddr(client));
    next.run(req).await
}

/// The vault's rules allow `addr`, or the request has no rules to pass.
pub fn allowed(acls: Option<&NetworkAcls>, addr: IpAddr) -> bool {
    acls.is_none_or(|a| a.allows(addr))
}

/// The middleware: pass, or 403 `ForbiddenByFirewall`.
pub async fn firewall(State(st): State<FirewallState>, mut req: Request, next: Next) -> Response {
    let client = client_of(&req, &st.trusted_proxies);
    req.extensions_mut().insert(ClientAddr(client));
    // A sealed node answers 503 (authentication says so); it cannot read
    // the rules anyway. A request without a credential gets the challenge.
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let Some(token) = token else {
        return next.run(req).await;
    };
    if st.operator.is_sealed() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let vault = match request_vault(&parts, st.vault_domain.as_deref(), &st.default_vault) {
        Ok(vault) => vault,
        Err(e) => return e.into_response(),
    };
    let req = Request::from_parts(parts, body);
    let acls = match st.vaults.get_local(&vault) {
        Ok(info) => info.and_then(|v| v.network_acls),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if allowed(acls.as_ref(), client) {
        return next.run(req).await;
    }
    // The operator bypass: the root token is a hash lookup, no signature.
    let bypass = acls.as_ref().is_some_and(|a| a.bypass == Bypass::Operator);
    if bypass && token.split('.').count() != 3 {
        if let Ok(Some(_)) = st.operator.verify_token(&token) {
            tracing::info!(%client, vault, "network rules bypassed with the root token");
            return next.run(req).await;
        }
    }
    tracing::info!(%client, vault, "request refused by the vault's network rules");
    ApiError::forbidden_by_firewall(&client.to_string(), "(not authenticated)", &vault)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/30".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ];
        // A client that is no proxy: its header is its own claim, ignored.
        let forged = headers(&["10.9.9.9"]);
        assert_eq!(
            client_addr(ip("203.0.113.7"), &forged, &trusted),
            ip("203.0.113.7")
        );
        // Through one proxy: the hop it appended.
        let one = headers(&["198.51.100.1"]);
        assert_eq!(
            client_addr(ip("10.0.0.1"), &one, &trusted),
            ip("198.51.100.1")
        );
        // A client forging hops in front of a real proxy gets only the hop the
        // proxy appended (the nearest untrusted one).
        let chain = headers(&["10.0.0.2, 192.0.2.1", "198.51.100.2, 10.0.0.2"]);
        assert_eq!(
            client_addr(ip("10.0.0.1"), &chain, &trusted),
            ip("198.51.100.2")
        );
        // IPv6 proxy, IPv4-mapped client.
        let mapped = headers(&["::ffff:192.0.2.9"]);
        assert_eq!(
            client_addr(ip("fd00::1"), &mapped, &trusted),
            ip("192.0.2.9")
        );
        // Garbage stops at the proxy; no header: the proxy itself.
        let junk = headers(&["not-an-ip"]);
        assert_eq!(client_addr(ip("10.0.0.1"), &junk, &trusted), ip("10.0.0.1"));
        assert_eq!(
            client_addr(ip("10.0.0.1"), &headers(&[]), &trusted),
            ip("10.0.0.1")
        );
        // No trusted proxies at all: always the peer.
        assert_eq!(client_addr(ip("10.0.0.1"), &one, &[]), ip("10.0.0.1"));
    }
}
