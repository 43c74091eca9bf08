//! Checks beyond sysctl: what the running service and the hardware look like.
//!
//! Limits of a running process and the kernel version decide whether the gateway can run at
//! all, so a shortfall there is drift (non-zero exit). The CPU governor, transparent huge
//! pages, NIC queue placement and NUMA layout are advice: they cost latency, not
//! correctness, and the right answer depends on the host.

use crate::host::{format_cpu_list, parse_cpu_list, Host};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Drift,
    Advice,
    Info,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Drift => "DRIFT",
            Status::Advice => "advice",
            Status::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub current: String,
    pub recommended: String,
    pub why: String,
}

/// What the gateway on this host is expected to carry.
#[derive(Debug, Clone)]
pub struct Needs {
    /// Shards (threads) per gateway process.
    pub shards: usize,
    /// `io_memory_kib` of the gateway configuration.
    pub io_memory_kib: u64,
    /// Connections one gateway process should hold.
    pub connections: u64,
    /// Cores the shards run on (the rest are free for the NIC and the bridge).
    pub shard_cores: Vec<usize>,
    /// The kernel's page size, in which locked memory is charged: 4 KiB on x86_64; 4, 16
    /// or 64 KiB on aarch64, as the kernel was built (64 KiB on many Kunpeng distributions).
    pub page_size: u64,
    /// Whether the kernel also charges io_uring's rings to RLIMIT_MEMLOCK (before 5.12).
    pub rings_charged: bool,
}

impl Needs {
    /// RLIMIT_MEMLOCK the gateway needs. glommio registers each shard's io memory (at
    /// least 64 KiB, aligned to 4 KiB) with each of the shard's three rings, and the kernel
    /// charges every registration in whole pages; kernels before 5.12 also charge each
    /// 128-entry ring's own memory (SQ/CQ rings and SQEs: 16 KiB with 4 KiB pages, two
    /// pages each with larger ones). A process with CAP_IPC_LOCK (root) is not charged.
    /// The charge is the user's, not the process's: several gateways running as one user
    /// share one limit. glommio itself wants at least 512 KiB.
    pub fn memlock_bytes(&self) -> u64 {
        let page = self.page_size.max(4096);
        let io = (self.io_memory_kib * 1024).max(64 * 1024);
        // Aligned to 4 KiB only: with larger pages it can straddle one more.
        let straddle = if page > 4096 { page } else { 0 };
        let buffer = io.div_ceil(page) * page + straddle;
        let ring = if self.rings_charged {
            2 * page.max(8192)
        } else {
            0
        };
        // glommio refuses to start a shard below 512 KiB, whatever it needs.
        (self.shards as u64 * 3 * (buffer + ring)).max(512 * 1024)
    }
    /// RLIMIT_NOFILE the gateway needs: one per connection, plus listeners, rings, the
    /// bridge links, logs and headroom.
    pub fn nofile(&self) -> u64 {
        self.connections + 1024
    }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Online cores, from /sys (falls back to what the process can see).
pub fn online_cores(host: &Host) -> Vec<usize> {
    read(&host.under_sys("devices/system/cpu/online"))
        .and_then(|s| parse_cpu_list(&s))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
        })
}

/// The running kernel's release string and its (major, minor); (0, 0) when unreadable.
pub fn kernel_release(host: &Host) -> (String, (u32, u32)) {
    let release = read(&host.under_proc("sys/kernel/osrelease")).unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    (release, version)
}

fn kernel_version(host: &Host) -> Check {
    let (release, version) = kernel_release(host);
    Check {
        status: if version >= (5, 8) { Status::Ok } else { Status::Drift },
        what: "kernel version".into(),
        current: if release.is_empty() { "unknown".into() } else { release },
        recommended: ">=5.8".into(),
        why: "glommio needs io_uring features from Linux 5.8; 6.x is faster (fewer syscalls per accept).".into(),
    }
}

/// Processes whose command name is `name`.
pub fn find_processes(host: &Host, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(&host.proc) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read(&host.under_proc(&format!("{pid}/comm"))).as_deref() == Some(name))
        .collect();
    pids.sort_unstable();
    pids
}

/// The soft limit named `name` (e.g. "Max open files") from /proc/PID/limits; `None` for
/// unlimited.
pub fn soft_limit(limits: &str, name: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    Some(if soft == "unlimited" {
        None
    } else {
        Some(soft.parse().ok()?)
    })
}

fn limit_check(pid: u32, limits: &str, name: &str, need: u64, why: String) -> Check {
    let (status, current) = match soft_limit(limits, name) {
        Some(None) => (Status::Ok, "unlimited".to_string()),
        Some(Some(v)) => (
            if v >= need { Status::Ok } else { Status::Drift },
            v.to_string(),
        ),
        None => (Status::Info, "not reported".to_string()),
    };
    Check {
        status,
        what: format!("gateway pid {pid}: {name}"),
        current,
        recommended: format!(">={need}"),
        why,
    }
}

fn service_limits(host: &Host, pids: &[u32], needs: &Needs) -> Vec<Check> {
    if pids.is_empty() {
        return vec![Check {
            status: Status::Info,
            what: "gateway process limits".into(),
            current: "no running gateway".into(),
            recommended: "-".into(),
            why: "Start the service (or pass --pid) to check its RLIMIT_NOFILE and RLIMIT_MEMLOCK."
                .into(),
        }];
    }
    let mut out = Vec::new();
    for &pid in pids {
        let Some(limits) = read(&host.under_proc(&format!("{pid}/limits"))) else {
            continue;
        };
        out.push(limit_check(
            pid,
            &limits,
            "Max open files",
            needs.nofile(),
            format!("One file per connection: {} connections plus listeners, rings and the bridge link. Past it the gateway stops accepting (it does not crash).", needs.connections),
        ));
        out.push(limit_check(
            pid,
            &limits,
            "Max locked memory",
            needs.memlock_bytes(),
            format!(
                "Each of {} shards registers its io memory ({} KiB) with its 3 io_uring rings, charged in {} KiB pages{}; glommio wants 512 KiB at least. The charge is per user: gateways sharing a user share the limit. Too little: below 512 KiB, or before Linux 5.12, a shard cannot start; later kernels log that the registration was skipped (TCP does not use it).",
                needs.shards,
                needs.io_memory_kib,
                needs.page_size / 1024,
                if needs.rings_charged { ", and this kernel charges the rings too" } else { "" }
            ),
        ));
    }
    out
}

fn governor(host: &Host) -> Check {
    let cores = online_cores(host);
    let mut governors: Vec<String> = cores
        .iter()
        .filter_map(|c| {
            read(&host.under_sys(&format!(
                "devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            )))
        })
        .collect();
    governors.sort();
    governors.dedup();
    let why = "A power-saving governor lowers the clock between bursts; each burst then pays the ramp-up in latency.".to_string();
    if governors.is_empty() {
        return Check {
            status: Status::Info,
            what: "cpu frequency governor".into(),
            current: "not exposed (virtual machine or fixed clock)".into(),
            recommended: "performance".into(),
            why,
        };
    }
    Check {
        status: if governors == ["performance"] {
            Status::Ok
        } else {
            Status::Advice
        },
        what: "cpu frequency governor".into(),
        current: governors.join(","),
        recommended: "performance".into(),
        why,
    }
}

fn transparent_huge_pages(host: &Host) -> Check {
    let raw = read(&host.under_sys("kernel/mm/transparent_hugepage/enabled"));
    let current = raw
        .as_deref()
        .and_then(|s| s.split_whitespace().find(|w| w.starts_with('[')))
        .map(|w| w.trim_matches(['[', ']']).to_string());
    Check {
        status: match current.as_deref() {
            Some("always") => Status::Advice,
            Some(_) => Status::Ok,
            None => Status::Info,
        },
        what: "transparent huge pages".into(),
        current: current.unwrap_or_else(|| "not exposed".into()),
        recommended: "madvise or never".into(),
        why: "With `always`, khugepaged compaction stalls show up as latency spikes; the gateway gains nothing from huge pages.".into(),
    }
}

/// A NIC with a device behind it (not lo, veth, bridges), its queues and IRQs.
#[derive(Debug, Clone)]
pub struct Nic {
    pub name: String,
    pub rx_queues: Vec<String>,
    pub tx_queues: Vec<String>,
    /// IRQs in /proc/interrupts named after the NIC or its PCI device.
    pub irqs: Vec<u32>,
}

pub fn nics(host: &Host) -> Vec<Nic> {
    let Ok(entries) = std::fs::read_dir(host.under_sys("class/net")) else {
        return Vec::new();
    };
    let interrupts = read(&host.under_proc("interrupts")).unwrap_or_default();
    let mut out: Vec<Nic> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let mut rx = Vec::new();
            let mut tx = Vec::new();
            if let Ok(qs) = std::fs::read_dir(e.path().join("queues")) {
                for q in qs.filter_map(|q| q.ok()) {
                    let q = q.file_name().to_string_lossy().to_string();
                    if q.starts_with("rx-") {
                        rx.push(q);
                    } else if q.starts_with("tx-") {
                        tx.push(q);
                    }
                }
            }
            let key = |q: &String| q[3..].parse::<u32>().unwrap_or(0);
            rx.sort_by_key(key);
            tx.sort_by_key(key);
            // Drivers name their vectors as they like: most after the interface
            // (`eth0-TxRx-0`), Kunpeng's on-board hns3 after the driver and the PCI address
            // (`hns3-0000:7d:00.0-TxRx-0`), mlx5 after the address too
            // (`mlx5_comp0@pci:0000:3b:00.0`). The device link names the address.
            let pci = std::fs::read_link(e.path().join("device"))
                .ok()
                .and_then(|p| Some(p.file_name()?.to_str()?.to_string()))
                .filter(|a| a.contains(':'));
            let irqs = interrupts
                .lines()
                .filter(|l| {
                    l.split_whitespace().last().is_some_and(|n| {
                        n == name
                            || n.starts_with(&format!("{name}-"))
                            || pci.as_deref().is_some_and(|a| n.contains(a))
                    })
                })
                .filter_map(|l| l.split(':').next()?.trim().parse().ok())
                .collect();
            Some(Nic {
                name,
                rx_queues: rx,
                tx_queues: tx,
                irqs,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn nic_checks(host: &Host, needs: &Needs) -> Vec<Check> {
    let found = nics(host);
    if found.is_empty() {
        return vec![Check {
            status: Status::Info,
            what: "NIC queues".into(),
            current: "no physical NIC found".into(),
            recommended: "-".into(),
            why: "Virtual interfaces only; IRQ placement is the hypervisor's.".into(),
        }];
    }
    let mut out = Vec::new();
    for nic in found {
        let affinities: Vec<usize> = nic
            .irqs
            .iter()
            .filter_map(|irq| read(&host.under_proc(&format!("irq/{irq}/smp_affinity_list"))))
            .filter_map(|s| parse_cpu_list(&s))
            .flatten()
            .collect();
        let overlap = affinities.iter().any(|c| needs.shard_cores.contains(c));
        let rps: Vec<String> = nic
            .rx_queues
            .iter()
            .filter_map(|q| {
                read(&host.under_sys(&format!("class/net/{}/queues/{q}/rps_cpus", nic.name)))
            })
            .collect();
        out.push(Check {
            status: if overlap && !nic.irqs.is_empty() { Status::Advice } else { Status::Info },
            what: format!("NIC {}", nic.name),
            current: format!(
                "{} rx / {} tx queues, {} IRQs on cores {}, rps {}",
                nic.rx_queues.len(),
                nic.tx_queues.len(),
                nic.irqs.len(),
                if affinities.is_empty() { "-".into() } else { format_cpu_list(&affinities) },
                if rps.is_empty() { "-".into() } else { rps.join(",") }
            ),
            recommended: "IRQs off the shard cores".into(),
            why: format!(
                "Shards run on cores {}; interrupts landing there steal time from the message path. `kernel-tuning irq --nic {} --shard-cores ...` spreads them over the other cores.",
                format_cpu_list(&needs.shard_cores),
                nic.name
            ),
        });
    }
    out
}

fn numa(host: &Host) -> Vec<Check> {
    let mut nodes: Vec<(u32, String)> = std::fs::read_dir(host.under_sys("devices/system/node"))
        .map(|it| {
            it.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let n: u32 = name.strip_prefix("node")?.parse().ok()?;
                    Some((n, read(&e.path().join("cpulist")).unwrap_or_default()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    let layout = if nodes.is_empty() {
        "not exposed".to_string()
    } else {
        nodes
            .iter()
            .map(|(n, c)| format!("node{n}: {c}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let cpuinfo = read(&host.under_proc("cpuinfo")).unwrap_or_default();
    let cpu = crate::cpu::arm(&cpuinfo);
    let mut out = vec![Check {
        status: if nodes.len() > 1 { Status::Advice } else { Status::Info },
        what: "NUMA layout".into(),
        current: layout,
        recommended: "shards within one node, or one gateway per node".into(),
        why: "A shard's memory and its connections' sockets live on the node it runs on; crossing nodes adds memory latency and interconnect traffic on every message. Core numbers are listed per node above: pin with `pin = true` and a shard count that fits a node.".into(),
    }];
    if let Some(cpu) = cpu {
        out.push(Check {
            status: Status::Info,
            what: "aarch64 CPU".into(),
            current: cpu,
            recommended: "-".into(),
            why: "Kunpeng 920 numbers cores contiguously per NUMA node (on a 48-core part 0-23 node0, 24-47 node1; 32 per node on 64-core parts); Phytium groups 8-core panels. Check the node list above before choosing shard cores.".into(),
        });
    }
    out
}

/// Every check beyond sysctl.
pub fn run(host: &Host, pids: &[u32], needs: &Needs) -> Vec<Check> {
    let mut out = vec![kernel_version(host)];
    out.extend(service_limits(host, pids, needs));
    out.push(governor(host));
    out.push(transparent_huge_pages(host));
    out.extend(nic_checks(host, needs));
    out.extend(numa(host));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max open files            20000                20000                files     \n\
Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn reads_soft_limits() {
        assert_eq!(soft_limit(LIMITS, "Max open files"), Some(Some(20000)));
        assert_eq!(
            soft_limit(LIMITS, "Max locked memory"),
            Some(Some(8_388_608))
        );
        assert_eq!(
            soft_limit(
                "Max open files  unlimited unlimited files",
                "Max open files"
            ),
            Some(None)
        );
        assert_eq!(soft_limit(LIMITS, "Max processes"), None);
    }

    #[test]
    fn needs_follow_the_gateway_configuration() {
        let n = Needs {
            shards: 2,
            io_memory_kib: 512,
            connections: 19_000,
            shard_cores: vec![0, 1],
            page_size: 4096,
            rings_charged: false,
        };
        assert_eq!(n.memlock_bytes(), 2 * 3 * 512 * 1024);
        assert_eq!(n.nofile(), 20_024);
        let c = limit_check(1, LIMITS, "Max open files", n.nofile(), String::new());
        assert_eq!(c.status, Status::Drift);
        let c = limit_check(
            1,
            LIMITS,
            "Max locked memory",
            n.memlock_bytes(),
            String::new(),
        );
        assert_eq!(c.status, Status::Ok);
    }

    #[test]
    fn locked_memory_is_charged_in_whole_pages_of_the_running_kernel() {
        let need = |io_memory_kib, page_size, rings_charged| {
            Needs {
                shards: 1,
                io_memory_kib,
                connections: 0,
                shard_cores: vec![0],
                page_size,
                rings_charged,
            }
            .memlock_bytes()
        };
        const K: u64 = 1024;
        // x86_64 and most aarch64 distributions: 4 KiB pages.
        assert_eq!(need(256, 4096, false), 3 * 256 * K);
        assert_eq!(need(256, 4096, true), 3 * (256 + 16) * K);
        // Below glommio's floor of 64 KiB, 64 KiB is registered anyway; and glommio will
        // not start a shard with less than 512 KiB of limit.
        assert_eq!(need(16, 4096, false), 512 * K);
        assert_eq!(need(64, 4096, true), 512 * K);
        // 64 KiB pages (Kunpeng on openEuler, CentOS): the 4 KiB-aligned buffer touches one
        // page more, and each ring takes two whole pages.
        assert_eq!(need(64, 65536, false), 512 * K);
        assert_eq!(need(64, 65536, true), 3 * (128 + 128) * K);
        assert_eq!(need(100, 65536, false), 3 * (128 + 64) * K);
        // 16 KiB pages (Debian's arm64-16k kernel, scripts/aarch64.sh).
        assert_eq!(need(512, 16384, false), 3 * (512 + 16) * K);
    }
}
