"""The study through submitit (issue 32, part 5), reduced to one variant x 2 seeds of the tiny
configuration: six executions of notebook 02 at ~21 s of CPU each (two for the thread pool, four for
the submitit study with its requeue and resubmission) make the file ~165 s of CPU; 2 variants would
add six more.

One `--jobs 2` study and one `--executor submitit-local` study of the same runs.  In the submitit
study, seed 0's job is preempted (USR2, submitit's signal) once its run has a checkpoint: it is
requeued within the same command and resumes; seed 1's job is SIGKILLed once its run has a
checkpoint: the command fails naming it, and the same command run again resubmits it, resumes it
and finishes.  Then both reports have the same tables and every run's metrics equal the thread
pool's in every non-timing column.  The debug executor collects a failed notebook like the pool
does; the SLURM submission (no cluster here) is checked down to its sbatch script.
"""

import contextlib
import csv
import fcntl
import io
import json
import os
import pickle
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from avlib.config import ConfigError
from avlib.study.conditions import CONDITIONS
from avlib.study.main import main, run_study
from avlib.study.run import (JobOptions, RunJob, make_executor, plan_runs, prepare_datasets, process_children,
                             submit_array, submit_runs)
from tiny import TINY

pytestmark = pytest.mark.scaleout  # make test-scaleout (CI runs it after make test)

# 36 steps (3 an epoch), a checkpoint every 2: the signals land mid-training with a second or more to spare
OVERRIDES, STEPS = {**{k: v for k, v in TINY.items() if k != "progress"}, "epochs": 12}, 36
VARIANT, SEEDS = "random", (0, 1)
TIMING = {"step_s", "data_s", "monitor_s", "select_s"}  # as tests/test_multinode.py


def study_argv(root: Path, executor: str) -> list[str]:
    argv = ["--condition", "samplers", "--executor", executor, "--jobs", "2", "--runs-root", str(root / "runs"),
            "--reports-dir", str(root / "reports"), "--seeds", *map(str, SEEDS), "--variants", VARIANT,
            "--no-umap", "--no-downstream"]
    for name, value in OVERRIDES.items():
        argv += ["--set", f"{name}={value}"]
    return argv


def job_process(run_dir: Path) -> int | None:
    """The process of the submitit-local job running ``run_dir``: the child of its controller, whose
    PID submitit-local uses as the job id (recorded in the attempt by RunJob)."""
    try:
        attempt = json.loads((run_dir / "study_run.json").read_text())["attempts"][-1]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    if attempt.get("status") != "running" or "job_id" not in attempt:
        return None
    controller = int(attempt["job_id"])
    return next(iter(process_children(controller).get(controller, [])), None)


def metrics_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def lock_is_free(run_dir: Path) -> bool:
    """Whether a new run could take ``run_dir``'s lock (avlib.train.run_folder.RunFolderLock)."""
    with open(run_dir / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def processes_naming(run_dir: Path) -> list[str]:
    """Command lines of live processes that name ``run_dir`` (papermill names its output notebook)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(run_dir) in text:
            found.append(text)
    return found


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def signal_jobs_mid_run(runs_dir: Path, study: threading.Thread, plan: dict, timeout_s: float = 400) -> dict:
    """Send each run's job its signal (``plan``: run name -> signal) as soon as the run has a checkpoint;
    returns, per run, the metrics rows written before the signal and whether summary.json existed."""
    sent, deadline = {}, time.monotonic() + timeout_s
    while len(sent) < len(plan) and study.is_alive() and time.monotonic() < deadline:
        for name, signum in plan.items():
            run_dir = runs_dir / name
            if name in sent or not (run_dir / "checkpoints" / "last.pt").is_file():
                continue
            pid = job_process(run_dir)
            if pid is not None:
                rows = len(metrics_rows(run_dir))
                os.kill(pid, signum)
                sent[name] = {"rows": rows, "finished": (run_dir / "summary.json").exists()}
        time.sleep(0.05)
    return sent


class Study(threading.Thread):
    """One study command (run_study, what main() calls) in a thread of this process: the two first
    commands run side by side, and neither pays the ~12 s of CPU that importing avlib.train costs a new
    process (2 shared cores: their serial parts fill each other's idle core)."""

    def __init__(self, root: Path, executor: str):
        super().__init__(daemon=True)
        self.root, self.executor, self.lines, self.failures, self.error = root, executor, [], None, None

    def run(self):
        try:
            _, self.failures = run_study("samplers", jobs=2, runs_root=self.root / "runs",
                                         reports_dir=self.root / "reports", seeds=SEEDS, variants=(VARIANT,),
                                         overrides=OVERRIDES, umap=False, downstream=False,
                                         executor=self.executor, log=self.lines.append)
        except BaseException as error:  # re-raised by the fixture
            self.error = error


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """The thread pool's study and the submitit study's first command side by side; the dataset is
    made first, for both to read; the second command is main() with the same arguments.  Notebook 03
    is left out of both (~20 s of CPU each): it runs in the submitting process after the runs, whatever
    the executor, and tests/test_study.py runs it."""
    import avlib.study.main as study_main

    lock, write_report = threading.Lock(), study_main.write_report

    def write_report_in_turn(*args, **kwargs):  # matplotlib's pyplot is not thread-safe
        with lock:
            return write_report(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(study_main, "write_report", write_report_in_turn)
        patch.setattr(study_main, "execute_diversity", lambda *args, **kwargs: None)
        yield run_both(tmp_path_factory.mktemp("executors"))


def run_both(root: Path) -> dict:
    threads, jobs = root / "jobs2", root / "submitit"
    prepare_datasets(plan_runs(CONDITIONS["samplers"], root, (0,), [VARIANT], OVERRIDES), log=lambda *_: None)
    pool, first = Study(threads, "local"), Study(jobs, "submitit-local")
    pool.start()
    first.start()
    sent = signal_jobs_mid_run(jobs / "runs" / "samplers", first,
                               {f"{VARIANT}_seed0": signal.SIGUSR2, f"{VARIANT}_seed1": signal.SIGKILL})
    for study in (first, pool):
        study.join(timeout=600)
        assert not study.is_alive() and study.error is None, study.error
    assert pool.failures == [], pool.failures
    killed = jobs / "runs" / "samplers" / f"{VARIANT}_seed1"
    left = {"lock_free": lock_is_free(killed), "processes": processes_naming(killed)}  # before the second command
    again = io.StringIO()
    with contextlib.redirect_stdout(again), contextlib.redirect_stderr(again):
        code = main(study_argv(jobs, "submitit-local"))
    return {"threads": threads, "jobs": jobs, "sent": sent, "first": first, "left": left,
            "again": (code, again.getvalue())}


def test_a_preempted_job_is_requeued_and_resumes_within_the_same_command(studies):
    run_dir = studies["jobs"] / "runs" / "samplers" / f"{VARIANT}_seed0"
    sent = studies["sent"][run_dir.name]
    assert not sent["finished"], "the signal came after the run had finished: nothing was preempted"
    first = studies["first"]
    assert re.search(rf"\[\d/2\] samplers/{VARIANT}_seed0: resumed in", "\n".join(first.lines)), first.lines
    attempts = json.loads((run_dir / "study_run.json").read_text())["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "finished"]
    assert attempts[0]["job_id"] == attempts[1]["job_id"]  # requeued by submitit, not submitted again
    logs = "".join(p.read_text() for p in (run_dir.parent / "submitit").glob(f"{attempts[0]['job_id']}_0_log.*"))
    assert "this job is preempted" in logs and "Calling checkpoint method" in logs
    # RunJob.checkpoint stopped the kernel with SIGTERM: the loop wrote a checkpoint at the step it was at
    # (past the rows written before the signal) and the requeued attempt resumed from exactly that step
    written = re.search(r"SIGTERM: checkpoint written at step (\d+)", logs)
    assert written, logs[-3000:]
    executed = (run_dir / "02_pretrain.ipynb").read_text()  # the requeued attempt's notebook
    resumed_at = int(re.search(rf"resuming \S+ at step (\d+) of {STEPS}", executed)[1])
    assert resumed_at == int(written[1]) > sent["rows"], (resumed_at, written[1], sent)


def test_a_killed_job_fails_the_command_and_the_same_command_resubmits_and_finishes_it(studies):
    run_dir = studies["jobs"] / "runs" / "samplers" / f"{VARIANT}_seed1"
    assert not studies["sent"][run_dir.name]["finished"], "the kill came after the run had finished"
    first = studies["first"]
    (failure,) = first.failures
    assert failure.startswith(f"samplers/{VARIANT}_seed1: job ") and "ended without a result" in failure
    assert "run the study command again to resume the run" in failure and f"{run_dir.parent}/submitit/" in failure
    assert re.search(rf"\[\d/2\] samplers/{VARIANT}_seed1: FAILED", "\n".join(first.lines)), first.lines
    # the job's notebook died with it (bind_to_job), as on a cluster: nothing trains on, the folder is free
    assert studies["left"] == {"lock_free": True, "processes": []}, studies["left"]
    code, again = studies["again"]
    assert code == 0, again
    assert f"[1/2] samplers/{VARIANT}_seed0: skipped (finished)" in again
    assert re.search(rf"\[2/2\] samplers/{VARIANT}_seed1: resumed in [\d.]+ min", again), again
    attempts = json.loads((run_dir / "study_run.json").read_text())["attempts"]
    assert [a["status"] for a in attempts] == ["running", "finished"]  # the killed attempt could not say more
    assert attempts[0]["job_id"] != attempts[1]["job_id"]
    assert (run_dir / "summary.json").is_file()


def test_every_run_equals_the_thread_pools_in_every_non_timing_column(studies):
    for seed in SEEDS:
        name = f"{VARIANT}_seed{seed}"
        ours, theirs = (metrics_rows(studies[k] / "runs" / "samplers" / name) for k in ("jobs", "threads"))
        assert len(ours) == len(theirs) == STEPS
        assert untimed(ours) == untimed(theirs), name
        summaries = [json.loads((studies[k] / "runs" / "samplers" / name / "summary.json").read_text())
                     for k in ("jobs", "threads")]
        assert summaries[0]["probe"] == summaries[1]["probe"] and summaries[0]["final_loss"] == summaries[1]["final_loss"]
    seed0, seed1 = (metrics_rows(studies["jobs"] / "runs" / "samplers" / f"{VARIANT}_seed{k}") for k in SEEDS)
    assert untimed(seed0) != untimed(seed1)  # the comparison sees a real difference (another seed)


def report_tables(text: str) -> list[str]:
    """Every table row of REPORT.md but the time table's timings (its method and seed cells are kept)."""
    rows, section = [], ""
    for line in text.splitlines():
        if line.startswith("#"):
            section = line
        elif line.startswith("|"):
            rows.append("|".join(line.split("|")[:3]) if section == "### Time" else line)
    return rows


def test_submitit_local_writes_the_same_report_tables_as_jobs_2(studies):
    ours, theirs = ((studies[k] / "reports" / "REPORT.md").read_text() for k in ("jobs", "threads"))
    tables = report_tables(ours)
    assert tables == report_tables(theirs)
    assert f"| `{VARIANT}` | 2 |" in "\n".join(tables) and len(tables) > 20
    assert "- Parallel jobs: 2;" in ours  # submitit-local ran --jobs 2 at a time


def test_report_tables_differ_when_one_number_does():
    text = "### Probe\n| m | seeds | acc |\n|---|---:|---:|\n| `random` | 2 | 58.3 ± 11.8 |\n" \
           "### Time\n| m | seeds | wall |\n| `random` | 2 | 0.4 |\n"
    assert report_tables(text) == report_tables(text.replace("0.4", "0.9"))  # timings are left out
    assert report_tables(text) != report_tables(text.replace("58.3", "58.4"))


def test_the_debug_executor_collects_a_failed_notebook_and_skips_finished_runs(studies, tmp_path):
    """A notebook that fails (here: its output path is a folder) is a failure naming the run and its log,
    as in the thread pool; a finished run is skipped without a job."""
    finished = plan_runs(CONDITIONS["samplers"], studies["threads"] / "runs", (0,), [VARIANT], OVERRIDES,
                         downstream=False)
    (failing,) = plan_runs(CONDITIONS["samplers"], tmp_path / "runs", (5,), [VARIANT], OVERRIDES, downstream=False)
    (failing.run_dir / "02_pretrain.ipynb").mkdir(parents=True)
    lines = []
    failures = submit_runs(finished + [failing], tmp_path / "reports", "debug", log=lines.append)
    assert len(failures) == 1 and failures[0].startswith(f"02_pretrain.ipynb failed for {failing.run_dir}")
    assert f"log: {failing.run_dir / '02_pretrain.log'}" in failures[0] and "IsADirectoryError" in failures[0]
    assert f"[1/2] samplers/{VARIANT}_seed0: skipped (finished)" in lines
    assert f"[2/2] samplers/{VARIANT}_seed5: FAILED" in "\n".join(lines)
    attempt = json.loads((failing.run_dir / "study_run.json").read_text())["attempts"][-1]
    assert attempt["status"] == "failed" and attempt["executor"] == "debug" and attempt["job_id"].startswith("DEBUG_")


def test_a_run_job_pickles_by_reference_and_checkpoints_to_the_same_call(tmp_path):
    (run,) = plan_runs(CONDITIONS["samplers"], tmp_path, (0,), [VARIANT], OVERRIDES)
    job = RunJob(run, tmp_path / "reports", {"commit": "abc"})
    assert b"avlib.study.run" in pickle.dumps(job) and pickle.loads(pickle.dumps(job)).run == run
    requeued = job.checkpoint()  # no notebook runs under this process: nothing to stop
    assert requeued.function is job and requeued.args == () and requeued.kwargs == {}


def test_slurm_submission_writes_the_requested_sbatch_array_and_the_pickled_jobs(tmp_path, monkeypatch):
    """No cluster here: a fake srun passes submitit's check, a fake sbatch keeps the script it is given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {tmp_path / 'script.sh'}\necho 'Submitted batch job 4242'\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs = plan_runs(CONDITIONS["samplers"], tmp_path / "runs", (0, 1), [VARIANT], OVERRIDES)
    folder = tmp_path / "runs" / "samplers" / "submitit"
    options = JobOptions(partition="gpu", gpus_per_node=1, time_min=90, cpus_per_task=4, mem_gb=32,
                         array_parallelism=1)
    jobs = submit_array(make_executor("slurm", folder, options, "avlib-samplers"), runs, tmp_path / "reports", {})
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1"] and list(jobs.values()) == runs
    script = (tmp_path / "script.sh").read_text()
    for flag in ("--partition=gpu", "--gpus-per-node=1", "--time=90", "--cpus-per-task=4", "--mem=32GB",
                 "--array=0-1%1", "--signal=USR2@90", "--job-name=avlib-samplers", f"--output={folder}/%A_%a_0_log.out"):
        assert f"#SBATCH {flag}\n" in script, flag
    for job, run in jobs.items():
        assert job.submission().function.run == run  # what the node will unpickle and call
    monkeypatch.setenv("PATH", os.defpath)
    with pytest.raises(ConfigError, match="no `srun` on PATH"):
        make_executor("slurm", folder, options, "x")


@pytest.mark.parametrize("argv, message", [
    (["--executor", "local", "--slurm-partition", "gpu"], "--slurm-partition would be ignored by --executor local"),
    (["--executor", "submitit-local", "--slurm-mem-gb", "8"], "--slurm-mem-gb would be ignored by --executor submitit-local"),
    (["--executor", "slurm", "--slurm-time-min", "0"], r"--slurm-time-min=0: expected an integer >= 1"),
    (["--executor", "slurm", "--slurm-mem-gb", "-2"], r"--slurm-mem-gb=-2.0: expected a number of GB > 0"),
    (["--executor", "pbs"], "invalid choice: 'pbs'"),
])
def test_bad_executor_options_are_refused_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
