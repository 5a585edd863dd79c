"""Does a run learn anything?  Its contrastive loss against the loss of a uniform guess.

A contrastive loss that has learned nothing sits at the loss of a uniform guess over the candidates
each query is scored against: ln N for N candidates (the in-batch keys plus the unmasked dictionary
keys, so it grows from ln B as the dictionary fills).  The loss functions report that level every step
(``uniform_loss`` in metrics.csv).  ``reports/real_media.md`` found runs whose cross-modal loss never
fell below it (spoken digits over handwritten digits: 5.56 to 5.70 against ln 257 = 5.55) while
nothing told the user; this module is what tells them.

The rule (:data:`CHECK_AFTER_SHARE`, :data:`RATIO_THRESHOLD`): at the end of every epoch (and at the
last step) once 30% of the run's steps are done, the ratio of the loss's mean over the last epoch to
the mean uniform loss over the same steps is compared with 0.95; above it, the run warns once
(:class:`NoLearningSignal`).  30% leaves the warm-up and the dictionary's filling behind (both change
the loss for reasons other than learning); 0.95 is "clearly below", with room on both sides as
measured: the main job (embedded dataset, ``sampler=active``, seed 0) is at 0.64-0.78 at every check
and ends at 0.647, the test-size main job ends at 0.537, and the same test-size run with its audio
shuffled across clips every step is at 1.048 at its first check and ends at 1.009 (the two tests in
``tests/test_learning_signal.py``).  ``summary.json`` records ``learning_signal``, the ratio over the
run's last epoch, and ``learning_signal_check`` (warned or not, where, the message).

Which loss: the cross-modal one (``objective`` "cross" logs it as ``loss``, "joint" as ``cross_loss``);
with ``objective="intra"`` the cross-modal term is not trained at all, so the intra-modal loss is
compared with its own uniform guess instead (``intra_loss`` / ``intra_uniform_loss``).

A loss below the uniform guess is not enough.  With a dictionary, the loss also falls when the encoders
tell the dictionary's keys (made by the key encoder 1 to K/B steps ago) apart from the batch's fresh ones
by *when* they were made, not by what the clips hold: the study's ``dictionary_size`` condition (18,000
clips seen twice each) went to 0.64 of the uniform loss that way while a query was exactly as similar to
its own clip's key as to the batch's other fresh keys (``reports/study/dictionary_size_schedule.md``).
So the check has a second test, where the loss logs them (the MoCo-style samplers: ``pos_sim`` and
``batch_neg_sim``, cosines averaged over both directions): the **positive margin**, the mean over the
last epoch of ``pos_sim - batch_neg_sim``, must exceed :data:`MARGIN_THRESHOLD` = 0.01.  Fresh keys and
the positive come from the same key encoder at the same step, so no staleness can separate them: only
what the clips hold can.  Measured, as means over 25-35% of a run's steps and over its last 10%: that
condition's runs (1 epoch, ``cross`` seed 0 and ``joint`` seed 5) 0.0001 and -0.0006, then 0.0001 and
0.0009 (per-step sd 0.003); the study's base (360 clips, 60 epochs) 0.105, then 0.497; 50 classes x 12
clips 0.071, then 0.311; 3,600 clips for 6 epochs, a slow learner, 0.022, then 0.141 (``cross`` and
``random`` unless said).  The main job (``make pretrain``: ``active``, 720 clips, 45 epochs) is at 0.075
over the epoch before its first check (step 308 of 990), the lowest of any of its checks to step 396; at
that check the same job is at 0.072 with unsynchronised sound (``av_sync=False``, ``random``: only the class
links the streams) and 0.364 with clips in near-duplicate groups of 8 (``clips_per_source=8``).
"""

from __future__ import annotations

import math
import warnings

#: share of the run's steps after which the check runs (at each epoch's end)
CHECK_AFTER_SHARE = 0.3
#: loss / uniform-guess loss above which the run has not learned (mean over the last epoch)
RATIO_THRESHOLD = 0.95
#: mean of pos_sim - batch_neg_sim over the last epoch at or below which the positive is not ahead of the
#: fresh negatives (module docstring: the measured levels either side)
MARGIN_THRESHOLD = 0.01
#: the columns of the positive margin (logged by the MoCo-style samplers' cross-modal InfoNCE)
MARGIN_COLUMNS = ("pos_sim", "batch_neg_sim")
RULE = (f"from {CHECK_AFTER_SHARE:.0%} of the steps on, at each epoch's end: mean loss over the last epoch / mean "
        f"uniform-guess loss (ln of the candidates per query) > {RATIO_THRESHOLD}, or (where logged) the mean of "
        f"pos_sim - batch_neg_sim over the last epoch <= {MARGIN_THRESHOLD}, warns once")


class NoLearningSignal(UserWarning):
    """The run's contrastive loss has not fallen clearly below a uniform guess's."""


def signal_columns(objective: str) -> tuple[str, str]:
    """(loss column, uniform-guess column) of metrics.csv that the check compares for ``objective``."""
    if objective == "intra":
        return "intra_loss", "intra_uniform_loss"
    return ("loss" if objective == "cross" else "cross_loss"), "uniform_loss"


def epoch_ratio(rows: list[dict], objective: str) -> tuple[float, float, float]:
    """(ratio, mean loss, mean uniform loss) over ``rows`` (metrics rows, e.g. one epoch's)."""
    loss_column, uniform_column = signal_columns(objective)
    losses = [float(r[loss_column]) for r in rows if uniform_column in r]
    uniforms = [float(r[uniform_column]) for r in rows if uniform_column in r]
    if not losses:
        return math.nan, math.nan, math.nan
    loss, uniform = sum(losses) / len(losses), sum(uniforms) / len(uniforms)
    return (loss / uniform if uniform > 0 else math.nan), loss, uniform


def positive_margin(rows: list[dict], objective: str) -> float:
    """Mean of ``pos_sim - batch_neg_sim`` over ``rows``: how much closer a query is to its own clip's key
    than to the batch's other fresh keys.  NaN where the rows do not log both (the memory-bank and
    label-aware samplers, metrics written before the columns existed) or the objective has no
    cross-modal term (``intra``)."""
    if objective == "intra":
        return math.nan
    margins = [float(r["pos_sim"]) - float(r["batch_neg_sim"]) for r in rows if all(c in r for c in MARGIN_COLUMNS)]
    margins = [m for m in margins if not math.isnan(m)]  # a batch of one clip has no fresh negative
    return sum(margins) / len(margins) if margins else math.nan


def is_check_step(step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the check runs after step ``step`` (0-based): an epoch's end or the last step, from 30% on."""
    done = step + 1
    at_boundary = done % steps_per_epoch == 0 or done == total_steps
    return at_boundary and done >= math.ceil(CHECK_AFTER_SHARE * total_steps)


def fires(ratio: float, margin: float) -> bool:
    """The rule on one epoch's means: the loss not clearly below a uniform guess's, or the positive not ahead
    of the fresh negatives (a NaN margin, not logged, passes)."""
    return ratio > RATIO_THRESHOLD or margin <= MARGIN_THRESHOLD


def warning_message(objective: str, step: int, total_steps: int, ratio: float, loss: float, uniform: float,
                    margin: float = math.nan) -> str:
    what = "intra-modal" if objective == "intra" else "cross-modal"
    pairing = ("check that each clip's audio belongs to its video (wrongly paired files look like this)")
    if objective == "intra":
        hint = "more training clips, or stronger augmentations"
    elif objective == "joint":  # already has the intra-modal signal: only more passes or the data can help
        hint = f"more epochs (each clip needs more passes), more training clips at the same steps, or {pairing}"
    else:
        hint = ("objective='joint' (adds intra-modal contrast between two windows of each clip, a signal each "
                f"encoder gets from its own modality), more training clips at the same steps, or {pairing}")
    if ratio > RATIO_THRESHOLD:
        return (f"no learning signal: after {step + 1} of {total_steps} steps, the {what} loss's mean over the last "
                f"epoch ({loss:.3f}) is {ratio:.3f} x that of a uniform guess over the candidates each query sees "
                f"({uniform:.3f}), above {RATIO_THRESHOLD}: the encoders have not learned to pick a clip's own "
                f"positive from the others.  Try {hint}.")
    return (f"no learning signal: after {step + 1} of {total_steps} steps, a query is no closer to its own clip's key "
            f"than to the batch's other fresh keys (pos_sim - batch_neg_sim over the last epoch: {margin:+.4f}, "
            f"at most {MARGIN_THRESHOLD}), although the {what} loss is {ratio:.3f} x a uniform guess's: the loss "
            f"falls because the dictionary's older keys are told apart by when they were made (queue_neg_sim "
            f"below batch_neg_sim), not by what the clips hold.  Each clip needs more passes (more epochs, or "
            f"fewer clips).")


def first_warning(rows: list[dict], steps_per_epoch: int, total_steps: int, objective: str) -> dict | None:
    """The check's first firing over ``rows`` (metrics rows in step order, from step 0): ``{"step", "ratio",
    "message"}``, or None while it has not fired."""
    for index, row in enumerate(rows):
        step = int(row["step"])
        if not is_check_step(step, steps_per_epoch, total_steps):
            continue
        epoch = rows[max(0, index + 1 - steps_per_epoch):index + 1]
        (ratio, loss, uniform), margin = epoch_ratio(epoch, objective), positive_margin(epoch, objective)
        if fires(ratio, margin):
            return {"step": step, "ratio": ratio, "margin": None if math.isnan(margin) else margin,
                    "message": warning_message(objective, step, total_steps, ratio, loss, uniform, margin)}
    return None


class LearningSignalMonitor:
    """The check during a run (rank 0): fed every metrics row, warns once when the rule fires.

    ``previous_rows`` are the rows a resumed run kept (steps before its start): the check replays over
    them, so a run that warned before it was stopped does not warn again.
    """

    def __init__(self, objective: str, steps_per_epoch: int, total_steps: int, previous_rows: list[dict]):
        self.objective, self.steps_per_epoch, self.total_steps = objective, steps_per_epoch, total_steps
        self.columns = (*signal_columns(objective), *MARGIN_COLUMNS)
        self.rows = [self._kept(r) for r in previous_rows]
        self.fired = first_warning(self.rows, steps_per_epoch, total_steps, objective)

    def _kept(self, row: dict) -> dict:
        """The columns the rule reads (a row's others are not kept: the monitor lives as long as the run)."""
        return {"step": int(row["step"]), **{c: float(row[c]) for c in self.columns if c in row}}

    def observe(self, row: dict) -> str | None:
        """Record one step's row; returns (and warns with) the message when the check fires at this step."""
        self.rows.append(self._kept(row))
        if self.fired is not None or not is_check_step(int(row["step"]), self.steps_per_epoch, self.total_steps):
            return None
        epoch = self.rows[-self.steps_per_epoch:]
        (ratio, loss, uniform), margin = epoch_ratio(epoch, self.objective), positive_margin(epoch, self.objective)
        if not fires(ratio, margin):
            return None
        message = warning_message(self.objective, int(row["step"]), self.total_steps, ratio, loss, uniform, margin)
        self.fired = {"step": int(row["step"]), "ratio": ratio, "margin": None if math.isnan(margin) else margin,
                      "message": message}
        warnings.warn(message, NoLearningSignal, stacklevel=2)
        return message


def learning_signal_summary(rows: list[dict], steps_per_epoch: int, total_steps: int, objective: str) -> dict:
    """``summary.json``'s ``learning_signal`` (the ratio over the run's last epoch; None without rows),
    ``positive_margin`` (pos_sim - batch_neg_sim over the last epoch; None where not logged) and
    ``learning_signal_check`` (the rule, the columns compared, and whether and where it warned)."""
    ratio, loss, uniform = epoch_ratio(rows[-steps_per_epoch:], objective)
    margin = positive_margin(rows[-steps_per_epoch:], objective)
    fired = first_warning(rows, steps_per_epoch, total_steps, objective)
    loss_column, uniform_column = signal_columns(objective)
    finite = not math.isnan(ratio)
    return {"learning_signal": ratio if finite else None,
            "positive_margin": None if math.isnan(margin) else margin,
            "learning_signal_check": {
                "warned": fired is not None, "warned_at_step": fired and fired["step"],
                "message": fired and fired["message"], "final_loss": loss if finite else None,
                "final_uniform_loss": uniform if finite else None, "loss_column": loss_column,
                "uniform_column": uniform_column, "margin_columns": list(MARGIN_COLUMNS), "rule": RULE}}
