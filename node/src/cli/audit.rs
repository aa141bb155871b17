//! `coffer audit verify` and `coffer audit query`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use coffer_client::{Client, Request};
use serde::Deserialize;

use super::{print_json, ClientArgs};
use crate::engine::audit::{record, verify, verify_after, Checkpoint, Head, Link, Verification};

/// `coffer audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify a trail's hash chain: the cluster's replicated trail, or the
    /// given audit files (a node's files, oldest first, or an exported
    /// copy). Reports the position of every gap, edit or reordering.
    Verify {
        /// Audit files to verify instead of the cluster trail.
        #[arg(long = "file")]
        files: Vec<PathBuf>,
    },
    /// Read records of the cluster trail from any node.
    Query {
        /// From this time: RFC 3339 UTC (or a prefix, `2026-11-30`) or an
        /// age (`15m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// oid, appid, upn, or `root`.
        #[arg(long)]
        principal: Option<String>,
        /// Operation name (`SecretGet`, `KeyPurge`, …).
        #[arg(long)]
        operation: Option<String>,
        /// HTTP status (`403`) or class (`4xx`).
        #[arg(long)]
        status: Option<String>,
        /// Vault name.
        #[arg(long)]
        vault: Option<String>,
        /// Records at most.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// Runs `coffer audit …`.
pub async fn run_audit(args: &ClientArgs, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { files } if !files.is_empty() => {
            let mut lines = Vec::new();
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                lines.extend(
                    bytes
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(<[u8]>::to_vec),
                );
            }
            report(verify(&lines), args.json_output())
        }
        AuditCommand::Verify { .. } => {
            let client = args.client()?;
            let (lines, head, checkpoint) = cluster_trail(&client).await?;
            // A pruned trail verifies from its recorded checkpoint.
            let mut v = match &checkpoint {
                Some(c) => verify_after(&c.last_pruned, &lines),
                None => verify(&lines),
            };
            v.check_head(&head);
            report(v, args.json_output())
        }
        AuditCommand::Query {
            since,
            until,
            principal,
            operation,
            status,
            vault,
            limit,
        } => {
            let client = args.client()?;
            let mut params = vec![];
            for (k, v) in [
                ("since", since.map(|s| time_bound(&s)).transpose()?),
                ("until", until.map(|s| time_bound(&s)).transpose()?),
                ("principal", principal),
                ("operation", operation),
                ("status", status),
                ("vault", vault),
            ] {
                if let Some(v) = v {
                    params.push((k, v));
                }
            }
            let records = query(&client, &params, limit).await?;
            if args.json_output() {
                return print_json(&records);
            }
            print_table(&records);
            Ok(())
        }
    }
}

#[derive(Deserialize)]
struct TrailPage {
    head: Head,
    #[serde(default)]
    checkpoint: Option<Checkpoint>,
    lines: Vec<String>,
}

/// Every line of the cluster trail, its head and its retention checkpoint.
async fn cluster_trail(
    client: &Client,
) -> anyhow::Result<(Vec<Vec<u8>>, Head, Option<Checkpoint>)> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut after = 0u64;
    loop {
        let page: TrailPage = client
            .send(Request::get(format!("/v1/sys/audit/trail?after={after}")))
            .await?
            .error_for_status()?
            .json()?;
        let n = page.lines.len();
        for line in page.lines {
            if let Some(h) = Head::after(line.as_bytes()) {
                after = after.max(h.seq);
            }
            lines.push(line.into_bytes());
        }
        if n == 0 || after >= page.head.seq {
            return Ok((lines, page.head, page.checkpoint));
        }
    }
}

#[derive(Deserialize)]
struct QueryPage {
    records: Vec<Link>,
    next: Option<u64>,
}

async fn query(
    client: &Client,
    params: &[(&str, String)],
    limit: usize,
) -> anyhow::Result<Vec<Link>> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .append_pair("after", &after.to_string())
            .finish();
        let page: QueryPage = client
            .send(Request::get(format!("/v1/sys/audit/query?{q}")))
            .await?
            .error_for_status()?
            .json()?;
        out.extend(page.records);
        match page.next {
            Some(n) if n > after && out.len() < limit => after = n,
            _ => break,
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// A `--since`/`--until` value in record time format: an age (`15m`,
/// `2h`, `7d`, `30s`) counts back from now; anything else is a time.
fn time_bound(s: &str) -> anyhow::Result<String> {
    let unit = |c: char| match c {
        's' => Some(1u64),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    };
    if let Some((n, mult)) = s
        .char_indices()
        .last()
        .and_then(|(i, c)| Some((s[..i].parse::<u64>().ok()?, unit(c)?)))
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let back = u128::from(n.saturating_mul(mult)) * 1_000_000_000;
        return Ok(record::format_time(now.saturating_sub(back)));
    }
    let ok = s.len() >= 4
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b"-T:.Z".contains(&b));
    if !ok {
        bail!("{s:?} is neither a UTC time (2026-11-30T02:00:00Z) nor an age (15m, 2h, 7d)");
    }
    // `…Z` sorts after the fraction digits of records at that second.
    Ok(s.trim_end_matches('Z').to_owned())
}

fn report(v: Verification, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(&v)?;
    } else {
        let last = v.last.as_ref().map_or(0, |h| h.seq);
        println!(
            "{} records (seq {}..={last})",
            v.records,
            v.first_seq.unwrap_or(0)
        );
        for p in &v.problems {
            println!("PROBLEM {p}");
        }
        if v.is_intact() {
            println!("intact: every record is chained to the one before it");
        }
    }
    if !v.is_intact() {
        bail!(
            "the audit trail failed verification: {} problem(s)",
            v.problems.len()
        );
    }
    Ok(())
}

fn print_table(records: &[Link]) {
    println!(
        "{:<28}  {:<24}  {:>6}  {:<24}  {:<10}  {:>4}  URI",
        "TIME", "OPERATION", "STATUS", "PRINCIPAL", "VAULT", "NODE"
    );
    for l in records {
        let e = &l.event;
        println!(
            "{:<28}  {:<24}  {:>6}  {:<24}  {:<10}  {:>4}  {}",
            e.time,
            e.operation_name,
            e.properties.http_status_code,
            e.identity.claim.display(),
            if e.properties.vault.is_empty() {
                "-"
            } else {
                &e.properties.vault
            },
            e.node_id,
            e.properties.request_uri
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_ages_or_utc_times() {
        let t = time_bound("2h").unwrap();
        assert_eq!(t.len(), 28);
        assert!(t < record::now());
        assert_eq!(
            time_bound("2026-11-30T02:00:00Z").unwrap(),
            "2026-11-30T02:00:00"
        );
        assert_eq!(time_bound("2026-11-30").unwrap(), "2026-11-30");
        assert!(time_bound("yesterday").is_err());
    }
}
