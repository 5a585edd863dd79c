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

    python bench/real_media.py --out /tmp/realmedia --clips_per_class 40 --seconds 2
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


def generate(out: Path, clips_per_class: int, seconds: float, fps: int, size: int, sample_rate: int,
             seed: int) -> Path:
    """Write ``out/clips/*.mp4`` and ``out/manifest.csv`` (60/10/30 split per class); return the manifest."""
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, (label, word, name, key) in enumerate(CLASSES):
        image = load_image(name, key)
        for j in range(clips_per_class):
            rng = np.random.default_rng([seed, k, j])
            frames = render(image, rng, int(round(seconds * fps)), size)
            samples = int(round(seconds * sample_rate))
            speech = speak(word, rng, sample_rate)[:samples]
            audio = rng.normal(0, 0.01, samples).astype(np.float32)
            at = int(rng.integers(0, max(1, samples - len(speech))))
            audio[at:at + len(speech)] += 0.8 * speech / max(np.abs(speech).max(), 1e-6)
            clip_id = f"{label}_{j:03d}"
            _write_mp4(out / "clips" / f"{clip_id}.mp4", frames, np.clip(audio, -1, 1), fps, sample_rate)
            split = "train" if j < 0.6 * clips_per_class else "val" if j < 0.7 * clips_per_class else "test"
            rows.append({"path": f"clips/{clip_id}.mp4", "label": label, "split": split, "clip_id": clip_id})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips_per_class", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(generate(Path(args.out), args.clips_per_class, args.seconds, args.fps, args.size, args.sample_rate,
                   args.seed))


if __name__ == "__main__":
    main()
