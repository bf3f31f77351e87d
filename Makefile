# knowtune: `make demo` and `make test` do all set-up themselves on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.knowtune-installed
export KNOWTUNE_HOME ?= $(HOME)/.cache/knowtune
MODEL_STAMP := $(KNOWTUNE_HOME)/models/smollm2-135m/knowtune-model.json

.PHONY: setup demo demo-docs demo-private test test-fast bench bench-feedback clean

setup: $(STAMP) $(MODEL_STAMP)

# torch first, pinned: the CPU wheel is on disk; a bare `torch` requirement would pull GBs of CUDA wheels.
# -qq: pip says only errors (its warnings about this machine's package index settings are not ours to show).
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq torch==2.13.0
	$(BIN)/pip install -qq -e ".[dev,web]"
	touch $(STAMP)

$(MODEL_STAMP): $(STAMP)
	$(BIN)/knowtune models pull smollm2-135m

demo: setup
	$(BIN)/knowtune teach examples/brindlemoor_kite_works.yaml --out runs/demo --config configs/teach.yaml \
	  $(if $(wildcard runs/demo/config.yaml),--resume,)

# Documents: teach the example handbook (offline rule-based facts), then fine-tuning vs RAG vs both.
HANDBOOK := examples/harrowgate_handbook
demo-docs: setup runs/demo-docs/audit.json
	$(BIN)/knowtune compare $(HANDBOOK) --probes examples/harrowgate_probes.jsonl --tuned runs/demo-docs

runs/demo-docs/audit.json:
	$(BIN)/knowtune teach $(HANDBOOK) --probes examples/harrowgate_probes.jsonl --out runs/demo-docs \
	  $(if $(wildcard runs/demo-docs/config.yaml),--resume,)

# Privacy: 800 support tickets scrubbed at ingest, taught with and without DP-SGD (epsilon 8), canaries and
# membership inference measured on both, side by side (~1 h on 2 CPU cores)
demo-private: setup
	$(BIN)/python benchmarks/privacy.py --out runs/private

# The browser tests drive Debian's Chromium (Playwright with executable_path=/usr/bin/chromium; no browser download).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	export DEBIAN_FRONTEND=noninteractive; $(SUDO) apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

test: setup $(CHROMIUM)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup  # speed/memory against plain trl, a profile of the step and the audit's speed (~10 min), then the Reversal Curse benchmark (~20 min)
	$(BIN)/python benchmarks/teach_speed.py
	$(BIN)/python benchmarks/reversal_curse.py

# ratings (rule-based rater) -> reward model -> PPO and DPO on the default model taught the example pack (~1 h)
bench-feedback: setup
	$(BIN)/python benchmarks/feedback.py

clean:
	rm -rf runs/demo runs/demo-docs .pytest_cache
