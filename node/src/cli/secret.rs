//! `coffer secret …`: the Key Vault secrets API from the command line.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use coffer_client::secrets::{SecretBundle, SecretItem, SetOptions};
use zeroize::Zeroizing;

use super::{format_time, print_json, print_rows, ClientArgs};

/// What `secret get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GetField {
    /// Only the value, followed by a newline.
    Value,
    /// The whole secret bundle as JSON.
    Json,
}

/// Secret subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SecretCommand {
    /// Set a secret (creates a new version). The value comes from --value,
    /// --file or stdin (one trailing newline is dropped from stdin).
    Set {
        /// Secret name.
        name: String,
        /// The value (visible in the process list; prefer --file or stdin).
        #[arg(long, conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (taken verbatim).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Content type.
        #[arg(long)]
        content_type: Option<String>,
        /// Tag `key=value`; repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Create the version disabled.
        #[arg(long)]
        disabled: bool,
        /// Not valid before (Unix seconds).
        #[arg(long)]
        not_before: Option<i64>,
        /// Expiry (Unix seconds).
        #[arg(long)]
        expires: Option<i64>,
    },
    /// Read a secret.
    Get {
        /// Secret name.
        name: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<String>,
        /// Print only this field.
        #[arg(long, value_enum)]
        field: Option<GetField>,
    },
    /// List secrets (no values).
    List {
        /// List soft-deleted secrets instead.
        #[arg(long)]
        deleted: bool,
    },
    /// List the versions of a secret.
    Versions {
        /// Secret name.
        name: String,
    },
    /// Soft-delete a secret (all versions).
    Delete {
        /// Secret name.
        name: String,
    },
    /// Recover a soft-deleted secret.
    Recover {
        /// Secret name.
        name: String,
    },
    /// Purge a soft-deleted secret for good.
    Purge {
        /// Secret name.
        name: String,
    },
    /// Write a protected backup of a secret to a file (mode 0600).
    Backup {
        /// Secret name.
        name: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a secret from a backup file.
    Restore {
        /// Backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// Runs one secret command against the cluster.
pub async fn run_secret(args: &ClientArgs, cmd: SecretCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let api = client.secrets();
    let json = args.json_output();
    match cmd {
        SecretCommand::Set {
            name,
            value,
            file,
            content_type,
            tags,
            disabled,
            not_before,
            expires,
        } => {
            let value = read_value(value, file.as_deref())?;
            let opts = SetOptions {
                content_type,
                tags: (!tags.is_empty()).then(|| tags.into_iter().collect::<BTreeMap<_, _>>()),
                enabled: disabled.then_some(false),
                nbf: not_before,
                exp: expires,
            };
            let mut bundle = api.set(&name, &value, &opts).await?;
            // Never echo the value back.
            bundle.value = None;
            if json {
                return print_json(&bundle);
            }
            println!(
                "Secret {} set, version {}.",
                bundle.name().unwrap_or(&name),
                bundle.version().unwrap_or("-")
            );
        }
        SecretCommand::Get {
            name,
            version,
            field,
        } => {
            let bundle = api.get(&name, version.as_deref()).await?;
            show_bundle(&bundle, field, json)?;
        }
        SecretCommand::List { deleted: false } => {
            let items = api.list(None).await?;
            if json {
                return print_json(&items);
            }
            show_items(&items, false);
        }
        SecretCommand::List { deleted: true } => {
            let items = api.list_deleted(None).await?;
            if json {
                return print_json(&items);
            }
            println!("{:<40}  {:<20}  PURGE DATE", "NAME", "DELETED");
            for d in &items {
                println!(
                    "{:<40}  {:<20}  {}",
                    d.item.name().unwrap_or("-"),
                    format_time(d.deletion.deleted_date),
                    format_time(d.deletion.scheduled_purge_date)
                );
            }
        }
        SecretCommand::Versions { name } => {
            let items = api.versions(&name, None).await?;
            if json {
                return print_json(&items);
            }
            show_items(&items, true);
        }
        SecretCommand::Delete { name } => {
            let mut deleted = api.delete(&name).await?;
            deleted.secret.value = None;
            if json {
                return print_json(&deleted);
            }
            println!(
                "Secret {name} deleted; recoverable until {}.",
                format_time(deleted.deletion.scheduled_purge_date)
            );
        }
        SecretCommand::Recover { name } => {
            let mut bundle = api.recover(&name).await?;
            bundle.value = None;
            if json {
                return print_json(&bundle);
            }
            println!("Secret {name} recovered.");
        }
        SecretCommand::Purge { name } => {
            api.purge(&name).await?;
            if !json {
                println!("Secret {name} purged.");
            }
        }
        SecretCommand::Backup { name, out } => {
            let blob = api.backup(&name).await?;
            write_private(&out, &blob)?;
            if !json {
                println!("Backup of {name} written to {}.", out.display());
            }
        }
        SecretCommand::Restore { input } => {
            let blob = std::fs::read(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let mut bundle = api.restore(&blob).await?;
            bundle.value = None;
            if json {
                return print_json(&bundle);
            }
            println!("Secret {} restored.", bundle.name().unwrap_or("-"));
        }
    }
    Ok(())
}

/// Parses `key=value` (the value may contain `=`).
pub(super) fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("tag {s:?} must look like key=value")),
    }
}

fn read_value(value: Option<String>, file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    if let Some(v) = value {
        return Ok(Zeroizing::new(v));
    }
    if let Some(path) = file {
        let bytes = Zeroizing::new(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        return Ok(Zeroizing::new(text.to_string()));
    }
    let mut buf = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut buf)
        .context("cannot read the value from stdin")?;
    Ok(strip_one_newline(buf))
}

/// Drops one trailing `\n` (or `\r\n`) as left by `echo` or a terminal.
fn strip_one_newline(mut s: Zeroizing<String>) -> Zeroizing<String> {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

pub(super) fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn show_bundle(b: &SecretBundle, field: Option<GetField>, json: bool) -> anyhow::Result<()> {
    match (field, json) {
        (Some(GetField::Value), _) => {
            println!("{}", b.value.as_deref().unwrap_or_default());
            Ok(())
        }
        (Some(GetField::Json), _) | (None, true) => print_json(b),
        (None, false) => {
            let a = &b.attributes;
            let tags = b.tags.as_ref().map_or_else(String::new, |t| {
                t.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            print_rows(&[
                ("Name", b.name().unwrap_or("-").to_string()),
                ("Version", b.version().unwrap_or("-").to_string()),
                ("Enabled", a.enabled.map_or("-".into(), |e| e.to_string())),
                ("Content Type", b.content_type.clone().unwrap_or_default()),
                ("Tags", tags),
                ("Not Before", format_time(a.nbf)),
                ("Expires", format_time(a.exp)),
                ("Created", format_time(a.created)),
                ("Updated", format_time(a.updated)),
                ("Value", b.value.clone().unwrap_or_default()),
            ]);
            Ok(())
        }
    }
}

fn show_items(items: &[SecretItem], versions: bool) {
    let first = if versions { "VERSION" } else { "NAME" };
    println!(
        "{first:<40}  {:<7}  {:<20}  CONTENT TYPE",
        "ENABLED", "UPDATED"
    );
    for i in items {
        let key = if versions { i.version() } else { i.name() };
        println!(
            "{:<40}  {:<7}  {:<20}  {}",
            key.unwrap_or("-"),
            i.attributes.enabled.map_or("-".into(), |e| e.to_string()),
            format_time(i.attributes.updated),
            i.content_type.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: SecretCommand,
    }

    fn parse(args: &[&str]) -> Result<SecretCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("secret").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn parses_set_with_repeated_tags() {
        let cmd = parse(&[
            "set",
            "db",
            "--value",
            "v",
            "--tag",
            "env=prod",
            "--tag",
            "q=a=b",
            "--content-type",
            "text/plain",
        ])
        .unwrap();
        let SecretCommand::Set {
            name,
            tags,
            content_type,
            ..
        } = cmd
        else {
            panic!("not set");
        };
        assert_eq!(name, "db");
        assert_eq!(
            tags,
            vec![("env".into(), "prod".into()), ("q".into(), "a=b".into())]
        );
        assert_eq!(content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn rejects_bad_tags_and_value_with_file() {
        assert!(parse(&["set", "db", "--tag", "novalue"]).is_err());
        assert!(parse(&["set", "db", "--value", "v", "--file", "/f"]).is_err());
    }

    #[test]
    fn parses_get_backup_restore() {
        assert!(matches!(
            parse(&["get", "db", "--version", "abc", "--field", "value"]).unwrap(),
            SecretCommand::Get { field: Some(GetField::Value), version: Some(ref v), .. } if v == "abc"
        ));
        assert!(parse(&["backup", "db"]).is_err(), "--out is required");
        assert!(matches!(
            parse(&["restore", "--in", "/tmp/b"]).unwrap(),
            SecretCommand::Restore { ref input } if input == Path::new("/tmp/b")
        ));
    }

    #[test]
    fn stdin_values_lose_exactly_one_newline() {
        let s = |v: &str| strip_one_newline(Zeroizing::new(v.to_string())).to_string();
        assert_eq!(s("pw\n"), "pw");
        assert_eq!(s("pw\r\n"), "pw");
        assert_eq!(s("pw\n\n"), "pw\n");
        assert_eq!(s("pw"), "pw");
    }

    #[test]
    fn backups_are_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        write_private(&p, b"blob").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"blob");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
