"""avlib's HSV hue shift gives torchvision's bytes (every uint8 colour), and the training transform is unchanged."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from avlib.data import augment
from avlib.data.augment import VideoTransform, hsv_hue_shift, seeded

# every RGB colour once: 256 "frames" (one per red value) of 256 x 256 (green x blue)
EVERY_COLOUR = torch.stack(torch.meshgrid(torch.arange(256), torch.arange(256), torch.arange(256), indexing="ij"),
                           dim=1).to(torch.uint8)  # (256, 3, 256, 256)


def differing_bytes(hue_factor: float, reference_factor: float | None = None, frames=EVERY_COLOUR) -> int:
    reference_factor = hue_factor if reference_factor is None else reference_factor
    return sum(int((hsv_hue_shift(frames[i:i + 32], hue_factor) != TF.adjust_hue(frames[i:i + 32], reference_factor)).sum())
               for i in range(0, frames.shape[0], 32))


@pytest.mark.parametrize("hue_factor", [0.1, -0.5, -0.0371])  # the light recipe's bound, the wrap, a factor in between
def test_every_colour_gets_torchvisions_bytes(hue_factor):
    assert differing_bytes(hue_factor) == 0


def test_random_factors_on_random_colours_and_the_control():
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (8, 3, 64, 64), generator=generator, dtype=torch.uint8)
    factors = (torch.rand(40, generator=generator, dtype=torch.float64) - 0.5).tolist() + [0.0, 0.5, 0.2 - 1e-9]
    assert all(differing_bytes(factor, frames=frames) == 0 for factor in factors)
    # other layouts and ranks: channels-last frames (as a (T, H, W, 3) clip permuted) and a (B, T, 3, H, W) batch
    assert differing_bytes(0.07, frames=frames.contiguous(memory_format=torch.channels_last)) == 0
    assert torch.equal(hsv_hue_shift(frames.view(2, 4, 3, 64, 64), -0.2), TF.adjust_hue(frames, -0.2).view(2, 4, 3, 64, 64))
    # the control: another factor, 1e-3 of the circle away, moves bytes, so the comparison can fail
    assert differing_bytes(0.1, 0.101, frames) > 1000


def jitter_types(video_transform: VideoTransform) -> list[type]:
    """The classes of the colour jitters in a training transform (inside RandomApply too)."""
    found = []
    for step in video_transform.transform.transforms:
        inner = step.transforms if isinstance(step, v2.RandomApply) else [step]
        found += [type(t) for t in inner if isinstance(t, v2.ColorJitter)]
    return found


@pytest.mark.parametrize("recipe", ["light", "strong"])
def test_the_training_transform_draws_and_returns_what_torchvisions_colorjitter_did(recipe, monkeypatch):
    frames = np.random.default_rng(1).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    fast = VideoTransform(32, True, "hsv", recipe)
    ours = augment.ColorJitter
    monkeypatch.setattr(augment, "ColorJitter", v2.ColorJitter)  # the same transform with torchvision's jitter
    reference = VideoTransform(32, True, "hsv", recipe)
    assert jitter_types(fast) == [ours] and jitter_types(reference) == [v2.ColorJitter]
    for seed in range(40):
        with seeded(seed):
            ours = fast(frames)
        with seeded(seed):
            theirs = reference(frames)
        assert torch.equal(ours, theirs), f"seed {seed}"
    with seeded(0):
        other = reference(frames)
    with seeded(1):
        assert not torch.equal(fast(frames), other)  # the control: another draw differs


def test_float_frames_go_to_torchvisions_kernel():
    video = torch.rand(2, 3, 8, 8)
    params = {"fn_idx": torch.tensor([3, 0, 1, 2]), "brightness_factor": None, "contrast_factor": None,
              "saturation_factor": None, "hue_factor": 0.07}
    assert torch.equal(augment.ColorJitter(hue=0.1).transform(video, params), TF.adjust_hue(video, 0.07))


def test_the_bench_times_both_jitters_on_the_same_bytes():
    spec = importlib.util.spec_from_file_location("bench_augment", Path(__file__).resolve().parents[1] / "bench" / "bench_augment.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(frames=2, size=16, crop=12, repeats=1, calls=3)
    assert result["differing_bytes"] == 0 and result["differing_windows"] == 0 and result["pixels"] == 2 * 12 * 12
    assert set(result["ms"]) == {"hue: torchvision", "hue: avlib", "video, torchvision's jitter", "video, avlib's jitter",
                                 "log-mel"} and all(ms > 0 for ms in result["ms"].values())
