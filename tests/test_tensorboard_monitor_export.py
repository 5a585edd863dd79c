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
from google.protobuf import text_format
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

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
    assert {"1_loss/loss", "4_train/lr", "7_time/step_s", "5_dictionary/video/entropy", "5_dictionary/audio/erank",
            "3_knn_monitor/knn_video", "3_knn_monitor/knn_audio", "2_probe/video_linear", "2_probe/audio_knn"} <= tags
    losses = events.Scalars("1_loss/loss")
    assert [e.step for e in losses] == [r["step"] for r in rows]  # every step once
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    # a probe's chart: the random-init encoders at step 0, the trained ones at the last step
    probe = events.Scalars("2_probe/video_linear")
    assert [e.step for e in probe] == [0, len(rows)]
    assert probe[0].value == pytest.approx(summary["probe_random_init"]["video"]["linear"])
    assert probe[-1].value == pytest.approx(summary["probe"]["video"]["linear"])
    assert "batch_digest" not in " ".join(tags)  # a hash, not a quantity
    metadata_files = sorted((run_dir / "tensorboard").glob("*/dictionary_video/metadata.tsv"))
    header, *lines = metadata_files[-1].read_text().splitlines()
    assert header.split("\t") == ["class", "clip", "age"] and len(lines) == 8  # dictionary_size keys
    assert all(int(line.split("\t")[2]) >= 0 for line in lines)


def test_the_scalar_groups_sort_loss_probes_and_monitor_first(run):
    """TensorBoard 2.21 (uv.lock) sorts tags with its natural sort, digits and '/' before letters, and
    groups them by the part before the first '/': the numbered groups come in their numbers' order."""
    run_dir, _ = run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 1})
    events.Reload()
    groups = []
    for tag in sorted(events.Tags()["scalars"], key=_tensorboard_tag_order):
        if tag.split("/", 1)[0] not in groups:
            groups.append(tag.split("/", 1)[0])
    assert groups == ["1_loss", "2_probe", "3_knn_monitor", "4_train", "5_dictionary", "6_selection", "7_time"]
    # the control: the groups' plain names would put the dictionaries first and the loss after them
    plain = sorted({g.split("_", 1)[1] for g in groups}, key=_tensorboard_tag_order)
    assert plain.index("dictionary") < plain.index("loss")


def _tensorboard_tag_order(tag: str) -> list:
    """The sort key of TensorBoard 2.21's tag comparison (its frontend's compareTagNames, read from
    tensorboard/webfiles.zip): digit runs compare as numbers, digits and '/' before other characters."""
    key = []
    for part in re.findall(r"\d+|.", tag):
        key.append((0, int(part), "") if part.isdigit() else (0, -1, "") if part == "/" else (1, 0, part))
    return key


def test_hyperparameters_are_an_hparams_session_and_no_scalar_charts(run):
    run_dir, summary = run
    folder = run_dir / "tensorboard"
    assert not (folder / "hparams").exists()  # no sub-run of one-dot charts
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("hparam")]
    assert all(len(events.Scalars(tag)) >= 2 for tag in events.Tags()["scalars"])  # no chart of a single dot
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    plugin_data = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    experiment = hparams_metadata.parse_experiment_plugin_data(plugin_data[hparams_metadata.EXPERIMENT_TAG])
    session = hparams_metadata.parse_session_start_info_plugin_data(
        plugin_data[hparams_metadata.SESSION_START_INFO_TAG])
    assert session.hparams["sampler"].string_value == "active"
    assert session.hparams["dictionary_size"].number_value == 8
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {"2_probe/video_linear", "3_knn_monitor/knn_audio"} <= metric_tags
    assert metric_tags <= set(events.Tags()["scalars"])  # each metric is a chart the run already has


def test_counts_are_logged_where_they_change(tmp_path):
    """A count holding one value for most of a run gets a y-axis a millionth wide in TensorBoard
    (smoothing plus outlier clipping): counts are written as their step function, not once a step."""
    from avlib.train.tensorboard import TensorBoardLog

    sizes = [0, 4, 8] + [8] * 27  # a dictionary filling up, then full
    classes = [3] * 12 + [2] + [3] * 17  # one class missing at step 12
    log = TensorBoardLog(tmp_path)
    for step, (size, count) in enumerate(zip(sizes, classes)):
        log.scalars({"step": step, "loss": 1.0 / (step + 1), "video_dict_size": size, "video_dict_classes": count,
                     "batch_digest": 12345})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert logged["5_dictionary/video/size"] == [(0, 0), (1, 4), (2, 8), (29, 8)]
    assert logged["5_dictionary/video/classes"] == [(0, 3), (11, 3), (12, 2), (13, 3), (29, 3)]
    assert len(logged["1_loss/loss"]) == 30  # the control: a measured value is written every step
    assert set(logged) == {"1_loss/loss", "5_dictionary/video/size", "5_dictionary/video/classes"}  # no hash


def test_the_projector_opens_on_the_last_snapshot_coloured_by_class(run):
    """The projector (2.21) opens on the first tensor after sorting by point count (largest first) then
    name, and with "No color map": the newest snapshot is named to sort first, its keys are squares
    in their class's colour (the config's sprite), and the metadata's first column is the class."""
    run_dir, _ = run
    folder = run_dir / "tensorboard"
    config = ProjectorConfig()
    text_format.Parse((folder / "projector_config.pbtxt").read_text(), config)
    snapshot_steps = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(snapshot_steps) >= 3 and snapshot_steps[-1] == len(read_metrics(run_dir)) - 1
    # the projector's own order: point count, largest first, then the name
    shown_first = sorted(config.embeddings, key=lambda e: (-e.tensor_shape[0], e.tensor_name))[0]
    assert shown_first.tensor_name == f"dictionary_audio:latest_step_{snapshot_steps[-1]:07d}"
    assert f"{snapshot_steps[0]:07d}" in " ".join(e.tensor_name for e in config.embeddings)  # the history stays
    assert len(config.embeddings) == 2 * len(snapshot_steps)
    for embedding in config.embeddings:
        step = int(embedding.tensor_name.rsplit("_", 1)[1])
        assert embedding.tensor_path.startswith(f"{step:07d}/")  # the step in the name is the snapshot's
        assert (folder / embedding.metadata_path).read_text().split("\t", 1)[0] == "class"
    # the sprite: each key's square has its class's colour, the same colour for the same class
    metadata = (folder / shown_first.metadata_path).read_text().splitlines()[1:]
    classes = [line.split("\t")[0] for line in metadata]
    sprite = np.asarray(Image.open(folder / shown_first.sprite.image_path).convert("RGB"))
    side = shown_first.sprite.single_image_dim[0]
    grid = sprite.shape[1] // side
    centres = [tuple(sprite[(i // grid) * side + side // 2, (i % grid) * side + side // 2]) for i in range(len(classes))]
    colour_of = {}
    for name, colour in zip(classes, centres):
        assert colour_of.setdefault(name, colour) == colour
    assert len(set(colour_of.values())) == len(colour_of) >= 2  # distinct classes, distinct colours


def test_a_resumed_run_writes_no_step_twice(run, tmp_path):
    cfg = tiny_config(tmp_path / "run", **{**MONITORED, "checkpoint_every": 5})
    pretrain(cfg)
    (tmp_path / "run" / "checkpoints" / "last.pt").unlink()  # as if killed after the last step: resume at
    pretrain(cfg)                                            # the checkpoint before it, rewriting 2 steps
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("1_loss/loss")]
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
