//! What only the gateway's tests need beyond the shared harness
//! (`switchboard_test_support`, which runs the gateway, its bridge and the clients): the
//! third-party tools they drive it with.

use std::path::PathBuf;

/// The Python virtualenv with the third-party tools (`websockets`, `kosoku`), made by
/// `scripts/setup-test-env.sh`. Missing tools fail the test loudly, never skip it.
pub fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var_os("SWITCHBOARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let bin = venv.join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-test-env.sh (or set SWITCHBOARD_VENV)",
        bin.display()
    );
    bin
}
