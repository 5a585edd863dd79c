"""Resuming the study across sessions (issue 31): a run is kept under reports/study/runs/ as soon as it
finishes, and a new session (whose runs/ is empty) restores a planned run from a kept copy of a finished run
with the same parameters instead of training it; ``--plan`` says so without doing it.  No training here:
the notebooks are replaced by a stand-in that leaves what a finished 02_pretrain leaves (the end-to-end
restore is in tests/test_study.py)."""

import json
from pathlib import Path

import pytest

from avlib.config import PretrainConfig
from avlib.study import CONDITIONS
from avlib.study import run as study_run
from avlib.study.kept import RESTORED, keep_run, kept_dir
from avlib.study.main import main
from avlib.study.plan import plan_states
from avlib.study.run import execute_run, link_twins, plan_runs, restore_kept


def finish(run_dir: Path, parameters: dict, accuracy: float = 0.5) -> None:
    """What a finished 02_pretrain leaves that the study reads: config.json and summary.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    PretrainConfig.from_dict(parameters).save(run_dir / "config.json")
    probe = {m: {"linear": accuracy, "knn": accuracy} for m in ("video", "audio")}
    (run_dir / "summary.json").write_text(json.dumps({
        "probe": probe, "probe_random_init": probe, "wall_s": 60.0, "train_wall_s": 60.0, "mean_step_s": 0.5,
        "mean_select_s": 0.001, "steps": 100, "num_clips": 600, "num_threads": 1}))


@pytest.fixture
def stand_in_notebooks(monkeypatch):
    """02_pretrain finishes its run (or, for the run named in ``killed``, is interrupted as by Ctrl-C)."""
    killed = set()

    def execute_notebook(name, output, parameters, log, in_job=False):
        if Path(parameters["run_dir"]).name in killed:
            raise KeyboardInterrupt
        finish(Path(parameters["run_dir"]), parameters)

    monkeypatch.setattr(study_run, "execute_notebook", execute_notebook)
    return killed


def test_each_run_is_kept_when_it_finishes_so_a_killed_session_loses_only_the_run_in_flight(tmp_path,
                                                                                            stand_in_notebooks):
    runs_root, study_dir = tmp_path / "runs", tmp_path / "reports" / "study"
    first, second = plan_runs(CONDITIONS["sources"], runs_root, (0, 1), variant_names=["random_src8"],
                              downstream=False)
    stand_in_notebooks.add(second.name)
    execute_run(first, study_dir, {"commit": "abc"})
    kept = study_dir / "runs" / "sources"
    assert sorted(p.name for p in (kept / first.name).iterdir()) == ["config.json", "study_run.json", "summary.json"]
    assert json.loads((kept / first.name / "study_run.json").read_text())["attempts"][0]["status"] == "finished"
    with pytest.raises(KeyboardInterrupt):  # the session dies during the second run: no report is written
        execute_run(second, study_dir, {"commit": "abc"})
    assert not (kept / second.name).exists() and not (tmp_path / "reports" / "REPORT.md").exists()
    # the next session: runs/ is gone; the first run comes back from its copy, the second trains again
    import shutil

    shutil.rmtree(runs_root)
    replanned = plan_runs(CONDITIONS["sources"], runs_root, (0, 1), variant_names=["random_src8"], downstream=False)
    assert [s.state for s in plan_states(replanned, runs_root, study_dir / "runs")] == ["restore", "train"]
    lines = []
    assert restore_kept(replanned, runs_root, study_dir / "runs", log=lines.append) == 1
    assert replanned[0].finished and replanned[0].restored and not replanned[1].finished
    assert lines == [f"sources/{first.name}: restored from the kept copy {kept / first.name}: same parameters, "
                     "not trained again"]
    assert (runs_root / "sources" / first.name / "summary.json").read_bytes() == \
        (kept / first.name / "summary.json").read_bytes()
    assert restore_kept(replanned, runs_root, study_dir / "runs", log=lines.append) == 0  # idempotent


def test_a_kept_run_is_restored_by_its_parameters_not_its_name(tmp_path):
    """A kept run of another condition with the same parameters is restored under its own condition and the
    planned run linked to it (as link_twins did when both folders were there); a kept copy of other
    parameters under the planned run's very name is not restored; a folder already there is left alone."""
    runs_root, kept_root = tmp_path / "runs", tmp_path / "reports" / "study" / "runs"
    (base,) = plan_runs(CONDITIONS["sources"], kept_root, (0,), variant_names=["random_src1"])
    finish(base.run_dir, base.parameters)  # the base run, kept under sources
    (pilot,) = plan_runs(CONDITIONS["imbalance"], kept_root, (0,), variant_names=["random_imb5"])
    finish(pilot.run_dir, {**pilot.parameters, "epochs": 30})  # a kept copy of another configuration
    planned = plan_runs(CONDITIONS["imbalance"], runs_root, (0,), variant_names=["random_imb1", "random_imb5"])
    states = plan_states(planned, runs_root, kept_root)
    assert [(s.run.name, s.state) for s in states] == [("random_imb1_seed0", "link"), ("random_imb5_seed0", "train")]
    assert restore_kept(planned, runs_root, kept_root, log=lambda *_: None) == 1
    origin = runs_root / "sources" / "random_src1_seed0"
    assert (origin / "summary.json").is_file() and not planned[0].run_dir.exists()
    assert link_twins(planned, runs_root, log=lambda *_: None) == 1
    assert planned[0].run_dir.resolve() == origin.resolve() and planned[0].finished and not planned[1].finished
    # the record says where the folder came from; keeping the run again leaves that mark out of the copy
    record = json.loads((origin / "study_run.json").read_text())
    assert record[RESTORED][0]["from"].endswith("study/runs/sources/random_src1_seed0")
    assert kept_dir(planned[0].run_dir, tmp_path / "reports" / "study") == base.run_dir
    keep_run(planned[0].run_dir, tmp_path / "reports" / "study")
    assert RESTORED not in json.loads((base.run_dir / "study_run.json").read_text())


def test_plan_prints_what_the_command_would_do_and_changes_nothing(tmp_path, capsys):
    reports = tmp_path / "reports"
    kept_root = reports / "study" / "runs"
    for run in plan_runs(CONDITIONS["faulty_clean"], kept_root, (0, 1), variant_names=["xid_faulty0"]):
        finish(run.run_dir, run.parameters)
    argv = ["--condition", "faulty_clean", "--variants", "xid_faulty0", "robust_xid_faulty0", "--seeds", "0", "1",
            "2", "--runs-root", str(tmp_path / "runs"), "--reports-dir", str(reports), "--jobs", "1", "--plan"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "condition faulty_clean: 6 runs under" in out and "(2 already finished)" in out
    assert "0 finished, 2 restore, 0 link, 0 resume, 4 train" in out
    # the estimate: xid's own parameters (1 min a run, from the kept summaries), robust_xid's at one parameter off
    assert "xid_faulty0: 1 to train (seeds 2), 1.0 min a run (2 finished run(s) of its parameters)" in out
    assert "robust_xid_faulty0: 3 to train (seeds 0,1,2), 1.0 min a run (2 finished run(s) differing in sampler)" in out
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit):
        main(["--plan", "--report-only"])


def test_the_diversity_table_reads_the_runs_that_have_diversity_beside_kept_copies_that_predate_it(tmp_path):
    """Seeds 0-4 kept before diversity.json existed, seeds 5-9 with it: the table averages the runs that have
    it and says how many (it raised a KeyError on the first run without)."""
    from avlib.study.report import diversity_table
    from avlib.study.results import ConditionResults, RunResult

    condition = CONDITIONS["sources"]
    variant = condition.variant("random_src8")
    row = {"entropy": 2.0, "classes": 9.0, "biased": 0.1}
    runs = [RunResult(variant, seed, tmp_path, {}, {}, {}, {m: row for m in ("video", "audio")} if seed >= 5 else {},
                      None) for seed in range(7)]
    table = diversity_table(ConditionResults(condition, runs, []))
    assert "| 8 | `random` | 2 | 2.000 ± 0.000 | 9.0 ± 0.0 | 0.100 ± 0.000 |" in table
