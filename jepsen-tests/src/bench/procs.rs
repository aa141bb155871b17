//! Process accounting from `/proc`: CPU seconds, resident memory, disk use.

use std::fs;
use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory side effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a `stat` line, in seconds.
fn stat_cpu(stat: &str) -> Option<f64> {
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' field 0 is state (3rd overall); utime/stime are 14th/15th overall.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec())
}

/// CPU seconds (user + system) a process used so far; 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_cpu(&s))
        .unwrap_or(0.0)
}

/// CPU seconds used by the threads of this process whose name starts with `prefix`.
pub fn thread_cpu_seconds(prefix: &str) -> f64 {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|t| fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .filter_map(|t| fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|s| stat_cpu(&s))
        .sum()
}

/// CPU seconds the calling thread used so far.
pub fn own_thread_cpu_seconds() -> f64 {
    fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| stat_cpu(&s))
        .unwrap_or(0.0)
}

/// Sum of [`cpu_seconds`] over `pids`.
pub fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

/// Resident set size in bytes (`VmRSS`); 0 if unknown.
pub fn rss_bytes(pid: u32) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes allocated on disk under `path` (recursively).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries.flatten().map(|e| path_bytes(&e.path())).sum()
}

/// What each part of a data dir holds on disk: the files at its top and,
/// for each directory at its top, the entries inside it (`raft/state.redb`,
/// `raft/log.wal`, …), largest first.
pub fn dir_parts(path: &Path) -> Vec<(String, u64)> {
    let mut parts = Vec::new();
    let Ok(entries) = fs::read_dir(path) else {
        return parts;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.metadata().is_ok_and(|m| m.is_dir()) {
            let Ok(inner) = fs::read_dir(e.path()) else {
                continue;
            };
            for i in inner.flatten() {
                let inner_name = i.file_name().to_string_lossy().into_owned();
                parts.push((format!("{name}/{inner_name}"), path_bytes(&i.path())));
            }
        } else {
            parts.push((name, path_bytes(&e.path())));
        }
    }
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    parts
}

/// Allocated bytes of a file, or of a directory's whole tree (a symlink is
/// not followed).
fn path_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => dir_bytes(path),
        Ok(m) => m.blocks() * 512,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_broken_down_one_level_into_its_directories() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("raft/log.wal")).unwrap();
        fs::write(dir.path().join("raft/log.wal/1.wal"), vec![1u8; 64 * 1024]).unwrap();
        fs::write(dir.path().join("raft/state.redb"), vec![1u8; 8 * 1024]).unwrap();
        fs::write(dir.path().join("node-id"), b"1").unwrap();
        let parts = dir_parts(dir.path());
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["raft/log.wal", "raft/state.redb", "node-id"]);
        assert!(parts[0].1 >= 64 * 1024 && parts[1].1 >= 8 * 1024);
        assert_eq!(
            parts.iter().map(|p| p.1).sum::<u64>(),
            dir_bytes(dir.path())
        );
    }

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let line = "42 (my proc) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0";
        let secs = stat_cpu(line).unwrap();
        assert!((secs - 400.0 / ticks_per_sec()).abs() < 1e-9);
    }

    #[test]
    fn own_process_has_rss_and_cpu() {
        let me = std::process::id();
        assert!(rss_bytes(me) > 0);
        // Burn a few clock ticks (10 ms each) so the counter must move.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        assert!(cpu_seconds(me) > 0.0);
    }
}
