#!/usr/bin/env bash
# Creates .venv (Python 3.11) with attn-plugins and every extra at the exact versions we test with
# (requirements/constraints.txt; setup.py itself declares ranges) and the browser the tests drive.
# The JavaScript libraries that exported pages inline are vendored in the package (nothing to fetch).
# Safe to run again: each step skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
export PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive

# System packages: Chromium + ChromeDriver for the browser tests.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (Debian packages) for the browser tests" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
# The CPU torch wheel first (it lies on local disk where available), so nothing pulls a CUDA build;
# then the tested transformers and the package with every extra, held to the tested versions.
python -m pip install -q "torch==2.13.0"
python -m pip install -q "transformers==5.24.0"
python -m pip install -q -c requirements/constraints.txt -e ".[all,test]"
# independent references for the tests (ferret's evaluators, ...), without their conflicting pins
python -m pip install -q --no-deps -r requirements/references-nodeps.txt
# the real allennlp 2.10.1 (--no-deps) and the hook that applies our compatibility patches
./scripts/install_allennlp.sh
