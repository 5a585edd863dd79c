"""Tests that need a component of the system (not a Python package): skipped loudly, or required.

``pytestmark = needs_system(path, install)`` in a test module: where ``path`` is missing its tests
are skipped with a reason starting ``MISSING SYSTEM COMPONENT``, which ``conftest.py`` repeats in a
banner at the end of ``make test``'s output; with ``AVLIB_REQUIRE_SYSTEM=1`` (set by ``.ci/run``)
collecting the module fails instead, so CI cannot pass by skipping them.
"""

import os
from pathlib import Path

import pytest

MISSING = "MISSING SYSTEM COMPONENT"
REQUIRE = "AVLIB_REQUIRE_SYSTEM"


def needs_system(path: Path, install: str):
    if Path(path).exists():
        return []
    reason = f"{MISSING}: {path} not found (install it: {install})"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}; {REQUIRE}=1 (set by .ci/run) requires it", pytrace=False)
    return pytest.mark.skip(reason=reason)
