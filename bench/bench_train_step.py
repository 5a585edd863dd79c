"""Training-step time with sampler=active against sampler=random, on the default configuration.

All runs use the same data, model, seed and thread settings, in one process, interleaved
(random, active, active, random, ...); each trains ``--steps`` steps (no probes) in a fresh
temporary run folder.  Reported: the median
wall time of a step, the median time of the dictionary update (``select_s``: the active
selection, or the random sampler's plain enqueue), and the ratio active / random.  The first
``--skip`` steps (warm-up, empty dictionaries, the active sampler's backlog filling) are excluded.

    uv run python bench/bench_train_step.py [--steps 120] [--threads 1] [--workers 1]

Writes ``reports/bench_train_step.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from avlib.config import PretrainConfig
from avlib.train import pretrain, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def measure(sampler: str, steps: int, skip: int, threads: int, workers: int, folder: Path) -> list[dict]:
    """Metrics rows (after the first ``skip`` steps) of a fresh ``steps``-step run of ``sampler``."""
    cfg = PretrainConfig(sampler=sampler, run_dir=str(folder), max_steps=steps, probe=False,
                         progress=False, num_threads=threads, num_workers=workers)
    pretrain(cfg)
    return read_metrics(cfg.run_dir)[skip:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--skip", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per sampler, interleaved ABBA...")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_train_step.md"))
    args = parser.parse_args()
    # Interleave the runs (random, active, active, random, ...) so that drift of the machine's speed
    # over time does not land on one sampler.
    order = [("random", "active") if i % 2 == 0 else ("active", "random") for i in range(args.repeats)]
    rows: dict[str, list[dict]] = {"random": [], "active": []}
    with tempfile.TemporaryDirectory() as folder:
        for i, pair in enumerate(order):
            for name in pair:
                rows[name] += measure(name, args.steps, args.skip, args.threads, args.workers,
                                      Path(folder) / f"{name}{i}")
    results = {name: {"step_s": statistics.median(r["step_s"] for r in runs),
                      "select_s": statistics.median(r["select_s"] for r in runs), "steps": len(runs)}
               for name, runs in rows.items()}
    ratio = results["active"]["step_s"] / results["random"]["step_s"]
    lines = [
        "# Training-step time: sampler=active vs sampler=random (default configuration)",
        "",
        f"Command: `uv run python bench/bench_train_step.py --steps {args.steps} --skip {args.skip} "
        f"--threads {args.threads} --workers {args.workers} --repeats {args.repeats}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; medians over steps {args.skip}..{args.steps - 1} of {args.repeats} "
        "interleaved runs per sampler.",
        "",
        "| sampler | step (ms) | dictionary update (ms) | update share of step |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {1000 * r['step_s']:.1f} | {1000 * r['select_s']:.2f} | "
                     f"{100 * r['select_s'] / r['step_s']:.1f}% |")
    lines += ["", f"Active / random step time: **{ratio:.3f}** ({100 * (ratio - 1):+.1f}%)."]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
