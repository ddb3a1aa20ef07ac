# The two commands a new user runs: `make demo` (set up + main job on the bundled model) and `make test`.
# `make docs` builds the documentation site into site/ (`make docs-serve` serves it while editing docs/).
.PHONY: setup demo test docs docs-serve matrix
setup:
	./scripts/setup_env.sh
demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/attn-plugins demo --out out/
test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests
docs: setup
	.venv/bin/mkdocs build --strict
docs-serve: setup
	.venv/bin/mkdocs serve
matrix: setup
	.venv/bin/python scripts/version_matrix.py
