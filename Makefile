# The two commands a new user runs: `make demo` (set up + main job on the bundled model) and `make test`.
.PHONY: setup demo test
setup:
	./scripts/setup_env.sh
demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/attn-plugins demo --out out/
test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests
