"""The long-clip corpus (avlib.data.media_corpus) and one-window decoding (avlib.data.window)."""

import csv
import platform
import re
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from system import needs_system

import avlib.data.window as window
from avlib.data.decode import DecodeError, decode_clip, probe_media
from avlib.data.media_corpus import BROKEN_KINDS, CORPUS_COLUMNS, write_long_corpus
from avlib.data.window import DECODERS, FFMPEG_INSTALL, available_decoder, decode_window

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


# ----------------------------------------------------------------------------------------------
# One window: PyAV and torchcodec
# ----------------------------------------------------------------------------------------------
# torchcodec loads the system's FFmpeg 5.1 (Debian's libavcodec59 ...): without it its tests skip
# loudly (tests/system.py), or fail where AVLIB_REQUIRE_SYSTEM=1 (CI).
LIBAVCODEC = Path(f"/usr/lib/{platform.machine()}-linux-gnu/libavcodec.so.59")
NEEDS_FFMPEG = needs_system(LIBAVCODEC, "make system, i.e. " + FFMPEG_INSTALL)
TORCHCODEC = [pytest.param("torchcodec", id="torchcodec", marks=NEEDS_FFMPEG)]
BOTH = [pytest.param("pyav", id="pyav")] + TORCHCODEC
SR = 16000

# Bounds, measured on this corpus (torchcodec 0.17 on Debian's FFmpeg 5.1 against PyAV 18.1's FFmpeg):
# * at frame_size = the short side (no resize) both run swscale's unscaled YUV->RGB conversion: the
#   frames were identical (max 0); allowed: 2 levels.
# * with a resize, PyAV's to_ndarray(w, h) scales the YUV planes then converts, torchcodec converts
#   then scales the RGB (its own Resize transform does the same): measured per-frame mean |diff|
#   <= 1.71 levels (a ~-1-level bias of the unscaled conversion), 99th percentile <= 16, up to ~77
#   levels on the saturated shape's edge pixels (chroma upsampled before vs after the resize).
#   Allowed: per-frame mean <= 2.0, 99th percentile <= 20.
# * audio: both start swresample on the common grid of 44.1 and 16 kHz; measured max |diff| 0
#   (bit-identical); allowed: 1e-4 (float rounding of another FFmpeg build), while a one-sample shift
#   of the 300-Hz tone differs by ~0.02.
EXACT_FRAMES_MAX = 2
RESIZED_MEAN, RESIZED_P99 = 2.0, 20.0
AUDIO_TOL = 1e-4


def clip_path(corpus: Path, k: int = 0) -> Path:
    return corpus.parent / good_rows(corpus)[k]["path"]


def event_window(corpus: Path, k: int = 0, *, frame_size: int = 120, frames: int = 48) -> dict:
    """A window from the middle of a ~10-s clip covering its event's onset (frame ~15 of 48)."""
    start = float(good_rows(corpus)[k]["event_start"]) - 0.5
    return dict(video_start_s=start, num_frames=frames, fps=NTSC, frame_size=frame_size,
                audio_start_s=start + 0.2, num_samples=SR, sample_rate=SR)


def frame_diffs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: max, mean and 99th percentile of |a - b| over pixels and channels."""
    d = np.abs(a.astype(int) - b.astype(int)).reshape(len(a), -1)  # (T, H*W*3)
    return d.max(1), d.mean(1), np.percentile(d, 99, axis=1)


def within_resize_bound(a: np.ndarray, b: np.ndarray) -> bool:
    _, mean, p99 = frame_diffs(a, b)
    return bool(mean.max() <= RESIZED_MEAN and p99.max() <= RESIZED_P99)


@pytest.mark.parametrize("decoder", TORCHCODEC)
def test_the_two_decoders_give_the_same_window(corpus, decoder):
    """A 1.6-s window from the middle of a ~10-s 29.97-fps 4:3 44.1-kHz-stereo clip, over the event."""
    for frame_size in (120, 112):
        kw = event_window(corpus, frame_size=frame_size)
        frames_av, audio_av = decode_window(clip_path(corpus), decoder="pyav", **kw)
        frames_tc, audio_tc = decode_window(clip_path(corpus), decoder=decoder, **kw)
        assert frames_av.shape == frames_tc.shape == (48, frame_size, frame_size, 3)
        assert frames_av.dtype == frames_tc.dtype == np.uint8
        assert audio_av.shape == audio_tc.shape == (SR,) and audio_tc.dtype == np.float32
        if frame_size == 120:  # the short side: no resize
            assert frame_diffs(frames_av, frames_tc)[0].max() <= EXACT_FRAMES_MAX
        else:
            assert within_resize_bound(frames_av, frames_tc), frame_diffs(frames_av, frames_tc)
        assert np.abs(audio_av - audio_tc).max() <= AUDIO_TOL
        assert np.sqrt(np.mean(audio_av ** 2)) > 0.05  # the window holds the event's sound
        # controls: the same comparisons fail for a window one frame / one sample later
        later = {**kw, "video_start_s": kw["video_start_s"] + 1 / NTSC, "audio_start_s": kw["audio_start_s"] + 1 / SR}
        frames_next, audio_next = decode_window(clip_path(corpus), decoder=decoder, **later)
        if frame_size == 120:
            assert frame_diffs(frames_av, frames_next)[0].max() > EXACT_FRAMES_MAX
        else:
            assert not within_resize_bound(frames_av, frames_next)
        assert np.abs(audio_av - audio_next).max() > 100 * AUDIO_TOL


@pytest.mark.parametrize("decoder", TORCHCODEC)
def test_torchcodec_frames_that_need_no_resize_are_cropped_in_one_slice_to_the_same_pixels(corpus, decoder):
    """At the short side (no resize) the torchcodec backend crops all frames in one slice instead of
    converting each source frame (a loader cost): the pixels are those of the per-frame conversion."""
    from torchcodec.decoders import VideoDecoder

    kw = event_window(corpus, frame_size=120)
    frames, _ = decode_window(clip_path(corpus), decoder=decoder, **kw)
    targets = kw["video_start_s"] + np.arange(kw["num_frames"]) / NTSC
    raw = VideoDecoder(str(clip_path(corpus)), seek_mode="approximate", dimension_order="NHWC")
    source = raw.get_frames_played_at(seconds=(targets + 1e-6).tolist()).data.numpy()  # (T, 120, 160, 3)
    assert source.shape[1:] == (120, 160, 3), "a 4:3 source: the crop takes the middle 120 of 160 columns"
    per_frame = np.stack([window._resize_rgb_short_side_crop(frame, 120) for frame in source])
    assert np.array_equal(frames, per_frame)
    assert not np.array_equal(frames, source[:, :, :120]), "the control: a left-aligned crop differs"


@pytest.mark.parametrize("decoder", BOTH)
def test_a_window_is_the_same_span_of_the_whole_decoded_clip(corpus, decoder):
    """Windows at several offsets (on and just before frame times, just before a keyframe, audio
    seconds away from the video, audio before the clip's start) equal decode_clip's arrays cut there:
    PyAV exactly; torchcodec within the bounds above."""
    path = clip_path(corpus, 1)
    for frame_size in (120, 112):
        clip = decode_clip(path, fps=NTSC, frame_size=frame_size, sample_rate=SR)
        for first_frame, audio_start in ((150, 4.9), (59, 8.0), (120, 0.25), (200, -0.25)):
            for nudge in (0.0, -1e-3):  # on the frame time, and 1 ms before (the previous frame)
                start = first_frame / NTSC + nudge
                frames, audio = decode_window(path, video_start_s=start, num_frames=16, fps=NTSC,
                                              frame_size=frame_size, audio_start_s=audio_start,
                                              num_samples=SR // 2, sample_rate=SR, decoder=decoder)
                shown = first_frame - (nudge < 0)
                expected = clip.frames[shown:shown + 16]
                n0 = int(round(audio_start * SR))
                cut = (np.concatenate([np.zeros(-n0, np.float32), clip.audio[:SR // 2 + n0]]) if n0 < 0
                       else clip.audio[n0:n0 + SR // 2])  # times before 0 are silence
                if decoder == "pyav":
                    assert np.array_equal(frames, expected), (first_frame, nudge, frame_size)
                    assert np.array_equal(audio, cut), (audio_start, np.abs(audio - cut).max())
                else:
                    if frame_size == 120:
                        assert frame_diffs(frames, expected)[0].max() <= EXACT_FRAMES_MAX
                    else:
                        assert within_resize_bound(frames, expected), frame_diffs(frames, expected)
                    assert np.abs(audio - cut).max() <= AUDIO_TOL


def _write_unindexed(path: Path, container: str, vcodec: str, acodec: str, seconds: float = 3.0,
                     fps: int = 25, sr: int = 48000) -> None:
    """A clip in a container without a keyframe index: frame k is grey 2k + a bar at x = k, the sound a
    440-Hz tone whose level grows with time; H.264's only keyframe is its first frame (keyint 250, as
    libx264's default: 10 s at 25 fps)."""
    with av.open(str(path), "w", format=container) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        if vcodec == "libx264":
            video.options = {"x264-params": "keyint=250:scenecut=0"}
        sound = out.add_stream(acodec, rate=sr)
        sound.layout = "stereo"
        for k in range(int(seconds * fps)):
            image = np.full((64, 96, 3), 2 * k, np.uint8)
            image[:, k % 96] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = k
            out.mux(video.encode(frame))
        out.mux(video.encode())
        t = np.arange(int(seconds * sr)) / sr
        tone = (0.1 + 0.2 * t / seconds) * np.sin(2 * np.pi * 440 * t)
        block = av.AudioFrame.from_ndarray(np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo")
        block.sample_rate, block.pts = sr, 0
        out.mux(sound.encode(block))
        out.mux(sound.encode())


@pytest.mark.parametrize("decoder", BOTH)
@pytest.mark.parametrize("kind", [("mpegts", "libx264", "aac", "ts"), ("mpeg", "mpeg2video", "mp2", "mpg")],
                         ids=["mpegts_one_keyframe", "mpeg_ps"])
def test_a_container_without_a_keyframe_index_gives_the_windows_of_the_whole_clip(tmp_path, decoder, kind):
    """MPEG-TS and MPEG-PS seek by timestamps, not to keyframes.  With one keyframe, every seek past it
    decoded nothing (PyAV: "truncated", torchcodec: "no more frames left" in both seek modes), and a
    seek into an MPEG-PS audio stream starts inside an MP2 frame (PyAV: "Invalid data").  Windows at
    several times equal decode_clip's frames (the torchcodec backend hands these containers to PyAV:
    torchcodec returned wrong frames from the MPEG-PS) and its audio to within half a sample: the audio
    streams start between samples of the 16-kHz grid (0.0587 s, 0.5300 s), which the window keeps on the
    stream's grid and decode_clip rounds to a sample (a 440-Hz tone of amplitude <= 0.3 moves by at most
    0.3 x 2 pi 440 / 16000 / 2 = 0.026 in half a sample)."""
    container, vcodec, acodec, ext = kind
    path = tmp_path / f"clip.{ext}"
    _write_unindexed(path, container, vcodec, acodec)
    clip = decode_clip(path, fps=8, frame_size=64, sample_rate=SR)
    for start in (0.5, 1.25, 1.75):  # before the PS's first frame (0.54 s: the first held), then inside
        frames, audio = decode_window(path, video_start_s=start, num_frames=6, fps=8, frame_size=64,
                                      audio_start_s=start, num_samples=SR // 2, sample_rate=SR, decoder=decoder)
        first, n0 = int(round(start * 8)), int(round(start * SR))
        expected, cut = clip.frames[first:first + 6], clip.audio[n0:n0 + SR // 2]
        assert np.array_equal(frames, expected), start
        lags = range(-16, 17)  # samples: 1 ms either way
        misfit = [np.abs(audio[16:-16] - clip.audio[n0 + lag + 16:n0 + lag + SR // 2 - 16]).max() for lag in lags]
        assert lags[int(np.argmin(misfit))] == 0 and min(misfit) <= 0.03, (start, min(misfit))
        assert np.sqrt(np.mean(audio ** 2)) > 0.05  # the tone, not silence
        # control: the window of the next frame differs (the clip moves every frame)
        assert not np.array_equal(frames, clip.frames[first + 1:first + 7])


@pytest.mark.parametrize("decoder", BOTH)
def test_bytes_input_equals_path_input(corpus, decoder):
    kw = event_window(corpus, 2, frame_size=112, frames=16)
    from_path = decode_window(clip_path(corpus, 2), decoder=decoder, **kw)
    data = clip_path(corpus, 2).read_bytes()
    for source in (data, memoryview(data)):
        from_bytes = decode_window(source, decoder=decoder, **kw)
        assert np.array_equal(from_bytes[0], from_path[0]) and np.array_equal(from_bytes[1], from_path[1])


@pytest.mark.parametrize("decoder", BOTH)
def test_window_errors_name_the_file(corpus, decoder):
    root = corpus.parent
    kw = dict(video_start_s=1.0, num_frames=16, fps=16.0, frame_size=64, audio_start_s=1.0,
              num_samples=SR, sample_rate=SR, decoder=decoder)
    missing = root / broken_row(corpus, "missing")["path"]
    with pytest.raises(DecodeError, match=f"{missing}: file not found"):
        decode_window(missing, **kw)
    truncated = root / broken_row(corpus, "truncated")["path"]
    late = float(broken_row(corpus, "truncated")["duration"]) - 2.0  # in the cut-off 40%
    with pytest.raises(DecodeError, match=f"{truncated}: truncated"):
        decode_window(truncated, **{**kw, "video_start_s": late, "audio_start_s": late})
    # a window before the cut decodes: the decoder stopped once the window was filled (decode_clip,
    # which reads on to the end, fails on this file: test_the_broken_rows_are_broken_as_stated)
    frames, audio = decode_window(truncated, **kw)
    assert frames.shape == (16, 64, 64, 3) and audio.shape == (SR,)
    no_audio = root / broken_row(corpus, "no_audio")["path"]
    with pytest.raises(DecodeError, match=f"{no_audio}: no audio stream"):
        decode_window(no_audio, **kw)
    assert decode_window(no_audio, **{**kw, "num_samples": 0})[1].shape == (0,)  # video only: fine
    path = clip_path(corpus)
    end = float(good_rows(corpus)[0]["duration"])
    with pytest.raises(DecodeError, match=f"{path}: truncated: the window needs video up to"):
        decode_window(path, **{**kw, "video_start_s": end - 0.5})
    for start in (end - 0.5, end + 1.0):  # a window over the audio's end, and one wholly past it
        with pytest.raises(DecodeError, match=f"{path}: audio ends at") as error:
            decode_window(path, **{**kw, "num_frames": 0, "audio_start_s": start})
        ends = float(re.search(r"audio ends at ([0-9.]+)s", str(error.value)).group(1))
        assert abs(ends - end) <= 0.05, (start, str(error.value))  # where it ends, within two AAC frames
    # the last frame holds through its display span; audio may end up to one video frame early
    frames, audio = decode_window(path, **{**kw, "video_start_s": end - 1.0 + 0.5 / NTSC, "audio_start_s": end - 1.0 + 0.03})
    assert frames.shape == (16, 64, 64, 3) and audio.shape == (SR,)
    with pytest.raises(DecodeError, match="<bytes>: not a readable media file"):
        decode_window(b"not an mp4 file" * 64, **kw)


def test_bad_window_arguments_name_the_parameter(corpus):
    kw = dict(video_start_s=1.0, num_frames=4, fps=16.0, frame_size=64, audio_start_s=1.0, num_samples=160,
              sample_rate=SR)
    with pytest.raises(ValueError, match="decoder must be one of"):
        decode_window(clip_path(corpus), **kw, decoder="ffmpeg")
    with pytest.raises(ValueError, match="num_frames must be an int >= 0"):
        decode_window(clip_path(corpus), **{**kw, "num_frames": -1})
    with pytest.raises(ValueError, match="fps must be positive"):
        decode_window(clip_path(corpus), **{**kw, "fps": 0})
    with pytest.raises(TypeError, match="source must be a path"):
        decode_window(42, **kw)


def test_a_seek_that_lands_after_the_window_is_retried_earlier(corpus, monkeypatch):
    """Where the demuxer's seek lands on a keyframe AFTER the first target (B-frame delays, seeks by
    dts), the first decoded frame is not the one held at that target: detected, and sought again."""
    path = clip_path(corpus)
    clip = decode_clip(path, fps=NTSC, frame_size=120, sample_rate=SR)
    real, seeks = window._pyav_video_from, []

    def lands_late_first(container, vstream, name, targets, frame_size, seek_to, *rest):
        seeks.append(seek_to)
        if len(seeks) == 1:  # the first seek lands on the next keyframe (2.002 s) instead of 0 s
            seek_to = 2.05
        return real(container, vstream, name, targets, frame_size, seek_to, *rest)

    monkeypatch.setattr(window, "_pyav_video_from", lands_late_first)
    frames, _ = decode_window(path, video_start_s=57 / NTSC, num_frames=8, fps=NTSC, frame_size=120,
                              audio_start_s=0.0, num_samples=0, sample_rate=SR, decoder="pyav")
    assert len(seeks) == 2 and seeks[1] < seeks[0]
    assert np.array_equal(frames, clip.frames[57:65])
    # control: without the check, the late landing would show frame 60 in place of frames 57-59
    with av.open(str(path)) as container:
        targets = 57 / NTSC + np.arange(8) / NTSC
        assert real(container, container.streams.video[0], str(path), targets, 120, 2.05, 1 / NTSC, 0.0) == (None, None)


@pytest.mark.parametrize("decoder", TORCHCODEC)
def test_auto_picks_torchcodec_where_it_loads(decoder):
    assert window.torchcodec_problem() is None
    assert available_decoder("auto") == decoder == available_decoder("torchcodec")


def test_available_decoder_falls_back_to_pyav_once_with_the_fix(monkeypatch, corpus):
    assert available_decoder("pyav") == "pyav"
    with pytest.raises(ValueError, match="decoder must be 'auto' or one of"):
        available_decoder("ffmpeg")
    problem = "torchcodec 0.17.0 cannot load FFmpeg: missing system libraries: libavcodec.so.59 (libavcodec59)"
    monkeypatch.setattr(window, "_torchcodec_problem", [problem])
    monkeypatch.setattr(window, "_warned_fallback", [])
    with pytest.warns(RuntimeWarning, match="libavcodec.so.59 .*apt-get install -y --no-install-recommends libavcodec59"):
        assert available_decoder("auto") == "pyav"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        assert available_decoder("auto") == "pyav"
    with pytest.raises(DecodeError, match="libavcodec.so.59 \\(libavcodec59\\); install them: apt-get"):
        available_decoder("torchcodec")
    with pytest.raises(DecodeError, match="decoder='torchcodec' but .*libavcodec.so.59"):
        decode_window(clip_path(corpus), video_start_s=0.0, num_frames=1, fps=16.0, frame_size=32,
                      audio_start_s=0.0, num_samples=0, sample_rate=SR, decoder="torchcodec")
    assert DECODERS == ("torchcodec", "pyav")


def test_the_probe_names_the_missing_libraries(monkeypatch):
    """With FFmpeg not loaded, the reason lists the shared objects that cannot be opened."""
    import torchcodec

    monkeypatch.setattr(torchcodec, "ffmpeg_major_version", None)
    monkeypatch.setattr(window, "FFMPEG_LIBRARIES", {"libavcodec59": "libavcodec.so.59",
                                                     "libavlib-absent1": "libavlib-absent.so.1"})
    problem = window._probe_torchcodec()
    assert problem.endswith("cannot load FFmpeg: missing system libraries: libavlib-absent.so.1 (libavlib-absent1)")
    if LIBAVCODEC.exists():  # present libraries are not listed
        assert "libavcodec.so.59" not in problem


def test_mpeg_transport_and_program_streams_are_told_by_their_first_bytes(tmp_path):
    """The torchcodec backend hands these to PyAV (see the test above); every other container stays with it."""
    packet = bytes([0x47]) + bytes(187)
    assert window._unindexed_mpeg(packet * 3)  # MPEG-TS: a sync byte every 188 bytes
    assert window._unindexed_mpeg((bytes(4) + packet) * 3)  # M2TS: a 4-byte timecode before each packet
    assert window._unindexed_mpeg(b"\x00\x00\x01\xba" + bytes(396))  # MPEG-PS: a pack header
    (tmp_path / "clip.ts").write_bytes(packet * 3)
    assert window._unindexed_mpeg(tmp_path / "clip.ts") and window._unindexed_mpeg(str(tmp_path / "clip.ts"))
    # controls: an MP4, a Matroska file, one TS packet alone, a missing file (torchcodec names it)
    assert not window._unindexed_mpeg(b"\x00\x00\x00\x18ftypmp42" + bytes(388))
    assert not window._unindexed_mpeg(b"\x1a\x45\xdf\xa3" + bytes(396))
    assert not window._unindexed_mpeg(packet)
    assert not window._unindexed_mpeg(tmp_path / "missing.ts")
