//! Where the tool reads and writes, so every step can run against a temporary tree.
//!
//! Live values come from `<proc>/sys` (a real /proc inside a network namespace in the tests);
//! files the tool writes (the sysctl drop-in, the limits drop-in, the saved values) go under
//! `<root>`; hardware facts come from `<sys>`. Production uses `/proc`, `/` and `/sys`.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Host {
    pub proc: PathBuf,
    pub root: PathBuf,
    pub sys: PathBuf,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            proc: "/proc".into(),
            root: "/".into(),
            sys: "/sys".into(),
        }
    }
}

impl Host {
    /// The file for a dotted sysctl key.
    pub fn sysctl_path(&self, key: &str) -> PathBuf {
        self.proc.join("sys").join(key.replace('.', "/"))
    }

    /// The current value of a sysctl key, trimmed; `None` when the running kernel (or this
    /// network namespace) does not have it.
    pub fn read_sysctl(&self, key: &str) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.sysctl_path(key)) {
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the key's file can be written at all (some `net.*` keys are read-only inside
    /// a network namespace other than the host's, e.g. `nf_conntrack_max`).
    pub fn sysctl_writable(&self, key: &str) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(self.sysctl_path(key)).is_ok_and(|m| m.permissions().mode() & 0o222 != 0)
    }

    pub fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        std::fs::write(self.sysctl_path(key), format!("{value}\n"))
    }

    /// A path under the root for files the tool owns, e.g. `etc/sysctl.d/...`.
    pub fn under_root(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    pub fn under_proc(&self, relative: &str) -> PathBuf {
        self.proc.join(relative)
    }

    pub fn under_sys(&self, relative: &str) -> PathBuf {
        self.sys.join(relative)
    }
}

/// Writes `contents` to `path` atomically (temporary file in the same directory, then
/// rename), creating the directory. A crash never leaves half a drop-in behind.
pub fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kernel-tuning")
    ));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// The running kernel's page size in bytes: 4 KiB on x86_64; 4, 16 or 64 KiB on aarch64,
/// as the kernel was built.
pub fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the process; it has no preconditions.
    #[allow(unsafe_code)]
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Whether this process runs as root (effective uid 0), read from /proc/self/status.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Parses a CPU list such as `0-3,8,10-11` into core numbers.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cores = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.trim().parse().ok()?),
        }
    }
    Some(cores)
}

/// Formats cores as a CPU list (`0-3,8`).
pub fn format_cpu_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// A hexadecimal CPU mask as /sys expects for `rps_cpus`/`xps_cpus` (comma every 32 bits).
pub fn cpu_mask(cores: &[usize]) -> String {
    let words = cores.iter().max().map_or(1, |m| m / 32 + 1);
    let mut mask = vec![0u32; words];
    for &c in cores {
        mask[c / 32] |= 1 << (c % 32);
    }
    mask.iter()
        .rev()
        .map(|w| format!("{w:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(format_cpu_list(&[11, 0, 1, 2, 3, 8, 10]), "0-3,8,10-11");
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list(""), Some(vec![]));
    }

    #[test]
    fn masks_group_32_cores_per_word() {
        assert_eq!(cpu_mask(&[0, 1]), "00000003");
        assert_eq!(cpu_mask(&[33]), "00000002,00000000");
        assert_eq!(cpu_mask(&[]), "00000000");
    }

    #[test]
    fn sysctl_keys_map_to_proc_files() {
        let h = Host {
            proc: "/tmp/p".into(),
            ..Host::default()
        };
        assert_eq!(
            h.sysctl_path("net.core.somaxconn"),
            PathBuf::from("/tmp/p/sys/net/core/somaxconn")
        );
    }
}
