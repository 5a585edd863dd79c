"""What a run says on stdout: plain progress lines while it trains, and its results when it ends.

Why plain lines and not a progress bar: ``make pretrain`` runs the notebook through papermill, which
streams the kernel's stdout to the terminal (:mod:`avlib.notebook`) but not a notebook widget, and a
bar's carriage returns make a log file (a study run's, a scheduler's) unreadable.  A line every ~5%
of the steps or every 30 s, whichever comes first, is readable in a terminal, a notebook and a log.

Both are printed by rank 0 only; their format is a contract (``tests/test_console.py``): a progress
line matches ``step\\s+\\d+/\\d+`` and holds ``loss`` and ``ETA``; the report holds the probe table
(with the words ``random init``) and a line starting with ``run folder:``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path


def duration_text(seconds: float) -> str:
    """``42s``, ``3m07s``, ``1h02m``: short and unambiguous."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLines:
    """One line per ~``share`` of the run's steps or per ``every_s`` seconds, whichever comes first,
    plus the first and the last step: the step, the loss and the top-1 rate of the step, the online
    kNN monitor's latest accuracies (and the step they were measured at), the elapsed time, the ETA
    and the mean time a step took in this session (kNN monitor included, so the ETA holds).

    ``clock`` and ``out`` are there for the tests (a fake clock, a buffer)."""

    def __init__(self, label: str, start_step: int, total_steps: int, share: float = 0.05, every_s: float = 30.0,
                 clock=time.perf_counter, out=None):
        self.label, self.start_step, self.total_steps = label, start_step, total_steps
        self.stride = max(1, math.ceil(share * total_steps))  # steps between lines, at most
        self.every_s, self.clock, self.out = every_s, clock, out
        self.started = self.last_line = clock()
        self.knn: dict[str, float] = {}
        self.knn_step: int | None = None
        self.lines = 0

    def step(self, row: dict) -> str | None:
        """Take one step's metrics row (``step`` 0-based, ``loss``, optional ``top1``, ``knn_video`` and
        ``knn_audio``, NaN between monitors); returns the line printed, if one is due."""
        done = row["step"] + 1
        if not math.isnan(row.get("knn_video", math.nan)):
            self.knn = {"video": row["knn_video"], "audio": row.get("knn_audio", math.nan)}
            self.knn_step = done
        now = self.clock()
        due = (done % self.stride == 0 or done == self.total_steps or done == self.start_step + 1
               or now - self.last_line >= self.every_s)
        if not due:
            return None
        self.last_line = now
        return self._print(self.line(row, now))

    def line(self, row: dict, now: float) -> str:
        done, total = row["step"] + 1, self.total_steps
        elapsed = now - self.started
        per_step = elapsed / max(1, done - self.start_step)
        width = len(str(total))
        parts = [f"{self.label} step {done:>{width}}/{total} ({100 * done / max(1, total):.0f}%)",
                 f"loss {row['loss']:.3f}"]
        if "top1" in row and not math.isnan(row["top1"]):
            parts.append(f"top1 {row['top1']:.2f}")
        if self.knn:
            parts.append(f"kNN video {self.knn['video']:.3f} audio {self.knn['audio']:.3f} (at step {self.knn_step})")
        parts += [f"{1000 * per_step:.0f} ms/step", f"elapsed {duration_text(elapsed)}",
                  f"ETA {duration_text(per_step * (total - done))}"]
        return "  ".join(parts)

    def note(self, text: str) -> None:
        """A line between the progress lines (a warning, a stage)."""
        self._print(text)

    def _print(self, text: str) -> str:
        print(text, file=self.out or sys.stdout, flush=True)
        self.lines += 1
        return text


def run_report(summary: dict, run_dir: str | Path) -> str:
    """What a finished run ends with: the probe table (trained vs random init; or why there is none),
    the online kNN monitor's last values, the wall time, and the run folder's absolute path."""
    from avlib.analysis.plots import probe_table  # here: it imports matplotlib, which training does not need

    lines = []
    if summary.get("probe"):
        lines += ["probes on frozen features (accuracy on the test split; trained vs random init, the same "
                  "encoders before training):", probe_table(summary["probe"], summary.get("probe_random_init"))]
    else:
        lines.append("probes: not run (probe=False), so no table of trained vs random init")
    monitor = summary.get("monitor")
    if monitor:
        lines.append(f"online kNN monitor (val clips), last: video {monitor['knn_video']:.3f}, "
                     f"audio {monitor['knn_audio']:.3f}")
    if "wall_s" in summary:
        lines.append(f"{summary['steps']} steps at {1000 * summary['mean_step_s']:.0f} ms/step; the run took "
                     f"{duration_text(summary['wall_s'])} (data, both probes and training)")
    lines.append(f"run folder: {Path(run_dir).resolve()}")
    return "\n".join(lines)
