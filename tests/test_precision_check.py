"""``bench/precision_check.py`` on known answers: a precision that shifts both arms alike changes no
comparison (the effect's change is equivalent), one that erases a method's effect changes it (worse), and
only seeds finished in all four arms are paired."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from avlib.study.stats import StatsError

SPEC = importlib.util.spec_from_file_location("precision_check",
                                              Path(__file__).parents[1] / "bench" / "precision_check.py")
precision_check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(precision_check)


def write_runs(root: Path, variant: str, video: list[float], audio: list[float], seeds=None) -> None:
    for seed, (v, a) in zip(seeds or range(len(video)), zip(video, audio)):
        folder = root / f"{variant}_seed{seed}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        probe = {"video": {"linear": v / 100}, "audio": {"linear": a / 100}}
        (folder / "summary.json").write_text(json.dumps({"probe": probe}))


def test_a_shift_of_both_arms_changes_no_comparison_but_a_lost_effect_does(tmp_path):
    rng = np.random.default_rng(0)
    seeds = 10
    base = 60 + 4 * rng.standard_normal(seeds)  # the seeds' spread: sd 4 points, shared by the arms of a seed
    noise = lambda: 0.3 * rng.standard_normal(seeds)  # noqa: E731
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    # fp32: the method is 6 points worse on video, equal on audio
    write_runs(fp32, "random", base + noise(), base + noise())
    write_runs(fp32, "active", base - 6 + noise(), base + noise())
    # bf16 shifts every run by -3 points (both arms alike) on video; on audio it erases nothing either
    # ... and on video it keeps the effect; a second candidate loses the video effect entirely
    write_runs(bf16, "random", base - 3 + noise(), base + noise())
    write_runs(bf16, "active", base - 9 + noise(), base + noise())
    lost = tmp_path / "lost"
    write_runs(lost, "random", base + noise(), base + noise())
    write_runs(lost, "active", base + noise(), base + noise())

    result = precision_check.compare(fp32, bf16, "random", "active")
    assert result["seeds"] == list(range(seeds))
    video = result["video"]
    assert video["arm random"].verdict == "worse" and video["arm random"].mean == pytest.approx(-3, abs=0.5)
    assert video["effect reference"].verdict == "worse" and video["effect candidate"].verdict == "worse"
    assert video["effect change"].verdict == "equivalent"  # the comparison survives the shift
    assert result["audio"]["effect change"].verdict == "equivalent"
    changed = precision_check.compare(fp32, lost, "random", "active")["video"]["effect change"]
    assert changed.verdict == "better" and changed.mean == pytest.approx(6, abs=0.5)

    text = precision_check.report(result, fp32, bf16, "random", "active")
    assert "## video" in text and "change of the effect (bf16 − fp32)" in text and "**equivalent**" in text


def test_only_seeds_finished_in_every_arm_are_paired(tmp_path):
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    write_runs(fp32, "random", [50, 51, 52], [40, 41, 42])
    write_runs(fp32, "active", [49, 50, 51], [40, 41, 42])
    write_runs(bf16, "random", [50, 51], [40, 41], seeds=[0, 2])
    write_runs(bf16, "active", [49, 50], [40, 41], seeds=[0, 2])
    (bf16 / "active_seed1").mkdir()  # unfinished: a config, no summary.json
    (bf16 / "active_seed1" / "config.json").write_text("{}")
    assert precision_check.compare(fp32, bf16, "random", "active")["seeds"] == [0, 2]
    with pytest.raises(StatsError, match="at least 2"):
        precision_check.compare(fp32, tmp_path / "none", "random", "active")


def test_the_gradient_measure_reads_a_checkpoint_and_sets_bf16_against_batch_noise(tmp_path):
    """On a tiny run's checkpoint: bf16's gradient is close to fp32's (cosine near 1, the error a few percent)
    and much closer than another batch's gradient; the report states both and their ratio."""
    from avlib.train import pretrain
    from tiny import tiny_config

    cfg = tiny_config(tmp_path / "run", probe=False, tensorboard=False, monitor_every=0)
    pretrain(cfg)
    result = precision_check.gradient_agreement(tmp_path / "run", batches=3)
    rows = result["batches"]
    assert len(rows) == 3 and "batch_difference" not in rows[0] and "batch_difference" in rows[1]
    for row in rows:
        assert 0 < row["precision_error"] < 0.2 and row["precision_cosine"] > 0.98
        assert row["loss_bf16"] == pytest.approx(row["loss_fp32"], rel=0.05)
    assert all(row["batch_difference"] > 3 * row["precision_error"] for row in rows[1:])
    text = precision_check.gradient_report(result)
    assert "bf16 − fp32, same batch" in text and "x the difference between two batches' gradients" in text
