"""Decode one audio-visual clip with PyAV into fixed-rate frames and mono audio on a shared clock.

Why this shape: everything downstream (windows, augmentations, encoders, the decoded cache) wants
frames at ONE target fps and size and audio at ONE sample rate, with frame 0 and audio sample 0 at
the same instant (the clip start), whatever the source file's rates, aspect ratio or channel layout.

Conventions
-----------
* Output frame ``k`` represents time ``start + k / fps``.  It is the decoded source frame with the
  LATEST presentation timestamp ``<= start + k / fps`` (sample-and-hold, like a display would show);
  target times before the first decoded frame take the first frame.  This never looks into the
  future, so a visual event is never shown before its sound.
* The number of frames is ``round(length * fps)`` where ``length = end - start`` if ``end`` is
  given, else the video stream's duration minus ``start``; if the file ends earlier the output is
  shorter (callers that need a fixed length check it, see :mod:`avlib.data.cache`).
* Frames are resized so the SHORT side equals ``frame_size`` (aspect kept, bilinear via FFmpeg's
  swscale), then centre-cropped to ``frame_size x frame_size``.
* Audio is downmixed to mono and resampled to ``sample_rate`` (float32) with PyAV's
  ``AudioResampler``; sample ``n`` is time ``start + n / sample_rate``.  Audio that starts after
  ``start`` is front-padded with zeros; it is cut to the same length as the video span
  (``round(length * sample_rate)`` samples), zero-padded by at most one video frame at the end (AAC
  decoders can return a few samples fewer or more than were encoded).

Errors are :class:`DecodeError` naming the file and the reason (missing file, not a media file or
truncated, no video stream, no audio stream, zero frames decoded).

Single-modality datasets (``modality="video"`` or ``"audio"``): downstream benchmarks include
video without sound (about half of UCF101, most of HMDB51) and sound without video (ESC-50 WAV
files).  Only the requested stream is required and decoded; the other output is empty (zero
frames, or zero samples), and an audio-only clip's length comes from the audio stream.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

__all__ = ["DecodeError", "DecodedClip", "decode_clip", "probe_media", "MediaInfo"]


class DecodeError(RuntimeError):
    """A clip could not be decoded; ``.path`` and ``.reason`` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class DecodedClip:
    frames: np.ndarray  # uint8 (T, H, W, 3), RGB
    audio: np.ndarray  # float32 (S,), mono
    fps: float
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


@dataclass(frozen=True)
class MediaInfo:
    """Container metadata (no decoding)."""

    duration: float  # seconds, of the video stream (or the container when the stream lacks it)
    audio_duration: float | None  # seconds, of the audio stream (None: no audio, or not in the metadata)
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float | None


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise DecodeError(path, "file not found")
    if not path.is_file():
        raise DecodeError(path, "not a regular file")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:  # InvalidDataError for garbage and MP4s without a moov atom
        raise DecodeError(path, f"not a readable media file or truncated ({exc})") from exc


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe_media(path: str | os.PathLike) -> MediaInfo:
    """Read container metadata only; raises DecodeError if the file cannot be opened."""
    path = Path(path)
    container = _open(path)
    with container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        duration = _stream_duration(container, v) if v is not None else None
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        audio_duration = float(a.duration * a.time_base) if a is not None and a.duration and a.time_base else None
        return MediaInfo(
            duration=float(duration or 0.0), audio_duration=audio_duration, has_video=v is not None,
            has_audio=bool(container.streams.audio),
            width=v.codec_context.width if v is not None else 0,
            height=v.codec_context.height if v is not None else 0,
            fps=float(v.average_rate) if v is not None and v.average_rate else None)


def _resize_short_side_crop(frame: av.VideoFrame, size: int) -> np.ndarray:
    """(size, size, 3) uint8: resize the short side to ``size`` with swscale, centre crop."""
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    arr = frame.to_ndarray(width=nw, height=nh, format="rgb24")  # (nh, nw, 3)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return arr[y0 : y0 + size, x0 : x0 + size]


MODALITIES = ("both", "video", "audio")


def decode_clip(path: str | os.PathLike, *, fps: float, frame_size: int, sample_rate: int,
                start: float | None = None, end: float | None = None,
                modality: str = "both") -> DecodedClip:
    """Decode ``path`` (optionally the span [start, end) seconds) to frames and mono audio.

    Returns ``DecodedClip(frames uint8 (T, H, W, 3), audio float32 (S,), fps, sample_rate)``;
    see the module docstring for the time conventions.  ``modality`` ("both", "video" or "audio")
    names the streams that must exist and are decoded.
    """
    path = Path(path)
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    need_video, need_audio = modality != "audio", modality != "video"
    if fps <= 0 or frame_size <= 0 or sample_rate <= 0:
        raise ValueError(f"fps, frame_size and sample_rate must be positive, got {fps}, "
                         f"{frame_size}, {sample_rate}")
    t0 = float(start or 0.0)
    if end is not None and end <= t0:
        raise ValueError(f"{path}: end={end} must be greater than start={t0}")

    container = _open(path)
    with container:
        if need_video and not container.streams.video:
            raise DecodeError(path, "no video stream")
        if need_audio and not container.streams.audio:
            raise DecodeError(path, "no audio stream: audio-visual training needs both")
        vstream = container.streams.video[0] if need_video else None
        astream = container.streams.audio[0] if need_audio else None
        clock = vstream if need_video else astream  # the stream whose duration sets the length
        if need_video:
            vstream.thread_type = "AUTO"
        duration = _stream_duration(container, clock)
        if end is not None:
            length = end - t0
        elif duration is not None:
            length = duration - t0
        else:
            raise DecodeError(path, "unknown duration (no metadata) and no end given")
        if length <= 0:
            raise DecodeError(path, f"start={t0:.3f}s is past the end of the video ({duration}s)")
        n_frames = int(round(length * fps))
        targets = t0 + np.arange(n_frames) / fps  # (T,) target times in seconds
        t_end = t0 + length

        if t0 > 0:
            try:  # seek to the keyframe at or before start; audio packets follow interleaved
                container.seek(int(t0 / clock.time_base), stream=clock, backward=True)
            except av.FFmpegError as exc:
                raise DecodeError(path, f"cannot seek to {t0:.3f}s ({exc})") from exc

        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        src_span = (1.0 / float(vstream.average_rate) if need_video and vstream.average_rate
                    else 1.0 / fps)
        frames: list[np.ndarray] = []  # one (H, W, 3) per filled target, in order
        prev: list | None = None  # [time, av frame, converted array or None]: latest frame so far
        audio_chunks: list[np.ndarray] = []
        audio_t0: float | None = None
        audio_done, video_done = not need_audio, not need_video

        def take(entry: list) -> np.ndarray:  # convert lazily, once per source frame
            if entry[2] is None:
                entry[2] = _resize_short_side_crop(entry[1], frame_size)
            return entry[2]

        try:
            for packet in container.demux(*[s for s in (vstream, astream) if s is not None]):
                if packet.stream.type == "video" and not video_done:
                    for frame in packet.decode():
                        ft = frame.time if frame.time is not None else (
                            prev[0] + src_span if prev else t0)
                        cur = [ft, frame, None]
                        # Targets strictly before this frame's time show the previous frame
                        # (or this one, for targets before the first decoded frame).
                        while len(frames) < n_frames and targets[len(frames)] < ft - 1e-6:
                            frames.append(take(prev or cur))
                        prev = cur
                        if len(frames) >= n_frames:
                            video_done = True
                            break
                elif packet.stream.type == "audio" and not audio_done:
                    for frame in packet.decode():
                        if audio_t0 is None:
                            audio_t0 = frame.time if frame.time is not None else t0
                        for out in resampler.resample(frame):
                            audio_chunks.append(out.to_ndarray().reshape(-1))
                        if frame.time is not None and frame.time > t_end + 0.1:
                            audio_done = True
                if video_done and audio_done:
                    break
            for out in resampler.resample(None):
                audio_chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise DecodeError(path, f"corrupt or truncated media data ({exc})") from exc

        # The last decoded frame also covers targets within its display span (the file really
        # lasts that long); beyond that the output is shorter than requested.
        if prev is not None:
            while len(frames) < n_frames and targets[len(frames)] < prev[0] + src_span - 1e-6:
                frames.append(take(prev))
    k = len(frames)
    if need_video:
        if k == 0:
            raise DecodeError(path, "zero video frames decoded (empty or corrupt video stream)")
        covered = prev[0] + src_span  # decoded video reaches this time
        claimed = min(t_end, duration) if duration is not None else t_end
        if covered < claimed - 1.5 * max(src_span, 1.0 / fps):
            raise DecodeError(path, f"truncated: decoded video ends at {covered:.3f}s but the "
                                    f"file claims {claimed:.3f}s")
        video = np.stack(frames[:k])  # (T, H, W, 3)
    else:
        video = np.zeros((0, frame_size, frame_size, 3), np.uint8)  # audio only: no frames
        k = n_frames
    if not need_audio:
        return DecodedClip(frames=video, audio=np.zeros(0, np.float32), fps=float(fps),
                           sample_rate=int(sample_rate))

    # Audio on the clip clock: sample n <-> t0 + n / sample_rate.
    n_samples = int(round(k / fps * sample_rate))
    if not need_video:  # audio only: the requested span, cut to what the file holds
        available = length if duration is None else min(length, duration - t0)
        n_samples = int(round(available * sample_rate))
    audio = np.concatenate(audio_chunks) if audio_chunks else np.zeros(0, np.float32)
    offset = int(round(((audio_t0 if audio_t0 is not None else t0) - t0) * sample_rate))
    if offset >= 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    else:
        audio = audio[-offset:]
    missing = n_samples - len(audio)
    if missing > math.ceil(sample_rate / fps) and len(audio) < n_samples:
        raise DecodeError(path, f"audio ends {missing / sample_rate:.3f}s before the video "
                                f"(got {len(audio)} of {n_samples} samples): truncated audio?")
    if missing > 0:
        audio = np.concatenate([audio, np.zeros(missing, np.float32)])
    return DecodedClip(frames=video, audio=np.ascontiguousarray(audio[:n_samples],
                                                                dtype=np.float32),
                       fps=float(fps), sample_rate=int(sample_rate))
