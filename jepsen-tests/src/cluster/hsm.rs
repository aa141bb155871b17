//! SoftHSM2 tokens under the cluster directory: each node its own
//! `SOFTHSM2_CONF` and token dir (its own device, as in production: SoftHSM2
//! rescans the whole token dir, so nodes sharing one race on each other's
//! files), the PIN in a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// The SoftHSM2 module the nodes load.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const USER_PIN: &str = "coffer-test-pin";
const SO_PIN: &str = "coffer-test-so-pin";

pub fn conf_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("softhsm")
        .join(format!("node{id}"))
        .join("softhsm2.conf")
}

fn pin_path(dir: &Path) -> PathBuf {
    dir.join("softhsm").join("pin")
}

pub fn init_tokens(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("softhsm"))?;
    write_pin(dir)?;
    for id in 1..=nodes as u64 {
        init_token(dir, id)?;
    }
    Ok(())
}

fn write_pin(dir: &Path) -> anyhow::Result<()> {
    // Nodes refuse a PIN file others can read.
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut pin = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(pin_path(dir))?;
        pin.write_all(USER_PIN.as_bytes())?;
    }
    Ok(())
}

fn tokens_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join("softhsm").join(format!("node{id}")).join("tokens")
}

/// Node `id`'s `softhsm2.conf`, pointing at its own token dir.
fn write_conf(dir: &Path, id: u64) -> anyhow::Result<()> {
    let tokens = tokens_dir(dir, id);
    std::fs::create_dir_all(&tokens)?;
    let text = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        tokens.display()
    );
    std::fs::write(conf_path(dir, id), text)?;
    Ok(())
}

fn init_token(dir: &Path, id: u64) -> anyhow::Result<()> {
    init_labelled_token(dir, id, &format!("coffer-node{id}"))
}

fn init_labelled_token(dir: &Path, id: u64, label: &str) -> anyhow::Result<()> {
    write_conf(dir, id)?;
    let conf = conf_path(dir, id);
    let status = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label"])
        .arg(label)
        .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", &conf)
        .stdout(Stdio::null())
        .status()
        .context("running softhsm2-util (install softhsm2)")?;
    if !status.success() {
        bail!("softhsm2-util --init-token failed: {status}");
    }
    Ok(())
}

/// Node `id`'s token as [`super::HsmToken`].
pub fn token(dir: &Path, id: u64) -> super::HsmToken {
    super::HsmToken {
        module: PathBuf::from(MODULE),
        conf: conf_path(dir, id),
        label: format!("coffer-node{id}"),
        pin: USER_PIN.into(),
    }
}

/// Label of the shared auto-unseal token.
pub const SEAL_TOKEN: &str = "coffer-seal";

/// One token `coffer-seal` in node 1's token dir, its seal key made by
/// `coffer operator seal-key create` (node 1's config), then that token
/// dir copied to every other node: each node its own copy of the same
/// device key (SoftHSM2 rescans its token dir, so nodes do not share one).
pub fn init_seal_tokens(
    dir: &Path,
    nodes: usize,
    binary: &Path,
    node1_config: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("softhsm"))?;
    write_pin(dir)?;
    init_labelled_token(dir, 1, SEAL_TOKEN)?;
    let out = Command::new(binary)
        .args(["operator", "seal-key", "create", "--config"])
        .arg(node1_config)
        .env("SOFTHSM2_CONF", conf_path(dir, 1))
        .output()
        .context("running coffer operator seal-key create")?;
    if !out.status.success() {
        bail!(
            "coffer operator seal-key create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let source = tokens_dir(dir, 1);
    for id in 2..=nodes as u64 {
        let target = tokens_dir(dir, id);
        std::fs::create_dir_all(&target)?;
        copy_dir(&source, &target)?;
        write_conf(dir, id)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// `[hsm]` on the shared seal token and `[seal] type = seal_type`.
pub fn seal_config_section(dir: &Path, seal_type: &str) -> String {
    format!(
        "[hsm]\nmodule = {MODULE:?}\ntoken_label = {SEAL_TOKEN:?}\npin_file = {:?}\n\
         [seal]\ntype = {seal_type:?}\n",
        pin_path(dir)
    )
}

pub fn config_section(dir: &Path, id: u64) -> String {
    format!(
        "[hsm]\nmodule = {MODULE:?}\ntoken_label = \"coffer-node{id}\"\npin_file = {:?}\n",
        pin_path(dir)
    )
}
