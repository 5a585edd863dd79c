"""Streaming training windows (data_source=stream, and shards): the same windows as the cache, windows
over whole long clips, broken rows reported and skipped, a sample broken mid-epoch skipped and logged."""

import os
from pathlib import Path

import numpy as np
import pytest

from avlib.config import ConfigError
from avlib.data.augment import seeded
from avlib.data.dataset import AVWindows
from avlib.data.sources import open_clips
from avlib.data.window import torchcodec_problem
from system import MISSING, REQUIRE
from tiny import tiny_config


def decoders() -> list:
    """pyav always; torchcodec where it loads, else a loud skip (a failure under AVLIB_REQUIRE_SYSTEM=1)."""
    problem = torchcodec_problem()
    if problem is None:
        return ["pyav", "torchcodec"]
    reason = f"{MISSING}: torchcodec cannot load FFmpeg ({problem}; install: make system)"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}; {REQUIRE}=1 requires it", pytrace=False)
    return ["pyav", pytest.param("torchcodec", marks=pytest.mark.skip(reason=reason))]


@pytest.mark.parametrize("decoder", decoders())
def test_a_streamed_window_equals_the_same_window_cut_from_the_cache(tmp_path, decoder):
    cached = open_clips(tiny_config(tmp_path, data_source="cache"), progress=False)
    cfg = tiny_config(tmp_path, data_source="stream", decoder=decoder)
    streamed = open_clips(cfg, progress=False)
    assert (streamed.source, streamed.decoder) == ("stream", decoder)
    np.testing.assert_array_equal(streamed.frame_counts, cached.frame_counts)
    np.testing.assert_array_equal(streamed.sample_counts, cached.sample_counts)
    train = cached.select("train")
    differences = []
    for is_train, items in ((True, [(0, 11), (3, 2), (5, 7), (9, 123)]), (False, [(0, 0), (3, 1), (5, 2)])):
        from_cache = AVWindows(cached, train, cfg, train=is_train, eval_windows=3)
        from_files = AVWindows(streamed, train, cfg, train=is_train, eval_windows=3)
        for position, seed in items:
            with seeded(seed):
                starts = from_cache.window_starts(seed, position)
            with seeded(seed):
                assert from_files.window_starts(seed, position) == starts
            clip = int(train[position])
            frames_c, audio_c = cached.read(clip, starts[0], cfg.window_frames, starts[1], cfg.window_samples)
            frames_s, audio_s = streamed.read(clip, starts[0], cfg.window_frames, starts[1], cfg.window_samples)
            # the same decoder conventions on the same grid: the same pixels, the same resampled audio
            np.testing.assert_array_equal(frames_s, frames_c)
            np.testing.assert_allclose(audio_s, audio_c, atol=1e-4)
            a, b = from_cache[(position, seed)], from_files[(position, seed)]
            assert a["clip_index"] == b["clip_index"] and a["window_start_s"] == b["window_start_s"]
            differences.append(float((a["video"] - b["video"]).abs().max()))
            np.testing.assert_allclose(b["audio"].numpy(), a["audio"].numpy(), atol=1e-3)
    assert max(differences) == 0.0
    # the control: a window one frame later is another window
    shifted, _ = streamed.read(int(train[0]), 1, cfg.window_frames, 0, cfg.window_samples)
    first, _ = cached.read(int(train[0]), 0, cfg.window_frames, 0, cfg.window_samples)
    assert np.abs(shifted.astype(int) - first.astype(int)).mean() > 1.0


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory):
    """12 clips of 6-12 s at 29.97 fps, 4:3, 44.1-kHz stereo AAC, plus a truncated file, a file without
    audio and a missing file (avlib.data.media_corpus)."""
    from avlib.data.media_corpus import write_long_corpus

    return write_long_corpus(tmp_path_factory.mktemp("long"), clips=12, num_classes=4, size=(96, 72))


LONG = dict(num_classes=4, clip_seconds=3.0, window_s=1.0, audio_window_s=1.0, epochs=30, max_steps=10,
            monitor_every=0, tensorboard=False, snapshot_every=0, min_clips_per_class=0)


def check_long_run(summary: dict, manifest: Path, source: str):
    data = summary["data"]
    assert data["source"] == source
    assert data["skipped"]["rows"] == 3, data["skipped"]
    for reason in ("truncated", "no audio stream", "file not found"):
        assert reason in data["skipped"]["row_reasons"], data["skipped"]
    assert data["clips_seen"] == data["train_clips"] == len(_train_durations(manifest))
    assert abs(data["mean_clip_s"] - np.mean(_train_durations(manifest))) < 0.2
    # windows are drawn over whole clips (the cache would keep the first clip_seconds=3 s only)
    assert data["window_start_s"]["max"] > 3.0
    assert data["span_share"] >= 0.6, data["window_start_s"]
    assert 0.0 <= data["data_wait_share"] <= 1.0 and data["peak_rss_mb"] > 0


def _train_durations(manifest: Path) -> list[float]:
    """The durations of the intact training clips (the broken rows come last)."""
    from avlib.data.manifest import load_manifest

    rows = load_manifest(manifest).rows[:-3]
    return [float(r["duration"]) for r in rows if r["split"] == "train"]


def test_a_corpus_of_long_quirky_clips_trains_streamed_and_from_its_shards(tmp_path, long_corpus, capsys):
    from avlib.data.shards import write_shards
    from avlib.train import pretrain

    summary = pretrain(tiny_config(tmp_path / "stream", dataset=str(long_corpus), data_source="stream", **LONG))
    check_long_run(summary, long_corpus, "stream")
    skipped = (tmp_path / "stream" / "skipped_clips.csv").read_text()
    assert skipped.count("\n") == 4  # the header and the three broken rows

    shards = tmp_path / "shards"
    write_shards(long_corpus, shards, samples_per_shard=3, min_duration_s=1.0, progress=False)
    summary = pretrain(tiny_config(tmp_path / "sharded", dataset=str(shards), **LONG))
    check_long_run(summary, long_corpus, "shards")
    assert "(shards, decoder" in capsys.readouterr().out


def test_a_shard_sample_broken_mid_epoch_is_skipped_logged_and_counted(tmp_path, long_corpus):
    from avlib.data.shards import read_index, write_shards
    from avlib.train import pretrain

    shards = tmp_path / "shards"
    index = write_shards(long_corpus, shards, samples_per_shard=3, min_duration_s=1.0, progress=False)
    broken = next(s for s in index["samples"] if s["split"] == "train")
    shard = shards / index["shards"][broken["shard"]]["name"]
    with open(shard, "r+b") as handle:  # the sample's media bytes overwritten in place: the tar stays valid
        handle.seek(broken["offset"])
        handle.write(b"\0" * broken["size"])
    read_index(shards)  # the folder still looks whole: only decoding finds the damage
    summary = pretrain(tiny_config(tmp_path / "run", dataset=str(shards), **{**LONG, "max_steps": 6}))
    skipped = summary["data"]["skipped"]
    assert skipped["failed_windows"] >= 1
    assert all(f"{shard.name}:{broken['key']}" in example for example in skipped["failed_examples"])
    # the broken sample never gave a window; the run went on
    assert summary["data"]["clips_seen"] == summary["data"]["train_clips"] - 1
    assert summary["steps"] == 6


def test_source_parameters_that_cannot_work_are_refused(tmp_path, long_corpus):
    from avlib.data.shards import write_shards
    from avlib.train import pretrain

    with pytest.raises(ConfigError, match="data_source='shards' needs dataset to be a folder"):
        open_clips(tiny_config(tmp_path, data_source="shards"), progress=False)
    shards = tmp_path / "shards"
    write_shards(long_corpus, shards, samples_per_shard=4, min_duration_s=1.0, progress=False)
    with pytest.raises(ConfigError, match="is a shard folder: use data_source='shards'"):
        open_clips(tiny_config(tmp_path, dataset=str(shards), data_source="stream"), progress=False)
    with pytest.raises(ConfigError, match="active_candidates='fresh'"):
        pretrain(tiny_config(tmp_path / "fresh", dataset=str(shards), sampler="active", active_candidates="fresh",
                             **LONG))
    with pytest.raises(ConfigError, match="parameter data_source='strem' is not valid"):
        tiny_config(tmp_path, data_source="strem")
    with pytest.raises(ConfigError, match="parameter decoder='ffmpeg' is not valid"):
        tiny_config(tmp_path, decoder="ffmpeg")


def test_the_loader_workers_deliver_the_windows_read_in_process(tmp_path):
    """The loader's own work (seeding, collation into reused shared-memory slots or, the control, into fresh
    shared memory, the hand-over from 2 worker processes) leaves the windows as they are: every batch equals
    the same items read and collated in this process, kept until the end (no slot is overwritten under a
    batch already delivered)."""
    import torch
    from torch.utils.data import DataLoader

    from avlib.data.dataset import StepBatches, collate
    from avlib.data.ring import SlotCollate, SlotLoader

    cfg = tiny_config(tmp_path, data_source="stream")
    clips = open_clips(cfg, progress=False)
    windows = AVWindows(clips, clips.select("train"), cfg, train=True)
    batches = StepBatches(len(windows), cfg.batch_size, cfg.seed, 6)
    expected = [collate([windows[item] for item in items]) for items in batches]
    for collate_fn in (SlotCollate(collate), collate):
        loader = SlotLoader(DataLoader(windows, batch_sampler=batches, collate_fn=collate_fn, num_workers=2))
        delivered = list(loader)
        assert len(delivered) == 6
        for batch, want in zip(delivered, expected):
            for key in ("video", "audio", "clip_index", "label", "window_start_s"):
                assert torch.equal(batch[key], want[key]), key
        # how they arrived: all 6 in the workers' slots (3 each, no fallback), or, the control, handed over
        assert (loader.batches_in_slots, loader.batches_handed) == ((6, 0) if collate_fn is not collate else (0, 6))
    # the control: another step's items are other windows
    assert not torch.equal(delivered[0]["video"], delivered[1]["video"])


def test_a_worker_stacks_its_batch_into_shared_memory():
    """Collated in a DataLoader worker, the batch's tensors are already in shared memory, so sending it to
    the main process copies nothing more (``share_memory_`` would copy a 9.4-MB decode-only batch of 8
    128-px windows once more); in the main process they stay in ordinary memory."""
    import torch
    import torch.utils.data._utils.worker as worker_state

    from avlib.data.dataset import collate

    items = [{"video": torch.full((2, 3, 4, 4), float(k)), "audio": torch.full((1, 5, 6), -float(k)),
              "clip_index": k, "label": k % 2} for k in range(3)]
    in_main = collate(items)
    assert not in_main["video"].is_shared() and not in_main["audio"].is_shared()
    saved = worker_state._worker_info
    worker_state._worker_info = worker_state.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None)
    try:
        in_worker = collate(items)
    finally:
        worker_state._worker_info = saved
    assert in_worker["video"].is_shared() and in_worker["audio"].is_shared()
    for key in ("video", "audio", "clip_index", "label"):
        assert torch.equal(in_worker[key], in_main[key]), key


def test_seeded_draws_manual_seeds_stream_restores_the_outer_state_and_seeds_no_accelerator(monkeypatch):
    """``seeded(seed)`` gives the CPU draws ``torch.manual_seed(seed)`` gives (the windows and augmentations
    of every run stay what they were), puts the outer RNG state back, and does not queue the lazy seeding
    of uninitialised accelerators that ``torch.manual_seed`` does with a formatted stack on each call."""
    import torch

    for seed in (0, 7, 2 ** 62 + 3):
        torch.manual_seed(seed)
        expected = (torch.randint(0, 1000, (5,)), torch.empty(3).uniform_(-1, 1), torch.rand(4))
        torch.manual_seed(123)
        outer = torch.get_rng_state()
        with seeded(seed):
            got = (torch.randint(0, 1000, (5,)), torch.empty(3).uniform_(-1, 1), torch.rand(4))
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        assert torch.equal(torch.get_rng_state(), outer)
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    with seeded(5):
        torch.rand(1)
    assert calls == []
    torch.manual_seed(5)  # the control: torch.manual_seed does seed the accelerators
    assert calls == [5]
