"""Clips of any length: a clip shorter than ``clip_seconds`` but as long as the windows is trained on.

A manifest of 2-s clips (written with PyAV by the embedded generator) against the default
``clip_seconds=3`` and 1.5-s windows: every row is kept, the cache records each clip's valid length,
the windows stay inside it, and pretraining runs.  Rows shorter than the windows are still skipped,
and when none is left the error names the reason, the durations found and the parameter to change.
"""

import numpy as np
import pytest

from avlib.config import PretrainConfig
from avlib.data import ManifestError, SyntheticSpec, generate
from avlib.data.augment import seeded
from avlib.data.dataset import AVWindows, open_dataset
from avlib.train import pretrain

SMALL = dict(num_classes=3, clips_per_class=6, fps=8, frame_size=32, sample_rate=8000)


def config(run_dir, manifest, **overrides) -> PretrainConfig:
    """The defaults for decoding and windows (clip_seconds 3, windows 1.5 s), a small model and batch."""
    small = dict(fps=8, frame_size=32, crop_size=24, sample_rate=8000, n_mels=32, batch_size=4,
                 dictionary_size=8, epochs=1, num_workers=0, progress=False, warmup_steps=1)
    return PretrainConfig(run_dir=str(run_dir), dataset=str(manifest), **{**small, **overrides})


@pytest.fixture(scope="module")
def two_second_manifest(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("two_s"), SyntheticSpec(duration_s=2.0, **SMALL), workers=1)


def test_two_second_clips_are_kept_and_windows_stay_inside_them(two_second_manifest, tmp_path):
    cfg = config(tmp_path, two_second_manifest)
    assert cfg.clip_seconds == PretrainConfig().clip_seconds == 3.0 and cfg.window_s == 1.5
    cache = open_dataset(cfg, progress=False)
    assert len(cache) == 18 and not cache.skipped
    assert cache.video.shape[1] == 24 and cache.audio.shape[1] == 24000  # dense at clip_seconds
    assert (cache.frame_counts == 16).all() and (cache.sample_counts == 16000).all()
    assert not cache.video[:, 16:].any() and not cache.audio[:, 16000:].any()  # padding only
    windows = AVWindows(cache, np.arange(len(cache)), cfg, train=True)
    ends = []
    for seed in range(300):
        with seeded(seed):
            start, audio_start = windows.window_starts(seed, seed % len(cache))
        ends.append((start + cfg.window_frames, audio_start + cfg.window_samples))
    ends = np.array(ends)
    assert ends[:, 0].max() == 16 and ends[:, 1].max() <= 16000, "windows never reach the padding"
    evaluation = AVWindows(cache, np.arange(len(cache)), cfg, train=False, eval_windows=3)
    assert [evaluation.window_starts(k, 0)[0] for k in range(3)] == [0, 2, 4]  # spread over 16 frames


def test_a_manifest_of_two_second_clips_trains_with_the_default_clip_and_window_lengths(two_second_manifest,
                                                                                        tmp_path):
    summary = pretrain(config(tmp_path / "run", two_second_manifest, max_steps=2, probe=False))
    assert summary["num_clips"] == 18 and summary["steps"] == 2


def test_fixed_length_clips_keep_the_fixed_length_cache(tmp_path):
    manifest = generate(tmp_path / "three_s", SyntheticSpec(duration_s=3.0,
                                                            **{**SMALL, "clips_per_class": 2}), workers=1)
    cache = open_dataset(config(tmp_path, manifest), progress=False)
    assert "min_clip_seconds" not in cache.params  # same key as before clips of any length existed
    assert "frames" not in cache.index["rows"][0] and (cache.frame_counts == 24).all()


def test_clips_shorter_than_the_windows_fail_with_the_durations_and_the_parameter(two_second_manifest, tmp_path):
    cfg = config(tmp_path, two_second_manifest, window_s=2.5, audio_window_s=2.5)
    with pytest.raises(ManifestError) as caught:
        open_dataset(cfg, progress=False)
    text = str(caught.value)
    assert "18 of 18 rows skipped" in text and "18x too short" in text
    assert "2.000s to 2.000s" in text and "window_s" in text and "2.5s" in text
