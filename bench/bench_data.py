"""The data engine, measured: decode floor, loader throughput, data-wait share and memory against corpus size.

On a generated corpus of 10-s clips at 128 px and 16 fps with 44.1-kHz stereo AAC
(:func:`avlib.data.media_corpus.write_long_corpus`), in one run:

1. **decode floor**: decode-only windows per second on one core, one training window (``window_s``
   of video and ``audio_window_s`` of audio from a random place) against the whole clip, with
   torchcodec and with PyAV (:func:`avlib.data.window.decode_window`); the median of ``--repeats``
   passes over the corpus;
2. **loader throughput**: training windows per second out of the run's own DataLoader at 1 and 2
   workers, for ``cache`` (decoded once; the build is not timed), ``stream`` and ``shards``: augmented
   (decode + augmentation + log-mel, collated), and "decode only" (the source's read and the loader's own
   work -- window placement, seeding, collation into a reused shared-memory slot, the hand-over to the
   main process and its copy out of the slot (``avlib.data.ring``) -- with the arrays as they are decoded:
   no augmentation, no crop, no log-mel), with ``stream`` also without slots (torch's own hand-over in
   fresh shared memory, the control), interleaved pass by pass.  Beside each rate, the CPU
   time per window of the workers and of the main process (``/proc``), which other processes on the
   cores do not inflate the way they lower the rate;
3. **stages** of one decode-only ``stream`` window, CPU ms per window on one core, against
   ``decode_window`` alone on the same windows: where the loader's time goes beyond decoding;
4. **data-wait share**: a few training steps with ``data_source=stream`` and 2 workers, with the
   light encoders and with ``r2plus1d_18`` + ``resnet18_audio`` at 112 px: the share of step time the
   trainer waited for its next batch (``summary.json["data"]``);
5. **peak RSS** of the training process tree at 1x and 4x the corpus, per source, the same steps.

Every ratio is against a figure measured in the same run.  ``--quick`` shrinks everything (a smoke run).
``--only`` runs some sections (``floor``, ``loader``, ``decode-loader`` -- the decode-only loader rows
alone --, ``stages``, ``wait``, ``memory``); the report keeps the other sections' rows from the report
it replaces, marked as such.  The throughput rows of the issue's target:

    uv run --frozen python bench/bench_data.py --only floor,decode-loader,stages

    uv run --frozen python bench/bench_data.py [--clips 24] [--repeats 3] [--batches 24] [--only SECTIONS]
        [--out reports/bench_data.md] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import shutil
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
            rates, cpu_ms = [], []
            for _ in range(repeats):
                started, cpu_started = time.perf_counter(), time.process_time()
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
                cpu_ms.append((time.process_time() - cpu_started) / len(paths) * 1e3)
            results.append({"decoder": decoder, "what": what, "per_s": statistics.median(rates),
                            "cpu_ms": statistics.median(cpu_ms)})
            print(f"decode floor: {decoder} {what}: {results[-1]['per_s']:.1f}/s", flush=True)
    return results


class Untransformed:
    """Stands in for the augmentations: the window's arrays as tensors, to time what the loader reads.

    A decoded array becomes a tensor as it is; a read-only one (a slice of the cache's memory-mapped
    arrays) is copied, as the transforms copy it."""

    def __call__(self, array):
        return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def decode_only_windows(cfg, clips=None):
    """The run's training windows with the arrays as decoded (:class:`Untransformed`): the loader's own work."""
    from avlib.data.dataset import AVWindows
    from avlib.data.sources import open_clips

    clips = clips if clips is not None else open_clips(cfg, progress=False)
    windows = AVWindows(clips, clips.select("train"), cfg, train=True)
    windows.video_transform = windows.audio_transform = Untransformed()
    return clips, windows


def loader_rate(cfg, workers: int, batches: int, augment: bool = True, slots: bool = True) -> dict:
    """Training windows per second out of the run's DataLoader, and the CPU ms per window of its workers
    and of the main process; ``augment=False`` times reading and decoding alone (the machinery of the source).

    Warm-up: 2 batches, then as many as the workers had prefetched (2 per worker), so the timed batches are
    made while they are waited for."""
    from avlib.data.dataset import AVWindows, StepBatches, collate
    from avlib.data.ring import SlotCollate, SlotLoader
    from avlib.data.sources import ShardBatches, open_clips
    from torch.utils.data import DataLoader

    if augment:
        clips = open_clips(cfg, progress=False)
        windows = AVWindows(clips, clips.select("train"), cfg, train=True)
    else:
        clips, windows = decode_only_windows(cfg)
    warm_up = 2 + 2 * workers
    total = batches + warm_up
    torch.set_num_threads(cfg.num_threads)  # as the trainer does: its copies out of the slots are single-threaded
    collate_batch = SlotCollate(collate) if slots else collate  # as the training loop builds it, or without slots
    if clips.source == "shards":
        loader = DataLoader(ShardBatches(windows, clips, cfg.batch_size, cfg.seed, total, collate_batch=collate_batch),
                            batch_size=None, num_workers=workers)
    else:
        loader = DataLoader(windows, batch_sampler=StepBatches(len(windows), cfg.batch_size, cfg.seed, total),
                            collate_fn=collate_batch, num_workers=workers)
    received = SlotLoader(loader)
    iterator = iter(received)
    for _ in range(warm_up):
        next(iterator)
    pids = [process.pid for process in getattr(received.iterator, "_workers", [])]
    workers_before = [process_cpu_s(pid) for pid in pids]
    started, main_before = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    seconds, main_cpu = time.perf_counter() - started, time.process_time() - main_before
    worker_cpu = sum(process_cpu_s(pid) - before for pid, before in zip(pids, workers_before))
    windows_read = batches * cfg.batch_size
    del iterator
    return {"per_s": windows_read / seconds, "worker_cpu_ms": worker_cpu / windows_read * 1e3,
            "main_cpu_ms": main_cpu / windows_read * 1e3, "slots": slots,
            "batches_in_slots": received.batches_in_slots, "batches_handed": received.batches_handed}


def record_rate(fresh: dict, source: str, what: str, workers: int, passes: list[dict]) -> None:
    """One throughput row: the pass of median rate (its CPU times with it), and every pass's rate."""
    middle = sorted(passes, key=lambda rate: rate["per_s"])[len(passes) // 2]
    row = {"source": source, "what": what, "workers": workers, **middle,
           "passes_per_s": [rate["per_s"] for rate in passes]}
    fresh["throughput"].append(row)
    print(f"loader: {source} {what} x{workers}: {row['per_s']:.1f} windows/s (CPU ms/window: workers "
          f"{row['worker_cpu_ms']:.2f}, main {row['main_cpu_ms']:.2f}; batches in slots {row['batches_in_slots']}, "
          f"handed over {row['batches_handed']})", flush=True)


def stages(cfg, repeats: int, steps: int = 12) -> list[dict]:
    """CPU ms per window of each stage of a decode-only ``stream`` window on one core, on the same windows,
    the median of ``repeats`` passes: ``decode_window`` alone, then what the loader adds."""
    from multiprocessing.reduction import ForkingPickler

    import torch.utils.data._utils.worker as worker_state
    from avlib.data import dataset
    from avlib.data.dataset import StepBatches
    from avlib.data.ring import SLOT_KEY, SlotCollate, SlotLoader
    from avlib.data.window import decode_window

    torch.set_num_threads(1)
    clips, windows = decode_only_windows(cfg)
    items = [item for batch in StepBatches(len(windows), cfg.batch_size, cfg.seed, steps) for item in batch]
    places = []
    for position, seed in items:
        with dataset.seeded(seed):
            places.append((int(windows.indices[position]), *windows.window_starts(seed, position)))
    state: dict = {}

    def alone():
        for clip, start, audio_start in places:
            decode_window(clips.paths[clip], video_start_s=clips.starts[clip] + start / cfg.fps,
                          num_frames=cfg.window_frames, fps=cfg.fps, frame_size=cfg.frame_size,
                          audio_start_s=clips.starts[clip] + audio_start / cfg.sample_rate,
                          num_samples=cfg.window_samples, sample_rate=cfg.sample_rate, decoder=clips.decoder)

    def read():
        for clip, start, audio_start in places:
            clips.read(clip, start, cfg.window_frames, audio_start, cfg.window_samples)

    def place():
        for position, seed in items:
            with dataset.seeded(seed):
                windows.window_starts(seed, position)

    def get_items():
        state["items"] = [windows[item] for item in items]

    def collate():  # as in a DataLoader worker: stacked into shared memory
        saved = worker_state._worker_info
        worker_state._worker_info = worker_state.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)
        try:
            got = state["items"]
            state["batches"] = [dataset.collate(got[b:b + cfg.batch_size]) for b in range(0, len(got), cfg.batch_size)]
        finally:
            worker_state._worker_info = saved

    def send():  # what the worker's result queue does with a batch
        state["sent"] = [ForkingPickler.dumps(batch) for batch in state.pop("batches")]

    def receive():
        for message in state.pop("sent"):
            pickle.loads(message)

    # with slots (avlib.data.ring, as the trainer's loader): one slot per batch of a pass, reused by every pass
    slot_collate, slot_loader, rings = SlotCollate(dataset.collate, slots=steps), SlotLoader(None), {}

    def collate_slots():  # as in a DataLoader worker with slots: stacked into the worker's reused slots
        saved = worker_state._worker_info
        worker_state._worker_info = worker_state.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)
        try:
            got = state["items"]
            state["slot_batches"] = [slot_collate(got[b:b + cfg.batch_size]) for b in range(0, len(got), cfg.batch_size)]
        finally:
            worker_state._worker_info = saved
        assert all(SLOT_KEY in batch for batch in state["slot_batches"]), "a batch missed its slot"

    def send_slots():
        state["slot_sent"] = [ForkingPickler.dumps(batch) for batch in state.pop("slot_batches")]

    def receive_slots():  # unpickle, copy out of the slot, free it
        for message in state.pop("slot_sent"):
            slot_loader.receive(pickle.loads(message), rings)

    named = [("decode_window alone", alone), ("source read (StreamedClips.read)", read),
             ("window placement + seeding", place), ("item (placement, read, arrays to tensors)", get_items),
             ("collate into shared memory", collate), ("pickle for the result queue", send),
             ("unpickle in the main process", receive),
             ("slots: collate into a reused slot", collate_slots), ("slots: pickle for the result queue", send_slots),
             ("slots: unpickle and copy out in the main process", receive_slots)]
    alone()
    get_items()
    collate_slots()  # the slots' first use: they are made and mapped, as in a worker's first batches
    send_slots()
    receive_slots()
    times: dict[str, list[float]] = {name: [] for name, _ in named}
    for _ in range(repeats):
        for name, run in named:
            cpu_started = time.process_time()
            run()
            times[name].append((time.process_time() - cpu_started) / len(items) * 1e3)
    rows = [{"stage": name, "cpu_ms": statistics.median(values)} for name, values in times.items()]
    for row in rows:
        print(f"stage: {row['stage']}: {row['cpu_ms']:.2f} ms/window", flush=True)
    return rows


def train_data(cfg) -> dict:
    from avlib.train import pretrain

    summary = pretrain(cfg)
    return summary["data"] | {"mean_step_s": summary["mean_step_s"]}


SECTIONS = ("floor", "loader", "decode-loader", "stages", "wait", "memory")


def earlier_rows(path: Path) -> dict:
    """The rows of the report at ``path`` (its raw-rows line; the data-wait table read back where an older
    report's raw rows lack it), to keep in a report of some sections (``--only``); {} when there is none."""
    if not path.is_file():
        return {}
    text = path.read_text()
    found = re.search(r"^Raw rows: `(.*)`$", text, re.M)
    rows = json.loads(found.group(1)) if found else {}
    if "wait" not in rows and "## Data-wait share" in text:
        table = text.split("## Data-wait share", 1)[1].split("\n## ", 1)[0]
        rows["wait"] = [{"encoders": m[0], "mean_step_s": float(m[1]), "data_wait_share": float(m[2]), "decoder": m[3]}
                        for m in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \| (\w+) \|$", table, re.M)]
    header = re.search(r"^Corpus: .*$", text, re.M)
    rows["header"] = header.group(0) if header else ""
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="clips in the 1x corpus (4x for the memory rows)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=24, help="timed batches per loader measurement")
    parser.add_argument("--steps", type=int, default=8, help="training steps per data-wait / memory run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all); the "
                             "report keeps the other sections' rows from the report it replaces")
    parser.add_argument("--out", default=None, help="the report (default reports/bench_data.md; with --quick, a "
                                                     "file in the run's temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny corpus and counts")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown or not sections:
        parser.error(f"--only {args.only!r}: unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}")
    args.sections = sections
    if args.quick:
        args.clips, args.seconds, args.repeats, args.batches, args.steps = 16, 4.0, 1, 3, 3
    home = Path(tempfile.mkdtemp(prefix="bench-data-"))
    if args.out is None:  # a smoke run does not replace the report
        args.out = str(home / "bench_data.md") if args.quick else str(ROOT / "reports" / "bench_data.md")
    earlier = earlier_rows(Path(args.out)) if set(sections) != set(SECTIONS) else {}
    os.environ["AVLIB_HOME"] = str(home / "home")
    from avlib.config import PretrainConfig
    from avlib.data.shards import write_shards
    from avlib.data.window import available_decoder

    started_all, load_before = time.perf_counter(), os.getloadavg()[0]
    decoders = ["pyav"] + (["torchcodec"] if available_decoder("auto") == "torchcodec" else [])
    best = decoders[-1]
    one = corpus(home / "x1", args.clips, args.seconds)
    base = PretrainConfig(dataset=str(one), run_dir=str(home / "unused"), decoder=best, **BASE)
    fresh: dict[str, list] = {}
    if "floor" in sections:
        fresh["floor"] = decode_floor(one, decoders, args.repeats, base)
    shards_dir = home / "x1-shards"
    sources = {"cache": dict(data_source="cache"), "stream": dict(data_source="stream"),
               "shards": dict(data_source="auto", dataset=str(shards_dir))}
    if {"loader", "decode-loader", "memory"} & set(sections):
        write_shards(one, shards_dir, samples_per_shard=8, min_duration_s=base.window_s, progress=False)

    variants = []
    if "loader" in sections:
        variants += [(name, change, "augmented (hsv hue)", True) for name, change in sources.items()]
        variants += [("stream", sources["stream"] | {"hue_space": "yiq"}, "augmented (yiq hue)", True)]
    if "loader" in sections or "decode-loader" in sections:
        fresh["throughput"] = []
    for name, change, what, augment in variants:
        for workers in (1, 2):
            record_rate(fresh, name, what, workers, [loader_rate(base.replace(**change), workers, args.batches, augment)])
    if "loader" in sections or "decode-loader" in sections:
        # decode only: the loader as the trainer builds it (batches in reused slots, avlib.data.ring) against
        # the control without slots (fresh shared memory per batch), interleaved, the median of --repeats passes
        decode_only = [("stream", sources["stream"], True), ("stream", sources["stream"], False),
                       ("shards", sources["shards"], True)]
        for workers in (1, 2):
            passes: dict[int, list[dict]] = {k: [] for k in range(len(decode_only))}
            for _ in range(args.repeats):
                for k, (name, change, slots) in enumerate(decode_only):
                    passes[k].append(loader_rate(base.replace(**change), workers, args.batches, False, slots))
            for k, (name, change, slots) in enumerate(decode_only):
                what = "decode only" if slots else "decode only, no slots (control)"
                record_rate(fresh, name, what, workers, passes[k])
    if "stages" in sections:
        fresh["stages"] = stages(base.replace(**sources["stream"]), args.repeats)

    if "wait" in sections:
        fresh["wait"] = []
        encoders = {"light3d + light2d": dict(), "r2plus1d_18 + resnet18_audio (112 px)":
                    dict(video_encoder="r2plus1d_18", audio_encoder="resnet18_audio")}
        for label, change in encoders.items():
            steps = args.steps if not change else min(args.steps, 4)  # r2plus1d_18 at 112 px: ~1 min a step on 2 cores
            run = base.replace(data_source="stream", num_workers=2, max_steps=steps,
                               run_dir=str(home / f"wait-{len(fresh['wait'])}"), **change)
            data = train_data(run)
            fresh["wait"].append({"encoders": label, "mean_step_s": data["mean_step_s"],
                                  "data_wait_share": data["data_wait_share"], "decoder": data["decoder"]})
            print(f"data wait: {label}: {data['data_wait_share']:.3f} of {data['mean_step_s']:.2f} s steps", flush=True)

    if "memory" in sections:
        four = corpus(home / "x4", 4 * args.clips, args.seconds)
        shards4 = home / "x4-shards"
        write_shards(four, shards4, samples_per_shard=8, min_duration_s=base.window_s, progress=False)
        fresh["memory"] = []
        for name in sources:
            for scale, manifest, shard_dir in ((1, one, shards_dir), (4, four, shards4)):
                change = dict(sources[name]) | ({"dataset": str(shard_dir)} if name == "shards"
                                                else {"dataset": str(manifest)})
                run = base.replace(num_workers=2, max_steps=args.steps, run_dir=str(home / f"mem-{name}-{scale}"),
                                   **change)
                data = train_data(run)
                fresh["memory"].append({"source": name, "scale": scale, "clips": data["train_clips"],
                                        "peak_rss_mb": data["peak_rss_mb"]})
                print(f"memory: {name} {scale}x: {data['peak_rss_mb']:.0f} MB", flush=True)

    args.load = (load_before, os.getloadavg()[0])  # other processes on the cores lower the 2-worker rows
    lines = write_report(args, fresh, earlier, decoders, time.perf_counter() - started_all)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(lines)
    print(lines)
    for child in home.iterdir():  # the corpora, shards, caches and runs (GBs): all but a --quick report
        if child != Path(args.out):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    if not any(home.iterdir()):
        home.rmdir()
    print(f"report: {args.out}")
    return 0


def write_report(args, fresh: dict, earlier: dict, decoders, seconds) -> str:
    """The report: this run's sections, and the rows of the other sections from ``earlier`` (marked)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    rows = {key: fresh.get(key, earlier.get(key, [])) for key in ("floor", "throughput", "stages", "wait", "memory")}
    kept = [key for key in rows if key not in fresh and earlier.get(key)]
    if "throughput" in fresh and "loader" not in args.sections:  # decode-loader: keep the augmented rows
        rows["throughput"] = ([r for r in earlier.get("throughput", []) if not r["what"].startswith("decode only")]
                              + fresh["throughput"])
        kept.append("throughput (augmented rows)")

    def earlier_note(key: str) -> list[str]:
        return ([f"_Rows of an earlier run of the benchmark (this run was `--only {args.only}`)._", ""]
                if key in kept else [])

    out = [f"# Data engine benchmark (`bench/bench_data.py`{' --quick' if args.quick else ''}"
           f"{' --only ' + args.only if kept or set(args.sections) != set(SECTIONS) else ''})", "",
           f"Corpus: {args.clips} clips (and {4 * args.clips} for the memory rows) of {args.seconds:g} s, 128x128 at "
           f"16 fps, 44.1-kHz stereo AAC (`avlib.data.media_corpus`); windows of 1.5 s video at 16 fps, 128 px "
           f"decoded (112-px crops) and 1.5 s of audio at 16 kHz; batch 8. Machine: {cpu}, {os.cpu_count()} cores, "
           f"torch {torch.__version__}, one torch thread per process. This run took {seconds / 60:.1f} min; "
           f"the 1-minute load average was {args.load[0]:.1f} at its start and {args.load[1]:.1f} at its end "
           f"(on {os.cpu_count()} cores: above {os.cpu_count()}, other processes took cores from the 2-worker rows)."]
    if kept and earlier.get("header"):
        out += ["", f"The rows marked as an earlier run's came from the run described as: {earlier['header']}"]
    window = {(r["decoder"], r["what"]): r for r in rows["floor"]}
    measured = [d for d in decoders if (d, "window") in window]
    best = max(measured, key=lambda d: window[(d, "window")]["per_s"]) if measured else None
    if rows["floor"]:
        out += ["", "## Decode floor (one core, decode only)", "", *earlier_note("floor"),
                "| decoder | one training window /s | CPU ms per window | whole clip /s | window speed-up |",
                "|---|---:|---:|---:|---:|"]
        for decoder in measured:
            w, c = window[(decoder, "window")], window[(decoder, "whole clip")]
            cpu_ms = f"{w['cpu_ms']:.2f}" if "cpu_ms" in w else "-"
            out.append(f"| {decoder} | {w['per_s']:.1f} | {cpu_ms} | {c['per_s']:.2f} | {w['per_s'] / c['per_s']:.1f}x |")
        if len(measured) > 1:
            out += ["", "torchcodec / PyAV, one window: "
                        f"{window[('torchcodec', 'window')]['per_s'] / window[('pyav', 'window')]['per_s']:.2f}x."]
    if rows["throughput"]:
        floor_best = window[(best, "window")] if best else None
        out += ["", "## Loader throughput (training windows/s out of the run's DataLoader, collated batches)", "",
                *earlier_note("throughput"),
                *([f"_The augmented rows are an earlier run's (this run was `--only {args.only}`); their ratios are "
                   "against this run's floor._", ""] if "throughput (augmented rows)" in kept else []),
                "\"decode only\": the source's read and the loader's own work (window placement, seeding, collation "
                "into a reused shared-memory slot, the hand-over to the main process and its copy out of the slot, "
                "`avlib.data.ring`, as the training loop builds its loader) with the arrays as decoded; \"no slots "
                "(control)\": the same with torch's own hand-over (each batch in fresh shared memory), interleaved "
                "with it, pass by pass; \"augmented\": plus the augmentation and the log-mel. Decode-only rows are the "
                "median of `--repeats` passes (every pass's rate in the raw rows). CPU ms per window: the workers' "
                "and the main process's CPU time over the timed batches (`/proc`), which other processes on the "
                "cores do not inflate; \"CPU bound\" is the ratio the rate would reach on idle cores, floor CPU ms / "
                "(workers + main CPU ms); \"in slots / handed\": how the timed and warm-up batches reached the main "
                "process (handed: torch's hand-over, when no slot was free)."]
        if floor_best:
            out += ["", f"Against the decode floor of the fastest decoder ({best}, {floor_best['per_s']:.1f} windows/s "
                        "on one core); the target for `stream` at 2 workers is >= 80% of 2x the floor."]
            target = [r for r in rows["throughput"] if (r["source"], r["what"], r["workers"]) == ("stream", "decode only", 2)]
            control = [r for r in rows["throughput"]
                       if (r["source"], r["what"], r["workers"]) == ("stream", "decode only, no slots (control)", 2)]
            if target:
                ratio = target[0]["per_s"] / (2 * floor_best["per_s"])
                out += ["", f"**`stream` at 2 workers: {target[0]['per_s']:.1f} windows/s, {ratio:.2f} of 2x the floor: "
                            f"the target is {'met' if ratio >= 0.8 else 'not met'}**"
                            + (f"; without slots (the control, same run) {control[0]['per_s']:.1f} windows/s, "
                               f"{control[0]['per_s'] / (2 * floor_best['per_s']):.2f}: the slots give "
                               f"{target[0]['per_s'] / control[0]['per_s']:.2f}x." if control else ".")]
        out += ["", "| source | windows | workers | windows/s | / (workers x floor) | CPU ms/window: workers | main "
                    "| CPU bound | in slots / handed |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows["throughput"]:
            ratio = f"{r['per_s'] / (r['workers'] * floor_best['per_s']):.2f}" if floor_best else "-"
            if "worker_cpu_ms" in r:
                bound = (f"{floor_best['cpu_ms'] / (r['worker_cpu_ms'] + r['main_cpu_ms']):.2f}"
                         if floor_best and "cpu_ms" in floor_best else "-")
                cpu_cells = f"{r['worker_cpu_ms']:.2f} | {r['main_cpu_ms']:.2f} | {bound}"
            else:
                cpu_cells = "- | - | -"
            handed = f"{r['batches_in_slots']} / {r['batches_handed']}" if "batches_in_slots" in r else "-"
            out.append(f"| {r['source']} | {r['what']} | {r['workers']} | {r['per_s']:.1f} | {ratio} | {cpu_cells} "
                       f"| {handed} |")
    if rows["stages"]:
        decode = rows["stages"][0]["cpu_ms"]
        out += ["", "## Stages of a decode-only `stream` window (CPU ms per window, one core, the same windows)", "",
                *earlier_note("stages"), "| stage | CPU ms per window | / decode_window alone |", "|---|---:|---:|"]
        for r in rows["stages"]:
            out.append(f"| {r['stage']} | {r['cpu_ms']:.2f} | {r['cpu_ms'] / decode:.2f} |")
    if rows["wait"]:
        out += ["", "## Data-wait share (`data_source=stream`, 2 workers, the trainer on the same 2 cores)", "",
                *earlier_note("wait"), "| encoders | mean step (s) | data-wait share | decoder |", "|---|---:|---:|---|"]
        for r in rows["wait"]:
            out.append(f"| {r['encoders']} | {r['mean_step_s']:.2f} | {r['data_wait_share']:.3f} | {r['decoder']} |")
    if rows["memory"]:
        out += ["", "## Peak RSS of the training process tree (trainer + 2 workers) against corpus size", "",
                *earlier_note("memory"), "| source | corpus | training clips | peak RSS (MB) | 4x / 1x |",
                "|---|---:|---:|---:|---:|"]
        for r in rows["memory"]:
            base = next(m for m in rows["memory"] if m["source"] == r["source"] and m["scale"] == 1)["peak_rss_mb"]
            out.append(f"| {r['source']} | {r['scale']}x | {r['clips']} | {r['peak_rss_mb']:.0f} | "
                       f"{r['peak_rss_mb'] / base:.3f} |")
        out += ["", "RSS is summed over the processes (pages shared by forked workers count once per process), "
                "sampled every 0.5 s (`avlib.train.memory`). The cache's arrays are memory-mapped: the pages a run "
                "touches count, so its figure grows with the corpus a run reads; `stream` and `shards` hold one batch "
                "per worker."]
    out += ["", "Raw rows: `" + json.dumps({key: value for key, value in rows.items() if value}) + "`", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
