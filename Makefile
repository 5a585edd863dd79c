# Two commands do all the set-up on a fresh machine (uv is installed on first use):
#   make pretrain   # pretraining on the embedded dataset via notebooks/02_pretrain.ipynb (papermill)
#   make test       # the test suite, notebooks included
UV := $(shell command -v uv >/dev/null 2>&1 && echo uv || echo "python3 -m uv")
SAMPLER ?= active
RUN ?= runs/$(SAMPLER)
PARAMS ?=

.PHONY: uv pretrain test bench lab clean-runs study

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
	$(UV) run --frozen python bench/bench_ddp.py

lab: uv
	$(UV) run --frozen jupyter lab notebooks/

# The reproducible study (avlib/study/): runs a condition's notebooks, resumable, then rebuilds
# reports/REPORT.md from the run folders: make study [CONDITION=samplers] [JOBS=2] [STUDY_ARGS=...]
study: uv
	$(UV) run --frozen python -m avlib.study --condition $(or $(CONDITION),samplers) --jobs $(or $(JOBS),2) $(STUDY_ARGS)
