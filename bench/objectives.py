"""objective = cross | joint | intra, measured: linear and kNN probes against random init, per seed.

Issue 33: on real media whose sound and picture share only meaning (``bench/real_media.py --kind
digits``: handwritten digits over photographs, the digit's name spoken), cross-modal pretraining left
the video encoder at chance.  This script trains the ``random`` sampler (the MoCo baseline) with each
objective at each seed on one dataset and writes one Markdown table (and the raw results as JSON
beside it): video and audio linear/kNN test accuracy of the trained encoders and of the same
encoders at random init, the gain in points, and the run's ``learning_signal`` (cross-modal loss /
uniform guess, ``avlib.train.learning_signal``).  Every run is an ordinary run folder under
``--runs``: a finished one is read back (the loop trains nothing more), so the script can be stopped
and called again to fill in what is missing.

    # spoken digits: generated once into --data (needs espeak-ng), then 3 objectives x 3 seeds
    python bench/objectives.py --kind digits --data /tmp/avdigits40 --clips_per_class 40 --seconds 2 \\
        --runs /tmp/objectives/digits --out reports/objectives_digits.json
    # the same over a plain background (issue 33's user's data: digit scans over a plain background)
    python bench/objectives.py --kind digits --background plain --data /tmp/avdigits_plain \\
        --runs /tmp/objectives/digits_plain --out reports/objectives_digits_plain.json
    # the embedded dataset (the main job's data), joint against cross
    python bench/objectives.py --kind embedded --objectives cross joint --runs /tmp/objectives/embedded \\
        --out reports/objectives_embedded.json

``--set name=value`` passes any other training parameter (e.g. ``--set epochs=30``), parsed as the
command line parses it (``PretrainConfig.parse_value``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from avlib.config import OBJECTIVES, PretrainConfig  # noqa: E402
from avlib.train import pretrain  # noqa: E402

PROBES = [(modality, kind) for modality in ("video", "audio") for kind in ("linear", "knn")]


def digits_manifest(data: Path, clips_per_class: int, seconds: float, background: str = "photo") -> Path:
    """``data/manifest.csv`` of ``real_media.py --kind digits --background <background>`` (generated when absent)."""
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        from real_media import generate

        started = time.perf_counter()
        generate(data, clips_per_class, seconds, fps=25, size=96, sample_rate=16000, seed=0, kind="digits",
                 background=background)
        print(f"generated {manifest} in {time.perf_counter() - started:.0f} s", flush=True)
    return manifest


def run_one(kind: str, manifest: Path | None, objective: str, seed: int, runs: Path, extra: dict) -> dict:
    """Train (or read back) one run; returns its row of results."""
    data = {} if manifest is None else {"dataset": str(manifest)}
    cfg = PretrainConfig(run_dir=str(runs / f"{objective}_seed{seed}"), sampler="random", objective=objective,
                         seed=seed, progress=False, tensorboard=False, snapshot_every=0, **data, **extra)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = pretrain(cfg)
    check = summary.get("learning_signal_check", {})
    row = {"kind": kind, "objective": objective, "seed": seed, "steps": summary["steps"],
           "train_clips": summary["train_clips"], "learning_signal": summary.get("learning_signal"),
           "warned": bool(check.get("warned")), "warned_at_step": check.get("warned_at_step"),
           "train_wall_s": summary.get("train_wall_s"), "this_call_s": time.perf_counter() - started,
           "warnings": sorted({type(w.message).__name__ for w in caught})}
    for modality, probe in PROBES:
        row[f"{modality}_{probe}"] = summary["probe"][modality][probe]
        row[f"{modality}_{probe}_random_init"] = summary["probe_random_init"][modality][probe]
    print(json.dumps({k: row[k] for k in ("kind", "objective", "seed", "video_linear", "video_linear_random_init",
                                          "audio_linear", "audio_linear_random_init", "learning_signal",
                                          "train_wall_s")}), flush=True)
    return row


def table(rows: list[dict]) -> str:
    """Markdown: one line per run (accuracies in %, gain in points), then the mean per objective."""
    header = ("| objective | seed | video linear | (random init) | gain | video kNN | (random init) | audio linear "
              "| (random init) | gain | audio kNN | (random init) | learning_signal | warned | train min |")
    lines = [header, "|---|---:|" + "---:|" * 13]
    for r in rows:
        cells = [r["objective"], str(r["seed"])]
        for modality, probe in PROBES:
            trained, base = 100 * r[f"{modality}_{probe}"], 100 * r[f"{modality}_{probe}_random_init"]
            cells += [f"{trained:.1f}", f"{base:.1f}"] + ([f"{trained - base:+.1f}"] if probe == "linear" else [])
        signal = r["learning_signal"]
        cells += ["–" if signal is None else f"{signal:.3f}", "yes" if r["warned"] else "no",
                  "–" if r["train_wall_s"] is None else f"{r['train_wall_s'] / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| objective | seeds | video linear gain: mean (min) | audio linear gain: mean (min) | "
              "video kNN gain: mean | audio kNN gain: mean |", "|---|---:|---:|---:|---:|---:|"]
    for objective in dict.fromkeys(r["objective"] for r in rows):
        mine = [r for r in rows if r["objective"] == objective]
        gains = {f"{m}_{p}": [100 * (r[f"{m}_{p}"] - r[f"{m}_{p}_random_init"]) for r in mine] for m, p in PROBES}
        lines.append(f"| {objective} | {len(mine)} | {sum(gains['video_linear']) / len(mine):+.1f} "
                     f"({min(gains['video_linear']):+.1f}) | {sum(gains['audio_linear']) / len(mine):+.1f} "
                     f"({min(gains['audio_linear']):+.1f}) | {sum(gains['video_knn']) / len(mine):+.1f} | "
                     f"{sum(gains['audio_knn']) / len(mine):+.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("digits", "embedded"), required=True)
    parser.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (the Markdown table beside it, .md)")
    parser.add_argument("--data", type=Path, help="digits: the dataset folder (generated when it has no manifest)")
    parser.add_argument("--clips_per_class", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--background", choices=("photo", "plain", "paper"), default="photo",
                        help="digits: what the digit drifts over (real_media.py --background)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="another training parameter")
    args = parser.parse_args()
    extra = {}
    for item in args.set:
        name, _, text = item.partition("=")
        extra[name] = PretrainConfig.parse_value(name, text)
    if args.kind == "digits" and args.data is None:
        parser.error("--kind digits needs --data (the folder of the generated dataset)")
    manifest = digits_manifest(args.data, args.clips_per_class, args.seconds, args.background) if args.kind == "digits" else None
    rows = []
    for seed in args.seeds:  # seed-major: a stopped run leaves every objective at the same seeds
        for objective in args.objectives:
            rows.append(run_one(args.kind, manifest, objective, seed, args.runs, extra))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"kind": args.kind, "manifest": str(manifest) if manifest else None,
                                            "background": args.background if manifest else None,
                                            "parameters": extra, "rows": rows}, indent=1) + "\n")
            args.out.with_suffix(".md").write_text(table(sorted(rows, key=lambda r: (r["objective"], r["seed"]))) + "\n")
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
