//! Domain logic: vaults, the versioned-object lifecycle, secrets and keys,
//! over the store layers (raw store → barrier → vault view). Knows nothing
//! of HTTP.

pub mod alerts;
pub mod audit;
pub mod authz;
pub mod backup;
pub mod barrier_store;
pub mod certificates;
pub mod clock;
pub mod error;
pub mod identity;
pub mod keys;
#[cfg(any(test, feature = "test-util"))]
pub mod mem_store;
pub mod names;
pub mod network;
pub mod object;
pub mod operation;
pub mod paging;
pub mod registry;
pub mod rotation;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod validate;
pub mod vaults;
pub mod view;

mod cas;
mod key_records;
mod parsed_key_cache;
mod secret_records;

pub use clock::Clock;
pub use error::{EngineError, KeyRefusal, ObjectKind};
