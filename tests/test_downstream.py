"""Downstream protocols end to end on tiny stand-in trees laid out like UCF101, HMDB51 and ESC-50."""
import json

import numpy as np
import pytest
import torch

from avlib.config import ConfigError, DownstreamConfig, PretrainConfig
from avlib.data.adapters.standin import make_standin
from avlib.eval.downstream import (PRETRAINED, RANDOM_INIT, evaluate, load_encoders, protocols_for, video_level,
                                   write_results)
from avlib.models.encoders import AVModel

# a 1 s clip holds the 0.5 s windows of this (untrained) run
RUN = dict(sampler="random", clip_seconds=1.0, fps=8, frame_size=32, crop_size=24, sample_rate=8000, n_mels=32,
           window_s=0.5, audio_window_s=0.5, num_classes=3, clips_per_class=5, batch_size=4)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    cfg = PretrainConfig(run_dir=str(folder), **RUN)
    torch.manual_seed(123)  # not the run's seed: the "pretrained" weights differ from random init
    model = AVModel(cfg.video_encoder, cfg.audio_encoder, cfg.embedding_dim)
    (folder / "checkpoints").mkdir()
    torch.save({"config": cfg.to_dict(), "model": model.state_dict()}, folder / "checkpoints" / "last.pt")
    return folder


def _settings(run_dir, tmp_path, dataset, **overrides):
    root = metadata = None
    if dataset != "run":
        root, metadata = make_standin(dataset, tmp_path / dataset, clips_per_class=5 if dataset == "esc50" else 3)
    return DownstreamConfig(**{**dict(run_dir=str(run_dir), dataset=dataset, dataset_root=root and str(root),
                                      metadata=metadata and str(metadata), epochs=1, batch_size=4, clips_per_video=2,
                                      eval_windows=2, progress=False, reports_dir=str(tmp_path / "reports")),
                               **overrides})


def _check_written(results, settings, protocols, modalities, evaluations):
    paths = write_results(results)
    table = {(r["protocol"], r["modality"], r["encoder"]): r for r in results.table()}
    encoders = (PRETRAINED, RANDOM_INIT) if settings.baseline else (PRETRAINED,)
    assert set(table) == {(p, m, e) for p in protocols for m in modalities for e in encoders}
    for row in table.values():
        assert row["splits"] == evaluations and 0.0 <= row["clip_mean"] <= 1.0 and 0.0 <= row["video_mean"] <= 1.0
    saved = json.loads(paths["json"].read_text())
    assert len(saved["per_split"]) == len(table) * evaluations
    assert paths["report"].read_text() == paths["markdown"].read_text()
    for protocol in protocols:
        for modality in modalities:
            assert paths[f"confusion_{protocol}_{modality}"].stat().st_size > 0
    return table


def test_ucf101_all_protocols_over_three_splits(run_dir, tmp_path):
    settings = _settings(run_dir, tmp_path, "ucf101", protocol="all", baseline=False)
    results = evaluate(settings)
    table = _check_written(results, settings, ("finetune", "linear", "knn"), ("video",), 3)
    # 3 classes x 3 videos, one test video per class and split, 2 clips per video
    outcome = next(o for o in results.outcomes if o.protocol == "linear")
    assert len(outcome.video_labels) == 3 and sorted(outcome.video_labels) == [0, 1, 2]
    assert "± " in results.markdown() and table[("knn", "video", PRETRAINED)]["splits"] == 3


def test_hmdb51_one_split_finetune_against_random_init(run_dir, tmp_path):
    settings = _settings(run_dir, tmp_path, "hmdb51", protocol="finetune", split=2)
    results = evaluate(settings)
    _check_written(results, settings, ("finetune",), ("video",), 1)
    assert {o.evaluation for o in results.outcomes} == {"split 2"}


def test_esc50_standard_protocol_is_five_fold_cv_on_audio(run_dir, tmp_path):
    settings = _settings(run_dir, tmp_path, "esc50")
    assert protocols_for(settings) == ("linear", "knn")
    results = evaluate(settings)
    _check_written(results, settings, ("linear", "knn"), ("audio",), 5)
    # every clip is tested exactly once over the five folds
    labels, _ = results.confusion("linear", "audio")
    assert len(labels) == 15 and np.bincount(labels).tolist() == [5, 5, 5]


def test_video_level_accuracy_averages_clip_scores():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])  # (4 clips, 2 classes)
    labels = np.array([0, 0, 1, 1])
    accuracy, video_labels, predictions = video_level(scores, labels, np.array(["a", "a", "b", "b"]))
    # clip level: 2 of 4 right; video a: mean (0.55, 0.45) -> 0 right; video b: (0.45, 0.55) -> 1 right
    assert accuracy == 1.0 and video_labels.tolist() == [0, 1] and predictions.tolist() == [0, 1]


def test_bad_parameters_name_what_is_wrong(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="dataset='ucf101' needs dataset_root"):
        DownstreamConfig(dataset="ucf101")
    with pytest.raises(ConfigError, match=r"protocol='svm' is not valid; valid choices: \[.*'linear'"):
        protocols_for(DownstreamConfig(protocol="svm"))  # names are checked where resolved, before any work
    with pytest.raises(ConfigError, match=r"dataset='kinetics' is not valid; valid choices: \[.*'ucf101'"):
        protocols_for(DownstreamConfig(dataset="kinetics", dataset_root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="checkpoint='best'.*available.*last.pt"):
        load_encoders(run_dir, "best")
    cfg, model = load_encoders(run_dir, str(run_dir / "checkpoints" / "last.pt"))  # a path works too
    assert cfg.clip_seconds == 1.0 and not model.training
    with pytest.raises(ValueError, match="split=4 selects none"):
        evaluate(_settings(run_dir, tmp_path, "hmdb51", split=4))
