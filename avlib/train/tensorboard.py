"""TensorBoard logs of a run (``run_dir/tensorboard/``), beside metrics.csv, for watching runs as the
field does: ``make tensorboard`` (``tensorboard --logdir runs/``).

- every metrics.csv column as a scalar, grouped by what it measures (``loss/``, ``train/``,
  ``dictionary/video/``, ``selection/``, ``monitor/``, ``time/``);
- at each dictionary snapshot, each modality's dictionary keys in the embedding projector, with the
  key's class, clip id, age in steps and whether it is the query clip's class as metadata, so one
  *sees* what a sampler put in its dictionary;
- at the end, the probes as scalars and the run's hyperparameters with the final probes (HParams).

Rank 0 writes it.  A resumed run opens the writer with ``purge_step`` = the resumed step, so the
events a killed run wrote after its last checkpoint are discarded: no step appears twice.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from avlib.dictionary.snapshots import read_snapshot

FOLDER = "tensorboard"


def scalar_tag(column: str) -> str:
    """The TensorBoard tag of a metrics.csv column (its group, then the column's own name)."""
    for modality in ("video", "audio"):
        if column.startswith(f"{modality}_dict_"):
            return f"dictionary/{modality}/{column.removeprefix(f'{modality}_dict_')}"
        if column.startswith(f"{modality}_sel_"):
            return f"selection/{modality}/{column.removeprefix(f'{modality}_sel_')}"
    if column.endswith("_s"):
        return f"time/{column}"
    if column.startswith("knn_"):
        return f"monitor/{column}"
    if column == "loss" or column.endswith("_loss"):
        return f"loss/{column}"
    return f"train/{column}"


def _after_the_newest_event_file(folder: Path) -> None:
    """Wait (at most a second) until the clock is past the second of the newest event file.

    TensorBoard reads a folder's event files in name order, and a name is
    ``events.out.tfevents.<second>.<host>.<pid>.<counter>``: a file made in the same second as an
    older one is ordered by pid and counter as text ("10" before "9"), so a resumed run's file could
    be read before the events it purges, and those steps would appear twice."""
    seconds = []
    for path in folder.glob("events.out.tfevents.*"):
        stamp = path.name.split(".")[3]
        if stamp.isdigit():
            seconds.append(int(stamp))
    if seconds:
        time.sleep(max(0.0, max(seconds) + 1 - time.time()))


class TensorBoardLog:
    """The event files of one run (rank 0)."""

    def __init__(self, run_dir: str | Path, start_step: int = 0, class_names: list[str] = (),
                 labels: np.ndarray = (), clip_ids: list[str] = ()):
        self.run_dir = Path(run_dir)
        _after_the_newest_event_file(self.run_dir / FOLDER)
        self.writer = SummaryWriter(log_dir=str(self.run_dir / FOLDER), purge_step=start_step or None)
        # the projector's metadata of clip i: its class name and clip id
        self.class_names, self.labels, self.clip_ids = list(class_names), np.asarray(labels), list(clip_ids)

    def scalars(self, row: dict) -> None:
        step = int(row["step"])
        for column, value in row.items():
            if column in ("step", "epoch") or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            self.writer.add_scalar(scalar_tag(column), float(value), step)

    def dictionaries(self, step: int) -> None:
        """Both dictionaries of the snapshot at ``step`` in the embedding projector."""
        for modality, dictionary in read_snapshot(self.run_dir, step).modalities.items():
            keys, clips, ages = dictionary.keys, dictionary.clip_index, step - dictionary.step_added
            if len(keys) == 0:
                continue
            metadata = [[self.class_names[self.labels[c]], self.clip_ids[c], str(int(a))] for c, a in zip(clips, ages)]
            self.writer.add_embedding(torch.as_tensor(np.asarray(keys, dtype=np.float32)), metadata=metadata,
                                      metadata_header=["class", "clip", "age"], global_step=step,
                                      tag=f"dictionary_{modality}")

    def finish(self, step: int, hyperparameters: dict, probes: dict | None, baseline: dict | None) -> None:
        """The probes as scalars and the run's hyperparameters beside them (HParams)."""
        metrics = {}
        for name, result in (("probe", probes), ("probe_random_init", baseline)):
            for modality, values in (result or {}).items():
                for kind, accuracy in values.items():
                    if accuracy is None:  # e.g. tail accuracy when no tail class has test clips
                        continue
                    self.writer.add_scalar(f"{name}/{modality}_{kind}", accuracy, step)
                    metrics[f"hparam/{name}_{modality}_{kind}"] = accuracy
        plain = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hyperparameters.items()}
        if metrics:
            self.writer.add_hparams(plain, metrics, run_name="hparams", global_step=step)

    def close(self) -> None:
        self.writer.close()
