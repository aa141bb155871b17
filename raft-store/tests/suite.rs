//! openraft's storage conformance suite against both log backends (redb and
//! the write-ahead log), each beside the redb state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raft_store::{LogKind, LogStore, NodeId, StateMachineStore, StoreOptions, TypeConfig};
use tempfile::TempDir;

/// Opens a fresh pair of stores of the given log kind in a new temporary
/// directory per test; the directory lives as long as the returned guard.
struct FreshStore(LogKind);

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for FreshStore {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().expect("tempdir");
        let opts = StoreOptions {
            log_store: self.0,
            // Small segments, so the suite's purges cross segment bounds.
            wal_segment_bytes: 4096,
            ..StoreOptions::default()
        };
        let (log, sm) = raft_store::open_with(dir.path(), &opts).expect("open store");
        assert_eq!(log.kind(), self.0);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(FreshStore(LogKind::Redb)) {
        panic!("storage suite failed: {e}");
    }
}

#[test]
fn openraft_storage_suite_wal() {
    if let Err(e) = Suite::test_all(FreshStore(LogKind::Wal)) {
        panic!("storage suite failed on the WAL: {e}");
    }
}
