//! Which cluster node a request goes to: a circuit breaker per node (a
//! failing node is skipped for a backoff that doubles with each consecutive
//! failure, with jitter so many clients do not come back in step) and the
//! leader learnt from the nodes' health answers, so writes go straight to
//! it. Shared by [`Client`](crate::Client) and `coffer agent`.
//!
//! ```
//! use std::time::Instant;
//! use coffer_client::routing::Nodes;
//!
//! let nodes = Nodes::new(3);
//! // Node 2 said it is Raft node 13, and that 13 leads.
//! nodes.observed(2, Some(13), Some(13));
//! assert_eq!(nodes.order(true, Instant::now()), vec![2, 0, 1]);
//! // Reads start at the node that answered last.
//! nodes.succeeded(1);
//! assert_eq!(nodes.order(false, Instant::now()), vec![1, 2, 0]);
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First pause of a node after a failure.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause of a node.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the agent knows of one node.
#[derive(Debug, Clone, Default)]
struct NodeState {
    /// Raft node id, from its health answer.
    node_id: Option<u64>,
    /// Consecutive failures (0: closed breaker).
    failures: u32,
    /// Skip the node until then (open breaker); afterwards one trial.
    open_until: Option<Instant>,
}

/// The per-node breakers and the known leader, shared by every request.
///
/// Indexes are positions in the client's endpoint list.
///
/// ```
/// use std::time::{Duration, Instant};
/// use coffer_client::routing::Nodes;
///
/// let nodes = Nodes::new(3);
/// let now = Instant::now();
/// // Node 0 failed: its breaker opens for 200 ms (jitter factor 1.0) and it
/// // is tried last until then.
/// assert_eq!(nodes.failed(0, now, 1.0), Duration::from_millis(200));
/// assert!(nodes.is_open(0, now));
/// assert_eq!(nodes.order(false, now), vec![1, 2, 0]);
/// // A second failure in a row doubles the pause.
/// assert_eq!(nodes.failed(0, now, 1.0), Duration::from_millis(400));
/// // Once the pause is over the node gets a trial again.
/// assert!(!nodes.is_open(0, now + Duration::from_millis(400)));
/// // An answer closes the breaker.
/// nodes.succeeded(0);
/// assert!(!nodes.is_open(0, now));
/// ```
#[derive(Debug)]
pub struct Nodes {
    state: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    nodes: Vec<NodeState>,
    /// Raft id of the leader, as the last health answer said.
    leader_id: Option<u64>,
    /// The node that answered last: reads start there (warm connection).
    last_good: usize,
}

impl Nodes {
    /// `count` nodes, all closed, leader unknown.
    pub fn new(count: usize) -> Self {
        Self {
            state: Mutex::new(Table {
                nodes: vec![NodeState::default(); count.max(1)],
                leader_id: None,
                last_good: 0,
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table
        // inconsistent (every update is one assignment): keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The order to try the nodes in for one request: the leader first for
    /// writes when it is known, else the last node that answered; then the
    /// others in turn. Nodes whose breaker is open go last (ordered by when
    /// they reopen), so a request still has somewhere to go when every
    /// node failed recently.
    pub fn order(&self, write: bool, now: Instant) -> Vec<usize> {
        let t = self.table();
        let n = t.nodes.len();
        let first = if write {
            t.leader_index().unwrap_or(t.last_good)
        } else {
            t.last_good
        } % n;
        let rotation: Vec<usize> = (0..n).map(|k| (first + k) % n).collect();
        let (mut open, closed): (Vec<usize>, Vec<usize>) = rotation
            .into_iter()
            .partition(|&i| t.nodes[i].open_until.is_some_and(|u| u > now));
        open.sort_by_key(|&i| t.nodes[i].open_until);
        closed.into_iter().chain(open).collect()
    }

    /// Node `i` answered: its breaker closes.
    pub fn succeeded(&self, i: usize) {
        let mut t = self.table();
        if let Some(node) = t.nodes.get_mut(i) {
            node.failures = 0;
            node.open_until = None;
        }
        t.last_good = i;
    }

    /// Node `i` answered a health probe: its breaker closes, but reads do
    /// not move to it (the node that served the last request stays first).
    pub fn healthy(&self, i: usize) {
        let mut t = self.table();
        if let Some(node) = t.nodes.get_mut(i) {
            node.failures = 0;
            node.open_until = None;
        }
    }

    /// Node `i` failed (connection, timeout, 503): its breaker opens for a
    /// backoff of `BASE_BACKOFF × 2^(failures-1)` (capped), times a jitter
    /// factor in [0.5, 1.5). Returns the pause.
    pub fn failed(&self, i: usize, now: Instant, jitter: f64) -> Duration {
        let mut t = self.table();
        let Some(node) = t.nodes.get_mut(i) else {
            return Duration::ZERO;
        };
        node.failures = node.failures.saturating_add(1);
        let pause = backoff(node.failures, jitter);
        node.open_until = Some(now + pause);
        pause
    }

    /// Records what node `i`'s health answer said: its id and the leader.
    pub fn observed(&self, i: usize, node_id: Option<u64>, leader_id: Option<u64>) {
        let mut t = self.table();
        if let Some(node) = t.nodes.get_mut(i) {
            node.node_id = node_id.or(node.node_id);
        }
        if leader_id.is_some() {
            t.leader_id = leader_id;
        }
    }

    /// Index of the leader among the endpoints, when known.
    pub fn leader(&self) -> Option<usize> {
        self.table().leader_index()
    }

    /// Whether node `i`'s breaker is open at `now`.
    pub fn is_open(&self, i: usize, now: Instant) -> bool {
        self.table()
            .nodes
            .get(i)
            .and_then(|n| n.open_until)
            .is_some_and(|u| u > now)
    }
}

impl Table {
    fn leader_index(&self) -> Option<usize> {
        let leader = self.leader_id?;
        self.nodes.iter().position(|n| n.node_id == Some(leader))
    }
}

/// Backoff after `failures` consecutive failures, scaled by `jitter`
/// (clamped to [0.5, 1.5)).
///
/// ```
/// use std::time::Duration;
/// use coffer_client::routing::{backoff, jitter};
///
/// assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
/// assert_eq!(backoff(3, 1.0), Duration::from_millis(800));
/// assert_eq!(backoff(30, 1.0), Duration::from_secs(5)); // capped
/// // Jitter scales the pause by a factor in [0.5, 1.5).
/// let j = jitter();
/// assert!((0.5..1.5).contains(&j));
/// assert!(backoff(1, j) >= Duration::from_millis(100) && backoff(1, j) < Duration::from_millis(300));
/// ```
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    let raw = BASE_BACKOFF.saturating_mul(1u32 << shift).min(MAX_BACKOFF);
    raw.mul_f64(jitter.clamp(0.5, 1.5))
}

/// A jitter factor in [0.5, 1.5).
pub fn jitter() -> f64 {
    0.5 + rand::random::<f64>()
}

/// Pause before pass `pass` over the nodes (every node tried once per
/// pass; none before the first): 50 ms doubling to 800 ms, times `jitter`
/// (clamped to [0.5, 1.5)), so a cluster mid-election gets time to settle
/// and many clients do not retry in step.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::routing::pass_pause;
///
/// let pauses: Vec<_> = (0..6).map(|pass| pass_pause(pass, 1.0).as_millis()).collect();
/// assert_eq!(pauses, [0, 50, 100, 200, 400, 800]);
/// assert_eq!(pass_pause(9, 1.0), Duration::from_millis(800)); // capped
/// ```
pub fn pass_pause(pass: u32, jitter: f64) -> Duration {
    if pass == 0 {
        return Duration::ZERO;
    }
    let shift = pass.saturating_sub(1).min(4);
    Duration::from_millis(50u64 << shift).mul_f64(jitter.clamp(0.5, 1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(30, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(1, 9.0), Duration::from_millis(300));
        let j = jitter();
        assert!((0.5..1.5).contains(&j));
    }

    #[test]
    fn pass_pauses_double_to_a_cap_with_jitter() {
        assert_eq!(pass_pause(0, 1.0), Duration::ZERO);
        assert_eq!(pass_pause(1, 1.0), Duration::from_millis(50));
        assert_eq!(pass_pause(2, 1.0), Duration::from_millis(100));
        assert_eq!(pass_pause(9, 1.0), Duration::from_millis(800));
        assert_eq!(pass_pause(1, 0.5), Duration::from_millis(25));
        assert_eq!(pass_pause(1, 7.0), Duration::from_millis(75));
    }

    #[test]
    fn writes_go_to_the_leader_reads_to_the_last_good_node() {
        let nodes = Nodes::new(3);
        let now = Instant::now();
        assert_eq!(nodes.order(true, now), vec![0, 1, 2]);
        nodes.observed(0, Some(11), Some(13));
        nodes.observed(1, Some(12), Some(13));
        // The leader's own endpoint is not known yet.
        assert_eq!(nodes.leader(), None);
        nodes.observed(2, Some(13), Some(13));
        assert_eq!(nodes.leader(), Some(2));
        assert_eq!(nodes.order(true, now), vec![2, 0, 1]);
        nodes.succeeded(1);
        assert_eq!(nodes.order(false, now), vec![1, 2, 0]);
    }

    #[test]
    fn an_open_breaker_goes_last_until_it_expires() {
        let nodes = Nodes::new(3);
        let now = Instant::now();
        let pause = nodes.failed(0, now, 1.0);
        assert_eq!(pause, Duration::from_millis(200));
        assert!(nodes.is_open(0, now));
        assert_eq!(nodes.order(false, now), vec![1, 2, 0]);
        // A second failure of node 1 keeps it out longer than node 0.
        nodes.failed(1, now, 1.0);
        nodes.failed(1, now, 1.0);
        assert_eq!(nodes.order(false, now), vec![2, 0, 1]);
        // Half-open after the pause: node 0 is tried again.
        let later = now + Duration::from_millis(250);
        assert!(!nodes.is_open(0, later));
        assert_eq!(nodes.order(false, later), vec![0, 2, 1]);
        nodes.healthy(1);
        assert!(!nodes.is_open(1, now));
        // A health answer does not move reads to the node.
        assert_eq!(nodes.order(false, later), vec![0, 1, 2]);
        nodes.succeeded(1);
        assert_eq!(nodes.order(false, now), vec![1, 2, 0]);
    }
}
