"""Figures the notebooks show: training curves, clips (frames + spectrogram), probe tables, confusion.

Each function returns a matplotlib Figure (and never calls ``plt.show``), so notebooks display it
and tests can render it headless.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


#: method-specific columns of metrics.csv shown in a fourth panel when a run logged them
METHOD_COLUMNS = ("weight_mean", "weight_corrupted", "weight_clean", "weight_at_floor",  # robust_xid
                  "same_class_neg", "masked_neg", "soft_positives", "label_purity")  # label-aware, xID


#: the loss of a uniform guess over the candidates each query sees (ln of their number, as the dictionary
#: fills; avlib.train.learning_signal): a loss on or above its line has learned nothing
UNIFORM_GUESS_COLUMNS = {"uniform_loss": ("uniform guess (ln candidates)", "black"),
                         "intra_uniform_loss": ("uniform guess, intra-modal", "grey")}


def plot_training_curves(rows: list[dict], smooth: int = 10, title: str = ""):
    """Loss, positive/negative similarity and top-1 accuracy against step (rows from metrics.csv),
    plus a panel of the method's own diagnostics (positive weights, label statistics) where logged.

    The loss panel draws the uniform-guess loss as a dashed line (``uniform_loss``; with the intra-modal
    objective also ``intra_uniform_loss``), so a run whose loss never falls below it shows it at a glance."""
    steps = np.array([r["step"] for r in rows])
    panels = [("loss", ["loss", "cross_loss", "intra_loss", "v2a_loss", "a2v_loss"]),
              ("cosine similarity", ["pos_sim", "neg_sim"]),
              ("top-1 (positive ranked first)", ["top1"])]
    method = [key for key in METHOD_COLUMNS
              if rows and key in rows[0] and not np.isnan(np.array([r[key] for r in rows], dtype=float)).all()]
    if method:
        panels.append(("method diagnostics", method))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.7 * len(panels), 3.4))
    for ax, (ylabel, keys) in zip(axes, panels):
        for key in keys:
            if rows and key in rows[0]:
                values = _smooth(np.array([r[key] for r in rows], dtype=float), smooth)
                ax.plot(steps[len(steps) - len(values):], values, label=key)
        if ylabel == "loss":
            for key, (label, colour) in UNIFORM_GUESS_COLUMNS.items():
                if rows and key in rows[0]:
                    values = np.array([r[key] for r in rows], dtype=float)  # (steps,) unsmoothed: it only steps up
                    ax.plot(steps, values, linestyle="--", color=colour, linewidth=1.2, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"training curves (moving average over {smooth} steps)")
    fig.tight_layout()
    return fig


def plot_clip(frames: np.ndarray, spectrogram: np.ndarray, title: str = "", max_frames: int = 8):
    """A strip of frames (T, H, W, 3) above the clip's log-mel spectrogram (n_mels, time)."""
    picks = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    fig = plt.figure(figsize=(1.6 * len(picks), 3.6))
    grid = fig.add_gridspec(2, len(picks), height_ratios=[1, 1.1])
    for column, index in enumerate(picks):
        ax = fig.add_subplot(grid[0, column])
        ax.imshow(frames[index])
        ax.set_title(f"frame {index}", fontsize=7)
        ax.axis("off")
    ax = fig.add_subplot(grid[1, :])
    ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("time (10 ms hops)")
    ax.set_ylabel("mel bin")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def probe_table(probe: dict, baseline: dict | None = None) -> str:
    """A Markdown table of probe accuracies (and the random-init baseline and the gain, if given)."""
    header = "| modality | probe | trained |" + (" random init | gain (points) |" if baseline else "")
    rule = "|---|---|---:|" + ("---:|---:|" if baseline else "")
    lines = [header, rule]
    for modality in ("video", "audio"):
        for kind in ("linear", "knn"):
            row = f"| {modality} | {kind} | {probe[modality][kind]:.3f} |"
            if baseline:
                base = baseline[modality][kind]
                row += f" {base:.3f} | {100 * (probe[modality][kind] - base):+.1f} |"
            lines.append(row)
    return "\n".join(lines)


def plot_confusion(labels: np.ndarray, predictions: np.ndarray, class_names: list[str], title: str = ""):
    """Row-normalised confusion matrix (true class by row)."""
    n = len(class_names)
    counts = np.zeros((n, n))
    np.add.at(counts, (labels, predictions), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.45 * n + 3, 0.45 * n + 2.5))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_class_frequencies(labels: np.ndarray, splits: np.ndarray, class_names: list[str], title: str = ""):
    """Clips per class and split as grouped bars, classes ordered by their train count (the long tail
    that ``class_imbalance`` makes; val/test stay flat).  Returns (figure, {split: (C,) counts})."""
    labels, splits = np.asarray(labels), np.asarray(splits)
    counts = {s: np.bincount(labels[splits == s], minlength=len(class_names))
              for s in ("train", "val", "test") if (splits == s).any()}
    order = np.argsort(-counts.get("train", np.zeros(len(class_names))), kind="stable")
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(class_names)), 3.2))
    width = 0.8 / max(1, len(counts))
    for j, (split, c) in enumerate(counts.items()):
        ax.bar(np.arange(len(class_names)) + j * width, c[order], width, label=split)
    ax.set_xticks(np.arange(len(class_names)) + 0.4 - width / 2)
    ax.set_xticklabels([class_names[k] for k in order], rotation=90, fontsize=6)
    ax.set_ylabel("clips")
    ax.legend()
    ax.set_title(title or "clips per class")
    fig.tight_layout()
    return fig, counts


def source_sizes(groups: np.ndarray) -> np.ndarray:
    """(sources,) how many clips each source (``group``) contributes."""
    _, sizes = np.unique(np.asarray(groups), return_counts=True)
    return sizes


def plot_clips_per_source(groups: np.ndarray, title: str = ""):
    """Histogram of clips per source: 1 everywhere when every clip is its own video."""
    sizes = source_sizes(groups)
    fig, ax = plt.subplots(figsize=(4, 2.8))
    values, counts = np.unique(sizes, return_counts=True)
    ax.bar(values, counts)
    ax.set_xlabel("clips per source")
    ax.set_ylabel("sources")
    ax.set_title(title or f"{len(sizes)} sources, {sizes.sum()} clips")
    fig.tight_layout()
    return fig


def same_source_clips(groups: np.ndarray, count: int = 3) -> np.ndarray:
    """Indices of up to ``count`` clips of the largest source (first one found), to show side by side."""
    groups = np.asarray(groups)
    names, sizes = np.unique(groups, return_counts=True)
    biggest = names[int(np.argmax(sizes))]
    return np.flatnonzero(groups == biggest)[:count]
