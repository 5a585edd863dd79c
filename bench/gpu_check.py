"""The GPU check (issue 32, part 4): one call of at most 8 minutes on one CUDA GPU; writes reports/gpu.md.

    bench/gpu_check.sh                          # = make gpu-check: this script under a time limit
    python bench/gpu_check.py [--device auto|cuda|cpu] [--size full|cpu|smallest] [--out reports/gpu.md]

Five sections, each written to the report as soon as it is done (a run stopped at the time limit keeps
what it measured):

1. Triton kernels: every launch function of :mod:`avlib.kernels.triton_kernels` against its twin in
   :mod:`avlib.kernels.reference` on the same tensors (CUDA; on the CPU under ``TRITON_INTERPRET=1``),
   at odd sizes with duplicated centres, ties and zero weights; tolerances from float32's arithmetic
   (each check's docstring).  A launch function without a check, or without a reference, fails.
2. k-means++ selection (``avlib.active.select``, the default exact-D^2 sampler) at N=65,536, D=512,
   K=256 on the GPU (Triton) and on the CPU (all cores) beside it; issue 32's goal is <= 5 ms on an H200.
3. Training: 200 steps of ``r2plus1d_18`` + ``resnet18_audio`` on 112-px crops (12 frames), bf16 autocast,
   channels-last, batch 32, the default sampler (active), on the embedded dataset generated inside the
   run in a temporary ``AVLIB_HOME``: step time, clips/s, peak GPU memory, data-wait share.
4. torch.compile (inductor): the same training, compiled, for a few steps: the first step's time
   (the compilation), the later steps' against eager's, and the step-0 loss against eager's.
5. The study's ``dictionary_size`` step on this device: its 4096-key runs (``random``, ``active``,
   ``active_official`` with its 427-batch pool; light encoders, ``joint``) for 480 steps each, timed
   over the last 50 (the official pool is full from step 427), on a small embedded dataset (a step
   costs the same whatever the number of clips).  From it, the training hours of the condition's 90
   runs (11,240 steps each) on this device, against ~149 h on the 2-core CPU.  It runs before section 4,
   which takes what is left of the budget.

Without CUDA (``--size cpu``, the default there) the same sections run at tiny sizes on the CPU and
the report says so at its top: none of its numbers is a GPU figure (its compile section uses the light
encoders: inductor's first step on R(2+1)D-18 + ResNet-18 took 620 s on 2 cores).  ``--size smallest``
is the test suite's (tests/test_gpu_path.py): seconds, the light encoders, compile skipped.
Exit status: 0 when every check passed, 1 when one failed, 2 when a module is missing.

Not yet run on a GPU (none has been lent to this project): the full sizes fit 8 minutes by estimate
only; the compile section is skipped when less than 200 s of ``--budget-s`` is left, and the wrapper's
``timeout`` stops anything beyond, keeping the report written so far.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402  (torch does not import triton: TRITON_INTERPRET can still be set below)

U32 = 2.0**-24  # float32 unit roundoff (24 significant bits)
GOAL_SELECT_MS = 5.0  # issue 32: k-means++ at N=65,536 on an H200
NEEDED_MODULES = ("numpy", "av", "torchvision", "torchaudio", "triton", "sklearn", "scipy", "tensorboard", "tqdm")


@dataclass(frozen=True)
class Sizes:
    """One size preset of every section."""

    dense: tuple[int, int, int]  # sqdist_min_update: pool rows N, centres C (4 duplicates added), dimension D
    factored: tuple[int, int, int, int]  # sqdist_min_update_factored: N, C (2 duplicates added), D, H
    draw: tuple[int, int]  # inverse_cdf: weights N, draws M
    badge: tuple[int, int, int]  # badge_grad: candidates N, dictionary M, D
    select: tuple[int, int, int]  # k-means++: N, D, K
    select_repeats: int
    train: dict  # PretrainConfig parameters of the training section
    warmup_steps_excluded: int  # first steps left out of the step-time medians (cuDNN/Triton warm-up)
    compile_steps: int  # 0 = the compile section is skipped
    compile_reserve_s: float  # the compile section runs only with this much of the budget left
    compile_changes: dict = field(default_factory=dict)  # the compile section's changes to ``train``
    note: str = ""  # why the preset is as it is, for the report
    study_steps: int = 0  # section 5: steps of each dictionary_size variant (0 = skipped)
    study_timed_steps: int = 1  # section 5: the last steps its medians are over
    study_changes: dict = field(default_factory=dict)  # section 5: changes to the condition's parameters


CPU_BF16_CONV3D_NOTE = (
    "18 frames, not fewer: on the CPU (oneDNN, torch 2.13) the bf16 weight gradient of a stride-1 Conv3d "
    "with temporal kernel 3 and padding 1 over 2 frames is non-deterministic and often NaN (fp32, or bf16 "
    "without oneDNN, is right); R(2+1)D-18 halves time in layers 2-4, so 3 to 16 input frames put 2 frames "
    "in front of such a convolution (4 frames: NaN embeddings within 8 steps in 4 of 6 runs)")


_PAPER_SCALE = dict(video_encoder="r2plus1d_18", audio_encoder="resnet18_audio", precision="bf16", channels_last=True,
                    probe=False, progress=False, tensorboard=False, monitor_every=0, snapshot_every=0,
                    checkpoint_every=100_000, epochs=1000)
_TINY_DATA = dict(num_classes=3, clips_per_class=8, clip_seconds=2.0, fps=8, frame_size=32, crop_size=24,
                  sample_rate=8000, n_mels=32, window_s=0.5, audio_window_s=1.5, batch_size=4, dictionary_size=8,
                  num_workers=1)
SIZES = {
    # 320 clips of 3 s at 128 px (192 training clips, 6 steps an epoch); 12 frames of 112 px per clip
    "full": Sizes(dense=(65_537, 259, 512), factored=(16_411, 67, 128, 512), draw=(65_537, 4_099),
                  badge=(8_195, 4_096, 128), select=(65_536, 512, 256), select_repeats=10,
                  train=dict(_PAPER_SCALE, num_classes=10, clips_per_class=32, frame_size=128, crop_size=112,
                             window_s=1.5, batch_size=32, max_steps=200),
                  warmup_steps_excluded=10, compile_steps=30, compile_reserve_s=200.0,
                  study_steps=480, study_timed_steps=50),
    "cpu": Sizes(dense=(77, 21, 37), factored=(53, 7, 11, 23), draw=(101, 257), badge=(45, 70, 40),
                 select=(4_096, 128, 64), select_repeats=3,
                 train=dict(_PAPER_SCALE, **{**_TINY_DATA, "fps": 12, "window_s": 1.5}, max_steps=8),
                 warmup_steps_excluded=2, compile_steps=3, compile_reserve_s=0.0,
                 # inductor on R(2+1)D-18 + ResNet-18 takes many minutes on 2 cores: the light encoders
                 compile_changes=dict(video_encoder="light3d", audio_encoder="light2d"),
                 note=CPU_BF16_CONV3D_NOTE, study_steps=6, study_timed_steps=3,
                 study_changes=dict(dictionary_size=64, active_pool_factor=4, batch_size=8)),
    "smallest": Sizes(dense=(33, 5, 7), factored=(17, 3, 5, 4), draw=(31, 64), badge=(9, 11, 8),
                      select=(512, 16, 8), select_repeats=1,  # the light encoders (the paper-scale ones
                      train=dict(_PAPER_SCALE, **{**_TINY_DATA, "num_workers": 0}, max_steps=2,  # took 6-43 s
                                 video_encoder="light3d", audio_encoder="light2d"),  # a step on 2 shared cores)
                      warmup_steps_excluded=1, compile_steps=0, compile_reserve_s=0.0,
                      study_steps=3, study_timed_steps=2,
                      study_changes=dict(dictionary_size=8, active_pool_factor=2, batch_size=4, frame_size=32,
                                         crop_size=24, sample_rate=8000, n_mels=32, num_workers=0)),
}

#: section 5: the study condition whose cost on this device it measures, its variants at the largest
#: dictionary, and its steps a run (avlib/study/conditions.py: 20 epochs of 562 steps)
STUDY_CONDITION = "dictionary_size"
STUDY_VARIANTS = ("random_dict4096", "active_dict4096", "active_official_dict4096")
STUDY_RUN_STEPS = 11_240
STUDY_CPU_HOURS = 149  # the condition's 90 runs in bf16 at 2 jobs on the 2-core CPU (conditions.py's estimate)


class TimeLimit(KeyboardInterrupt):
    """SIGTERM from the wrapper's ``timeout``: stop, keep the report written so far."""


@dataclass
class Results:
    """What the sections found, rendered into the report after each one."""

    device: str
    size: str
    started: float = field(default_factory=time.perf_counter)
    command: str = ""
    kernels: list[dict] | None = None
    dispatch: str = ""
    selection: list[dict] | None = None
    training: dict | str | None = None  # a str says why it did not run
    compiled: dict | str | None = None
    study: list[dict] | str | None = None  # section 5
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# 1. kernels
# ----------------------------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def triton_launch_functions() -> list[str]:
    """The Triton module's public launch functions that have a reference twin (same name, same signature)."""
    from avlib.kernels import reference
    tk = importlib.import_module("avlib.kernels.triton_kernels")
    return sorted(name for name in vars(reference) if not name.startswith("_")
                  and inspect.isfunction(getattr(tk, name, None)))


def _unpaired_triton_functions() -> list[str]:
    """Public functions defined in the Triton module with no reference to check them against."""
    from avlib.kernels import reference
    tk = importlib.import_module("avlib.kernels.triton_kernels")
    return sorted(name for name, value in vars(tk).items() if inspect.isfunction(value) and not name.startswith("_")
                  and value.__module__ == tk.__name__ and not hasattr(reference, name))


def check_sqdist_min_update(tk, ref, sizes: Sizes, device: str) -> dict:
    """Both sides compute ``|x|^2 + |c|^2 - 2 x.c`` in float32; each is within (D + 2) u s of the exact
    value (a length-D dot product within D u |x||c| <= D u s / 2, twice it, and the sum's rounding),
    s = |x|^2 + max |c|^2; so |triton - reference| <= 2 (D + 2) u s.  The zero snap at 256 eps s
    (~3e-5 s) lies inside that, so a value snapped on one side only still passes.  Duplicates of a
    centre must come out exactly 0 (the D^2 weight that keeps them from being drawn)."""
    n, c, d = sizes.dense
    g = _generator(n + c + d)
    x = torch.randn(n, d, generator=g)
    centres = torch.cat([torch.randn(c, d, generator=g), x[:3], x[:1]])  # (C + 4, D): zero distances and a tie
    running = torch.full((n,), math.inf)
    running[::4] = torch.rand(len(running[::4]), generator=g) * d  # some finite running minima
    x, centres, running = x.to(device), centres.to(device), running.to(device)
    x_sqnorm, c_sqnorm = torch.linalg.vecdot(x, x), torch.linalg.vecdot(centres, centres)  # (N,), (C + 4,)
    got = tk.sqdist_min_update(x, x_sqnorm, centres, c_sqnorm, running)
    want = ref.sqdist_min_update(x, x_sqnorm, centres, c_sqnorm, running)
    tolerance = 2 * (d + 2) * U32 * (x_sqnorm + c_sqnorm.max())  # (N,)
    worst = float(((got - want).abs() / tolerance).max())
    zeros = bool(torch.all(got[:3] == 0))
    return dict(sizes=f"N={n:,}, C={c + 4}, D={d}", worst=worst, rule="2 (D+2) u (|x|^2 + max|c|^2)",
                extra=f"duplicates at exactly 0: {'yes' if zeros else 'NO'}", ok=worst <= 1 and zeros)


def check_sqdist_min_update_factored(tk, ref, sizes: Sizes, device: str) -> dict:
    """``|g|^2|h|^2 + |gc|^2|hc|^2 - 2 (g.gc)(h.hc)``: the two dot products (lengths D and H) are within
    D u and H u of their norms' product, so each side is within (D + H + 3) u s of the exact value
    (s = |g|^2|h|^2 + max |gc|^2|hc|^2); |triton - reference| <= 2 (D + H + 3) u s.  Duplicated
    outer products must be at exactly 0."""
    n, c, d, h = sizes.factored
    gen = _generator(n * c)
    g, hh = torch.randn(n, d, generator=gen), torch.randn(n, h, generator=gen)
    gc = torch.cat([torch.randn(c, d, generator=gen), g[:2]])  # (C + 2, D)
    hc = torch.cat([torch.randn(c, h, generator=gen), hh[:2]])  # (C + 2, H)
    g, hh, gc, hc = g.to(device), hh.to(device), gc.to(device), hc.to(device)
    sqnorm = torch.linalg.vecdot(g, g) * torch.linalg.vecdot(hh, hh)  # (N,)
    c_sqnorm = torch.linalg.vecdot(gc, gc) * torch.linalg.vecdot(hc, hc)  # (C + 2,)
    running = torch.full((n,), math.inf, device=device)
    got = tk.sqdist_min_update_factored(g, hh, sqnorm, gc, hc, c_sqnorm, running)
    want = ref.sqdist_min_update_factored(g, hh, sqnorm, gc, hc, c_sqnorm, running)
    tolerance = 2 * (d + h + 3) * U32 * (sqnorm + c_sqnorm.max())  # (N,)
    worst = float(((got - want).abs() / tolerance).max())
    zeros = bool(torch.all(got[:2] == 0))
    return dict(sizes=f"N={n:,}, C={c + 2}, D={d}, H={h}", worst=worst, rule="2 (D+H+3) u s",
                extra=f"duplicates at exactly 0: {'yes' if zeros else 'NO'}", ok=worst <= 1 and zeros)


def check_inverse_cdf(tk, ref, sizes: Sizes, device: str) -> dict:
    """A binary search in the same float64 prefix sum: the indices must be equal, exactly, including
    values on bucket edges; a zero-weight entry (an empty bucket) is never drawn."""
    n, m = sizes.draw
    gen = _generator(3)
    weights = torch.rand(n, dtype=torch.float64, generator=gen)
    zero = torch.tensor([0, 3, 4, n // 2, n - 1])
    weights[zero] = 0.0  # zero weights at both ends and in a run
    weights[7] = weights[8]  # a tie
    cumsum = weights.cumsum(0)  # (N,) float64
    values = torch.rand(m, dtype=torch.float64, generator=gen) * cumsum[-1]  # (M,)
    values[:3] = torch.tensor([0.0, cumsum[5].item(), cumsum[n - 3].item()], dtype=torch.float64)  # bucket edges
    cumsum, values = cumsum.to(device), values.to(device)
    got, want = tk.inverse_cdf(cumsum, values), ref.inverse_cdf(cumsum, values)
    mismatches = int((got != want).sum())
    drew_zero = bool(torch.isin(got.cpu(), zero).any())
    return dict(sizes=f"N={n:,}, M={m:,}", worst=float(mismatches), rule="exact (indices differing)",
                extra=f"zero-weight entries drawn: {'YES' if drew_zero else 'no'}", ok=mismatches == 0 and not drew_zero)


def check_badge_grad(tk, ref, sizes: Sizes, device: str, temperature: float = 0.1) -> dict:
    """Labels: each side's must be a most similar dictionary item up to float32 rounding of the logits
    (an exact float64 logit within 2 D u / tau of the best): among (near-)tied items either is right,
    and at 8,195 candidates x 4,096 items about 7 top-2 gaps fall inside that.  So the gradient
    ``(softmax(z W^T / tau) W - W[y]) / tau`` is compared without its label term, which is exact:
    the softmax part's logits are within D u / tau, which moves the softmax by at most 2 D u / tau in
    l1, and the weighted sum over M items adds M u; adding back W[y] / tau rounds by 2 u / tau; so
    each side is within (2 D u / tau + M u + 2 u) / tau per element and the two within twice that."""
    n, m, d = sizes.badge
    gen = _generator(n + m)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1)  # (N, D)
    dictionary = torch.nn.functional.normalize(torch.randn(m, d, generator=gen), dim=1)  # (M, D)
    dictionary[m - 1] = dictionary[1]  # a duplicated item: tied logits
    z[0] = dictionary[1]  # candidate 0's best item is tied between items 1 and M - 1
    z, dictionary = z.to(device), dictionary.to(device)
    got_g, got_y = tk.badge_grad(z, dictionary, temperature)
    want_g, want_y = ref.badge_grad(z, dictionary, temperature)
    exact = (z.double() @ dictionary.double().T) / temperature  # (N, D) @ (D, M) -> (N, M)
    best = exact.max(dim=1).values  # (N,)
    tie = 2 * d * U32 / temperature
    wrong_labels = sum(int((exact.gather(1, y[:, None]).squeeze(1) < best - tie).sum()) for y in (got_y, want_y))
    got_soft = got_g + dictionary[got_y] / temperature  # (N, D): softmax(z W^T / tau) W / tau
    want_soft = want_g + dictionary[want_y] / temperature
    tolerance = 2 * (2 * d * U32 / temperature + m * U32 + 2 * U32) / temperature
    worst = float((got_soft - want_soft).abs().max() / tolerance)
    differing = int((got_y != want_y).sum())
    return dict(sizes=f"N={n:,}, M={m:,}, D={d}", worst=worst, rule="2 (2 D u / tau + M u + 2 u) / tau",
                extra=f"labels not a best item: {wrong_labels}; labels differing (ties): {differing}",
                ok=worst <= 1 and wrong_labels == 0)


KERNEL_CHECKS = {
    "sqdist_min_update": check_sqdist_min_update,
    "sqdist_min_update_factored": check_sqdist_min_update_factored,
    "inverse_cdf": check_inverse_cdf,
    "badge_grad": check_badge_grad,
}


def check_kernels(sizes: Sizes, device: str) -> list[dict]:
    """One row per Triton launch function (and one per function that cannot be checked)."""
    from avlib.kernels import reference
    tk = importlib.import_module("avlib.kernels.triton_kernels")
    rows = []
    for name in triton_launch_functions():
        started = time.perf_counter()
        if name not in KERNEL_CHECKS:
            rows.append(dict(kernel=name, sizes="", worst=math.nan, rule="", ok=False,
                             extra="no check in bench/gpu_check.py: add one to KERNEL_CHECKS"))
            continue
        try:
            row = KERNEL_CHECKS[name](tk, reference, sizes, device)
        except Exception as error:  # a kernel that does not run is a failed check, with its error
            row = dict(sizes="", worst=math.nan, rule="", ok=False, extra=f"error: {type(error).__name__}: {error}")
        rows.append(dict(kernel=name, seconds=time.perf_counter() - started, **row))
    for name in _unpaired_triton_functions():
        rows.append(dict(kernel=name, sizes="", worst=math.nan, rule="", ok=False,
                         extra="no reference twin in avlib/kernels/reference.py to check it against"))
    return rows


# ----------------------------------------------------------------------------------------------
# 2. selection
# ----------------------------------------------------------------------------------------------


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_selection(sizes: Sizes, devices: list[str]) -> list[dict]:
    """Median and fastest wall time of ``select(x, K)`` (k-means++), after one warm-up call (Triton's
    compilation), on a Gaussian mixture (bench_select.py's data); the potential of each device's picks
    relative to the CPU's (both exact D^2 sampling: ~1.00)."""
    from avlib.active import kmeanspp_potential, select
    from bench_select import mixture

    n, d, k = sizes.select
    x = mixture(n, d)  # (N, D) float32
    rows = []
    for device in devices:
        on_device = x.to(device)

        def run(seed: int) -> torch.Tensor:
            picks = select(on_device, k, generator=_generator(seed))
            _synchronize(device)
            return picks

        run(0)  # warm-up
        times, potentials = [], []
        for seed in range(sizes.select_repeats):
            started = time.perf_counter()
            picks = run(seed)
            times.append(time.perf_counter() - started)
            potentials.append(kmeanspp_potential(x, picks.cpu()))
        rows.append(dict(device=device, threads=torch.get_num_threads(), median_ms=1000 * statistics.median(times),
                         min_ms=1000 * min(times), repeats=len(times), potential=statistics.median(potentials)))
    cpu_potential = next(r["potential"] for r in rows if r["device"] == "cpu")
    for row in rows:
        row["potential_rel"] = row["potential"] / cpu_potential
    return rows


# ----------------------------------------------------------------------------------------------
# 3. and 4. training
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def watching_batches(seen: dict):
    """Records whether the loader's first batch arrived pinned (page-locked: asynchronous copies)."""
    from avlib.train import loop

    real_step = loop.train_step

    def step(t, batch, step_index):
        seen.setdefault("pinned", bool(batch["video"].is_pinned()))
        return real_step(t, batch, step_index)

    loop.train_step = step
    try:
        yield seen
    finally:
        loop.train_step = real_step


def train(sizes: Sizes, device: str, run_dir: Path, **changes) -> dict:
    """``pretrain`` with the section's configuration (``changes`` on top); timings from metrics.csv."""
    from avlib.config import PretrainConfig
    from avlib.data.dataset import embedded_spec
    from avlib.data.synthetic import default_root, generate
    from avlib.train import pretrain, read_metrics

    params = {"num_workers": max(1, min(14, (os.cpu_count() or 2) - 2)), "num_threads": min(4, os.cpu_count() or 1),
              **sizes.train, **changes}  # the presets without a worker count: all cores but two load batches
    cfg = PretrainConfig(run_dir=str(run_dir), device=device, **params)
    started = time.perf_counter()
    spec = embedded_spec(cfg)
    generate(default_root(spec), spec, workers=os.cpu_count() or 2)  # in parallel; pretrain then finds it cached
    generated_s = time.perf_counter() - started
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    with watching_batches({}) as seen:
        try:
            summary = pretrain(cfg)
        except Exception as error:  # say how far it got: the steps metrics.csv holds and their losses
            done = read_metrics(cfg.run_dir) if (run_dir / "metrics.csv").is_file() else []
            raise RuntimeError(f"training ({', '.join(f'{k}={v}' for k, v in changes.items()) or 'eager'}) failed "
                               f"after {len(done)} steps (losses {[round(r['loss'], 4) for r in done]}): "
                               f"{type(error).__name__}: {error}") from error
    wall_s = time.perf_counter() - started
    rows = read_metrics(cfg.run_dir)
    timed = rows[sizes.warmup_steps_excluded:] or rows
    step_s = statistics.median(r["step_s"] for r in timed)
    losses = [r["loss"] for r in rows]
    return dict(
        steps=len(rows), batch=cfg.batch_size, crop=cfg.crop_size, frames=cfg.window_frames, workers=cfg.num_workers,
        encoders=f"{cfg.video_encoder} + {cfg.audio_encoder}", precision=cfg.precision, channels_last=cfg.channels_last,
        compile=cfg.compile, sampler=cfg.sampler, train_clips=summary.get("train_clips"),
        generated_s=generated_s, wall_s=wall_s, step_ms=1000 * step_s, clips_per_s=cfg.batch_size / step_s,
        first_step_ms=1000 * rows[0]["step_s"], timed_steps=len(timed),
        data_wait_share=sum(r["data_s"] for r in timed) / max(1e-12, sum(r["step_s"] for r in timed)),
        select_ms=1000 * statistics.median(r.get("select_s", 0.0) for r in timed),
        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
        pinned=seen.get("pinned"), first_loss=losses[0], last_loss=losses[-1],
        finite=all(math.isfinite(v) for v in losses),
    )


def study_steps(sizes: Sizes, device: str, runs: Path) -> list[dict]:
    """Section 5: each of :data:`STUDY_VARIANTS` with the condition's own parameters (the study's light
    encoders, objective, dictionary and pool) on the training section's small dataset, for
    ``sizes.study_steps`` steps; medians over the last ``sizes.study_timed_steps``."""
    from avlib.study.conditions import CONDITIONS

    condition = CONDITIONS[STUDY_CONDITION]
    small_data = {k: sizes.train[k] for k in ("num_classes", "clips_per_class")}
    rows = []
    for name in STUDY_VARIANTS:
        own = condition.variant(name).params
        params = {**own, **small_data, "epochs": 1000, "max_steps": sizes.study_steps,
                  "probe": False, "progress": False, "tensorboard": False, "monitor_every": 0, "snapshot_every": 0,
                  "checkpoint_every": 100_000, **sizes.study_changes}
        timed = dataclasses.replace(sizes, train=params, warmup_steps_excluded=sizes.study_steps - sizes.study_timed_steps)
        row = train(timed, device, runs / name)
        rows.append({"variant": name, **row, "dictionary": params["dictionary_size"],  # a pool only where the variant has one
                     "pool_batches": params["active_pool_factor"] if "active_pool_factor" in own else None})
    return rows


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> str:
    found = [f"torch {torch.__version__} (CUDA {torch.version.cuda})"]
    for name in ("triton", "torchvision"):
        with contextlib.suppress(Exception):
            found.append(f"{name} {importlib.import_module(name).__version__}")
    return ", ".join(found) + f", python {platform.python_version()}"


def render(results: Results) -> str:
    cuda = results.device.startswith("cuda")
    if cuda:
        props = torch.cuda.get_device_properties(results.device)
        top = (f"**GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
               f"{props.major}.{props.minor}, {props.multi_processor_count} SMs.**")
    else:
        top = ("**CPU MODE: no CUDA device was used. Every number below comes from the CPU at tiny sizes "
               f"(size `{results.size}`); none of them is a GPU figure. Run `make gpu-check` on a CUDA machine "
               "for those.**")
    elapsed = time.perf_counter() - results.started
    lines = ["# GPU check (bench/gpu_check.py)", "", top, "",
             f"- command: `{results.command}`; size `{results.size}`, device `{results.device}`; "
             f"{elapsed:.0f} s so far" if results.compiled is None else
             f"- command: `{results.command}`; size `{results.size}`, device `{results.device}`; {elapsed:.0f} s in all",
             f"- host: {_cpu_model()}, {os.cpu_count()} logical CPUs; {_versions()}", ""]
    for note in results.notes:
        lines.append(f"- note: {note}")
    if results.failed:
        lines.append(f"- **FAILED: {', '.join(results.failed)}**")
    lines.append("")

    lines += ["## 1. Triton kernels against their PyTorch references", ""]
    if results.kernels is None:
        lines += ["not run", ""]
    else:
        where = "CUDA tensors" if cuda else "CPU tensors, Triton's interpreter (TRITON_INTERPRET=1)"
        lines += [f"On {where}. `worst` is the largest |triton - reference| over the tolerance (<= 1 passes; "
                  "for `inverse_cdf` the number of indices that differ). u = 2^-24.", "",
                  f"Dispatch: {results.dispatch}", "",
                  "| kernel | sizes | worst | tolerance | also | s | result |", "|---|---|---:|---|---|---:|---|"]
        for row in results.kernels:
            lines.append(f"| `{row['kernel']}` | {row['sizes']} | {row['worst']:.3g} | {row['rule']} | {row['extra']} | "
                         f"{row.get('seconds', math.nan):.1f} | {'ok' if row['ok'] else 'FAIL'} |")
        lines.append("")

    lines += ["## 2. k-means++ selection", ""]
    if results.selection is None:
        lines += ["not run", ""]
    else:
        lines += ["`avlib.active.select(x, K)` (exact D^2 sampling by rejection from blocked bounds) on a Gaussian "
                  "mixture (100 clusters), one warm-up call first; potential relative to the CPU's picks.", "",
                  "| device | N, D, K | threads | median ms | min ms | repeats | potential (rel. to CPU) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        n, d, k = SIZES[results.size].select
        for row in results.selection:
            lines.append(f"| {row['device']} | {n:,}, {d}, {k} | {row['threads']} | {row['median_ms']:.2f} | "
                         f"{row['min_ms']:.2f} | {row['repeats']} | {row['potential_rel']:.3f} |")
        gpu = [r for r in results.selection if r["device"].startswith("cuda")]
        if gpu and (n, d, k) == (65_536, 512, 256):
            verdict = "met" if gpu[0]["median_ms"] <= GOAL_SELECT_MS else "NOT met"
            lines += ["", f"Goal (issue 32): <= {GOAL_SELECT_MS:g} ms at N=65,536 on an H200: {verdict} "
                      f"({gpu[0]['median_ms']:.2f} ms on {torch.cuda.get_device_name(gpu[0]['device'])})."]
        else:
            lines += ["", f"Goal (issue 32): <= {GOAL_SELECT_MS:g} ms at N=65,536 on an H200: not measured here."]
        lines.append("")

    for number, title, key in ((3, "Training", "training"), (4, "torch.compile (inductor)", "compiled")):
        run = getattr(results, key)
        lines += [f"## {number}. {title}", ""]
        if run is None or isinstance(run, str):
            lines += [run or "not run", ""]
            continue
        lines += [f"{run['steps']} steps of {run['encoders']}, {run['crop']}-px crops, {run['frames']} frames, "
                  f"batch {run['batch']}, {run['precision']}, channels_last={run['channels_last']}, "
                  f"compile={run['compile']}, sampler={run['sampler']}, {run['train_clips']} training clips "
                  f"(embedded dataset, generated in {run['generated_s']:.1f} s), loader workers: {run['workers']}; "
                  f"pretrain took {run['wall_s']:.1f} s (decoding, models, steps, the final checkpoint). Medians over "
                  f"the last {run['timed_steps']} steps.", "",
                  "| step ms | clips/s | first step ms | data-wait share | selection ms | peak GPU memory | "
                  "batches pinned | loss first -> last |", "|---:|---:|---:|---:|---:|---:|---|---|",
                  f"| {run['step_ms']:.1f} | {run['clips_per_s']:.1f} | {run['first_step_ms']:.0f} | "
                  f"{run['data_wait_share']:.3f} | {run['select_ms']:.2f} | "
                  + (f"{run['peak_gib']:.2f} GiB" if run["peak_gib"] is not None else "n/a (CPU)")
                  + f" | {run['pinned']} | {run['first_loss']:.4f} -> {run['last_loss']:.4f} |", ""]
        if key == "compiled":
            eager = run["eager"]
            lines += ["The first step includes the compilation (inductor keeps compiled kernels in its on-disk cache, "
                      "so a second run on the same machine compiles faster).", "",
                      f"Against eager (the same configuration and steps, run after it): step {run['step_ms']:.1f} vs {eager['step_ms']:.1f} ms "
                      f"({eager['step_ms'] / run['step_ms']:.2f}x); step-0 loss {run['first_loss']:.6f} vs "
                      f"{eager['first_loss']:.6f} (same weights and batch: |gap| {abs(run['first_loss'] - eager['first_loss']):.2e}).", ""]
    lines += [f"## 5. The study's `{STUDY_CONDITION}` step", ""]
    if results.study is None or isinstance(results.study, str):
        lines += [results.study or "not run", ""]
    else:
        lines += [f"The condition's parameters ({', '.join(STUDY_VARIANTS)}; `avlib/study/conditions.py`) on a small "
                  f"embedded dataset; medians over the last {results.study[0]['timed_steps']} of "
                  f"{results.study[0]['steps']} steps.", "",
                  "| variant | keys | pool (batches) | step ms | selection ms | data-wait share | clips/s | "
                  "training h a run | peak GPU memory | loss first -> last |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        for row in results.study:
            lines.append(f"| `{row['variant']}` | {row['dictionary']} | {row['pool_batches'] or '–'} | {row['step_ms']:.1f} | "
                         f"{row['select_ms']:.2f} | {row['data_wait_share']:.3f} | {row['clips_per_s']:.1f} | "
                         f"{STUDY_RUN_STEPS * row['step_ms'] / 3.6e6:.2f} | "
                         + (f"{row['peak_gib']:.2f} GiB" if row["peak_gib"] is not None else "n/a (CPU)")
                         + f" | {row['first_loss']:.4f} -> {row['last_loss']:.4f} |")
        # 30 runs of each method (3 sizes x 10 seeds); the 4096-key step bounds the smaller dictionaries' from above
        hours = sum(30 * STUDY_RUN_STEPS * row["step_ms"] / 3.6e6 for row in results.study)
        lines += ["", f"The condition's 90 runs, training only (the probes left out), with every size at the 4096-key "
                  f"step (an upper bound for 256 and 1024 keys): **{hours:.1f} h** on this device, one run at a time, "
                  f"against ~{STUDY_CPU_HOURS} h of run time on the 2-core CPU (probes included)"
                  + ("." if cuda else "; at this size and on the CPU, not a GPU figure."), ""]
    return "\n".join(lines)


def write(results: Results, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results))


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(data_home: str | None, interpret: bool):
    """A temporary AVLIB_HOME (the generated dataset and its cache), the interpreter for CPU kernels, and
    torch's thread count, each restored on exit (the test suite calls :func:`main` in its own process)."""
    saved = {name: os.environ.get(name) for name in ("AVLIB_HOME", "TRITON_INTERPRET")}
    threads = torch.get_num_threads()
    matmul_precision = torch.get_float32_matmul_precision()
    with contextlib.ExitStack() as stack:
        home = data_home or stack.enter_context(tempfile.TemporaryDirectory(prefix="avlib-gpu-check-"))
        os.environ["AVLIB_HOME"] = home
        if interpret:
            os.environ["TRITON_INTERPRET"] = "1"
        torch.set_float32_matmul_precision("highest")  # the references' matrix products in full float32
        try:
            yield Path(home)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            torch.set_num_threads(threads)
            torch.set_float32_matmul_precision(matmul_precision)


def missing_modules() -> list[str]:
    missing = []
    for name in NEEDED_MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - any failure to import is reported the same way
            missing.append(f"{name} ({type(error).__name__}: {error})")
    return missing


def main(argv: list[str] | None = None, *, stop_on_sigterm: bool = False) -> int:
    """The check; ``stop_on_sigterm`` (the script's, under gpu_check.sh's ``timeout``) turns SIGTERM into a
    last report and exit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                        help="auto: cuda when torch sees a CUDA device, else cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="default: full on CUDA, cpu otherwise")
    parser.add_argument("--out", default=str(ROOT / "reports" / "gpu.md"))
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="seconds this run may take; the compile section is skipped when too little is left")
    parser.add_argument("--data-home", default=None, help="AVLIB_HOME to generate the dataset in (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    size = args.size or ("full" if device == "cuda" else "cpu")
    sizes = SIZES[size]
    out = Path(args.out)
    results = Results(device=device, size=size,
                      command="python " + " ".join([Path(sys.argv[0]).name if argv is None else "bench/gpu_check.py",
                                                    *(sys.argv[1:] if argv is None else argv)]))
    previous_handler, owner = None, os.getpid()
    if stop_on_sigterm and threading.current_thread() is threading.main_thread():
        def stop(signum, _frame):
            if os.getpid() != owner:  # a forked worker (the dataset generator's pool) ends as by default
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            raise TimeLimit()
        previous_handler = signal.signal(signal.SIGTERM, stop)
    status = 0
    try:  # the interpreter is set before avlib.kernels (and Triton's decorators) are first imported
        with environment(args.data_home, interpret=device == "cpu") as home, tempfile.TemporaryDirectory(
                prefix="gpu-check-runs-") as runs:
            missing = missing_modules()
            if missing:
                results.failed.append("missing modules: " + "; ".join(missing))
                results.notes.append("install the locked environment (`uv sync --frozen`), or on a machine without "
                                     "a registry carry the missing packages as wheels (bench/README.md)")
                status = 2
            else:
                run_sections(results, sizes, device, out, Path(runs), args.budget_s)
                results.notes.append(f"the embedded dataset was generated in a temporary AVLIB_HOME ({home}), "
                                     "removed afterwards")
    except KeyboardInterrupt as stopped:  # TimeLimit, or the loop's Interrupted (it checkpoints on SIGTERM)
        results.failed.append(f"stopped by SIGTERM (the time limit) or Ctrl-C before every section ran {stopped}".strip())
    except Exception as error:  # the report says where it broke; the traceback goes to stderr
        traceback.print_exc()
        results.failed.append(f"error: {type(error).__name__}: {error}")
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if results.compiled is None:
        results.compiled = "not run"
    write(results, out)
    print(render(results), flush=True)
    print(f"wrote {out}")
    return status or (1 if results.failed else 0)


def run_sections(results: Results, sizes: Sizes, device: str, out: Path, runs: Path, budget_s: float) -> None:
    """The five sections (5 before 4), the report rewritten after each."""
    from avlib import kernels

    if sizes.note:
        results.notes.append(sizes.note)
    probe = torch.zeros(2, 2, device=device)
    results.dispatch = (f"`avlib.kernels.use_triton` on a {device} float32 tensor: {kernels.use_triton(probe)}; "
                        f"Triton imported: {kernels._triton is not None}")
    results.kernels = check_kernels(sizes, device)
    results.failed += [f"kernel {r['kernel']}" for r in results.kernels if not r["ok"]]
    write(results, out)
    print(render(results).split("## 2.")[0], flush=True)

    torch.set_num_threads(os.cpu_count() or 1)  # the CPU figure with every core
    results.selection = time_selection(sizes, [device, "cpu"] if device == "cuda" else ["cpu"])
    write(results, out)

    results.training = train(sizes, device, runs / "eager")
    if not results.training["finite"]:
        results.failed.append("training (a loss is not finite)")
    write(results, out)

    if sizes.study_steps:  # section 5 before 4: the compile section takes what is left of the budget
        results.study = study_steps(sizes, device, runs / "study")
        results.failed += [f"{STUDY_CONDITION} {r['variant']} (a loss is not finite)" for r in results.study
                           if not r["finite"]]
    else:
        results.study = f"skipped at size `{results.size}`"
    write(results, out)

    left = budget_s - (time.perf_counter() - results.started)
    if sizes.compile_steps == 0:
        results.compiled = (f"skipped at size `{results.size}` (inductor's first compilation takes minutes on a "
                            "small CPU); tests/test_gpu_path.py checks the compile path with aot_eager")
    elif left < sizes.compile_reserve_s:
        results.compiled = (f"skipped: {left:.0f} s of the {budget_s:.0f}-s budget left, "
                            f"{sizes.compile_reserve_s:.0f} s needed")
    else:
        changes = dict(sizes.compile_changes, max_steps=sizes.compile_steps)
        results.compiled = train(sizes, device, runs / "compiled", compile=True, **changes)
        results.compiled["eager"] = train(sizes, device, runs / "compile-eager", **changes)
        if not (results.compiled["finite"] and results.compiled["eager"]["finite"]):
            results.failed.append("compiled training (a loss is not finite)")


if __name__ == "__main__":
    sys.exit(main(stop_on_sigterm=True))
