"""PyAV decoding: shapes, rates, alignment and clear errors for broken inputs."""
import av
import numpy as np
import pytest

from avlib.data.decode import DecodeError, decode_clip, probe_media
from avlib.data.synthetic import SyntheticSpec, generate, plan_clip, render_video, synthesize_audio

SPEC = SyntheticSpec(num_classes=2, clips_per_class=1, duration_s=1.0, frame_size=32)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    generate(root, SPEC, workers=1)
    return root / "clips" / "clip_00000.mp4"


def _write(path, *, size=(48, 32), fps=10, seconds=1.0, audio=True, sr=22050, channels=2):
    """A test video: frame k is uniformly grey k*10; audio is a click at 0.5 s."""
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        if audio:
            aus = out.add_stream("aac", rate=sr, layout="stereo" if channels == 2 else "mono")
        for k in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), 10 * k, np.uint8), format="rgb24")
            frame.pts = k
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if audio:
            x = np.zeros((channels, int(seconds * sr)), np.float32)
            x[:, sr // 2 : sr // 2 + 50] = 0.8
            af = av.AudioFrame.from_ndarray(x, format="fltp", layout=aus.layout.name)
            af.sample_rate, af.pts = sr, 0
            out.mux(aus.encode(af))
            out.mux(aus.encode())


def test_shapes_rates_and_content(clip_path):
    clip = decode_clip(clip_path, fps=8, frame_size=32, sample_rate=16000)
    assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (16000,) and clip.audio.dtype == np.float32
    assert clip.fps == 8 and clip.sample_rate == 16000
    plan = plan_clip(SPEC, 0)
    assert np.abs(clip.frames.astype(int) - render_video(SPEC, plan)).mean() < 6
    assert np.corrcoef(clip.audio, synthesize_audio(SPEC, plan))[0, 1] > 0.99  # no time shift


def test_resample_fps_resize_and_span(clip_path):
    clip = decode_clip(clip_path, fps=4, frame_size=16, sample_rate=8000, start=0.25, end=0.75)
    assert clip.frames.shape == (2, 16, 16, 3) and clip.audio.shape == (4000,)
    full = decode_clip(clip_path, fps=8, frame_size=32, sample_rate=16000)
    part = decode_clip(clip_path, fps=8, frame_size=32, sample_rate=16000, start=0.25, end=0.75)
    np.testing.assert_array_equal(part.frames, full.frames[2:6])
    np.testing.assert_allclose(part.audio, full.audio[4000:12000], atol=1e-6)


def test_non_square_stereo_other_rates_and_sync(tmp_path):
    path = tmp_path / "wide.mp4"
    _write(path, size=(48, 32), fps=10, seconds=1.0, sr=22050, channels=2)
    clip = decode_clip(path, fps=5, frame_size=16, sample_rate=16000)
    assert clip.frames.shape == (5, 16, 16, 3)
    assert abs(len(clip.audio) - 16000) <= 16
    # frame k at time k/5 is source frame 2k (grey level 20k): latest frame <= target time
    np.testing.assert_allclose(clip.frames.mean((1, 2, 3)), 20 * np.arange(5), atol=3)
    onset = np.argmax(np.abs(clip.audio) > 0.2) / 16000
    assert abs(onset - 0.5) < 0.005
    info = probe_media(path)
    assert info.has_audio and info.has_video and abs(info.duration - 1.0) < 0.05


def test_missing_file(tmp_path):
    with pytest.raises(DecodeError, match="file not found") as err:
        decode_clip(tmp_path / "nope.mp4", fps=8, frame_size=32, sample_rate=16000)
    assert "nope.mp4" in str(err.value)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(DecodeError, match="not a readable media file") as err:
        decode_clip(path, fps=8, frame_size=32, sample_rate=16000)
    assert err.value.path == str(path)


def test_truncated_mp4(clip_path, tmp_path):
    data = clip_path.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated") as err:
        decode_clip(path, fps=8, frame_size=32, sample_rate=16000)
    assert "half.mp4" in str(err.value)


def test_no_audio_stream(tmp_path):
    path = tmp_path / "silent.mp4"
    _write(path, audio=False)
    with pytest.raises(DecodeError, match="no audio stream: audio-visual training needs both"):
        decode_clip(path, fps=8, frame_size=32, sample_rate=16000)


def test_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        aus = out.add_stream("aac", rate=16000, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp",
                                        layout="mono")
        af.sample_rate, af.pts = 16000, 0
        out.mux(aus.encode(af))
        out.mux(aus.encode())
    with pytest.raises(DecodeError, match="no video stream"):
        decode_clip(path, fps=8, frame_size=32, sample_rate=16000)
