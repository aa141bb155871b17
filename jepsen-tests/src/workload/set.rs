//! Set workload: every operation creates a fresh secret; after healing, a
//! final read lists them all.

use coffer_client::Client;

use crate::history::OpKind;

use super::{read_all, Completion, FinalRead, Worker};

/// Names of this workload's secrets start with this.
pub const PREFIX: &str = "set-";

/// Creates one new secret.
pub async fn step(w: &mut Worker) {
    let id = w.unique();
    let value = w.payload(&id);
    let key = format!("{PREFIX}{id}");
    let kind = OpKind::Create {
        key: key.clone(),
        value: id.clone(),
    };
    let opts = Default::default();
    let secrets = w.secrets(&id);
    let call = secrets.set(&key, &value, &opts);
    let call = async { call.await.map(|_| ()) };
    w.record(kind, value.len(), call, |k, r| match r {
        Ok(()) => Completion::ok(k),
        Err(e) => Completion::write_error(k, &e),
    })
    .await;
}

/// Every `set-` secret and the operation id of its value, read through
/// `client`; values that are not whole are reported in `malformed`.
pub async fn final_read(client: &Client) -> anyhow::Result<FinalRead<String>> {
    let mut names = Vec::new();
    for item in client.secrets().list(Some(25)).await? {
        if let Some(name) = item.name().filter(|n| n.starts_with(PREFIX)) {
            names.push((name.to_string(), None));
        }
    }
    read_all(client, names).await
}
