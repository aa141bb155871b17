//! Set workload: every operation creates a fresh secret; after healing, a
//! final read lists them all.

use std::collections::BTreeMap;

use coffer_client::Client;

use crate::history::{OpKind, Outcome};

use super::{write_failure, Worker};

/// Names of this workload's secrets start with this.
pub const PREFIX: &str = "set-";

/// Creates one new secret.
pub async fn step(w: &mut Worker) {
    let id = w.unique();
    let key = format!("{PREFIX}{id}");
    let kind = OpKind::Create {
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
}

/// Every `set-` secret and its value, read through `client`.
pub async fn final_read(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in client.secrets().list(Some(25)).await? {
        let Some(name) = item.name().map(str::to_string) else {
            continue;
        };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let bundle = client.secrets().get(&name, None).await?;
        out.insert(name, bundle.value.clone().unwrap_or_default());
    }
    Ok(out)
}
