#!/usr/bin/env bash
# One command for the end-to-end comparison: builds the gateway, the baseline relay and the
# load generator in release mode, then runs bench/compare.py (see its docstring). Writes
# bench/results/compare.json and bench/results/compare.png.
#
#   bench/compare.sh [--quick] [--fixed-rate N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gateway -p loadtest -p switchboard-bench
venv=.venv-bench
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check matplotlib
fi
exec "$venv/bin/python" bench/compare.py "$@"
