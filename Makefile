# Two commands do all the set-up on a fresh machine (uv is installed on first use):
#   make pretrain   # pretraining on the embedded dataset via notebooks/02_pretrain.ipynb (papermill)
#   make test       # the test suite, notebooks included
UV := $(shell command -v uv >/dev/null 2>&1 && echo uv || echo "python3 -m uv")
SAMPLER ?= active
RUN ?= runs/$(SAMPLER)
PARAMS ?=

.PHONY: uv pretrain test bench lab clean-runs

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

pretrain: uv
	mkdir -p $(RUN)
	$(UV) run --frozen papermill notebooks/02_pretrain.ipynb $(RUN)/02_pretrain.ipynb -p sampler $(SAMPLER) -p run_dir $(RUN) $(PARAMS)

test: uv
	$(UV) run --frozen pytest

bench: uv
	$(UV) run --frozen python bench/bench_select.py
	$(UV) run --frozen python bench/bench_train_step.py

lab: uv
	$(UV) run --frozen jupyter lab notebooks/
