"""learning_signal: the loss against a uniform guess's and the positive's margin over the fresh negatives, the
warning's rule, the two runs that show it fires when nothing can be learned (audio shuffled across clips every
step) and not on the main job, and the recorded runs where the loss fell below chance by the keys' age alone."""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import avlib.train.loop as loop
from avlib.analysis.plots import plot_training_curves
from avlib.config import PretrainConfig
from avlib.data.dataset import collate
from avlib.train import pretrain, read_metrics
from avlib.train.learning_signal import (MARGIN_THRESHOLD, RATIO_THRESHOLD, LearningSignalMonitor, NoLearningSignal,
                                         first_warning, learning_signal_summary)

SCHEDULE_CHECKS = Path(__file__).resolve().parents[1] / "reports" / "study" / "dictionary_size_schedule"


def rows_with(ratios: list[float], uniform: float = 4.0, objective: str = "cross") -> list[dict]:
    """Metrics rows whose loss is ``ratio x uniform`` at each step (the columns ``objective`` is checked on)."""
    loss, level = {"cross": ("loss", "uniform_loss"), "joint": ("cross_loss", "uniform_loss"),
                   "intra": ("intra_loss", "intra_uniform_loss")}[objective]
    return [{"step": step, "loss": 9.0, "uniform_loss": uniform, loss: ratio * uniform, level: uniform}
            for step, ratio in enumerate(ratios)]


def test_the_rule_fires_at_the_first_epoch_end_after_30_percent_where_the_epoch_mean_is_above_095():
    # 10 epochs of 10 steps: the checks run after steps 29, 39, ..., 99 (30% = 30 steps done)
    assert first_warning(rows_with([1.0] * 100), 10, 100, "cross")["step"] == 29  # learned nothing
    assert first_warning(rows_with([0.9] * 100), 10, 100, "cross") is None  # clearly below
    assert first_warning(rows_with([0.94] * 100), 10, 100, "cross") is None  # just below the threshold
    assert first_warning(rows_with([0.96] * 100), 10, 100, "cross")["step"] == 29  # just above it
    assert first_warning(rows_with([1.2] * 20 + [0.8] * 80), 10, 100, "cross") is None  # learned before 30%
    late = first_warning(rows_with([0.8] * 60 + [0.97] * 40), 10, 100, "cross")  # the loss came back up
    assert late["step"] == 69 and late["ratio"] == pytest.approx(0.97)
    # the epoch's MEAN decides: 5 steps at 1.0 and 5 at 0.88 average 0.94
    assert first_warning(rows_with(([1.0] * 5 + [0.88] * 5) * 10), 10, 100, "cross") is None
    # a run shorter than an epoch is checked at its last step
    assert first_warning(rows_with([1.0] * 6), 10, 6, "cross")["step"] == 5
    message = first_warning(rows_with([1.0] * 100), 10, 100, "cross")["message"]
    assert "cross-modal loss" in message and "objective='joint'" in message and "more training clips" in message


def test_joint_checks_the_cross_modal_column_and_intra_its_own():
    joint = rows_with([1.0] * 100, objective="joint")  # "loss" (cross + intra) is 9: only cross_loss counts
    warning = first_warning(joint, 10, 100, "joint")
    assert warning["step"] == 29
    # a joint run already has the intra-modal signal: the hint does not tell it to switch to joint
    assert "objective='joint'" not in warning["message"] and "more epochs" in warning["message"]
    intra = rows_with([0.5] * 100, objective="intra")
    assert first_warning(intra, 10, 100, "intra") is None and first_warning(intra, 10, 100, "cross") is not None
    summary = learning_signal_summary(intra, 10, 100, "intra")
    assert summary["learning_signal"] == pytest.approx(0.5) and summary["learning_signal_check"]["warned"] is False
    assert summary["learning_signal_check"]["loss_column"] == "intra_loss"


def with_margins(rows: list[dict], margins: list[float], positive: float = 0.4) -> list[dict]:
    """``rows`` with ``pos_sim`` = ``positive`` and ``batch_neg_sim`` = ``positive - margin`` at each step."""
    return [{**row, "pos_sim": positive, "batch_neg_sim": positive - margin} for row, margin in zip(rows, margins)]


def test_a_loss_below_chance_with_the_positive_no_closer_than_the_fresh_negatives_warns():
    low_loss = rows_with([0.7] * 100)  # the ratio alone passes
    assert first_warning(low_loss, 10, 100, "cross") is None  # no margin columns: the ratio decides alone
    tied = first_warning(with_margins(low_loss, [0.0] * 100), 10, 100, "cross")
    assert tied["step"] == 29 and tied["margin"] == pytest.approx(0.0)
    assert "no closer to its own clip's key" in tied["message"] and "when they were made" in tied["message"]
    assert first_warning(with_margins(low_loss, [0.05] * 100), 10, 100, "cross") is None  # ahead: learns
    below = first_warning(with_margins(low_loss, [MARGIN_THRESHOLD - 0.002] * 100), 10, 100, "cross")  # either side
    assert below is not None and first_warning(with_margins(low_loss, [MARGIN_THRESHOLD + 0.002] * 100), 10, 100,
                                            "cross") is None
    # the epoch's mean decides, and a NaN step (a batch of one clip) is left out of it
    assert first_warning(with_margins(low_loss, ([0.0] * 5 + [0.04] * 5) * 10), 10, 100, "cross") is None
    assert first_warning(with_margins(low_loss, ([math.nan] * 5 + [0.04] * 5) * 10), 10, 100, "cross") is None
    joint = with_margins(rows_with([0.7] * 100, objective="joint"), [0.0] * 100)
    assert first_warning(joint, 10, 100, "joint")["step"] == 29
    intra = with_margins(rows_with([0.5] * 100, objective="intra"), [0.0] * 100)  # no cross-modal term: no margin
    assert first_warning(intra, 10, 100, "intra") is None
    assert learning_signal_summary(intra, 10, 100, "intra")["positive_margin"] is None
    summary = learning_signal_summary(with_margins(low_loss, [0.0] * 90 + [0.3] * 10), 10, 100, "cross")
    assert summary["positive_margin"] == pytest.approx(0.3) and summary["learning_signal_check"]["warned_at_step"] == 29
    # a loss above chance warns with the ratio's message whatever the margin
    assert "loss's mean over the last epoch" in first_warning(with_margins(rows_with([1.0] * 100), [0.2] * 100),
                                                              10, 100, "cross")["message"]


def recorded(run: str) -> tuple[list[dict], int, int]:
    """(metrics rows, steps per epoch, steps) of a committed schedule check (reports/study/dictionary_size_schedule)."""
    folder = SCHEDULE_CHECKS / run
    rows = read_metrics(folder)
    summary = json.loads((folder / "summary.json").read_text())
    return rows, summary["steps_per_epoch"], summary["steps"]


def test_the_rule_on_recorded_runs_flags_the_staleness_shortcut_and_passes_the_base():
    # dictionary_size's condition, cross, 1 epoch: the loss fell to 0.7 of chance with the positive tied to the
    # fresh negatives (the keys told apart by age).  The ratio alone never fired; the margin does, at its first check.
    rows, per_epoch, steps = recorded("cross_random_dict4096_seed0_epochs1_drift")
    no_margin = [{k: v for k, v in row.items() if k != "batch_neg_sim"} for row in rows]
    assert first_warning(no_margin, per_epoch, steps, "cross") is None
    fired = first_warning(rows, per_epoch, steps, "cross")
    assert fired is not None and abs(fired["margin"]) < 0.002 and fired["ratio"] < RATIO_THRESHOLD
    # the study's base (360 clips, 60 epochs): learns, no warning, the positive ahead by ~0.5 at the end
    rows, per_epoch, steps = recorded("cross_random_base_seed0_drift")
    assert first_warning(rows, per_epoch, steps, "cross") is None
    assert learning_signal_summary(rows, per_epoch, steps, "cross")["positive_margin"] > 0.4


def test_the_monitor_warns_once_where_the_rule_fires_and_not_again_after_a_resume():
    rows = rows_with([1.0] * 100)
    monitor = LearningSignalMonitor("cross", 10, 100, [])
    with pytest.warns(NoLearningSignal) as caught:
        fired = [row["step"] for row in rows if monitor.observe(row)]
    assert fired == [29] and len(caught) == 1 and "0.95" in str(caught[0].message)
    resumed = LearningSignalMonitor("cross", 10, 100, rows[:35])  # stopped after the warning, resumed at step 35
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not any(resumed.observe(row) for row in rows[35:])
    midway = LearningSignalMonitor("cross", 10, 100, rows[:25])  # resumed before it: warns at step 29 still
    with pytest.warns(NoLearningSignal):
        assert [row["step"] for row in rows[25:] if midway.observe(row)] == [29]
    summary = learning_signal_summary(rows, 10, 100, "cross")
    assert summary["learning_signal"] == pytest.approx(1.0)
    assert summary["learning_signal_check"]["warned"] and summary["learning_signal_check"]["warned_at_step"] == 29


def test_the_training_curves_draw_the_uniform_guess_line():
    rows = [{"step": s, "loss": 5 - s / 10, "uniform_loss": math.log(min(4 + 4 * s, 20)), "v2a_loss": 5.0,
             "a2v_loss": 5.0, "pos_sim": 0.1, "neg_sim": 0.0, "top1": 0.1} for s in range(30)]
    figure = plot_training_curves(rows, smooth=5)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    np.testing.assert_allclose(lines["uniform guess (ln candidates)"].get_ydata(), [r["uniform_loss"] for r in rows])
    assert lines["uniform guess (ln candidates)"].get_linestyle() == "--"
    assert "uniform guess, intra-modal" not in lines
    assert "uniform guess (ln candidates)" not in {l.get_label() for l in plot_training_curves(
        [{k: v for k, v in r.items() if k != "uniform_loss"} for r in rows]).axes[0].get_lines()}


# the main job's configuration (sampler=active, 45 epochs, lr, temperature, momentum: the defaults) shrunk to
# test size: 4 classes x 24 clips, 32-px frames, batch 16, dictionary 32 (135 steps).  Measured: learning_signal
# 0.64 at 36 epochs (the main job itself, full size, seed 0: 0.647, at most 0.78 at any check)
SHRUNK_MAIN_JOB = dict(num_classes=4, clips_per_class=24, clip_seconds=2.0, frame_size=32, crop_size=24, sample_rate=8000,
                       n_mels=32, window_s=1.0, audio_window_s=1.0, batch_size=16, dictionary_size=32, warmup_steps=5,
                       num_workers=0, progress=False, probe=False, tensorboard=False, snapshot_every=0, monitor_every=0,
                       checkpoint_every=1000)


def shuffled_audio(items: list[dict]) -> dict:
    """The loader's batch with every clip's audio replaced by another clip's of the same batch (a rotation
    by a random 1..B-1 slots, drawn from the batch's clips): no positive pair belongs together."""
    batch = collate(items)
    count = batch["audio"].shape[0]
    generator = torch.Generator().manual_seed(int(batch["clip_index"].sum()))
    rotation = (torch.arange(count) + torch.randint(1, count, (), generator=generator)) % count  # (B,)
    batch["audio"] = batch["audio"][rotation]
    return batch


@pytest.mark.slow
def test_a_run_whose_audio_is_shuffled_across_clips_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "collate", shuffled_audio)  # the loader's collate (num_workers=0: this process)
    cfg = PretrainConfig(run_dir=str(tmp_path / "shuffled"), **SHRUNK_MAIN_JOB)
    with pytest.warns(NoLearningSignal, match="cross-modal loss's mean over the last epoch") as caught:
        summary = pretrain(cfg)
    assert len([w for w in caught if w.category is NoLearningSignal]) == 1
    check = summary["learning_signal_check"]
    steps, per_epoch = summary["steps"], summary["steps_per_epoch"]
    first_check = next(done for done in range(math.ceil(0.3 * steps), steps + 1) if done % per_epoch == 0)
    assert check["warned"] and check["warned_at_step"] == first_check - 1  # at the first check
    assert summary["learning_signal"] > RATIO_THRESHOLD
    # no clip's audio belongs to its video: its positive is as close as the fresh negatives (measured 0.0003)
    assert abs(summary["positive_margin"]) < MARGIN_THRESHOLD


@pytest.mark.slow
def test_the_main_jobs_configuration_shrunk_learns_and_does_not_warn(tmp_path):
    cfg = PretrainConfig(run_dir=str(tmp_path / "main"), **SHRUNK_MAIN_JOB)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = pretrain(cfg)
    assert not [w for w in caught if w.category is NoLearningSignal], [str(w.message) for w in caught]
    assert summary["sampler"] == "active" and not summary["learning_signal_check"]["warned"]
    assert summary["learning_signal"] < 0.8  # it learns: clearly below a uniform guess
    assert summary["positive_margin"] > 10 * MARGIN_THRESHOLD  # the positive well ahead (measured 0.27)
    last_epoch = read_metrics(cfg.run_dir)[-summary["steps_per_epoch"]:]
    chance = 1 / math.exp(last_epoch[-1]["uniform_loss"])  # a uniform guess's top-1
    assert sum(r["top1"] for r in last_epoch) / len(last_epoch) > 5 * chance
