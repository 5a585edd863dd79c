"""The GPU path exercised on the CPU (issue 32, parts 3 and 4): bf16 autocast, channels-last layouts,
torch.compile, pinned-memory copies, and bench/gpu_check.py's CPU mode.

Why each comparison is made at the same state ("teacher-forced"), not between two free runs: the loop
is run once (``pretrain``), and at every step a twin of the run -- deep copies of the models and the
sampler, one setting changed -- computes its loss on the same batch before the real step.  Two free
runs do not stay together on this tiny configuration whatever the precision: channels-last against
contiguous R(2+1)D-18 in float32 starts 7e-7 apart in loss and is 0.19 apart after one AdamW step
(0.06 after one SGD step).  Its gradients are ill-conditioned at this size (batch 4): at the same
state the two layouts' float32 gradients were 0.65% apart while their convolutions agree to 1e-6,
and bf16 gradients of the light encoders were 10-60% off float32's in norm, per tensor; an update
turns that into other weights.  Compared at the same state, the losses differ by what the setting
does to one forward pass, which the arithmetic bounds.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from avlib.train import loop, pretrain
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_STEP = loop.train_step  # the loop's own step, which the wrappers below call
BF16_UNIT_ROUNDOFF = 2.0**-8  # 8 significant bits (7 stored + the implicit one), round to nearest
FP32_UNIT_ROUNDOFF = 2.0**-24  # 24 significant bits


def forward_loss_tolerance(model: nn.Module, unit_roundoff: float, temperature: float, dim: int) -> float:
    """How far one InfoNCE loss moves when the encoders round at ``unit_roundoff`` instead of exactly.

    Each conv/linear layer rounds its input, its weight and its output (3 roundings); with L layers on
    the longer modality's path (encoder + head) an embedding carries n = 3L independent round-to-nearest
    errors, whose sum grows like sqrt(n) * u (the statistical rule; n * u is the worst case), and batch
    norm resets the scale after every layer.  A logit q.k / tau between unit vectors moves by
    |dq.k| + |q.dk|; an error vector in a random direction of R^D meets k with cos ~ 1/sqrt(D), so
    2 sqrt(n) u / (tau sqrt(D)).  The loss -z_y + logsumexp(z) moves by at most twice the largest logit
    change (its gradient in z has l1 norm <= 2).  So tol = 4 sqrt(n) u / (tau sqrt(D)).  The tiny light
    encoders (7 layers, D = 128, tau = 0.07): 0.090 in bf16, 1.4e-6 in float32.
    """
    def layers(part: nn.Module) -> int:
        return sum(isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)) for m in part.modules())

    depth = max(layers(model.video_backbone) + layers(model.video_head),
                layers(model.audio_backbone) + layers(model.audio_head))
    return 4 * math.sqrt(3 * depth) * unit_roundoff / (temperature * math.sqrt(dim))


def quick_config(run_dir: Path, **overrides):
    """The tiny configuration for 3 steps of training only (MoCo's FIFO queue: ``sampler=random``; the
    active sampler's k-means++ draws are discontinuous in the keys, so a rounding can change which enter)."""
    return tiny_config(run_dir, **{**dict(max_steps=3, probe=False, tensorboard=False, monitor_every=0,
                                          snapshot_every=0, checkpoint_every=100, sampler="random"), **overrides})


def twin(t: loop.Training, model: nn.Module | None = None, momentum_model: nn.Module | None = None,
         **changes) -> loop.Training:
    """A copy of the run's state (models, sampler) with config ``changes``, run eagerly in one process;
    its own optimiser step is thrown away (a plain SGD over the copy, so a float64 copy can take it)."""
    model = copy.deepcopy(t.model if model is None else model)
    momentum_model = copy.deepcopy(t.momentum_model if momentum_model is None else momentum_model)
    return dataclasses.replace(t, cfg=dataclasses.replace(t.cfg, **changes), model=model,
                               momentum_model=momentum_model, online=model, keys_model=momentum_model,
                               sampler=copy.deepcopy(t.sampler), optimizer=torch.optim.SGD(model.parameters(), lr=0.0))


def run_with_twins(monkeypatch, cfg, twins: dict, stale: bool = False, after_step=None):
    """``pretrain(cfg)`` with each twin's loss computed at every step, before the real step.

    ``twins`` maps a name to ``make(t, batch) -> (twin Training, its batch)``.  With ``stale``, also the
    loss of the run's models one update behind (from step 1): the control, a real divergence of one
    optimiser step.  ``after_step(t)`` is called after each real step.  Returns ({name: [loss per step]}
    with "run" the loop's own, the Training)."""
    real_step = TRAIN_STEP
    losses: dict[str, list[float]] = {"run": [], **{name: [] for name in twins}, **({"stale": []} if stale else {})}
    seen: dict = {}

    def step_with_twins(t, batch, step):
        seen["training"] = t
        for name, make in twins.items():
            other, other_batch = make(t, batch)
            losses[name].append(real_step(other, other_batch, step).diagnostics["loss"])
        if stale and "previous" in seen:
            behind = twin(t, *seen["previous"], compile=False)
            losses["stale"].append(real_step(behind, batch, step).diagnostics["loss"])
        if stale:
            seen["previous"] = (copy.deepcopy(t.model), copy.deepcopy(t.momentum_model))
        outcome = real_step(t, batch, step)
        losses["run"].append(outcome.diagnostics["loss"])
        if after_step is not None:
            after_step(t)
        return outcome

    monkeypatch.setattr(loop, "train_step", step_with_twins)
    pretrain(cfg)
    return losses, seen["training"]


def gaps(a: list[float], b: list[float]) -> list[float]:
    assert len(a) == len(b) > 0
    return [abs(x - y) for x, y in zip(a, b)]


def layouts(t: loop.Training, memory_format_3d, memory_format_2d) -> None:
    """Set the memory format of every backbone in place (what build_training does for channels_last)."""
    for model in (t.model, t.momentum_model):
        model.video_backbone.to(memory_format=memory_format_3d)
        model.audio_backbone.to(memory_format=memory_format_2d)


def float64_twin(t, batch):
    """The exact reference: the same state in float64, contiguous (the loss itself stays float32: its
    inputs are rounded to float32 once, an error of u * 2/tau per logit, far below the encoders')."""
    other = twin(t, precision="fp32", channels_last=False)
    other.model.double()
    other.momentum_model.double()
    other.optimizer = torch.optim.SGD(other.model.parameters(), lr=0.0)
    layouts(other, torch.contiguous_format, torch.contiguous_format)
    return other, {**batch, "video": batch["video"].double(), "audio": batch["audio"].double()}


# ----------------------------------------------------------------------------- bf16


def test_bf16_losses_match_float32_within_the_bf16_tolerance(monkeypatch, tmp_path):
    """The loop's bf16 run, step by step against a float32 twin of the same state: inside the derived
    bf16 tolerance, and never bit-equal (autocast really ran, in bf16, on every step)."""
    cfg = quick_config(tmp_path / "bf16", precision="bf16")
    conv_dtypes: list[torch.dtype] = []
    real_build = loop.build_training

    def build_and_watch(*args, **kwargs):  # the dtype the encoders' first convolutions compute in
        t = real_build(*args, **kwargs)
        for backbone in (t.model.video_backbone, t.model.audio_backbone):
            first = next(m for m in backbone.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
            first.register_forward_hook(  # deep copies (the twins) carry the hook: count the run's own module
                lambda module, _i, out, first=first: conv_dtypes.append(out.dtype) if module is first else None)
        return t

    monkeypatch.setattr(loop, "build_training", build_and_watch)
    losses, t = run_with_twins(monkeypatch, cfg, {"fp32": lambda t, b: (twin(t, precision="fp32"), b)}, stale=True)
    tolerance = forward_loss_tolerance(t.model, BF16_UNIT_ROUNDOFF, cfg.temperature, cfg.embedding_dim)
    assert 0.08 < tolerance < 0.1  # 0.090 for the tiny light encoders (see forward_loss_tolerance)
    bf16_gaps = gaps(losses["run"], losses["fp32"])
    assert max(bf16_gaps) <= tolerance, (bf16_gaps, tolerance)
    assert min(bf16_gaps) > 0, f"bf16 losses equal float32's bit for bit: autocast did not run ({bf16_gaps})"
    assert len(conv_dtypes) == 2 * 3 and set(conv_dtypes) == {torch.bfloat16}, conv_dtypes  # 2 encoders, 3 steps
    # control: the models one optimiser step behind are beyond the tolerance (it resolves one update)
    stale_gaps = gaps(losses["run"][1:], losses["stale"])
    assert max(stale_gaps) > tolerance, (stale_gaps, tolerance)


def test_bf16_tolerance_rejects_another_seed(monkeypatch, tmp_path):
    """Control on the free runs: the same configuration at another seed (other initial weights and
    batches) is far outside the bf16 tolerance already at step 0, where both runs start from their
    untrained models; the bf16 run at the seed itself is inside it at step 0."""
    runs = {name: run_with_twins(monkeypatch, quick_config(tmp_path / name, max_steps=1, **params), {})
            for name, params in {"fp32": {}, "bf16": {"precision": "bf16"}, "seed1": {"seed": 1}}.items()}
    first = {name: losses["run"][0] for name, (losses, _) in runs.items()}
    cfg = quick_config(tmp_path)
    tolerance = forward_loss_tolerance(runs["fp32"][1].model, BF16_UNIT_ROUNDOFF, cfg.temperature, cfg.embedding_dim)
    assert abs(first["bf16"] - first["fp32"]) <= tolerance, first
    assert abs(first["seed1"] - first["fp32"]) > tolerance, first


# ----------------------------------------------------------------------------- channels-last


def test_channels_last_r2plus1d_losses_match_contiguous(monkeypatch, tmp_path):
    """R(2+1)D-18 (tiny: 32-px frames, 24-px crops, 4 frames) with channels_last: the weights and the
    clips the encoders see are channels-last, and every step's loss equals a contiguous twin's within
    float32's own error at that state.

    Two steps (the initial state and one after an update: 31M parameters copied per twin and step).
    Tolerance: 8x the contiguous twin's distance from a float64 twin (the exact loss), the larger of
    the two steps.  This deep network at 24 px amplifies rounding far beyond the per-rounding estimate of
    :func:`forward_loss_tolerance` (3e-6 for its 39 layers): measured 1e-5 to 6e-5 from float64 in
    float32, so its error is measured, not estimated.  Channels-last is the same float32 arithmetic in
    another order, so its error has that size too; two such errors differ by up to about twice it,
    and 8 leaves 4x for the spread of a single error sample.
    Measured at seeds 0-3 (3 steps): tolerance 6e-5 to 3e-4, the largest channels-last gap 8-24% of it
    (4-13% over the first 2 steps).  Control: the
    contiguous twin fed its clips with the frames in reverse order (a layout slip that keeps every value)
    is 0.09 to 1.8 away, far beyond it (a bf16 twin, 0.013 to 0.64 away, was too).
    """
    cfg = quick_config(tmp_path / "cl", video_encoder="r2plus1d_18", window_s=0.5, channels_last=True, max_steps=2)
    first_conv_inputs: list[torch.Tensor] = []

    def contiguous(t, batch):
        other = twin(t, channels_last=False)
        layouts(other, torch.contiguous_format, torch.contiguous_format)
        return other, batch

    def reversed_frames(t, batch):
        other, _ = contiguous(t, batch)
        return other, {**batch, "video": batch["video"].flip(2)}  # (B, 3, T, H, W): T reversed

    def watch_first_conv(t, batch):  # records the clip the run's own first convolution receives
        if not first_conv_inputs:
            stem = next(m for m in t.model.video_backbone.modules() if isinstance(m, nn.Conv3d))
            stem.register_forward_pre_hook(  # the twins' deep copies carry it too: the run's own stem only
                lambda module, args, stem=stem: first_conv_inputs.append(args[0]) if module is stem else None)
        return contiguous(t, batch)

    twins = {"contiguous": watch_first_conv, "float64": float64_twin, "reversed": reversed_frames}
    losses, t = run_with_twins(monkeypatch, cfg, twins)

    for model in (t.model, t.momentum_model):
        convs = [m for m in model.video_backbone.modules() if isinstance(m, nn.Conv3d)]
        assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last_3d) for m in convs)
        assert not all(m.weight.is_contiguous() for m in convs), "channels_last left the weights contiguous"
    assert first_conv_inputs and all(x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
                                     for x in first_conv_inputs)
    float32_error = max(gaps(losses["contiguous"], losses["float64"]))
    tolerance = 8 * float32_error
    assert 0 < float32_error < 1e-3, losses  # float32's own error: finite, and far below bf16's
    layout_gaps = gaps(losses["run"], losses["contiguous"])
    assert max(layout_gaps) <= tolerance, (layout_gaps, float32_error)
    reversed_gaps = gaps(losses["contiguous"], losses["reversed"])
    assert min(reversed_gaps) > tolerance, (reversed_gaps, tolerance)


# ----------------------------------------------------------------------------- torch.compile


def test_compile_runs_the_encoders_compiled_and_matches_eager(monkeypatch, tmp_path):
    """compile=True: the run's forward passes (online and momentum encoders) go through torch.compile,
    each compiled once (no recompilation per step), and every step's loss equals an eager twin's within
    the float32 tolerance of :func:`forward_loss_tolerance` (1.4e-6).

    Inductor's code generation is replaced by ``aot_eager`` (the same Dynamo capture and AOTAutograd
    forward/backward graphs, run by eager kernels): inductor's first step took 104 s here for the light
    encoders and 60 s for one-convolution encoders (gcc on 2 shared cores), over this file's budget.
    bench/gpu_check.py compiles with inductor.  Control: the models one update behind are beyond the
    tolerance (what a compiled graph that kept its first weights as constants would give)."""
    from torch._dynamo.eval_frame import OptimizedModule
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    graphs_per_step: list[int] = []
    cfg = quick_config(tmp_path / "compiled", compile=True)
    losses, t = run_with_twins(monkeypatch, cfg, {"eager": lambda t, b: (twin(t, compile=False), b)}, stale=True,
                               after_step=lambda _t: graphs_per_step.append(counters["stats"]["unique_graphs"]))
    torch._dynamo.reset()
    assert isinstance(t.online, OptimizedModule) and isinstance(t.keys_model, OptimizedModule)
    assert graphs_per_step[0] > 0 and graphs_per_step == [graphs_per_step[0]] * len(graphs_per_step), graphs_per_step
    tolerance = forward_loss_tolerance(t.model, FP32_UNIT_ROUNDOFF, cfg.temperature, cfg.embedding_dim)
    compile_gaps = gaps(losses["run"], losses["eager"])
    assert max(compile_gaps) <= tolerance, (compile_gaps, tolerance)
    stale_gaps = gaps(losses["run"][1:], losses["stale"])
    assert max(stale_gaps) > tolerance, (stale_gaps, tolerance)


# ----------------------------------------------------------------------------- pinned memory


class PinnedLooking(torch.Tensor):
    """A CPU tensor that says it is pinned (``PINNED``) and records the ``non_blocking`` of each copy:
    page-locked memory needs a CUDA device, so this stands in for the loader's pinned batches."""

    PINNED = True
    copies: list[bool] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.is_pinned:
            return cls.PINNED
        if func is torch.Tensor.to:
            cls.copies.append(bool(kwargs.get("non_blocking", False)))
            return args[0].as_subclass(torch.Tensor).to(*args[1:], **kwargs)
        return super().__torch_function__(func, types, args, kwargs)


@pytest.mark.parametrize("pinned", [True, False])
def test_pinned_batches_are_copied_without_blocking(monkeypatch, tmp_path, pinned):
    """Every copy train_step makes of the batch (video, audio, clip indices, labels, and the fresh
    candidates') is non-blocking exactly when the batch is pinned (the loader's pin_memory on CUDA)."""
    monkeypatch.setattr(PinnedLooking, "PINNED", pinned)
    monkeypatch.setattr(PinnedLooking, "copies", [])

    def pinned_step(t, batch, step):
        batch = {k: v.as_subclass(PinnedLooking) if isinstance(v, torch.Tensor) and k in
                 ("video", "audio", "clip_index", "label") else v for k, v in batch.items()}
        return TRAIN_STEP(t, batch, step)

    monkeypatch.setattr(loop, "train_step", pinned_step)
    pretrain(quick_config(tmp_path / "pinned", max_steps=1, sampler="active", active_candidates="fresh"))
    assert len(PinnedLooking.copies) == 7, PinnedLooking.copies  # 4 of the batch, 3 of the candidates
    assert PinnedLooking.copies == [pinned] * 7


# ----------------------------------------------------------------------------- bench/gpu_check.py


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_gpu_check_cpu_mode_runs_at_its_smallest_size(tmp_path):
    """bench/gpu_check.py's CPU mode end to end at its smallest size (so the GPU script cannot rot on
    machines without one): every section runs, every Triton kernel is checked (under the interpreter),
    and the report says at its top that it holds no GPU numbers."""
    gpu_check = load_gpu_check()
    out = tmp_path / "gpu.md"
    status = gpu_check.main(["--size", "smallest", "--out", str(out)])
    text = out.read_text()
    assert status == 0, text
    assert text.splitlines()[2].startswith("**CPU MODE"), text[:400]
    for kernel in gpu_check.triton_launch_functions():
        assert f"| `{kernel}` |" in text and "FAIL" not in text, kernel
    for heading in ("## 1. Triton kernels", "## 2. k-means++ selection", "## 3. Training", "## 4. torch.compile",
                    "## 5. The study's `dictionary_size` step"):
        assert heading in text, heading
    # section 5 ran every variant of the condition's largest dictionary, and says its hours are no GPU figure
    for variant in gpu_check.STUDY_VARIANTS:
        assert f"| `{variant}` |" in text, variant
    assert "The condition's 90 runs" in text and "not a GPU figure" in text


def test_gpu_check_kernel_checks_fail_on_a_wrong_kernel(monkeypatch):
    """The kernel checks are not so loose that a broken kernel passes: a distance update that is off
    by one float32 ulp of the scale per D terms (what TF32's 10-bit products would leave, and less)
    and a D^2 draw one bucket off both fail."""
    gpu_check = load_gpu_check()
    from avlib.kernels import reference, triton_kernels

    sizes = gpu_check.SIZES["smallest"]
    good = {row["kernel"]: row for row in gpu_check.check_kernels(sizes, "cpu")}
    assert all(row["ok"] for row in good.values()), good

    def off_distances(x, x_sqnorm, c, c_sqnorm, running_min, zero_tol=None):
        exact = reference.sqdist_min_update(x, x_sqnorm, c, c_sqnorm, running_min, zero_tol)
        return exact + 2.0**-10 * (x_sqnorm + c_sqnorm.max())  # TF32-sized error on every row

    def off_by_one_bucket(cumsum, values):
        return (reference.inverse_cdf(cumsum, values) + 1).clamp_(max=cumsum.shape[0] - 1)

    monkeypatch.setattr(triton_kernels, "sqdist_min_update", off_distances)
    monkeypatch.setattr(triton_kernels, "inverse_cdf", off_by_one_bucket)
    bad = {row["kernel"]: row for row in gpu_check.check_kernels(sizes, "cpu")}
    assert not bad["sqdist_min_update"]["ok"] and not bad["inverse_cdf"]["ok"], bad
    assert bad["badge_grad"]["ok"] and bad["sqdist_min_update_factored"]["ok"]
