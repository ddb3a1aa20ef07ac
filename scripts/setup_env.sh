#!/usr/bin/env bash
# Creates .venv (Python 3.11) with attn-plugins and every extra installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The CPU torch wheel first (it lies on local disk where available), so nothing pulls a CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[all,test]"
