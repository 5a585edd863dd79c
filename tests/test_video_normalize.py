"""``video_normalize="frame"``: every frame and colour channel of a video window standardised over its own
pixels (``avlib.data.augment.VideoTransform``), so that what a clip's frames share everywhere -- its
background colour, brightness, contrast -- is gone from the encoder's input; "dataset" (the default) keeps
today's input exactly."""

import numpy as np
import pytest
import torch

from avlib.config import ConfigError, PretrainConfig
from avlib.data.augment import VideoTransform


def _clip(seed: int, colour, gain: float) -> np.ndarray:
    """(T, H, W, 3) uint8: one random pattern (the content) under a clip-wide colour cast and contrast."""
    pattern = np.random.default_rng(seed).uniform(-1, 1, size=(4, 32, 32, 1))
    return np.clip(255 * (np.asarray(colour) + gain * 0.2 * pattern), 0, 255).astype(np.uint8)


def test_frame_normalisation_removes_a_clips_colour_and_contrast_and_keeps_its_content():
    frame, dataset = VideoTransform(24, train=False, normalize="frame"), VideoTransform(24, train=False)
    a, b = _clip(0, (0.2, 0.5, 0.3), 1.0), _clip(0, (0.6, 0.4, 0.5), 0.7)  # same content, other cast
    other = _clip(1, (0.2, 0.5, 0.3), 1.0)  # other content, the first one's cast
    va, vb, vo = frame(a), frame(b), frame(other)
    assert va.shape == (3, 4, 24, 24)
    per_frame = va.flatten(2)  # (3, T, pixels)
    assert torch.allclose(per_frame.mean(-1), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(per_frame.std(-1), torch.ones(3, 4), atol=1e-4)
    # the cast is gone: the same content under two casts is (up to uint8 rounding) the same input,
    # closer than other content under the same cast; with the dataset's normalisation it is the reverse
    assert (va - vb).abs().mean() < 0.1 * (va - vo).abs().mean()
    da, db, do = dataset(a), dataset(b), dataset(other)
    assert (da - db).abs().mean() > (da - do).abs().mean()


def test_dataset_normalisation_is_the_default_and_a_flat_frame_stays_finite():
    clip = _clip(2, (0.3, 0.3, 0.3), 1.0)
    assert torch.equal(VideoTransform(24, train=False)(clip), VideoTransform(24, train=False, normalize="dataset")(clip))
    assert PretrainConfig().video_normalize == "dataset"
    flat = np.full((2, 32, 32, 3), 90, np.uint8)  # no content at all: std 0, clamped, not divided by 0
    assert torch.isfinite(VideoTransform(24, train=False, normalize="frame")(flat)).all()


def test_a_misspelt_normalisation_is_an_error():
    with pytest.raises(ConfigError, match="video_normalize"):
        PretrainConfig(video_normalize="per_frame")
    with pytest.raises(ValueError, match="video_normalize"):
        VideoTransform(24, train=False, normalize="clip")
