#!/usr/bin/env bash
# Installs the real allennlp 2.10.1 + allennlp-models 2.10.1 into the active (or given) virtual
# environment, with their pinned runtime dependencies, and the start-up hook that applies
# attn-plugins' compatibility patches before allennlp loads. Safe to run again.
#
#   scripts/install_allennlp.sh                # into .venv (or $VIRTUAL_ENV when one is active)
#   PYTHON=/path/to/venv/bin/python scripts/install_allennlp.sh
#
# torch, transformers, tokenizers, huggingface_hub, safetensors and numpy are held at the versions
# already installed (a constraints file), so this never changes the core stack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON="$VIRTUAL_ENV/bin/python"; else PYTHON="$ROOT/.venv/bin/python"; fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$(date +%s)
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$PYTHON" -m pip freeze 2>/dev/null \
  | grep -iE '^(torch|transformers|tokenizers|huggingface[-_]hub|safetensors|numpy)==' > "$constraints" || true
"$PYTHON" -m pip install -q --no-deps -r requirements/allennlp-nodeps.txt
"$PYTHON" -m pip install -q -c "$constraints" -r requirements/allennlp.txt
# the hook: a .pth file in site-packages that runs attn_plugins/compat/_bootstrap.py at start-up
(cd "$ROOT" && "$PYTHON" -m attn_plugins.compat install)
# check: the real allennlp loads, with its plugins, in a process that never imports attn_plugins
(cd /tmp && HF_HUB_OFFLINE=1 "$PYTHON" -W ignore -c \
  "import allennlp.commands, allennlp_models.generation; from allennlp.common.plugins import import_plugins; import_plugins(); print('allennlp', __import__('allennlp.version').version.VERSION, 'ready')")
echo "install_allennlp.sh: done in $(( $(date +%s) - started )) s"
