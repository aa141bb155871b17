//! Version workload: new versions of a few keys; after healing, each key's
//! version list with every version's value.

use std::collections::BTreeMap;

use coffer_client::Client;
use rand::Rng;

use crate::checker::versions::FinalVersion;
use crate::history::{OpKind, Outcome};

use super::{write_failure, Worker};

/// Appends a version with a unique value to one of `keys` secrets.
pub async fn step(w: &mut Worker, keys: usize) {
    let key = format!("ver-{}", w.rng.random_range(0..keys));
    let id = w.unique();
    let kind = OpKind::Append {
        key: key.clone(),
        value: id.clone(),
        version: None,
        created: None,
    };
    let opts = Default::default();
    let secrets = w.secrets(&id);
    let call = secrets.set(&key, &id, &opts);
    w.record(kind, call, |k, r| match (k, r) {
        (OpKind::Append { key, value, .. }, Ok(b)) => {
            let kind = OpKind::Append {
                key,
                value,
                version: b.version().map(str::to_string),
                created: b.attributes.created,
            };
            (kind, Outcome::Ok, None)
        }
        (k, Ok(_)) => (k, Outcome::Ok, None),
        (k, Err(e)) => (k, write_failure(&e), Some(e.to_string())),
    })
    .await;
}

/// The versions of every key `ver-0..keys`, with values.
pub async fn final_read(
    client: &Client,
    keys: usize,
) -> anyhow::Result<BTreeMap<String, Vec<FinalVersion>>> {
    let mut out = BTreeMap::new();
    for k in 0..keys {
        let key = format!("ver-{k}");
        let items = match client.secrets().versions(&key, Some(25)).await {
            Ok(items) => items,
            Err(e) if e.status() == Some(404) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut versions = Vec::new();
        for item in items {
            let Some(version) = item.version().map(str::to_string) else {
                continue;
            };
            let bundle = client.secrets().get(&key, Some(&version)).await?;
            versions.push(FinalVersion {
                version,
                value: bundle.value.clone().unwrap_or_default(),
                created: item.attributes.created,
            });
        }
        out.insert(key, versions);
    }
    Ok(out)
}
