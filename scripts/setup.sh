#!/usr/bin/env bash
# Creates .venv at the repository root with everything the CLI and the tests need.
# torch==2.13.0 is installed first: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -m venv --help >/dev/null 2>&1; then
    echo "setup: python3 venv module missing; installing python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
echo "setup: ready (.venv/bin/adiposeseg, .venv/bin/python -m pytest)"
