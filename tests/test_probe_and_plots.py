"""Probes on constructed features with known answers, and the figures the notebooks draw."""

import numpy as np

from avlib.analysis.plots import plot_clip, plot_confusion, plot_training_curves, probe_table
from avlib.eval.probe import (class_scores, knn_probe, linear_probe, low_shot_probe, per_class_recall, shot_draws,
                              tail_classes)


def blobs(n_per_class, classes, dim, spread, seed, centre_seed=0):
    centres = np.random.default_rng(centre_seed).normal(size=(classes, dim)) * 3
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_linear_and_knn_probes_separate_separable_classes_and_not_noise():
    x, y = blobs(30, 4, 8, 0.5, seed=0)
    xt, yt = blobs(10, 4, 8, 0.5, seed=1)  # held-out points around the same centres
    assert linear_probe(x, y, xt, yt).accuracy == 1.0
    assert knn_probe(x, y, xt, yt, k=5).accuracy == 1.0
    rng = np.random.default_rng(1)
    noise_train, noise_test = rng.normal(size=(120, 8)), rng.normal(size=(400, 8))
    labels_train, labels_test = rng.integers(0, 4, 120), rng.integers(0, 4, 400)
    assert linear_probe(noise_train, labels_train, noise_test, labels_test).accuracy < 0.4  # chance 0.25


def test_linear_probe_picks_regularisation_on_validation():
    x, y = blobs(20, 3, 5, 1.0, seed=2)
    result = linear_probe(x, y, x, y, val_x=x, val_y=y)
    assert result.details["C"] in (0.01, 0.1, 1.0, 10.0) and set(result.details["val"]) == {0.01, 0.1, 1.0, 10.0}


def test_the_low_shot_probe_reads_five_labels_a_class_the_same_for_every_run_and_keeps_headroom():
    y = np.repeat(np.arange(4), 30)
    draws = shot_draws(y)
    assert len(draws) == 3 and all(np.bincount(y[rows]).tolist() == [5] * 4 for rows in draws)
    assert all((a == b).all() for a, b in zip(draws, shot_draws(y)))  # seeded by the draw only: runs stay paired
    assert len({tuple(rows) for rows in draws}) == 3  # three different label sets
    small = np.repeat(np.arange(2), [3, 30])
    assert np.bincount(small[shot_draws(small)[0]]).tolist() == [3, 5]  # a class with fewer clips: all of them
    # separable classes: 5 labels are enough; overlapping ones: 5 labels fall short of all 30 (measured 0.920
    # against 0.958 here)
    x, _ = blobs(30, 4, 8, 0.5, seed=0)
    xt, yt = blobs(10, 4, 8, 0.5, seed=1)
    assert low_shot_probe(x, y, xt, yt) == 1.0
    x, _ = blobs(30, 4, 32, 4.0, seed=0)
    xt, yt = blobs(200, 4, 32, 4.0, seed=1)
    assert 0.5 < low_shot_probe(x, y, xt, yt) < linear_probe(x, y, xt, yt).accuracy - 0.02


def test_knn_with_fewer_training_points_than_k():
    x, y = blobs(1, 3, 4, 0.1, seed=3)
    assert knn_probe(x, y, x, y, k=10).details["k"] == 3


def test_figures_render():
    rows = [{"step": s, "loss": 5 - s / 10, "v2a_loss": 5.0, "a2v_loss": 5.0, "pos_sim": 0.1, "neg_sim": 0.0,
             "top1": 0.1} for s in range(30)]
    assert plot_training_curves(rows).axes
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    assert plot_clip(frames, np.zeros((8, 20))).axes
    assert plot_confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"]).axes


def test_probe_table_shows_the_gain_in_points():
    probe = {"video": {"linear": 0.9, "knn": 0.8}, "audio": {"linear": 0.7, "knn": 0.6}}
    base = {"video": {"linear": 0.5, "knn": 0.5}, "audio": {"linear": 0.5, "knn": 0.5}}
    table = probe_table(probe, base)
    assert "| video | linear | 0.900 | 0.500 | +40.0 |" in table


def test_balanced_accuracy_is_the_mean_recall_and_differs_from_accuracy_on_imbalanced_test_clips():
    # 8 clips of class 0 (all right), 2 of class 1 (one right), 2 of class 2 (none right)
    labels = np.array([0] * 8 + [1, 1] + [2, 2])
    predictions = np.array([0] * 8 + [1, 0] + [0, 1])
    assert (predictions == labels).mean() == 9 / 12  # accuracy
    assert per_class_recall(predictions, labels, 4)[:3].tolist() == [1.0, 0.5, 0.0]
    assert np.isnan(per_class_recall(predictions, labels, 4)[3])  # class 3 has no test clips
    scores = class_scores(predictions, labels, 4, tail=[2, 3])
    assert scores["balanced"] == 0.5  # (1 + 0.5 + 0) / 3: the class without clips does not count
    assert scores["tail"] == 0.0  # class 2's recall; class 3 has no clips
    assert class_scores(predictions, labels, 4, tail=[3])["tail"] is None


def test_the_tail_is_the_rarest_third_by_training_clips_with_ties_to_the_higher_index():
    # imbalanced: class 1 has 1 training clip, class 4 has 2, class 0 has 3, the rest 10
    train_labels = np.repeat(np.arange(6), [3, 1, 10, 10, 2, 10])
    assert tail_classes(train_labels, 6).tolist() == [1, 4]  # round(6 / 3) = 2 rarest classes
    # balanced: every count ties, so the tail is the last third of the class indices
    assert tail_classes(np.repeat(np.arange(10), 5), 10).tolist() == [7, 8, 9]
    assert tail_classes(np.repeat(np.arange(3), 5), 3).tolist() == [2]
    # a class with no training clip at all is the rarest
    assert tail_classes(np.array([0, 0, 2, 2]), 3).tolist() == [1]
