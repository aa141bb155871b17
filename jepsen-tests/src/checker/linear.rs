//! Linearizability of a read/write register, per key (P-compositionality),
//! with the Wing–Gong–Lowe search as Porcupine implements it: a doubly linked
//! list of call/return entries, a stack of tentatively linearized calls, and
//! a cache of (linearized-set, state) pairs already explored.
//!
//! Failed operations are dropped. Indeterminate writes get an infinite return
//! time, so they may take effect anywhere after their invocation or (placed
//! after everything else) never; indeterminate reads constrain nothing and
//! are dropped. Indeterminate writes whose value nobody read are dropped too:
//! they cannot change the verdict and would only widen the search.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crate::history::{Op, OpKind, Outcome};

use super::Verdict;

/// A register operation ready for the search.
#[derive(Clone, Debug)]
struct RegOp {
    call: u64,
    ret: u64,
    write: bool,
    value: Option<String>,
    index: usize,
}

/// Checks every key's sub-history within `budget` in total.
pub fn check_register(ops: &[Op], budget: Duration) -> Verdict {
    let deadline = Instant::now() + budget;
    let mut by_key: BTreeMap<&str, Vec<RegOp>> = BTreeMap::new();
    let read_values: HashSet<(&str, &str)> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| match &o.kind {
            OpKind::Read {
                key,
                value: Some(v),
            } => Some((key.as_str(), v.as_str())),
            _ => None,
        })
        .collect();
    for (index, op) in ops.iter().enumerate() {
        if let Some(r) = reg_op(op, index, &read_values) {
            by_key.entry(op.kind.key()).or_default().push(r);
        }
    }
    for (key, reg_ops) in by_key {
        match search(&reg_ops, deadline) {
            Search::Ok => {}
            Search::Timeout => {
                return Verdict::Unknown(format!(
                    "search for key {key} exceeded the {budget:?} budget"
                ))
            }
            Search::Violation(at) => return Verdict::Fail(explain(key, ops, &reg_ops, at)),
        }
    }
    Verdict::Pass
}

fn reg_op(op: &Op, index: usize, read_values: &HashSet<(&str, &str)>) -> Option<RegOp> {
    let (write, value) = match (&op.kind, op.outcome) {
        (_, Outcome::Fail) => return None,
        (OpKind::Read { .. }, Outcome::Info) => return None,
        (OpKind::Read { value, .. }, Outcome::Ok) => (false, value.clone()),
        (OpKind::Write { key, value }, Outcome::Info) => {
            if !read_values.contains(&(key.as_str(), value.as_str())) {
                return None;
            }
            (true, Some(value.clone()))
        }
        (OpKind::Write { value, .. }, Outcome::Ok) => (true, Some(value.clone())),
        _ => return None,
    };
    let ret = if op.outcome == Outcome::Info {
        u64::MAX
    } else {
        op.complete_us
    };
    Some(RegOp {
        call: op.invoke_us,
        ret,
        write,
        value,
        index,
    })
}

enum Search {
    Ok,
    Timeout,
    /// Index (into the key's ops) of the operation whose return could not be
    /// preceded by any linearization.
    Violation(usize),
}

const NIL: usize = usize::MAX;

/// A list entry: the call or the return of operation `op`.
#[derive(Clone)]
struct Entry {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return entry.
    matching: usize,
    prev: usize,
    next: usize,
}

struct List {
    entries: Vec<Entry>,
}

impl List {
    /// Entry 0 is the head sentinel.
    fn build(ops: &[RegOp]) -> Self {
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, true, i));
            events.push((op.ret, false, i));
        }
        // At equal times calls come first: touching intervals count as concurrent.
        events.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
        let mut entries = vec![Entry {
            op: NIL,
            is_call: false,
            matching: NIL,
            prev: NIL,
            next: NIL,
        }];
        let mut call_entry = vec![NIL; ops.len()];
        for (t, (_, is_call, op)) in events.into_iter().enumerate() {
            let idx = t + 1;
            entries.push(Entry {
                op,
                is_call,
                matching: NIL,
                prev: idx - 1,
                next: NIL,
            });
            entries[idx - 1].next = idx;
            if is_call {
                call_entry[op] = idx;
            } else {
                entries[call_entry[op]].matching = idx;
            }
        }
        Self { entries }
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.entries[i].prev, self.entries[i].next);
        self.entries[p].next = n;
        if n != NIL {
            self.entries[n].prev = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.entries[i].prev, self.entries[i].next);
        self.entries[p].next = i;
        if n != NIL {
            self.entries[n].prev = i;
        }
    }

    /// Removes a call and its return from the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.entries[call].matching);
    }

    /// Undoes [`List::lift`] (in reverse order, so the links are right).
    fn unlift(&mut self, call: usize) {
        self.relink(self.entries[call].matching);
        self.relink(call);
    }
}

/// Applies `op` to the register state; `None` if the op is impossible there.
fn step(state: &Option<String>, op: &RegOp) -> Option<Option<String>> {
    if op.write {
        Some(op.value.clone())
    } else if &op.value == state {
        Some(state.clone())
    } else {
        None
    }
}

fn search(ops: &[RegOp], deadline: Instant) -> Search {
    if ops.is_empty() {
        return Search::Ok;
    }
    let mut list = List::build(ops);
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<String> = None;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut entry = list.entries[0].next;
    let mut steps: u64 = 0;
    // The return the deepest partial linearization got stuck on: the most
    // useful place to point a reader at.
    let mut stuck = (0usize, 0usize);
    while list.entries[0].next != NIL {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Search::Timeout;
        }
        let e = list.entries[entry].clone();
        if e.is_call {
            if let Some(next_state) = step(&state, &ops[e.op]) {
                let mut set = linearized.clone();
                set[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((set.clone(), next_state.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, next_state)));
                    linearized = set;
                    list.lift(entry);
                    entry = list.entries[0].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return whose call is not linearized yet: backtrack.
            if stack.len() >= stuck.0 {
                stuck = (stack.len(), e.op);
            }
            let Some((call, prev_state)) = stack.pop() else {
                return Search::Violation(stuck.1);
            };
            let op = list.entries[call].op;
            state = prev_state;
            linearized[op / 64] &= !(1 << (op % 64));
            list.unlift(call);
            entry = list.entries[call].next;
        }
    }
    Search::Ok
}

/// Describes the operation that cannot be linearized and its neighbours.
fn explain(key: &str, all: &[Op], ops: &[RegOp], at: usize) -> String {
    let bad = &ops[at];
    let op = &all[bad.index];
    let mut text = format!(
        "key {key}: no linearization exists once {} completes; ops overlapping or just before it:\n",
        describe(op)
    );
    let window_start = bad.call.saturating_sub(500_000);
    let near: Vec<&RegOp> = ops
        .iter()
        .filter(|r| r.ret >= window_start && r.call <= bad.ret)
        .collect();
    for r in &near[near.len().saturating_sub(40)..] {
        text.push_str(&format!("  {}\n", describe(&all[r.index])));
    }
    text
}

/// One line for a counterexample listing.
pub fn describe(op: &Op) -> String {
    let what = match &op.kind {
        OpKind::Write { value, .. } => format!("write {value}"),
        OpKind::Read { value, .. } => format!("read -> {}", value.as_deref().unwrap_or("nil")),
        OpKind::Create { key, value } => format!("create {key}={value}"),
        OpKind::Append { value, version, .. } => {
            format!("append {value} -> {}", version.as_deref().unwrap_or("?"))
        }
    };
    let node = op.node.map_or("any".to_string(), |n| format!("n{}", n + 1));
    format!(
        "[{:>10.3}ms .. {:>10.3}ms] p{} via {node} {:?} {what}",
        op.invoke_us as f64 / 1000.0,
        op.complete_us as f64 / 1000.0,
        op.process,
        op.outcome
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(p: usize, call: u64, ret: u64, outcome: Outcome, kind: OpKind) -> Op {
        Op {
            process: p,
            node: None,
            kind,
            invoke_us: call,
            complete_us: ret,
            outcome,
            error: None,
            bytes: 0,
            malformed: None,
        }
    }
    fn w(p: usize, call: u64, ret: u64, outcome: Outcome, v: &str) -> Op {
        let kind = OpKind::Write {
            key: "k".into(),
            value: v.into(),
        };
        op(p, call, ret, outcome, kind)
    }
    fn r(p: usize, call: u64, ret: u64, v: Option<&str>) -> Op {
        let kind = OpKind::Read {
            key: "k".into(),
            value: v.map(str::to_string),
        };
        op(p, call, ret, Outcome::Ok, kind)
    }
    const B: Duration = Duration::from_secs(5);

    #[test]
    fn sequential_and_concurrent_good_histories_pass() {
        let h = vec![
            r(0, 0, 1, None),
            w(0, 2, 3, Outcome::Ok, "a"),
            r(1, 4, 5, Some("a")),
            // Concurrent write and reads may see either value.
            w(0, 10, 20, Outcome::Ok, "b"),
            r(1, 11, 12, Some("a")),
            r(2, 13, 14, Some("b")),
            r(1, 21, 22, Some("b")),
        ];
        assert_eq!(check_register(&h, B), Verdict::Pass);
    }

    #[test]
    fn stale_read_is_found() {
        let h = vec![
            w(0, 0, 1, Outcome::Ok, "a"),
            w(0, 2, 3, Outcome::Ok, "b"),
            r(1, 4, 5, Some("a")),
        ];
        let v = check_register(&h, B);
        assert!(
            matches!(&v, Verdict::Fail(m) if m.contains("read -> a")),
            "{v:?}"
        );
    }

    #[test]
    fn read_going_back_in_time_is_found() {
        // b is seen, then a later read sees a again: not linearizable even
        // though both writes are concurrent with everything.
        let h = vec![
            w(0, 0, 100, Outcome::Ok, "a"),
            w(1, 0, 100, Outcome::Ok, "b"),
            r(2, 10, 11, Some("a")),
            r(2, 12, 13, Some("b")),
            r(2, 14, 15, Some("a")),
        ];
        assert!(check_register(&h, B).is_fail());
    }

    #[test]
    fn indeterminate_write_may_apply_late_or_never() {
        let late = vec![
            w(0, 0, 1, Outcome::Info, "a"),
            r(1, 5, 6, None),
            r(1, 7, 8, Some("a")),
        ];
        assert_eq!(check_register(&late, B), Verdict::Pass);
        let never = vec![w(0, 0, 1, Outcome::Info, "a"), r(1, 5, 6, None)];
        assert_eq!(check_register(&never, B), Verdict::Pass);
        // But not before it was invoked.
        let early = vec![r(1, 0, 1, Some("a")), w(0, 5, 6, Outcome::Info, "a")];
        assert!(check_register(&early, B).is_fail());
    }

    #[test]
    fn failed_write_must_not_be_seen() {
        let h = vec![w(0, 0, 1, Outcome::Fail, "a"), r(1, 5, 6, Some("a"))];
        assert!(check_register(&h, B).is_fail());
    }

    #[test]
    fn keys_are_independent() {
        let mut h = vec![w(0, 0, 1, Outcome::Ok, "a"), r(1, 2, 3, Some("a"))];
        h.push(op(
            2,
            4,
            5,
            Outcome::Ok,
            OpKind::Read {
                key: "other".into(),
                value: None,
            },
        ));
        assert_eq!(check_register(&h, B), Verdict::Pass);
    }

    #[test]
    fn large_concurrent_history_finishes_quickly() {
        // 8 clients, 4000 ops on one key, each read sees the last write.
        let mut h = Vec::new();
        let mut last: Option<String> = None;
        for i in 0..4000u64 {
            let t = i * 10;
            if i % 3 == 0 {
                let v = format!("v{i}");
                h.push(w((i % 8) as usize, t, t + 25, Outcome::Ok, &v));
                last = Some(v);
            } else {
                h.push(r((i % 8) as usize, t + 26, t + 27, last.as_deref()));
            }
        }
        let started = Instant::now();
        assert_eq!(check_register(&h, B), Verdict::Pass);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
