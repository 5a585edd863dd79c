"""Downstream protocols: a pretrained checkpoint on UCF101, HMDB51, ESC-50 or its own dataset.

The standard evaluations of the seed papers (AVID, Morgado et al. 2021 sec. 5; CM-ACC, Ma et al.
2021 sec. 4.3), run unchanged on a user's copy of the data:

* **linear** -- a logistic-regression classifier on frozen pooled backbone features
  (:func:`avlib.eval.probe.linear_probe`), each clip's feature averaged over ``eval_windows``
  evenly spaced windows;
* **knn** -- a cosine k-nearest-neighbour vote on the same features (cheap, and a check on the
  linear numbers);
* **finetune** -- the backbone plus a new linear layer trained end to end with the labels.

Every protocol yields class scores per clip; **clip-level** accuracy scores each clip alone,
**video-level** accuracy averages the scores of a video's ``clips_per_video`` clips first (the
benchmark's videos are cut into evenly spaced clips by :func:`avlib.data.prepare.prepare`).
UCF101 and HMDB51 are evaluated on the video stream over their three official train/test splits,
ESC-50 on the audio stream with 5-fold cross-validation (train on 4 folds, test on the 5th);
results are the mean and the sample standard deviation over splits/folds.  ``dataset="run"``
evaluates both streams on the pretraining dataset's own train/val/test split.

Layering: reads run folders (the checkpoint format of ``avlib.train``) without importing
``avlib.train``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from avlib.config import DownstreamConfig, PretrainConfig, choose
from avlib.data.augment import AudioTransform, VideoTransform, seeded
from avlib.data.cache import DecodedCache
from avlib.eval.probe import knn_probe, linear_probe
from avlib.models.checkpoint import load_encoders
from avlib.models.encoders import AVModel

PROTOCOLS = ("standard", "linear", "knn", "finetune", "probes", "all")
STANDARD_PROTOCOLS = {"run": ("linear", "knn"), "ucf101": ("finetune", "linear", "knn"),
                      "hmdb51": ("finetune", "linear", "knn"), "esc50": ("linear", "knn")}
PRETRAINED, RANDOM_INIT = "pretrained", "random init"


def protocols_for(settings: DownstreamConfig) -> tuple[str, ...]:
    """The protocols ``settings.protocol`` stands for on ``settings.dataset`` (both names checked here:
    the notebook calls this before any work)."""
    standard = choose("dataset", settings.dataset, STANDARD_PROTOCOLS)
    choose("protocol", settings.protocol, dict.fromkeys(PROTOCOLS))
    return {"standard": standard, "probes": ("linear", "knn"),
            "all": ("finetune", "linear", "knn")}.get(settings.protocol, (settings.protocol,))


# ----------------------------------------------------------------------------- encoders


def random_init_model(cfg: PretrainConfig, device: str = "cpu") -> AVModel:
    """The encoders the run started from: same architecture, same seed, no training."""
    torch.manual_seed(cfg.seed)
    return AVModel(cfg.video_encoder, cfg.audio_encoder, cfg.embedding_dim).to(device).eval()


def backbone(model: AVModel, modality: str) -> nn.Module:
    return model.video_backbone if modality == "video" else model.audio_backbone


# ----------------------------------------------------------------------------- data


@dataclass
class Evaluation:
    """One official split or fold: clip indices into the cache."""

    name: str
    train: np.ndarray
    test: np.ndarray
    val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class DownstreamData:
    name: str
    cache: DecodedCache
    modalities: tuple[str, ...]
    evaluations: list[Evaluation]
    videos: np.ndarray  # (N,) the video each cached clip comes from
    check_summary: str = ""

    @property
    def class_names(self) -> list[str]:
        return list(self.cache.class_names)


def benchmark_evaluations(cache: DecodedCache, dataset: str, split: int = 0) -> list[Evaluation]:
    """The official splits (UCF101, HMDB51: columns ``split_1..3``) or folds (ESC-50: ``fold``)."""
    from avlib.data.adapters import BENCHMARKS

    columns = BENCHMARKS[dataset].evaluations
    evaluations = []
    if columns == ("fold",):
        folds = cache.column("fold")
        for fold in sorted(set(folds.tolist())):
            if split in (0, fold):
                evaluations.append(Evaluation(f"fold {fold}", np.flatnonzero(folds != fold),
                                              np.flatnonzero(folds == fold)))
    else:
        for k, column in enumerate(columns, start=1):
            if split in (0, k):
                values = cache.column(column)
                evaluations.append(Evaluation(f"split {k}", np.flatnonzero(values == "train"),
                                              np.flatnonzero(values == "test")))
    if not evaluations:
        raise ValueError(f"parameter split={split} selects none of {dataset}'s splits/folds "
                         f"(1..{len(columns) if columns != ('fold',) else 5}, or 0 for all)")
    for evaluation in evaluations:
        if len(evaluation.train) == 0 or len(evaluation.test) == 0:
            raise ValueError(f"{dataset} {evaluation.name}: no {'train' if len(evaluation.train) == 0 else 'test'} "
                             "clips left after checking and decoding (see the check summary)")
    return evaluations


def open_downstream(settings: DownstreamConfig, cfg: PretrainConfig) -> DownstreamData:
    """Decode (once, cached) the dataset ``settings`` names, at the run's frame size, fps and rate."""
    if settings.dataset == "run":
        from avlib.data.dataset import open_dataset

        cache = open_dataset(cfg, progress=settings.progress)
        splits = {s: cache.select(s) for s in ("train", "val", "test")}
        if len(splits["train"]) == 0 or len(splits["test"]) == 0:
            raise ValueError(f"the run's dataset {cfg.dataset!r} has no train or no test clips")
        return DownstreamData("run", cache, ("video", "audio"),
                              [Evaluation("test", splits["train"], splits["test"], splits["val"])],
                              np.asarray(cache.clip_ids, dtype=object))

    from avlib.data.adapters import BENCHMARKS, build_manifest
    from avlib.data.prepare import prepare

    root = Path(settings.dataset_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"parameter dataset_root={settings.dataset_root!r} is not a folder")
    benchmark = BENCHMARKS[settings.dataset]
    manifest = build_manifest(settings.dataset, output_dir(settings) / "manifest.csv", settings.metadata)
    cache, report = prepare(manifest, root, fps=cfg.fps, frame_size=cfg.frame_size, sample_rate=cfg.sample_rate,
                            clip_seconds=settings.clip_seconds or cfg.clip_seconds,
                            clips_per_video=settings.clips_per_video, modality=benchmark.modality,
                            workers=settings.num_workers, progress=settings.progress)
    return DownstreamData(settings.dataset, cache, (benchmark.modality,),
                          benchmark_evaluations(cache, settings.dataset, settings.split),
                          cache.column("video"), report.summary)


class ClipWindows(Dataset):
    """Windows of one modality of cached clips, as the encoders saw them in pretraining.

    Items are ``(position, seed)``.  Training: a random window start drawn inside ``seeded(seed)``
    and the training augmentations.  Evaluation: ``seed`` is the window number k of
    ``eval_windows`` evenly spaced windows, unaugmented.  The audio window is centred on the video
    window when the cache holds video (as :class:`avlib.data.dataset.AVWindows`), else spread over
    the audio itself."""

    def __init__(self, cache: DecodedCache, indices, cfg: PretrainConfig, modality: str, *, train: bool,
                 eval_windows: int = 1):
        self.cache, self.indices, self.modality = cache, np.asarray(indices, np.int64), modality
        self.train, self.eval_windows = train, eval_windows
        self.fps, self.sample_rate = cfg.fps, cfg.sample_rate
        self.window_frames, self.window_samples = cfg.window_frames, cfg.window_samples
        self.total_frames, self.total_samples = cache.video.shape[1], cache.audio.shape[1]
        if modality == "video" and self.total_frames < self.window_frames:
            raise ValueError(f"cached clips hold {self.total_frames} frames, fewer than the run's video window "
                             f"({self.window_frames}); use a longer clip_seconds")
        if modality == "audio" and self.total_samples < self.window_samples:
            raise ValueError(f"cached clips hold {self.total_samples} audio samples, fewer than the run's audio "
                             f"window ({self.window_samples}); use a longer clip_seconds")
        self.transform = (VideoTransform(cfg.crop_size, train, normalize=cfg.video_normalize) if modality == "video"
                          else AudioTransform(cfg.sample_rate, cfg.n_mels, train))

    def __len__(self) -> int:
        return len(self.indices)

    def _start(self, seed: int, last: int) -> int:
        if self.train:
            return int(torch.randint(0, last + 1, ()).item())  # inside the seeded scope
        return int(round(seed * last / (self.eval_windows - 1))) if self.eval_windows > 1 else last // 2

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, seed = item
        clip = int(self.indices[position])
        with seeded(seed):
            if self.modality == "video":
                start = self._start(seed, self.total_frames - self.window_frames)
                data = self.cache.video[clip, start:start + self.window_frames]  # (T, H, W, 3)
            else:
                last = self.total_samples - self.window_samples
                if self.total_frames >= self.window_frames > 0:  # centred on the video window
                    start_frame = self._start(seed, self.total_frames - self.window_frames)
                    centre = (start_frame + self.window_frames / 2) / self.fps
                    start = min(max(int(round(centre * self.sample_rate)) - self.window_samples // 2, 0), last)
                else:
                    start = self._start(seed, last)
                data = self.cache.audio[clip, start:start + self.window_samples]  # (S,)
            return self.transform(np.asarray(data)), int(self.cache.labels[clip])


def _batches(dataset: ClipWindows, items: list[tuple[int, int]], batch_size: int):
    for begin in range(0, len(items), batch_size):
        pairs = [dataset[item] for item in items[begin:begin + batch_size]]
        yield torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


@torch.no_grad()
def clip_features(encoder: nn.Module, data: DownstreamData, indices, cfg: PretrainConfig, modality: str, *,
                  eval_windows: int = 3, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Frozen pooled features (N, F) of clips ``indices``, averaged over ``eval_windows`` windows."""
    was_training = encoder.training
    encoder.eval()
    dataset = ClipWindows(data.cache, indices, cfg, modality, train=False, eval_windows=eval_windows)
    total = None
    for window in range(eval_windows):
        parts = [encoder(x.to(device)).float().cpu().numpy()
                 for x, _ in _batches(dataset, [(p, window) for p in range(len(dataset))], batch_size)]
        stacked = np.concatenate(parts)  # (N, F)
        total = stacked if total is None else total + stacked
    encoder.train(was_training)
    return total / eval_windows


# ----------------------------------------------------------------------------- protocols


@dataclass
class Outcome:
    """One protocol on one split/fold for one modality and encoder."""

    protocol: str
    modality: str
    encoder: str  # PRETRAINED or RANDOM_INIT
    evaluation: str
    clip_accuracy: float
    video_accuracy: float
    video_labels: np.ndarray  # (V,) for the confusion matrix
    video_predictions: np.ndarray  # (V,)


def video_level(scores: np.ndarray, labels: np.ndarray, videos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Average the class scores (N, C) of each video's clips; (accuracy, labels (V,), predictions (V,))."""
    names, inverse = np.unique(np.asarray(videos).astype(str), return_inverse=True)
    sums = np.zeros((len(names), scores.shape[1]))
    np.add.at(sums, inverse, scores)  # (V, C) summed clip scores
    video_labels = np.zeros(len(names), np.int64)
    video_labels[inverse] = labels
    predictions = sums.argmax(axis=1)
    return float((predictions == video_labels).mean()), video_labels, predictions


def _full_scores(result, num_classes: int) -> np.ndarray:
    """Probe scores over the classes seen in training -> (N, num_classes)."""
    scores = np.zeros((len(result.scores), num_classes))
    scores[:, result.classes] = result.scores
    return scores


def _outcome(protocol, modality, encoder, evaluation, scores, data: DownstreamData) -> Outcome:
    labels = data.cache.labels[evaluation.test]
    clip_accuracy = float((scores.argmax(axis=1) == labels).mean())
    video_accuracy, video_labels, video_predictions = video_level(scores, labels, data.videos[evaluation.test])
    return Outcome(protocol, modality, encoder, evaluation.name, clip_accuracy, video_accuracy,
                   video_labels, video_predictions)


def probe_outcomes(model: AVModel, data: DownstreamData, cfg: PretrainConfig, settings: DownstreamConfig,
                   modality: str, encoder_name: str, protocols) -> list[Outcome]:
    """Linear and/or kNN probes on every evaluation; features are extracted once per clip."""
    needed = np.unique(np.concatenate([np.concatenate([e.train, e.test, e.val]) for e in data.evaluations]))
    extracted = clip_features(backbone(model, modality), data, needed, cfg, modality,
                              eval_windows=settings.eval_windows, device=settings.device)
    features = np.zeros((len(data.cache), extracted.shape[1]), np.float32)
    features[needed] = extracted
    labels, num_classes = data.cache.labels, len(data.class_names)
    outcomes = []
    for evaluation in data.evaluations:
        train_x, train_y = features[evaluation.train], labels[evaluation.train]
        test_x, test_y = features[evaluation.test], labels[evaluation.test]
        if "linear" in protocols:
            has_val = len(evaluation.val) > 0
            result = linear_probe(train_x, train_y, test_x, test_y,
                                  features[evaluation.val] if has_val else None, labels[evaluation.val] if has_val else None)
            outcomes.append(_outcome("linear", modality, encoder_name, evaluation,
                                     _full_scores(result, num_classes), data))
        if "knn" in protocols:
            result = knn_probe(train_x, train_y, test_x, test_y, k=settings.knn_k)
            outcomes.append(_outcome("knn", modality, encoder_name, evaluation, _full_scores(result, num_classes), data))
    return outcomes


class Classifier(nn.Module):
    """A backbone and a new linear layer on its pooled feature (the fine-tuning model)."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # (B, F) -> (B, C) logits


def finetune_scores(model: AVModel, data: DownstreamData, evaluation: Evaluation, cfg: PretrainConfig,
                    settings: DownstreamConfig, modality: str) -> np.ndarray:
    """Fine-tune a copy of the backbone + a linear layer on ``evaluation.train`` for
    ``settings.epochs`` epochs (AdamW, cosine decay, cross-entropy, the pretraining augmentations on
    random windows); return softmax scores (N_test, C) averaged over ``eval_windows`` windows."""
    from avlib.data.dataset import derive_seed

    torch.manual_seed(settings.seed)
    classifier = Classifier(copy.deepcopy(backbone(model, modality)), len(data.class_names)).to(settings.device)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    train_set = ClipWindows(data.cache, evaluation.train, cfg, modality, train=True)
    batch_size = min(settings.batch_size, len(train_set))
    steps_per_epoch = max(1, len(train_set) // batch_size)  # the last incomplete batch is dropped
    total_steps = settings.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(settings.seed)
    progress = None
    if settings.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, desc=f"fine-tune {modality} {evaluation.name}", unit="step", leave=False)
    classifier.train()
    step = 0
    for _epoch in range(settings.epochs):
        order = torch.randperm(len(train_set), generator=generator).tolist()
        for begin in range(0, steps_per_epoch * batch_size, batch_size):
            items = [(p, derive_seed(settings.seed, 7, step, slot)) for slot, p in enumerate(order[begin:begin + batch_size])]
            x, y = next(_batches(train_set, items, batch_size))
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * settings.lr * (1 + math.cos(math.pi * step / total_steps))
            loss = nn.functional.cross_entropy(classifier(x.to(settings.device)), y.to(settings.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss.item():.3f}")
    if progress is not None:
        progress.close()
    classifier.eval()
    test_set = ClipWindows(data.cache, evaluation.test, cfg, modality, train=False, eval_windows=settings.eval_windows)
    scores = np.zeros((len(test_set), len(data.class_names)))
    with torch.no_grad():
        for window in range(settings.eval_windows):
            parts = [torch.softmax(classifier(x.to(settings.device)), dim=1).cpu().numpy()
                     for x, _ in _batches(test_set, [(p, window) for p in range(len(test_set))], 64)]
            scores += np.concatenate(parts)
    return scores / settings.eval_windows


# ----------------------------------------------------------------------------- the whole evaluation


@dataclass
class DownstreamResults:
    settings: DownstreamConfig
    dataset: str
    class_names: list[str]
    outcomes: list[Outcome]
    check_summary: str = ""

    def table(self) -> list[dict]:
        """Mean and sample std over splits/folds per (protocol, modality, encoder)."""
        groups: dict[tuple, list[Outcome]] = {}
        for o in self.outcomes:
            groups.setdefault((o.protocol, o.modality, o.encoder), []).append(o)
        rows = []
        for (protocol, modality, encoder), items in groups.items():
            clip = np.array([o.clip_accuracy for o in items])
            video = np.array([o.video_accuracy for o in items])
            rows.append({"protocol": protocol, "modality": modality, "encoder": encoder, "splits": len(items),
                         "clip_mean": float(clip.mean()), "clip_std": float(clip.std(ddof=1)) if len(items) > 1 else 0.0,
                         "video_mean": float(video.mean()),
                         "video_std": float(video.std(ddof=1)) if len(items) > 1 else 0.0})
        return rows

    def markdown(self) -> str:
        unit = "folds" if self.dataset == "esc50" else "splits"
        lines = [f"| protocol | modality | encoder | clip-level accuracy | video-level accuracy | {unit} |",
                 "|---|---|---|---:|---:|---:|"]
        for row in self.table():
            spread = (lambda m, s: f"{100 * m:.1f} ± {100 * s:.1f}") if row["splits"] > 1 else (lambda m, s: f"{100 * m:.1f}")
            lines.append(f"| {row['protocol']} | {row['modality']} | {row['encoder']} | "
                         f"{spread(row['clip_mean'], row['clip_std'])} | {spread(row['video_mean'], row['video_std'])} | "
                         f"{row['splits']} |")
        return "\n".join(lines)

    def confusion(self, protocol: str, modality: str, encoder: str = PRETRAINED) -> tuple[np.ndarray, np.ndarray]:
        """Video-level (labels, predictions) pooled over every split/fold of one protocol."""
        items = [o for o in self.outcomes if (o.protocol, o.modality, o.encoder) == (protocol, modality, encoder)]
        return (np.concatenate([o.video_labels for o in items]), np.concatenate([o.video_predictions for o in items]))


def output_dir(settings: DownstreamConfig) -> Path:
    return Path(settings.run_dir) / "downstream" / settings.dataset


def evaluate(settings: DownstreamConfig) -> DownstreamResults:
    """Every protocol ``settings`` selects, for the pretrained (and random-init) encoders."""
    protocols = protocols_for(settings)  # names checked before any work
    torch.set_num_threads(settings.num_threads)
    cfg, model = load_encoders(settings.run_dir, settings.checkpoint, settings.device)
    data = open_downstream(settings, cfg)
    encoders = [(PRETRAINED, model)] + ([(RANDOM_INIT, random_init_model(cfg, settings.device))] if settings.baseline else [])
    outcomes = []
    for encoder_name, encoder_model in encoders:
        for modality in data.modalities:
            if "finetune" in protocols:
                for evaluation in data.evaluations:
                    scores = finetune_scores(encoder_model, data, evaluation, cfg, settings, modality)
                    outcomes.append(_outcome("finetune", modality, encoder_name, evaluation, scores, data))
            probes = [p for p in protocols if p in ("linear", "knn")]
            if probes:
                outcomes += probe_outcomes(encoder_model, data, cfg, settings, modality, encoder_name, probes)
    return DownstreamResults(settings, data.name, data.class_names, outcomes, data.check_summary)


def write_results(results: DownstreamResults) -> dict[str, Path]:
    """``results.md`` / ``results.json`` and one confusion matrix per (protocol, modality) into
    ``run_dir/downstream/<dataset>/``, and a copy of the table into ``reports_dir`` when one is given
    (the study's report collects them there; by default nothing is written outside the run folder)."""
    from avlib.analysis.plots import plot_confusion, save

    settings = results.settings
    folder = output_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    run_name = Path(settings.run_dir).resolve().name
    title = (f"# Downstream: {results.dataset}, run `{run_name}`, checkpoint `{settings.checkpoint}`\n\n"
             f"Accuracy in %, mean ± sample std over {'folds' if results.dataset == 'esc50' else 'splits'}. "
             f"Settings: {json.dumps(settings.to_dict(), sort_keys=True)}\n\n")
    text = title + results.markdown() + "\n" + (f"\n{results.check_summary}\n" if results.check_summary else "")
    paths = {"markdown": folder / "results.md", "json": folder / "results.json"}
    paths["markdown"].write_text(text)
    per_split = [{k: v for k, v in asdict(o).items() if k not in ("video_labels", "video_predictions")}
                 for o in results.outcomes]
    paths["json"].write_text(json.dumps({"settings": settings.to_dict(), "classes": results.class_names,
                                         "table": results.table(), "per_split": per_split}, indent=2) + "\n")
    if settings.reports_dir is not None:
        reports = Path(settings.reports_dir)
        reports.mkdir(parents=True, exist_ok=True)
        paths["report"] = reports / f"downstream_{results.dataset}_{run_name}.md"
        paths["report"].write_text(text)
    import matplotlib.pyplot as plt

    for protocol, modality in sorted({(o.protocol, o.modality) for o in results.outcomes if o.encoder == PRETRAINED}):
        labels, predictions = results.confusion(protocol, modality)
        accuracy = float((labels == predictions).mean())
        figure = plot_confusion(labels, predictions, results.class_names,
                                title=f"{results.dataset} {modality}: {protocol}, video-level accuracy {accuracy:.3f}")
        paths[f"confusion_{protocol}_{modality}"] = save(figure, folder / f"confusion_{protocol}_{modality}.png")
        plt.close(figure)
    return paths
