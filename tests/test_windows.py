"""Where the training and evaluation windows fall: the audio offset against the synchrony shortcut."""

import numpy as np

from avlib.data.augment import seeded
from avlib.data.dataset import AVWindows, open_dataset
from tiny import tiny_config


def centre_offsets(windows: AVWindows, seeds) -> np.ndarray:
    """(len(seeds),) audio window centre minus video window centre, in seconds."""
    out = []
    for seed in seeds:
        with seeded(seed):
            start, audio_start = windows.window_starts(seed)
        video_centre = (start + windows.window_frames / 2) / windows.fps
        audio_centre = (audio_start + windows.window_samples / 2) / windows.sample_rate
        out.append(audio_centre - video_centre)
    return np.asarray(out)


def test_training_moves_the_audio_window_by_at_most_audio_offset_s_and_evaluation_keeps_it_aligned(tmp_path):
    # 1 s windows in 2 s clips: an aligned audio window never has to be moved inside the clip
    aligned_cfg = tiny_config(tmp_path, window_s=1.0, audio_window_s=1.0, audio_offset_s=0.0)
    cache = open_dataset(aligned_cfg, progress=False)
    train = cache.select("train")
    seeds = range(200)
    one_sample = 1.0 / aligned_cfg.sample_rate

    aligned = centre_offsets(AVWindows(cache, train, aligned_cfg, train=True), seeds)
    assert np.abs(aligned).max() <= one_sample

    offset_cfg = tiny_config(tmp_path, window_s=1.0, audio_window_s=1.0, audio_offset_s=0.4)
    moved = centre_offsets(AVWindows(cache, train, offset_cfg, train=True), seeds)
    assert np.abs(moved).max() <= 0.4 + one_sample
    assert (moved > 0.2).any() and (moved < -0.2).any(), "the offset is drawn on both sides"
    assert np.mean(np.abs(moved) > 0.05) > 0.5, "most training pairs are out of exact sync"
    # the same item seed gives the same windows (resume and data-parallel runs rely on it)
    np.testing.assert_array_equal(moved, centre_offsets(AVWindows(cache, train, offset_cfg, train=True), seeds))

    evaluation = AVWindows(cache, train, offset_cfg, train=False, eval_windows=3)
    assert np.abs(centre_offsets(evaluation, range(3))).max() <= one_sample, "probes read aligned windows"
