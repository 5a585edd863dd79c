"""What a researcher expects beside the notebooks: TensorBoard logs (read back with TensorBoard's own
reader), the online kNN monitor (and that it changes nothing), and encoders to take away (the
README's example runs here)."""

import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import avlib
from avlib.eval.probe import knn_leave_one_out
from avlib.models.checkpoint import load_encoders
from avlib.train import pretrain, read_metrics
from tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
MONITORED = dict(clips_per_class=12, monitor_every=3, snapshot_every=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "monitored"
    return run_dir, pretrain(tiny_config(run_dir, **MONITORED))


def test_tensorboard_holds_every_metric_the_probes_the_hparams_and_the_dictionaries(run):
    run_dir, summary = run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    rows = read_metrics(run_dir)
    assert {"loss/loss", "train/lr", "time/step_s", "dictionary/video/entropy", "dictionary/audio/erank",
            "monitor/knn_video", "monitor/knn_audio", "probe/video_linear", "probe_random_init/audio_knn"} <= tags
    losses = events.Scalars("loss/loss")
    assert [e.step for e in losses] == [r["step"] for r in rows]  # every step once
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert events.Scalars("probe/video_linear")[-1].value == pytest.approx(summary["probe"]["video"]["linear"])
    hparams = EventAccumulator(str(run_dir / "tensorboard" / "hparams"))
    hparams.Reload()
    assert "hparam/probe_video_linear" in hparams.Tags()["scalars"]
    projector = (run_dir / "tensorboard" / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "dictionary_video:' in projector and 'tensor_name: "dictionary_audio:' in projector
    metadata_files = sorted((run_dir / "tensorboard").glob("*/dictionary_video/metadata.tsv"))
    header, *lines = metadata_files[-1].read_text().splitlines()
    assert header.split("\t") == ["class", "clip", "age"] and len(lines) == 8  # dictionary_size keys
    assert all(int(line.split("\t")[2]) >= 0 for line in lines)


def test_a_resumed_run_writes_no_step_twice(run, tmp_path):
    cfg = tiny_config(tmp_path / "run", **{**MONITORED, "checkpoint_every": 5})
    pretrain(cfg)
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()  # as if killed after the last step: resume at
    pretrain(cfg)                                            # the checkpoint before it, rewriting 2 steps
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/loss")]
    assert steps == sorted(set(steps)) == list(range(len(read_metrics(tmp_path / "run"))))


def test_a_resumed_runs_event_file_is_read_after_the_files_it_purges(tmp_path):
    """Event files are read in name order; one made in the same second as an older one would sort by
    host, pid and counter as text, so the new writer waits for the next second."""
    from avlib.train.tensorboard import FOLDER, TensorBoardLog

    folder = tmp_path / FOLDER
    folder.mkdir()
    older = folder / f"events.out.tfevents.{int(time.time()):010d}.~host.99999.9"  # "~" sorts after any host
    older.write_bytes(b"")
    log = TensorBoardLog(tmp_path, start_step=5)
    log.writer.close()
    assert sorted(p.name for p in folder.glob("events.out.tfevents.*"))[-1] != older.name


def test_the_monitor_reports_every_interval_and_changes_nothing(run, tmp_path):
    run_dir, summary = run
    rows = read_metrics(run_dir)
    monitored = [r["step"] for r in rows if not math.isnan(r["knn_video"])]
    assert monitored == [s for s in range(len(rows)) if (s + 1) % 3 == 0 or s == len(rows) - 1]
    assert all(0.0 <= r["knn_video"] <= 1.0 and 0.0 <= r["knn_audio"] <= 1.0 for r in rows if r["step"] in monitored)
    assert summary["monitor"]["calls"] == len(monitored) and summary["monitor"]["share_of_training"] > 0
    unmonitored = pretrain(tiny_config(tmp_path / "off", **{**MONITORED, "monitor_every": 0}))
    off_rows = read_metrics(tmp_path / "off")
    assert "knn_video" not in off_rows[0] and "monitor" not in unmonitored
    assert [r["loss"] for r in off_rows] == [r["loss"] for r in rows]  # bit for bit
    assert unmonitored["probe"] == summary["probe"]


def test_leave_one_out_knn_separates_clusters_and_ignores_oneself():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    labels = np.repeat(np.arange(3), 6)
    features = centres[labels] + rng.normal(size=(18, 16))
    assert knn_leave_one_out(features, labels) == 1.0
    assert knn_leave_one_out(rng.normal(size=(18, 16)), labels) < 0.7
    # each clip alone in its class: only its own vote could make it right, and it never votes
    assert knn_leave_one_out(np.eye(4), np.arange(4), k=1) == 0.0


def test_exported_encoders_are_the_runs_backbones(run):
    run_dir, _ = run
    video_encoder, audio_encoder = avlib.load_pretrained(run_dir)
    assert not video_encoder.training and isinstance(audio_encoder, torch.nn.Module)
    _, model = load_encoders(run_dir, "last")
    video = torch.randn(2, 3, video_encoder.settings["fps"], 24, 24)
    audio = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        assert torch.equal(video_encoder(video), model.video_backbone(video))
        assert torch.equal(audio_encoder(audio), model.audio_backbone(audio))


def test_the_readme_example_embeds_one_mp4(run):
    run_dir, _ = run
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(import avlib\n.*?)```", readme, re.S).group(1)
    clip = sorted(Path(os.environ["AVLIB_HOME"]).glob("synthetic/*/clips/*.mp4"))[0]  # the run's own media
    code = example.replace('"runs/active"', repr(str(run_dir))).replace('"my_clip.mp4"', repr(str(clip)))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    video, audio = namespace["video"], namespace["audio"]
    assert video.shape == (namespace["video_encoder"].out_dim,) and audio.shape == (namespace["audio_encoder"].out_dim,)
    assert torch.isfinite(video).all() and torch.isfinite(audio).all()
