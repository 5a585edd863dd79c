# Two commands do all the set-up on a fresh machine (uv is installed on first use):
#   make pretrain   # pretraining on the embedded dataset via notebooks/02_pretrain.ipynb (papermill)
#   make test       # the test suite, notebooks included
UV := $(shell command -v uv >/dev/null 2>&1 && echo uv || echo "python3 -m uv")
SAMPLER ?= active
RUN ?= runs/$(SAMPLER)
PARAMS ?=

.PHONY: uv system pretrain test test-scaleout bench lab clean-runs study study-testbed machine tensorboard

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

# Debian's FFmpeg 5.1 runtime libraries, which torchcodec loads (avlib/data/window.py; without them the
# window decoder falls back to PyAV and says so once). Quiet when present; `apt-get update` only when the
# install fails (a stale package list).
FFMPEG_LIBS := libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59
system:
	@missing=""; for p in $(FFMPEG_LIBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make system: no apt-get here; install FFmpeg 5.1's libraries ($(FFMPEG_LIBS)) yourself, or avlib decodes with PyAV"; exit 0; \
	  fi; \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  echo "make system: installing$$missing"; \
	  install="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(FFMPEG_LIBS)"; \
	  $$install >/dev/null || { $$sudo apt-get update -qq && $$install >/dev/null; }; \
	fi

# papermill through avlib/notebook.py (papermill's options): the kernel's output (training progress, probe table,
# run folder) in the terminal, and a failing notebook's error in one line instead of papermill's traceback
pretrain: uv system
	mkdir -p $(RUN)
	$(UV) run --frozen python -m avlib.notebook notebooks/02_pretrain.ipynb $(RUN)/02_pretrain.ipynb -p sampler $(SAMPLER) -p run_dir $(RUN) $(PARAMS)

test: uv system
	$(UV) run --frozen pytest

# the multi-process launches (torchrun ranks and nodes, elastic restarts, submitit jobs): CI runs them
# after `make test` (.ci/run), which leaves them out (pytest marker `scaleout`) to stay within 10 minutes
test-scaleout: uv system
	$(UV) run --frozen pytest -m scaleout

# What a float result depends on: the CPU, torch's kernel path (ATEN_CPU_CAPABILITY) and thread counts.
machine: uv
	@echo "CPU: $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($$(nproc) cores); OMP_NUM_THREADS=$${OMP_NUM_THREADS:-unset} ATEN_CPU_CAPABILITY=$${ATEN_CPU_CAPABILITY:-unset}"
	@$(UV) run --frozen python -c "import torch; print(f'torch {torch.__version__}: CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op threads')"

bench: uv
	$(UV) run --frozen python bench/bench_select.py
	$(UV) run --frozen python bench/bench_train_step.py
	$(UV) run --frozen python bench/bench_ddp.py

# TensorBoard on every run folder under runs/ (scalars, HParams, the dictionaries in the projector)
tensorboard: uv
	$(UV) run --frozen tensorboard --logdir runs/ --bind_all

# reports/screenshots/*.png (bench/screenshots.py): TensorBoard's pages and notebook 03 after Run All in
# JupyterLab, on two tiny runs in a temporary folder, in headless system Chromium (Playwright; ~3 min)
.PHONY: screenshots
screenshots: uv system
	@[ -x /usr/bin/chromium ] || { echo "make screenshots: needs /usr/bin/chromium: apt-get install -y --no-install-recommends chromium fonts-dejavu-core"; exit 2; }
	$(UV) run --frozen python bench/screenshots.py $(SCREENSHOT_ARGS)

# JupyterLab on the repository root, so that notebooks/ and runs/ are both browsable (the notebooks resolve
# relative paths from the root wherever their kernel starts); as root (uid 0: a container) it needs --allow-root.
# LAB_ARGS adds options, e.g. make lab LAB_ARGS="--no-browser --port=8890"
LAB_ARGS ?=
lab: uv
	$(UV) run --frozen jupyter lab --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" -eq 0 ] && echo --allow-root) $(LAB_ARGS)

# The reproducible study (avlib/study/): runs a condition's notebooks, resumable, then rebuilds
# reports/REPORT.md from the run folders: make study [CONDITION=samplers] [JOBS=2] [STUDY_ARGS=...]
study: uv
	$(UV) run --frozen python -m avlib.study --condition $(or $(CONDITION),samplers) --jobs $(or $(JOBS),2) $(STUDY_ARGS)

# The testbed conditions (imbalance, near-duplicate sources, synchrony, clean faulty-pair sweep, label-free
# labels, label quality; 10 seeds where a claim's primary comparison lies, see avlib/study/conditions.py), one
# after the other; resumable (stop and run again), runs that two conditions share are trained once and linked
# (avlib/study/run.py: link_twins).  CM-ACC's own axis, dictionary_size (~37 h of run time on 2 cores), runs
# with `make study CONDITION=dictionary_size` or `--executor slurm`.  The plan and its hours: reports/REPORT.md.
STUDY_TESTBED = sources imbalance faulty_clean sync label_free label_quality
study-testbed: uv
	for condition in $(STUDY_TESTBED); do \
	  $(UV) run --frozen python -m avlib.study --condition $$condition --jobs $(or $(JOBS),2) \
	    --no-downstream --no-umap $(STUDY_ARGS) || exit 1; \
	done

# The GPU check (bench/gpu_check.sh, issue 32): Triton kernels, k-means++ timing and bf16 training on CUDA -> reports/gpu.md
.PHONY: gpu-check
gpu-check:
	bash bench/gpu_check.sh $(GPU_CHECK_ARGS)
