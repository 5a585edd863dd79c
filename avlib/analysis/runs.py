"""Reading a run folder for analysis: its config, metrics, summary, trained model and dataset.

Analyses never import the training layer (``avlib.train``); this module reads the run-folder
contract (``config.json``, ``metrics.csv``, ``summary.json``, ``checkpoints/last.pt``) directly.
"""

from __future__ import annotations

import csv
import glob
import json
import math
from pathlib import Path

import numpy as np
import torch

from avlib.config import PretrainConfig
from avlib.data.dataset import AVWindows, collate, open_dataset
from avlib.models.checkpoint import load_encoders
from avlib.models.encoders import AVModel


def _require_run(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a run folder (no config.json); "
                                "pass folders written by notebooks/02_pretrain.ipynb")
    return run_dir


#: what ``make pretrain`` writes a run folder with; the errors below name it
TRAIN_FIRST = "train one first with `make pretrain` (notebooks/02_pretrain.ipynb)"


def is_pattern(path: str | Path) -> bool:
    """Whether ``path`` is a glob pattern (``runs/*``) rather than one folder."""
    return any(character in str(path) for character in "*?[")


def _matching_runs(pattern: str | Path, parameter: str, marker: str) -> list[Path]:
    """The folders ``pattern`` matches that hold ``marker`` (``config.json`` for a run folder), by name."""
    matches = sorted(Path(p) for p in glob.glob(str(pattern)) if (Path(p) / marker).is_file())
    if not matches:
        held = "run folder (a folder with config.json)" if marker == "config.json" else f"finished run folder (one with {marker})"
        raise FileNotFoundError(f"parameter {parameter}: {str(pattern)!r} matches no {held} in {Path.cwd()}; "
                                f"{TRAIN_FIRST}, or name run folders")
    return matches


def find_run_dirs(run_dirs, parameter: str = "run_dirs") -> list[Path]:
    """The run folders ``run_dirs`` names: each entry a folder, or a glob pattern standing for every run
    folder (a folder with ``config.json``) it matches, in name order; a folder named twice counts once.

    ``runs/*`` (notebook 03's default) is every run folder directly under ``runs/``: what ``make
    pretrain`` writes (``runs/active``, ``runs/random``, ...), not the study's runs, which lie one level
    deeper (``runs/study/<condition>/<run>``) and are compared per condition by the study itself.  A
    pattern that matches no run folder is an error saying to train one first.
    """
    found: list[Path] = []
    for entry in run_dirs:
        for run_dir in _matching_runs(entry, parameter, "config.json") if is_pattern(entry) else [Path(entry)]:
            if run_dir not in found:
                found.append(run_dir)
    return found


def newest_finished_run(run_dir: str | Path, parameter: str = "run_dir") -> Path:
    """``run_dir`` itself, or for a glob pattern the matching run folder that finished last (the newest
    ``summary.json``): notebook 04's default ``runs/*`` evaluates the run ``make pretrain`` just wrote."""
    if not is_pattern(run_dir):
        return Path(run_dir)
    return max(_matching_runs(run_dir, parameter, "summary.json"),
               key=lambda folder: ((folder / "summary.json").stat().st_mtime_ns, str(folder)))


def read_config(run_dir: str | Path) -> PretrainConfig:
    return PretrainConfig.from_dict(json.loads((_require_run(run_dir) / "config.json").read_text()))


def read_summary(run_dir: str | Path) -> dict:
    """summary.json, or {} while the run has not finished."""
    path = _require_run(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def read_metric_columns(run_dir: str | Path) -> dict[str, np.ndarray]:
    """metrics.csv as columns: name -> float64 array over steps (empty cells -> NaN)."""
    path = _require_run(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics (has the run started?)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {name: np.array([float(row[name]) if row[name] not in ("", None) else math.nan for row in rows])
            for name in rows[0]}


def run_label(run_dir: str | Path) -> str:
    """A short name for legends: the sampler, plus the folder name when it says something else."""
    cfg = read_config(run_dir)
    name = Path(run_dir).name
    return cfg.sampler if name in (cfg.sampler, f"run_{cfg.sampler}") else f"{cfg.sampler} ({name})"


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[PretrainConfig, AVModel]:
    """A run's config and its trained online encoders (``checkpoints/last.pt``), in eval mode."""
    return load_encoders(_require_run(run_dir), "last", device)


def open_run_dataset(run_dir: str | Path):
    """The decoded cache the run trained on (built from its config; cached on disk)."""
    return open_dataset(read_config(run_dir), progress=False)


@torch.no_grad()
def embed_clips(model: AVModel, cache, cfg: PretrainConfig, indices=None, batch_size: int = 64,
                device: str = "cpu") -> dict[str, np.ndarray]:
    """Projection-head embeddings (the space the dictionaries live in) of clips ``indices`` (default:
    all), from the centre window without augmentation: {"video": (N, D), "audio": (N, D)}."""
    indices = np.arange(len(cache)) if indices is None else np.asarray(indices)
    was_training = model.training
    model.eval()
    windows = AVWindows(cache, indices, cfg, train=False, eval_windows=1)
    parts: dict[str, list[np.ndarray]] = {"video": [], "audio": []}
    for begin in range(0, len(windows), batch_size):
        batch = collate([windows[(p, 0)] for p in range(begin, min(begin + batch_size, len(windows)))])
        embeddings = model(batch["video"].to(device), batch["audio"].to(device))
        parts["video"].append(embeddings.video.float().cpu().numpy())
        parts["audio"].append(embeddings.audio.float().cpu().numpy())
    model.train(was_training)
    return {modality: np.concatenate(chunks) for modality, chunks in parts.items()}
