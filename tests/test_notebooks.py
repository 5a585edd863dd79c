"""Every notebook runs (nbval, with small parameters injected), and the README's papermill path works.

nbval executes a notebook as it is stored; to give it small parameters, the test writes a copy with
papermill's parameter injection (the same mechanism as ``papermill -p``) and runs nbval on the copy.
"""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from avlib.config import DataConfig, DownstreamConfig, PretrainConfig
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
def pretrained_run(tmp_path_factory):
    """The README's main command, papermill on 02_pretrain, with tiny parameters."""
    folder = tmp_path_factory.mktemp("papermill")
    run_dir = folder / "run"
    papermill.execute_notebook(
        str(NOTEBOOKS / "02_pretrain.ipynb"), str(folder / "02_pretrain.out.ipynb"),
        parameters={**TINY, "run_dir": str(run_dir), "sampler": "random"}, cwd=str(ROOT), progress_bar=False,
    )
    return run_dir


def test_papermill_pretrain_writes_the_run_folder(pretrained_run):
    summary = json.loads((pretrained_run / "summary.json").read_text())
    assert summary["sampler"] == "random" and summary["steps"] > 0
    assert (pretrained_run / "training_curves.png").stat().st_size > 0
    assert set(summary["probe"]) == {"video", "audio"}


def test_nbval_01_data(tmp_path):
    run_nbval(parameterized_copy("01_data.ipynb", {**DATA_PARAMS, "show_clips": 2}, tmp_path))


def test_nbval_02_pretrain(tmp_path):
    run_nbval(parameterized_copy("02_pretrain.ipynb", {**TINY, "run_dir": str(tmp_path / "run"), "max_steps": 3}, tmp_path))


def test_nbval_04_downstream(pretrained_run, tmp_path):
    run_nbval(parameterized_copy("04_downstream.ipynb", {"run_dir": str(pretrained_run), "eval_windows": 1}, tmp_path))
    assert (pretrained_run / "confusion_video.png").exists()


@pytest.mark.parametrize("name, config", [
    ("01_data.ipynb", DataConfig), ("02_pretrain.ipynb", PretrainConfig), ("04_downstream.ipynb", DownstreamConfig),
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
