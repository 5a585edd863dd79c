#!/usr/bin/env bash
# bench/gpu_check.py in one call under a time limit (issue 32: at most 8 minutes on a GPU machine).
# The report (reports/gpu.md) is rewritten after each section, so a run stopped at the limit keeps
# what it measured.  Without CUDA the same sections run at tiny sizes on the CPU, and the report says so.
#
#   bench/gpu_check.sh [gpu_check.py options]        # = make gpu-check [GPU_CHECK_ARGS=...]
#   GPU_CHECK_LIMIT_S=480    the limit in seconds (default 480 = 8 min)
#   GPU_CHECK_PYTHON=...     the interpreter (default: `uv run --frozen python` where uv is installed,
#                            else `python3` with this checkout on PYTHONPATH: a machine with torch but no uv)
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${GPU_CHECK_LIMIT_S:-480}"
if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
  read -r -a python <<< "$GPU_CHECK_PYTHON"
elif command -v uv >/dev/null 2>&1; then
  python=(uv run --frozen python)
else
  python=(python3)
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
# the script's own budget leaves 30 s of the limit for start-up and the last report; SIGTERM at the
# limit (the script writes its report and exits), SIGKILL 30 s later if it has not
exec timeout --signal=TERM --kill-after=30 "$limit" "${python[@]}" bench/gpu_check.py --budget-s "$((limit - 30))" "$@"
