//! Tests of `network.rs` (kept apart so the module stays readable).

use super::*;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raft_store::{Mutation, Request, Txn};

fn big_entry(index: u64, bytes: usize) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Request {
            request_id: Some(format!("r{index}")),
            time_ms: 0,
            txn: Txn {
                compare: vec![],
                mutations: vec![Mutation::Put {
                    key: b"k".to_vec(),
                    value: vec![7; bytes],
                }],
                result: vec![],
            },
        }),
    }
}

fn append(entries: Vec<Entry<TypeConfig>>) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: None,
        entries,
        leader_commit: None,
    }
}

#[test]
fn append_batches_are_cut_to_the_byte_budget() {
    // 300 entries of 21 KB = 6.3 MB, the batch that broke a 4 MiB limit.
    let rpc = append((1..=300).map(|i| big_entry(i, 21_000)).collect());
    let budget = 2 * 1024 * 1024;
    let (msg, n) = fit_append("a:1", rpc, budget).unwrap();
    assert!(msg.data.len() <= budget, "{} > {budget}", msg.data.len());
    assert!(n > 50 && n < 300, "{n} entries");
    let back: AppendEntriesRequest<TypeConfig> = postcard::from_bytes(&msg.data).unwrap();
    assert_eq!(back.entries.len(), n);
    assert_eq!(back.entries.last().map(|e| e.log_id.index), Some(n as u64));
}

#[test]
fn a_single_oversized_entry_is_still_sent_alone() {
    let rpc = append(vec![big_entry(1, 10_000), big_entry(2, 10_000)]);
    let (_, n) = fit_append("a:1", rpc, 5_000).unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_append_budget_halves_on_a_miss_and_grows_back_on_fast_landings() {
    let ttl = Duration::from_millis(75);
    let mut b = AppendBudget::new(8 << 20);
    assert_eq!(b.bytes, AppendBudget::INITIAL);
    for _ in 0..20 {
        b.missed();
    }
    assert_eq!(b.bytes, AppendBudget::FLOOR);
    b.landed(Duration::from_millis(40), ttl);
    assert_eq!(
        b.bytes,
        AppendBudget::FLOOR,
        "a slow landing does not grow it"
    );
    for _ in 0..20 {
        b.landed(Duration::from_millis(5), ttl);
    }
    assert_eq!(b.bytes, 8 << 20);
}

#[test]
fn only_a_size_refusal_counts_as_too_large() {
    // tonic's own words when a message exceeds the receiver's limit.
    let size = tonic::Status::resource_exhausted(
        "decoded message length too large: found 6369119 bytes, the limit is 4194304",
    );
    assert!(matches!(
        status_failure("a:1", &size),
        RpcFailure::TooLarge { .. }
    ));
    // An h2 GOAWAY after reset streams maps to the same code.
    let calm = tonic::Status::resource_exhausted("h2 protocol error: too many reset streams");
    assert!(matches!(
        status_failure("a:1", &calm),
        RpcFailure::Protocol { .. }
    ));
    let down = tonic::Status::unavailable("tcp connect error");
    assert!(matches!(
        status_failure("a:1", &down),
        RpcFailure::Unreachable { .. }
    ));
}

#[test]
fn unreachable_backoff_grows_to_a_cap() {
    let delays: Vec<_> = backoff_delays().take(8).collect();
    assert_eq!(delays[0], Duration::from_millis(100));
    assert_eq!(delays[3], Duration::from_millis(800));
    assert_eq!(delays[7], UNREACHABLE_BACKOFF_MAX);
}

#[test]
fn host_is_extracted_for_sni_and_san_checks() {
    assert_eq!(host_of("127.0.0.1:8454"), "127.0.0.1");
    assert_eq!(host_of("[::1]:8454"), "::1");
    assert_eq!(host_of("node1.example:8454"), "node1.example");
}
