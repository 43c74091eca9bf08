//! The REST API against its own OpenAPI document: `schemathesis` (a property-based API
//! fuzzer, from PyPI) generates requests for every operation the document lists, as an
//! admin, and checks that none gets a 5xx and that every response (status, content type,
//! body) is one the document describes. Bounded: 25 examples per operation, a fixed seed.
//! A longer run: `SWITCHBOARD_API_FUZZ_EXAMPLES=500 cargo test -p gateway --test api_fuzz`.

mod common;

use common::venv_bin;
use std::process::Command;
use switchboard_test_support::{free_addr, temp_dir, Gateway};

#[test]
fn every_operation_answers_as_its_document_says() {
    let dir = temp_dir("api-fuzz");
    let api = free_addr();
    let _gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
    let bearer = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    let examples = std::env::var("SWITCHBOARD_API_FUZZ_EXAMPLES").unwrap_or_else(|_| "25".into());
    let out = Command::new(venv_bin("st"))
        .args(["run", &format!("http://{api}/api/v1/openapi.json")])
        .args(["--experimental", "openapi-3.1"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--header", &format!("Authorization: {bearer}")])
        .args(["--hypothesis-max-examples", &examples])
        .args(["--hypothesis-seed", "1"])
        .args(["--request-timeout", "10000"])
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis (scripts/setup-test-env.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("not_a_server_error"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
