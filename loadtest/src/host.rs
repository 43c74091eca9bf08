//! Facts about the machine a run happened on, recorded with every result so figures are
//! never compared across hosts by accident; and the load generator's own CPU, so a
//! saturated client is reported instead of mistaken for a slow server.

use serde_json::{json, Value};

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The soft limit named `name` from /proc/self/limits.
fn own_limit(name: &str) -> Option<String> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..]
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// Cores, kernel, architecture, CPU, page size, the sysctls and limits that bound a
/// connection test.
pub fn facts() -> Value {
    let sysctls: serde_json::Map<String, Value> = [
        "net.core.somaxconn",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
        "fs.file-max",
        "fs.nr_open",
        "kernel.io_uring_disabled",
    ]
    .iter()
    .map(|k| {
        let v = read_trim(&format!("/proc/sys/{}", k.replace('.', "/")));
        (k.to_string(), v.map_or(Value::Null, Value::String))
    })
    .collect();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "arch": std::env::consts::ARCH,
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        // x86's `model name`, or an aarch64 host's decoded codes ("HiSilicon Kunpeng 920 ...").
        "cpu_model": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| kernel_tuning::cpu::model(&c)),
        "page_size": kernel_tuning::host::page_size(),
        "sysctls": sysctls,
        "limits": {"nofile": own_limit("Max open files"), "memlock": own_limit("Max locked memory")},
    })
}

/// This process's user + system CPU seconds.
pub fn own_cpu_seconds() -> f64 {
    crate::procfs::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Share of one core a worker used over a window; above this it is likely the bottleneck.
pub const SATURATED: f64 = 0.90;
