"""The data engine, measured: decode floor, loader throughput, data-wait share and memory against corpus size.

On a generated corpus of 10-s clips at 128 px and 16 fps with 44.1-kHz stereo AAC
(:func:`avlib.data.media_corpus.write_long_corpus`), in one run:

1. **decode floor**: decode-only windows per second on one core, one training window (``window_s``
   of video and ``audio_window_s`` of audio from a random place) against the whole clip, with
   torchcodec and with PyAV (:func:`avlib.data.window.decode_window`); the median of ``--repeats``
   passes over the corpus;
2. **loader throughput**: training windows per second out of the run's own DataLoader (decode +
   augmentation + log-mel, collated batches) at 1 and 2 workers, for ``cache`` (decoded once; the
   build is not timed), ``stream`` and ``shards``;
3. **data-wait share**: a few training steps with ``data_source=stream`` and 2 workers, with the
   light encoders and with ``r2plus1d_18`` + ``resnet18_audio`` at 112 px: the share of step time the
   trainer waited for its next batch (``summary.json["data"]``);
4. **peak RSS** of the training process tree at 1x and 4x the corpus, per source, the same steps.

Every ratio is against a figure measured in the same run.  ``--quick`` shrinks everything (a smoke run).

    uv run --frozen python bench/bench_data.py [--clips 24] [--repeats 3] [--out reports/bench_data.md] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

BASE = dict(fps=16, frame_size=128, crop_size=112, sample_rate=16000, n_mels=64, window_s=1.5, audio_window_s=1.5,
            clip_seconds=10.0, batch_size=8, dictionary_size=32, epochs=1000, warmup_steps=2, probe=False,
            progress=False, tensorboard=False, snapshot_every=0, monitor_every=0, checkpoint_every=1000,
            sampler="random", num_threads=1)


def corpus(folder: Path, clips: int, seconds: float) -> Path:
    from avlib.data.media_corpus import write_long_corpus

    started = time.perf_counter()
    manifest = write_long_corpus(folder, clips=clips, min_s=seconds, max_s=seconds, fps=16, size=(128, 128),
                                 sample_rate=44100, channels=2, num_classes=4, broken=False)
    print(f"corpus: {clips} clips of {seconds:g} s at {folder} in {time.perf_counter() - started:.1f} s", flush=True)
    return manifest


def decode_floor(manifest: Path, decoders: list[str], repeats: int, cfg) -> list[dict]:
    """Decode-only windows/s on one core: one training window at a seeded random place, and the whole clip."""
    from avlib.data.manifest import load_manifest
    from avlib.data.window import decode_window

    torch.set_num_threads(1)
    rows = load_manifest(manifest)
    paths, durations = rows.paths, [float(d) for d in rows.column("duration")]
    window_frames, window_samples = cfg.window_frames, cfg.window_samples
    results = []
    for decoder in decoders:
        for what in ("window", "whole clip"):
            rng = np.random.default_rng(0)
            rates = []
            for _ in range(repeats):
                started = time.perf_counter()
                for path, duration in zip(paths, durations):
                    if what == "window":
                        start = int(rng.integers(0, int((duration - cfg.window_s) * cfg.fps))) / cfg.fps
                        frames, samples = window_frames, window_samples
                    else:
                        start, frames = 0.0, int(duration * cfg.fps) - 1
                        samples = int(frames / cfg.fps * cfg.sample_rate)
                    decode_window(path, video_start_s=start, num_frames=frames, fps=cfg.fps,
                                  frame_size=cfg.frame_size, audio_start_s=start, num_samples=samples,
                                  sample_rate=cfg.sample_rate, decoder=decoder)
                rates.append(len(paths) / (time.perf_counter() - started))
            results.append({"decoder": decoder, "what": what, "per_s": statistics.median(rates)})
            print(f"decode floor: {decoder} {what}: {results[-1]['per_s']:.1f}/s", flush=True)
    return results


class Untransformed:
    """Stands in for the augmentations: the window's arrays as tensors, to time what the loader reads."""

    def __call__(self, array):
        return torch.from_numpy(np.array(array))


def loader_rate(cfg, workers: int, batches: int, augment: bool = True) -> float:
    """Training windows per second out of the run's DataLoader (the first two batches are warm-up);
    ``augment=False`` times reading and decoding alone (the machinery of the source)."""
    from avlib.data.dataset import AVWindows, StepBatches, collate
    from avlib.data.sources import ShardBatches, open_clips
    from torch.utils.data import DataLoader

    clips = open_clips(cfg, progress=False)
    train = clips.select("train")
    windows = AVWindows(clips, train, cfg, train=True)
    if not augment:
        windows.video_transform = windows.audio_transform = Untransformed()
    total = batches + 2
    if clips.source == "shards":
        loader = DataLoader(ShardBatches(windows, clips, cfg.batch_size, cfg.seed, total), batch_size=None,
                            num_workers=workers)
    else:
        loader = DataLoader(windows, batch_sampler=StepBatches(len(train), cfg.batch_size, cfg.seed, total),
                            collate_fn=collate, num_workers=workers)
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * cfg.batch_size / (time.perf_counter() - started)


def train_data(cfg) -> dict:
    from avlib.train import pretrain

    summary = pretrain(cfg)
    return summary["data"] | {"mean_step_s": summary["mean_step_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="clips in the 1x corpus (4x for the memory rows)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per loader measurement")
    parser.add_argument("--steps", type=int, default=8, help="training steps per data-wait / memory run")
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_data.md"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny corpus and counts")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.seconds, args.repeats, args.batches, args.steps = 16, 4.0, 1, 3, 3
    home = Path(tempfile.mkdtemp(prefix="bench-data-"))
    os.environ["AVLIB_HOME"] = str(home / "home")
    from avlib.config import PretrainConfig
    from avlib.data.shards import write_shards
    from avlib.data.window import available_decoder

    started_all, load_before = time.perf_counter(), os.getloadavg()[0]
    decoders = ["pyav"] + (["torchcodec"] if available_decoder("auto") == "torchcodec" else [])
    best = decoders[-1]
    one = corpus(home / "x1", args.clips, args.seconds)
    base = PretrainConfig(dataset=str(one), run_dir=str(home / "unused"), decoder=best, **BASE)
    floor = decode_floor(one, decoders, args.repeats, base)
    shards_dir = home / "x1-shards"
    write_shards(one, shards_dir, samples_per_shard=8, min_duration_s=base.window_s, progress=False)

    sources = {"cache": dict(data_source="cache"), "stream": dict(data_source="stream"),
               "shards": dict(data_source="auto", dataset=str(shards_dir))}
    throughput = []
    variants = [(name, change, "augmented (hsv hue)", True) for name, change in sources.items()]
    variants += [("stream", sources["stream"] | {"hue_space": "yiq"}, "augmented (yiq hue)", True),
                 ("stream", sources["stream"], "decode only", False),
                 ("shards", sources["shards"], "decode only", False)]
    for name, change, what, augment in variants:
        for workers in (1, 2):
            rate = loader_rate(base.replace(**change), workers, args.batches, augment)
            throughput.append({"source": name, "what": what, "workers": workers, "per_s": rate})
            print(f"loader: {name} {what} x{workers}: {rate:.1f} windows/s", flush=True)

    wait = []
    encoders = {"light3d + light2d": dict(), "r2plus1d_18 + resnet18_audio (112 px)":
                dict(video_encoder="r2plus1d_18", audio_encoder="resnet18_audio")}
    for label, change in encoders.items():
        steps = args.steps if not change else min(args.steps, 4)  # r2plus1d_18 at 112 px: ~1 min a step on 2 cores
        run = base.replace(data_source="stream", num_workers=2, max_steps=steps,
                           run_dir=str(home / f"wait-{len(wait)}"), **change)
        data = train_data(run)
        wait.append({"encoders": label, **data})
        print(f"data wait: {label}: {data['data_wait_share']:.3f} of {data['mean_step_s']:.2f} s steps", flush=True)

    four = corpus(home / "x4", 4 * args.clips, args.seconds)
    shards4 = home / "x4-shards"
    write_shards(four, shards4, samples_per_shard=8, min_duration_s=base.window_s, progress=False)
    memory = []
    for name in sources:
        for scale, manifest, shard_dir in ((1, one, shards_dir), (4, four, shards4)):
            change = dict(sources[name]) | ({"dataset": str(shard_dir)} if name == "shards" else {"dataset": str(manifest)})
            run = base.replace(num_workers=2, max_steps=args.steps, run_dir=str(home / f"mem-{name}-{scale}"), **change)
            data = train_data(run)
            memory.append({"source": name, "scale": scale, "clips": data["train_clips"], "peak_rss_mb": data["peak_rss_mb"]})
            print(f"memory: {name} {scale}x: {data['peak_rss_mb']:.0f} MB", flush=True)

    args.load = (load_before, os.getloadavg()[0])  # other processes on the cores lower the 2-worker rows
    lines = write_report(args, floor, throughput, wait, memory, decoders, time.perf_counter() - started_all)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(lines)
    print(lines)
    return 0


def write_report(args, floor, throughput, wait, memory, decoders, seconds) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    window = {(r["decoder"], r["what"]): r["per_s"] for r in floor}
    best = max(decoders, key=lambda d: window[(d, "window")])
    out = [f"# Data engine benchmark (`bench/bench_data.py`{' --quick' if args.quick else ''})", "",
           f"Corpus: {args.clips} clips (and {4 * args.clips} for the memory rows) of {args.seconds:g} s, 128x128 at "
           f"16 fps, 44.1-kHz stereo AAC (`avlib.data.media_corpus`); windows of 1.5 s video at 16 fps, 128 px "
           f"decoded (112-px crops) and 1.5 s of audio at 16 kHz; batch 8. Machine: {cpu}, {os.cpu_count()} cores, "
           f"torch {torch.__version__}, one torch thread per process. The whole benchmark took {seconds / 60:.1f} min; "
           f"the 1-minute load average was {args.load[0]:.1f} at its start and {args.load[1]:.1f} at its end "
           f"(on {os.cpu_count()} cores: above {os.cpu_count()}, other processes took cores from the 2-worker rows).",
           "", "## Decode floor (one core, decode only)", "",
           "| decoder | one training window /s | whole clip /s | window speed-up |", "|---|---:|---:|---:|"]
    for decoder in decoders:
        w, c = window[(decoder, "window")], window[(decoder, "whole clip")]
        out.append(f"| {decoder} | {w:.1f} | {c:.2f} | {w / c:.1f}x |")
    if len(decoders) > 1:
        out += ["", f"torchcodec / PyAV, one window: {window[('torchcodec', 'window')] / window[('pyav', 'window')]:.2f}x."]
    floor_best = window[(best, "window")]
    out += ["", "## Loader throughput (training windows/s: decode + augmentation + log-mel, collated)", "",
            f"Against the decode floor of the fastest decoder ({best}, {floor_best:.1f} windows/s on one core); "
            "the target for `stream` at 2 workers is >= 80% of 2x the floor.", "",
            "| source | windows | workers | windows/s | / (workers x floor) |", "|---|---|---:|---:|---:|"]
    for r in throughput:
        out.append(f"| {r['source']} | {r['what']} | {r['workers']} | {r['per_s']:.1f} | "
                   f"{r['per_s'] / (r['workers'] * floor_best):.2f} |")
    out += ["", "## Data-wait share (`data_source=stream`, 2 workers, the trainer on the same 2 cores)", "",
            "| encoders | mean step (s) | data-wait share | decoder |", "|---|---:|---:|---|"]
    for r in wait:
        out.append(f"| {r['encoders']} | {r['mean_step_s']:.2f} | {r['data_wait_share']:.3f} | {r['decoder']} |")
    out += ["", "## Peak RSS of the training process tree (trainer + 2 workers) against corpus size", "",
            "| source | corpus | training clips | peak RSS (MB) | 4x / 1x |", "|---|---:|---:|---:|---:|"]
    for r in memory:
        base = next(m for m in memory if m["source"] == r["source"] and m["scale"] == 1)["peak_rss_mb"]
        out.append(f"| {r['source']} | {r['scale']}x | {r['clips']} | {r['peak_rss_mb']:.0f} | "
                   f"{r['peak_rss_mb'] / base:.3f} |")
    out += ["", "RSS is summed over the processes (pages shared by forked workers count once per process), "
            "sampled every 0.5 s (`avlib.train.memory`). The cache's arrays are memory-mapped: the pages a run touches "
            "count, so its figure grows with the corpus a run reads; `stream` and `shards` hold one batch per worker.",
            "", "Raw rows: `" + json.dumps({"floor": floor, "throughput": throughput, "memory": memory}) + "`", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
