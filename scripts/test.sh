#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-env.sh
scripts/ensure-services.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The supply chain: licences, duplicate versions, sources (deny.toml; advisories need the
# network, see docs/security.md).
cargo deny --locked check licenses bans sources
cargo test --workspace --locked
# The release build for aarch64, run on two emulated aarch64 machines (4 and 16 KiB pages).
scripts/aarch64.sh
# Each fuzz target for a short bounded time (scripts/fuzz.sh alone runs them longer).
scripts/fuzz.sh 20
