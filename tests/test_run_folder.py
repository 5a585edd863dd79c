"""A run folder protects itself: one run at a time, nothing in it from another run, every skipped clip
visible, clear errors for unreadable inputs and checkpoints, no temporary files left behind."""

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from avlib.config import ConfigError
from avlib.data import ManifestError, SyntheticSpec, generate
from avlib.data.manifest import load_manifest
from avlib.train import pretrain, read_metrics
from avlib.train import run_folder
from avlib.study.kept import write_if_changed
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source_manifest(tmp_path_factory) -> Path:
    spec = SyntheticSpec(num_classes=3, clips_per_class=8, duration_s=2.0, fps=8, frame_size=32, sample_rate=8000)
    return generate(tmp_path_factory.mktemp("source"), spec, workers=1)


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_manifest(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_short_audio(path: Path, video_s=2.0, audio_s=1.0, fps=8, size=32, rate=8000) -> None:
    """An MP4 whose audio track ends before its video (valid media; decoding cannot fill the window)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(int(video_s * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 8 * i, np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = np.zeros((1, int(audio_s * rate)), np.float32)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())


# ----------------------------------------------------------------------------- one run at a time


def test_a_second_run_on_a_folder_in_use_exits_at_once_and_the_first_finishes(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=20, probe=False)
    config_path = tmp_path / "cfg.json"
    cfg.save(config_path)
    first = subprocess.Popen([sys.executable, "-m", "avlib.train", "--config", str(config_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (Path(cfg.run_dir) / "metrics.csv").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()[-2000:]
        time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=rf"run_dir='{cfg.run_dir}' is in use by another run \(PID {first.pid} on "):
        pretrain(cfg)
    assert time.monotonic() - started < 5
    assert first.wait(timeout=300) == 0, first.stdout.read()[-2000:]
    summary = json.loads((Path(cfg.run_dir) / "summary.json").read_text())
    assert summary["steps"] == len(read_metrics(cfg.run_dir)) == 20 * 3  # 3 steps an epoch
    assert pretrain(cfg)["steps"] == 60  # the lock went with the first run: the folder is usable again


def test_the_lock_of_a_dead_run_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("PID 999999 on elsewhere, started long ago")  # left by a killed run
    with run_folder.RunFolderLock(run_dir):
        assert f"PID {os.getpid()}" in (run_dir / ".lock").read_text()


# ----------------------------------------------------------------------------- nothing from another run


def test_a_folder_of_a_run_killed_before_its_first_checkpoint_refuses_other_parameters(tmp_path):
    cfg = tiny_config(tmp_path / "run", max_steps=2, checkpoint_every=1000)
    pretrain(cfg)
    shutil.rmtree(tmp_path / "run" / "checkpoints")  # as if killed before its first checkpoint
    with pytest.raises(ConfigError, match=r"holds a run with other parameters \(seed: 0 -> 1\)"):
        pretrain(cfg.replace(seed=1))
    assert pretrain(cfg)["steps"] == 2  # the same parameters start it again


def test_random_init_probes_belong_to_the_parameters_they_were_computed_with(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    run_folder.write_random_init_probes(tmp_path / "run", cfg, {"video": {"linear": 0.5}})
    assert run_folder.read_random_init_probes(tmp_path / "run", cfg) == {"video": {"linear": 0.5}}
    assert run_folder.read_random_init_probes(tmp_path / "run", cfg.replace(seed=1)) is None
    assert run_folder.read_random_init_probes(tmp_path / "run", cfg.replace(progress=True)) is not None


# ----------------------------------------------------------------------------- every skip visible


@pytest.fixture(scope="module")
def short_audio_dataset(source_manifest, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("short_audio")
    shutil.copytree(source_manifest.parent / "clips", root / "clips")
    rows = _rows(source_manifest)
    _write_short_audio(root / "clips" / "short_audio.mp4")
    rows.append({**rows[0], "path": "clips/short_audio.mp4", "clip_id": "short_audio", "split": "train"})
    return _write_manifest(root / "manifest.csv", rows)


def test_a_clip_whose_audio_ends_early_is_skipped_visibly_on_every_run(short_audio_dataset, tmp_path, capsys):
    for attempt in ("first", "again"):  # the second run reuses the cache
        summary = pretrain(tiny_config(tmp_path / attempt, dataset=str(short_audio_dataset), max_steps=1,
                                       probe=False))
        out = capsys.readouterr().out
        assert "dataset: 25 manifest rows, 24 clips used, 1 skipped (1x too short)" in out, out
        assert summary["num_clips"] == 24
        with open(tmp_path / attempt / "skipped_clips.csv", newline="") as handle:
            skipped = list(csv.DictReader(handle))
        assert [(row["row"], Path(row["path"]).name) for row in skipped] == [("25", "short_audio.mp4")]
        assert "audio track lasts 1." in skipped[0]["reason"]


def test_a_misspelt_label_is_warned_about_with_its_nearest_label(source_manifest, tmp_path):
    rows = _rows(source_manifest)
    train_row = next(i for i, row in enumerate(rows) if row["split"] == "train")
    real = rows[train_row]["label"]
    rows[train_row]["label"] = real[:-1] + real[-1].upper() + "x"  # one clip in a class of its own
    for row in rows:
        row["path"] = str(source_manifest.parent / row["path"])
    manifest = _write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.warns(UserWarning, match=rf"class '{rows[train_row]['label']}' has 1 training clip\(s\), fewer than "
                                         rf"min_clips_per_class=2; the nearest other label is '{real}'"):
        pretrain(tiny_config(tmp_path / "run", dataset=str(manifest), max_steps=1, probe=False))


# ----------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_manifest_that_is_not_utf8_names_the_file_and_the_encoding_to_use(source_manifest, tmp_path, encoding):
    rows = _rows(source_manifest)
    rows[0]["label"] = "café"  # not ASCII, so Latin-1 differs from UTF-8
    manifest = _write_manifest(tmp_path / "manifest.csv", rows, encoding=encoding)
    with pytest.raises(ManifestError, match=rf"{manifest}: not UTF-8 text.*save the manifest as UTF-8"):
        load_manifest(manifest)


def test_an_unreadable_checkpoint_falls_back_to_the_previous_one_and_then_names_the_paths(tmp_path, capfd):
    cfg = tiny_config(tmp_path / "run", epochs=3, checkpoint_every=4, probe=False)
    reference = pretrain(tiny_config(tmp_path / "reference", epochs=3, checkpoint_every=4, probe=False))
    pretrain(cfg)  # 9 steps: checkpoints at steps 4, 8 and 9, the last two kept (previous.pt, last.pt)
    last = run_folder.checkpoint_path(cfg.run_dir)
    last.write_bytes(last.read_bytes()[:1000])  # a torn copy
    resumed = pretrain(cfg)
    err = capfd.readouterr().err
    assert f"{last}: unreadable" in err and "resuming from" in err and "(step 8) instead" in err, err
    assert resumed["final_loss"] == reference["final_loss"]  # step 8 trained again, exactly
    for name in ("last.pt", "previous.pt"):
        run_folder.checkpoint_path(cfg.run_dir, name).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no readable checkpoint .*last\.pt: unreadable.*previous\.pt: unreadable"):
        pretrain(cfg)


def test_a_failed_write_leaves_no_temporary_file_and_the_old_checkpoint(tmp_path, monkeypatch):
    run_folder.save_checkpoint_file({"step": 1}, tmp_path)

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_folder.save_checkpoint_file({"step": 2}, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]
    monkeypatch.undo()
    assert torch.load(run_folder.checkpoint_path(tmp_path), weights_only=False)["step"] == 1


WRITERS = {
    "random_init_cache": lambda path, text: run_folder.write_json_atomic({"writer": text}, path),
    "study_report": lambda path, text: write_if_changed(path, (json.dumps({"writer": text}) + "\n").encode()),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_two_writers_of_one_path_at_once_both_succeed_and_leave_one_whole_file(tmp_path, monkeypatch, writer):
    """Two processes write one path at once: the study's two jobs of one seed fill the shared random-init
    cache (CI failed on it), two study commands regenerate REPORT.md.  Here the second write runs whole
    just before the first one's rename, the interleaving that failed with a shared ``path.tmp``."""
    path, write = tmp_path / "cache" / "baseline.json", WRITERS[writer]
    real_replace, interleaved = os.replace, []

    def replace_after_the_other_writer(src, dst):
        if not interleaved:
            interleaved.append(src)
            write(path, "second")  # the other process, meanwhile
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_the_other_writer)
    write(path, "first")
    assert interleaved
    assert json.loads(path.read_text()) == {"writer": "first"}  # the last rename wins, whole
    assert [p.name for p in path.parent.iterdir()] == ["baseline.json"]
