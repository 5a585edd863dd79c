"""Step time and throughput of one process against two ``torchrun`` processes (gloo) on this machine.

Same global batch (``batch_size``, default 32), data, model, seed and sampler in every setting;
each trains ``--steps`` steps (no probes) in a fresh temporary run folder, and the first ``--skip``
steps are excluded.  Settings, run one after another:

* ``1 process, 1 thread``   -- the default single-process run;
* ``1 process, 2 threads``  -- the same process given both cores;
* ``2 processes, 1 thread`` -- ``pretrain(nproc_per_node=2)``, i.e. torchrun with gloo: each rank
  computes half the batch, gradients are all-reduced, keys gathered, BN statistics synchronised.

Reported: the median step wall time (rank 0's), global clips per second, the share of the step
spent in the dictionary update (``select_s``), and each setting's ratio to the first.

    uv run python bench/bench_ddp.py [--sampler active] [--steps 60] [--skip 10]

Writes ``reports/bench_ddp.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

from avlib.config import PretrainConfig
from avlib.train import pretrain, read_metrics

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampler", default="active")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", default=str(ROOT / "reports" / "bench_ddp.md"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, threads in SETTINGS:
            cfg = PretrainConfig(sampler=args.sampler, run_dir=f"{tmp}/{processes}x{threads}", max_steps=args.steps,
                                 batch_size=args.batch_size, probe=False, progress=False, snapshot_every=0,
                                 checkpoint_every=10_000, num_threads=threads, num_workers=1,
                                 nproc_per_node=processes)
            pretrain(cfg)
            metrics = read_metrics(cfg.run_dir)[args.skip:]
            step_s = statistics.median(r["step_s"] for r in metrics)
            select_s = statistics.median(r["select_s"] for r in metrics)
            rows.append((label, step_s, args.batch_size / step_s, select_s / step_s))

    base = rows[0][1]
    lines = [
        f"# One process vs two torchrun processes ({args.sampler} sampler, global batch {args.batch_size})",
        "",
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; "
        f"{args.steps} steps per setting, first {args.skip} excluded; medians. Rerun: `uv run python bench/bench_ddp.py`.",
        "",
        "| setting | step time (s) | clips / s | dictionary update share | step time vs 1 process, 1 thread |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {label} | {step_s:.3f} | {clips:.1f} | {share:.1%} | {step_s / base:.2f}x |"
              for label, step_s, clips, share in rows]
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
