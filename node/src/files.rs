//! File modes of what the node keeps on disk: the process umask, owner-only
//! directories and files created with explicit modes, and the start-up check
//! that refuses a data directory or key file others can read or write.
//!
//! The data dir holds the databases (object names, the root token's hash,
//! sealed data), so it is 0700 and its files 0600 whatever umask the node
//! inherited; certificates are 0644 (public, never writable by others).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// Mode of directories the node creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of secret files the node writes (keys, tokens, shares, databases).
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of public files the node writes (certificates).
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Sets the process umask to 0o077, so anything created without an
/// explicit mode (by a library, say) is owner-only too. Called first thing
/// by the binary; never by library code, as the umask is process-wide.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` (and missing parents) readable by its owner only. An
/// existing directory keeps its mode: [`check_node_files`] judges it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    // The mode given at creation is masked by the umask: set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
}

/// Writes `contents` to `path` readable by its owner only (an existing
/// file is truncated and brought to 0600 too).
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, contents, PRIVATE_FILE_MODE)
}

/// Writes a public file (a certificate): 0644, never writable by others.
pub fn write_public_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, contents, PUBLIC_FILE_MODE)
}

fn write_with_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // `mode` applies to new files only and is masked by the umask; an
    // existing file keeps its old mode unless set here.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// What a checked path holds, which decides what others may do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// A data directory: owner only.
    DataDir,
    /// A private key or PIN: owner only.
    SecretFile,
    /// A certificate: anyone may read it, only the owner may write it.
    PublicFile,
}

impl Guarded {
    /// Permission bits that must be clear.
    fn forbidden(self) -> u32 {
        match self {
            Guarded::DataDir | Guarded::SecretFile => 0o077,
            Guarded::PublicFile => 0o022,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Guarded::DataDir => "data directory",
            Guarded::SecretFile => "key file",
            Guarded::PublicFile => "certificate",
        }
    }

    fn access(self) -> &'static str {
        match self {
            Guarded::DataDir | Guarded::SecretFile => "readable or writable",
            Guarded::PublicFile => "writable",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Guarded::DataDir => "chmod 700",
            Guarded::SecretFile => "chmod 600",
            Guarded::PublicFile => "chmod go-w",
        }
    }
}

/// Why the node refuses to start on its files.
#[derive(Debug, thiserror::Error)]
pub enum FileModeError {
    /// Group or others may access a path they must not.
    #[error(
        "the {what} {path} is {access} by group or others (mode {mode:04o}); \
         run `{fix} {path}`, or set allow_insecure_permissions = true in the config to start anyway",
        what = kind.what(),
        path = path.display(),
        access = kind.access(),
        fix = kind.fix()
    )]
    TooOpen {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What it holds.
        kind: Guarded,
    },
    /// The path's metadata could not be read.
    #[error("cannot check the permissions of {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Checks one path; a missing path passes (it is created owner-only, or
/// its absence is reported by whoever needs it).
pub fn check(path: &Path, kind: Guarded) -> Result<(), FileModeError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(FileModeError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & kind.forbidden() != 0 {
        return Err(FileModeError::TooOpen {
            path: path.to_path_buf(),
            mode,
            kind,
        });
    }
    Ok(())
}

/// The start-up check of a node's data dir, TLS files, HSM PIN file and join token file
/// (skipped, with a warning, when `allow_insecure_permissions` is set).
pub fn check_node_files(config: &Config) -> Result<(), FileModeError> {
    if config.allow_insecure_permissions {
        tracing::warn!("allow_insecure_permissions is set: file permissions are not checked");
        return Ok(());
    }
    check(&config.data_dir, Guarded::DataDir)?;
    check(&config.tls.key, Guarded::SecretFile)?;
    if let Some(pin) = config.hsm.as_ref().and_then(|h| h.pin_file.as_deref()) {
        check(pin, Guarded::SecretFile)?;
    }
    if let Some(token) = &config.join_token_file {
        check(token, Guarded::SecretFile)?;
    }
    check(&config.tls.cert, Guarded::PublicFile)?;
    check(&config.tls.ca, Guarded::PublicFile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_or_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        assert!(
            check(&data, Guarded::DataDir).is_ok(),
            "absent: created later"
        );
        create_private_dir(&data).unwrap();
        assert_eq!(mode_of(&data), 0o700);
        assert!(check(&data, Guarded::DataDir).is_ok());
        chmod(&data, 0o755);
        let err = check(&data, Guarded::DataDir).unwrap_err().to_string();
        assert!(err.contains(&data.display().to_string()), "{err}");
        assert!(err.contains("chmod 700") && err.contains("0755"), "{err}");
        assert!(err.contains("allow_insecure_permissions"), "{err}");

        let key = dir.path().join("key.pem");
        write_private_file(&key, b"k").unwrap();
        assert_eq!(mode_of(&key), 0o600);
        assert!(check(&key, Guarded::SecretFile).is_ok());
        chmod(&key, 0o640);
        let err = check(&key, Guarded::SecretFile).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");

        let cert = dir.path().join("ca.pem");
        write_public_file(&cert, b"c").unwrap();
        assert_eq!(mode_of(&cert), 0o644);
        assert!(
            check(&cert, Guarded::PublicFile).is_ok(),
            "readable is fine"
        );
        chmod(&cert, 0o666);
        let err = check(&cert, Guarded::PublicFile).unwrap_err().to_string();
        assert!(err.contains("writable") && err.contains("go-w"), "{err}");
    }

    #[test]
    fn rewriting_a_file_restores_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, b"old").unwrap();
        chmod(&key, 0o666);
        write_private_file(&key, b"new").unwrap();
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"new");
        chmod(&key, 0o600);
        write_public_file(&key, b"cert").unwrap();
        assert_eq!(mode_of(&key), 0o644);
    }

    #[test]
    fn the_node_check_covers_data_dir_key_and_certs_unless_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        create_private_dir(&p("data")).unwrap();
        write_private_file(&p("key.pem"), b"k").unwrap();
        write_public_file(&p("cert.pem"), b"c").unwrap();
        write_public_file(&p("ca.pem"), b"c").unwrap();
        write_private_file(&p("join-token"), b"0123456789abcdef").unwrap();
        let text = format!(
            "node_id = 1\ndata_dir = {:?}\napi_addr = \"127.0.0.1:1\"\ncluster_addr = \"127.0.0.1:2\"\n\
             join_token_file = {:?}\n[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            p("data"),
            p("join-token"),
            p("ca.pem"),
            p("cert.pem"),
            p("key.pem")
        );
        let mut config: Config = toml::from_str(&text).unwrap();
        check_node_files(&config).unwrap();
        for (name, mode) in [
            ("data", 0o750),
            ("key.pem", 0o604),
            ("join-token", 0o640),
            ("ca.pem", 0o664),
        ] {
            let good = mode_of(&p(name));
            chmod(&p(name), mode);
            let err = check_node_files(&config).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            config.allow_insecure_permissions = true;
            check_node_files(&config).unwrap();
            config.allow_insecure_permissions = false;
            chmod(&p(name), good);
        }
    }
}
