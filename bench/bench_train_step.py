"""Training-step time and dictionary diversity of the active sampler's variants against sampler=random.

Every variant trains on the same data, model, seed and thread settings, in one process, interleaved
(the order reversed on every repeat, so drift of the machine's speed does not land on one variant);
each run trains ``--steps`` steps (no probes) in a fresh temporary run folder.  Reported per
variant: the median wall time of a step and of the dictionary update (``select_s``), the ratio to
``random`` measured in the same run, and what the update did to the dictionaries over the last
``--tail`` steps (mean): the selection measures (``enter_share``, unique clips) and the diversity
metrics of the video dictionary (class entropy, mean pairwise cosine, effective rank).  The first
``--skip`` steps (warm-up, empty dictionaries) are excluded from the timings.

    uv run python bench/bench_train_step.py [--steps 120] [--repeats 2] [--threads 1] [--workers 1] [--variants ...]

Writes ``reports/bench_train_step.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from avlib.config import PretrainConfig
from avlib.kernels import native_bf16
from avlib.train import pretrain, read_metrics

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "random": dict(sampler="random"),
    "active (batch, kmeanspp): default": dict(sampler="active"),
    "active (batch, random selector)": dict(sampler="active", active_selector="random"),
    "active (batch, kmeanspp, dictionary-aware)": dict(sampler="active", active_dictionary_aware=True),
    "active (fresh, kmeanspp)": dict(sampler="active", active_candidates="fresh"),
    "active (fresh, random selector)": dict(sampler="active", active_candidates="fresh", active_selector="random"),
    "active (bank, kmeanspp)": dict(sampler="active", active_candidates="bank"),
    "active (bank, kmeanspp, dictionary-aware)": dict(sampler="active", active_candidates="bank",
                                                      active_dictionary_aware=True),
    "active (official, lloyd_nearest)": dict(sampler="active", active_candidates="official",
                                             active_selector="lloyd_nearest"),
    "active (backlog, kmeanspp)": dict(sampler="active", active_candidates="backlog"),
    # the encoders autocast to bf16 (embeddings and losses stay float32): what bench/precision_check.py
    # checks changes no comparison of the study; fast only on a CPU with native bf16 (avx512_bf16, AMX)
    "random (bf16 autocast)": dict(sampler="random", precision="bf16"),
}
DIVERSITY = {"enter share (video)": "video_sel_enter_share", "enter share (audio)": "audio_sel_enter_share",
             "entry age (steps)": "video_sel_mean_age_steps", "unique clips": "video_sel_unique_clip_share",
             "class entropy": "video_dict_entropy", "mean cosine": "video_dict_cosine",
             "effective rank": "video_dict_erank"}


def measure(params: dict, steps: int, threads: int, workers: int, folder: Path) -> list[dict]:
    cfg = PretrainConfig(run_dir=str(folder), max_steps=steps, probe=False, progress=False, num_threads=threads,
                         num_workers=workers, tensorboard=False, monitor_every=0, **params)
    pretrain(cfg)
    return read_metrics(cfg.run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--skip", type=int, default=20)
    parser.add_argument("--tail", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="a subset to time (random is always included: the ratios are against it)")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_train_step.md"))
    args = parser.parse_args()
    names = ["random"] + [name for name in args.variants if name != "random"]
    runs: dict[str, list[list[dict]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for name in (names if repeat % 2 == 0 else names[::-1]):
                runs[name].append(measure(VARIANTS[name], args.steps, args.threads, args.workers,
                                          Path(folder) / f"{len(runs[name])}_{names.index(name)}"))

    def timing(name: str, column: str) -> float:
        return statistics.median(row[column] for rows in runs[name] for row in rows[args.skip:])

    def tail_mean(name: str, column: str) -> float:
        values = [row.get(column, math.nan) for rows in runs[name] for row in rows[-args.tail:]]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    base = timing("random", "step_s")
    lines = [
        "# Training-step time and dictionary diversity: the active sampler's variants vs sampler=random",
        "",
        f"Command: `uv run python bench/bench_train_step.py --steps {args.steps} --skip {args.skip} --tail "
        f"{args.tail} --threads {args.threads} --workers {args.workers} --repeats {args.repeats}"
        + (" --variants " + " ".join(repr(name) for name in names) if names != list(VARIANTS) else "") + "`  ",
        f"Machine: {platform.processor() or platform.machine()}, {args.threads} torch thread(s), torch "
        f"{torch.__version__}, native bf16 {'yes' if native_bf16() else 'no'}; default configuration (batch 32, dictionary 256, embedded dataset); timings are "
        f"medians over steps {args.skip}..{args.steps - 1} of {args.repeats} interleaved runs per variant, the "
        f"dictionary columns means over the last {args.tail} steps (the video dictionary).",
        "",
        "| variant | step (ms) | x random | update (ms) | " + " | ".join(DIVERSITY) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(DIVERSITY),
    ]
    for name in names:
        step = timing(name, "step_s")
        lines.append(f"| {name} | {1000 * step:.1f} | {step / base:.3f} | {1000 * timing(name, 'select_s'):.2f} | "
                     + " | ".join(f"{tail_mean(name, column):.3f}" for column in DIVERSITY.values()) + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
