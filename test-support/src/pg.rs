//! A PostgreSQL schema of a test's own, in the shared server (`SWITCHBOARD_TEST_DATABASE_URL`,
//! default postgres://postgres@127.0.0.1:5432/test), created with `psql`: a URL whose
//! connections use only that schema. Schemas of test processes that are gone are dropped.
//! A missing PostgreSQL fails the test, loudly.

use std::process::Command;

/// The shared test database.
pub fn base_url() -> String {
    std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql (PostgreSQL's client) is required");
    assert!(
        out.status.success(),
        "PostgreSQL at {url} is required for this test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh schema; returns a `DATABASE_URL` for it.
pub fn fresh_schema() -> String {
    let url = base_url();
    for name in psql(
        &url,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sbtest\\_%'",
    )
    .lines()
    {
        let pid = name.split('_').nth(1).unwrap_or("");
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            psql(&url, &format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
    let schema = format!("sbtest_{}_{}", std::process::id(), fastrand::u32(..));
    psql(&url, &format!("CREATE SCHEMA {schema}"));
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs one query against `url` (a [`fresh_schema`] URL); the rows, `|`-separated.
pub fn query(url: &str, sql: &str) -> Vec<String> {
    psql(url, sql).lines().map(str::to_owned).collect()
}
