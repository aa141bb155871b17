//! openraft's storage conformance suite against the redb stores.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_store::{LogStore, NodeId, StateMachineStore, TypeConfig};
use tempfile::TempDir;

/// Opens a fresh pair of stores in a new temporary directory per test; the
/// directory lives as long as the returned guard.
struct FreshStore;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for FreshStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().expect("tempdir");
        let (log, sm) = raft_store::open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(FreshStore) {
        panic!("storage suite failed: {e}");
    }
}
