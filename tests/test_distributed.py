"""Data-parallel training under torchrun (gloo, CPU): 2 processes train exactly like 1 with the same global batch.

The runs use SGD: AdamW divides each update by the root of its running squared gradient, which
amplifies float rounding (reduction order differs between 1 and 2 processes) step after step --
measured on the tiny config: losses 1e-7 apart at step 0 were 1e-2 apart by step 6 with AdamW,
and stay within 1e-6 with SGD.  Equivalence is a property of the algorithm, so it is tested where
rounding does not hide it.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avlib.config import ConfigError
from avlib.train import pretrain
from avlib.train.launch import parse_args, torchrun_command
from tiny import tiny_config

REPO = Path(__file__).resolve().parents[1]
DDP = dict(clips_per_class=12, batch_size=8, optimizer="sgd", lr=0.05, dictionary_size=16, active_pool_factor=2,
           epochs=3, probe=False, snapshot_every=0, checkpoint_every=3)


def losses(run_dir) -> list[float]:
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def sampler_state(run_dir) -> dict:
    """The method's dictionaries, and the intra-modal queues of objective joint/intra (as ``intra.*``)."""
    state = torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=False)
    return {**state["sampler"], **{f"intra.{name}": value for name, value in (state.get("intra") or {}).items()}}


# Tolerance of "the same run" as a share of each quantity's own scale (its largest magnitude).
# 1 and 2 processes sum the same terms in another order (convolutions split by batch and by the CPU's
# kernel path, all-reduced gradients): one float32 reduction of n terms moves by about sqrt(n) * u of
# its scale (u = 2**-24; n ~ 1e5 for the batch-norm and gradient sums of a global video batch:
# ~2e-5), and SGD carries and amplifies that over the run's steps.  Measured after 12 SGD steps on an
# AMD EPYC: 2.6e-4 of scale (keys of the shuffled-BN queue) on the AVX512 kernels, 1.6e-3 (the active
# pool's features) with ATEN_CPU_CAPABILITY=default.  The tolerance keeps a 3x margin over the worst
# of these, and stays 200x below a real divergence, which is of the order of the scale itself: a key
# gathered from the wrong rank or slot differs by ~|key| (check_tolerance_catches_a_wrong_gather).
SAME_RUN_RTOL = 5e-3


def run_differences(one, two, rtol: float = SAME_RUN_RTOL) -> list[str]:
    """What differs between two runs beyond ``rtol`` x scale: losses step by step, and dictionaries
    (integers -- clip indices, pointers, steps -- exactly; floats -- keys, features -- to the tolerance)."""
    found = []
    first_losses, second_losses = losses(one), losses(two)
    scale = max(abs(value) for value in first_losses)
    if len(first_losses) != len(second_losses):
        found.append(f"steps: {len(first_losses)} vs {len(second_losses)}")
    elif first_losses != pytest.approx(second_losses, rel=0, abs=rtol * scale):
        found.append(f"losses differ by more than {rtol} x {scale:.3g}")
    first, second = sampler_state(one), sampler_state(two)
    if first.keys() != second.keys():
        return found + [f"state entries: {sorted(first)} vs {sorted(second)}"]
    for name, value in first.items():
        other = second[name]
        if not value.dtype.is_floating_point:
            if not torch.equal(other, value):
                found.append(f"{name}: integers differ")
            continue
        finite = torch.isfinite(value)
        if not torch.equal(finite, torch.isfinite(other)):
            found.append(f"{name}: NaN/inf in other places")
            continue
        if finite.any():
            scale = value[finite].abs().max().item()
            gap = (value[finite] - other[finite]).abs().max().item()
            if gap > rtol * scale:
                found.append(f"{name}: differs by {gap:.3g} > {rtol} x scale {scale:.3g}")
    return found


def assert_same_run(one, two, rtol: float = SAME_RUN_RTOL):
    """Same losses step by step and the same dictionaries (same clips in the same slots, same keys)."""
    differences = run_differences(one, two, rtol)
    assert not differences, "\n".join(differences)


@pytest.mark.scaleout
def test_two_ranks_match_one_process_on_batchnorm_hash_and_shuffled_keys():
    """GlobalBatchNorm (values and gradients), the rank hash check, MoCo's shuffled keys, the refusal of
    mixed checkpoints on resume (tests/ddp_checks.py)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "ddp_checks.py")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for check in ("check_global_batch_norm", "check_rank_hash", "check_shuffled_keys",
                  "check_mixed_checkpoints_are_refused"):
        assert result.stdout.count(f"{check} ok") == 2, result.stdout


@pytest.mark.scaleout
@pytest.mark.parametrize("sampler, overrides", [
    ("random", {}),
    ("active", {}),  # the batch source (default): a share of the global batch enters
    ("active", {"active_candidates": "fresh"}),  # extra clips drawn per step, each rank encodes its share, gathered
    ("active", {"active_candidates": "bank", "active_dictionary_aware": True}),  # every clip's latest key
    ("active", {"active_candidates": "backlog"}),  # the delaying pool
    ("active", {"active_candidates": "official", "active_selector": "lloyd_nearest"}),  # chosen keys stay
    ("random", {"shuffle_bn": True, "key_bn_groups": 2}),
    # weights standardised over, and normalised by, the global batch; bank draws for the global batch
    ("robust_xid", {"robust_warmup_epochs": 0, "bank_negatives": 16}),
    # soft-positive partners drawn for the global batch
    ("soft_positive", {"label_warmup_epochs": 0}),
    # cross + intra-modal terms: second windows' keys gathered for in-batch negatives and both intra queues
    ("random", {"objective": "joint"}),
], ids=["random", "active", "active-fresh", "active-bank-aware", "active-backlog", "active-official", "random-shuffle_bn",
        "robust_xid", "soft_positive", "random-joint"])
def test_two_processes_give_the_losses_and_dictionary_of_one(tmp_path, sampler, overrides):
    one = tiny_config(tmp_path / "one", sampler=sampler, **DDP, **overrides)
    pretrain(one)
    # nproc_per_node=2 from a plain process: what the notebook does -- it launches torchrun
    summary = pretrain(one.replace(run_dir=str(tmp_path / "two"), nproc_per_node=2))
    assert summary["world_size"] == 2 and summary["steps"] == len(losses(tmp_path / "one")) >= 6
    # check_ranks (default True) hashed the dictionaries of both ranks after every step
    assert_same_run(tmp_path / "one", tmp_path / "two")
    if sampler == "active":  # the selection really chose: keys entered, fewer than were considered
        state = sampler_state(tmp_path / "two")
        assert 0 < int(state["video_tally.entered"]) < int(state["video_tally.considered"])
    if sampler == "random":
        check_tolerance_catches_a_wrong_gather(tmp_path / "one", tmp_path)
    if overrides.get("objective") == "joint":  # the intra queues were compared, full, and a divergence in them shows
        state = sampler_state(tmp_path / "two")
        assert int(state["intra.video_queue.count"]) == summary["steps"] * DDP["batch_size"]
        check_tolerance_catches_a_wrong_gather(tmp_path / "one", tmp_path, entry="intra.audio_queue.keys")


def check_tolerance_catches_a_wrong_gather(run_dir: Path, tmp_path: Path, entry: str = "video_queue.keys") -> None:
    """The tolerance is not so loose that a real divergence passes: the same run with two dictionary
    slots' keys swapped (a gather in the wrong order), or with keys off by the measured rounding x 100,
    is reported; an exact copy is not.  ``entry``: the keys changed (``intra.*`` for the intra queues)."""
    for name, change in [("swapped", lambda keys: keys[[1, 0, *range(2, len(keys))]]),
                         ("drifted", lambda keys: keys + 100 * 2.6e-4 * keys.abs().max())]:
        copy = tmp_path / f"copy_{entry}_{name}"
        (copy / "checkpoints").mkdir(parents=True)
        (copy / "metrics.csv").write_bytes((run_dir / "metrics.csv").read_bytes())
        state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
        assert run_differences(run_dir, run_dir) == []
        part, name_in_part = ("intra", entry[len("intra."):]) if entry.startswith("intra.") else ("sampler", entry)
        state[part][name_in_part] = change(state[part][name_in_part])
        torch.save(state, copy / "checkpoints" / "last.pt")
        assert any(line.startswith(entry) for line in run_differences(run_dir, copy)), name


def _start(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(torchrun_command(config_path, 2), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_for_rows(run_dir: Path, rows: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.csv"
    while time.monotonic() < deadline:
        if metrics.exists() and len(losses(run_dir)) >= rows:
            return
        assert process.poll() is None, f"the run ended before step {rows}:\n{process.stdout.read()[-3000:]}"
        time.sleep(0.02)
    raise AssertionError(f"no {rows} steps within {timeout} s")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: each process's parent is field 4 of its stat line)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _checkpoint_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["step"]


@pytest.mark.scaleout
def test_sigterm_checkpoints_and_sigkill_resumes_to_the_same_run(tmp_path):
    """SIGTERM to torchrun: every rank finishes its step, rank 0 checkpoints, clean exit.  Then SIGKILL
    of torchrun and its workers mid-epoch; the same command resumes both times and the run ends as
    an uninterrupted one does."""
    cfg = tiny_config(tmp_path / "two", sampler="active", **{**DDP, "epochs": 12})
    pretrain(cfg.replace(run_dir=str(tmp_path / "uninterrupted"), nproc_per_node=2))
    total = len(losses(tmp_path / "uninterrupted"))
    config_path = tmp_path / "two.json"
    cfg.save(config_path)
    run_dir = Path(cfg.run_dir)

    process = _start(config_path)
    _wait_for_rows(run_dir, 2, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert "SIGTERM: checkpoint written at step" in output, output[-3000:]
    stopped_at = _checkpoint_step(run_dir)
    assert 2 <= stopped_at < total and len(losses(run_dir)) == stopped_at  # nothing after the checkpoint

    process = _start(config_path)  # resumes
    _wait_for_rows(run_dir, stopped_at + 2, process)
    for pid in [process.pid, *_descendants(process.pid)]:  # torchrun starts its workers in their own sessions
        os.kill(pid, signal.SIGKILL)
    process.communicate(timeout=60)
    killed_at = len(losses(run_dir))
    assert killed_at < total, "the run finished before it could be killed"
    assert _checkpoint_step(run_dir) <= killed_at

    process = _start(config_path)  # resumes from the last periodic checkpoint
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output[-3000:]
    assert len(losses(run_dir)) == total
    # the same 2-process layout on the same machine: resuming replays the same arithmetic
    assert_same_run(tmp_path / "uninterrupted", run_dir, rtol=1e-6)


def test_command_line_reads_typed_parameters_and_rejects_bad_ones(tmp_path):
    cfg = parse_args(["--sampler", "random", "--epochs", "3", "--lr", "0.01", "--shuffle_bn", "true",
                      "--max_steps", "none", "--run_dir", str(tmp_path)])
    assert (cfg.sampler, cfg.epochs, cfg.lr, cfg.shuffle_bn, cfg.max_steps) == ("random", 3, 0.01, True, None)
    saved = tmp_path / "config.json"
    cfg.save(saved)
    assert parse_args(["--config", str(saved), "--epochs", "5"]).replace(epochs=3) == cfg
    with pytest.raises(ConfigError, match="parameter epochs='three': expected int"):
        parse_args(["--epochs", "three"])
    with pytest.raises(ConfigError, match="precision='fp16' is not valid"):
        parse_args(["--precision", "fp16"])
    with pytest.raises(ConfigError, match="batch_size=6 .* must be a multiple of nproc_per_node=4"):
        parse_args(["--batch_size", "6", "--nproc_per_node", "4"])


def test_sigterm_to_a_single_process_group_checkpoints_with_loader_workers(tmp_path):
    """One process with a data-loading worker, SIGTERM sent to the whole process group (as schedulers
    do): the step finishes, a checkpoint is written, exit status 143; the same command resumes."""
    cfg = tiny_config(tmp_path / "run", **{**DDP, "epochs": 12, "num_workers": 1})
    config_path = tmp_path / "run.json"
    cfg.save(config_path)
    command = [sys.executable, "-m", "avlib.train", "--config", str(config_path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    _wait_for_rows(Path(cfg.run_dir), 2, process)
    os.killpg(process.pid, signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "SIGTERM: checkpoint written at step" in output
    stopped_at = _checkpoint_step(Path(cfg.run_dir))
    assert len(losses(cfg.run_dir)) == stopped_at < 24  # 12 epochs of 2 steps
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert len(losses(cfg.run_dir)) == 24
