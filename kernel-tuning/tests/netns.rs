//! `apply` and `revert` of the gateway profile's network keys for real, inside a fresh
//! network namespace: `net.*` sysctls are per namespace, so the host is never touched (the
//! test also reads the host's values before and after to prove it). Files go to a temporary
//! root. Needs root and `ip netns` (both present here and in CI); fails loudly otherwise.

mod common;

use common::{read, run, stdout};
use kernel_tuning::profile::{Profile, ProfileName};
use std::process::Command;

/// A named network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("sbkt-{tag}-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(
            st.success(),
            "`ip netns add {name}` failed: this test needs root and iproute2"
        );
        Netns(name)
    }
    fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.0]
    }
    /// Reads every key, as `key=value` lines (absent keys skipped).
    fn values(&self, keys: &[&str]) -> Vec<(String, String)> {
        read_values(&self.exec(), keys)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn read_values(prefix: &[&str], keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .filter_map(|k| {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            let mut cmd = Command::new(if prefix.is_empty() { "cat" } else { prefix[0] });
            if !prefix.is_empty() {
                cmd.args(&prefix[1..]).arg("cat");
            }
            let out = cmd.arg(&path).output().unwrap();
            out.status.success().then(|| {
                let v = String::from_utf8_lossy(&out.stdout);
                (
                    k.to_string(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
        })
        .collect()
}

fn net_keys() -> Vec<&'static str> {
    Profile::get(ProfileName::Gateway)
        .settings
        .iter()
        .map(|s| s.key)
        .filter(|k| k.starts_with("net."))
        .collect()
}

#[test]
fn apply_then_revert_in_a_network_namespace_restores_every_value() {
    let keys = net_keys();
    let host_before = read_values(&[], &keys);
    let ns = Netns::new("rt");
    let root = tempfile::tempdir().unwrap();
    let root_s = root.path().to_str().unwrap();
    let before = ns.values(&keys);
    assert!(
        before.len() >= 5,
        "expected per-namespace net keys, saw {before:?}"
    );
    let args = |cmd: &'static str| {
        vec![
            cmd,
            "--profile",
            "gateway",
            "--only",
            "net.",
            "--root",
            root_s,
        ]
    };

    // Drift in a fresh namespace (its defaults are the kernel's).
    let out = run(&ns.exec(), &args("check"));
    assert_eq!(out.status.code(), Some(1), "a fresh namespace has drift");
    let out = run(&ns.exec(), &args("diff"));
    assert!(stdout(&out).contains("+ net.core.somaxconn = 65535"));

    let out = run(&ns.exec(), &args("apply"));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("changed   net.core.somaxconn"));
    let applied = ns.values(&keys);
    assert_ne!(applied, before);
    let out = run(&ns.exec(), &args("check"));
    assert_eq!(out.status.code(), Some(0), "no drift after apply");

    let dropin = read(root.path(), "etc/sysctl.d/60-switchboard-gateway.conf");
    let saved = read(
        root.path(),
        "var/lib/kernel-tuning/switchboard-gateway.saved",
    );
    // Keys read-only in a namespace (nf_conntrack_max when conntrack is loaded) are skipped.
    let writable = |k: &str| !dropin.contains(&format!("# {k} is read-only here; skipped."));
    for (k, v) in applied.iter().filter(|(k, _)| writable(k)) {
        assert!(
            dropin.contains(&format!("\n{k} = {v}\n")),
            "drop-in lacks {k} = {v}:\n{dropin}"
        );
    }
    for (k, v) in before.iter().filter(|(k, _)| writable(k)) {
        assert!(
            saved.contains(&format!("{k} = {v}\n")),
            "saved lacks {k} = {v}"
        );
    }
    assert!(common::has_line(
        &read(
            root.path(),
            "etc/security/limits.d/60-switchboard-gateway.conf"
        ),
        "switchboard soft nofile 1048576"
    ));

    // Idempotent: a second apply changes nothing and keeps the first saved values.
    let out = run(&ns.exec(), &args("apply"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !stdout(&out).lines().any(|l| l.starts_with("changed")),
        "second apply changed something"
    );
    assert_eq!(
        read(
            root.path(),
            "var/lib/kernel-tuning/switchboard-gateway.saved"
        ),
        saved
    );

    // The drop-in is valid input for sysctl(8): loading it in another fresh namespace gives
    // the same values apply set.
    let other = Netns::new("load");
    let mut load = Command::new("ip");
    load.args(["netns", "exec", &other.0, "sysctl", "-q", "-p"])
        .arg(root.path().join("etc/sysctl.d/60-switchboard-gateway.conf"));
    let st = load.output().unwrap();
    eprintln!("sysctl -p: {}", String::from_utf8_lossy(&st.stderr));
    let loaded = other.values(&keys);
    for (k, v) in &applied {
        if let Some((_, lv)) = loaded.iter().find(|(lk, _)| lk == k) {
            assert_eq!(lv, v, "sysctl -p of the drop-in set {k} differently");
        }
    }

    let out = run(&ns.exec(), &args("revert"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ns.values(&keys), before, "revert restored every value");
    for f in [
        "etc/sysctl.d/60-switchboard-gateway.conf",
        "etc/security/limits.d/60-switchboard-gateway.conf",
        "var/lib/kernel-tuning/switchboard-gateway.saved",
    ] {
        assert!(!root.path().join(f).exists(), "{f} left behind");
    }
    let out = run(&ns.exec(), &args("revert"));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("nothing to revert"));

    assert_eq!(
        read_values(&[], &keys),
        host_before,
        "the host's own values never changed"
    );
}
