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
"""

from __future__ import annotations

import math
import warnings

#: share of the run's steps after which the check runs (at each epoch's end)
CHECK_AFTER_SHARE = 0.3
#: loss / uniform-guess loss above which the run has not learned (mean over the last epoch)
RATIO_THRESHOLD = 0.95
RULE = (f"from {CHECK_AFTER_SHARE:.0%} of the steps on, at each epoch's end: mean loss over the last epoch / mean "
        f"uniform-guess loss (ln of the candidates per query) > {RATIO_THRESHOLD} warns once")


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


def is_check_step(step: int, steps_per_epoch: int, total_steps: int) -> bool:
    """Whether the check runs after step ``step`` (0-based): an epoch's end or the last step, from 30% on."""
    done = step + 1
    at_boundary = done % steps_per_epoch == 0 or done == total_steps
    return at_boundary and done >= math.ceil(CHECK_AFTER_SHARE * total_steps)


def warning_message(objective: str, step: int, total_steps: int, ratio: float, loss: float, uniform: float) -> str:
    what = "intra-modal" if objective == "intra" else "cross-modal"
    hint = ("more training clips, or stronger augmentations" if objective == "intra" else
            "objective='joint' (adds intra-modal contrast between two windows of each clip, a signal each "
            "encoder gets from its own modality), more training clips at the same steps, or check that each "
            "clip's audio belongs to its video (wrongly paired files look like this)")
    return (f"no learning signal: after {step + 1} of {total_steps} steps, the {what} loss's mean over the last epoch "
            f"({loss:.3f}) is {ratio:.3f} x that of a uniform guess over the candidates each query sees "
            f"({uniform:.3f}), above {RATIO_THRESHOLD}: the encoders have not learned to pick a clip's own "
            f"positive from the others.  Try {hint}.")


def first_warning(rows: list[dict], steps_per_epoch: int, total_steps: int, objective: str) -> dict | None:
    """The check's first firing over ``rows`` (metrics rows in step order, from step 0): ``{"step", "ratio",
    "message"}``, or None while it has not fired."""
    for index, row in enumerate(rows):
        step = int(row["step"])
        if not is_check_step(step, steps_per_epoch, total_steps):
            continue
        ratio, loss, uniform = epoch_ratio(rows[max(0, index + 1 - steps_per_epoch):index + 1], objective)
        if ratio > RATIO_THRESHOLD:
            return {"step": step, "ratio": ratio,
                    "message": warning_message(objective, step, total_steps, ratio, loss, uniform)}
    return None


class LearningSignalMonitor:
    """The check during a run (rank 0): fed every metrics row, warns once when the rule fires.

    ``previous_rows`` are the rows a resumed run kept (steps before its start): the check replays over
    them, so a run that warned before it was stopped does not warn again.
    """

    def __init__(self, objective: str, steps_per_epoch: int, total_steps: int, previous_rows: list[dict]):
        self.objective, self.steps_per_epoch, self.total_steps = objective, steps_per_epoch, total_steps
        columns = signal_columns(objective)
        self.rows = [{"step": int(r["step"]), **{c: float(r[c]) for c in columns if c in r}} for r in previous_rows]
        self.fired = first_warning(self.rows, steps_per_epoch, total_steps, objective)

    def observe(self, row: dict) -> str | None:
        """Record one step's row; returns (and warns with) the message when the check fires at this step."""
        self.rows.append({"step": int(row["step"]), **{c: float(row[c]) for c in signal_columns(self.objective)
                                                       if c in row}})
        if self.fired is not None or not is_check_step(int(row["step"]), self.steps_per_epoch, self.total_steps):
            return None
        ratio, loss, uniform = epoch_ratio(self.rows[-self.steps_per_epoch:], self.objective)
        if not ratio > RATIO_THRESHOLD:
            return None
        message = warning_message(self.objective, int(row["step"]), self.total_steps, ratio, loss, uniform)
        self.fired = {"step": int(row["step"]), "ratio": ratio, "message": message}
        warnings.warn(message, NoLearningSignal, stacklevel=2)
        return message


def learning_signal_summary(rows: list[dict], steps_per_epoch: int, total_steps: int, objective: str) -> dict:
    """``summary.json``'s ``learning_signal`` (the ratio over the run's last epoch; None without rows) and
    ``learning_signal_check`` (the rule, the columns compared, and whether and where it warned)."""
    ratio, loss, uniform = epoch_ratio(rows[-steps_per_epoch:], objective)
    fired = first_warning(rows, steps_per_epoch, total_steps, objective)
    loss_column, uniform_column = signal_columns(objective)
    finite = not math.isnan(ratio)
    return {"learning_signal": ratio if finite else None,
            "learning_signal_check": {
                "warned": fired is not None, "warned_at_step": fired and fired["step"],
                "message": fired and fired["message"], "final_loss": loss if finite else None,
                "final_uniform_loss": uniform if finite else None, "loss_column": loss_column,
                "uniform_column": uniform_column, "rule": RULE}}
