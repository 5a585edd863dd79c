"""What a run shows in a terminal (issue 34): progress lines at a bounded rate, the probe table and
the run folder at the end (``avlib.train.console``, the CLI), and ``make pretrain``'s launcher
(``avlib.notebook``), which shows a failing notebook's error in one line instead of a traceback.

The contract other tests and people grep for: a progress line matches ``step\\s+\\d+/\\d+`` and holds
``loss`` and ``ETA``; the report holds ``random init``; the run folder is on a line ``run folder: ...``.
"""

import io
import math
import re
import subprocess
import sys
from pathlib import Path

from avlib.train.console import ProgressLines, duration_text
from avlib.train.launch import main as train_main
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"step\s+\d+/\d+")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_lines(total_steps: int, step_s: float, knn_every: int = 0) -> list[str]:
    """The lines ProgressLines prints over a run of ``total_steps`` steps of ``step_s`` seconds each."""
    clock, out = FakeClock(), io.StringIO()
    progress = ProgressLines("pretrain[x]", 0, total_steps, clock=clock, out=out)
    for step in range(total_steps):
        clock.now += step_s
        monitored = knn_every and (step + 1) % knn_every == 0
        progress.step({"step": step, "loss": 5.0 - step / total_steps, "top1": 0.5,
                       "knn_video": 0.4 if monitored else math.nan, "knn_audio": 0.3 if monitored else math.nan})
    return out.getvalue().splitlines()


def test_progress_lines_come_every_5_percent_of_the_steps_on_a_fast_run():
    lines = run_lines(990, step_s=0.3, knn_every=22)  # the main job's steps at ~300 ms: 5 min
    assert len(lines) == 1 + 990 // 50 + 1  # the first step, every 50 steps (5% rounded up), the last
    assert all(PROGRESS.search(line) and "loss" in line and "ETA" in line for line in lines)
    assert lines[0].startswith("pretrain[x] step   1/990 (0%)  loss 5.000") and "kNN" not in lines[0]
    half = next(line for line in lines if "step 500/990" in line)
    # the kNN monitor's latest values and the step they are from; ms/step and ETA from the clock
    assert "kNN video 0.400 audio 0.300 (at step 484)" in half
    assert "300 ms/step" in half and "elapsed 2m30s" in half and "ETA 2m27s" in half
    assert lines[-1].endswith("ETA 0s") and "step 990/990 (100%)" in lines[-1]


def test_progress_lines_come_every_30_seconds_on_a_slow_run_but_never_flood():
    slow = run_lines(100, step_s=10.0)  # 10 s a step: 5% (5 steps) is 50 s, so the 30-s rule leads
    steps = [int(PROGRESS.search(line).group().split()[1].split("/")[0]) for line in slow]
    assert steps[:5] == [1, 4, 5, 8, 10]  # 30 s after the last line, or a multiple of 5 steps
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 3 and steps[-1] == 100
    # the control: a fast run of many steps prints ~21 lines, not one per step
    assert len(run_lines(20_000, step_s=0.01)) == 21  # the first step and every 1,000th


def test_duration_text():
    assert [duration_text(s) for s in (0.4, 42, 187, 3725)] == ["0s", "42s", "3m07s", "1h02m"]


def test_the_cli_prints_progress_then_the_probe_table_and_the_run_folder(tmp_path, capsys):
    """``python -m avlib.train`` (in this process): a tiny run's terminal output."""
    run_dir = tmp_path / "cli"
    argv = [f"--{name}={value}" for name, value in {**TINY, "progress": True}.items()] + [f"--run_dir={run_dir}"]
    assert train_main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    progress = [line for line in out if PROGRESS.search(line)]
    assert len(progress) == 6 and all("loss" in line and "ETA" in line for line in progress)  # 6 steps, each a 5%+
    assert "kNN video" in progress[-1]
    table = out.index(next(line for line in out if line.startswith("| modality | probe | trained | random init")))
    assert table > out.index(progress[-1]) and len(out[table + 2:table + 6]) == 4  # video/audio x linear/knn
    assert out[-1] == f"run folder: {run_dir.resolve()}"


def test_the_launcher_shows_a_misspelt_parameter_in_one_line_and_keeps_the_notebook(tmp_path):
    """``make pretrain PARAMS="-p sampeler random"``: the message, no traceback wall, exit status 1."""
    output = tmp_path / "02_pretrain.ipynb"
    result = subprocess.run([sys.executable, "-m", "avlib.notebook", str(ROOT / "notebooks" / "02_pretrain.ipynb"),
                             str(output), "-p", "sampeler", "random", "--cwd", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert ("ConfigError: unknown parameter 'sampeler' (did you mean 'sampler'?) given to this notebook"
            in result.stderr)
    assert "Traceback" not in result.stderr + result.stdout and "PapermillExecutionError" not in result.stderr
    assert len((result.stderr + result.stdout).splitlines()) < 10, result.stderr
    assert f"the whole traceback: {output}" in result.stderr
    assert "Traceback" in output.read_text() or "ConfigError" in output.read_text()  # the notebook keeps it all
