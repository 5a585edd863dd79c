"""A corpus of LONG clips with one labelled event each, plus broken rows: media "of other kinds".

Why it exists (issue 30): the embedded dataset (:mod:`avlib.data.synthetic`) is 2-3-s clips at an
integer fps, square frames and mono 16-kHz-ish audio, so it cannot show what a streaming loader must
get right on real corpora (VGGSound, Kinetics-Sounds: 10-s clips at 29.97 fps, 4:3, 44.1 kHz stereo
AAC, some files broken).  This corpus has exactly those quirks:

* clips of a seeded length in ``[min_s, max_s]`` (default 6-12 s) at an NTSC rate (``30000/1001``),
  4:3 frames (160x120), 44.1-kHz STEREO AAC whose two channels differ (the sound is panned), so a
  decoder's downmix and resampling are exercised;
* H.264 with B-frames and a fixed keyframe interval of ~2 s (``keyint = round(2 fps)``, no scene-cut
  keyframes), so seeking lands on a keyframe up to 2 s before a window; video and audio packets
  interleaved in time order, as a camera or a remuxer writes them;
* ONE labelled event per clip, ``event_s`` long, at a seeded random time: a class-specific shape in a
  class-specific colour appears over a plain, slowly drifting background, and a class-specific sound
  (a steady tone for even classes, a rising chirp for odd ones) plays over exactly the same interval;
  outside it the picture is the background only and the sound is low noise.  The manifest gives
  ``event_start`` / ``event_end``, so a test can check what a window covers (the reference loaders
  draw a random window over the whole clip: a loader that reads only the first seconds misses most
  events).

Frame ``i`` shows the scene at time ``i / fps`` (the event is visible on frames with
``event_start <= i / fps < event_end``); audio sample ``n`` is time ``n / sample_rate``.

``broken=True`` appends three rows that a loader must report and skip:

* ``truncated``: a full clip written with its index at the FRONT (``movflags=faststart``, as web
  downloads usually are) and then cut to its first ~60% of bytes: it OPENS and its metadata claims
  the full duration, but decoding past the cut fails (``decode_clip`` raises "truncated"), so only
  decoding finds it;
* ``no audio``: a valid clip with a video stream only;
* ``missing``: a row whose file does not exist.

Everything is seeded by ``(seed, clip index)``; the same arguments give the same bytes (libx264 on
one thread with ``mbtree=0``, as :mod:`avlib.data.synthetic` found necessary).
"""
from __future__ import annotations

import colorsys
import csv
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["write_long_corpus", "CORPUS_COLUMNS", "SHAPES", "BROKEN_KINDS"]

CORPUS_COLUMNS = ("path", "label", "split", "event_start", "event_end", "duration")
SHAPES = ("disc", "square", "triangle", "cross", "ring")
BROKEN_KINDS = ("truncated", "no_audio", "missing")
KEYFRAME_S = 2.0  # keyframe interval: long enough that a seek lands well before most windows
TRUNCATE_KEEP = 0.6  # the truncated file keeps this share of its bytes
AUDIO_CHUNK = 1024  # samples per AAC frame


def _rate(fps: float) -> Fraction:
    """The exact frame rate: 29.97... as 30000/1001, 16.0 as 16 (MP4 stores rationals)."""
    return Fraction(fps).limit_denominator(1001)


def _class_label(c: int) -> str:
    return f"c{c}_{SHAPES[c % len(SHAPES)]}_{'tone' if c % 2 == 0 else 'chirp'}"


def _class_frequency(c: int) -> float:
    """Hz: half an octave apart per class, 300 Hz to ~7 kHz for 10 classes (under 22.05 kHz)."""
    return 300.0 * 2.0 ** (c / 2)


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float,
                radius: float) -> np.ndarray:
    """bool (H, W): the pixels inside ``shape`` centred at (cx, cy)."""
    x, y = (xx - cx) / radius, (yy - cy) / radius  # (H, W) unit coordinates
    if shape == "disc":
        return x * x + y * y <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8)
    if shape == "triangle":  # apex up at y = -0.9 (image rows grow downwards), base at y = 0.7
        return (y <= 0.7) & (np.abs(x) <= 0.6 * (y + 0.9))
    if shape == "cross":
        return ((np.abs(x) <= 0.3) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 1.0))
    if shape == "ring":
        r2 = x * x + y * y
        return (r2 <= 1.0) & (r2 >= 0.5 * 0.5)
    raise ValueError(f"unknown shape {shape!r}")


def _plan(j: int, *, num_classes: int, min_s: float, max_s: float, rate: Fraction,
          event_s: float, seed: int) -> dict:
    """Clip j's class, length (a whole number of frames) and event time, from its own seed."""
    rng = np.random.default_rng([seed, j])
    c = j % num_classes
    n_frames = int(round(rng.uniform(min_s, max_s) * rate))
    duration = float(n_frames / rate)
    event_start = float(rng.uniform(0.0, duration - event_s))
    return {"index": j, "class": c, "n_frames": n_frames, "duration": duration,
            "event_start": event_start, "event_end": event_start + event_s, "rng": rng}


def _render_frames(plan: dict, size: tuple[int, int], rate: Fraction):
    """Yield (H, W, 3) uint8 RGB frames: a drifting dim gradient, the class's shape during the event."""
    rng, c = plan["rng"], plan["class"]
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) pixel coordinates
    bg_rgb = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.6), rng.uniform(0.25, 0.4)),
                      np.float32)  # (3,)
    angle = rng.uniform(0, 2 * np.pi)
    wavelength = rng.uniform(0.6, 1.2) * max(width, height)
    drift = rng.uniform(0.1, 0.3) * rng.choice([-1.0, 1.0])  # cycles per second
    phase_map = (xx * np.cos(angle) + yy * np.sin(angle)) / wavelength  # (H, W) in cycles
    # The shape lies inside the central square, so a short-side resize + centre crop still shows it.
    side = min(width, height)
    radius = 0.22 * side
    cx = rng.uniform((width - side) / 2 + radius * 1.1, (width + side) / 2 - radius * 1.1)
    cy = rng.uniform((height - side) / 2 + radius * 1.1, (height + side) / 2 - radius * 1.1)
    mask = _shape_mask(SHAPES[c % len(SHAPES)], xx, yy, cx, cy, radius)  # (H, W)
    colour = np.array(colorsys.hsv_to_rgb(c / max(plan["num_classes"], 1), 0.9, 1.0), np.float32)
    for i in range(plan["n_frames"]):
        t = float(i / rate)
        shade = 1.0 + 0.35 * np.sin(2 * np.pi * (phase_map - drift * t))  # (H, W)
        frame = shade[..., None] * bg_rgb  # (H, W, 3) in [0, 1]
        if plan["event_start"] <= t < plan["event_end"]:
            frame[mask] = colour
        yield np.clip(np.round(frame * 255), 0, 255).astype(np.uint8)


def _synthesize_audio(plan: dict, sample_rate: int, channels: int) -> np.ndarray:
    """float32 (channels, S): low noise, and the class's sound during [event_start, event_end)."""
    rng, c = plan["rng"], plan["class"]
    n = int(round(plan["duration"] * sample_rate))
    t = np.arange(n) / sample_rate  # (S,) seconds
    inside = (t >= plan["event_start"]) & (t < plan["event_end"])  # (S,)
    te = t[inside] - plan["event_start"]  # (E,) time since the event's onset
    f0, span = _class_frequency(c), plan["event_end"] - plan["event_start"]
    if c % 2 == 0:  # steady tone
        phase = 2 * np.pi * f0 * te
    else:  # linear chirp f0 -> 2 f0 over the event
        phase = 2 * np.pi * (f0 * te + 0.5 * (f0 / span) * te * te)
    ramp = np.minimum(1.0, np.minimum(te, span - te) / 0.005)  # 5-ms fades: no click at the edges
    sound = np.zeros(n, np.float64)
    sound[inside] = 0.3 * ramp * np.sin(phase)
    pan = rng.uniform(0.15, 0.85)  # 0 = left, 1 = right: the channels differ
    gains = [np.cos(pan * np.pi / 2), np.sin(pan * np.pi / 2)] if channels == 2 else [1.0]
    noise = 0.002 * rng.standard_normal((channels, n))  # (C, S) independent per channel
    return (np.asarray(gains)[:, None] * sound[None, :] + noise).astype(np.float32)


def _write_mp4(path: Path, frames, audio: np.ndarray | None, rate: Fraction, size: tuple[int, int],
               sample_rate: int, faststart: bool = False) -> None:
    """H.264 (libx264, yuv420p, B-frames, keyframe every ~2 s) + AAC, packets interleaved in time."""
    width, height = size
    keyint = max(1, int(round(KEYFRAME_S * rate)))
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        vs = out.add_stream("libx264", rate=rate, options={
            "preset": "veryfast", "crf": "23", "threads": "1",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:mbtree=0"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.thread_count = 1
        aus = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            aus = out.add_stream("aac", rate=sample_rate, layout=layout, options={"aac_coder": "fast"})
            aus.bit_rate = 64000 * audio.shape[0]
        next_sample = 0
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(vs.encode(frame))
            if aus is not None:  # the audio up to this frame's end, in whole AAC frames
                until = int((i + 1) / rate * sample_rate)
                while next_sample + AUDIO_CHUNK <= until:
                    next_sample = _mux_audio(out, aus, audio, next_sample, sample_rate)
        out.mux(vs.encode())
        if aus is not None:
            while next_sample < audio.shape[1]:
                next_sample = _mux_audio(out, aus, audio, next_sample, sample_rate)
            out.mux(aus.encode())


def _mux_audio(out, aus, audio: np.ndarray, start: int, sample_rate: int) -> int:
    chunk = np.ascontiguousarray(audio[:, start:start + AUDIO_CHUNK])  # (C, <=1024) planar
    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=aus.layout.name)
    frame.sample_rate, frame.pts = sample_rate, start
    out.mux(aus.encode(frame))
    return start + chunk.shape[1]


def _splits_of(clips: int, num_classes: int) -> list[str]:
    """Per class: >= 1 val, >= 1 test (about 15% and 25%), the rest train (clip j is class j % C)."""
    splits = [""] * clips
    for c in range(num_classes):
        members = list(range(c, clips, num_classes))
        n = len(members)
        n_val, n_test = max(1, round(0.15 * n)), max(1, round(0.25 * n))
        for rank, j in enumerate(members):
            splits[j] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return splits


def _check(name: str, ok: bool, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"write_long_corpus: {name} must be {expected}, got {value!r}")


def write_long_corpus(out_dir: str | os.PathLike, *, clips: int = 20, min_s: float = 6.0,
                      max_s: float = 12.0, fps: float = 30000 / 1001,
                      size: tuple[int, int] = (160, 120), sample_rate: int = 44100, channels: int = 2,
                      num_classes: int = 4, event_s: float = 1.5, seed: int = 0,
                      broken: bool = True) -> Path:
    """Write ``out_dir/clips/*.mp4`` and ``out_dir/manifest.csv``; return the manifest's path.

    ``size`` is (width, height).  The manifest has the columns :data:`CORPUS_COLUMNS` (paths relative
    to it; ``duration``, ``event_start`` and ``event_end`` in seconds); with ``broken`` three more
    rows follow, in the order of :data:`BROKEN_KINDS` (see the module docstring), all in the train
    split.  Clip j has class ``j % num_classes``; every class is in every split."""
    _check("num_classes", isinstance(num_classes, int) and num_classes >= 1, "an int >= 1", num_classes)
    _check("clips", isinstance(clips, int) and clips >= 3 * num_classes,
           f"an int >= 3 * num_classes = {3 * num_classes} (every class in train, val and test)", clips)
    _check("event_s", event_s > 0, "> 0 seconds", event_s)
    _check("min_s", min_s > event_s, f"> event_s = {event_s} (the event must fit in a clip)", min_s)
    _check("max_s", max_s >= min_s, f">= min_s = {min_s}", max_s)
    _check("fps", fps > 0, "> 0", fps)
    _check("size", len(size) == 2 and all(isinstance(s, int) and s >= 16 and s % 2 == 0 for s in size),
           "(width, height), even ints >= 16 (yuv420p)", size)
    _check("sample_rate", isinstance(sample_rate, int) and 8000 <= sample_rate <= 96000,
           "an int in [8000, 96000]", sample_rate)
    _check("channels", channels in (1, 2), "1 or 2", channels)
    _check("num_classes", _class_frequency(num_classes - 1) < 0.45 * sample_rate,
           f"small enough that its tones stay below Nyquist ({sample_rate / 2} Hz)", num_classes)

    out_dir = Path(out_dir)
    clips_dir = out_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    rate = _rate(fps)
    splits = _splits_of(clips, num_classes)
    kw = dict(num_classes=num_classes, min_s=min_s, max_s=max_s, rate=rate, event_s=event_s, seed=seed)
    rows = []

    def write(j: int, name: str, *, with_audio: bool = True, truncate: bool = False,
              write_file: bool = True) -> dict:
        plan = _plan(j, **kw)
        plan["num_classes"] = num_classes
        path = clips_dir / name
        if write_file:
            frames = _render_frames(plan, size, rate)
            audio = _synthesize_audio(plan, sample_rate, channels) if with_audio else None
            tmp = path.with_name(f".tmp-{os.getpid()}-{name}")
            _write_mp4(tmp, frames, audio, rate, size, sample_rate, faststart=truncate)
            if truncate:
                data = tmp.read_bytes()
                tmp.write_bytes(data[: int(len(data) * TRUNCATE_KEEP)])
            os.replace(tmp, path)
        return {"path": f"clips/{name}", "label": _class_label(plan["class"]),
                "event_start": f"{plan['event_start']:.6f}", "event_end": f"{plan['event_end']:.6f}",
                "duration": f"{plan['duration']:.6f}"}

    for j in range(clips):
        rows.append({**write(j, f"long_{j:05d}.mp4"), "split": splits[j]})
    if broken:
        for k, kind in enumerate(BROKEN_KINDS):
            j = clips + k
            row = write(j, f"broken_{kind}.mp4", with_audio=kind != "no_audio",
                        truncate=kind == "truncated", write_file=kind != "missing")
            rows.append({**row, "split": "train"})
        (clips_dir / "broken_missing.mp4").unlink(missing_ok=True)

    manifest = out_dir / "manifest.csv"
    tmp = manifest.with_name(f".tmp-{os.getpid()}-manifest.csv")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CORPUS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    return manifest
