//! Register workload: per key, set a unique value or read the latest one.

use rand::Rng;

use crate::history::{OpKind, Outcome};

use super::{write_failure, Worker};

/// One random operation on one of `keys` registers.
pub async fn step(w: &mut Worker, keys: usize) {
    let key = format!("reg-{}", w.rng.random_range(0..keys));
    let id = w.unique();
    if w.rng.random_bool(0.5) {
        let kind = OpKind::Write {
            key: key.clone(),
            value: id.clone(),
        };
        let opts = Default::default();
        let secrets = w.secrets(&id);
        let call = secrets.set(&key, &id, &opts);
        let call = async { call.await.map(|_| ()) };
        w.record(kind, call, |k, r| match r {
            Ok(()) => (k, Outcome::Ok, None),
            Err(e) => (k, write_failure(&e), Some(e.to_string())),
        })
        .await;
    } else {
        let kind = OpKind::Read {
            key: key.clone(),
            value: None,
        };
        let secrets = w.secrets(&id);
        let call = secrets.get(&key, None);
        w.record(kind, call, |k, r| match r {
            Ok(b) => {
                let key = k.key().to_string();
                let value = b.value.clone();
                (OpKind::Read { key, value }, Outcome::Ok, None)
            }
            // The secret was never written: the register's initial state.
            Err(e) if e.status() == Some(404) => (k, Outcome::Ok, None),
            Err(e) => (k, Outcome::Fail, Some(e.to_string())),
        })
        .await;
    }
}
