"""Every notebook runs (nbval, with small parameters injected), and the README's papermill path works.

nbval executes a notebook as it is stored; to give it small parameters, the test writes a copy with
papermill's parameter injection (the same mechanism as ``papermill -p``) and runs nbval on the copy.
"""

import json
import re
import subprocess
import time
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from avlib.config import DataConfig, DiversityConfig, DownstreamConfig, PretrainConfig
from tiny import TINY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DATA_PARAMS = {k: TINY[k] for k in ("num_classes", "clips_per_class", "clip_seconds", "fps", "frame_size", "sample_rate")}


def parameterized_copy(name: str, parameters: dict, folder: Path) -> Path:
    """papermill's parameter injection without execution (``prepare_only``): nbval runs the copy."""
    path = folder / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(path), parameters=parameters, prepare_only=True)
    return path


def run_nbval(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def pretrained_run_and_terminal(tmp_path_factory):
    """The README's main command (``make pretrain``: papermill on 02_pretrain through ``avlib.notebook``)
    with tiny parameters; the run folder and what the terminal showed."""
    folder = tmp_path_factory.mktemp("papermill")
    run_dir = folder / "run"
    parameters = {**TINY, "run_dir": str(run_dir), "sampler": "random", "progress": True}
    result = subprocess.run([sys.executable, "-m", "avlib.notebook", str(NOTEBOOKS / "02_pretrain.ipynb"),
                             str(folder / "02_pretrain.out.ipynb"), "-y", json.dumps(parameters), "--cwd", str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir, result.stdout


@pytest.fixture(scope="module")
def pretrained_run(pretrained_run_and_terminal):
    return pretrained_run_and_terminal[0]


def test_papermill_pretrain_writes_the_run_folder(pretrained_run):
    summary = json.loads((pretrained_run / "summary.json").read_text())
    assert summary["sampler"] == "random" and summary["steps"] > 0
    assert (pretrained_run / "training_curves.png").stat().st_size > 0
    assert set(summary["probe"]) == {"video", "audio"}


def test_make_pretrain_shows_progress_the_probe_table_and_the_run_folder(pretrained_run_and_terminal):
    """The kernel's stdout reaches the terminal (issue 34): progress lines (the contract of
    tests/test_console.py), then the probe table, then the run folder."""
    run_dir, terminal = pretrained_run_and_terminal
    lines = terminal.splitlines()
    progress = [i for i, line in enumerate(lines) if re.search(r"step\s+\d+/\d+", line)]
    assert len(progress) == 6 and all("loss" in lines[i] and "ETA" in lines[i] for i in progress), terminal
    table = next(i for i, line in enumerate(lines) if "| trained | random init |" in line)
    assert progress[-1] < table and lines[-1] == f"run folder: {run_dir.resolve()}"


def test_nbval_01_data(tmp_path):
    run_nbval(parameterized_copy("01_data.ipynb", {**DATA_PARAMS, "show_clips": 2}, tmp_path))


def test_nbval_02_pretrain(tmp_path):
    run_nbval(parameterized_copy("02_pretrain.ipynb", {**TINY, "run_dir": str(tmp_path / "run"), "max_steps": 3}, tmp_path))


def test_nbval_04_downstream(pretrained_run, tmp_path):
    run_nbval(parameterized_copy("04_downstream.ipynb", {"run_dir": str(pretrained_run), "eval_windows": 1,
                                                         "reports_dir": str(tmp_path / "reports")}, tmp_path))
    assert (pretrained_run / "downstream" / "run" / "confusion_linear_video.png").exists()
    assert (tmp_path / "reports" / f"downstream_run_{pretrained_run.name}.md").exists()


def test_papermill_04_on_a_ucf101_standin_tree(pretrained_run, tmp_path):
    """A user's UCF101 copy: the notebook with the dataset root and a checkpoint as parameters."""
    from avlib.data.adapters.standin import make_standin

    root, metadata = make_standin("ucf101", tmp_path / "ucf", seconds=2.0, fps=TINY["fps"],
                                  sample_rate=TINY["sample_rate"])
    out = tmp_path / "out"
    papermill.execute_notebook(
        str(NOTEBOOKS / "04_downstream.ipynb"), str(tmp_path / "04.out.ipynb"), cwd=str(ROOT), progress_bar=False,
        parameters={"dataset": "ucf101", "dataset_root": str(root), "metadata": str(metadata), "run_dir": str(out),
                    "checkpoint": str(pretrained_run / "checkpoints" / "last.pt"), "epochs": 1, "batch_size": 4,
                    "clips_per_video": 1, "eval_windows": 1, "baseline": False, "progress": False,
                    "reports_dir": str(tmp_path / "reports")},
    )
    table = json.loads((out / "downstream" / "ucf101" / "results.json").read_text())["table"]
    assert {(r["protocol"], r["splits"]) for r in table} == {("finetune", 3), ("linear", 3), ("knn", 3)}
    assert (out / "downstream" / "ucf101" / "confusion_finetune_video.png").exists()


def test_nbval_03_negative_diversity(tmp_path):
    """Two tiny runs with snapshots (random and active, same seed), then the whole analysis notebook."""
    from avlib.train import pretrain
    from tiny import tiny_config

    run_dirs = [str(tmp_path / sampler) for sampler in ("random", "active")]
    for run_dir, sampler in zip(run_dirs, ("random", "active")):
        pretrain(tiny_config(run_dir, sampler=sampler, epochs=3, snapshot_every=3, probe=False))
    output_dir = tmp_path / "reports"
    run_nbval(parameterized_copy("03_negative_diversity.ipynb",
                                 {"run_dirs": run_dirs, "output_dir": str(output_dir), "umap_neighbors": 5}, tmp_path))
    written = {p.name for p in output_dir.iterdir()}
    assert {"negative_diversity.csv", "negative_diversity.md", "negative_diversity_curves_video.png",
            "negative_diversity_umap_video.png"} <= written
    assert "| active | video | audio queries |" in (output_dir / "negative_diversity.md").read_text()


@pytest.mark.parametrize("name, config", [
    ("01_data.ipynb", DataConfig), ("02_pretrain.ipynb", PretrainConfig), ("04_downstream.ipynb", DownstreamConfig),
    ("03_negative_diversity.ipynb", DiversityConfig),
])
def test_notebook_is_clean_and_its_parameters_cell_mirrors_the_config(name, config):
    import ast
    import dataclasses

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code_cells), f"{name} is stored with outputs"
    first_code = code_cells[0]
    assert "parameters" in first_code.metadata.get("tags", []), f"{name}: first code cell is not tagged parameters"
    assigned = {}
    for statement in ast.parse(first_code.source).body:
        assert isinstance(statement, ast.Assign), f"{name}: the parameters cell holds only assignments"
        assigned[statement.targets[0].id] = ast.literal_eval(statement.value)  # literals only
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    assert assigned == defaults, f"{name}'s parameters cell differs from {config.__name__}'s defaults"
    # papermill itself must read every parameter (what `papermill --help-notebook` lists)
    assert set(papermill.inspect_notebook(str(NOTEBOOKS / name))) == set(defaults)


@pytest.mark.parametrize("name, typo, closest", [
    ("01_data.ipynb", "clips_per_clas", "clips_per_class"), ("02_pretrain.ipynb", "sampler_typo", "sampler"),
    ("03_negative_diversity.ipynb", "umap_seeds", "umap_seed"), ("04_downstream.ipynb", "protocl", "protocol"),
])
def test_notebook_refuses_an_unknown_parameter_before_any_work(tmp_path, name, typo, closest):
    """``papermill ... -p sampler_typo x`` fails in the first cell after the parameters (papermill itself
    only warns), naming the unknown name, the closest valid one and where the valid ones are listed."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / name), str(tmp_path / name), "-p", typo, "x"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode != 0
    assert f"unknown parameter '{typo}' (did you mean '{closest}'?) given to this notebook" in result.stderr + result.stdout
    assert "avlib/config.py" in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists(), "work started before the parameters were checked"
    assert elapsed < 30, elapsed  # the bound is 10 s on a free machine; the suite shares its cores
