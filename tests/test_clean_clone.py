"""A new user's first hour, on a clean clone: ``make pretrain`` (tiny sizes), then every notebook headless
with its defaults, each kernel started in ``notebooks/`` as JupyterLab starts it; ``git status`` stays clean.

The clone is the working tree as it would be committed (tracked and not-ignored files, committed into a
fresh repository in a temporary folder), so the test checks the code under test, not the last commit.
It runs on the test session's environment (``uv run`` with ``UV_PROJECT_ENVIRONMENT``, no sync; the
clone's ``avlib`` first on ``PYTHONPATH``) and on the session's dataset home (``AVLIB_HOME``, from
conftest.py), so nothing is installed or generated twice.  Papermill parameters set sizes only, never an
output path: the point is where the notebooks write by default.
"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from avlib.localhost import answer_when_up, free_port
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
#: the tiny run's sizes (``progress`` left at its default: the terminal's progress lines are under test)
SIZES = {k: v for k, v in TINY.items() if k != "progress"}
DATA_SIZES = {k: TINY[k] for k in ("num_classes", "clips_per_class", "clip_seconds", "fps", "frame_size", "sample_rate")}

pytestmark = pytest.mark.slow


def clean_clone(target: Path) -> Path:
    """The working tree's tracked and not-ignored files, committed into a new repository at ``target``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if not (source.exists() or source.is_symlink()):  # deleted in the working tree
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clean clone"]):
        subprocess.run(git + command, cwd=target, check=True, capture_output=True)
    assert git_status(target) == ""
    return target


def git_status(clone: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True).stdout


def environment(clone: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # no outer make's
    env.update(PYTHONPATH=str(clone), UV_PROJECT_ENVIRONMENT=sys.prefix, UV_NO_SYNC="1", OMP_NUM_THREADS="1",
               MPLBACKEND="Agg")
    return env


def papermill(clone: Path, name: str, parameters: dict) -> subprocess.CompletedProcess:
    """``papermill notebooks/NAME runs/NAME`` with the kernel in ``notebooks/`` (JupyterLab's folder)."""
    command = [sys.executable, "-m", "papermill", f"notebooks/{name}", f"runs/{name}", "--cwd", "notebooks",
               "--no-progress-bar"]
    for key, value in parameters.items():
        command += ["-p", key, str(value)]
    result = subprocess.run(command, cwd=clone, env=environment(clone), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return clean_clone(tmp_path_factory.mktemp("first-hour") / "avlib")


@pytest.fixture(scope="module")
def first_hour(clone):
    """The clean clone after ``make pretrain`` with tiny sizes: (clone, the command's terminal output)."""
    params = " ".join(f"-p {k} {v}" for k, v in SIZES.items())
    result = subprocess.run(["make", "pretrain", f"PARAMS={params}"], cwd=clone, env=environment(clone),
                            capture_output=True, text=True, timeout=600)
    terminal = result.stdout + result.stderr
    assert result.returncode == 0, terminal[-6000:]
    return clone, terminal


def test_make_pretrain_shows_progress_and_the_probe_table_and_writes_only_its_run_folder(first_hour):
    clone, terminal = first_hour
    progress = [line for line in terminal.splitlines() if re.search(r"step\s+\d+/\d+", line)]
    assert progress and all("loss" in line and "ETA" in line for line in progress), terminal[-4000:]
    assert "random init" in terminal, terminal[-4000:]
    folders = re.findall(r"^run folder: (.+)$", terminal, re.M)
    assert folders and Path(folders[-1].strip()).resolve() == (clone / "runs" / "active").resolve(), terminal[-2000:]
    assert (clone / "runs" / "active" / "summary.json").is_file()
    assert git_status(clone) == ""


def test_notebook_03_with_its_defaults_compares_the_runs_make_pretrain_wrote(first_hour):
    """The issue's failure: 03 opened after ``make pretrain`` looked for ``notebooks/runs/random`` and, run
    headless, overwrote four committed files in ``reports/``.  Its exported copy shows the inspector's first
    query without a kernel."""
    from nbconvert import HTMLExporter

    from avlib.analysis.inspector import LIVE_KERNEL_NOTE

    clone, _ = first_hour
    papermill(clone, "03_negative_diversity.ipynb", {})
    written = {p.name for p in (clone / "runs" / "negative_diversity").iterdir()}
    assert {"negative_diversity.csv", "negative_diversity.md", "negative_diversity_curves_video.png",
            "negative_diversity_umap_video.png"} <= written
    assert "| active | video | audio queries |" in (clone / "runs" / "negative_diversity" / "negative_diversity.md").read_text()
    assert git_status(clone) == ""

    executed = nbformat.read(clone / "runs" / "03_negative_diversity.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "runs/active" in printed and "repository root" in printed
    assert executed.metadata["widgets"]  # papermill stored the widget's state: nbconvert draws the widget itself
    page, _ = HTMLExporter().from_notebook_node(executed)
    static = page[page.index("avlib-inspector-static"):]
    assert "needs a live kernel" in static and LIVE_KERNEL_NOTE.split(":")[0] in static
    listed = re.search(r"listed negatives \(clip indices\): \[([\d, ]*)\]", printed)[1]  # the widget's list
    rows = [int(clip) for clip in re.findall(r"class=\"avlib-static-row\" data-clip=\"(\d+)\"", static)]
    assert rows[1:] == [int(clip) for clip in listed.split(",")] and len(rows) >= 2  # the query, then its negatives
    assert len(re.findall(r"src=[\"']data:image/jpeg;base64,", static)) == 2 * len(rows)  # frames, spectrogram


def test_notebooks_01_and_04_with_their_defaults_write_nothing_tracked(first_hour):
    clone, _ = first_hour
    papermill(clone, "01_data.ipynb", DATA_SIZES)
    assert git_status(clone) == ""
    papermill(clone, "04_downstream.ipynb", {})  # the run make pretrain wrote, its own dataset's probes
    assert (clone / "runs" / "active" / "downstream" / "run" / "results.md").is_file()
    assert git_status(clone) == ""


def _lab_listing(url: str, process: subprocess.Popen, log: Path) -> list[str]:
    """The names JupyterLab's contents API lists at ``url``, once the server answers."""
    return answer_when_up(url, process, log, read=lambda response: [item["name"] for item in json.load(response)["content"]])


def test_make_lab_serves_the_repository_root_and_starts_as_root(clone, tmp_path):
    """The issue: ``make lab`` served ``notebooks/`` (``runs/`` out of reach) and, as root, JupyterLab
    refused to start without ``--allow-root``."""
    (clone / "runs" / "active").mkdir(parents=True, exist_ok=True)
    port, token = free_port(), secrets.token_hex(16)
    env = {**environment(clone), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = tmp_path / "lab.log"
    process = subprocess.Popen(
        ["make", "lab", f"LAB_ARGS=--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={token}"],
        cwd=clone, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        top = _lab_listing(f"http://127.0.0.1:{port}/api/contents?token={token}", process, log)
        inside = _lab_listing(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", process, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make, uv and JupyterLab: the group this test started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert {"notebooks", "runs", "avlib", "Makefile"} <= set(top), top
    assert "03_negative_diversity.ipynb" in inside
    if os.getuid() == 0:  # control: the same server without --allow-root refuses to start
        refused = subprocess.run([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={free_port()}"],
                                 cwd=clone, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "--allow-root" in refused.stdout + refused.stderr
    assert git_status(clone) == ""
