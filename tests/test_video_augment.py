"""video_augment="strong" (SimCLR-style views): two views of one clip differ in colour far more than
under "light", a share of them is grey, and "light" (the default) is the augmentation it always was."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from avlib.config import ConfigError, PretrainConfig
from avlib.data.augment import VIDEO_MEAN, VIDEO_STD, VideoTransform, seeded


def _frames() -> np.ndarray:
    """(4, 32, 32, 3) uint8: a coloured scene (a smooth gradient per channel), the same in every frame."""
    y, x = np.mgrid[0:32, 0:32] / 31.0
    frame = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.8 - 0.5 * x * y], axis=-1)
    return np.repeat((frame * 255).astype(np.uint8)[None], 4, axis=0)


def _views(augment: str, count: int) -> list[torch.Tensor]:
    transform = VideoTransform(24, True, augment=augment)
    views = []
    for seed in range(count):
        with seeded(seed):
            views.append(transform(_frames()) * VIDEO_STD + VIDEO_MEAN)  # (3, T, 24, 24) in [0, 1]
    return views


def test_strong_views_differ_in_colour_and_some_are_grey():
    stats = {}
    for augment in ("light", "strong"):
        views = _views(augment, 60)
        colours = torch.stack([v.mean(dim=(1, 2, 3)) for v in views])  # (60, 3): each view's mean RGB
        pairs = (colours[0::2] - colours[1::2]).norm(dim=1)  # 30 pairs of views of the same clip
        grey = [bool((v[0] - v[1]).abs().max() < 1e-6 and (v[1] - v[2]).abs().max() < 1e-6) for v in views]
        stats[augment] = float(pairs.mean()), sum(grey) / len(grey)
    (light_gap, light_grey), (strong_gap, strong_grey) = stats["light"], stats["strong"]
    assert strong_gap > 1.5 * light_gap, stats  # the views' colours are far less a shared cue
    assert light_grey == 0.0 and 0.05 <= strong_grey <= 0.45, stats  # p = 0.2 of grey, 60 draws


def test_light_is_the_default_and_the_augmentation_it_was():
    assert PretrainConfig().video_augment == "light"
    reference = v2.Compose([v2.RandomResizedCrop(24, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
                            v2.RandomHorizontalFlip(), v2.ColorJitter(0.4, 0.4, 0.4, 0.1)])
    frames = _frames()
    with seeded(5):
        default = VideoTransform(24, True)(frames)
    with seeded(5):
        expected = reference(torch.from_numpy(frames).permute(0, 3, 1, 2)).permute(1, 0, 2, 3).float() / 255
    assert torch.allclose(default, (expected - VIDEO_MEAN) / VIDEO_STD)
    with seeded(5):
        strong = VideoTransform(24, True, augment="strong")(frames)
    assert not torch.allclose(default, strong)  # the control: the option changes the views


def test_a_misspelt_augmentation_is_an_error():
    with pytest.raises(ConfigError, match="video_augment"):
        PretrainConfig(video_augment="simclr")
    with pytest.raises(ValueError, match="video_augment='heavy' is not valid"):
        VideoTransform(24, True, augment="heavy")
