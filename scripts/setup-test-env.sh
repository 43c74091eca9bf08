#!/usr/bin/env bash
# Prepares what the test suite needs beyond cargo: a Python virtualenv (.venv) with the
# third-party WebSocket client (`websockets`) and the Autobahn runner (`kosoku`).
# Idempotent: does nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SWITCHBOARD_VENV:-.venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import websockets, kosoku' 2>/dev/null; then
    exit 0
fi
echo "setup-test-env: creating $venv (websockets, kosoku)"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'websockets>=13,<18' 'kosoku==0.1.0'
"$venv/bin/python" -c 'import websockets, kosoku'
