//! `coffer key …`: the Key Vault keys API from the command line, on top of
//! `coffer_client::Keys` (failover, leader routing, idempotent retries).
//!
//! Binary inputs and outputs (digests, signatures, ciphertexts) are
//! base64url on the command line; `decrypt` writes the plaintext raw to
//! stdout so it can be piped.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Subcommand;
use coffer_client::keys::{
    CipherParams, CreateKeyOptions, KeyBundle, KeyItem, KeyProperties, RotationPolicy,
};
use zeroize::Zeroizing;

use super::secret::{parse_tag, write_private};
use super::{format_time, print_json, print_rows, ClientArgs};

/// Key subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Create a key (or a new version of it).
    Create {
        /// Key name.
        name: String,
        /// Key type: RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM.
        #[arg(long, default_value = "EC")]
        kty: String,
        /// RSA or oct size in bits.
        #[arg(long)]
        size: Option<u32>,
        /// EC curve (P-256, P-384, P-521, P-256K).
        #[arg(long)]
        curve: Option<String>,
        /// Permitted operation; repeatable (default: all the type allows).
        #[arg(long = "op")]
        ops: Vec<String>,
        /// Tag `key=value`; repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Create the version disabled.
        #[arg(long)]
        disabled: bool,
        /// Expiry (Unix seconds).
        #[arg(long)]
        expires: Option<i64>,
    },
    /// List keys.
    List {
        /// List soft-deleted keys instead.
        #[arg(long)]
        deleted: bool,
    },
    /// Show a key (public part only).
    Get {
        /// Key name.
        name: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// List the versions of a key.
    Versions {
        /// Key name.
        name: String,
    },
    /// Sign a digest (or a file, hashed here as the algorithm says).
    Sign {
        /// Key name.
        name: String,
        /// Algorithm: ES256, ES384, ES512, RS256, PS256, …
        #[arg(long)]
        alg: String,
        /// The digest, base64url.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        digest: Option<String>,
        /// A file to hash and sign.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Verify a signature; exits with status 1 when it does not verify.
    Verify {
        /// Key name.
        name: String,
        /// Algorithm.
        #[arg(long)]
        alg: String,
        /// The digest, base64url.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        digest: Option<String>,
        /// A file to hash.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The signature, base64url.
        #[arg(long)]
        signature: String,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Encrypt a value (from --file or stdin); prints base64url ciphertext.
    Encrypt {
        /// Key name.
        name: String,
        /// Algorithm: RSA-OAEP-256, RSA-OAEP, A256GCM, …
        #[arg(long)]
        alg: String,
        /// Read the plaintext from this file (else stdin).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Version (default: latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Decrypt a base64url ciphertext; writes the plaintext raw to stdout.
    Decrypt {
        /// Key name.
        name: String,
        /// Algorithm.
        #[arg(long)]
        alg: String,
        /// Ciphertext, base64url.
        #[arg(long)]
        ciphertext: String,
        /// IV (AES), base64url.
        #[arg(long)]
        iv: Option<String>,
        /// Authentication tag (AES-GCM), base64url.
        #[arg(long)]
        tag: Option<String>,
        /// Version the ciphertext was made with (default: latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Make a new version of a key with the same parameters.
    Rotate {
        /// Key name.
        name: String,
    },
    /// Show the rotation policy, or set it with --rotate-after.
    RotationPolicy {
        /// Key name.
        name: String,
        /// Rotate this ISO-8601 duration after creation (e.g. P90D).
        #[arg(long)]
        rotate_after: Option<String>,
        /// Expiry of new versions, ISO-8601 (e.g. P1Y).
        #[arg(long, requires = "rotate_after")]
        expiry: Option<String>,
    },
    /// Soft-delete a key (all versions).
    Delete {
        /// Key name.
        name: String,
    },
    /// Recover a soft-deleted key.
    Recover {
        /// Key name.
        name: String,
    },
    /// Purge a soft-deleted key for good.
    Purge {
        /// Key name.
        name: String,
    },
    /// Write a protected backup of a key to a file (mode 0600).
    Backup {
        /// Key name.
        name: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a key from a backup file.
    Restore {
        /// Backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// Runs one key command against the cluster.
pub async fn run_key(args: &ClientArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    let client = args.client()?;
    let api = client.keys();
    let json = args.json_output();
    match cmd {
        KeyCommand::Create {
            name,
            kty,
            size,
            curve,
            ops,
            tags,
            disabled,
            expires,
        } => {
            let opts = CreateKeyOptions {
                kty,
                key_size: size,
                crv: curve,
                key_ops: (!ops.is_empty()).then_some(ops),
                properties: KeyProperties {
                    enabled: disabled.then_some(false),
                    exp: expires,
                    tags: (!tags.is_empty()).then(|| tags.into_iter().collect::<BTreeMap<_, _>>()),
                    ..KeyProperties::default()
                },
                ..CreateKeyOptions::default()
            };
            let key = api.create(&name, &opts).await?;
            if json {
                return print_json(&key);
            }
            println!(
                "Key {} created, version {}.",
                key.name().unwrap_or(&name),
                key.version().unwrap_or("-")
            );
        }
        KeyCommand::List { deleted: false } => {
            let items = api.list(None).await?;
            if json {
                return print_json(&items);
            }
            show_items(&items, false);
        }
        KeyCommand::List { deleted: true } => {
            use futures::TryStreamExt as _;
            let items: Vec<_> = api.list_deleted_stream(None).try_collect().await?;
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
        KeyCommand::Get { name, version } => {
            let key = api.get(&name, version.as_deref()).await?;
            if json {
                return print_json(&key);
            }
            show_key(&key);
        }
        KeyCommand::Versions { name } => {
            let items = api.versions(&name, None).await?;
            if json {
                return print_json(&items);
            }
            show_items(&items, true);
        }
        KeyCommand::Sign {
            name,
            alg,
            digest,
            file,
            version,
        } => {
            let digest = digest_of(&alg, digest.as_deref(), file.as_ref())?;
            let sig = api.sign(&name, version.as_deref(), &alg, &digest).await?;
            let sig = URL_SAFE_NO_PAD.encode(sig);
            if json {
                return print_json(&serde_json::json!({ "alg": alg, "signature": sig }));
            }
            println!("{sig}");
        }
        KeyCommand::Verify {
            name,
            alg,
            digest,
            file,
            signature,
            version,
        } => {
            let digest = digest_of(&alg, digest.as_deref(), file.as_ref())?;
            let sig = unb64(&signature, "--signature")?;
            let valid = api
                .verify(&name, version.as_deref(), &alg, &digest, &sig)
                .await?;
            if json {
                print_json(&serde_json::json!({ "valid": valid }))?;
            } else {
                println!("{}", if valid { "valid" } else { "invalid" });
            }
            if !valid {
                std::process::exit(1);
            }
        }
        KeyCommand::Encrypt {
            name,
            alg,
            file,
            version,
        } => {
            let plaintext = read_input(file.as_ref())?;
            let out = api
                .encrypt(
                    &name,
                    version.as_deref(),
                    &alg,
                    &plaintext,
                    &CipherParams::default(),
                )
                .await?;
            let b = |v: &Option<Vec<u8>>| v.as_deref().map(|v| URL_SAFE_NO_PAD.encode(v));
            if json {
                return print_json(&serde_json::json!({
                    "kid": out.kid, "ciphertext": URL_SAFE_NO_PAD.encode(&out.value),
                    "iv": b(&out.iv), "tag": b(&out.tag),
                }));
            }
            println!("{}", URL_SAFE_NO_PAD.encode(&out.value));
            if let Some(iv) = b(&out.iv) {
                eprintln!("iv: {iv}");
            }
            if let Some(tag) = b(&out.tag) {
                eprintln!("tag: {tag}");
            }
        }
        KeyCommand::Decrypt {
            name,
            alg,
            ciphertext,
            iv,
            tag,
            version,
        } => {
            let params = CipherParams {
                iv: iv.map(|v| unb64(&v, "--iv")).transpose()?,
                tag: tag.map(|v| unb64(&v, "--tag")).transpose()?,
                aad: None,
            };
            let ciphertext = unb64(&ciphertext, "--ciphertext")?;
            let out = api
                .decrypt(&name, version.as_deref(), &alg, &ciphertext, &params)
                .await?;
            std::io::stdout()
                .write_all(&out.value)
                .context("writing the plaintext")?;
        }
        KeyCommand::Rotate { name } => {
            let key = api.rotate(&name).await?;
            if json {
                return print_json(&key);
            }
            println!(
                "Key {name} rotated, new version {}.",
                key.version().unwrap_or("-")
            );
        }
        KeyCommand::RotationPolicy {
            name,
            rotate_after,
            expiry,
        } => {
            let policy = match rotate_after {
                Some(after) => {
                    let p = RotationPolicy::rotate_after(&after, expiry.as_deref());
                    api.set_rotation_policy(&name, &p).await?
                }
                None => api.rotation_policy(&name).await?,
            };
            print_json(&policy)?;
        }
        KeyCommand::Delete { name } => {
            let deleted = api.delete(&name).await?;
            if json {
                return print_json(&deleted);
            }
            println!(
                "Key {name} deleted; recoverable until {}.",
                format_time(deleted.deletion.scheduled_purge_date)
            );
        }
        KeyCommand::Recover { name } => {
            let key = api.recover(&name).await?;
            if json {
                return print_json(&key);
            }
            println!("Key {name} recovered.");
        }
        KeyCommand::Purge { name } => {
            api.purge(&name).await?;
            if !json {
                println!("Key {name} purged.");
            }
        }
        KeyCommand::Backup { name, out } => {
            let blob = api.backup(&name).await?;
            write_private(&out, &blob)?;
            if !json {
                println!("Backup of {name} written to {}.", out.display());
            }
        }
        KeyCommand::Restore { input } => {
            let blob = std::fs::read(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let key = api.restore(&blob).await?;
            if json {
                return print_json(&key);
            }
            println!("Key {} restored.", key.name().unwrap_or("-"));
        }
    }
    Ok(())
}

fn unb64(text: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .with_context(|| format!("{what} is not base64url"))
}

/// The digest given, or the file hashed with the algorithm's hash.
fn digest_of(alg: &str, digest: Option<&str>, file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    if let Some(d) = digest {
        return unb64(d, "--digest");
    }
    let Some(path) = file else {
        bail!("give --digest or --file");
    };
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let hash = hash_for(alg)?;
    Ok(aws_lc_rs::digest::digest(hash, &data).as_ref().to_vec())
}

/// The hash a signature algorithm signs (its last three digits).
fn hash_for(alg: &str) -> anyhow::Result<&'static aws_lc_rs::digest::Algorithm> {
    let upper = alg.to_ascii_uppercase();
    Ok(if upper.ends_with("256") || upper == "ES256K" {
        &aws_lc_rs::digest::SHA256
    } else if upper.ends_with("384") {
        &aws_lc_rs::digest::SHA384
    } else if upper.ends_with("512") {
        &aws_lc_rs::digest::SHA512
    } else {
        bail!("cannot tell the hash of {alg}: pass --digest")
    })
}

fn read_input(file: Option<&PathBuf>) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(path) = file {
        return std::fs::read(path)
            .map(Zeroizing::new)
            .with_context(|| format!("cannot read {}", path.display()));
    }
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("cannot read stdin")?;
    Ok(buf)
}

fn show_key(k: &KeyBundle) {
    let a = &k.attributes;
    print_rows(&[
        ("Name", k.name().unwrap_or("-").to_string()),
        ("Version", k.version().unwrap_or("-").to_string()),
        ("Type", k.key.kty.clone()),
        ("Curve", k.key.crv.clone().unwrap_or_default()),
        ("Operations", k.key.key_ops.join(", ")),
        ("Enabled", a.enabled.map_or("-".into(), |e| e.to_string())),
        ("Expires", format_time(a.exp)),
        ("Created", format_time(a.created)),
        ("Updated", format_time(a.updated)),
    ]);
}

fn show_items(items: &[KeyItem], versions: bool) {
    let first = if versions { "VERSION" } else { "NAME" };
    println!("{first:<40}  {:<7}  UPDATED", "ENABLED");
    for i in items {
        let key = if versions { i.version() } else { i.name() };
        println!(
            "{:<40}  {:<7}  {}",
            key.unwrap_or("-"),
            i.attributes.enabled.map_or("-".into(), |e| e.to_string()),
            format_time(i.attributes.updated)
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
        cmd: KeyCommand,
    }

    fn parse(args: &[&str]) -> Result<KeyCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("key").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn parses_create_and_sign() {
        let cmd = parse(&[
            "create", "k", "--kty", "RSA", "--size", "3072", "--op", "sign",
        ])
        .unwrap();
        assert!(matches!(
            cmd,
            KeyCommand::Create { ref kty, size: Some(3072), ref ops, .. } if kty == "RSA" && ops == &["sign"]
        ));
        assert!(
            parse(&["sign", "k", "--alg", "ES256"]).is_err(),
            "digest or file needed"
        );
        assert!(parse(&["sign", "k", "--alg", "ES256", "--digest", "AA", "--file", "/f"]).is_err());
        assert!(parse(&["rotation-policy", "k", "--expiry", "P1Y"]).is_err());
    }

    #[test]
    fn files_are_hashed_as_the_algorithm_says() {
        assert_eq!(hash_for("ES256").unwrap().output_len(), 32);
        assert_eq!(hash_for("PS384").unwrap().output_len(), 48);
        assert_eq!(hash_for("rs512").unwrap().output_len(), 64);
        assert!(hash_for("RSNULL").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        std::fs::write(&p, b"abc").unwrap();
        let d = digest_of("ES256", None, Some(&p)).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(d),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        assert_eq!(digest_of("ES256", Some("AAE"), None).unwrap(), vec![0, 1]);
    }
}
