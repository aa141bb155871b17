//! Audit: the `AuditEvent` record, the hash chain that makes a trail
//! tamper-evident, the per-cluster HMAC key for sensitive fields, the
//! replicated cluster-wide trail and the query over it. Writing records
//! durably on a node (files, sinks) is the node's business; this module
//! only decides what a record is and how trails are chained and checked.

pub mod chain;
mod key;
pub mod query;
pub mod record;
pub mod retention;
mod trail;

pub use chain::{verify, verify_after, Head, Link, Problem, Verification};
pub use key::{AuditKey, HMAC_PREFIX};
pub use query::Query;
pub use record::{AuditEvent, Claims, Identity, Properties};
pub use retention::{Checkpoint, Retention};
pub use trail::Trail;
