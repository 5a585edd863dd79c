"""Which schedule makes the study's ``dictionary_size`` condition train: the table of the checks.

Why: the condition's first run (``cross``, 2 epochs of 18,000 clips of 50 classes) made its encoders
worse than their random init.  Before 90 runs are spent on a comparison of dictionaries, the schedule
must be shown to train, and what failed must stay on record.  This script reads finished or stopped
``python -m avlib.train`` run folders and writes, per run, what it changed against the condition's
first run and how its training went:

* ``L/U``: the loss over a uniform guess over the dictionary (``uniform_loss``, ln(K + 1) for K keys),
  as a 50-step running mean: 1 is no better than chance;
* the video dictionary's effective rank and mean pairwise cosine: a collapsed encoder fills its
  dictionary with near-identical keys (rank falls, cosine rises);
* the linear probes of the trained encoders against the same encoders at random init, where the run
  probed (``summary.json``);
* where the run logged them, the video-to-audio loss over chance and the intra-modal video ``top1``
  (two windows of one clip), best and last of their 50-step means from step 100 on: a schedule that
  trains and then declines shows a last value well past its best.

Usage (each run folder as made by ``python -m avlib.train ... --run_dir DIR``; the first is the
reference every other is described against)::

    python bench/dictionary_schedule.py REFERENCE RUN... [--staleness RUN...] [--onset RUN...]

``--onset`` adds one table: per run its size (clips a pass, classes, keys) and the step at which its positive
pulled ahead of the fresh negatives, i.e. what a run needs before its cross-modal term learns.
``--staleness`` adds, per run, the queries' similarity to their positive, to the batch's fresh negatives
and to the dictionary's older ones over the steps (runs that log ``batch_neg_sim`` / ``queue_neg_sim``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from avlib.study.run import same_run_parameters

WINDOW = 50  # steps of the running mean of L/U


def read_rows(run: Path) -> list[dict]:
    path = run / "metrics.csv"
    if not path.is_file():
        raise SystemExit(f"{run}: no metrics.csv (expected a run folder of python -m avlib.train)")
    return list(csv.DictReader(path.open()))


def changes(reference: dict, config: dict) -> str:
    """The result-changing parameters (the study's rule: ``same_run_parameters``) where ``config`` differs."""
    reference, config = same_run_parameters(reference), same_run_parameters(config)
    differ = sorted(k for k in set(reference) | set(config) if reference.get(k) != config.get(k))
    return ", ".join(f"{k}={config.get(k)}" for k in differ) or "(the reference)"


def describe(run: Path, reference_config: dict) -> dict:
    rows = read_rows(run)
    config = json.loads((run / "config.json").read_text())
    ratio = [float(r["loss"]) / float(r["uniform_loss"]) for r in rows]
    smooth = [statistics.mean(ratio[max(0, i - WINDOW // 2): i + WINDOW // 2]) for i in range(len(ratio))]
    best = min(range(len(smooth)), key=smooth.__getitem__)
    summary_path = run / "summary.json"  # written when a run ends; its probes only where it probed
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    probes = summary if summary is not None and "probe" in summary else None

    def windows(key: str, over=None) -> list[float]:
        """50-step means of ``key`` (divided by ``over``), from step 100 on (the dictionary is full)."""
        value = [float(r[key]) / (float(r[over]) if over else 1.0) for r in rows]
        return [statistics.mean(value[i:i + WINDOW]) for i in range(100, len(value) - WINDOW + 1, WINDOW)]

    def best_then_last(key: str, over=None, best=min) -> str:
        if key not in rows[0] or len(rows) < 100 + WINDOW:
            return "–"
        means = windows(key, over)
        return f"{best(means):.2f} → {means[-1]:.2f}"

    def at(step: int, key: str) -> float:
        return float(rows[min(step, len(rows) - 1)][key])

    def probe(modality: str) -> str:
        if probes is None:
            return "–"
        trained, init = probes["probe"][modality]["linear"], probes["probe_random_init"][modality]["linear"]
        return f"{100 * trained:.1f} vs {100 * init:.1f}"

    return {"run": run.name, "changed": changes(reference_config, config), "sampler": config["sampler"],
            "steps": f"{len(rows)}" + ("" if summary is not None else " (stopped)"),
            "best": f"{smooth[best]:.2f} @ {best}", "last": f"{statistics.mean(ratio[-WINDOW:]):.2f}",
            "rank": f"{at(300, 'video_dict_erank'):.0f} / {at(len(rows) - 1, 'video_dict_erank'):.0f}",
            "cosine": f"{at(len(rows) - 1, 'video_dict_cosine'):.2f}",
            "video": probe("video"), "audio": probe("audio"),
            "v2a": best_then_last("v2a_loss", "uniform_loss"),
            "intra": best_then_last("intra_video_top1", best=max)}


def table(reference: Path, runs: list[Path]) -> str:
    reference_config = json.loads((reference / "config.json").read_text())
    lines = ["| run | changed against the reference | sampler | steps | min L/U @ step | L/U, last 50 "
             "| video dict. rank @300 / last | cosine, last | video linear % (trained vs init) "
             "| audio linear % | v2a L/U, best → last | intra video top1, best → last |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run in [reference, *runs]:
        row = describe(run, reference_config)
        lines.append("| " + " | ".join(row[k] for k in ("run", "changed", "sampler", "steps", "best", "last", "rank",
                                                        "cosine", "video", "audio", "v2a", "intra")) + " |")
    return "\n".join(lines)


def staleness(run: Path, every: int = 100) -> str:
    """Per ``every`` steps (means over the first 50 of them): the learning rate, and the queries' cosine with
    their positive, with the batch's other (fresh) keys and with the dictionary's (older) keys.  A query
    no closer to its positive than to the fresh negatives has learned nothing about its clip; if it is
    still far from the dictionary's keys, the loss falls only because old keys differ from new ones."""
    rows = read_rows(run)
    if "queue_neg_sim" not in rows[0]:
        raise SystemExit(f"{run}: metrics.csv has no queue_neg_sim (runs made before the fresh/stale split)")
    lines = [f"{run.name}:", "", "| steps | lr | positive | fresh negatives (batch) | dictionary negatives | top1 |",
             "|---|---:|---:|---:|---:|---:|"]
    for begin in range(0, len(rows), every):
        window = rows[begin:begin + WINDOW]

        def mean(key: str) -> float:
            return statistics.mean(float(r[key]) for r in window if r[key] not in ("", "nan"))
        lines.append(f"| {begin}-{begin + len(window) - 1} | {mean('lr'):.5f} | {mean('pos_sim'):.2f} | "
                     f"{mean('batch_neg_sim'):.2f} | {mean('queue_neg_sim'):.2f} | {mean('top1'):.3f} |")
    return "\n".join(lines)


#: the positive margin (pos_sim - batch_neg_sim, a 50-step mean) that counts as "the positive pulled ahead"
ONSET_MARGIN = 0.1


def onset(runs: list[Path]) -> str:
    """Per run: its size (training clips a pass, from its steps per epoch; classes; keys), and the first step
    at which the positive pulled ahead of the fresh negatives (50-step mean of ``pos_sim - batch_neg_sim``
    above :data:`ONSET_MARGIN`) and at which ``top1`` passed twice a guess among the batch's fresh keys
    (2 / batch size), with the epoch it fell in; then both at the run's end.  Why: it tells passes over each
    clip, classes and dictionary size apart as what a run needs before its cross-modal term learns."""
    lines = ["| run | clips a pass (steps an epoch x batch) | classes | keys | objective | steps (epochs) | "
             f"margin > {ONSET_MARGIN} from step (epoch) | top1 > 2/batch from step (epoch) | margin, last 50 | "
             "top1, last 50 |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for run in runs:
        rows = read_rows(run)
        config = json.loads((run / "config.json").read_text())
        if "batch_neg_sim" not in rows[0]:
            raise SystemExit(f"{run}: metrics.csv has no batch_neg_sim (runs made before the fresh/stale split)")
        margin = [float(r["pos_sim"]) - float(r["batch_neg_sim"]) for r in rows]
        top1 = [float(r["top1"]) for r in rows]
        epoch = [int(float(r["epoch"])) for r in rows]
        per_epoch = epoch.count(0)
        planned = config["epochs"] * per_epoch if config.get("max_steps") is None else config["max_steps"]

        def first(values: list[float], above: float) -> str:
            for end in range(WINDOW, len(values) + 1):
                if statistics.mean(values[end - WINDOW:end]) > above:
                    return f"{end} ({epoch[end - 1] + 1})"
            return "never"
        stopped = "" if (run / "summary.json").is_file() else f" of {planned}, stopped"
        lines.append(f"| {run.name} | {per_epoch * config['batch_size']} | {config['num_classes']} | "
                     f"{config['dictionary_size']} | {config['objective']} | {len(rows)}{stopped} ({epoch[-1] + 1}) | "
                     f"{first(margin, ONSET_MARGIN)} | {first(top1, 2 / config['batch_size'])} | "
                     f"{statistics.mean(margin[-WINDOW:]):.3f} | {statistics.mean(top1[-WINDOW:]):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("reference", type=Path, help="the condition's first run (what the others changed)")
    parser.add_argument("runs", type=Path, nargs="+", help="the checks' run folders")
    parser.add_argument("--out", type=Path, help="write the table here (default: print it)")
    parser.add_argument("--staleness", type=Path, nargs="*", default=[],
                        help="runs whose positive / fresh / dictionary similarities to tabulate over the steps")
    parser.add_argument("--onset", type=Path, nargs="*", default=[],
                        help="runs whose step of the positive pulling ahead to tabulate with their size")
    args = parser.parse_args(argv)
    text = "\n\n".join([table(args.reference, args.runs), *(staleness(run) for run in args.staleness),
                         *([onset(args.onset)] if args.onset else [])])
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
