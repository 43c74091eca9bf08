//! A short real run of every scenario against a real gateway (2 shards, its storage bridge
//! spawned with an embedded store), plus the CLI's errors and SLO gating.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use switchboard_test_support::{free_addr, Gateway};

const LOADTEST: &str = env!("CARGO_BIN_EXE_loadtest");

/// A gateway with 2 shards and its storage bridge (embedded store), the bridge's HTTP API
/// on a free port; its data directory (with the token secret) is removed when dropped.
fn gateway() -> Gateway {
    Gateway::builder().bridge_http(&free_addr()).start()
}

/// The gateway's WebSocket base URL, `ws://ADDR`.
fn ws(gw: &Gateway) -> String {
    gw.url("")
}

fn secret(gw: &Gateway) -> String {
    gw.secret_file().display().to_string()
}

fn loadtest(args: &[&str]) -> Output {
    let out = Command::new(LOADTEST).args(args).output().unwrap();
    eprintln!(
        "$ loadtest {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_result(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn chat_and_churn_lose_and_duplicate_nothing() {
    let gw = gateway();
    let json = gw.data_dir.join("chat.json");
    let (url, secret, pid) = (ws(&gw), secret(&gw), gw.pid().to_string());
    let out = loadtest(&[
        "chat",
        "--url",
        &url,
        "--secret-file",
        &secret,
        "--agents",
        "4",
        "--visitors",
        "20",
        "--rate",
        "5",
        "--replies",
        "0.2",
        "--duration",
        "3",
        "--drain",
        "10",
        "--procs",
        "2",
        "--server-pids",
        &pid,
        "--json",
        json.to_str().unwrap(),
        "--slo",
        "lost=0,duplicated=0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    assert!(r["sent"].as_u64().unwrap() >= 200, "{r}");
    assert_eq!(r["acked"], r["sent"]);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert!(r["relay_us"]["count"].as_u64().unwrap() > 0);
    assert!(r["server_cpu_seconds"].as_f64().unwrap() > 0.0);
    assert!(r["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(r["host"]["sysctls"]["net.core.somaxconn"].is_string());
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.lines().filter(|l| l.contains("| acked ")).count() >= 2,
        "a progress line each second"
    );

    let json = gw.data_dir.join("churn.json");
    let out = loadtest(&[
        "churn",
        "--url",
        &url,
        "--secret-file",
        &secret,
        "--agents",
        "2",
        "--visitors",
        "10",
        "--rate",
        "10",
        "--duration",
        "4",
        "--drain",
        "10",
        "--reconnect-every",
        "0.7",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    assert!(r["reconnects"].as_u64().unwrap() >= 30, "{r}");
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert_eq!(r["acked"], r["sent"]);
}

#[test]
fn chat_rides_through_a_gateway_restart_losing_and_duplicating_nothing() {
    let mut gw = gateway();
    let json = gw.data_dir.join("restart.json");
    let (url, secret) = (ws(&gw), secret(&gw));
    let args = [
        "chat",
        "--url",
        &url,
        "--secret-file",
        &secret,
        "--agents",
        "2",
        "--visitors",
        "10",
        "--rate",
        "10",
        "--duration",
        "6",
        "--drain",
        "20",
        "--json",
        json.to_str().unwrap(),
    ];
    let run = Command::new(LOADTEST)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A deliberate pause: the restart has to fall in the middle of the 6-second run.
    std::thread::sleep(Duration::from_secs(3));
    gw.restart();
    let out = run.wait_with_output().unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    // Every client came back...
    assert!(r["reconnects"].as_u64().unwrap() >= 12, "{r}");
    // ...and every message sent was stored once and reached its agent.
    assert!(r["sent"].as_u64().unwrap() >= 300, "{r}");
    assert_eq!(r["acked"], r["sent"]);
    assert_eq!(r["lost"], 0);
    assert_eq!(r["duplicated"], 0);
    assert_eq!(r["undelivered"], 0, "{r}");
}

#[test]
fn history_and_ping_read_back_what_they_should() {
    let gw = gateway();
    let json = gw.data_dir.join("history.json");
    let out = loadtest(&[
        "history",
        "--url",
        &ws(&gw),
        "--http",
        gw.bridge_http.as_deref().unwrap(),
        "--secret-file",
        &secret(&gw),
        "--messages",
        "150",
        "--limit",
        "20",
        "--clients",
        "3",
        "--http-clients",
        "2",
        "--rate",
        "10",
        "--duration",
        "2",
        "--procs",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--slo",
        "bad=0,errors=0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    assert!(r["ws_requests"].as_u64().unwrap() >= 30, "{r}");
    assert!(r["http_requests"].as_u64().unwrap() >= 20, "{r}");
    assert_eq!(r["bad"], 0);

    let json = gw.data_dir.join("ping.json");
    let url = gw.url("/ws/visitor?client=api");
    let out = loadtest(&[
        "ping",
        "--url",
        &url,
        "--conns",
        "20",
        "--rate",
        "20",
        "--duration",
        "2",
        "--procs",
        "2",
        "--cores",
        "0",
        "--json",
        json.to_str().unwrap(),
        "--slo",
        "lost=0,rtt_p99<1s",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    assert!(r["pongs"].as_u64().unwrap() >= 600, "{r}");
    assert_eq!(r["pings"], r["pongs"]);
}

#[test]
fn connect_holds_connections_and_reports_server_memory() {
    let gw = gateway();
    let json = gw.data_dir.join("connect.json");
    let url = gw.url("/ws/visitor?client=web");
    let out = loadtest(&[
        "connect",
        "--url",
        &url,
        "-n",
        "300",
        "--rate",
        "1000",
        "--hold",
        "1",
        "--procs",
        "2",
        "--source",
        "127.0.0.2-127.0.0.3",
        "--server-pid",
        &gw.pid().to_string(),
        "--json",
        json.to_str().unwrap(),
        "--slo",
        "failed=0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let r = json_result(&json);
    assert_eq!(r["connected"], 300);
    assert!(
        r["server"]["rss_per_connection_bytes"].as_f64().is_some(),
        "{r}"
    );
    assert_eq!(r["slo"][0]["met"], true);
}

#[test]
fn a_missed_objective_fails_the_exit_status() {
    let gw = gateway();
    let url = gw.url("/ws/visitor?client=api");
    let out = loadtest(&[
        "ping",
        "--url",
        &url,
        "--conns",
        "2",
        "--duration",
        "1",
        "--slo",
        "rtt_p50<1us",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("slo MISSED rtt_p50<1us"));
}

#[test]
fn bad_arguments_and_targets_get_clear_errors() {
    let gw = gateway();
    let (url, secret) = (ws(&gw), secret(&gw));
    let bridge_url = format!("ws://{}", gw.bridge_http.as_deref().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "chat",
                "--url",
                "ws://127.0.0.1:1",
                "--secret-file",
                &secret,
            ],
            "is the server running?",
        ),
        (
            vec![
                "chat",
                "--url",
                "ws://10.1.2.3:80",
                "--secret-file",
                &secret,
            ],
            "loopback",
        ),
        (
            vec![
                "chat",
                "--url",
                "http://127.0.0.1:80",
                "--secret-file",
                &secret,
            ],
            "ws://",
        ),
        (
            vec!["chat", "--url", &url, "--secret-file", "/nonexistent"],
            "--secret-file",
        ),
        (
            vec![
                "chat",
                "--url",
                &url,
                "--secret-file",
                &secret,
                "--slo",
                "ack_p99 fast",
            ],
            "--slo clause",
        ),
        (
            vec![
                "chat",
                "--url",
                &url,
                "--secret-file",
                &secret,
                "--slo",
                "nope<1",
                "--duration",
                "1",
                "--drain",
                "1",
            ],
            "no figure `nope`",
        ),
        (
            vec![
                "chat",
                "--url",
                &url,
                "--secret-file",
                &secret,
                "--replies",
                "2",
            ],
            "--replies",
        ),
        (vec!["ping", "--url", &url, "--size", "200"], "--size"),
        // The bridge's HTTP port speaks HTTP but is no gateway.
        (
            vec![
                "chat",
                "--url",
                &bridge_url,
                "--secret-file",
                &secret,
                "--duration",
                "1",
            ],
            "is it a Switchboard gateway?",
        ),
    ];
    for (args, needle) in cases {
        let out = loadtest(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("sb1."),
            "tokens never appear in errors: {err}"
        );
    }
}
