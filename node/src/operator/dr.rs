//! Disaster recovery on this node: the DR operation token and `dr promote`.
//!
//! A DR operation token is made by the generate-root ceremony (same OTP or
//! OpenPGP delivery, same quorum of unseal or recovery shares) started with
//! the policy [`DR_OPERATION_POLICY`]. Unlike a root token it is not written
//! through Raft — on a DR site whose primary is lost there is no leader to
//! write it — but kept on the node that ran the ceremony, in memory, as a
//! digest, and it is good for one promotion of that node.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::custody::lock;
use super::{Operator, OperatorError};
use crate::cluster::{ClusterError, DrStatus};
use crate::engine::store::StoreError;

/// Policy of a generate-root ceremony that makes a DR operation token.
pub const DR_OPERATION_POLICY: &str = "dr-operation";

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

fn cluster_error(e: ClusterError) -> OperatorError {
    match e {
        ClusterError::Invalid(m) => OperatorError::BadRequest(m),
        other => OperatorError::Store(StoreError::Unavailable(other.to_string())),
    }
}

impl Operator {
    /// Remembers a DR operation token just generated on this node.
    pub(super) fn keep_dr_token(&self, token: &str) {
        lock(&self.ceremonies.dr_tokens).push(digest(token));
        tracing::warn!(
            event = "dr_token.generated",
            "a DR operation token was generated on this node by a quorum of custodians"
        );
    }

    /// This node's DR role.
    pub fn dr_status(&self) -> Result<DrStatus, OperatorError> {
        self.node.dr_status().map_err(cluster_error)
    }

    /// Promotes the DR site through this DR replica, authorised by a DR
    /// operation token generated on this node. The token is used up once
    /// the promotion is staged.
    pub async fn dr_promote(&self, token: &str) -> Result<String, OperatorError> {
        let presented = digest(token);
        let known = lock(&self.ceremonies.dr_tokens)
            .iter()
            .any(|t| bool::from(t.ct_eq(&presented)));
        if !known {
            tracing::warn!(
                event = "dr.promote_refused",
                "DR promotion refused: not a DR operation token of this node"
            );
            return Err(OperatorError::Forbidden(
                "not a DR operation token of this node: generate one here with \
                 `coffer operator generate-root init --dr-operation` and a quorum of shares"
                    .into(),
            ));
        }
        let done = self.node.dr_promote().await.map_err(cluster_error)?;
        lock(&self.ceremonies.dr_tokens).retain(|t| !bool::from(t.ct_eq(&presented)));
        Ok(done)
    }
}
