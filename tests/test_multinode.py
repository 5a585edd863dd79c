"""Multi-node launches as a cluster user makes them, rehearsed on one machine (gloo, CPU).

- Two ``torchrun`` launchers, one per "node" (``--nnodes 2 --nproc-per-node 1``, c10d rendezvous on a
  loopback port, distinct ``--node-rank``), train the configuration of ``tests/test_distributed.py``:
  the result equals the single-process run's within that file's tolerance.
- Under ``torchrun --max-restarts 1`` one worker is SIGKILLed after the first checkpoint (the most common
  fault on a cluster); torchrun restarts the group, the run resumes from its last checkpoint and ends
  with the same metrics (every non-timing column), checkpoint and probes as an uninterrupted run.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avlib.train import pretrain
from test_distributed import DDP, REPO, _descendants, assert_same_run
from tiny import tiny_config

pytestmark = pytest.mark.scaleout  # make test-scaleout (CI runs it after make test)

TIMING = {"step_s", "data_s", "monitor_s", "select_s"}
RUN = {**DDP, "epochs": 4, "probe": True}  # 8 steps, a checkpoint every 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_command(config: Path, port: int, node_rank: int, nnodes: int = 2) -> list[str]:
    """One node's launcher: what the README's multi-node section tells a user to run on each node."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", "--nproc-per-node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=avlib-rehearsal",
            f"--node-rank={node_rank}", "-m", "avlib.train", "--config", str(config)]


def metric_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The single-process run and the same run on two rehearsed nodes."""
    root = tmp_path_factory.mktemp("multinode")
    one = tiny_config(root / "one", sampler="active", **RUN)
    pretrain(one)
    config = root / "nodes.json"
    one.replace(run_dir=str(root / "nodes")).save(config)  # the run folder: a path both nodes see
    port = free_port()
    nodes = [subprocess.Popen(node_command(config, port, rank), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    return root


def test_two_nodes_train_like_one_process(runs):
    summary = json.loads((runs / "nodes" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8
    assert_same_run(runs / "one", runs / "nodes")


def test_a_rank_killed_after_the_first_checkpoint_is_restarted_and_the_run_ends_as_if_uninterrupted(runs, tmp_path):
    cfg = tiny_config(tmp_path / "killed", sampler="active", **RUN)
    config = tmp_path / "killed.json"
    cfg.save(config)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
               "--max-restarts=1", "-m", "avlib.train", "--config", str(config)]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = Path(cfg.run_dir) / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():  # the first checkpoint (step 3) is on disk
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()[-3000:]
        time.sleep(0.05)
    workers = [pid for pid in _descendants(launcher.pid)
               if "avlib.train" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert len(workers) == 2, workers
    killed_after = len(metric_rows(Path(cfg.run_dir)))
    os.kill(max(workers), signal.SIGKILL)  # one worker, as a crashed node or an OOM-killer would
    output = launcher.communicate(timeout=300)[0]
    assert launcher.returncode == 0, output[-3000:]
    assert killed_after < 8, "the run finished before a rank could be killed"
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 8
    # the group was restarted once and resumed from a checkpoint, not from scratch
    resumed = [int(line.split(" at step ")[1].split()[0]) for line in output.splitlines() if line.startswith("resuming ")]
    assert len(resumed) == 1 and 3 <= resumed[0] <= killed_after, output[-3000:]
    # same layout (2 ranks) as the rehearsed nodes: the same arithmetic, so the same run
    assert metric_rows(Path(cfg.run_dir)) == metric_rows(runs / "nodes")
    assert_same_run(runs / "nodes", cfg.run_dir, rtol=1e-6)
    killed = json.loads((Path(cfg.run_dir) / "summary.json").read_text())
    reference = json.loads((runs / "nodes" / "summary.json").read_text())
    assert killed["probe"] == reference["probe"]
