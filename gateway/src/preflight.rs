//! Checks, before any shard starts, that this host lets the gateway use io_uring.
//!
//! Without it glommio panics inside the shard thread with a message about kernel age,
//! after the gateway has already announced its address. An operator should instead get one
//! line saying what is wrong and what to change, and a non-zero exit before anything listens.

use std::path::Path;

/// Why io_uring is not available, as a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the kernel is {0}; the gateway needs io_uring from Linux 5.8 or newer")]
    KernelTooOld(String),
    #[error("io_uring is disabled on this host (kernel.io_uring_disabled = 2); set it to 0 (`kernel-tuning apply` does)")]
    Disabled,
    #[error("io_uring is limited to group {0} on this host (kernel.io_uring_disabled = 1) and this process is not in it; add the service user to that group or set kernel.io_uring_disabled = 0")]
    NotInGroup(u32),
}

/// The facts the decision needs, read from /proc.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `kernel.osrelease`, e.g. "6.1.0-18-amd64".
    pub release: String,
    /// `kernel.io_uring_disabled` (absent on kernels before 6.6: treated as 0).
    pub disabled: Option<u32>,
    /// `kernel.io_uring_group` (-1 or absent: no group).
    pub group: Option<i64>,
    pub euid: Option<u32>,
    pub groups: Vec<u32>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(path))
        .ok()
        .map(|s| s.trim().to_string())
}

impl Facts {
    pub fn of_this_process() -> Facts {
        let status = read("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| {
                    l[name.len()..]
                        .split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .unwrap_or_default()
        };
        Facts {
            release: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            disabled: read("/proc/sys/kernel/io_uring_disabled").and_then(|v| v.parse().ok()),
            group: read("/proc/sys/kernel/io_uring_group").and_then(|v| v.parse().ok()),
            euid: field("Uid:").get(1).copied(),
            groups: [
                field("Gid:").get(1).copied().into_iter().collect(),
                field("Groups:"),
            ]
            .concat(),
        }
    }
}

/// Decides whether io_uring is usable.
pub fn check(f: &Facts) -> Result<(), Unavailable> {
    let mut nums = f
        .release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if !f.release.is_empty() && version < (5, 8) {
        return Err(Unavailable::KernelTooOld(f.release.clone()));
    }
    match f.disabled {
        Some(2) => Err(Unavailable::Disabled),
        Some(1) if f.euid == Some(0) => Ok(()),
        Some(1) => match f.group.and_then(|g| u32::try_from(g).ok()) {
            Some(g) if f.groups.contains(&g) => Ok(()),
            Some(g) => Err(Unavailable::NotInGroup(g)),
            None => Err(Unavailable::Disabled),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        release: &str,
        disabled: Option<u32>,
        group: Option<i64>,
        euid: u32,
        groups: &[u32],
    ) -> Facts {
        Facts {
            release: release.into(),
            disabled,
            group,
            euid: Some(euid),
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn decides_from_kernel_and_sysctls() {
        assert_eq!(
            check(&facts("6.18.4", Some(0), Some(-1), 1000, &[])),
            Ok(())
        );
        assert_eq!(
            check(&facts("5.15.0-91-generic", None, None, 1000, &[])),
            Ok(())
        );
        assert!(matches!(
            check(&facts("5.4.0", None, None, 0, &[])),
            Err(Unavailable::KernelTooOld(_))
        ));
        assert_eq!(
            check(&facts("6.6.0", Some(2), None, 0, &[])),
            Err(Unavailable::Disabled)
        );
        assert_eq!(
            check(&facts("6.6.0", Some(1), Some(995), 1000, &[100])),
            Err(Unavailable::NotInGroup(995))
        );
        assert_eq!(
            check(&facts("6.6.0", Some(1), Some(995), 1000, &[100, 995])),
            Ok(())
        );
        assert_eq!(
            check(&facts("6.6.0", Some(1), Some(-1), 0, &[])),
            Ok(()),
            "root may always"
        );
        assert_eq!(
            check(&facts("6.6.0", Some(1), Some(-1), 1000, &[])),
            Err(Unavailable::Disabled)
        );
    }

    #[test]
    fn reads_this_process() {
        let f = Facts::of_this_process();
        assert!(!f.release.is_empty());
        assert!(f.euid.is_some());
    }
}
