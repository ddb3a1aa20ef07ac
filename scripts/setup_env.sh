#!/usr/bin/env bash
# Creates .venv (Python 3.11) with attn-plugins and every extra, the browser the tests drive, and the
# JavaScript libraries that exported pages inline. Safe to run again: each step skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

# System packages: Chromium + ChromeDriver for the browser tests, npm to fetch the JS libraries once.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (Debian packages) for the browser tests and offline pages" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# The CPU torch wheel first (it lies on local disk where available), so nothing pulls a CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[all,test]"
# the real allennlp 2.10.1 (--no-deps) and the hook that applies our compatibility patches
./scripts/install_allennlp.sh
./scripts/fetch_js_assets.sh
