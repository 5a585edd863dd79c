"""Decode ONE training window (a span of frames and a span of audio) from a long clip, seeking.

Why (issue 30): a streaming loader draws a random window over a whole 6-12-s clip every time it
reads the clip, so it must not decode the whole clip (as :func:`avlib.data.decode.decode_clip`
does for the cache) to get 1 s of it.  Two backends, same output:

* ``"torchcodec"`` (torchcodec 0.17, ``VideoDecoder(seek_mode="approximate", num_ffmpeg_threads=1)``
  and ``AudioDecoder``): faster, but it loads the SYSTEM's FFmpeg libraries (Debian's FFmpeg 5.1:
  ``libavcodec59`` ...; ``make system`` installs them);
* ``"pyav"``: PyAV's bundled FFmpeg, always available.

:func:`available_decoder` picks one ("auto": torchcodec where it loads, else PyAV with one warning
per process naming the reason and the fix).

Conventions (those of :mod:`avlib.data.decode`, so that a window equals the same span cut out of a
cached clip)
---------------------------------------------------------------------------------------------------
* Frame ``k`` is target time ``video_start_s + k / fps`` and shows the source frame with the LATEST
  pts ``<=`` that time (sample-and-hold); targets before the first frame show the first frame; the
  last frame holds through its display span (``1 / source fps``); a target beyond that is a
  :class:`~avlib.data.decode.DecodeError` ("truncated").
* Frames are resized so the short side is ``frame_size`` (bilinear, FFmpeg's swscale), then
  centre-cropped to ``frame_size x frame_size``, RGB uint8.  The PyAV backend does it as
  ``decode_clip`` does (one swscale pass from YUV: its windows equal the cache's exactly).
  torchcodec 0.17 only hands out RGB (its own ``Resize`` transform also scales after the colour
  conversion), so its frames are converted at the source size and then scaled in RGB with the same
  bilinear swscale: without a resize (``frame_size`` = the short side) the two backends' frames were
  identical; with one, measured per-frame mean |diff| <= 1.7 levels (the unscaled conversion reads
  ~1 level darker) and up to ~77 levels on pixels at sharp saturated-colour edges, where the chroma
  is upsampled before rather than after the resize.
* Audio sample ``n`` is time ``audio_start_s + n / sample_rate``, downmixed to mono and resampled
  (swresample, as PyAV's ``AudioResampler(layout="mono")``); times before 0 are silence (zeros); if
  the file's audio ends at most one video frame (``1 / fps``) before the window's end the rest is
  zeros, earlier is a DecodeError.
* Resampling keeps ONE clock: the resampler is started on an input sample whose time is also an
  output sample time (input index a multiple of ``in_rate / gcd(in_rate, out_rate)``, counted from
  the stream's time 0), so a window's samples are the clip's samples, not copies shifted by a
  fraction of a sample (torchcodec 0.17 aligns the same way, see its note "Audio resampling and
  frame alignment").  The resampler starts before the window (PyAV backend: 0.15 s; torchcodec:
  4 AAC frames, 93 ms at 44.1 kHz), so its warm-up never reaches the window; measured, the two
  backends' audio windows are bit-identical (tests/test_window.py).

The PyAV backend seeks video and audio SEPARATELY (in an interleaved MP4 the audio packets next to a
video keyframe can start after the window's audio start, and the window's audio may lie seconds
away from its video when the audio offset is drawn), backward to the keyframe at or before the
start, and stops decoding once the window is filled.
"""
from __future__ import annotations

import ctypes
import functools
import io
import math
import os
import warnings
from pathlib import Path

import av
import numpy as np

from avlib.data.decode import DecodeError, _resize_short_side_crop

__all__ = ["DECODERS", "available_decoder", "decode_window", "torchcodec_problem", "FFMPEG_INSTALL"]

DECODERS = ("torchcodec", "pyav")
FFMPEG_LIBRARIES = {  # Debian package -> the shared object torchcodec's FFmpeg-5 build loads
    "libavcodec59": "libavcodec.so.59", "libavformat59": "libavformat.so.59",
    "libavutil57": "libavutil.so.57", "libswscale6": "libswscale.so.6",
    "libswresample4": "libswresample.so.4", "libavfilter8": "libavfilter.so.8",
    "libavdevice59": "libavdevice.so.59"}
FFMPEG_INSTALL = ("apt-get install -y --no-install-recommends " + " ".join(FFMPEG_LIBRARIES)
                  + "  (or `make system`)")
AUDIO_PREROLL_S = 0.15  # the resampler starts this much before the window (its filter spans ~1 ms)
AUDIO_POSTROLL_S = 0.1  # decode this far past the window's end so the resampler's output covers it
SEEK_RETRY_S = 1.0  # if a seek lands after the first target, seek again this much earlier
#: FFmpeg's names of the MPEG program and transport streams: no keyframe index (see ``_unindexed_mpeg``)
UNINDEXED_FORMATS = ("mpeg", "mpegts")
#: in those, a seek lands on whatever packet has the time, and MPEG-2's open GOPs make the B-frames just
#: after a keyframe depend on the GOP before it: decoded without it they are damaged (measured: a grey
#: level of 60 for 62).  Seeking this much earlier puts them before the window.
UNINDEXED_SEEK_MARGIN_S = 1.0

_torchcodec_problem: list = []  # [reason or None], computed once per process
_warned_fallback: list = []  # one entry once the fallback warning was given


def torchcodec_problem() -> str | None:
    """None when torchcodec imports and loads FFmpeg, else why not (which libraries are missing)."""
    if not _torchcodec_problem:
        _torchcodec_problem.append(_probe_torchcodec())
    return _torchcodec_problem[0]


def _probe_torchcodec() -> str | None:
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except Exception as exc:  # ImportError, or torch/torchcodec ABI mismatch (OSError, RuntimeError)
        return f"torchcodec does not import ({type(exc).__name__}: {exc})"
    if getattr(torchcodec, "ffmpeg_major_version", None) is not None:
        return None
    missing = []
    for package, soname in FFMPEG_LIBRARIES.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing.append(f"{soname} ({package})")
    try:  # the loader's own error: torchcodec retries loading FFmpeg on each decoder it makes
        VideoDecoder(b"\0")
        detail = "unknown reason"
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    what = ("missing system libraries: " + ", ".join(missing)) if missing else detail
    return f"torchcodec {getattr(torchcodec, '__version__', '?')} cannot load FFmpeg: {what}"


def available_decoder(preferred: str = "auto") -> str:
    """The decoder to use: ``preferred`` in ("auto",) + DECODERS.

    "auto" is "torchcodec" when it loads FFmpeg, else "pyav", with ONE warning per process giving the
    reason and the apt-get line that fixes it.  "torchcodec" that cannot load is a DecodeError
    naming what is missing (a run that asked for it must not silently change decoder)."""
    if preferred not in ("auto",) + DECODERS:
        raise ValueError(f"decoder must be 'auto' or one of {DECODERS}, got {preferred!r}")
    if preferred == "pyav":
        return "pyav"
    problem = torchcodec_problem()
    if problem is None:
        return "torchcodec"
    if preferred == "torchcodec":
        raise DecodeError("torchcodec", f"{problem}; install them: {FFMPEG_INSTALL}")
    if not _warned_fallback:
        _warned_fallback.append(True)
        warnings.warn(f"decoding with PyAV instead of torchcodec: {problem}; for the faster decoder "
                      f"install them: {FFMPEG_INSTALL}", RuntimeWarning, stacklevel=2)
    return "pyav"


# ----------------------------------------------------------------------------------------------
# Shared checks
# ----------------------------------------------------------------------------------------------
def _source_name(source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def _check_source(source) -> None:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise DecodeError("<bytes>", "empty bytes: no media data")
        return
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"decode_window: source must be a path (str or Path) or the file's bytes "
                        f"(bytes or memoryview), got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise DecodeError(path, "file not found")
    if not path.is_file():
        raise DecodeError(path, "not a regular file")


def _check_numbers(num_frames, fps, frame_size, num_samples, sample_rate, decoder) -> None:
    if decoder not in DECODERS:
        raise ValueError(f"decode_window: decoder must be one of {DECODERS} (see available_decoder), "
                         f"got {decoder!r}")
    for name, value in (("num_frames", num_frames), ("num_samples", num_samples)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"decode_window: {name} must be an int >= 0, got {value!r}")
    for name, value in (("fps", fps), ("frame_size", frame_size), ("sample_rate", sample_rate)):
        if not value > 0:
            raise ValueError(f"decode_window: {name} must be positive, got {value!r}")
    if not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"decode_window: sample_rate must be an int (Hz), got {sample_rate!r}")


def _video_targets(video_start_s: float, num_frames: int, fps: float) -> np.ndarray:
    return video_start_s + np.arange(num_frames) / fps  # (T,) seconds


def _truncated(name: str, needed: float, ends: float) -> DecodeError:
    return DecodeError(name, f"truncated: the window needs video up to {needed:.3f}s but the video "
                             f"ends at {ends:.3f}s (a window past the end, or a truncated file)")


def _audio_ends_early(name: str, ends_s: float, audio_start_s: float, stop_s: float) -> DecodeError:
    """The one message of both backends for a window the audio does not cover: where it ends."""
    return DecodeError(name, f"audio ends at {ends_s:.3f}s, {stop_s - ends_s:.3f}s before the end of the window "
                             f"[{audio_start_s:.3f}s, {stop_s:.3f}s) (a window past the end, or truncated audio)")


def _fit_audio(name: str, audio: np.ndarray, num_samples: int, sample_rate: int, fps: float,
               audio_start_s: float, ends_s: float | None = None) -> np.ndarray:
    """Cut/zero-pad ``audio`` (S,) to ``num_samples``: at most one video frame of padding at the end.

    ``ends_s``: where the decoded audio ends, for the error (default: where ``audio`` ends, which is
    only right when the audio reaches the window's start)."""
    missing = num_samples - len(audio)
    if missing > math.ceil(sample_rate / fps):
        ends = audio_start_s + len(audio) / sample_rate if ends_s is None else ends_s
        raise _audio_ends_early(name, ends, audio_start_s, audio_start_s + num_samples / sample_rate)
    if missing > 0:
        audio = np.concatenate([audio, np.zeros(missing, np.float32)])
    return np.ascontiguousarray(audio[:num_samples], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# PyAV backend
# ----------------------------------------------------------------------------------------------
def _open_pyav(source, name: str):
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return av.open(io.BytesIO(source), mode="r")
        return av.open(str(source), mode="r")
    except av.FFmpegError as exc:
        raise DecodeError(name, f"not a readable media file or truncated ({exc})") from exc


def _pyav_video(container, name: str, targets: np.ndarray, frame_size: int) -> np.ndarray:
    """uint8 (T, frame_size, frame_size, 3): sample-and-hold at ``targets``, seeking backward."""
    vstream = container.streams.video[0]
    vstream.thread_count = 1  # one thread: the DataLoader's workers are the parallelism
    src_span = 1.0 / float(vstream.average_rate) if vstream.average_rate else 0.0
    start_time = float(vstream.start_time * vstream.time_base) if vstream.start_time is not None else 0.0
    seek_to = float(targets[0])
    if container.format.name in UNINDEXED_FORMATS:  # land a GOP early: see UNINDEXED_SEEK_MARGIN_S
        seek_to -= UNINDEXED_SEEK_MARGIN_S
    while True:
        frames, prev = _pyav_video_from(container, vstream, name, targets, frame_size, seek_to,
                                        src_span, start_time)
        if frames is not None:
            break
        if prev is _NOTHING_DECODED:  # no keyframe after where the seek landed: decode from the start
            seek_to = start_time
        else:
            seek_to -= SEEK_RETRY_S  # the keyframe found was after the first target (B-frame delay)
    if len(frames) < len(targets):
        end = prev[0] + src_span  # the last frame's display span
        for t in targets[len(frames):]:
            if t >= end - 1e-6:
                raise _truncated(name, float(targets[-1]), end)
            frames.append(_take(prev, frame_size))
    return np.stack(frames)  # (T, S, S, 3)


def _take(entry: list, frame_size: int) -> np.ndarray:
    """Convert a [time, av frame, array-or-None] entry lazily, once per source frame."""
    if entry[2] is None:
        entry[2] = _resize_short_side_crop(entry[1], frame_size)
    return entry[2]


#: ``_pyav_video_from``'s answer when nothing decoded after a seek past the stream's start
_NOTHING_DECODED = object()


def _pyav_video_from(container, vstream, name, targets, frame_size, seek_to, src_span, start_time):
    """Seek to the keyframe at or before ``seek_to`` and fill targets; (None, None) when the first
    decoded frame is after the first target but not the stream's first frame (seek again earlier);
    (None, _NOTHING_DECODED) when no frame decoded after a seek past the start.

    Why the last: a container without a keyframe index (MPEG-TS, MPEG-PS) seeks by timestamps to a
    packet that need not be a keyframe; the decoder then drops everything until the next keyframe,
    and with a long GOP (libx264's default keyint is 250 frames, 10 s at 25 fps) there is none before
    the end.  Decoding from the start reads what the seek could not."""
    if seek_to > start_time:
        try:
            container.seek(int(seek_to / vstream.time_base), stream=vstream, backward=True)
        except av.FFmpegError as exc:
            raise DecodeError(name, f"cannot seek to {seek_to:.3f}s ({exc})") from exc
    else:
        container.seek(0)  # the very first frame: from the start, as a fresh open would
    frames: list[np.ndarray] = []
    prev: list | None = None  # [time, frame, converted]: the latest decoded frame
    try:
        for packet in container.demux(vstream):
            for frame in packet.decode():
                ft = frame.time if frame.time is not None else (prev[0] + src_span if prev else start_time)
                if prev is None and ft > targets[0] + 1e-6 and seek_to > start_time:
                    return None, None  # landed after the first target: the frame held there is earlier
                cur = [ft, frame, None]
                while len(frames) < len(targets) and targets[len(frames)] < ft - 1e-6:
                    frames.append(_take(prev or cur, frame_size))
                prev = cur
                if len(frames) == len(targets):
                    return frames, prev
    except av.FFmpegError as exc:
        raise DecodeError(name, f"corrupt or truncated media data ({exc})") from exc
    if prev is None and seek_to > start_time:
        return None, _NOTHING_DECODED
    if prev is None:
        claimed = (float(vstream.duration * vstream.time_base) if vstream.duration is not None
                   else container.duration / av.time_base if container.duration is not None else None)
        claim = f"the file claims {claimed:.3f}s of video" if claimed is not None else "no duration known"
        raise DecodeError(name, f"truncated: no video frame decodes from {seek_to:.3f}s on ({claim}; "
                                f"a window past the end, or a truncated file)")
    return frames, prev


def _pyav_audio(container, name: str, audio_start_s: float, num_samples: int, sample_rate: int,
                fps: float) -> np.ndarray:
    """float32 (num_samples,) mono at ``sample_rate``: sample n = audio_start_s + n / sample_rate."""
    astream = container.streams.audio[0]
    in_rate = astream.codec_context.sample_rate or astream.rate
    align = in_rate // math.gcd(in_rate, sample_rate)  # input samples per common grid step
    stop_s = audio_start_s + num_samples / sample_rate
    from_s = max(0.0, audio_start_s - AUDIO_PREROLL_S)
    try:
        if from_s > 0:
            container.seek(int(from_s / astream.time_base), stream=astream, backward=True)
        else:
            container.seek(0)
    except av.FFmpegError as exc:
        raise DecodeError(name, f"cannot seek audio to {from_s:.3f}s ({exc})") from exc
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    grid_t0: float | None = None  # time of the first input sample fed: a common grid point
    try:
        for frame in decoded_after_seek(container, astream, cut=from_s > 0):
            if frame.time is not None and frame.time > stop_s + AUDIO_POSTROLL_S:
                break  # the resampler's output already covers the window
            if grid_t0 is None:
                first = int(round((frame.time or 0.0) * in_rate))  # the frame's first input sample
                skip = (-first) % align  # input samples to the next common grid point
                if skip >= frame.samples:
                    continue  # the grid point is in a later frame
                if skip:
                    frame = _drop_front(frame, skip)
                grid_t0 = (first + skip) / in_rate
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))  # (n,) mono
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise DecodeError(name, f"corrupt or truncated audio data ({exc})") from exc
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)  # (S',) from grid_t0
    decoded_from = grid_t0 if grid_t0 is not None else from_s
    ends_s = decoded_from + len(audio) / sample_rate  # where the decoded audio ends (an error names it)
    offset = int(round((decoded_from - audio_start_s) * sample_rate))
    if offset > 0:  # the audio (or the clip) starts after the window: silence before it
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    else:
        audio = audio[-offset:]
    return _fit_audio(name, audio, num_samples, sample_rate, fps, audio_start_s, ends_s)


def decoded_after_seek(container, stream, cut: bool):
    """``stream``'s decoded frames from where ``container`` was sought.

    With ``cut`` (the seek went past the start): a container without an index (MPEG-PS/TS) lands inside
    a frame, so the packets that fail to decode before the first frame are skipped; and a frame the
    decoder re-emits under the pts of the one before (measured in an MPEG-PS: 1152 samples too many,
    the window 3 samples late) is dropped.  Used by this module's PyAV backend and by the shard
    re-encoder."""
    decoded_any, last_pts = False, None
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            if cut and not decoded_any:
                continue
            raise
        for frame in frames:
            if frame.pts is not None and frame.pts == last_pts:
                continue
            decoded_any, last_pts = True, frame.pts
            yield frame


def _drop_front(frame: av.AudioFrame, skip: int) -> av.AudioFrame:
    """The same audio frame without its first ``skip`` samples (pts moved on accordingly)."""
    data = frame.to_ndarray()  # (C, n) planar or (1, n * C) packed
    planar = frame.format.is_planar
    channels = len(frame.layout.channels)
    kept = data[:, skip:] if planar else data[:, skip * channels:]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(kept), format=frame.format.name,
                                     layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    if frame.pts is not None and frame.time_base is not None:
        out.time_base = frame.time_base
        out.pts = frame.pts + int(round(skip / frame.sample_rate / frame.time_base))
    return out


def _decode_pyav(source, name, targets, frame_size, audio_start_s, num_samples, sample_rate, fps):
    container = _open_pyav(source, name)
    with container:
        if len(targets) and not container.streams.video:
            raise DecodeError(name, "no video stream")
        if num_samples and not container.streams.audio:
            raise DecodeError(name, "no audio stream: audio-visual training needs both")
        frames = (_pyav_video(container, name, targets, frame_size) if len(targets)
                  else np.zeros((0, frame_size, frame_size, 3), np.uint8))
        audio = (_pyav_audio(container, name, audio_start_s, num_samples, sample_rate, fps)
                 if num_samples else np.zeros(0, np.float32))
    return frames, audio


# ----------------------------------------------------------------------------------------------
# torchcodec backend
# ----------------------------------------------------------------------------------------------
def _torchcodec_source(source):
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    return source if isinstance(source, bytes) else str(source)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _resize_rgb_short_side_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 from an (H, W, 3) RGB frame: swscale bilinear in RGB space, centre crop.

    Why in RGB space through PyAV's swscale: torchcodec 0.17's own ``Resize`` transform also resizes
    after the colour conversion (swscale, or FFmpeg's scale filter when widths are not multiples of
    32), but needs the output size before the first frame is known; doing it here costs no second
    open and is the same operation."""
    h, w = rgb.shape[:2]
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        rgb = frame.reformat(width=nw, height=nh, interpolation="BILINEAR").to_ndarray()  # (nh, nw, 3)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size])


def _torchcodec_video(src, name: str, targets: np.ndarray, frame_size: int) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(src, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC")
    except ValueError as exc:  # torchcodec's "no best video stream"
        raise DecodeError(name, f"no video stream ({_first_line(exc)})") from exc
    except RuntimeError as exc:
        raise DecodeError(name, f"not a readable media file or truncated ({_first_line(exc)})") from exc
    meta = decoder.metadata
    begin, end = float(meta.begin_stream_seconds), float(meta.end_stream_seconds)
    if targets[-1] >= end - 1e-6:
        raise _truncated(name, float(targets[-1]), end)
    # +1e-6 s: a target within 1 us before a frame's pts shows that frame, as in decode_clip (a
    # target k / fps computed in floating point lands either side of the frame's exact pts);
    # earlier targets show the first frame.
    asked = np.maximum(targets + 1e-6, begin).tolist()
    try:
        batch = decoder.get_frames_played_at(seconds=asked)
    except (RuntimeError, IndexError) as exc:
        raise DecodeError(name, f"truncated or corrupt media data ({_first_line(exc)})") from exc
    rgb = batch.data.numpy()  # (T, H, W, 3) uint8 at the source size, one frame per target (held ones repeated)
    height, width = rgb.shape[1:3]
    if min(height, width) == frame_size:  # no resize: the centre crop of every frame at once, no per-frame copies
        y0, x0 = (height - frame_size) // 2, (width - frame_size) // 2
        return np.ascontiguousarray(rgb[:, y0:y0 + frame_size, x0:x0 + frame_size])
    converted: dict[float, np.ndarray] = {}  # pts -> frame: convert each source frame once
    out = []
    for pts, frame in zip(batch.pts_seconds.tolist(), rgb):
        if pts not in converted:
            converted[pts] = _resize_rgb_short_side_crop(frame, frame_size)
        out.append(converted[pts])
    return np.stack(out)  # (T, S, S, 3)


def _torchcodec_audio(src, name: str, audio_start_s: float, num_samples: int, sample_rate: int,
                      fps: float) -> np.ndarray:
    from torchcodec.decoders import AudioDecoder

    try:
        decoder = AudioDecoder(src, sample_rate=sample_rate, num_channels=1)
    except ValueError as exc:  # torchcodec's "the best audio stream is unknown"
        raise DecodeError(name, f"no audio stream: audio-visual training needs both "
                                f"({_first_line(exc)})") from exc
    except RuntimeError as exc:
        raise DecodeError(name, f"not a readable media file or truncated ({_first_line(exc)})") from exc
    stop_s = audio_start_s + num_samples / sample_rate
    from_s = max(0.0, audio_start_s)
    try:
        samples = decoder.get_samples_played_in_range(from_s, stop_s)
    except RuntimeError as exc:  # "No audio frames were decoded": the window is past the end
        meta = decoder.metadata
        if meta.duration_seconds is None:
            raise DecodeError(name, f"audio: {_first_line(exc)} (a window past the end, or truncated "
                                    f"audio)") from exc
        ends_s = (meta.begin_stream_seconds or 0.0) + meta.duration_seconds
        raise _audio_ends_early(name, ends_s, audio_start_s, stop_s) from exc
    audio = samples.data.numpy().reshape(-1).astype(np.float32, copy=False)  # (S',) mono
    offset = int(round((float(samples.pts_seconds) - audio_start_s) * sample_rate))
    if offset > 0:  # the audio starts after the window's start: silence before it
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    return _fit_audio(name, audio, num_samples, sample_rate, fps, audio_start_s)


def _unindexed_mpeg(source) -> bool:
    """Whether ``source`` is an MPEG transport or program stream (by its first bytes: the 0x47 sync
    byte every 188 bytes, or every 192 after a 4-byte timecode in M2TS; the 00 00 01 BA pack header).

    Why: these containers have no keyframe index and seek by timestamps.  torchcodec 0.17 returned
    WRONG frames from an MPEG-PS (asked for 1.25 s, it gave the frame of 1.68 s, in both seek modes)
    and none at all from an MPEG-TS whose only keyframe was its first frame; PyAV's backend reads
    both right (``_NOTHING_DECODED``, and the audio packets a seek cuts are skipped), so the
    torchcodec backend hands them to it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _is_unindexed_mpeg_head(bytes(source[:400]))
    return _unindexed_mpeg_file(str(source))


@functools.lru_cache(maxsize=65536)
def _unindexed_mpeg_file(path: str) -> bool:
    """:func:`_unindexed_mpeg` of a file, read once per worker (a training worker decodes its windows
    from the same files epoch after epoch)."""
    try:
        with open(path, "rb") as handle:
            return _is_unindexed_mpeg_head(handle.read(400))
    except OSError:
        return False  # torchcodec names a missing or unreadable file


def _is_unindexed_mpeg_head(head: bytes) -> bool:
    if head[:4] == b"\x00\x00\x01\xba":
        return True
    return any(len(head) > offset + 2 * packet and all(head[offset + k * packet] == 0x47 for k in range(3))
               for offset, packet in ((0, 188), (4, 192)))


def _decode_torchcodec(source, name, targets, frame_size, audio_start_s, num_samples, sample_rate, fps):
    problem = torchcodec_problem()
    if problem is not None:
        raise DecodeError(name, f"decoder='torchcodec' but {problem}; install them: {FFMPEG_INSTALL}")
    if _unindexed_mpeg(source):
        return _decode_pyav(source, name, targets, frame_size, audio_start_s, num_samples, sample_rate, fps)
    src = _torchcodec_source(source)
    frames = (_torchcodec_video(src, name, targets, frame_size) if len(targets)
              else np.zeros((0, frame_size, frame_size, 3), np.uint8))
    audio = (_torchcodec_audio(src, name, audio_start_s, num_samples, sample_rate, fps)
             if num_samples else np.zeros(0, np.float32))
    return frames, audio


def decode_window(source, *, video_start_s: float, num_frames: int, fps: float, frame_size: int,
                  audio_start_s: float, num_samples: int, sample_rate: int,
                  decoder: str = "pyav") -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 (num_frames, frame_size, frame_size, 3) RGB and audio float32 (num_samples,) mono.

    ``source``: a path (str or Path) or the file's bytes (bytes/memoryview, e.g. a WebDataset
    sample's MP4).  Frame k is time ``video_start_s + k / fps``, audio sample n is time
    ``audio_start_s + n / sample_rate`` (module docstring).  ``num_frames=0`` or ``num_samples=0``
    skips that stream (its stream need not exist).  ``decoder`` is one of :data:`DECODERS` (resolve
    "auto" with :func:`available_decoder`).  Errors: :class:`~avlib.data.decode.DecodeError` naming
    the path (or "<bytes>") and the reason."""
    _check_numbers(num_frames, fps, frame_size, num_samples, sample_rate, decoder)
    _check_source(source)
    name = _source_name(source)
    targets = _video_targets(float(video_start_s), int(num_frames), float(fps))
    run = _decode_torchcodec if decoder == "torchcodec" else _decode_pyav
    return run(source, name, targets, int(frame_size), float(audio_start_s), int(num_samples),
               int(sample_rate), float(fps))
