//! Version workload: new versions of a few keys; after healing, each key's
//! version list with every version's value.

use std::collections::BTreeMap;

use coffer_client::Client;
use rand::Rng;

use crate::checker::versions::FinalVersion;
use crate::history::OpKind;

use super::{get_all, Completion, FinalRead, Worker};

/// Appends a version with a unique value to one of `keys` secrets.
pub async fn step(w: &mut Worker, keys: usize) {
    let key = format!("ver-{}", w.rng.random_range(0..keys));
    let id = w.unique();
    let value = w.payload(&id);
    let kind = OpKind::Append {
        key: key.clone(),
        value: id.clone(),
        version: None,
        created: None,
    };
    let opts = Default::default();
    let secrets = w.secrets(&id);
    let call = secrets.set(&key, &value, &opts);
    w.record(kind, value.len(), call, |k, r| match (k, r) {
        (OpKind::Append { key, value, .. }, Ok(b)) => Completion::ok(OpKind::Append {
            key,
            value,
            version: b.version().map(str::to_string),
            created: b.attributes.created,
        }),
        (k, Ok(_)) => Completion::ok(k),
        (k, Err(e)) => Completion::write_error(k, &e),
    })
    .await;
}

/// The versions of every key `ver-0..keys`, with the operation id of each
/// version's value; values that are not whole are reported in `malformed`.
pub async fn final_read(
    client: &Client,
    keys: usize,
) -> anyhow::Result<FinalRead<Vec<FinalVersion>>> {
    let mut wanted = Vec::new();
    let mut read = FinalRead::default();
    for k in 0..keys {
        let key = format!("ver-{k}");
        let items = match client.secrets().versions(&key, Some(25)).await {
            Ok(items) => items,
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        read.values.insert(key.clone(), Vec::new());
        for item in items {
            if let Some(version) = item.version() {
                wanted.push((key.clone(), Some(version.to_string())));
            }
        }
    }
    let mut fetched = get_all(client, wanted).await?;
    // The listing's order, whatever order the parallel readers finished in.
    fetched.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let mut by_key: BTreeMap<String, Vec<FinalVersion>> = read.values;
    for f in fetched {
        if let Some(m) = f.malformed {
            read.malformed
                .push(format!("{} {:?}: {m}", f.name, f.version));
        }
        by_key.entry(f.name).or_default().push(FinalVersion {
            version: f.version.unwrap_or_default(),
            value: f.id,
            created: f.created,
        });
    }
    read.values = by_key;
    Ok(read)
}
