//! The opened device: one PKCS#11 context per module (process-wide, never
//! finalised), the slot found by token label, the user login, and a pool of
//! read-write sessions reused across operations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

/// PKCS#11 allows one `C_Initialize` per module and process, and finalising
/// it would invalidate every other user of the module in this process, so
/// contexts live for the whole process.
fn context_for(module: &Path) -> Result<Pkcs11, String> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(Default::default);
    let mut map = contexts
        .lock()
        .map_err(|_| "PKCS#11 context registry poisoned".to_string())?;
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module)
        .map_err(|e| format!("cannot load PKCS#11 module {}: {e}", module.display()))?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::AlreadyInitialized) => {}
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(format!(
                "cannot initialise PKCS#11 module {}: {e}",
                module.display()
            ))
        }
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Failure inside a pooled-session closure: a device error (inspected for
/// re-login and dead sessions) or an already-classified crypto error.
#[derive(Debug)]
pub(crate) enum OpError {
    /// What the device returned.
    Device(CkError),
    /// A decision made on the host (bad input, unsupported, …).
    Crypto(crate::CryptoError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Device(e)
    }
}

impl From<crate::CryptoError> for OpError {
    fn from(e: crate::CryptoError) -> Self {
        OpError::Crypto(e)
    }
}

fn is_rv(e: &OpError, wanted: &[RvError]) -> bool {
    matches!(e, OpError::Device(CkError::Pkcs11(rv, _)) if wanted.contains(rv))
}

/// An opened, logged-in token with a bounded pool of sessions.
pub(crate) struct Device {
    pub(crate) ctx: Pkcs11,
    pub(crate) slot: Slot,
    pin: Zeroizing<String>,
    idle: Mutex<Vec<Session>>,
    open: Mutex<usize>,
    freed: Condvar,
    max_sessions: usize,
}

impl Device {
    /// Loads the module, finds the token by label and logs in.
    pub(crate) fn open(
        module: &Path,
        label: &str,
        pin: Zeroizing<String>,
        max_sessions: usize,
    ) -> Result<Self, String> {
        let ctx = context_for(module)?;
        let slot = find_slot(&ctx, label)?;
        let device_max: Option<u64> = ctx
            .get_token_info(slot)
            .map_err(|e| format!("cannot read token info: {e}"))?
            .max_rw_session_count()
            .into();
        let max_sessions = match device_max {
            Some(n) if n > 0 => max_sessions.min(n as usize),
            _ => max_sessions,
        };
        let device = Device {
            ctx,
            slot,
            pin,
            idle: Mutex::new(Vec::new()),
            open: Mutex::new(0),
            freed: Condvar::new(),
            max_sessions,
        };
        // Log in now so a wrong PIN shows at startup, not at the first request.
        let session = device
            .new_session()
            .map_err(|e| format!("cannot log in to token {label:?}: {}", describe(&e)))?;
        device.give_back(session);
        Ok(device)
    }

    /// Sessions this device may have open at once.
    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Runs `f` on a pooled session. A `CKR_USER_NOT_LOGGED_IN` (the token
    /// was reset or logged out underneath us) logs in again and retries
    /// once; a session the device no longer knows is discarded.
    pub(crate) fn with_session<T>(
        &self,
        mut f: impl FnMut(&Session) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let session = self.take()?;
        let mut result = f(&session);
        if matches!(&result, Err(e) if is_rv(e, &[RvError::UserNotLoggedIn])) {
            self.login(&session)?;
            result = f(&session);
        }
        let dead = [
            RvError::SessionHandleInvalid,
            RvError::SessionClosed,
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
        ];
        if matches!(&result, Err(e) if is_rv(e, &dead)) {
            self.discard(session);
        } else {
            self.give_back(session);
        }
        result
    }

    fn take(&self) -> Result<Session, CkError> {
        let mut open = self.open.lock().map_err(|_| CkError::InvalidValue)?;
        loop {
            if let Some(s) = self.idle.lock().map_err(|_| CkError::InvalidValue)?.pop() {
                return Ok(s);
            }
            if *open < self.max_sessions {
                *open += 1;
                drop(open);
                return self.new_session().inspect_err(|_| self.release_slot());
            }
            open = self.freed.wait(open).map_err(|_| CkError::InvalidValue)?;
        }
    }

    fn new_session(&self) -> Result<Session, CkError> {
        let session = self.ctx.open_rw_session(self.slot)?;
        let state = session.get_session_info()?.session_state();
        if !matches!(state, SessionState::RwUser) {
            self.login(&session)?;
        }
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), CkError> {
        let pin = AuthPin::new(self.pin.as_str().to_string());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn give_back(&self, session: Session) {
        // Hold `open` (the condvar's mutex) so a waiter that just found the
        // idle list empty cannot miss this wake-up.
        let _open = self.open.lock();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
        }
        self.freed.notify_one();
    }

    fn discard(&self, session: Session) {
        drop(session);
        self.release_slot();
    }

    fn release_slot(&self) {
        if let Ok(mut open) = self.open.lock() {
            *open = open.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, String> {
    let slots = ctx
        .get_slots_with_initialized_token()
        .map_err(|e| format!("cannot list slots: {e}"))?;
    let mut found = None;
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end() == label {
            if found.is_some() {
                return Err(format!("more than one token is labelled {label:?}"));
            }
            found = Some(slot);
        }
    }
    found.ok_or_else(|| format!("no token labelled {label:?} in the PKCS#11 module"))
}

/// A device error in words an operator can act on (never contains the PIN).
pub(crate) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => "the token refused the PIN".into(),
        CkError::Pkcs11(RvError::PinLocked, _) => "the token's user PIN is locked".into(),
        CkError::Pkcs11(RvError::UserPinNotInitialized, _) => {
            "the token's user PIN is not initialised".into()
        }
        CkError::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
        other => other.to_string(),
    }
}
