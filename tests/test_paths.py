"""Where the notebooks' relative paths point, and which run folders their defaults pick.

JupyterLab starts a kernel in the notebook's folder (``notebooks/``), papermill and ``make`` in the folder
they run from: every notebook first makes the checkout's root its working directory
(:func:`avlib.config.work_from_repository_root`), so ``runs/active`` means the same in both.
"""

import json
import os
from pathlib import Path

import pytest
from papermill.cli import _resolve_type

from avlib.analysis.runs import find_run_dirs, newest_finished_run
from avlib.config import ConfigError, DiversityConfig, repository_root, work_from_repository_root

ROOT = Path(__file__).resolve().parents[1]


def _checkout(folder: Path) -> Path:
    (folder / "avlib").mkdir(parents=True)
    (folder / "avlib" / "__init__.py").write_text("")
    (folder / "pyproject.toml").write_text("[project]\nname = 'avlib'\n")
    (folder / "notebooks").mkdir()
    return folder


def _run(folder: Path, finished: bool = True, mtime: float | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if finished:
        (folder / "summary.json").write_text("{}")
        if mtime is not None:
            os.utime(folder / "summary.json", (mtime, mtime))
    return folder


def test_the_repository_root_is_found_from_the_notebooks_folder_and_nowhere_outside(tmp_path):
    assert repository_root(ROOT / "notebooks") == ROOT
    checkout = _checkout(tmp_path / "clone")
    assert repository_root(checkout / "notebooks") == checkout.resolve()
    assert repository_root(checkout) == checkout.resolve()
    other = tmp_path / "project"  # a pyproject.toml without the avlib package is another project's
    (other / "sub").mkdir(parents=True)
    (other / "pyproject.toml").write_text("")
    assert repository_root(other / "sub") is None
    assert repository_root(tmp_path) is None


def test_a_kernel_started_in_notebooks_resolves_relative_paths_from_the_root(tmp_path, monkeypatch, capsys):
    checkout = _checkout(tmp_path / "clone")
    _run(checkout / "runs" / "active")
    monkeypatch.chdir(checkout / "notebooks")
    assert not Path("runs/active/config.json").exists()  # the bug: relative to notebooks/
    assert work_from_repository_root() == checkout.resolve()
    assert Path("runs/active/config.json").is_file() and Path.cwd() == checkout.resolve()
    assert "repository root" in capsys.readouterr().out
    assert work_from_repository_root() == checkout.resolve() and capsys.readouterr().out == ""  # once is enough
    outside = tmp_path / "elsewhere"  # a copied notebook, a test's folder: the working directory stays
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert work_from_repository_root() == outside and Path.cwd() == outside


def test_every_notebook_moves_to_the_root_before_reading_its_parameters():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = [("".join(c["source"])) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        check = cells[1]  # the cell after the parameters
        assert "work_from_repository_root()" in check, path.name
        assert check.index("work_from_repository_root()") < check.index("from_namespace"), path.name


def test_run_dirs_patterns_pick_the_run_folders_directly_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'runs/\*' matches no run folder.*make pretrain"):
        find_run_dirs(DiversityConfig().run_dirs)
    _run(tmp_path / "runs" / "random")
    _run(tmp_path / "runs" / "active", finished=False)  # a run still training is compared too
    (tmp_path / "runs" / "negative_diversity").mkdir()  # notebook 03's own output folder: no run
    _run(tmp_path / "runs" / "study" / "samplers" / "random_seed0")  # the study's runs: one level deeper
    assert find_run_dirs(DiversityConfig().run_dirs) == [Path("runs/active"), Path("runs/random")]
    assert find_run_dirs(("runs/random", "runs/*")) == [Path("runs/random"), Path("runs/active")]  # no repeats
    assert find_run_dirs(("runs/study/samplers/*",)) == [Path("runs/study/samplers/random_seed0")]
    assert find_run_dirs(("runs/missing",)) == [Path("runs/missing")]  # a folder: read_config names it later


def test_notebook_04_defaults_to_the_run_that_finished_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"matches no finished run folder.*make pretrain"):
        newest_finished_run("runs/*")
    _run(tmp_path / "runs" / "random", mtime=1_000)
    _run(tmp_path / "runs" / "active", mtime=2_000)
    _run(tmp_path / "runs" / "zeta", mtime=1_500)
    _run(tmp_path / "runs" / "training", finished=False)  # newest folder, but no summary yet
    assert newest_finished_run("runs/*") == Path("runs/active")
    os.utime(tmp_path / "runs" / "random" / "summary.json", (3_000, 3_000))
    assert newest_finished_run("runs/*") == Path("runs/random")
    assert newest_finished_run("runs/training") == Path("runs/training")  # a named folder is taken as named


def test_a_list_given_with_papermill_p_is_read_as_a_list():
    """``-p run_dirs "['runs/a', 'runs/b']"`` reaches the notebook as text (papermill's own parser); it
    was taken as one folder named after the whole list."""
    given = _resolve_type("['runs/a', 'runs/b']")
    assert given == "['runs/a', 'runs/b']"
    assert DiversityConfig(run_dirs=given).run_dirs == ("runs/a", "runs/b")
    assert DiversityConfig(run_dirs=["runs/a", "runs/b"]).run_dirs == ("runs/a", "runs/b")  # -y "run_dirs: [...]"
    assert DiversityConfig(run_dirs="('runs/a',)").run_dirs == ("runs/a",)
    assert DiversityConfig(run_dirs="runs/a").run_dirs == ("runs/a",)  # one folder stays one folder
    with pytest.raises(ConfigError, match=r"-y \"run_dirs: \[runs/a, runs/b\]\""):
        DiversityConfig(run_dirs="[runs/a, runs/b]")  # YAML's unquoted list is no Python literal: the error says -y
    with pytest.raises(ConfigError, match="expected paths"):
        DiversityConfig(run_dirs="['runs/a', 3]")
