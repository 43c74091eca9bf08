#!/usr/bin/env bash
# Prepares what the test suite needs beyond cargo: `promtool` (Debian's prometheus package,
# for the alerting-rule tests) and a Python virtualenv (.venv) with the third-party
# WebSocket client (`websockets`), the Autobahn runner (`kosoku`) and the API fuzzer
# (`schemathesis`, with the `hypothesis` it works with), Chromium with Playwright for the
# browser tests, cargo-fuzz (nightly) for the fuzz targets and cargo-deny for the supply
# chain check.
# Idempotent: does nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
    echo "setup-test-env: installing promtool (Debian package prometheus)"
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "setup-test-env: promtool is missing; install Debian's prometheus package" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; }
    command -v promtool >/dev/null
fi

# The browser tests drive Debian's Chromium (no browser build can be downloaded here).
if ! command -v chromium >/dev/null; then
    echo "setup-test-env: installing chromium (Debian package)"
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "setup-test-env: chromium is missing; install Debian's chromium package" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
        || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }
    command -v chromium >/dev/null
fi

# The fuzz targets (scripts/fuzz.sh) build with cargo-fuzz on the nightly toolchain.
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "setup-test-env: installing cargo-fuzz"
    cargo +nightly --version >/dev/null 2>&1 \
        || { echo "setup-test-env: the nightly toolchain is missing (rustup toolchain install nightly)" >&2; exit 1; }
    cargo install cargo-fuzz --locked --quiet
fi

if ! cargo deny --version >/dev/null 2>&1; then
    echo "setup-test-env: installing cargo-deny"
    cargo install cargo-deny --locked --quiet
fi

venv="${SWITCHBOARD_VENV:-.venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import websockets, kosoku, schemathesis, playwright' 2>/dev/null; then
    exit 0
fi
echo "setup-test-env: creating $venv (websockets, kosoku, schemathesis, playwright)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# schemathesis 3.39 breaks with hypothesis 6.130 and later ("'many' object has no attribute
# 'more'"): both pinned. Playwright drives /usr/bin/chromium (its own browsers are never
# downloaded).
"$venv/bin/pip" install --quiet --disable-pip-version-check 'websockets>=13,<18' 'kosoku==0.1.0' \
    'schemathesis==3.39.16' 'hypothesis==6.129.5' 'playwright==1.65.2'
"$venv/bin/python" -c 'import websockets, kosoku, schemathesis, playwright'
