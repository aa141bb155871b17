//! Process hardening of a node: no core dumps, memory locked against swap,
//! and secrets passed in environment variables taken out of the
//! environment once read.
//!
//! A node's memory holds the unsealed root key, data keys and decrypted
//! values. A core dump, a swapped-out page or `/proc/PID/environ` would put
//! them on disk or in reach of other users; these calls close those paths.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use zeroize::Zeroizing;

/// Why a hardening step failed.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// `mlockall` was refused.
    #[error(
        "cannot lock the node's memory against swap (mlockall: {source}); {hint} — \
         or set lock_memory = false in the config where swap is off or encrypted"
    )]
    LockMemory {
        /// What the kernel said.
        source: std::io::Error,
        /// How to allow it.
        hint: &'static str,
    },
    /// Core dumps could not be turned off.
    #[error("cannot turn core dumps off ({what}: {source})")]
    CoreDumps {
        /// The call that failed.
        what: &'static str,
        /// What the kernel said.
        source: std::io::Error,
    },
}

/// Turns core dumps off for this process: not dumpable (which also keeps
/// other users' `ptrace` and `/proc/PID/mem` out) and a core size limit of 0
/// (inherited by anything it starts).
pub fn disable_core_dumps() -> Result<(), HardeningError> {
    use rustix::process::{set_dumpable_behavior, setrlimit, DumpableBehavior, Resource, Rlimit};
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| {
        HardeningError::CoreDumps {
            what: "prctl(PR_SET_DUMPABLE, 0)",
            source: e.into(),
        }
    })?;
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, zero).map_err(|e| HardeningError::CoreDumps {
        what: "setrlimit(RLIMIT_CORE, 0)",
        source: e.into(),
    })
}

/// Locks every current and future page of the process in RAM. Pages are
/// locked as they are first touched (`MCL_ONFAULT`), so reserved but unused
/// address space costs nothing.
///
/// Refused up front when neither CAP_IPC_LOCK nor an unlimited memlock
/// limit allows it: with a finite limit `mlockall` itself may succeed and
/// every later allocation past the limit fail, which would crash the node
/// at an arbitrary moment instead of refusing it at start.
pub fn lock_memory() -> Result<(), HardeningError> {
    use rustix::mm::{mlockall, MlockAllFlags};
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    if limit.current.is_some() && !has_ipc_lock() {
        return Err(lock_memory_error(std::io::Error::from_raw_os_error(
            rustix::io::Errno::PERM.raw_os_error(),
        )));
    }
    let flags = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT;
    mlockall(flags).map_err(|e| lock_memory_error(e.into()))
}

/// Bit of CAP_IPC_LOCK in the capability sets (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

/// Whether this process holds CAP_IPC_LOCK (locks memory past any limit).
fn has_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The error of a refused `mlockall`, with the fix for where nodes run.
fn lock_memory_error(source: std::io::Error) -> HardeningError {
    let hint = match source.raw_os_error() {
        Some(code) if code == rustix::io::Errno::PERM.raw_os_error() => {
            "the process has neither CAP_IPC_LOCK nor an unlimited memlock limit: run it \
             with LimitMEMLOCK=infinity (systemd), --ulimit memlock=-1 (Docker), or the \
             IPC_LOCK capability (Kubernetes)"
        }
        Some(code) if code == rustix::io::Errno::NOMEM.raw_os_error() => {
            "the memlock limit (ulimit -l) is smaller than the node's memory: raise it \
             (systemd LimitMEMLOCK=infinity, Docker --ulimit memlock=-1)"
        }
        _ => "see mlockall(2)",
    };
    HardeningError::LockMemory { source, hint }
}

/// Secrets taken out of the environment, by variable name.
fn taken() -> &'static Mutex<HashMap<String, Zeroizing<String>>> {
    static TAKEN: OnceLock<Mutex<HashMap<String, Zeroizing<String>>>> = OnceLock::new();
    TAKEN.get_or_init(Default::default)
}

/// Reads the secret variable `name` once, overwrites its bytes in the
/// process's initial environment block (what `/proc/PID/environ` shows),
/// removes it from the environment (children never inherit it) and keeps
/// the value for [`env_secret`]. Returns the value, if the variable was set.
///
/// Call before any other thread exists (the binary does so in `main`,
/// before the async runtime starts): changing the environment while
/// another thread reads it is undefined behaviour in C.
pub fn take_env_secret(name: &str) -> Option<Zeroizing<String>> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    scrub_environ_value(name);
    std::env::remove_var(name);
    let mut map = taken().lock().unwrap_or_else(PoisonError::into_inner);
    map.insert(name.to_string(), value.clone());
    Some(value)
}

/// A secret variable: the value [`take_env_secret`] took, or else (in a
/// process that took nothing, such as an in-process test) the environment's.
pub fn env_secret(name: &str) -> Option<Zeroizing<String>> {
    let map = taken().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = map.get(name) {
        return Some(v.clone());
    }
    drop(map);
    std::env::var(name).ok().map(Zeroizing::new)
}

/// Zeroes the value of `name` where the C environment holds it. For a
/// variable set at exec time that is the initial stack block, which
/// `/proc/PID/environ` reads; `unsetenv` alone only unlinks it.
fn scrub_environ_value(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: single-threaded caller (see `take_env_secret`); `getenv`
    // returns a pointer to a NUL-terminated value inside the environment,
    // owned by the process, which stays valid until the environment is
    // changed — we write within its `strlen` bytes before that.
    unsafe {
        let value = libc::getenv(cname.as_ptr());
        if value.is_null() {
            return;
        }
        let len = libc::strlen(value);
        for i in 0..len {
            std::ptr::write_volatile(value.add(i), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test runs in its own process under nextest, so changing this
    // process's limits does not leak into other tests.

    #[test]
    fn core_dumps_are_off_after_disable() {
        disable_core_dumps().unwrap();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!(limit.current, Some(0));
        assert_eq!(limit.maximum, Some(0));
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    #[test]
    fn a_refused_mlockall_says_how_to_allow_it() {
        let err = lock_memory_error(std::io::Error::from_raw_os_error(
            rustix::io::Errno::PERM.raw_os_error(),
        ))
        .to_string();
        assert!(err.contains("LimitMEMLOCK=infinity"), "{err}");
        assert!(err.contains("IPC_LOCK"), "{err}");
        assert!(err.contains("lock_memory = false"), "{err}");
        let err = lock_memory_error(std::io::Error::from_raw_os_error(
            rustix::io::Errno::NOMEM.raw_os_error(),
        ))
        .to_string();
        assert!(err.contains("ulimit -l"), "{err}");
    }

    #[test]
    fn a_taken_secret_leaves_the_environment_but_stays_readable() {
        let name = "COFFER_TEST_TAKEN_SECRET";
        std::env::set_var(name, "s3cret-value");
        let value = take_env_secret(name).unwrap();
        assert_eq!(value.as_str(), "s3cret-value");
        assert!(std::env::var_os(name).is_none(), "still in the environment");
        assert_eq!(env_secret(name).unwrap().as_str(), "s3cret-value");
        assert!(take_env_secret("COFFER_TEST_NEVER_SET").is_none());
    }
}
