"""A training window's augmentation on one core: avlib's HSV hue shift against torchvision's, the same bytes.

Why it matters: a loader worker shares the cores with training (2 study jobs on 2 cores run 2 trainers and 2
workers), so every CPU ms the augmentation spends per window is taken from a step.  Measured, interleaved
variant by variant in one run, at two window sizes (the study's 12 frames of 48 px, the paper-scale 24 of 112):

- the hue shift alone: ``torchvision.transforms.v2.functional.adjust_hue`` against
  :func:`avlib.data.augment.hsv_hue_shift`, with the bytes that differ between them (0 expected);
- a training item as the loader builds it (``AVWindows`` on the embedded dataset, objective ``joint``: two
  windows, each video and log-mel) with either jitter;
- a whole training window: ``VideoTransform`` (crop, flip, colour jitter: the "light" recipe) built with
  torchvision's ``ColorJitter`` against avlib's, the same seeds, plus the window's log-mel
  (``AudioTransform``), which neither changes, for the share of the window the hue takes;
- what the study sees: two short trainings at once on two cores (``--jobs 2``: two trainers, two loader
  workers), the ``dictionary_size`` condition's configuration on a smaller embedded dataset, both with
  avlib's jitter or both with torchvision's, in rounds ordered ABBA; the median wall seconds a step.

Times are per call, the median over ``--repeats`` interleaved rounds of ``--calls`` calls each.

    uv run --frozen python bench/bench_augment.py [--repeats 7] [--calls 200] [--job-rounds 2] [--job-steps 150]
        [--out reports/bench_augment.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from avlib.data import augment
from avlib.data.augment import AudioTransform, VideoTransform, hsv_hue_shift, seeded
from avlib.study.run import machine

ROOT = Path(__file__).resolve().parents[1]
#: (name, frames, frame size, crop): the study's window (PretrainConfig's defaults) and the paper-scale one
WINDOWS = [("study (12 x 64 px, 48-px crops)", 12, 64, 48), ("paper scale (24 x 128 px, 112-px crops)", 24, 128, 112)]


def timed(call, calls: int) -> float:
    """Seconds per call over ``calls`` calls."""
    started = time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.perf_counter() - started) / calls


def video_transform(crop: int, jitter: type) -> VideoTransform:
    """The training ``VideoTransform`` ("light" recipe) built with the colour jitter class ``jitter``."""
    ours = augment.ColorJitter
    augment.ColorJitter = jitter
    try:
        transform = VideoTransform(crop, True)
    finally:
        augment.ColorJitter = ours
    assert type(transform.transform.transforms[-1]) is jitter
    return transform


def measure(frames: int, size: int, crop: int, repeats: int, calls: int) -> dict:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)  # (T, H, W, 3), as the cache holds it
    cropped = torch.from_numpy(clip).permute(0, 3, 1, 2)[..., :crop, :crop].contiguous()  # (T, 3, crop, crop)
    waveform = rng.standard_normal(24000).astype(np.float32)  # 1.5 s at 16 kHz
    ours_video, theirs_video = video_transform(crop, augment.ColorJitter), video_transform(crop, v2.ColorJitter)
    audio = AudioTransform(16000, 64, True)
    factors = [float(f) for f in np.linspace(-0.1, 0.1, calls)]

    def window(transform):
        def call(i):
            with seeded(i):
                transform(clip)
        return call

    variants = {
        "hue: torchvision": lambda i: TF.adjust_hue(cropped, factors[i]),
        "hue: avlib": lambda i: hsv_hue_shift(cropped, factors[i]),
        "video, torchvision's jitter": window(theirs_video),
        "video, avlib's jitter": window(ours_video),
        "log-mel": lambda i: audio(waveform),
    }
    times = {name: [] for name in variants}
    for round_ in range(repeats):
        for name in (list(variants) if round_ % 2 == 0 else list(variants)[::-1]):
            times[name].append(timed(variants[name], calls))
    differing = sum(int((hsv_hue_shift(cropped, f) != TF.adjust_hue(cropped, f)).sum()) for f in factors[:20])
    windows_differing = 0
    for seed in range(20):
        with seeded(seed):
            a = ours_video(clip)
        with seeded(seed):
            b = theirs_video(clip)
        windows_differing += int(not torch.equal(a, b))
    return {"ms": {name: 1000 * statistics.median(t) for name, t in times.items()}, "differing_bytes": differing,
            "differing_windows": windows_differing, "pixels": cropped.numel() // 3}


def training_items(repeats: int, calls: int) -> dict:
    """ms per training item of the embedded dataset as the loader builds it (``AVWindows``, objective ``joint``:
    two windows, each video and log-mel), with avlib's jitter and with torchvision's, the same items."""
    from avlib.config import PretrainConfig
    from avlib.data.dataset import AVWindows
    from avlib.train import distributed
    from avlib.train.loop import load_training_data

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = PretrainConfig(run_dir=run_dir, objective="joint", progress=False)
        cache, train_indices = load_training_data(cfg, distributed.World())
        loaders = {}
        for name, jitter in (("avlib", augment.ColorJitter), ("torchvision", v2.ColorJitter)):
            windows = AVWindows(cache, train_indices, cfg, train=True)
            windows.video_transform = video_transform(cfg.crop_size, jitter)
            loaders[name] = windows
        items = [(i % len(train_indices), 1000 + i) for i in range(calls)]
        times = {name: [] for name in loaders}
        for round_ in range(repeats):
            for name in (list(loaders) if round_ % 2 == 0 else list(loaders)[::-1]):
                times[name].append(timed(lambda i: loaders[name][items[i]], calls))
        same = all(torch.equal(a[key], b[key]) for a, b in ((loaders["avlib"][item], loaders["torchvision"][item])
                                                            for item in items[:20]) for key in ("video", "video2", "audio", "audio2"))
        return {"ms": {name: 1000 * statistics.median(t) for name, t in times.items()}, "same": same,
                "config": f"{cfg.window_frames} frames of {cfg.frame_size} px, {cfg.crop_size}-px crops"}


#: the dictionary_size condition's training (avlib.study.conditions.DICTIONARY_DATASET, 4096 keys), on 6,000 clips
JOB = dict(objective="joint", precision="bf16", sampler="random", dictionary_size=4096, num_classes=50,
           clips_per_class=120, num_threads=1, num_workers=1, probe=False, progress=False, tensorboard=False,
           monitor_every=0, snapshot_every=0)
JITTERS = {"avlib": augment.ColorJitter, "torchvision": v2.ColorJitter}


def one_job(jitter: str, steps: int, folder: str) -> None:
    """A training of ``steps`` steps with ``jitter``'s colour jitter (the loader's workers fork with it); prints
    the median step seconds after the first 20 steps as JSON."""
    from avlib.config import PretrainConfig
    from avlib.train import pretrain, read_metrics

    augment.ColorJitter = JITTERS[jitter]
    cfg = PretrainConfig(run_dir=folder, max_steps=steps, **JOB)
    pretrain(cfg)
    print(json.dumps({"step_s": statistics.median(r["step_s"] for r in read_metrics(cfg.run_dir)[20:])}))


def two_jobs(rounds: int, steps: int) -> dict:
    """Wall seconds a step with two trainings at once, per jitter; rounds ordered avlib, torchvision, torchvision,
    avlib, ... so that drift of the machine's speed does not land on one."""
    order = [name for r in range(rounds) for name in (("avlib", "torchvision") if r % 2 == 0 else ("torchvision", "avlib"))]
    step_s = {name: [] for name in JITTERS}
    with tempfile.TemporaryDirectory() as folder:
        for k, name in enumerate(order):
            jobs = [subprocess.Popen([sys.executable, __file__, "--one-job", name, "--job-steps", str(steps),
                                      "--job-folder", f"{folder}/{k}_{j}"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True) for j in range(2)]
            for job in jobs:
                out, _ = job.communicate()
                if job.returncode:
                    raise RuntimeError(f"bench job {name} failed (exit {job.returncode})")
                step_s[name].append(json.loads(out.strip().splitlines()[-1])["step_s"])
    return {name: statistics.median(values) for name, values in step_s.items()} | {"rounds": rounds, "steps": steps}


def report(results: dict, items: dict, jobs: dict | None, args) -> str:
    host = machine()
    out = ["# A training window's augmentation: avlib's HSV hue shift against torchvision's (`bench/bench_augment.py`)", "",
           f"Command: `uv run --frozen python bench/bench_augment.py --repeats {args.repeats} --calls {args.calls} "
           f"--job-rounds {args.job_rounds} --job-steps {args.job_steps}`  ",
           f"Machine: {host['cpu']}, {host['cores']} cores, 1 torch thread, torch {torch.__version__}. "
           f"Medians over {args.repeats} interleaved rounds of {args.calls} calls; ms per call (one window).", "",
           "| window | hue: torchvision | hue: avlib | x torchvision | differing bytes | video: torchvision's jitter "
           "| video: avlib's jitter | x | windows differing | log-mel | hue's share of a window | window (video + log-mel) x |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ms = r["ms"]
        hue_tv, hue_ours = ms["hue: torchvision"], ms["hue: avlib"]
        video_tv, video_ours, logmel = ms["video, torchvision's jitter"], ms["video, avlib's jitter"], ms["log-mel"]
        out.append(f"| {name} | {hue_tv:.3f} | {hue_ours:.3f} | {hue_ours / hue_tv:.3f} | "
                   f"{r['differing_bytes']} of {20 * 3 * r['pixels']:,} | {video_tv:.3f} | {video_ours:.3f} | "
                   f"{video_ours / video_tv:.3f} | {r['differing_windows']} of 20 | {logmel:.3f} | "
                   f"{hue_tv / (video_tv + logmel):.2f} | {(video_ours + logmel) / (video_tv + logmel):.3f} |")
    out += ["", "*differing bytes*: of the hue shift's output on the bench's frames at 20 factors in [-0.1, 0.1]; "
            "*windows differing*: whole training windows (crop, flip, jitter) at 20 seeds; `tests/test_augment_hue.py` "
            "compares every one of the 2^24 colours.  A training item is two such windows (objective `joint`) and a "
            "step 32 items, so a step's loader work falls by 64x the per-window saving."]
    ms = items["ms"]
    out += ["", f"**A training item** (`AVWindows` on the embedded dataset, objective `joint`: two windows, "
            f"{items['config']}, each with its log-mel): {ms['torchvision']:.2f} ms with torchvision's jitter, "
            f"{ms['avlib']:.2f} ms with avlib's ({ms['avlib'] / ms['torchvision']:.3f}x; the same windows at 20 "
            f"items: {'yes' if items['same'] else 'NO'}); a step of 32 items: {32 * ms['torchvision']:.0f} against "
            f"{32 * ms['avlib']:.0f} ms of a loader worker's CPU."]
    if jobs:
        out += ["", f"**Two trainings at once on two cores** (the study's `--jobs 2`; the `dictionary_size` condition's "
                f"training, 4096 keys, bf16, on 6,000 clips; {jobs['rounds']} rounds ABBA of 2 jobs x {jobs['steps']} steps, "
                f"medians of the step's wall time after step 20): {jobs['torchvision']:.3f} s a step with torchvision's "
                f"jitter, {jobs['avlib']:.3f} s with avlib's ({jobs['avlib'] / jobs['torchvision']:.3f}x; "
                f"{jobs['torchvision'] / jobs['avlib']:.2f}x the steps an hour)."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--job-rounds", type=int, default=2, help="rounds of two trainings at once per jitter (0: none)")
    parser.add_argument("--job-steps", type=int, default=150)
    parser.add_argument("--one-job", choices=list(JITTERS), help=argparse.SUPPRESS)
    parser.add_argument("--job-folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench_augment.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.one_job:
        one_job(args.one_job, args.job_steps, args.job_folder)
        return
    results = {name: measure(frames, size, crop, args.repeats, args.calls) for name, frames, size, crop in WINDOWS}
    items = training_items(args.repeats, args.calls)
    jobs = two_jobs(args.job_rounds, args.job_steps) if args.job_rounds else None
    text = report(results, items, jobs, args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
