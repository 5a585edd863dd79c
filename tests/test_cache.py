"""Decoded cache: build, reopen without decoding, rebuild on change, skip-and-report."""
import shutil

import numpy as np
import pytest

import avlib.data.cache as cache_mod
from avlib.data.cache import DecodedCache
from avlib.data.decode import decode_clip
from avlib.data.manifest import ManifestError, load_manifest
from avlib.data.synthetic import SyntheticSpec, generate

SPEC = SyntheticSpec(num_classes=3, clips_per_class=2, duration_s=1.0, frame_size=32,
                     faulty_pair_rate=0.34)
PARAMS = dict(fps=8, frame_size=32, sample_rate=16000, clip_seconds=1.0)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return load_manifest(generate(tmp_path_factory.mktemp("cache_ds"), SPEC, workers=1))


def test_build_contents(manifest, tmp_path):
    c = DecodedCache.build(manifest, tmp_path, progress=False, **PARAMS)
    assert len(c) == 6 and c.video.shape == (6, 8, 32, 32, 3) and c.audio.shape == (6, 16000)
    assert c.video.dtype == np.uint8 and c.audio.dtype == np.float32
    assert isinstance(c.video, np.memmap)
    np.testing.assert_array_equal(c.labels, manifest.label_index)
    assert c.class_names == manifest.class_names and c.clip_ids == manifest.clip_ids
    assert list(c.row_numbers) == [1, 2, 3, 4, 5, 6]
    assert sorted(np.concatenate([c.select(s) for s in ("train", "val", "test")])) == list(range(6))
    assert c.column("corrupted").dtype == np.int64 and c.column("corrupted").sum() == 1  # 0.34 of the 3 train clips
    assert c.column("audio_source").dtype == object
    ref = decode_clip(manifest.paths[3], fps=8, frame_size=32, sample_rate=16000)
    np.testing.assert_array_equal(c.video[3], ref.frames)
    np.testing.assert_array_equal(c.audio[3], ref.audio)
    assert not list(tmp_path.glob(".tmp-*"))  # temp folder renamed into place


def test_reopen_does_not_decode(manifest, tmp_path, monkeypatch):
    first = DecodedCache.build(manifest, tmp_path, progress=False, **PARAMS)

    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "decode_clip", boom)
    again = DecodedCache.build(manifest, tmp_path, progress=False, **PARAMS)
    assert again.path == first.path
    np.testing.assert_array_equal(again.video, first.video)
    with pytest.raises(AssertionError, match="decoded again"):  # a changed parameter rebuilds
        DecodedCache.build(manifest, tmp_path, progress=False, **{**PARAMS, "frame_size": 16})


def test_rebuild_on_changed_params_and_manifest(manifest, tmp_path):
    a = DecodedCache.build(manifest, tmp_path, progress=False, **PARAMS)
    b = DecodedCache.build(manifest, tmp_path, progress=False, **{**PARAMS, "fps": 4})
    c = DecodedCache.build(manifest.select("train"), tmp_path, progress=False, **PARAMS)
    assert len({a.path, b.path, c.path}) == 3
    assert b.video.shape[1] == 4 and len(c) == len(manifest.select("train"))


def test_parallel_build_matches(manifest, tmp_path):
    a = DecodedCache.build(manifest, tmp_path / "a", progress=False, **PARAMS)
    b = DecodedCache.build(manifest, tmp_path / "b", progress=False, workers=2, **PARAMS)
    np.testing.assert_array_equal(a.video, b.video)
    np.testing.assert_array_equal(a.audio, b.audio)


def test_skip_and_report_bad_rows(manifest, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(manifest.source.parent, root)
    data = (root / "clips" / "clip_00002.mp4").read_bytes()
    (root / "clips" / "clip_00002.mp4").write_bytes(data[: len(data) // 2])
    broken = load_manifest(root / "manifest.csv")
    with pytest.raises(ManifestError, match=r"row 3 \(line 4\).*clip_00002.mp4.*truncated"):
        DecodedCache.build(broken, tmp_path / "c", progress=False, **PARAMS)
    assert not any((tmp_path / "c").iterdir())  # nothing half-built left behind
    c = DecodedCache.build(broken, tmp_path / "c", on_error="skip", progress=False, **PARAMS)
    assert len(c) == 5 and list(c.row_numbers) == [1, 2, 4, 5, 6]
    assert c.skipped[0][0] == 3 and "truncated" in c.skipped[0][2]
    assert c.video.shape[0] == 5 and c.audio.shape[0] == 5
    # reopening with on_error="raise" refuses a cache that skipped rows
    with pytest.raises(ManifestError, match="row 3"):
        DecodedCache.build(broken, tmp_path / "c", progress=False, **PARAMS)
    # clips shorter than clip_seconds are skipped too
    short = DecodedCache.build(broken, tmp_path / "d", on_error="skip", progress=False,
                               **{**PARAMS, "clip_seconds": 2.0})
    assert len(short) == 0 and all("too short" in s[2] or "truncated" in s[2]
                                   for s in short.skipped)
