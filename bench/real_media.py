"""A second check on real media of another kind: real speech over real images, no onset synchrony.

Why: the embedded dataset's sounds are notes whose onsets coincide with visual events; a recipe tuned
on it may lean on that synchrony.  This script builds a small dataset whose audio-visual link is
semantic only, from material available offline: each class is one image shipped with matplotlib
(``matplotlib.cbook.get_sample_data``: a photograph, a product shot, a logo, two elevation maps),
seen as a random crop drifting and zooming over a noise background, paired with one spoken word
synthesised by Debian's ``espeak-ng`` (``apt-get install espeak-ng``) with a random voice, pitch
and speed, placed at a random time in the clip over background noise.  Clips are MP4s (H.264 + AAC
via PyAV) listed in a manifest CSV (path,label,split,clip_id), so a run reads it with
``--dataset <out>/manifest.csv``.

``--kind digits`` is the harder of the two (on ``images`` random-init encoders already reach 97-100%
linear-probe accuracy, so it cannot show what pretraining adds): ten classes, each a digit, seen as
one of the 1,797 real handwritten digits shipped with scikit-learn (``load_digits``, 8x8 scans, a
different sample in every clip) drifting over a pan across one of scikit-learn's two real photographs,
and heard as the digit's name spoken by ``espeak-ng`` in noise, as in AV-MNIST-style benchmarks.

``--background`` picks what the digit drifts over.  ``photo`` (the default) is the pan across a
photograph above, with an ink colour drawn uniformly at random: the ink often has about the
photograph's colour, and with labels neither a 3-D nor a 2-D CNN reads the digit from 240-1080 clips
(``reports/objectives.md``).  ``plain`` is what issue 33's user had (digit scans drifting over a plain
background): one uniform colour per clip, uniform in RGB, with mild per-frame noise (std
``PLAIN_NOISE`` per pixel and channel), and an ink whose luminance (Rec. 601) differs from it by at
least ``MIN_CONTRAST``, lighter or darker.  ``paper`` is ``plain`` with a scan's polarity: a
background of luminance >= 0.5 and an ink at least ``MIN_CONTRAST`` darker (colours otherwise
random).  Glyph size, glyph path and speech are drawn exactly as for ``photo`` (the colours and noise
come from a second generator seeded ``[seed, class, clip, 1]``), so for one seed the three
backgrounds give the same digits on the same paths with the same words; ``photo`` output is
byte-identical to what the script wrote before the option existed.

``--kind letters`` is a second real-media kind of the same shape as ``digits`` (issue 33 asked for
one beside digits): ten classes, each a capital letter printed in one of the installed real
TrueType/OpenType typefaces (a face drawn at random per clip: serif, sans, mono, script, light to
black, upright and italic) and heard as the letter's name spoken by ``espeak-ng`` with a random
voice, pitch and speed in the same noise as digits.  The glyph drifts exactly as a digit does, over
the same ``--background`` choices (default ``paper`` for letters, ``photo`` for the other kinds).
The letters, ``LETTERS``, are chosen so their spoken names differ: one letter from each rhyme set
of the alphabet's names, plus three pairs that share a vowel but differ in a strong consonant or in
length.  Left out: the E-set (b c d e g p t v z, which differ only in a short onset and are the
classic confusion of spoken-letter recognition; E alone, "ee", stays), f/s and m/n (a fricative or
a nasal coda that noise blurs), y (rhymes with i), q (rhymes with u), j/k (rhyme with a and h), and
z, which espeak-ng says "zed" or "zee" depending on the voice.  Kept, as espeak-ng says them: A
'eI, E 'i:, I 'aI, O 'oU, U j'u:, R 'A@, L 'El, X 'Eks (L/X: same vowel, a liquid against a /ks/
coda), H 'eItS (A/H: same vowel, H ends in a long affricate), W d'Vb@Lj,u: (three syllables
against U's one).  Typefaces: every TrueType/OpenType face matplotlib's font search finds (the
system font folders and fontconfig's list), one per (family, style) name, kept only if it maps all
ten letters to glyphs of those letters (symbol and dingbat faces, which map A-Z to Greek letters or
ornaments, and faces drawing letters as key caps are left out; ``find_typefaces``).  Measured with
Debian's ``fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-croscore
fonts-crosextra-carlito fonts-crosextra-caladea fonts-linuxlibertine fonts-texgyre fonts-open-sans
fonts-lato fonts-cantarell fonts-go`` (``apt-get install -y --no-install-recommends ...``): the
manifest's ``typeface`` column says which face each clip has, and the same seed gives the same clips
only with the same set of faces.  At least ``MIN_TYPEFACE_FAMILIES`` families are required (else a
SystemExit names the packages): with only DejaVu (3 families in ``fonts-dejavu-core``, 4 with
``fonts-dejavu-extra``) every glyph would come from one design, and the letter would be told apart by
a pixel template rather than read; ``--min_families`` lowers the bar knowingly.

    python bench/real_media.py --out /tmp/realmedia --clips_per_class 40 --seconds 2
    python bench/real_media.py --kind digits --out /tmp/avdigits --clips_per_class 40 --seconds 2
    python bench/real_media.py --kind digits --background plain --out /tmp/avdigits_plain --pixel_probe
    python bench/real_media.py --kind letters --out /tmp/avletters --clips_per_class 40 --seconds 2
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from avlib.data.synthetic import _write_mp4

# (label, word spoken, sample-data file, array key for .npz files)
CLASSES = (("person", "admiral", "grace_hopper.jpg", None),
           ("package", "present", "Minduka_Present_Blue_Pack.png", None),
           ("logo", "matplotlib", "logo2.png", None),
           ("fault", "mountain", "jacksboro_fault_dem.npz", "elevation"),
           ("coast", "ocean", "topobathy.npz", None))
VOICES = ("en", "en-us", "en+m3", "en+f2", "en+f4", "en-gb-x-rp")


def load_image(name: str, key: str | None) -> np.ndarray:
    """(H, W, 3) float in [0, 1] of a matplotlib sample-data file (elevation maps as grey levels)."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    path = cbook.get_sample_data(name, asfileobj=False)
    if name.endswith(".npz"):
        with np.load(path) as data:
            grid = np.asarray(data[key] if key else data[data.files[0]], dtype=np.float64)
        grid = (grid - grid.min()) / max(np.ptp(grid), 1e-9)
        return np.repeat(grid[..., None], 3, axis=2)
    image = np.asarray(mpimg.imread(path), dtype=np.float64)
    image = image / 255.0 if image.max() > 1.0 else image
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def speak(word: str, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """float32 (S,) of espeak-ng saying ``word`` with a random voice, pitch and speed, at ``sample_rate``."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "word.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "-v", str(rng.choice(VOICES)),
                        "-p", str(int(rng.integers(20, 80))), "-s", str(int(rng.integers(120, 200))), word],
                       check=True, capture_output=True)
        with wave.open(str(wav)) as handle:
            rate, raw = handle.getframerate(), handle.readframes(handle.getnframes())
    speech = np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768.0
    t_out = np.arange(int(len(speech) * sample_rate / rate)) / sample_rate
    return np.interp(t_out, np.arange(len(speech)) / rate, speech).astype(np.float32)


def render(image: np.ndarray, rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """uint8 (T, size, size, 3): a crop of ``image`` drifting and zooming over a noise background."""
    h, w = image.shape[:2]
    zoom0, zoom1 = rng.uniform(0.5, 0.9, size=2)
    (y0, x0), (y1, x1) = rng.uniform(0, 1, size=(2, 2))
    inset = rng.uniform(0.6, 0.9)  # share of the frame the image covers
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        a = k / max(frames - 1, 1)
        zoom, fy, fx = zoom0 + a * (zoom1 - zoom0), y0 + a * (y1 - y0), x0 + a * (x1 - x0)
        ch, cw = zoom * h, zoom * w
        inner = int(size * inset)
        ys = (fy * (h - ch) + np.arange(inner) / inner * ch).astype(int).clip(0, h - 1)
        xs = (fx * (w - cw) + np.arange(inner) / inner * cw).astype(int).clip(0, w - 1)
        frame = rng.uniform(0, 1, size=(size, size, 3)) * 0.5
        oy, ox = int(a * (size - inner) * fy), int(a * (size - inner) * fx)
        frame[oy:oy + inner, ox:ox + inner] = image[ys][:, xs]
        out[k] = (frame.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return out


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits_by_class() -> list[np.ndarray]:
    """Per digit 0-9, float (N, 8, 8) in [0, 1]: scikit-learn's bundled handwritten digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return [digits.images[digits.target == d] / 16.0 for d in range(10)]


def load_photos() -> list[np.ndarray]:
    """scikit-learn's two bundled photographs (china.jpg, flower.jpg) as float (H, W, 3) in [0, 1]."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(image, dtype=np.float64) / 255.0 for image in load_sample_images().images]


KINDS = ("images", "digits", "letters")
BACKGROUNDS = ("photo", "plain", "paper")
MIN_CONTRAST = 0.4  # plain background: least |luminance(ink) - luminance(background)|, on a 0-1 scale
PLAIN_NOISE = 0.03  # plain background: std of the per-frame pixel noise, on a 0-1 scale


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB in [0, 1] (last axis): the brightness a grey-level reader would see."""
    return np.asarray(rgb, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def contrasting_colours(rng: np.random.Generator, min_contrast: float = MIN_CONTRAST,
                        dark_ink: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(background, ink), each RGB in [0, 1]: a uniformly random background colour, and an ink drawn
    uniformly among the colours whose luminance differs from it by at least ``min_contrast`` (by
    rejection; any background admits black or white ink when ``min_contrast`` <= 0.5).  ``dark_ink``
    (a scan's polarity): the background is drawn among colours of luminance >= 0.5 and the ink must be
    the darker of the two."""
    if not 0 <= min_contrast <= 0.5:
        raise ValueError(f"min_contrast must be in [0, 0.5] (so black or white ink always contrasts), got {min_contrast}")
    background = rng.uniform(0, 1, size=3)
    while dark_ink and luminance(background) < 0.5:
        background = rng.uniform(0, 1, size=3)
    while True:
        ink = rng.uniform(0, 1, size=3)
        gap = luminance(background) - luminance(ink)
        if (gap if dark_ink else abs(gap)) >= min_contrast:
            return background, ink


def render_digit(digit: np.ndarray, photo: np.ndarray, rng: np.random.Generator, frames: int,
                 size: int, plain_colours: np.random.Generator | None = None, dark_ink: bool = False) -> np.ndarray:
    """uint8 (T, size, size, 3): a handwritten digit (random size, ink colour, straight path)
    over a crop panning across a real photograph.

    With ``plain_colours`` (a generator), the background is instead one uniform colour with mild
    per-frame noise and the ink contrasts with it (``contrasting_colours``), both drawn from
    ``plain_colours`` (``dark_ink``: darker than the background, as on paper); ``rng`` is drawn from
    exactly as with the photograph (whose pan is then unused), so glyph size and path, and whatever the
    caller draws from ``rng`` next, do not change."""
    from PIL import Image

    glyph_size = int(size * rng.uniform(0.3, 0.5))
    glyph = np.asarray(Image.fromarray((digit * 255).astype(np.uint8)).resize(
        (glyph_size, glyph_size), Image.BILINEAR), dtype=np.float64)[..., None] / 255.0  # alpha
    ink = rng.uniform(0, 1, size=3)
    h, w = photo.shape[:2]
    (py0, px0), (py1, px1) = rng.uniform(0, 1, size=(2, 2)) * [h - size, w - size]
    (gy0, gx0), (gy1, gx1) = rng.uniform(0, size - glyph_size, size=(2, 2))
    if plain_colours is not None:
        paper, ink = contrasting_colours(plain_colours, dark_ink=dark_ink)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        a = k / max(frames - 1, 1)
        if plain_colours is None:
            py, px = int(py0 + a * (py1 - py0)), int(px0 + a * (px1 - px0))
            frame = photo[py:py + size, px:px + size].copy()
        else:
            frame = paper + plain_colours.normal(0, PLAIN_NOISE, size=(size, size, 3))
        gy, gx = int(gy0 + a * (gy1 - gy0)), int(gx0 + a * (gx1 - gx0))
        patch = frame[gy:gy + glyph_size, gx:gx + glyph_size]
        frame[gy:gy + glyph_size, gx:gx + glyph_size] = (1 - glyph) * patch + glyph * ink
        out[k] = (frame.clip(0, 1) * 255 + 0.5).astype(np.uint8)
    return out


LETTERS = ("A", "E", "H", "I", "L", "O", "R", "U", "W", "X")  # why these ten: the module docstring
MIN_TYPEFACE_FAMILIES = 8  # letters: fewest typeface families (DejaVu alone has 3-4) before generating
FONT_PACKAGES = ("fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 fonts-croscore "
                 "fonts-crosextra-carlito fonts-crosextra-caladea fonts-linuxlibertine fonts-texgyre "
                 "fonts-open-sans fonts-lato fonts-cantarell fonts-go")  # letters: the Debian packages measured with
NOT_LETTER_FAMILIES = ("Keyboard",)  # words of family names whose faces draw each letter inside a key cap
GLYPH_SIDE = 64  # letters: side of the square alpha a glyph is rendered into before render_digit scales it


def _glyph_names_letters(path: Path, letters: str) -> bool:
    """Whether the face at ``path`` maps every one of ``letters`` to a glyph and none to a glyph named as
    something else: a symbol face maps "A" to "Alpha" and "R" to "Rho", a dingbat face to "a10"; faces
    whose glyphs carry no names ("uni00000003", "glyph12", "gid5") pass on the map alone."""
    import re

    from matplotlib.ft2font import FT2Font

    face = FT2Font(str(path))
    charmap = face.get_charmap()
    for letter in letters:
        if ord(letter) not in charmap:
            return False
        name = face.get_glyph_name(charmap[ord(letter)])
        if not (name == letter or name.startswith(letter + ".")  # "A", or a variant such as "A.sc"
                or re.fullmatch(r"uni[0-9A-Fa-f]+|u[0-9A-Fa-f]{4,6}|(glyph|gid|g)[0-9]+|", name)):  # unnamed
            return False
    return True


def find_typefaces(letters: tuple[str, ...] = LETTERS,
                   min_families: int = MIN_TYPEFACE_FAMILIES) -> list[tuple[str, Path]]:
    """[(name "Family Style", path)] of the installed TrueType/OpenType faces that draw every one of
    ``letters``, one per name (the first path in sorted order when two files share it), sorted by name
    so the order (and so a seed's clips) does not depend on where the files are.  SystemExit when they
    come from fewer than ``min_families`` families."""
    from matplotlib import font_manager
    from PIL import ImageFont

    faces: dict[str, Path] = {}
    families = set()
    for path in sorted(map(Path, font_manager.findSystemFonts(fontext="ttf"))):
        if path.suffix.lower() not in (".ttf", ".otf"):
            continue
        try:
            family, style = ImageFont.truetype(str(path), 24).getname()
            usable = _glyph_names_letters(path, "".join(letters))
        except (OSError, RuntimeError, ValueError):  # unreadable or unsupported font file
            continue
        family = family or path.stem
        if not usable or any(word in family for word in NOT_LETTER_FAMILIES):
            continue
        faces.setdefault(f"{family} {style or ''}".strip(), path)
        families.add(family)
    if len(families) < min_families:
        raise SystemExit(
            f"--kind letters found {len(faces)} usable typefaces in {len(families)} families "
            f"({', '.join(sorted(families)) or 'none'}); it needs at least {min_families} families so that "
            f"letters are seen in many designs.  Install more, e.g. (Debian/Ubuntu) "
            f"apt-get install -y --no-install-recommends {FONT_PACKAGES}, or pass --min_families to accept fewer.")
    return sorted(faces.items())


def letter_glyph(path: Path, letter: str, side: int = GLYPH_SIDE) -> np.ndarray:
    """float (side, side) in [0, 1]: the alpha (ink coverage) of ``letter`` in the face at ``path``,
    its ink box scaled to 0.85 of the side in height (or 0.95 in width, if the glyph is that wide) and
    centred.  ``render_digit`` takes it where it takes an 8x8 scan (it scales either square to the
    clip's glyph size), so a letter fills its box about as a handwritten digit does."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(path), 4 * side)
    left, top, right, bottom = font.getbbox(letter)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8))
    ImageDraw.Draw(canvas).text((4 - left, 4 - top), letter, font=font, fill=255)
    box = canvas.getbbox()
    if box is None:
        raise ValueError(f"{path}: {letter!r} draws no ink")
    ink = canvas.crop(box)
    scale = min(0.85 * side / ink.height, 0.95 * side / ink.width)
    ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.LANCZOS)
    square = Image.new("L", (side, side))
    square.paste(ink, ((side - ink.width) // 2, (side - ink.height) // 2))
    return np.asarray(square, dtype=np.float64) / 255.0


def default_background(kind: str) -> str:
    """The ``--background`` a kind gets when none is given: ``paper`` for letters (printed letters, a
    page's polarity), ``photo`` for the others (what digits were generated with before the option)."""
    return "paper" if kind == "letters" else "photo"


def generate(out: Path, clips_per_class: int, seconds: float, fps: int, size: int, sample_rate: int,
             seed: int, kind: str = "images", background: str | None = None,
             min_families: int = MIN_TYPEFACE_FAMILIES) -> Path:
    """Write ``out/clips/*.mp4`` and ``out/manifest.csv`` (60/10/30 split per class); return the manifest.
    ``background`` (digits and letters): ``photo``, ``plain`` or ``paper`` (see the module docstring;
    None: ``default_background(kind)``).  ``min_families`` (letters): see ``find_typefaces``."""
    if kind not in KINDS:
        raise SystemExit(f"--kind must be one of {KINDS}, got {kind!r}")
    background = default_background(kind) if background is None else background
    if background not in BACKGROUNDS:
        raise SystemExit(f"--background must be one of {BACKGROUNDS}, got {background!r}")
    if background != "photo" and kind == "images":
        raise SystemExit(f"--background {background} applies to --kind digits or letters only, got --kind {kind}")
    typeface_of_clip: dict[str, str] = {}  # letters: clip_id -> the face it is printed in
    if kind == "letters":
        typefaces = find_typefaces(LETTERS, min_families)  # before any file is written: fail early
    (out / "clips").mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * fps))
    if kind == "letters":
        photos = load_photos()
        classes = [(letter, letter) for letter in LETTERS]  # label and what espeak-ng says (the letter's name)
        noise, gain = 0.05, 0.5  # as digits
        glyphs: dict[tuple[int, int], np.ndarray] = {}  # (face, letter) -> (GLYPH_SIDE, GLYPH_SIDE) alpha

        def frames_of(k: int, j: int, rng: np.random.Generator) -> np.ndarray:
            face = int(rng.integers(len(typefaces)))
            name, path = typefaces[face]
            typeface_of_clip[f"{LETTERS[k]}_{j:03d}"] = name
            if (face, k) not in glyphs:
                glyphs[face, k] = letter_glyph(path, LETTERS[k])
            plain_colours = None if background == "photo" else np.random.default_rng([seed, k, j, 1])
            return render_digit(glyphs[face, k], photos[rng.integers(len(photos))], rng, n_frames, size,
                                plain_colours, dark_ink=background == "paper")
    elif kind == "digits":
        digits, photos = load_digits_by_class(), load_photos()
        classes = [(word, word) for word in DIGIT_WORDS]
        noise, gain = 0.05, 0.5  # speech peak 0.5 over noise of std 0.05 (about 14 dB below the peak)

        def frames_of(k: int, j: int, rng: np.random.Generator) -> np.ndarray:
            plain_colours = None if background == "photo" else np.random.default_rng([seed, k, j, 1])
            return render_digit(digits[k][j % len(digits[k])], photos[rng.integers(len(photos))], rng, n_frames, size,
                                plain_colours, dark_ink=background == "paper")
    else:
        images = [load_image(name, key) for _, _, name, key in CLASSES]
        classes = [(label, word) for label, word, _, _ in CLASSES]
        noise, gain = 0.01, 0.8

        def frames_of(k: int, j: int, rng: np.random.Generator) -> np.ndarray:
            return render(images[k], rng, n_frames, size)
    rows = []
    for k, (label, word) in enumerate(classes):
        for j in range(clips_per_class):
            rng = np.random.default_rng([seed, k, j])
            frames = frames_of(k, j, rng)
            samples = int(round(seconds * sample_rate))
            speech = speak(word, rng, sample_rate)[:samples]
            audio = rng.normal(0, noise, samples).astype(np.float32)
            at = int(rng.integers(0, max(1, samples - len(speech))))
            audio[at:at + len(speech)] += gain * speech / max(np.abs(speech).max(), 1e-6)
            clip_id = f"{label}_{j:03d}"
            _write_mp4(out / "clips" / f"{clip_id}.mp4", frames, np.clip(audio, -1, 1), fps, sample_rate)
            split = "train" if j < 0.6 * clips_per_class else "val" if j < 0.7 * clips_per_class else "test"
            rows.append({"path": f"clips/{clip_id}.mp4", "label": label, "split": split, "clip_id": clip_id}
                        | ({"typeface": typeface_of_clip[clip_id]} if kind == "letters" else {}))
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def pixel_probe(manifest: Path, frame_size: int = 64, fps: int = 8) -> dict[float, float]:
    """Test accuracy of a logistic regression on the raw pixels of each clip's middle frame, per C:
    how much of the class a linear read-out finds without any learned feature (the floor a
    pretrained encoder must beat)."""
    from sklearn.linear_model import LogisticRegression

    from avlib.data.decode import decode_clip

    features: dict[str, list] = {"train": [], "test": []}
    labels: dict[str, list] = {"train": [], "test": []}
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] in features:
                clip = decode_clip(manifest.parent / row["path"], fps=fps, frame_size=frame_size, sample_rate=16000)
                features[row["split"]].append(clip.frames[len(clip.frames) // 2].astype(np.float32).ravel() / 255)
                labels[row["split"]].append(row["label"])
    return {c: LogisticRegression(C=c, max_iter=2000).fit(np.array(features["train"]), labels["train"])
            .score(np.array(features["test"]), labels["test"]) for c in (0.01, 0.1, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips_per_class", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=KINDS, default="images",
                        help="images: 5 classes of one picture each (easy); digits: 10 classes of handwritten "
                             "digits over photographs with spoken digit names (harder); letters: 10 capital "
                             "letters printed in the installed typefaces with their spoken names")
    parser.add_argument("--background", choices=BACKGROUNDS, default=None,
                        help="digits and letters: photo (pan across a photograph, ink of any colour), plain (one "
                             f"colour per clip, ink differing from it by >= {MIN_CONTRAST} in luminance) or paper "
                             "(plain with the ink always the darker, as in a scan); default photo for digits, "
                             "paper for letters")
    parser.add_argument("--min_families", type=int, default=MIN_TYPEFACE_FAMILIES,
                        help="letters: fewest typeface families to accept (see find_typefaces)")
    parser.add_argument("--pixel_probe", action="store_true",
                        help="also print a raw-pixel linear probe's test accuracy (middle frame, 64 px) per C")
    args = parser.parse_args()
    manifest = generate(Path(args.out), args.clips_per_class, args.seconds, args.fps, args.size, args.sample_rate,
                        args.seed, args.kind, args.background, args.min_families)
    print(manifest)
    if args.pixel_probe:
        print("raw-pixel linear probe, test accuracy per C:", pixel_probe(manifest))


if __name__ == "__main__":
    main()
