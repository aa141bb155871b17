//! Domain logic: vaults, secrets (later keys, certificates). Knows nothing of HTTP.

pub mod clock;
pub mod error;
pub mod identity;
pub mod keys;
pub mod mem_store;
pub mod names;
pub mod paging;
pub mod rotation;
pub mod secrets;
pub mod store;
pub mod validate;
pub mod vaults;

mod cas;
mod key_cache;
mod key_records;
mod secret_records;

pub use clock::Clock;
pub use error::{EngineError, KeyRefusal, ObjectKind};
