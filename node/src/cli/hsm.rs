//! `coffer operator hsm …`: the node's PKCS#11 device and the cluster KEK
//! ceremony across nodes.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use coffer_client::{Client, ClientConfig, Request};
use serde_json::Value;

use super::{print_json, print_rows, ClientArgs};

/// `coffer operator hsm …`.
#[derive(Debug, Clone, Subcommand)]
pub enum HsmCommand {
    /// Show the device of the node at `--addr`: availability, KEK, mechanisms.
    Status,
    /// Create the cluster KEK in the device of the node at `--addr` (once per
    /// cluster, on the first node).
    CreateKek,
    /// Move the KEK from one node's device to another's: the receiving
    /// device generates an RSA-3072 transport key, the holding device wraps
    /// the KEK under it, the receiving device unwraps it and destroys the
    /// transport key. The KEK never leaves a device in plaintext.
    Distribute {
        /// URL of a node whose device holds the KEK.
        #[arg(long)]
        from: String,
        /// URL of the node whose device should receive it.
        #[arg(long)]
        to: String,
    },
}

/// Runs one `hsm` subcommand.
pub async fn run_hsm(args: &ClientArgs, cmd: HsmCommand) -> anyhow::Result<()> {
    let json = args.json_output();
    match cmd {
        HsmCommand::Status => {
            let status = call(&args.client()?, Request::get("/v1/sys/hsm/status")).await?;
            show_status(&status, json)
        }
        HsmCommand::CreateKek => {
            let info = call(&args.client()?, Request::post("/v1/sys/hsm/kek/create")).await?;
            if json {
                return print_json(&info);
            }
            println!("Cluster KEK created; check value {}.", check_value(&info));
            Ok(())
        }
        HsmCommand::Distribute { from, to } => distribute(args, &from, &to, json).await,
    }
}

async fn distribute(args: &ClientArgs, from: &str, to: &str, json: bool) -> anyhow::Result<()> {
    let source = node_client(args, from)?;
    let target = node_client(args, to)?;
    let transport = call(&target, Request::post("/v1/sys/hsm/transport-key"))
        .await
        .context("receiving node: generating the transport key")?;
    let export = call(
        &source,
        Request::post("/v1/sys/hsm/kek/export").json(&transport)?,
    )
    .await
    .context("holding node: wrapping the KEK")?;
    let imported = call(
        &target,
        Request::post("/v1/sys/hsm/kek/import").json(&export)?,
    )
    .await
    .context("receiving node: unwrapping the KEK")?;
    let source_status = call(&source, Request::get("/v1/sys/hsm/status")).await?;
    let expected = status_check_value(&source_status);
    let got = check_value(&imported);
    if expected.as_deref().is_some_and(|e| e != got) {
        bail!("check values differ after the import ({got} vs {expected:?}); do not use {to}");
    }
    if json {
        return print_json(&imported);
    }
    println!(
        "KEK moved from {from} to {to} (OAEP-{}); check value {got}.",
        export["oaep_hash"].as_str().unwrap_or("?")
    );
    Ok(())
}

fn node_client(args: &ClientArgs, url: &str) -> anyhow::Result<Client> {
    let mut cfg = ClientConfig::from_parts(url, args.token.clone(), args.ca_cert.as_deref())?;
    cfg.timeout = Duration::from_secs(args.timeout.max(30));
    Ok(Client::new(cfg)?)
}

async fn call(client: &Client, req: Request) -> anyhow::Result<Value> {
    // Every call is node-local: the device belongs to that node.
    let resp = client.send_to(0, req).await?.error_for_status()?;
    Ok(resp.json()?)
}

fn check_value(info: &Value) -> String {
    info["check_value"]
        .as_str()
        .unwrap_or("unknown")
        .to_string()
}

fn status_check_value(status: &Value) -> Option<String> {
    status["notes"].as_array()?.iter().find_map(|n| {
        n.as_str()?
            .strip_prefix("cluster KEK check value: ")
            .map(str::to_string)
    })
}

fn show_status(status: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(status);
    }
    let text = |k: &str| match &status[k] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    print_rows(&[
        ("Configured", text("configured")),
        ("Available", text("available")),
        ("Token", text("token_label")),
        ("KEK present", text("kek_present")),
        ("Error", text("error")),
    ]);
    if let Some(notes) = status["notes"].as_array() {
        for n in notes.iter().filter_map(Value::as_str) {
            println!("  - {n}");
        }
    }
    Ok(())
}
