"""The embedded procedural audio-visual dataset: offline, deterministic, written as real MP4 files.

Why it exists
-------------
Every experiment in avlib must run without downloading anything, and the point of the experiments
is to show that cross-modal contrastive pretraining learns something a randomly initialised encoder
does not have.  So the dataset is built so that

* the CLASS hinges on things that have to be learned (shape, motion pattern, rhythm, timbre and
  their audio-visual coupling), while
* the raw statistics that random convolutional features separate very well (mean colour,
  brightness, loudness, pitch, motion direction, position, size) are NUISANCES: they are
  drawn per clip from one wide distribution shared by all classes, independently of the class and
  independently across the two modalities of a clip.

The clips are real H.264 + AAC MP4 files with a CSV manifest (see ``data_manifests/README.md``),
so the embedded dataset and user-provided datasets go through exactly the same decoding path.

Class table (num_classes = 10; class ``k = a + 5 b`` with ``a = k % 5`` and ``b = k // 5``)
--------------------------------------------------------------------------------------
Attribute indices: shape = a, motion = (a + b) % 5, timbre = (2a + b) % 5, rhythm = (a + 2b) % 5.

===  =========  ========  ======  ============  ========================================
k    shape      motion    timbre  rhythm        name
===  =========  ========  ======  ============  ========================================
0    disc       bounce    sine    regular       bounce_disc_sine_regular
1    square     pingpong  saw     swing         pingpong_square_saw_swing
2    triangle   orbit     pluck   double        orbit_triangle_pluck_double
3    cross      pulse     square  accelerating  pulse_cross_square_accelerating
4    ring       zigzag    bell    triplet       zigzag_ring_bell_triplet
5    disc       pingpong  square  double        pingpong_disc_square_double
6    square     orbit     bell    accelerating  orbit_square_bell_accelerating
7    triangle   pulse     sine    triplet       pulse_triangle_sine_triplet
8    cross      zigzag    saw     regular       zigzag_cross_saw_regular
9    ring       bounce    pluck   swing         bounce_ring_pluck_swing
===  =========  ========  ======  ============  ========================================

Every single attribute value occurs in exactly two classes (so no single attribute, however well a
feature captures it, separates more than half the classes), (shape, motion) is unique per class
(video alone determines the class), and (timbre, rhythm) is unique per class (audio alone does too).
The map is a pair of invertible linear maps mod 5, so it extends to at most 25 classes.

Events and audio-visual synchrony
---------------------------------
Each clip samples event times from its class's rhythm pattern (inter-onset intervals in units of
the class's beat period ``p = class_period(k)``, 0.30–0.70 s, jittered ±6 % per clip; random
phase).  Tempo is a CLASS attribute, not a nuisance (see :func:`class_period` for why).  Every
event is one percussive note of the class's timbre whose onset is exactly at the event time, and
the visual event happens at exactly that time:

* bounce:   ballistic hops between consecutive events; the object touches the floor at each event
            (hop height grows with the square of the interval, like a real ball).
* pingpong: constant speed between two walls; the object reaches a wall at each event.
* orbit:    constant angular speed on a circle; the object flashes (colour pushed towards the
            colour most contrasting the background) with a peak at each event.
* pulse:    (almost) static object that swells in size with a peak at each event.
* zigzag:   steady travel across the frame with a direction reversal of the transverse motion at
            each event.

Events are generated on [-2 s, duration + 2 s], so trajectories and note tails are continuous at the
clip borders.  Frame ``i`` shows the scene at time ``i / fps`` exactly (no motion blur); audio sample
``n`` is time ``n / sample_rate``.  So instance-level audio-visual correspondence (which sound goes
with which video) is learnable, not only the class.

Nuisances (drawn per clip, identical distribution for every class)
------------------------------------------------------------------
Visual: background hue and saturation (any), the object's hue within its class's colour family (a
band of ±0.06 of the hue circle shared by the two classes of a rhythm pair, see ``class_attributes``)
and its saturation, their brightness (a dim background, value
0.10-0.45, and a bright object, value 0.70-1.0, so luminance edges always carry shape and motion), a
low-contrast gradient + grating texture and per-frame pixel noise (amplitude ∝ ``noise``), object
size, a small tilt (±0.15 rad) and slow spin of the shape and of the motion axis, motion amplitude,
position, orbit speed and direction.  (Fully random orientations and brightness polarity made shape
and motion unlearnable for a small video encoder in a CPU budget: measured, a supervised 3-D CNN
stayed at chance after 200 steps; with these ranges it reaches 70 % test accuracy.)
Audio: fundamental frequency (log-uniform 200–1200 Hz, shared by all timbres), loudness (−34..−18
dBFS RMS), note decay time (50–300 ms), per-note velocity, a random "room/microphone" EQ (spectral
tilt above f0 and one resonant peak, so brightness is not timbre), background noise of random
spectral tilt (1/f^β, β∈[0,2]) at SNR = 30·(1 − noise) dB, the ±6 % tempo jitter and the phase.
The clip's clean signal is normalised to unit RMS before the gain, so event density (which differs
between rhythms) does not leak into loudness.

Faulty pairs
------------
``faulty_pair_rate`` of the TRAIN clips (a deterministic choice) get the audio track of another
train clip, preferably one of a different class that is not itself corrupted; the manifest marks
them with ``corrupted=1`` and ``audio_source=<clip id whose audio was used>``.  Val and test clips
are always clean: the robust-xID paper (Morgado et al. 2021) puts faulty pairs in the pretraining
data and evaluates on clean data, and a corrupted test clip would carry another class's sound, so
its audio label would be wrong (at rate 0.5 that held every audio probe near chance).

The structure of real video (all off by default; the defaults reproduce the balanced dataset)
----------------------------------------------------------------------------------------------
* ``class_imbalance`` r: the train split's class sizes fall geometrically from ``clips_per_class``
  x the train fraction (class 0) to 1/r of it (the last class), a long tail as in real video; val
  and test stay balanced so that accuracies remain comparable across r.
* ``clips_per_source`` s: clips come in groups of s cut from one source "video": they share the
  background, object colour, size, tilt and texture, and the sound's pitch, loudness, EQ, decay and
  noise colour (what stays fixed within one real video); only the event times, the motion's phase
  and placement and the noise samples differ.  These are the near-duplicates ("biased keys") CM-ACC
  (Ma et al. 2021, Sec. 1) argues a random dictionary is full of.  The manifest's ``group`` column
  names each clip's source; splits keep a source's clips together.
* ``av_sync=False``: the sound's onsets are drawn independently of the visual events (same rhythm
  and class tempo, own phase and jitter), so only the class links the two streams, as in much
  real video (a dog barking off screen, speech over a still).
* ``num_classes`` up to 50: classes 25-49 use five more shapes (see :func:`class_attributes`).

Determinism
-----------
Every random draw for clip ``i`` comes from ``numpy.random.default_rng([seed, i, stream])``, so clip
content depends only on (seed, clip index), never on worker scheduling.  libx264 runs with one
thread, so the MP4 bytes are reproducible too (tested on PyAV 18.1 / bundled FFmpeg).
"""
from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avlib.config import EMBEDDED_MAX_CLASSES

__all__ = [
    "SHAPES",
    "MOTIONS",
    "TIMBRES",
    "RHYTHMS",
    "FORMAT_VERSION",
    "MANIFEST_COLUMNS",
    "GROUP_COLUMN",
    "MAX_CLASSES",
    "SyntheticSpec",
    "ClipPlan",
    "class_attributes",
    "class_period",
    "describe_classes",
    "plan_clip",
    "render_video",
    "synthesize_audio",
    "spec_hash",
    "data_home",
    "default_root",
    "generate",
]

# Bump when the rendering/synthesis changes, so cached datasets on disk are regenerated.
FORMAT_VERSION = 4  # 4: colour family per rhythm pair, wider audio context; 2: class tempo (class_period), larger objects, mbtree=0; 3: bright objects, upright

SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "hexagon", "bar", "crescent", "halfdisc")
MOTIONS = ("bounce", "pingpong", "orbit", "pulse", "zigzag")
TIMBRES = ("sine", "square", "saw", "bell", "pluck")
RHYTHMS = ("regular", "swing", "double", "accelerating", "triplet")

# Inter-onset intervals of one cycle of each rhythm, in units of the clip's period p.
# Each pattern has a mean interval close to 1, so event density barely differs between rhythms.
_RHYTHM_IOIS = {
    "regular": (1.0,),
    "swing": (1.4, 0.6),
    "double": (0.3, 1.7),
    "accelerating": (1.7, 1.3, 1.0, 0.75, 0.55, 0.4),
    "triplet": (0.38, 0.38, 2.24),
}

MANIFEST_COLUMNS = ("path", "label", "split", "clip_id", "duration", "corrupted", "audio_source")
# written only when clips_per_source > 1 (the default manifest stays byte for byte what it was):
# the source "video" of each clip; readers treat a manifest without it as one source per clip
GROUP_COLUMN = "group"

_SPLITS = ("train", "val", "test")
MAX_CLASSES = EMBEDDED_MAX_CLASSES  # 10 shapes x 5 motions (class_attributes); config checks num_classes with it
_EVENT_MARGIN_S = 2.0  # events are generated on [-margin, duration + margin]
_VISUAL_EVENT_TAU_S = 0.08  # width of the flash / pulse peaks (two-sided exponential)


# ----------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticSpec:
    """All knobs of the embedded dataset; its hash names the folder and keys the on-disk cache."""

    num_classes: int = 10
    clips_per_class: int = 120
    duration_s: float = 3.0
    fps: int = 8
    frame_size: int = 64
    sample_rate: int = 16000
    noise: float = 0.3  # 0..1 nuisance level: visual clutter amplitude and audio background noise
    faulty_pair_rate: float = 0.0  # fraction of clips whose audio comes from another clip
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)  # train / val / test
    # the structure of real video (module docstring); these defaults reproduce the balanced dataset
    class_imbalance: float = 1.0  # most / least frequent class in the train split (geometric sizes)
    clips_per_source: int = 1  # clips cut from one source "video" (shared nuisances, one split)
    av_sync: bool = True  # False: sound onsets independent of the visual events

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> None:
            raise ValueError(f"SyntheticSpec.{name}={getattr(self, name)!r}: expected {expected}")

        max_classes = MAX_CLASSES
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= max_classes:
            bad("num_classes", f"an int in [2, {max_classes}]")
        if not isinstance(self.clips_per_class, int) or self.clips_per_class < 1:
            bad("clips_per_class", "an int >= 1")
        if not (isinstance(self.duration_s, (int, float)) and 0.25 <= self.duration_s <= 60):
            bad("duration_s", "a number of seconds in [0.25, 60]")
        if not isinstance(self.fps, int) or not 1 <= self.fps <= 60:
            bad("fps", "an int in [1, 60]")
        if not isinstance(self.frame_size, int) or self.frame_size < 16 or self.frame_size % 2:
            bad("frame_size", "an even int >= 16 (H.264 yuv420p needs even sizes)")
        if self.sample_rate not in (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000):
            bad("sample_rate", "one of the AAC rates 8000, 11025, 16000, 22050, 24000, 32000, "
                "44100, 48000")
        if not (isinstance(self.noise, (int, float)) and 0.0 <= self.noise <= 1.0):
            bad("noise", "a number in [0, 1]")
        if not (isinstance(self.faulty_pair_rate, (int, float))
                and 0.0 <= self.faulty_pair_rate <= 1.0):
            bad("faulty_pair_rate", "a number in [0, 1]")
        if not isinstance(self.seed, int) or self.seed < 0:
            bad("seed", "an int >= 0")
        fr = tuple(self.split_fractions)
        if (len(fr) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fr)
                or abs(sum(fr) - 1.0) > 1e-6):
            bad("split_fractions", "three non-negative numbers (train, val, test) summing to 1")
        object.__setattr__(self, "split_fractions", tuple(float(f) for f in fr))
        if not (isinstance(self.class_imbalance, (int, float)) and 1.0 <= self.class_imbalance <= 1000):
            bad("class_imbalance", "a number in [1, 1000] (1 = balanced)")
        object.__setattr__(self, "class_imbalance", float(self.class_imbalance))
        if not isinstance(self.clips_per_source, int) or self.clips_per_source < 1:
            bad("clips_per_source", "an int >= 1")
        if not isinstance(self.av_sync, bool):
            bad("av_sync", "True or False")

    @property
    def num_clips(self) -> int:
        return len(_layout(self)[0])

    @property
    def num_frames(self) -> int:
        return int(round(self.duration_s * self.fps))

    @property
    def num_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))


# fields added after FORMAT_VERSION 4, left out of the hash at their defaults so that every dataset
# made before them keeps its hash (and its folder and caches)
_LATER_FIELDS = {"class_imbalance": 1.0, "clips_per_source": 1, "av_sync": True}


def spec_hash(spec: SyntheticSpec) -> str:
    """Content hash of the spec and the format version (hex sha256)."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items()
              if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}
    if spec.faulty_pair_rate > 0:  # faulty pairs moved to the train split only: a new content
        fields["faulty_splits"] = "train"
    payload = json.dumps({"format_version": FORMAT_VERSION, "spec": fields}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def data_home() -> Path:
    """``$AVLIB_HOME`` if set, else ``~/.cache/avlib``."""
    env = os.environ.get("AVLIB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avlib"


def default_root(spec: SyntheticSpec) -> Path:
    """Folder for a spec's dataset under the data home, named with the spec hash."""
    return data_home() / "synthetic" / f"av-{spec_hash(spec)[:16]}"


# ----------------------------------------------------------------------------------------------
# Class table
# ----------------------------------------------------------------------------------------------
def class_attributes(k: int) -> dict:
    """(shape, motion, timbre, rhythm, colour family) of class k; the linear maps mod 5 are invertible.

    Each attribute pairs class (a, 0) with class (a - d, 1) for its own offset d (shape 0, motion 1,
    rhythm 2, timbre 3), so no two of them group the classes the same way.  The colour family (a
    band of object hues) follows the rhythm grouping: the two classes that share a rhythm share a
    colour family.  That class-pair coupling of a raw visual statistic with the sound's rhythm is a
    cross-modal regularity that random video features already see, which lets contrastive training
    start: with every raw statistic independent across modalities, a supervised video encoder
    learned the classes but cross-modal training stayed at chance for 400 steps.  Measured variants
    (random sampler, 60 clips per class): colour family on the timbre pairs gave +30/+9 points (video/audio
    linear probe over random init), on the rhythm pairs +37/+11, with a pitch register coupled too
    +29/+12 but a random-init audio probe of 0.64-0.78.

    Classes 25-49 (``num_classes`` > 25) repeat the same maps with the five further shapes; their
    sounds differ from those of classes 0-24 by tempo (:func:`class_period`), so every class has
    its own (shape, motion) and its own (timbre, rhythm, tempo).
    """
    if not 0 <= k < MAX_CLASSES:
        raise ValueError(f"class index {k} out of range [0, {MAX_CLASSES})")
    a, b, c = k % 5, (k // 5) % 5, k // 25
    shape, motion = SHAPES[a + 5 * c], MOTIONS[(a + b) % 5]
    timbre, rhythm = TIMBRES[(2 * a + b) % 5], RHYTHMS[(a + 2 * b) % 5]
    return {"name": f"{motion}_{shape}_{timbre}_{rhythm}", "shape": shape, "motion": motion,
            "timbre": timbre, "rhythm": rhythm, "family": (a + 2 * b) % 5}


def describe_classes(spec: SyntheticSpec | None = None) -> list[dict]:
    """The class table: one dict per class with keys index, name, shape, motion, timbre, rhythm,
    period_s (the class's beat period)."""
    spec = spec or SyntheticSpec()
    return [{"index": k, **class_attributes(k), "period_s": round(class_period(k), 4)}
            for k in range(spec.num_classes)]


# ----------------------------------------------------------------------------------------------
# Per-clip plan: every random draw of a clip, from (seed, clip index) only
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipPlan:
    """Ground truth of one clip (useful for tests and notebooks)."""

    index: int
    clip_id: str
    class_index: int
    label: str
    split: str
    corrupted: bool
    audio_source: int  # clip index whose audio track this clip carries (== index unless corrupted)
    events: np.ndarray  # (E,) event times in seconds, on [-margin, duration + margin]
    visual: dict  # visual nuisances
    audio: dict  # audio nuisances of THIS clip's own (uncorrupted) sound
    source: int = -1  # the source "video" the clip was cut from (its own index unless clips_per_source > 1)
    # the sound's onsets when they are independent of the visual events (av_sync=False); else None
    audio_events: np.ndarray | None = None


def _clip_id(i: int) -> str:
    return f"clip_{i:05d}"


def _rng(spec: SyntheticSpec, i: int, stream: int) -> np.random.Generator:
    # stream: 0 events, 1 visual, 2 audio.  Independent streams keep modalities' nuisances independent.
    return np.random.default_rng([spec.seed, i, stream])


def _layout(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(class (N,), source (N,), split per clip) of every clip; memoised per spec.

    At the defaults (balanced, one clip per source) this is the original layout: class ``i //
    clips_per_class``, source ``i``, the stratified splits of :func:`_splits`.  Otherwise class k
    holds, in order, its train, val and test clips: val/test as in the balanced dataset, train
    ``max(1, round(n_train / r ** (k / (C - 1))))`` for ``r = class_imbalance``; within a (class,
    split) consecutive runs of ``clips_per_source`` clips form one source, so a source never
    straddles two splits."""
    if spec not in _LAYOUTS:
        _LAYOUTS[spec] = _compute_layout(spec)
    return _LAYOUTS[spec]


_LAYOUTS: dict = {}


def _split_counts(n: int, fractions) -> list[int]:
    """Largest-remainder cut of n clips into (train, val, test)."""
    raw = [f * n for f in fractions]
    counts = [int(math.floor(r)) for r in raw]
    for j in sorted(range(3), key=lambda j: -(raw[j] - counts[j]))[: n - sum(counts)]:
        counts[j] += 1
    return counts


def _compute_layout(spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if spec.class_imbalance == 1.0 and spec.clips_per_source == 1:
        n = spec.num_classes * spec.clips_per_class
        return np.arange(n) // spec.clips_per_class, np.arange(n), _splits(spec)
    train, val, test = _split_counts(spec.clips_per_class, spec.split_fractions)
    classes, sources, splits = [], [], []
    source = 0
    C = spec.num_classes
    for k in range(C):
        shrink = spec.class_imbalance ** (k / (C - 1)) if C > 1 else 1.0
        for name, count in (("train", max(1, int(round(train / shrink))) if train else 0),
                            ("val", val), ("test", test)):
            for j in range(count):
                if j and j % spec.clips_per_source == 0:
                    source += 1
                classes.append(k)
                sources.append(source)
                splits.append(name)
            if count:
                source += 1
    return np.asarray(classes), np.asarray(sources), splits


def _splits(spec: SyntheticSpec) -> list[str]:
    """Stratified split per clip: per class, a seeded permutation cut by largest remainders."""
    n = spec.clips_per_class
    raw = [f * n for f in spec.split_fractions]
    counts = [int(math.floor(r)) for r in raw]
    for j in sorted(range(3), key=lambda j: -(raw[j] - counts[j]))[: n - sum(counts)]:
        counts[j] += 1
    out = [""] * (spec.num_classes * n)
    for k in range(spec.num_classes):
        perm = np.random.default_rng([spec.seed, 10_000_000 + k]).permutation(n)
        names = [s for s, c in zip(_SPLITS, counts) for _ in range(c)]
        for pos, name in zip(perm, names):
            out[k * n + int(pos)] = name
    return out


def _faulty_sources(spec: SyntheticSpec) -> np.ndarray:
    """(N,) clip index whose audio each clip carries; differs from the clip's own for faulty ones.
    Only train clips are corrupted, and only with the audio of other train clips (module docstring).
    """
    cls, _, splits = _layout(spec)
    n = len(cls)
    src = np.arange(n)
    train = np.flatnonzero(np.asarray(splits) == "train")
    n_bad = int(round(spec.faulty_pair_rate * len(train)))
    if n_bad == 0:
        return src
    rng = np.random.default_rng([spec.seed, 20_000_000])
    bad = np.sort(rng.choice(train, size=n_bad, replace=False))
    is_bad = np.zeros(n, bool)
    is_bad[bad] = True
    is_train = np.zeros(n, bool)
    is_train[train] = True
    cls = np.where(is_train, cls, -1)  # val/test clips never lend their audio
    for i in bad:
        # Prefer a clean clip of another class; fall back to any clip of another class.
        for pool in (np.flatnonzero((cls != cls[i]) & (cls >= 0) & ~is_bad),
                     np.flatnonzero((cls != cls[i]) & (cls >= 0))):
            if len(pool):
                src[i] = int(pool[rng.integers(len(pool))])
                break
    return src


def class_period(k: int) -> float:
    """The class's beat period in seconds: each class has its own tempo (clips jitter it by ±6%).

    Tempo is the audio-visual cue that is easiest to learn (onset rate = event rate), so it is made a
    CLASS attribute rather than a nuisance: were it random within every class, cross-modal training
    would first learn a class-agnostic "tempo" feature and the probes would measure nothing.  The
    ten periods are spread over 0.30-0.70 s in a scrambled order (7k mod 10), unrelated to the
    other attribute indices.  Classes 25-49 take the midpoints between those periods, so a class
    of 25-49 never shares its tempo with the class 0-24 that has its timbre and rhythm.
    """
    if k >= 25:
        return 0.30 + 0.40 * (((7 * k) % 10) + 0.5) / 9
    return 0.30 + 0.40 * ((7 * k) % 10) / 9


def _sample_events(rhythm: str, rng: np.random.Generator, duration: float,
                   base_period: float) -> tuple[np.ndarray, float]:
    """Event times (E,) on [-margin, duration + margin] from a rhythm, the class tempo and a random phase."""
    period = base_period * rng.uniform(0.94, 1.06)
    iois = np.asarray(_RHYTHM_IOIS[rhythm]) * period
    cycle = iois.sum()
    t = -_EVENT_MARGIN_S - rng.uniform(0.0, cycle)
    times, j = [], int(rng.integers(len(iois)))
    while t <= duration + _EVENT_MARGIN_S:
        times.append(t)
        t += iois[j % len(iois)]
        j += 1
    return np.asarray(times), period


def _random_colour(rng: np.random.Generator, v_lo: float, v_hi: float, hue: tuple[float, float] = (0.0, 1.0),
                   saturation: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    h, s, v = rng.uniform(*hue) % 1.0, rng.uniform(*saturation), rng.uniform(v_lo, v_hi)
    rgb = np.clip(np.abs(((h * 6 + np.array([0.0, 4.0, 2.0])) % 6) - 3) - 1, 0, 1)  # hue -> rgb
    return (v * (1 - s + s * rgb)).astype(np.float32)


def plan_clip(spec: SyntheticSpec, index: int) -> ClipPlan:
    """Draw every random quantity of clip ``index`` (depends only on spec and index)."""
    if not 0 <= index < spec.num_clips:
        raise IndexError(f"clip index {index} out of range [0, {spec.num_clips})")
    classes, sources, splits = _layout(spec)
    k, source = int(classes[index]), int(sources[index])
    attrs = class_attributes(k)
    src = int(_faulty_sources(spec)[index])

    events, period = _sample_events(attrs["rhythm"], _rng(spec, index, 0), spec.duration_s, class_period(k))
    audio_events = None
    if not spec.av_sync:  # own phase and tempo jitter: onsets unrelated to the visual events
        audio_events, period = _sample_events(attrs["rhythm"], _rng(spec, index, 3), spec.duration_s,
                                              class_period(k))
    shared = spec.clips_per_source > 1  # nuisances of the source, drawn from the source's streams

    def nuisance_rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([spec.seed, 30_000_000 + source, stream]) if shared else _rng(spec, index, stream)

    rv = nuisance_rng(1)
    # Any hue and saturation for both, but a dim background and a bright object: hue is a nuisance
    # (random per clip), while the luminance edges that carry shape and motion are always there.
    bg = _random_colour(rv, 0.1, 0.45)
    for _ in range(100):  # object colour: any hue, clearly brighter than the background
        centre = attrs["family"] / 5  # the family's hue band: centre ± 0.06 of the hue circle
        obj = _random_colour(rv, 0.7, 1.0, hue=(centre - 0.06, centre + 0.06), saturation=(0.55, 1.0))
        if abs(float((obj - bg) @ [0.3, 0.59, 0.11])) > 0.25:
            break
    visual = {
        "object_colour": obj, "background_colour": bg,
        "radius": rv.uniform(0.24, 0.38),  # in scene units (the frame spans [-1, 1])
        # Upright shapes and motion axes within ±0.15 rad of the class's own: a bounce is vertical
        # and a ping-pong horizontal, as in the world.  Fully random orientations made shape and motion
        # unlearnable for a small encoder in a CPU budget (a supervised 3-D CNN stayed at chance).
        "angle": rv.uniform(-0.15, 0.15), "spin": rv.uniform(-0.1, 0.1),  # rad, rad/s
        "axis": rv.uniform(-0.15, 0.15),  # orientation of the motion's local frame
        "amplitude": rv.uniform(0.6, 1.0), "drift": rv.uniform(-0.3, 0.3),
        "orbit_period": rv.uniform(1.2, 2.5), "orbit_dir": float(rv.choice([-1.0, 1.0])),
        "phase": rv.uniform(0, 2 * np.pi), "offset": rv.uniform(0, 1, size=2),
        "grating": rv.uniform(size=(3, 4)), "gradient": rv.uniform(size=3),
        "texture_tint": rv.uniform(-1, 1, size=(3, 3)),
        "noise_seed": int(rv.integers(2**31)),
    }
    ra = nuisance_rng(2)
    sound_events = events if audio_events is None else audio_events
    audio = {
        "f0": float(np.exp(ra.uniform(np.log(200.0), np.log(1200.0)))),
        "gain_db": ra.uniform(-34.0, -18.0), "decay": ra.uniform(0.05, 0.3),
        "velocities": ra.uniform(0.7, 1.0, size=len(sound_events)),
        "noise_beta": ra.uniform(0.0, 2.0), "fm_index": ra.uniform(1.5, 4.0),
        "tilt": ra.uniform(-0.5, 1.5),  # spectral slope above f0: gain (f / f0) ** -tilt
        "formant_hz": float(np.exp(ra.uniform(np.log(300.0), np.log(5000.0)))),
        "formant_db": ra.uniform(0.0, 15.0),
        "period": period, "noise_seed": int(ra.integers(2**31)),
    }
    if shared:  # what differs between clips of one source: placement, phase, noise samples
        own = _rng(spec, index, 4)
        visual.update(phase=own.uniform(0, 2 * np.pi), offset=own.uniform(0, 1, size=2),
                      drift=own.uniform(-0.3, 0.3), noise_seed=int(own.integers(2**31)))
        audio.update(velocities=own.uniform(0.7, 1.0, size=len(sound_events)),
                     noise_seed=int(own.integers(2**31)))
    return ClipPlan(index=index, clip_id=_clip_id(index), class_index=k, label=attrs["name"],
                    split=splits[index], corrupted=src != index, audio_source=src,
                    events=events, visual=visual, audio=audio, source=source, audio_events=audio_events)


# ----------------------------------------------------------------------------------------------
# Video: trajectories and numpy rendering
# ----------------------------------------------------------------------------------------------
def _nearest_event_peak(t: np.ndarray, events: np.ndarray) -> np.ndarray:
    """(T,) sum of two-sided exponential peaks centred on the events (peak value 1 at an event)."""
    d = np.abs(t[:, None] - events[None, :])  # (T, E)
    return np.clip(np.exp(-d / _VISUAL_EVENT_TAU_S).sum(1), 0, 1.5)


def _local_trajectory(motion: str, t: np.ndarray, events: np.ndarray, vis: dict,
                      duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object centre in the motion's local frame (T, 2), size scale (T,), flash amount (T,)."""
    j = np.clip(np.searchsorted(events, t, side="right") - 1, 0, len(events) - 2)
    e0, e1 = events[j], events[j + 1]
    u = (t - e0) / (e1 - e0)  # (T,) progress between the surrounding events
    scale, flash = np.ones_like(t), np.zeros_like(t)
    drift = vis["drift"] * (t / duration - 0.5)
    if motion == "bounce":  # ballistic hop, floor contact at each event; height ∝ interval²
        dmax = np.diff(events).max()
        h = ((e1 - e0) / dmax) ** 2 * 4 * u * (1 - u)
        pos = np.stack([drift, 0.7 - 1.4 * h], 1)  # local +y is the floor side
    elif motion == "pingpong":  # constant speed, a wall at each event (walls alternate)
        side = np.where(j % 2 == 0, -0.7, 0.7)
        pos = np.stack([side + (-2 * side) * u, drift], 1)
    elif motion == "zigzag":  # steady travel, transverse reversal at each event
        side = np.where(j % 2 == 0, -0.4, 0.4)
        pos = np.stack([1.4 * (t / duration - 0.5), side + (-2 * side) * u], 1)
    elif motion == "orbit":  # circle at constant angular speed, flash at each event
        ang = vis["phase"] + vis["orbit_dir"] * 2 * np.pi * t / vis["orbit_period"]
        pos = 0.6 * np.stack([np.cos(ang), np.sin(ang)], 1)
        flash = _nearest_event_peak(t, events)
    elif motion == "pulse":  # nearly static, swells at each event
        pos = 0.1 * np.stack([np.sin(vis["phase"] + t), np.cos(vis["phase"] + 0.7 * t)], 1)
        scale = 1 + 0.45 * _nearest_event_peak(t, events)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return pos, scale, flash


def _shape_sdf(shape: str, x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate signed distance (negative inside) of a shape of circumradius r at the origin."""
    if shape == "disc":
        return np.hypot(x, y) - r
    if shape == "square":
        h = 0.8 * r
        return np.maximum(np.abs(x) - h, np.abs(y) - h)
    if shape == "triangle":  # equilateral, inradius r/2
        d = -np.inf
        for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            d = np.maximum(d, x * np.cos(a) + y * np.sin(a) - 0.5 * r)
        return d
    if shape == "cross":
        w = 0.33 * r
        return np.minimum(np.maximum(np.abs(x) - r, np.abs(y) - w),
                          np.maximum(np.abs(x) - w, np.abs(y) - r))
    if shape == "ring":
        return np.abs(np.hypot(x, y) - 0.72 * r) - 0.28 * r
    if shape == "diamond":
        return (np.abs(x) + np.abs(y)) * 0.7071 - 0.62 * r
    if shape == "hexagon":
        d = -np.inf
        for a in np.arange(6) * np.pi / 3:
            d = np.maximum(d, x * np.cos(a) + y * np.sin(a) - 0.82 * r)
        return d
    if shape == "bar":  # a wide, low slab
        return np.maximum(np.abs(x) - r, np.abs(y) - 0.4 * r)
    if shape == "crescent":
        return np.maximum(np.hypot(x, y) - r, 0.75 * r - np.hypot(x - 0.45 * r, y))
    if shape == "halfdisc":
        return np.maximum(np.hypot(x, y) - r, y - 0.15 * r)
    raise ValueError(f"unknown shape {shape!r}")


def _background(spec: SyntheticSpec, vis: dict, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(H, W, 3) float background: colour + gradient + gratings, amplitude ∝ noise."""
    g = vis["gradient"]
    ramp = np.cos(2 * np.pi * g[0]) * xs + np.sin(2 * np.pi * g[0]) * ys  # (H, W) in [-1.4, 1.4]
    tex = 0.5 * ramp * (0.5 + g[1])
    for row in vis["grating"][:3]:  # 3 gratings, 1..4 cycles per frame, random orientation
        th, f, ph = 2 * np.pi * row[0], 1 + 3 * row[1], 2 * np.pi * row[2]
        tex = tex + 0.5 * row[3] * np.sin(np.pi * f * (np.cos(th) * xs + np.sin(th) * ys) + ph)
    tint = 1.0 + 0.5 * vis["texture_tint"][0]  # (3,) per-channel texture strength
    return vis["background_colour"] + 0.18 * spec.noise * tex[..., None] * tint


def render_video(spec: SyntheticSpec, plan: ClipPlan) -> np.ndarray:
    """Frames of a clip: uint8 (T, H, W, 3); frame i shows the scene at time i / fps."""
    vis, attrs = plan.visual, class_attributes(plan.class_index)
    size, T = spec.frame_size, spec.num_frames
    t = np.arange(T) / spec.fps  # (T,)
    pos, scale, flash = _local_trajectory(attrs["motion"], t, plan.events, vis, spec.duration_s)

    # Rotate the local frame by the random axis, scale by amplitude, then fit into the frame with a
    # random placement of the slack, so position and direction carry no class information.
    ca, sa = np.cos(vis["axis"]), np.sin(vis["axis"])
    pos = vis["amplitude"] * pos @ np.array([[ca, sa], [-sa, ca]])  # (T, 2)
    r = vis["radius"] * scale  # (T,)
    half = 0.95 - r.max()
    lo, hi = pos.min(0), pos.max(0)
    shrink = min(1.0, 2 * half / max(float((hi - lo).max()), 1e-6))
    pos, lo, hi = pos * shrink, lo * shrink, hi * shrink
    slack = 2 * half - (hi - lo)  # (2,)
    pos = pos - lo - half + vis["offset"] * slack

    coords = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    ys, xs = np.meshgrid(coords, coords, indexing="ij")  # (H, W)
    px = 2.0 / size  # one pixel in scene units
    ang = vis["angle"] + vis["spin"] * t  # (T,)
    dx = xs[None] - pos[:, 0, None, None]  # (T, H, W)
    dy = ys[None] - pos[:, 1, None, None]
    c, s = np.cos(ang)[:, None, None], np.sin(ang)[:, None, None]
    lx, ly = c * dx + s * dy, -s * dx + c * dy  # object-local coordinates
    sdf = _shape_sdf(attrs["shape"], lx, ly, r[:, None, None])
    cover = np.clip(0.5 - sdf / px, 0.0, 1.0)[..., None]  # (T, H, W, 1) anti-aliased coverage

    bg = _background(spec, vis, xs, ys)  # (H, W, 3)
    obj = vis["object_colour"]
    contrast = np.where(vis["background_colour"] > 0.5, 0.0, 1.0)  # colour most unlike the bg
    obj_t = obj[None] + np.clip(flash, 0, 1)[:, None] * 0.85 * (contrast - obj)[None]  # (T, 3)
    frames = bg[None] * (1 - cover) + obj_t[:, None, None, :] * cover
    if spec.noise > 0:
        rng = np.random.default_rng(vis["noise_seed"])
        frames = frames + rng.normal(0, 0.035 * spec.noise, size=frames.shape)
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Audio: one note per event, percussive envelope
# ----------------------------------------------------------------------------------------------
def _note(timbre: str, f0: float, decay: float, fm_index: float, sr: int) -> np.ndarray:
    """One note (L,) float64 with onset at sample 0, normalised to peak 1."""
    L = int(min(6 * decay, 1.2) * sr)
    t = np.arange(L) / sr
    env = np.minimum(t / 0.003, 1.0) * np.exp(-t / decay)  # 3 ms attack, exponential decay
    n_max = max(1, min(16, int(0.45 * sr / f0)))
    n = np.arange(1, n_max + 1)[:, None]  # (H, 1) harmonic numbers below Nyquist
    if timbre == "sine":
        x = np.sin(2 * np.pi * f0 * t)
    elif timbre == "square":  # odd harmonics, 1/n
        x = (np.sin(2 * np.pi * f0 * n * t) * ((n % 2) / n)).sum(0)
    elif timbre == "saw":  # all harmonics, 1/n
        x = (np.sin(2 * np.pi * f0 * n * t) / n).sum(0)
    elif timbre == "bell":  # FM with inharmonic ratio, index decaying faster than the amplitude
        x = np.sin(2 * np.pi * f0 * t
                   + fm_index * np.exp(-t / (0.5 * decay)) * np.sin(2 * np.pi * 1.41 * f0 * t))
    elif timbre == "pluck":  # plucked string: higher harmonics decay faster (modal Karplus–Strong)
        amp = (1.0 / n) * np.exp(-t / (decay * 2.0) * (n - 1) * 0.8)
        x = (np.sin(2 * np.pi * f0 * n * t + n) * amp).sum(0) * np.exp(t / decay * 0.5)
    else:
        raise ValueError(f"unknown timbre {timbre!r}")
    x = x * env
    return x / max(np.abs(x).max(), 1e-9)


def _coloured_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """(n,) noise with power spectrum ∝ 1/f^beta, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (beta / 2), n)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _colouration(x: np.ndarray, sr: int, au: dict) -> np.ndarray:
    """Random "microphone/room" EQ: a spectral tilt above f0 and one resonant peak (formant).

    Brightness and spectral envelope thus vary within every timbre, so a timbre is told by the
    STRUCTURE of its partials (none / odd / all / inharmonic / decaying upper partials), not by
    how bright it is."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    gain = (np.maximum(f, au["f0"]) / au["f0"]) ** -au["tilt"]
    octaves = np.log2(np.maximum(f, 1.0) / au["formant_hz"])
    gain *= 10 ** (au["formant_db"] / 20 * np.exp(-0.5 * (octaves / 0.35) ** 2))
    return np.fft.irfft(spec * gain, len(x))


def synthesize_audio(spec: SyntheticSpec, plan: ClipPlan) -> np.ndarray:
    """The clip's OWN sound (ignores corruption): float32 (S,), mono, in [-1, 1]."""
    au, attrs = plan.audio, class_attributes(plan.class_index)
    sr, S = spec.sample_rate, spec.num_samples
    note = _note(attrs["timbre"], au["f0"], au["decay"], au["fm_index"], sr)
    clean = np.zeros(S)
    onsets = plan.events if plan.audio_events is None else plan.audio_events
    for e, vel in zip(onsets, au["velocities"]):
        start = int(round(e * sr))
        a, b = max(start, 0), min(start + len(note), S)
        if b > a:
            clean[a:b] += vel * note[a - start : b - start]
    clean = _colouration(clean, sr, au)
    clean /= max(float(np.sqrt(np.mean(clean**2))), 1e-9)  # unit RMS: density does not leak
    rng = np.random.default_rng(au["noise_seed"])
    snr_db = 30.0 * (1.0 - spec.noise)
    mix = clean + 10 ** (-snr_db / 20) * _coloured_noise(rng, S, au["noise_beta"])
    mix *= 10 ** (au["gain_db"] / 20) / max(float(np.sqrt(np.mean(mix**2))), 1e-9)
    peak = np.abs(mix).max()
    if peak > 0.98:
        mix *= 0.98 / peak
    return mix.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Encoding and generation
# ----------------------------------------------------------------------------------------------
def _yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
    """(H, W, 3) uint8 RGB -> a yuv420p VideoFrame (BT.601 limited range), padding bytes zeroed.

    Why by hand: the encoder input is then fully defined by our arrays (an explicit conversion, and
    the planes' row padding zeroed instead of left uninitialised), which is one half of making the
    MP4 bytes reproducible; the other half is ``mbtree=0`` in :func:`_write_mp4`.  BT.601 is what
    decoders assume for untagged streams."""
    x = rgb.astype(np.float32)
    y = 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
    cb = 128 + (-37.797 * x[..., 0] - 74.203 * x[..., 1] + 112.0 * x[..., 2]) / 255
    cr = 128 + (112.0 * x[..., 0] - 93.786 * x[..., 1] - 18.214 * x[..., 2]) / 255
    H, W = y.shape

    def sub(c: np.ndarray) -> np.ndarray:  # 2x2 chroma average
        return c.reshape(H // 2, 2, W // 2, 2).mean((1, 3))

    frame = av.VideoFrame(W, H, "yuv420p")
    for plane, data in zip(frame.planes, (y, sub(cb), sub(cr))):
        rows = np.zeros((plane.height, plane.line_size), np.uint8)  # (h, stride) incl. padding
        rows[:, : plane.width] = np.clip(np.round(data), 0, 255)
        plane.update(rows)
    return frame


def _write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sr: int) -> None:
    """H.264 yuv420p + AAC mono; single-threaded libx264 so the bytes are reproducible."""
    with av.open(str(path), "w", format="mp4") as out:
        # threads=1 and mbtree=0: with libx264's macroblock-tree rate control the bytes of a clip
        # were observed to depend on what the process had encoded before (PyAV 18.1's x264).
        vs = out.add_stream("libx264", rate=fps, options={
            "crf": "18", "preset": "fast", "threads": "1", "x264-params": "mbtree=0"})
        vs.width, vs.height = frames.shape[2], frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.thread_count = 1
        aus = out.add_stream("aac", rate=sr, layout="mono", options={"aac_coder": "fast"})
        aus.bit_rate = 96000
        for i, arr in enumerate(frames):
            frame = _yuv420p_frame(arr)
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        af = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
        af.sample_rate, af.pts = sr, 0
        out.mux(aus.encode(af))
        out.mux(aus.encode())


def _pool_context():
    """fork where available: it works from scripts and notebooks without a ``__main__`` guard, and
    the workers only use numpy and PyAV (never torch/OpenMP), so forking a threaded parent is safe.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _make_clip(args: tuple[SyntheticSpec, int, str]) -> int:
    """Worker: render + synthesise + encode clip i to a temp name, then rename atomically."""
    spec, i, clips_dir = args
    plan = plan_clip(spec, i)
    frames = render_video(spec, plan)
    source = plan if not plan.corrupted else plan_clip(spec, plan.audio_source)
    audio = synthesize_audio(spec, source)
    final = Path(clips_dir) / f"{plan.clip_id}.mp4"
    tmp = final.with_name(f".tmp-{os.getpid()}-{plan.clip_id}.mp4")
    _write_mp4(tmp, frames, audio, spec.fps, spec.sample_rate)
    os.replace(tmp, final)
    return i


def _manifest_text(spec: SyntheticSpec) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    grouped = spec.clips_per_source > 1
    w.writerow(MANIFEST_COLUMNS + ((GROUP_COLUMN,) if grouped else ()))
    src = _faulty_sources(spec)
    classes, sources, splits = _layout(spec)
    for i in range(spec.num_clips):
        k = int(classes[i])
        w.writerow([f"clips/{_clip_id(i)}.mp4", class_attributes(k)["name"], splits[i],
                    _clip_id(i), f"{spec.duration_s:g}", int(src[i] != i), _clip_id(int(src[i]))]
                   + ([f"source_{int(sources[i]):05d}"] if grouped else []))
    return buf.getvalue()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _is_complete(root: Path, spec: SyntheticSpec) -> bool:
    manifest, meta = root / "manifest.csv", root / "spec.json"
    if not (manifest.is_file() and meta.is_file()):
        return False
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    if info.get("hash") != spec_hash(spec) or info.get("format_version") != FORMAT_VERSION:
        return False
    return all((root / "clips" / f"{_clip_id(i)}.mp4").is_file() for i in range(spec.num_clips))


def generate(root: str | os.PathLike | None = None, spec: SyntheticSpec | None = None, *,
             workers: int = 2, progress: bool = False) -> Path:
    """Write ``<root>/clips/*.mp4`` and ``<root>/manifest.csv``; return the manifest path.

    Cached: if ``<root>/spec.json`` matches the spec hash and format version and every clip exists,
    nothing is written.  Otherwise the old manifest is removed first, the clips are written (each
    via a temp name + rename), then spec.json, then the manifest LAST (temp file + os.replace): a
    killed generation never has a manifest, so it never looks complete.
    ``root=None`` uses :func:`default_root`.  ``workers`` processes encode in parallel.

    Several processes may ask for the same dataset at once (parallel study runs, the ranks of a
    torchrun job): a lock file beside ``root`` lets one generate while the others wait, then find
    it complete.  (The lock file stays: removing it would let a late process lock a fresh file
    while an early one still holds the old.)
    """
    spec = spec or SyntheticSpec()
    root = Path(root) if root is not None else default_root(spec)
    manifest = root / "manifest.csv"
    if _is_complete(root, spec):
        return manifest
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_complete(root, spec):
            _generate_into(root, spec, workers, progress)
    return manifest


#: written (with the spec's hash) before the first clip of a generation and removed after its manifest
GENERATING_MARKER = ".generating.json"


def _generate_into(root: Path, spec: SyntheticSpec, workers: int, progress: bool) -> None:
    """Write the clips, then spec.json, then the manifest.  A generation that was killed resumes: the
    marker names the spec whose clips the folder holds, and each of its clips is complete (written under
    a temp name, then renamed), so only the missing ones are made (the 30,000 clips of the study's
    ``dictionary_size`` dataset take ~45 min).  Clips of another spec, or of an unmarked folder, are
    all made again."""
    manifest = root / "manifest.csv"
    clips_dir = root / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    for stale in clips_dir.glob(".tmp-*"):
        stale.unlink(missing_ok=True)
    marker = root / GENERATING_MARKER
    try:
        resumes = json.loads(marker.read_text()).get("hash") == spec_hash(spec)
    except (OSError, ValueError):
        resumes = False
    if not resumes:
        _atomic_write_text(marker, json.dumps({"hash": spec_hash(spec)}) + "\n")

    t0 = time.perf_counter()
    jobs = [(spec, i, str(clips_dir)) for i in range(spec.num_clips)
            if not (resumes and (clips_dir / f"{_clip_id(i)}.mp4").is_file())]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="generating synthetic clips", unit="clip")
    if workers > 1 and len(jobs) > 1:
        ctx = _pool_context()
        with ctx.Pool(min(workers, len(jobs))) as pool:
            for _ in pool.imap_unordered(_make_clip, jobs, chunksize=4):
                if bar:
                    bar.update()
    else:
        for job in jobs:
            _make_clip(job)
            if bar:
                bar.update()
    if bar:
        bar.close()

    meta = {"format_version": FORMAT_VERSION, "hash": spec_hash(spec),
            "spec": dataclasses.asdict(spec), "generation_seconds": None}
    meta["generation_seconds"] = round(time.perf_counter() - t0, 2)
    _atomic_write_text(root / "spec.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _atomic_write_text(manifest, _manifest_text(spec))
    marker.unlink(missing_ok=True)
