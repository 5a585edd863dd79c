"""The long-clip corpus (avlib.data.media_corpus) and one-window decoding (avlib.data.window)."""

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avlib.data.decode import DecodeError, decode_clip, probe_media
from avlib.data.media_corpus import BROKEN_KINDS, CORPUS_COLUMNS, write_long_corpus

NTSC = 30000 / 1001
MIN_S, MAX_S = 9.5, 10.5  # ~10-s clips, as the benchmark corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """6 clips of 2 classes (~10 s, 29.97 fps, 160x120, 44.1 kHz stereo) + the 3 broken rows."""
    return write_long_corpus(tmp_path_factory.mktemp("long"), clips=6, num_classes=2, min_s=MIN_S, max_s=MAX_S)


def rows_of(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def good_rows(manifest: Path) -> list[dict]:
    return [r for r in rows_of(manifest) if not Path(r["path"]).name.startswith("broken_")]


def broken_row(manifest: Path, kind: str) -> dict:
    return next(r for r in rows_of(manifest) if r["path"] == f"clips/broken_{kind}.mp4")


# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------
def test_long_corpus_has_the_stated_properties(corpus):
    rows = rows_of(corpus)
    assert tuple(rows[0]) == CORPUS_COLUMNS
    good = good_rows(corpus)
    assert len(good) == 6 and len(rows) == 6 + len(BROKEN_KINDS)
    for split in ("train", "val", "test"):  # every class in every split
        assert {r["label"] for r in good if r["split"] == split} == {r["label"] for r in good}
    durations = []
    for row in good:
        path = corpus.parent / row["path"]
        duration = float(row["duration"])
        assert MIN_S <= duration <= MAX_S
        durations.append(duration)
        assert 0 <= float(row["event_start"]) < float(row["event_end"]) <= duration
        assert float(row["event_end"]) - float(row["event_start"]) == pytest.approx(1.5, abs=1e-5)
        info = probe_media(path)
        assert info.duration == pytest.approx(duration, abs=1e-3)
        assert (info.width, info.height) == (160, 120)
        with av.open(str(path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.average_rate == Fraction(30000, 1001)
            assert video.codec_context.name == "h264" and video.codec_context.has_b_frames
            assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 44100, 2)
            keyframes = [float(p.pts * p.time_base) for p in container.demux(video) if p.is_keyframe]
        assert np.allclose(np.diff(keyframes), 2.002), keyframes  # keyint = round(2 s x 29.97) = 60
    assert len(set(durations)) >= 4 and max(durations) - min(durations) > 0.3  # seeded, not one length
    # the two channels differ (the sound is panned), so a decoder's downmix matters
    with av.open(str(corpus.parent / good[0]["path"])) as container:
        stereo = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)  # (2, S)
    assert stereo.shape[0] == 2 and np.abs(stereo[0] - stereo[1]).max() > 0.05


def test_the_broken_rows_are_broken_as_stated(corpus):
    root = corpus.parent
    truncated = root / broken_row(corpus, "truncated")["path"]
    info = probe_media(truncated)  # it opens, and its index claims the whole clip ...
    assert info.duration == pytest.approx(float(broken_row(corpus, "truncated")["duration"]), abs=1e-3)
    with pytest.raises(DecodeError, match="truncated"):  # ... but the data ends at ~60%
        decode_clip(truncated, fps=8, frame_size=32, sample_rate=8000)
    no_audio = root / broken_row(corpus, "no_audio")["path"]
    assert not probe_media(no_audio).has_audio and probe_media(no_audio).has_video
    with pytest.raises(DecodeError, match="no audio stream"):
        decode_clip(no_audio, fps=8, frame_size=32, sample_rate=8000)
    assert not (root / broken_row(corpus, "missing")["path"]).exists()


def test_the_event_is_where_the_manifest_says(corpus):
    """The class's sound starts within a few ms of event_start and the class's shape is shown on
    exactly the frames in [event_start, event_end): a manifest shifted by 30 ms would fail."""
    for k, row in enumerate(good_rows(corpus)[:2]):  # class 0 (a tone), class 1 (a chirp)
        clip = decode_clip(corpus.parent / row["path"], fps=NTSC, frame_size=120, sample_rate=16000)
        start, end = float(row["event_start"]), float(row["event_end"])

        def rms(t0, t1):
            return float(np.sqrt(np.mean(clip.audio[int(t0 * 16000):int(t1 * 16000)] ** 2)))

        quiet, loud = rms(start - 0.5, start - 0.03), rms(start + 0.03, end - 0.03)
        assert loud > 20 * quiet, (quiet, loud)
        assert rms(end + 0.03, end + 0.3) < loud / 20
        # frames: the share of pixels far from the frame's own background (its median colour)
        times = np.arange(len(clip.frames)) / NTSC
        median = np.median(clip.frames.reshape(len(clip.frames), -1, 3), axis=1)  # (T, 3)
        far = np.abs(clip.frames.astype(int) - median[:, None, None, :]).max(-1) > 100  # (T, H, W)
        shown = far.mean((1, 2)) > 0.02
        inside = (times >= start) & (times < end)
        assert np.array_equal(shown, inside), (np.flatnonzero(shown), np.flatnonzero(inside))
        if k == 0:
            event = clip.audio[int(start * 16000) + 800:int(end * 16000) - 800]  # (E,) the steady part
            peak_hz = np.argmax(np.abs(np.fft.rfft(event))) * 16000 / len(event)
            assert peak_hz == pytest.approx(300.0, abs=2.0)  # class 0's tone


def test_same_arguments_same_bytes(tmp_path):
    kw = dict(clips=3, num_classes=1, min_s=2.0, max_s=2.5, event_s=0.5, broken=False)
    first, second = write_long_corpus(tmp_path / "a", **kw), write_long_corpus(tmp_path / "b", **kw)
    assert first.read_bytes() == second.read_bytes()
    for row in rows_of(first):
        assert (first.parent / row["path"]).read_bytes() == (second.parent / row["path"]).read_bytes()
    other = write_long_corpus(tmp_path / "c", **{**kw, "seed": 1})
    assert rows_of(other)[0]["duration"] != rows_of(first)[0]["duration"]


def test_bad_corpus_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="clips must be an int >= 3 \\* num_classes = 12"):
        write_long_corpus(tmp_path, clips=5)
    with pytest.raises(ValueError, match="min_s must be > event_s"):
        write_long_corpus(tmp_path, min_s=1.0)
    with pytest.raises(ValueError, match="channels must be 1 or 2"):
        write_long_corpus(tmp_path, channels=6)
