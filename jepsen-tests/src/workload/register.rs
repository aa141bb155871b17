//! Register workload: per key, set a unique value or read the latest one.

use rand::Rng;

use crate::history::{OpKind, Outcome};

use super::{read_back, Completion, Worker};

/// One random operation on one of `keys` registers.
pub async fn step(w: &mut Worker, keys: usize) {
    let key = format!("reg-{}", w.rng.random_range(0..keys));
    if w.rng.random_bool(0.5) {
        write(w, &key).await;
    } else {
        read(w, &key).await;
    }
}

/// Sets `key` to a fresh value.
pub async fn write(w: &mut Worker, key: &str) {
    let id = w.unique();
    let value = w.payload(&id);
    let kind = OpKind::Write {
        key: key.to_string(),
        value: id.clone(),
    };
    let opts = Default::default();
    let secrets = w.secrets(&id);
    let call = secrets.set(key, &value, &opts);
    let call = async { call.await.map(|_| ()) };
    w.record(kind, value.len(), call, |k, r| match r {
        Ok(()) => Completion::ok(k),
        Err(e) => Completion::write_error(k, &e),
    })
    .await;
}

/// Reads the latest value of `key`.
pub async fn read(w: &mut Worker, key: &str) {
    let id = w.unique();
    let kind = OpKind::Read {
        key: key.to_string(),
        value: None,
    };
    let secrets = w.secrets(&id);
    let call = secrets.get(key, None);
    w.record(kind, 0, call, |k, r| match r {
        Ok(b) => {
            let key = k.key().to_string();
            let raw = b.value.as_deref().unwrap_or_default();
            let (id, malformed) = read_back(raw);
            Completion {
                bytes: Some(raw.len()),
                malformed,
                ..Completion::ok(OpKind::Read {
                    key,
                    value: Some(id),
                })
            }
        }
        // The secret was never written: the register's initial state.
        Err(e) if e.status() == Some(404) => Completion::ok(k),
        Err(e) => Completion::new(k, Outcome::Fail, Some(e.to_string())),
    })
    .await;
}
