"""TensorBoard logs of a run (``run_dir/tensorboard/``), beside metrics.csv, for watching runs as the
field does: ``make tensorboard`` (``tensorboard --logdir runs/``).

What a user sees first is decided here, against the TensorBoard locked in ``uv.lock`` (2.21):

- **Scalars, in the order that matters.** The Time Series page (TensorBoard's landing page) and the
  Scalars page sort charts by tag with a natural sort in which digits and ``/`` come before letters,
  and group them by the part before the first ``/``.  So the groups are numbered: ``1_loss/``,
  ``2_probe/``, ``3_knn_monitor/``, then ``4_train/``, ``5_dictionary/<modality>/``,
  ``6_selection/<modality>/`` and ``7_time/`` (:data:`GROUPS`).
- **The probes as lines from the encoders at step 0 to the trained ones.** ``2_probe/<modality>_<kind>``
  holds the random-init probe (the very same encoders before any update) at step 0 and the trained
  probe at the run's last step: one chart per probe shows what training bought.
- **Hyperparameters only in HParams.** The run's settings are written as an HParams session in the
  run's own folder whose metrics are the scalars already there (the trained probes, the last kNN
  monitor), so no ``hparam/`` scalar is duplicated as a chart of one dot each.
- **Counts logged where they change.** TensorBoard smooths every chart (0.6) and scales its y-axis to
  the values between the 5th and the 95th percentile by default: a count that holds one value for
  95% of the run (a full dictionary's size, its number of classes) gets an axis a millionth wide whose
  ticks all read "256".  Count columns (:func:`is_count`) are therefore written only where their
  value changes: the new value at its first step and the old one at its last step (so the raw line
  is the count's step function), and the current value once more when the log closes.  A count's
  chart is then its changes (a dictionary filling up, a class dropping out) on an axis with integer
  ticks, and a count that never changed is exactly flat (TensorBoard neither smooths nor clips an
  exactly constant series).  ``batch_digest`` (a hash of the batch) is left out.
- **The projector opens on the newest snapshot, coloured by class.** At each dictionary snapshot both
  modalities' keys go to the embedding projector with metadata ``class``, ``clip``, ``age`` (steps
  since the key entered).  Its config (``projector_config.pbtxt``) is rewritten from the snapshot
  folders on disk at each snapshot: the projector opens on the tensor that sorts first among the
  largest (its own rule), so the newest snapshot is named ``dictionary_<m>:latest_step_<step>``
  (``latest`` sorts before ``step``; a dictionary never shrinks) and older ones
  ``dictionary_<m>:step_<step>``.  The projector starts with "No color map" whatever the config says,
  so each key is drawn as a small square in its class's colour (a sprite image, the config's
  ``sprite``): the classes show without a click; "Color by: class" adds the legend.

Rank 0 writes it.  A resumed run opens the writer with ``purge_step`` = the resumed step, so the
events a killed run wrote after its last checkpoint are discarded (no step appears twice), and
removes the projector snapshots it wrote from that step on.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from avlib.dictionary.snapshots import read_snapshot

FOLDER = "tensorboard"
PROJECTOR_CONFIG = "projector_config.pbtxt"
# the tag groups, in the order the scalars pages show them (digits sort before letters there)
GROUPS = {"loss": "1_loss", "probe": "2_probe", "monitor": "3_knn_monitor", "train": "4_train",
          "dictionary": "5_dictionary", "selection": "6_selection", "time": "7_time"}
NOT_LOGGED = {"step", "epoch", "batch_digest"}  # the x-axis, its epoch, and a hash of the batch
COUNT_SUFFIXES = ("_size", "_classes", "_failures", "_count", "_clusters")
SNAPSHOT_FOLDER = re.compile(r"^(\d{7})$")  # tensorboard/<step>/dictionary_<modality>/
SPRITE_PIXELS = 16  # side of one key's square in the projector's sprite image


def scalar_tag(column: str) -> str:
    """The TensorBoard tag of a metrics.csv column (its numbered group, then the column's own name)."""
    for modality in ("video", "audio"):
        if column.startswith(f"{modality}_dict_"):
            return f"{GROUPS['dictionary']}/{modality}/{column.removeprefix(f'{modality}_dict_')}"
        if column.startswith(f"{modality}_sel_"):
            return f"{GROUPS['selection']}/{modality}/{column.removeprefix(f'{modality}_sel_')}"
    if column.endswith("_s"):
        return f"{GROUPS['time']}/{column}"
    if column.startswith("knn_"):
        return f"{GROUPS['monitor']}/{column}"
    if column == "loss" or column.endswith("_loss"):
        return f"{GROUPS['loss']}/{column}"
    return f"{GROUPS['train']}/{column}"


def probe_tag(modality: str, kind: str) -> str:
    return f"{GROUPS['probe']}/{modality}_{kind}"


def is_count(column: str) -> bool:
    """Whether a metrics.csv column is an integer count (logged where it changes, see the module doc)."""
    return column.endswith(COUNT_SUFFIXES)


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes, 3) uint8 colours, distinct for up to 20 classes (tab10, then tab20), then hues
    spaced by the golden angle."""
    from matplotlib import colormaps

    if num_classes <= 20:
        table = colormaps["tab10" if num_classes <= 10 else "tab20"].colors
        return (np.asarray(table[:num_classes]) * 255).round().astype(np.uint8)
    from matplotlib.colors import hsv_to_rgb

    hues = (np.arange(num_classes) * 0.6180339887) % 1.0
    hsv = np.stack([hues, np.full(num_classes, 0.65), np.full(num_classes, 0.85)], axis=1)
    return (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def write_sprite(path: Path, colours: np.ndarray) -> int:
    """One ``SPRITE_PIXELS`` square per point, row-major on a square grid (the projector's sprite
    layout), each filled with its point's colour inside a darker 1-pixel rim; returns the grid side."""
    count, side = len(colours), SPRITE_PIXELS
    grid = max(1, math.ceil(math.sqrt(count)))
    image = np.full((grid * side, grid * side, 3), 255, dtype=np.uint8)
    for i, colour in enumerate(colours):
        row, col = divmod(i, grid)
        tile = image[row * side:(row + 1) * side, col * side:(col + 1) * side]
        tile[:] = (colour * 0.6).astype(np.uint8)
        tile[1:-1, 1:-1] = colour
    Image.fromarray(image).save(path)
    return grid


def tensor_name(modality: str, step: int, latest: bool) -> str:
    return f"dictionary_{modality}:{'latest_' if latest else ''}step_{step:07d}"


def write_projector_config(folder: Path) -> str:
    """``projector_config.pbtxt`` listing every dictionary snapshot under ``folder`` (the newest named
    ``latest``, so the projector opens on it: module doc); written atomically; returns its text."""
    snapshots = sorted((int(m.group(1)), path) for path in folder.iterdir()
                       if path.is_dir() and (m := SNAPSHOT_FOLDER.match(path.name)))
    entries = []  # newest first (the order a reader of the file expects; the projector sorts anyway)
    for index, (step, path) in reversed(list(enumerate(snapshots))):
        for modality_folder in sorted(path.glob("dictionary_*")):
            files = {name: modality_folder / name for name in ("tensors.tsv", "metadata.tsv", "sprite.png")}
            if not all(f.exists() for f in files.values()):
                continue  # a snapshot being written
            rows = (modality_folder / "tensors.tsv").read_text().splitlines()
            modality = modality_folder.name.removeprefix("dictionary_")
            relative = f"{path.name}/{modality_folder.name}"
            entries.append("\n".join([
                "embeddings {",
                f'  tensor_name: "{tensor_name(modality, step, latest=index == len(snapshots) - 1)}"',
                f"  tensor_shape: {len(rows)}",
                f"  tensor_shape: {len(rows[0].split(chr(9)))}",
                f'  tensor_path: "{relative}/tensors.tsv"',
                f'  metadata_path: "{relative}/metadata.tsv"',
                "  sprite {",
                f'    image_path: "{relative}/sprite.png"',
                f"    single_image_dim: {SPRITE_PIXELS}",
                f"    single_image_dim: {SPRITE_PIXELS}",
                "  }",
                "}",
            ]))
    text = "\n".join(entries) + "\n"
    temporary = folder / f".{PROJECTOR_CONFIG}.tmp"
    temporary.write_text(text)
    temporary.replace(folder / PROJECTOR_CONFIG)
    return text


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
    """The event files and projector files of one run (rank 0)."""

    def __init__(self, run_dir: str | Path, start_step: int = 0, class_names: list[str] = (),
                 labels: np.ndarray = (), clip_ids: list[str] = ()):
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER
        _after_the_newest_event_file(self.folder)
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=start_step or None)
        if start_step:
            self._purge_projector(start_step)
        # the projector's metadata of clip i: its class name and clip id
        self.class_names, self.labels, self.clip_ids = list(class_names), np.asarray(labels), list(clip_ids)
        self._counts: dict[str, tuple[int, float, bool]] = {}  # tag -> (step, value, written at that step)

    def scalars(self, row: dict) -> None:
        step = int(row["step"])
        for column, value in row.items():
            if column in NOT_LOGGED or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            tag, value = scalar_tag(column), float(value)
            if is_count(column):
                previous = self._counts.get(tag)
                changed = previous is None or previous[1] != value
                if changed and previous is not None and not previous[2]:
                    self.writer.add_scalar(tag, previous[1], previous[0])  # the corner: the old value's last step
                self._counts[tag] = (step, value, changed)
                if not changed:
                    continue
            self.writer.add_scalar(tag, value, step)

    def dictionaries(self, step: int) -> None:
        """Both dictionaries of the snapshot at ``step`` in the embedding projector."""
        written = False
        colours = class_colours(len(self.class_names))
        for modality, dictionary in read_snapshot(self.run_dir, step).modalities.items():
            keys, clips, ages = dictionary.keys, dictionary.clip_index, step - dictionary.step_added
            if len(keys) == 0:
                continue
            folder = self.folder / f"{step:07d}" / f"dictionary_{modality}"
            folder.mkdir(parents=True, exist_ok=True)
            classes = self.labels[np.asarray(clips)]
            np.savetxt(folder / "tensors.tsv", np.asarray(keys, dtype=np.float32), delimiter="\t", fmt="%.6g")
            lines = ["class\tclip\tage"] + [f"{self.class_names[c]}\t{self.clip_ids[clip]}\t{int(age)}"
                                            for c, clip, age in zip(classes, clips, ages)]
            (folder / "metadata.tsv").write_text("\n".join(lines) + "\n")
            write_sprite(folder / "sprite.png", colours[classes])
            written = True
        if written:
            write_projector_config(self.folder)

    def _purge_projector(self, start_step: int) -> None:
        """Remove the projector snapshots a killed run wrote from ``start_step`` on (they are written again)."""
        if not self.folder.is_dir():
            return
        stale = [p for p in self.folder.iterdir()
                 if p.is_dir() and (m := SNAPSHOT_FOLDER.match(p.name)) and int(m.group(1)) >= start_step]
        for path in stale:
            shutil.rmtree(path)
        if stale:
            write_projector_config(self.folder)

    def finish(self, step: int, hyperparameters: dict, probes: dict | None, baseline: dict | None) -> None:
        """The probes (random init at step 0, trained at ``step``) and the run's hyperparameters as an
        HParams session whose metrics are those probe charts and the kNN monitor's."""
        metrics = {}
        for modality in sorted(set(probes or {}) | set(baseline or {})):
            for kind in sorted(set((probes or {}).get(modality, {})) | set((baseline or {}).get(modality, {}))):
                tag = probe_tag(modality, kind)
                for at, result in ((0, baseline), (step, probes)):
                    accuracy = (result or {}).get(modality, {}).get(kind)
                    if accuracy is not None:  # None: e.g. tail accuracy when no tail class has test clips
                        self.writer.add_scalar(tag, accuracy, at)
                if (probes or {}).get(modality, {}).get(kind) is not None:
                    metrics[tag] = 0.0  # (the value HParams shows is the chart's last one)
        metrics |= {tag: 0.0 for tag in (scalar_tag("knn_video"), scalar_tag("knn_audio")) if self._has_tag(tag)}
        plain = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hyperparameters.items()}
        if metrics:
            for summary in hparams_summaries(plain, metrics):
                self.writer.file_writer.add_summary(summary)

    def _has_tag(self, tag: str) -> bool:
        """Whether this run's event files hold scalars under ``tag`` (read with TensorBoard's reader)."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(self.folder), size_guidance={"scalars": 1, "tensors": 1})
        events.Reload()
        return tag in events.Tags()["scalars"]

    def close(self) -> None:
        """Writes each count's current value at its last step (if unchanged since), then closes."""
        for tag, (step, value, written) in self._counts.items():
            if not written:
                self.writer.add_scalar(tag, value, step)
        self._counts.clear()
        self.writer.close()
