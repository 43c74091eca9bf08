//! Agent accounts for a test: made with the bridge's own CLI (as an operator would make the
//! first admin), and logged in through the REST API for a token.

use crate::http;
use crate::process::bin_path;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// `storage-bridge --data-dir DIR create-agent --id ID --role ROLE`, the password on stdin;
/// the CLI's output (stdout and stderr) and whether it succeeded.
pub fn try_create_agent(data_dir: &Path, id: &str, role: &str, password: &str) -> (bool, String) {
    let mut child = Command::new(bin_path("storage-bridge"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["create-agent", "--id", id, "--role", role])
        .env_remove("DATABASE_URL")
        .env("SWITCHBOARD_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("storage-bridge runs");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password written");
    let out = child.wait_with_output().expect("storage-bridge ends");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// [`try_create_agent`], which must succeed.
pub fn create_agent(data_dir: &Path, id: &str, role: &str, password: &str) {
    let (ok, text) = try_create_agent(data_dir, id, role, password);
    assert!(ok, "create-agent {id}: {text}");
}

/// `POST /api/v1/auth/login` on the bridge's API at `api`, which must succeed: the answer
/// (`token`, `expires_at`, `agent`, `role`).
pub fn login(api: &str, agent: &str, password: &str) -> Value {
    let body = serde_json::json!({"agent": agent, "password": password}).to_string();
    let r = http::post(api, "/api/v1/auth/login", &[], &body);
    assert_eq!(r.status, 200, "login {agent}: {}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

/// An admin `root` made in `data_dir` and logged in at `api`: `Bearer <token>`.
pub fn admin_bearer(data_dir: &Path, api: &str) -> String {
    create_agent(data_dir, "root", "admin", "correct horse battery");
    let t = login(api, "root", "correct horse battery");
    format!("Bearer {}", t["token"].as_str().expect("a token"))
}
