"""bench/real_media.py --kind digits draws a real handwritten digit into every frame, over a real
photograph, the same way for the same seed (its speech needs espeak-ng and is not tested here)."""
import importlib.util
from pathlib import Path

import numpy as np

SPEC = importlib.util.spec_from_file_location("real_media", Path(__file__).parents[1] / "bench" / "real_media.py")
real_media = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(real_media)


def test_digits_by_class_are_sklearns_scans():
    digits = real_media.load_digits_by_class()
    assert len(digits) == 10 and sum(len(d) for d in digits) == 1797
    assert all(d.shape[1:] == (8, 8) and 0 <= d.min() and d.max() <= 1 for d in digits)


def test_render_digit_draws_the_glyph_over_the_photo_deterministically():
    digit = real_media.load_digits_by_class()[0][0]
    photo = real_media.load_photos()[0]
    frames = real_media.render_digit(digit, photo, np.random.default_rng(3), frames=6, size=48)
    assert frames.shape == (6, 48, 48, 3) and frames.dtype == np.uint8
    again = real_media.render_digit(digit, photo, np.random.default_rng(3), frames=6, size=48)
    np.testing.assert_array_equal(frames, again)
    blank = real_media.render_digit(np.zeros_like(digit), photo, np.random.default_rng(3), frames=6, size=48)
    changed = np.abs(frames.astype(int) - blank.astype(int)).max(axis=-1) > 8  # (T, H, W): the glyph's pixels
    # a "0" covers a ring: between 2% and 40% of a frame whose glyph side is 30-50% of the frame's
    assert all(0.02 < share < 0.4 for share in changed.mean(axis=(1, 2)))
