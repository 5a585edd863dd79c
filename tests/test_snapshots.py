"""Dictionary snapshots: the on-disk format, and what a training run records in it and in metrics.csv."""

import csv
import math

import numpy as np
import pytest
import torch

from avlib.analysis.runs import open_run_dataset, read_config
from avlib.dictionary.diversity import dictionary_metrics
from avlib.dictionary.snapshots import read_snapshot, resolve_step, snapshot_path, snapshot_steps, write_snapshot
from avlib.losses.infonce import same_clip_mask
from avlib.train import pretrain
from tiny import tiny_config


def test_format_round_trip_keeps_dtypes_and_candidates(tmp_path):
    keys = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    dictionaries = {m: {"keys": keys, "clip_index": torch.arange(5), "step_added": torch.tensor([0, 0, 1, 1, 2]),
                        "queries": keys[:2], "batch_keys": keys[2:4]} for m in ("video", "audio")}
    selection = {"video": {"keys": keys[:3], "clip_index": torch.tensor([7, 8, 9]), "step_added": torch.tensor([2, 2, 3]),
                           "chosen": torch.tensor([True, False, True])}}
    path = write_snapshot(tmp_path, 12, torch.tensor([4, 5]), dictionaries, selection)
    assert path == snapshot_path(tmp_path, 12) and path.name == "step_000012.npz"
    write_snapshot(tmp_path, 3, torch.tensor([4, 5]), dictionaries)
    assert snapshot_steps(tmp_path) == [3, 12] and resolve_step(tmp_path, -1) == 12

    snapshot = read_snapshot(tmp_path)  # the last one
    assert snapshot.step == 12 and snapshot.batch_clip_index.tolist() == [4, 5]
    video = snapshot["video"]
    assert video.keys.dtype == np.float16 and video.clip_index.dtype == np.int64
    assert np.allclose(video.keys, keys.numpy(), atol=1e-3)
    assert video.step_added.tolist() == [0, 0, 1, 1, 2]
    assert video.candidate_chosen.tolist() == [True, False, True] and video.candidate_clip_index.tolist() == [7, 8, 9]
    assert snapshot["audio"].candidate_keys is None  # no selection recorded for audio
    assert read_snapshot(tmp_path, 3)["video"].candidate_keys is None

    with pytest.raises(FileNotFoundError, match=r"available steps: \[3, 12\]"):
        read_snapshot(tmp_path, 5)
    with pytest.raises(FileNotFoundError, match="no dictionary snapshots"):
        read_snapshot(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def active_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("snapshots") / "active"
    pretrain(tiny_config(run_dir, sampler="active", epochs=3, snapshot_every=3, probe=False))
    return run_dir


def _metric_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_row_has_the_diversity_columns_nan_while_the_dictionary_is_empty(active_run):
    rows = _metric_rows(active_run)
    columns = [f"{m}_dict_{name}" for m in ("video", "audio")
               for name in ("size", "entropy", "classes", "biased", "cosine", "erank", "ineffective")]
    assert all(set(columns) <= set(row) for row in rows)
    assert float(rows[0]["video_dict_size"]) == 0 and math.isnan(float(rows[0]["video_dict_entropy"]))
    assert float(rows[-1]["video_dict_size"]) > 0 and not math.isnan(float(rows[-1]["video_dict_entropy"]))


def test_snapshots_follow_snapshot_every_and_the_last_step(active_run):
    steps = int(_metric_rows(active_run)[-1]["step"]) + 1
    assert snapshot_steps(active_run) == sorted({*range(3, steps, 3), steps - 1})


def test_logged_metrics_are_those_of_the_snapshot_dictionary(active_run):
    """Recompute a snapshot step's metrics from the snapshot alone: the log and the snapshot agree."""
    cfg = read_config(active_run)
    labels = torch.as_tensor(open_run_dataset(active_run).labels)
    step = snapshot_steps(active_run)[-1]
    snapshot = read_snapshot(active_run, step)
    row = next(r for r in _metric_rows(active_run) if int(r["step"]) == step)
    batch = torch.as_tensor(snapshot.batch_clip_index)
    for dictionary, queries in (("video", "audio"), ("audio", "video")):
        keys = torch.as_tensor(snapshot[dictionary].keys.astype(np.float32))
        clips = torch.as_tensor(snapshot[dictionary].clip_index)
        metrics = dictionary_metrics(keys, labels[clips], torch.as_tensor(snapshot[queries].queries.astype(np.float32)),
                                     torch.as_tensor(snapshot[dictionary].batch_keys.astype(np.float32)), labels[batch],
                                     cfg.temperature, same_clip_mask(batch, clips))
        for name in ("size", "entropy", "classes", "biased"):  # exact: they depend on clips only
            assert float(row[f"{dictionary}_dict_{name}"]) == pytest.approx(metrics[name]), name
        for name in ("cosine", "erank"):  # float16 keys in the snapshot
            assert float(row[f"{dictionary}_dict_{name}"]) == pytest.approx(metrics[name], abs=5e-3), name


def test_active_snapshot_records_the_choice_that_entered_the_dictionary(active_run):
    """At the last step, the dictionary after the update (the checkpoint) = the snapshot's dictionary plus
    exactly the candidates marked chosen."""
    step = snapshot_steps(active_run)[-1]
    snapshot = read_snapshot(active_run, step)
    queues = torch.load(active_run / "checkpoints" / "last.pt", weights_only=False)["sampler"]
    for modality in ("video", "audio"):
        side = snapshot[modality]
        assert side.candidate_keys is not None and side.candidate_chosen.dtype == bool
        assert (side.candidate_step_added <= step).all() and len(side.candidate_keys) == len(side.candidate_chosen)
        entered = queues[f"{modality}_queue.step_added"] == step
        chosen = side.candidate_chosen
        assert chosen.any() and not chosen.all()  # a real choice among the candidates
        assert sorted(queues[f"{modality}_queue.clip_index"][entered].tolist()) == sorted(side.candidate_clip_index[chosen].tolist())
        new_keys = queues[f"{modality}_queue.keys"][entered].numpy()
        assert np.allclose(np.sort(new_keys, axis=0), np.sort(side.candidate_keys[chosen].astype(np.float32), axis=0), atol=2e-3)
        # keys older than this step are the snapshot's own (those not overwritten)
        kept = (queues[f"{modality}_queue.step_added"] >= 0) & ~entered
        assert set(queues[f"{modality}_queue.clip_index"][kept].tolist()) <= set(side.clip_index.tolist())


def test_random_run_snapshots_have_no_candidates_and_snapshot_every_0_writes_none(tmp_path):
    pretrain(tiny_config(tmp_path / "random", sampler="random", max_steps=3, snapshot_every=2, probe=False))
    snapshot = read_snapshot(tmp_path / "random")
    assert snapshot_steps(tmp_path / "random") == [2]
    assert snapshot["video"].candidate_keys is None and len(snapshot["video"].keys) == 8  # 2 batches of 4 enqueued
    assert (snapshot["video"].step_added < 2).all()  # pre-update: the step's own keys are not in yet
    pretrain(tiny_config(tmp_path / "none", sampler="random", max_steps=3, snapshot_every=0, probe=False))
    assert snapshot_steps(tmp_path / "none") == []
