"""Peak resident memory of the training process tree (the trainer and its DataLoader workers).

Why: a streamed corpus must cost memory bounded by the workers, not by the corpus (issue 30), and the
only honest check is to measure what the processes hold while they train.  ``getrusage`` reports the
largest single child, not the sum of live workers, so :class:`PeakTreeRSS` samples ``/proc`` instead:
every ``interval_s`` it sums ``VmRSS`` over this process and all its descendants and keeps the maximum.
Pages that forked workers share with the trainer (copy-on-write, a memory-mapped cache) count once per
process that touches them, so the figure is an upper bound on physical memory: the right side to err
on for "does it fit".  On a system without ``/proc`` the peak is None.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["PeakTreeRSS", "tree_rss_bytes"]

_PROC = Path("/proc")


def _children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name (field 2) may hold spaces or ')': the fields after the last ')' are fixed
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _rss_bytes(pid: int) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return 0  # ended, or a zombie without memory


def tree_rss_bytes(root: int | None = None) -> int | None:
    """Summed resident memory of process ``root`` (default: this one) and all its descendants."""
    if not _PROC.is_dir():
        return None
    root = os.getpid() if root is None else root
    children, total, stack = _children_map(), 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_bytes(pid)
        stack.extend(children.get(pid, ()))
    return total


class PeakTreeRSS:
    """A daemon thread that keeps the peak of :func:`tree_rss_bytes` while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.peak_bytes: int | None = tree_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        now = tree_rss_bytes()
        if now is not None:
            self.peak_bytes = max(self.peak_bytes or 0, now)

    @property
    def peak_mb(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / 2**20

    def __enter__(self) -> "PeakTreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
