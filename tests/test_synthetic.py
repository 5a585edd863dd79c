"""The embedded synthetic dataset: determinism, caching, faulty pairs, A/V sync, design goal."""
import csv
import hashlib
from collections import Counter

import numpy as np
import pytest

from avlib.data import synthetic as syn
from avlib.data.decode import decode_clip
from avlib.data.synthetic import SyntheticSpec, generate

SMALL = dict(num_classes=3, clips_per_class=2, duration_s=1.0, frame_size=32)


def _rows(manifest):
    with open(manifest, newline="") as fh:
        return list(csv.DictReader(fh))


def _decode(root, row, spec):
    return decode_clip(root / row["path"], fps=spec.fps, frame_size=spec.frame_size,
                       sample_rate=spec.sample_rate)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    spec = SyntheticSpec(**SMALL)
    root = tmp_path_factory.mktemp("syn_a")
    return spec, root, generate(root, spec, workers=1)


def test_spec_validation():
    with pytest.raises(ValueError, match="frame_size"):
        SyntheticSpec(frame_size=63)
    with pytest.raises(ValueError, match="split_fractions"):
        SyntheticSpec(split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="noise"):
        SyntheticSpec(noise=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpec(num_classes=51)


def test_class_table_design():
    """Every attribute value is shared by 2 classes; each modality alone determines the class."""
    table = syn.describe_classes(SyntheticSpec())
    assert len({r["name"] for r in table}) == 10
    for attr in ("shape", "motion", "timbre", "rhythm"):
        assert set(Counter(r[attr] for r in table).values()) == {2}, attr
    assert len({(r["shape"], r["motion"]) for r in table}) == 10  # video determines the class
    assert len({(r["timbre"], r["rhythm"]) for r in table}) == 10  # audio determines the class
    full = syn.describe_classes(SyntheticSpec(num_classes=25))
    assert len({(r["shape"], r["motion"]) for r in full}) == 25
    assert len({(r["timbre"], r["rhythm"]) for r in full}) == 25


def test_determinism_same_seed(small, tmp_path):
    spec, root_a, man_a = small
    man_b = generate(tmp_path / "b", spec, workers=2)  # different worker count: same content
    assert man_a.read_bytes() == man_b.read_bytes()
    for row in _rows(man_a):
        a, b = _decode(root_a, row, spec), _decode(tmp_path / "b", row, spec)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.audio, b.audio)
        digest = [hashlib.sha256((r / row["path"]).read_bytes()).hexdigest()
                  for r in (root_a, tmp_path / "b")]
        assert digest[0] == digest[1], "MP4 bytes differ between identical generations"


def test_different_seed_differs(small, tmp_path):
    spec, root_a, man_a = small
    spec2 = SyntheticSpec(**SMALL, seed=1)
    generate(tmp_path / "b", spec2, workers=1)
    row = _rows(man_a)[0]
    a, b = _decode(root_a, row, spec), _decode(tmp_path / "b", row, spec2)
    assert not np.array_equal(a.frames, b.frames)
    assert not np.allclose(a.audio, b.audio)
    assert syn.spec_hash(spec) != syn.spec_hash(spec2)


def test_generation_is_cached(small):
    spec, root, manifest = small
    files = [manifest, root / "spec.json", *sorted((root / "clips").glob("*.mp4"))]
    before = [f.stat().st_mtime_ns for f in files]
    assert generate(root, spec) == manifest
    assert [f.stat().st_mtime_ns for f in files] == before


def test_interrupted_generation_is_not_complete(small, tmp_path):
    spec, root, manifest = small
    assert syn._is_complete(root, spec)
    (root / "clips" / "clip_00001.mp4").rename(tmp_path / "moved.mp4")
    try:
        assert not syn._is_complete(root, spec)
    finally:
        (tmp_path / "moved.mp4").rename(root / "clips" / "clip_00001.mp4")
    assert not syn._is_complete(root, SyntheticSpec(**SMALL, noise=0.5))


def test_a_killed_generation_resumes_with_the_clips_it_made(small, tmp_path):
    """Killed after some clips (its marker written, no manifest): the next call makes only the missing
    clips, and the result equals an uninterrupted generation.  The control: a folder whose marker names
    another spec has every clip made again."""
    import shutil

    spec, root_a, manifest_a = small
    root = tmp_path / "killed"
    shutil.copytree(root_a, root)
    (root / "manifest.csv").unlink()
    (root / "spec.json").unlink()
    (root / "clips" / "clip_00002.mp4").unlink()  # not made before the kill
    (root / syn.GENERATING_MARKER).write_text('{"hash": "%s"}' % syn.spec_hash(spec))
    kept = {f.name: f.stat().st_mtime_ns for f in (root / "clips").glob("*.mp4")}
    assert generate(root, spec, workers=1).read_bytes() == manifest_a.read_bytes()
    assert {f.name: f.stat().st_mtime_ns for f in (root / "clips").glob("*.mp4") if f.name in kept} == kept
    assert (root / "clips" / "clip_00002.mp4").read_bytes() == (root_a / "clips" / "clip_00002.mp4").read_bytes()
    assert not (root / syn.GENERATING_MARKER).exists()

    (root / "manifest.csv").unlink()
    (root / syn.GENERATING_MARKER).write_text('{"hash": "another spec"}')
    generate(root, spec, workers=1)
    assert all(f.stat().st_mtime_ns != kept[f.name] for f in (root / "clips").glob("*.mp4") if f.name in kept)


def test_default_root_uses_avlib_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AVLIB_HOME", str(tmp_path))
    spec = SyntheticSpec()
    root = syn.default_root(spec)
    assert root.parent.parent == tmp_path and syn.spec_hash(spec)[:16] in root.name


def test_the_notebook_configs_default_to_the_default_embedded_dataset():
    # the default size is written in SyntheticSpec, PretrainConfig and DataConfig; they must agree
    from avlib.config import DataConfig, PretrainConfig
    from avlib.data.dataset import embedded_spec

    assert embedded_spec(PretrainConfig()) == SyntheticSpec()
    assert embedded_spec(DataConfig()) == SyntheticSpec()


def test_manifest_columns_balance_and_stratified_splits():
    spec = SyntheticSpec(num_classes=10, clips_per_class=10)
    rows = list(csv.DictReader(syn._manifest_text(spec).splitlines()))
    assert tuple(rows[0].keys()) == syn.MANIFEST_COLUMNS
    assert set(Counter(r["label"] for r in rows).values()) == {10}
    per_class = Counter((r["label"], r["split"]) for r in rows)
    for label in {r["label"] for r in rows}:
        assert [per_class[(label, s)] for s in ("train", "val", "test")] == [6, 1, 3]
    assert all(r["corrupted"] == "0" and r["audio_source"] == r["clip_id"] for r in rows)


def test_faulty_pairs(tmp_path):
    spec = SyntheticSpec(**SMALL, faulty_pair_rate=0.34)
    manifest = generate(tmp_path, spec, workers=1)
    rows = _rows(manifest)
    bad = [r for r in rows if r["corrupted"] == "1"]
    train = [r for r in rows if r["split"] == "train"]
    assert len(bad) == round(0.34 * len(train)) == 1  # a share of the TRAIN clips only
    by_id = {r["clip_id"]: r for r in rows}
    for r in bad:
        src = by_id[r["audio_source"]]
        assert src["label"] != r["label"] and src["corrupted"] == "0"
        assert r["split"] == src["split"] == "train"  # val/test clips neither corrupted nor lent
        mine, theirs = _decode(tmp_path, r, spec), _decode(tmp_path, src, spec)
        np.testing.assert_array_equal(mine.audio, theirs.audio)  # the other clip's audio track
        assert not np.array_equal(mine.frames, theirs.frames)
    for r in rows:
        if r["corrupted"] == "0":
            assert r["audio_source"] == r["clip_id"]


def _audio_onsets(audio, sr):
    """Onset times by spectral flux: summed positive change of log-magnitude between 8 ms frames
    (5 ms hop), peaks above a robust threshold; the 3 ms attacks stand out even in a note's tail."""
    n, hop = 128, sr // 200
    starts = np.arange(0, len(audio) - n, hop)
    frames = audio[starts[:, None] + np.arange(n)] * np.hanning(n)
    mag = np.abs(np.fft.rfft(frames, axis=1))  # (F, bins)
    logmag = np.log1p(100 * mag / mag.max())  # compressed, but quiet noise bins stay near 0
    flux = np.maximum(logmag[1:] - logmag[:-1], 0).sum(1)  # (F-1,) frame j+1 vs j
    mad = np.median(np.abs(flux - np.median(flux)))
    thresh = max(np.median(flux) + 4 * mad, 0.25 * flux.max())
    peaks = [j for j in range(1, len(flux) - 1)
             if flux[j] > thresh and flux[j] >= flux[j - 1] and flux[j] > flux[j + 1]]
    keep = [p for k, p in enumerate(peaks) if k == 0 or p - peaks[k - 1] > 6]  # 30 ms apart
    return (np.array(keep) + 1) * hop / sr + n / 2 / sr  # centre of the frame that rose


def test_audio_onsets_sync_with_visual_events(tmp_path):
    """Pulse class: the object's area peaks at the frames nearest the sound onsets."""
    spec = SyntheticSpec(num_classes=4, clips_per_class=1, duration_s=3.0, frame_size=64,
                         fps=16, noise=0.0)
    manifest = generate(tmp_path, spec, workers=1)
    row = _rows(manifest)[3]
    assert row["label"].startswith("pulse_")
    clip = _decode(tmp_path, row, spec)
    plan = syn.plan_clip(spec, 3)
    events = plan.events[(plan.events > 0.05) & (plan.events < spec.duration_s - 0.05)]

    onsets = _audio_onsets(clip.audio, spec.sample_rate)
    # every ground-truth event is heard: a measured onset within 12 ms of it
    gap = np.abs(onsets[:, None] - events[None])  # (detected, events)
    assert gap.min(0).max() < 0.012
    onsets = onsets[gap.argmin(0)]  # the measured onsets of the events

    frames = clip.frames.astype(np.float32)
    border = np.concatenate([frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1]], 1)
    bg = np.median(border.reshape(-1, 3), axis=0)  # noise=0: the background is one flat colour
    area = (np.abs(frames - bg).max(-1) > 40).sum((1, 2))  # (T,) object pixels per frame
    floor = 1.1 * np.median(area)
    peaks = [k for k in range(1, len(area) - 1)
             if area[k] >= area[k - 1] and area[k] > area[k + 1] and area[k] > floor]
    peak_t = np.array(peaks) / spec.fps
    frame = 1 / spec.fps + 1e-6
    for t in onsets:  # every detected sound onset has a visual peak within one frame ...
        assert np.abs(peak_t - t).min() <= frame
    for t in peak_t:  # ... and every visual peak has a sound onset within one frame
        assert np.abs(onsets - t).min() <= frame
    assert len(peak_t) == len(events)


def test_raw_statistics_do_not_predict_class_but_attributes_do():
    """Design goal, cheaply: per-clip mean colour, loudness and dominant frequency stay near chance
    for a nearest-centroid classifier (rendered/synthesised in memory, no encoding)."""
    spec = SyntheticSpec(num_classes=10, clips_per_class=24, duration_s=1.0, fps=4,
                         frame_size=32)
    feats, labels = [], []
    for i in range(spec.num_clips):
        plan = syn.plan_clip(spec, i)
        frames = syn.render_video(spec, plan).astype(np.float32) / 255
        audio = syn.synthesize_audio(spec, plan)
        mag = np.abs(np.fft.rfft(audio))
        peak_hz = np.argmax(mag) * spec.sample_rate / len(audio)
        feats.append([*frames.mean((0, 1, 2)), frames.std(), 20 * np.log10(audio.std()),
                      np.log(peak_hz + 1.0)])
        labels.append(plan.class_index)
    X, y = np.array(feats), np.array(labels)
    X = (X - X.mean(0)) / X.std(0)
    train = np.arange(len(y)) % 2 == 0
    centroids = np.stack([X[train & (y == k)].mean(0) for k in range(10)])
    pred = np.argmin(((X[~train, None] - centroids[None]) ** 2).sum(-1), 1)
    acc = (pred == y[~train]).mean()
    assert acc < 0.25, f"raw statistics predict the class too well: {acc:.2f} (chance 0.10)"

    table = syn.describe_classes(spec)
    attrs = {(r["shape"], r["motion"], r["timbre"], r["rhythm"]): r["index"] for r in table}
    assert len(attrs) == 10  # the ground-truth attributes determine the class


def test_two_processes_generating_the_same_dataset_both_get_it_whole(tmp_path):
    """Parallel study runs (or torchrun ranks) may ask for one dataset at once: one generates, the
    other waits on the lock and finds it complete (without the lock, one of them lost its clips
    to the other's clean-up of temporary files)."""
    import subprocess
    import sys

    script = ("import sys; from avlib.data.synthetic import SyntheticSpec, generate; "
              f"print(generate(sys.argv[1], SyntheticSpec(**{SMALL!r}), workers=1))")
    root = tmp_path / "shared"
    processes = [subprocess.Popen([sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    spec = SyntheticSpec(**SMALL)
    assert syn._is_complete(root, spec)
    with open(root / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == spec.num_clips
    assert not list((root / "clips").glob(".tmp-*"))
