"""Test-wide settings.

- Triton kernels run under the interpreter on the CPU (must be set before triton is imported).
- torch uses one intra-op thread, so tests do not slow each other down on a 2-core machine.
- Generated datasets and decoded caches go to a fresh per-session folder (``AVLIB_HOME``), which
  subprocesses (papermill, nbval kernels) inherit, and which is removed at the end.
"""
import os
import shutil
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_SESSION_HOME = tempfile.mkdtemp(prefix="avlib-test-home-")
os.environ["AVLIB_HOME"] = _SESSION_HOME

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
