//! Start-up check of the CPU extensions the binary was compiled to use.
//!
//! `.cargo/config.toml` enables AES-NI and PCLMULQDQ for the whole build, so
//! the barrier's AES-GCM-SIV uses them without run-time dispatch. On a CPU
//! without them those instructions would fault (SIGILL) at the first
//! encryption; checking first turns that into a clear refusal.

/// Extensions compiled in and what needs them.
const REQUIRED: &[(&str, &str)] = &[
    ("aes", "AES-NI (AES-256-GCM-SIV barrier)"),
    ("pclmulqdq", "PCLMULQDQ (POLYVAL of AES-GCM-SIV)"),
];

/// Returns the names of required extensions this CPU lacks.
pub fn missing_features() -> Vec<&'static str> {
    REQUIRED
        .iter()
        .filter(|(name, _)| !detected(name))
        .map(|(_, what)| *what)
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn detected(name: &str) -> bool {
    match name {
        "aes" => std::arch::is_x86_feature_detected!("aes"),
        "pclmulqdq" => std::arch::is_x86_feature_detected!("pclmulqdq"),
        _ => false,
    }
}

// Other architectures are built without the x86 flags; nothing to check.
#[cfg(not(target_arch = "x86_64"))]
fn detected(_name: &str) -> bool {
    true
}

/// Exits with status 1 and an explanation when an extension is missing.
pub fn refuse_unsupported_cpu() {
    let missing = missing_features();
    if !missing.is_empty() {
        eprintln!(
            "coffer: this CPU lacks {} which this build requires (see .cargo/config.toml); \
             run on a CPU with them or rebuild without those target features",
            missing.join(", ")
        );
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn build_machine_has_the_compiled_in_features() {
        // The tests run on the build machine, which compiled the features in.
        assert!(super::missing_features().is_empty());
    }
}
