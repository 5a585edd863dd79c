"""bench/real_media.py --kind digits draws a real handwritten digit into every frame, over a real
photograph, the same way for the same seed (its speech needs espeak-ng and is not tested here);
--kind letters prints a letter in a real typeface, checked on the fonts matplotlib ships (the one
test that writes clips needs espeak-ng and is skipped without it)."""
import csv
import importlib.util
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

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


def ink_and_background_luminance(frames: np.ndarray, blank: np.ndarray) -> tuple[float, float]:
    """Mean luminance (0-1) of the pixels a fully inked glyph covers (those it changed), and of the others."""
    covered = np.abs(frames.astype(int) - blank.astype(int)).max(axis=-1) > 0
    lum = real_media.luminance(frames / 255.0)
    return float(lum[covered].mean()), float(lum[~covered].mean())


def test_plain_background_ink_contrasts_where_photo_ink_need_not():
    """--background plain: every clip's ink differs from its background by >= MIN_CONTRAST in
    luminance, measured on rendered pixels (a glyph of full ink, so no pixel is partly covered).
    Control: the photo background, same glyphs and paths, has clips with far less contrast, so the
    measure can fail."""
    photo = real_media.load_photos()[0]
    full, none = np.ones((8, 8)), np.zeros((8, 8))
    contrast = {"plain": [], "photo": []}
    for clip in range(20):
        for background in contrast:
            def draw(glyph):
                plain = np.random.default_rng([clip, 1]) if background == "plain" else None
                return real_media.render_digit(glyph, photo, np.random.default_rng(clip), 4, 48, plain)
            ink, paper = ink_and_background_luminance(draw(full), draw(none))
            contrast[background].append(abs(ink - paper))
    # 0.01 for uint8 rounding and noise clipped at 0 and 1
    assert min(contrast["plain"]) >= real_media.MIN_CONTRAST - 0.01, contrast["plain"]
    assert min(contrast["photo"]) < 0.1, contrast["photo"]


def test_plain_colours_meet_the_stated_contrast():
    rng = np.random.default_rng(0)
    pairs = [real_media.contrasting_colours(rng) for _ in range(500)]
    gaps = [abs(real_media.luminance(ink) - real_media.luminance(paper)) for paper, ink in pairs]
    assert min(gaps) >= real_media.MIN_CONTRAST
    assert np.ptp([real_media.luminance(paper) for paper, _ in pairs]) > 0.8  # backgrounds span dark to light


def test_plain_keeps_glyph_size_and_path_and_the_rng_stream():
    """The plain background draws its colours from its own generator: the clip's generator is left
    where the photo version leaves it (so the speech drawn next is the same) and the glyph's pixels
    are where they are over the photo."""
    digit = real_media.load_digits_by_class()[7][3]
    photo = real_media.load_photos()[1]
    rng_photo, rng_plain = np.random.default_rng(5), np.random.default_rng(5)
    over_photo = real_media.render_digit(digit, photo, rng_photo, 4, 48)
    over_plain = real_media.render_digit(digit, photo, rng_plain, 4, 48, np.random.default_rng([5, 1]))
    assert rng_photo.uniform() == rng_plain.uniform()

    def glyph_mask(plain):
        frames = real_media.render_digit(digit, photo, np.random.default_rng(5), 4, 48, plain)
        blank = real_media.render_digit(np.zeros_like(digit), photo, np.random.default_rng(5), 4, 48,
                                        None if plain is None else np.random.default_rng([5, 1]))
        return np.abs(frames.astype(int) - blank.astype(int)).max(axis=-1) > 8
    photo_mask, plain_mask = glyph_mask(None), glyph_mask(np.random.default_rng([5, 1]))
    assert (photo_mask & ~plain_mask).sum() <= 0.1 * photo_mask.sum()  # the photo version hides some ink
    assert not np.array_equal(over_photo, over_plain)


def test_photo_background_output_is_unchanged():
    """The frames of one photo clip, hashed when --background was added: the default output (and so
    every dataset generated before) must not change."""
    import hashlib

    digit = real_media.load_digits_by_class()[3][5]
    photo = real_media.load_photos()[1]
    frames = real_media.render_digit(digit, photo, np.random.default_rng([0, 3, 5]), frames=4, size=48)
    assert hashlib.sha256(frames.tobytes()).hexdigest() == \
        "f957f2cfd90e90e16dd2710a8f035cdb4381448047aa47aac60df4f3a3555677"


def test_paper_ink_is_always_the_darker():
    """--background paper: a scan's polarity (plain allows both, the control)."""
    rng = np.random.default_rng(1)
    paper = [real_media.contrasting_colours(rng, dark_ink=True) for _ in range(300)]
    plain = [real_media.contrasting_colours(rng) for _ in range(300)]
    gap = lambda pairs: np.array([real_media.luminance(bg) - real_media.luminance(ink) for bg, ink in pairs])
    assert gap(paper).min() >= real_media.MIN_CONTRAST
    assert min(real_media.luminance(bg) for bg, _ in paper) >= 0.5
    assert (gap(plain) < 0).mean() > 0.3  # plain ink is lighter than its background in many clips


MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"  # shipped with matplotlib: there everywhere


def test_letter_faces_are_checked_by_their_glyphs():
    """A face is used for letters only if it maps every letter to that letter's glyph: DejaVu Sans
    does; LastResort maps them to placeholders ("lastresortlatin") and DejaVu Sans Display has none."""
    letters = "".join(real_media.LETTERS)
    assert real_media._glyph_names_letters(MPL_FONTS / "DejaVuSans.ttf", letters)
    assert not real_media._glyph_names_letters(MPL_FONTS / "LastResortHE-Regular.ttf", letters)
    assert not real_media._glyph_names_letters(MPL_FONTS / "DejaVuSansDisplay.ttf", letters)


def test_letter_glyph_fills_and_centres_its_square():
    side = real_media.GLYPH_SIDE
    glyphs = {letter: real_media.letter_glyph(MPL_FONTS / "DejaVuSerif.ttf", letter) for letter in real_media.LETTERS}
    for letter, glyph in glyphs.items():
        assert glyph.shape == (side, side) and 0 <= glyph.min() and glyph.max() == 1, letter
        rows, cols = np.nonzero(glyph > 0.5)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        # 0.85 of the side high, or 0.95 wide when the glyph is that wide (W); a pixel for anti-aliasing
        assert abs(height - 0.85 * side) <= 2 or abs(width - 0.95 * side) <= 2, (letter, height, width)
        assert abs((rows.min() + rows.max()) / 2 - side / 2) <= 2 and abs((cols.min() + cols.max()) / 2 - side / 2) <= 2
    assert glyphs["O"][side // 2, side // 2] == 0 and glyphs["I"][side // 2, side // 2] > 0.5  # the letters' shapes
    flat = np.array([g.ravel() for g in glyphs.values()])
    assert min(np.abs(a - b).mean() for i, a in enumerate(flat) for b in flat[i + 1:]) > 0.05  # ten different glyphs
    np.testing.assert_array_equal(glyphs["R"], real_media.letter_glyph(MPL_FONTS / "DejaVuSerif.ttf", "R"))


def test_too_few_typeface_families_is_a_clear_error():
    with pytest.raises(SystemExit, match="apt-get install.*--min_families"):
        real_media.find_typefaces(min_families=10**6)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_letters_clips_are_seeded_and_listed_with_their_typeface(tmp_path):
    """Ten tiny clips (one per letter), twice with the same seed: the same bytes and faces; the
    manifest names each clip's typeface; a clip decodes to frames and speech over noise."""
    from avlib.data.decode import decode_clip

    def make(folder):
        return real_media.generate(tmp_path / folder, clips_per_class=1, seconds=0.8, fps=8, size=48,
                                   sample_rate=16000, seed=0, kind="letters", min_families=1)
    first, second = make("a"), make("b")
    rows = list(csv.DictReader(open(first)))
    assert [r["label"] for r in rows] == list(real_media.LETTERS) and all(r["typeface"] for r in rows)
    assert rows == list(csv.DictReader(open(second)))
    for row in rows:
        assert (first.parent / row["path"]).read_bytes() == (second.parent / row["path"]).read_bytes()
    clip = decode_clip(first.parent / rows[0]["path"], fps=8, frame_size=48, sample_rate=16000)
    assert clip.frames.shape[1:] == (48, 48, 3) and np.abs(clip.audio).max() > 0.3  # speech peak 0.5 over noise
    assert real_media.default_background("letters") == "paper"
