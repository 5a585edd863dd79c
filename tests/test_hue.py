"""The YIQ hue jitter (hue_space="yiq"): a rotation of the chroma plane that keeps luma, by the drawn angle."""

import numpy as np
import pytest
import torch

from avlib.data.augment import _YIQ, VideoTransform, YIQHue, seeded


def yiq(video: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,tchw->tohw", _YIQ.float(), video.float())  # (T, 3, H, W): Y, I, Q


def test_the_rotation_keeps_luma_and_turns_the_chroma_by_the_drawn_angle():
    torch.manual_seed(0)
    video = torch.randint(88, 168, (2, 3, 8, 8), dtype=torch.uint8)  # turned colours stay inside [0, 255]
    with seeded(3):
        turned = YIQHue(0.1)(video)
    with seeded(3):
        angle = 2 * np.pi * float(torch.empty(()).uniform_(-0.1, 0.1))
    before, after = yiq(video), yiq(turned)
    assert (after[:, 0] - before[:, 0]).abs().max() <= 1.0  # luma: only the rounding to uint8 moves it
    chroma = before[:, 1] + 1j * before[:, 2], after[:, 1] + 1j * after[:, 2]
    strong = chroma[0].abs() > 10  # pixels with a hue worth measuring
    turn = torch.angle(chroma[1][strong] / chroma[0][strong])
    assert torch.allclose(turn, torch.full_like(turn, angle), atol=0.05)
    assert abs(angle) > 0.05, "the control: a real turn, not the identity"


def test_no_turn_is_the_identity_and_the_option_is_checked():
    video = torch.randint(0, 256, (3, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(YIQHue(0.0)(video), video)
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    with seeded(1):
        fast = VideoTransform(24, True, "yiq")(frames)
    with seeded(1):
        reference = VideoTransform(24, True, "hsv")(frames)
    assert fast.shape == reference.shape == (3, 4, 24, 24) and not torch.equal(fast, reference)
    with pytest.raises(ValueError, match="hue_space='hls' is not valid"):
        VideoTransform(24, True, "hls")
