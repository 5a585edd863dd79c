"""The entry point of pretraining: :func:`pretrain` in this process or in several (``torchrun``), and its CLI.

``python -m avlib.train --sampler active --run_dir runs/x`` runs :func:`avlib.train.pretrain` with
any :class:`~avlib.config.PretrainConfig` parameter given as ``--name value`` (or all of them in a
JSON file, ``--config FILE``; command-line values override the file).  The same command runs
under ``torchrun``, one process per GPU (or CPU slot):

    torchrun --standalone --nproc_per_node=8 -m avlib.train --device cuda --batch_size 256 --run_dir runs/x

and the notebook launches it for ``nproc_per_node > 1`` through :func:`launch`.  On SIGTERM or
SIGINT the run writes a checkpoint and exits with status 128 + the signal's number (143 for
SIGTERM), the convention schedulers read as "terminated"; the same command resumes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from avlib.config import ConfigError, PretrainConfig
from avlib.train import distributed
from avlib.train.console import run_report
from avlib.train.loop import Interrupted, check_names, train
from avlib.train.run_folder import RunFolderLock


def pretrain(cfg: PretrainConfig) -> dict:
    """Train (or resume) the run described by ``cfg`` and return its summary (also in summary.json).

    In one process, ``nproc_per_node > 1`` launches ``torchrun`` with that many processes
    (:func:`launch`) and returns the run's summary; under ``torchrun`` each process trains its share
    of every batch (``avlib.train.distributed``) and rank 0 writes the run folder.
    """
    check_names(cfg)
    if cfg.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        return launch(cfg)
    world, device = distributed.start(cfg.device)
    try:
        with RunFolderLock(cfg.run_dir, held=world.is_main):  # one run at a time in a run folder
            return train(cfg, world, device)
    finally:
        distributed.stop(world)


def torchrun_command(config_path: str | Path, nproc_per_node: int) -> list[str]:
    """The single-node torchrun command line that trains the config saved at ``config_path``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
            "-m", "avlib.train", "--config", str(config_path)]


def launch(cfg: PretrainConfig) -> dict:
    """Train ``cfg`` in ``cfg.nproc_per_node`` processes on this machine; stream their output; return the summary.

    The config goes to ``run_dir/launch_config.json`` and every process reads it.  A failed or
    interrupted run raises with the launcher's exit status (the run folder keeps its last checkpoint).
    """
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "launch_config.json"
    cfg.save(config_path)
    command = torchrun_command(config_path, cfg.nproc_per_node)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        for chunk in iter(lambda: process.stdout.read1(4096), b""):  # type: ignore[union-attr]
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        status = process.wait()
    except KeyboardInterrupt:  # interrupting the notebook interrupts training: the workers checkpoint and stop
        process.terminate()
        process.wait()
        raise
    if status != 0:
        raise RuntimeError(f"torchrun with {cfg.nproc_per_node} processes exited with status {status} "
                           f"(command: {' '.join(command)}); run_dir={str(run_dir)!r} keeps its last checkpoint")
    return json.loads((run_dir / "summary.json").read_text())


# ----------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> PretrainConfig:
    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    parser = argparse.ArgumentParser(prog="python -m avlib.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a JSON file of PretrainConfig parameters (e.g. a run's config.json)")
    for name, field in fields.items():
        default = field.default
        parser.add_argument(f"--{name}", metavar=str(field.type).replace(" ", ""), help=f"default: {default!r}")
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("config")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config {config_file!r}: no such file (expected a JSON file of parameters)")
        values.update(json.loads(path.read_text()))
    for name, text in args.items():
        if text is not None:
            values[name] = PretrainConfig.parse_value(name, text)
    return PretrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    speaks = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 reports for all
    try:
        cfg = parse_args(argv)
        summary = pretrain(cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        if speaks:
            print(str(stopped), file=sys.stderr)
        return 128 + stopped.signum
    launched = cfg.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ  # torchrun's rank 0 printed it
    if speaks and not launched:  # what the notebook's last cell prints too: the probe table and the run folder
        print(run_report(summary, cfg.run_dir), flush=True)
    return 0
