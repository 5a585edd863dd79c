"""Test-wide settings.

- Triton kernels run under the interpreter on the CPU (must be set before triton is imported).
- torch uses one intra-op thread (AVLIB_TEST_THREADS to change it), so tests do not slow each other
  down on a 2-core machine.
- Generated datasets and decoded caches go to a fresh per-session folder (``AVLIB_HOME``), which
  subprocesses (papermill, nbval kernels) inherit, and which is removed at the end.
"""
import os
import shutil
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
# AVLIB_TEST_THREADS (default 1) runs the suite with another thread count (issue: results must not
# depend on it); training runs inside tests still use their config's num_threads.
THREADS = int(os.environ.get("AVLIB_TEST_THREADS", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MPLBACKEND", "Agg")
_SESSION_HOME = tempfile.mkdtemp(prefix="avlib-test-home-")
os.environ["AVLIB_HOME"] = _SESSION_HOME

import torch  # noqa: E402

torch.set_num_threads(THREADS)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """Skips for a missing system component (tests/system.py) in a banner no one can miss."""
    from system import MISSING, REQUIRE

    missing = sorted({str(report.longrepr[2]) for report in terminalreporter.stats.get("skipped", [])
                      if isinstance(report.longrepr, tuple) and MISSING in str(report.longrepr[2])})
    if missing:
        terminalreporter.write_sep("!", "TESTS SKIPPED: MISSING SYSTEM COMPONENTS", red=True, bold=True)
        for reason in missing:
            terminalreporter.write_line(f"  {reason.removeprefix('Skipped: ')}", red=True)
        terminalreporter.write_line(f"  (CI sets {REQUIRE}=1, which turns these skips into failures)", red=True)


def pytest_report_header(config):
    """The machine at the top of every run: float results differ in the last bits with these."""
    import platform

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or platform.machine())
    return (f"machine: {model}, {os.cpu_count()} cores; torch {torch.__version__} CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s); "
            f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', 'unset')}")
