//! The leader's look at the other members for `sealed` alert rules: each
//! member's `/v1/sys/seal-status` (public, like Vault's) over HTTPS,
//! trusting the cluster CA that issued the members' certificates.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::send::{http_client, HttpClient, SendError};
use crate::cluster::PeerInfo;

/// How long one member may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks members whether they are sealed.
#[derive(Clone)]
pub struct SealProbe {
    http: HttpClient,
}

impl SealProbe {
    /// A probe trusting `ca_pem` (the cluster CA) besides the system roots.
    pub fn new(ca_pem: Option<&str>) -> Result<Self, SendError> {
        Ok(Self {
            http: http_client(ca_pem)?,
        })
    }

    /// The ids of the members of `peers` other than `me` that answer as
    /// sealed. A member that does not answer is not counted (it is down,
    /// not sealed; Raft health covers that).
    pub async fn sealed(&self, peers: &[PeerInfo], me: u64) -> Vec<u64> {
        let asks = peers
            .iter()
            .filter(|p| p.node_id != me)
            .map(|p| async move { self.is_sealed(&p.api_addr).await.then_some(p.node_id) });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn is_sealed(&self, api_addr: &str) -> bool {
        let url = format!("https://{api_addr}/v1/sys/seal-status");
        let Ok(req) = hyper::Request::get(url).body(Full::new(Bytes::new())) else {
            return false;
        };
        let exchange = async {
            let resp = self.http.request(req).await.ok()?;
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            v["sealed"].as_bool()
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, exchange).await,
            Ok(Some(true))
        )
    }
}
