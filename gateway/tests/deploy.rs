//! deploy/ checked against its verifiers and against the code: the systemd units with
//! `systemd-analyze verify`, the alerting rules with `promtool`, the example configurations
//! with the binaries that read them, and every metric the rules and the dashboard use with
//! what a running gateway and bridge really export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use switchboard_test_support::{settled_async, temp_dir, Bridge, Gateway, RedisProc, TIMEOUT};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gateway"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a verifier; it must exist (CI installs it), succeed and print no warning.
fn verify(cmd: &mut Command, quiet: bool) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup-test-env.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    if quiet {
        assert!(text.trim().is_empty(), "{cmd:?} warned:\n{text}");
    }
    text
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = temp_dir("deploy-units");
    let mut units = Vec::new();
    for name in ["switchboard-bridge.service", "switchboard-gateway.service"] {
        // ExecStart must name an existing executable: point it at the ones just built.
        let text = read(&format!("deploy/systemd/{name}"))
            .replace("/usr/local/bin/", &format!("{}/", bin_dir().display()));
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    verify(
        Command::new("systemd-analyze").arg("verify").args(&units),
        true,
    );
    let gw = read("deploy/systemd/switchboard-gateway.service");
    for line in [
        "LimitNOFILE=1048576",
        "After=network-online.target switchboard-bridge.service",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=switchboard",
        "RuntimeDirectory=switchboard",
    ] {
        assert!(gw.lines().any(|l| l == line), "gateway unit lacks {line}");
    }
    assert!(read("deploy/systemd/switchboard-bridge.service")
        .lines()
        .any(|l| l == "Before=switchboard-gateway.service"));
    let _ = std::fs::remove_dir_all(dir);
}

fn toml_value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} not set"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_gateway_unit_locks_enough_memory_for_the_example_configuration() {
    let unit = read("deploy/systemd/switchboard-gateway.service");
    let memlock = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitMEMLOCK="))
        .unwrap();
    let bytes: u64 = memlock.trim_end_matches('M').parse::<u64>().unwrap() * 1024 * 1024;
    let conf = read("deploy/config/gateway.toml");
    // The worst case the unit may meet: 64 KiB pages, and a kernel that charges the rings.
    let need = kernel_tuning::checks::Needs {
        shards: toml_value(&conf, "shards") as usize,
        io_memory_kib: toml_value(&conf, "io_memory_kib"),
        connections: 0,
        shard_cores: Vec::new(),
        page_size: 65536,
        rings_charged: true,
    }
    .memlock_bytes();
    assert!(bytes >= need, "LimitMEMLOCK {bytes} < {need}");
    // What the unit's comment promises for the default io_memory_kib (past glommio's
    // 512 KiB floor, the need grows by the same amount per shard).
    let shards_covered = |page_size| {
        let per_1000 = kernel_tuning::checks::Needs {
            shards: 1000,
            io_memory_kib: 64,
            connections: 0,
            shard_cores: Vec::new(),
            page_size,
            rings_charged: true,
        }
        .memlock_bytes();
        bytes * 1000 / per_1000
    };
    assert!(unit.contains(&format!("64 MiB covers {} shards", shards_covered(65536))));
    assert!(unit.contains(&format!("{} with 4 KiB pages", shards_covered(4096))));
    let affinity = unit
        .lines()
        .find_map(|l| l.strip_prefix("CPUAffinity="))
        .unwrap();
    assert_eq!(
        affinity,
        format!("0-{}", toml_value(&conf, "shards") - 1),
        "CPUAffinity matches the shards"
    );
}

#[test]
fn alerting_rules_and_scrape_config_pass_promtool() {
    let prom = repo().join("deploy/prometheus");
    verify(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(prom.join("rules.yml")),
        false,
    );
    verify(
        Command::new("promtool")
            .args(["test", "rules", "rules.test.yml"])
            .current_dir(&prom),
        false,
    );
    let dir = temp_dir("deploy-prom");
    let config = read("deploy/prometheus/prometheus.yml").replace(
        "/etc/prometheus/switchboard-rules.yml",
        prom.join("rules.yml").to_str().unwrap(),
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    verify(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml")),
        false,
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_example_gateway_configuration_names_every_key_and_loads() {
    let example = repo().join("deploy/config/gateway.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let defaults: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let text = read("deploy/config/gateway.toml");
    let mut keys: Vec<String> = defaults.keys().cloned().collect();
    keys.extend(
        [
            "secret",
            "secret_file",
            "bridge_socket",
            "bridge_command",
            "echo_path",
        ]
        .map(String::from),
    );
    let has = |key: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} = ")))
    };
    for key in keys {
        match defaults.get(&key) {
            // A table: its header, then each of its keys.
            Some(toml::Value::Table(t)) => {
                assert!(
                    text.lines().any(|l| l == format!("[{key}]")),
                    "deploy/config/gateway.toml lacks [{key}]"
                );
                for sub in t.keys() {
                    assert!(has(sub), "deploy/config/gateway.toml lacks {key}.{sub}");
                }
            }
            _ => assert!(has(&key), "deploy/config/gateway.toml lacks {key}"),
        }
    }
    // The gateway accepts it (a secret file must exist to load it).
    let dir = temp_dir("deploy-config");
    let secret = dir.join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let patched = text.replace("/etc/switchboard/secret", secret.to_str().unwrap());
    std::fs::write(dir.join("gateway.toml"), patched).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("config")
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} rejected: {}",
        example.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("bridge = \"external\""), "{effective}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `(flag, env, default)` for every option in `storage-bridge --help`.
fn bridge_options() -> Vec<(String, String, Option<String>)> {
    let out = Command::new(bin_dir().join("storage-bridge"))
        .arg("--help")
        .output()
        .expect("storage-bridge is built with the workspace");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = help.lines().collect();
    let mut opts = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(flag) = l
            .trim()
            .strip_prefix("--")
            .map(|f| f.split(' ').next().unwrap())
        else {
            continue;
        };
        if flag == "help" || flag == "version" {
            continue;
        }
        let desc = lines.get(i + 1).copied().unwrap_or_default();
        let env = desc
            .split("[env: ")
            .nth(1)
            .map(|s| s.split('=').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("--{flag} has no environment variable"));
        let default = desc
            .split("[default: ")
            .nth(1)
            .map(|s| s.trim_end_matches(']').to_string());
        opts.push((format!("--{flag}"), env, default));
    }
    assert!(opts.len() >= 10, "parsed {opts:?} from\n{help}");
    opts
}

#[test]
fn the_bridge_reference_and_example_match_its_options() {
    let doc = read("docs/configuration.md");
    let env_file = read("deploy/config/storage-bridge.env");
    for (flag, env, default) in bridge_options() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{flag}` | `{env}` |")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for {flag} / {env}"));
        if let Some(d) = default {
            assert!(
                row.contains(&format!("| `{d}` |")) || row.contains(&format!("| {d} |")),
                "{flag}: default {d} not in `{row}`"
            );
        }
        assert!(
            env_file
                .lines()
                .any(|l| l.starts_with(&format!("{env}=")) || l.starts_with(&format!("# {env}="))),
            "deploy/config/storage-bridge.env lacks {env}"
        );
    }
}

/// Metric names (without histogram suffixes) used in PromQL expressions.
fn metric_names(exprs: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut word = String::new();
        for c in e.chars().chain([' ']) {
            if c.is_ascii_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if ["chat_", "bridge_", "process_"]
                .iter()
                .any(|p| word.starts_with(p))
                && c != '='
            {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(&word);
                names.insert(base.to_string());
            }
            word.clear();
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_in_the_rules_and_dashboard_is_exported() {
    let rules: serde_json::Value = {
        // The rules are YAML; their expressions are the `expr:` lines.
        let text = read("deploy/prometheus/rules.yml");
        serde_json::Value::Array(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("expr: "))
                .map(|e| serde_json::Value::String(e.to_string()))
                .collect(),
        )
    };
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/switchboard.json")).expect("dashboard is JSON");
    let mut exprs: Vec<String> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let used = metric_names(&exprs);
    assert!(used.contains("chat_storage_confirm_seconds"), "{used:?}");

    // A real gateway and bridge after one conversation: every series exists.
    let dir = temp_dir("deploy-metrics");
    let redis = RedisProc::start();
    let bridge = Bridge::builder(&dir).env("REDIS_URL", &redis.url()).start();
    let gw = Gateway::builder()
        .data_dir(&dir)
        .args(&bridge.gateway_args())
        .start();
    let _agent = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    v.msg("1", "hello", None).await;
    v.expect("ack").await;
    // Counters and gauges are published once a second: scrape both until every series is
    // there (or the deadline passes, and the assertion below names what is missing).
    let have = settled_async(
        TIMEOUT,
        || {
            let mut have = gw.metrics().names();
            have.extend(bridge.metrics().names());
            have
        },
        |have| used.iter().all(|m| have.contains(m)),
    )
    .await;
    let missing: Vec<&String> = used.iter().filter(|m| !have.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not exported: {missing:?}\nexported: {have:?}"
    );
    drop(gw);
    drop(bridge);
    let _ = std::fs::remove_dir_all(dir);
}
