"""A test skipped for a missing system component is loud in the output and fails where it is required."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

NEEDS_NOTHING_THERE = '''
from pathlib import Path
from system import needs_system
pytestmark = needs_system(Path("/nonexistent/avlib-browser"), "apt-get install avlib-browser")

def test_uses_the_browser():
    pass
'''


def _run_pytest(folder: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(folder)], cwd=folder,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def test_missing_component_skips_with_a_banner_and_fails_when_required(tmp_path):
    for name in ("conftest.py", "system.py"):
        shutil.copy(TESTS / name, tmp_path / name)
    (tmp_path / "test_needs_it.py").write_text(NEEDS_NOTHING_THERE)
    skipped = _run_pytest(tmp_path, AVLIB_REQUIRE_SYSTEM="0")
    assert skipped.returncode == 0, skipped.stdout
    assert "TESTS SKIPPED: MISSING SYSTEM COMPONENTS" in skipped.stdout
    assert "/nonexistent/avlib-browser not found (install it: apt-get install avlib-browser)" in skipped.stdout
    required = _run_pytest(tmp_path, AVLIB_REQUIRE_SYSTEM="1")
    assert required.returncode != 0
    assert "AVLIB_REQUIRE_SYSTEM=1 (set by .ci/run) requires it" in required.stdout
