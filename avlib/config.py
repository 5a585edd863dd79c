"""One frozen dataclass per notebook: defaults and validation in one place.

Each field maps one-to-one onto a literal in the notebook's ``parameters`` cell, so that
``papermill notebooks/02_pretrain.ipynb out.ipynb -p sampler random`` and
``PretrainConfig(sampler="random")`` mean exactly the same run.  ``from_dict`` rejects unknown
keys (a misspelt papermill parameter should fail loudly, not silently fall back to a default).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

#: Classes the embedded dataset defines (10 shapes x 5 motions, ``avlib.data.synthetic``).
EMBEDDED_MAX_CLASSES = 50
#: Name of the embedded procedural dataset (``avlib.data.synthetic``).
EMBEDDED_DATASET = "avsynth"
#: Values of ``PretrainConfig.objective`` (``avlib.samplers.intra``); all but "cross" train on two windows per clip.
OBJECTIVES = ("cross", "joint", "intra")


class ConfigError(ValueError):
    """A parameter has a value outside what the run can use; the message names the parameter."""


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"parameter {name}={value!r} is not valid; valid choices: {sorted(choices)}")


def choose(name: str, value: str, registry: Mapping[str, T]) -> T:
    """``registry[value]``, or a :class:`ConfigError` naming parameter ``name`` and the valid choices.

    Names of registered things (samplers, encoders, selectors, benchmark protocols) are checked where
    a registry resolves them, with this one message: ``config.py`` stays on the ground floor and
    imports nothing from the layers that fill the registries.
    """
    _check_choice(name, value, registry.keys())
    return registry[value]


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"parameter {name}={value!r} must be {bound}")


def _check_fraction(name: str, value: float, *, closed_top: bool = False) -> None:
    if not (0.0 <= value < 1.0 or (closed_top and value == 1.0)):
        raise ConfigError(f"parameter {name}={value!r} must lie in [0, 1{']' if closed_top else ')'}")


def _kinds(field: dataclasses.Field) -> list[str]:
    """The alternatives of a field's annotation: ``"int | None"`` -> ``["int", "None"]``."""
    return [part.strip() for part in str(field.type).split("|")]


def _fits(value: Any, kind: str) -> bool | None:
    """Whether ``value`` is of the annotated ``kind``; None for kinds not checked here (tuples, ...)."""
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return None


def _parameter_cell_names(cells) -> set[str]:
    """Names assigned by the cells that hold only literal assignments (a notebook's ``parameters``
    cell and the one papermill injects after it), among the cell sources ``cells``."""
    names: set[str] = set()
    for source in cells:
        try:
            tree = ast.parse(source) if isinstance(source, str) else None
        except SyntaxError:
            continue
        if tree is None or not tree.body:
            continue
        statements = tree.body
        if all(isinstance(s, ast.Assign) and all(isinstance(t, ast.Name) for t in s.targets)
               and _is_literal(s.value) for s in statements):
            names |= {t.id for s in statements for t in s.targets}
    return names


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False


def repository_root(start: str | Path | None = None) -> Path | None:
    """The avlib checkout at or above ``start`` (default: the working directory): the nearest folder
    holding both ``pyproject.toml`` and the ``avlib/`` package; None outside a checkout."""
    here = Path.cwd() if start is None else Path(start)
    for folder in (here.resolve(), *here.resolve().parents):
        if (folder / "pyproject.toml").is_file() and (folder / "avlib" / "__init__.py").is_file():
            return folder
    return None


def work_from_repository_root(start: str | Path | None = None) -> Path:
    """Make the checkout's root the working directory; returns the folder relative paths now resolve from.

    Every notebook calls this before it reads its parameters, so that a relative path among them
    (``run_dir``, ``run_dirs``, ``output_dir``, ``dataset``, ``dataset_root``, ``reports_dir``) means
    the same wherever the kernel started: JupyterLab starts it in the notebook's folder
    (``notebooks/``), papermill and ``make`` in the folder they were run from (the root), and the
    README's paths (``runs/active``) are written from the root.  The strings stay as they were given
    (a run's ``config.json`` keeps ``runs/active``, not this machine's absolute path).  Outside a
    checkout (a copied notebook, a test's temporary folder) the working directory is left as it is.
    """
    root = repository_root(start)
    if root is None:
        return Path.cwd()
    if Path.cwd().resolve() != root:
        print(f"relative paths resolve from the repository root {root} (the kernel started in {Path.cwd()})")
        os.chdir(root)
    return root


class _Config:
    """Shared helpers for the frozen configs below."""

    def _check_types(self) -> None:
        """Every field holds a value of its annotated type: ``shuffle_bn="false"`` (a truthy string)
        or ``max_steps="none"`` fail here, naming the parameter, instead of misbehaving later."""
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            verdicts = [_fits(value, kind) for kind in _kinds(field)]
            if None not in verdicts and not any(verdicts):
                raise ConfigError(f"parameter {field.name}={value!r}: expected {field.type}, "
                                  f"got {type(value).__name__}")

    @classmethod
    def parse_value(cls, name: str, text: str) -> Any:
        """Command-line text for parameter ``name`` as the type its field is annotated with.

        The one parser behind every command line that takes parameters as text (``python -m
        avlib.train --epochs 2`` and ``python -m avlib.study --set epochs=2``), so ``"None"``,
        ``"true"`` and ``"2"`` mean the same wherever they are typed.  Text for a ``str`` field stays
        text; a value that does not fit the annotation raises :class:`ConfigError` naming the parameter.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if name not in fields:
            raise cls.unknown_parameter_error([name], f"for {cls.__name__}")
        annotation, kinds = fields[name].type, _kinds(fields[name])
        lowered = text.strip().lower()
        if "None" in kinds and lowered in ("none", "null"):
            return None
        try:
            if "bool" in kinds:
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError(text)
            if "int" in kinds:
                return int(text)
            if "float" in kinds:
                return float(text)
        except ValueError:
            raise ConfigError(f"parameter {name}={text!r}: expected {annotation}") from None
        return text

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def unknown_parameter_error(cls, unknown: list[str], where: str) -> ConfigError:
        """The error for misspelt parameter names: each with its closest valid name, and where the
        valid ones are listed."""
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        described = []
        for name in sorted(unknown):
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return ConfigError(f"unknown parameter {', '.join(described)} {where}; the valid parameters are the fields "
                           f"of {cls.__name__} in avlib/config.py (also listed with their defaults in the "
                           f"notebook's parameters cell)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise cls.unknown_parameter_error(unknown, f"for {cls.__name__}")
        return cls(**values)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]):
        """Build from a notebook's globals: exactly the dataclass's fields, each of which must be present.

        A name that papermill injected (``-p sampler_typo x``) or that a cell of plain assignments set,
        but that is no field, is refused before any work: papermill itself only warns and runs on,
        and a misspelt parameter would silently run another experiment than the one asked for.  The
        kernel's input history (IPython's ``In``) tells which cells were such parameter cells.
        """
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(_parameter_cell_names(namespace.get("In", ())) - set(names))
        if unknown:
            raise cls.unknown_parameter_error(unknown, "given to this notebook")
        missing = [name for name in names if name not in namespace]
        if missing:
            raise ConfigError(f"the parameters cell lacks {missing} (fields of {cls.__name__})")
        return cls(**{name: namespace[name] for name in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _check_embedded_structure(cfg) -> None:
    """The embedded dataset's structure parameters (shared by the data and pretraining notebooks)."""
    if not 2 <= cfg.num_classes <= EMBEDDED_MAX_CLASSES:
        raise ConfigError(f"parameter num_classes={cfg.num_classes} must lie in [2, {EMBEDDED_MAX_CLASSES}] "
                          "(the embedded dataset's class definitions)")
    if not 1.0 <= cfg.class_imbalance <= 1000.0:
        raise ConfigError(f"parameter class_imbalance={cfg.class_imbalance!r} must lie in [1, 1000] (1 = balanced)")
    _check_positive("clips_per_source", cfg.clips_per_source)


@dataclass(frozen=True)
class PretrainConfig(_Config):
    """Parameters of ``notebooks/02_pretrain.ipynb`` (cross-modal MoCo pretraining + probes)."""

    # what to train on and with which method
    sampler: str = "active"  # "random" is the MoCo baseline; see avlib.samplers.SAMPLERS
    dataset: str = EMBEDDED_DATASET  # the embedded dataset's name, or a path to a manifest CSV
    dataset_root: str | None = None  # where a manifest's relative paths resolve (default: its folder)
    # where training windows come from (avlib.data.sources): "cache" (decoded once, the first clip_seconds of
    # each clip), "stream" (decoded on the fly from the manifest's files, a random window over the whole clip),
    # "shards" (streamed from `python -m avlib.data.shards` output); "auto": shards for a shard folder, else cache
    data_source: str = "auto"
    decoder: str = "auto"  # stream/shards: "torchcodec" (where FFmpeg's libraries load), "pyav", or "auto"
    run_dir: str = "runs/default"
    seed: int = 0
    # embedded dataset (ignored for a manifest path); its seed is separate from the training seed
    dataset_seed: int = 0
    num_classes: int = 10
    # 120, not 60: at 60 the main job's audio probe gained +14/+3/-5 points over random init (README)
    clips_per_class: int = 120
    faulty_pair_rate: float = 0.0  # share of TRAIN clips whose audio is another clip's (val/test stay clean)
    # the structure of real video (avlib.data.synthetic); the defaults reproduce the balanced dataset
    class_imbalance: float = 1.0  # most / least frequent class in the train split (geometric sizes)
    clips_per_source: int = 1  # clips cut from one source "video" (shared look and sound, one split)
    av_sync: bool = True  # False: sound onsets independent of the visual events (only the class links them)
    # decoding and windows
    clip_seconds: float = 3.0  # length of every clip in the decoded cache (embedded clips have this duration)
    fps: int = 8
    frame_size: int = 64
    sample_rate: int = 16000
    window_s: float = 1.5  # the video window (frames = window_s * fps)
    audio_window_s: float = 1.5  # the audio window, centred on the video window
    audio_offset_s: float = 0.0  # training: the audio centre moves by up to this many seconds (0 = aligned)
    crop_size: int = 48
    # training colour jitter's hue: "hsv" (torchvision's) or "yiq" (a chroma rotation, ~4x cheaper video
    # augmentation at 112 px: for large frames, where the HSV round trip costs more than decoding)
    hue_space: str = "hsv"
    # training video augmentation (avlib.data.augment.VIDEO_AUGMENTS): "light" (mild crop and colour jitter) or
    # "strong" (SimCLR's: wider crop scales, colour jitter 0.8 with p 0.8, grey with p 0.2)
    video_augment: str = "light"
    # video input normalisation (avlib.data.augment.VIDEO_NORMALIZATIONS): "dataset" (one mean and std for every
    # clip) or "frame" (each frame and channel standardised over its pixels: a clip's colour and brightness gone)
    video_normalize: str = "dataset"
    n_mels: int = 64
    on_bad_clip: str = "skip"  # "skip" (report and drop the row) or "raise"
    min_clips_per_class: int = 2  # a class with fewer training clips is warned about (a misspelt label?)
    # model
    video_encoder: str = "light3d"
    audio_encoder: str = "light2d"
    embedding_dim: int = 128
    # contrastive learning
    epochs: int = 45  # 990 steps at the default size; the study runs 60 epochs at 60 clips per class
    batch_size: int = 32
    dictionary_size: int = 256
    temperature: float = 0.07
    momentum: float = 0.99
    mask_same_clip: bool = True  # drop stale queue copies of the query's own clip from its negatives
    # what the encoders are trained to tell apart (avlib/samplers/intra.py): "cross" (cross-modal InfoNCE, the
    # seed papers' objective), "joint" (cross-modal + intra_weight x intra-modal InfoNCE between two augmented
    # windows of each clip, per modality, each with its own FIFO queue of dictionary_size keys; AVID, Morgado
    # et al. 2021, Sec. 3) or "intra" (the intra-modal terms alone: the control)
    objective: str = "cross"
    intra_weight: float = 1.0  # joint: weight of the intra-modal term (loss = cross + intra_weight x intra)
    # active sampler (sampler="active"; CM-ACC)
    active_embedding: str = "key_grad"  # "key_grad" (official code), "badge" (paper/BADGE) or "feature"
    active_selector: str = "kmeanspp"  # "kmeanspp", "kcenter", "lloyd_nearest" (official code) or "random"
    # where candidates come from (avlib/samplers/active.py): "batch" (B // factor of the batch enter), "fresh"
    # (extra clips encoded), "bank" (every clip's latest key), "backlog" (the first, delaying pool), "official"
    active_candidates: str = "batch"
    active_candidate_factor: int = 3  # batch/fresh/bank: candidates per entering key (1/this of the batch/fresh ones enter)
    active_dictionary_aware: bool = False  # kmeanspp/kcenter: the dictionary's surviving keys count as chosen centres
    active_pool_factor: int = 4  # backlog/official: candidate pool = this x batch_size recent keys per modality
    # memory-bank instance discrimination (sampler="xid" or "robust_xid"; Morgado et al. 2021)
    bank_negatives: int = 256  # negatives per query, drawn uniformly from the other modality's memory bank
    bank_momentum: float = 0.5  # a clip's bank slot <- normalise(m * slot + (1 - m) * its new embedding)
    robust_weights: bool = True  # robust_xid: weight each positive by its cross-modal agreement (faulty positives)
    # robust_xid: "bank" scores a pair by its clip's video . audio memory-bank slots against every training
    # clip's (the paper, Sec. 3.2); "batch" by online . momentum agreement against the step's batch.
    # "bank" (the paper's, Sec. 3.2) is the default: at the study's 60 epochs the bank agreement ranked the
    # corrupted pairs better than the batch score (AUROC 0.73 vs 0.69 at faulty_pair_rate 0.3, README); runs of
    # 60-120 steps cannot separate them (every AUROC 0.49-0.58 with either source)
    robust_weight_source: str = "bank"
    robust_soft_targets: bool = True  # robust_xid: soft targets over bank neighbours (faulty negatives)
    robust_warmup_epochs: int = 10  # robust_xid: plain xID for this many epochs first
    weight_floor: float = 0.3  # robust_xid: the least weight a positive can get
    weight_sharpness: float = 1.0  # robust_xid: width of the weight's sigmoid, in standard deviations of agreement
    soft_target_neighbors: int = 5  # robust_xid: neighbours per instance in the soft target
    soft_target_mix: float = 0.5  # robust_xid: target is (1 - mix) * one-hot + mix * neighbour distribution
    soft_target_space: str = "both"  # robust_xid: neighbours by "within"-modal, "cross"-modal or "both" similarities
    # label-aware sampling (sampler="soft_positive", "class_aware" or "hard_negative"; Wang et al. 2024)
    label_source: str = "ground_truth"  # "ground_truth" (the manifest's labels) or "kmeans" (pseudo-labels)
    label_noise: float = 0.0  # ground_truth: this share of TRAINING clips' labels -> a random other class (seed)
    label_warmup_epochs: int = 10  # label-aware samplers act as "random" for this many epochs first
    pseudo_label_every: int = 20  # label_source="kmeans": steps between re-clusterings of the memory bank
    pseudo_label_clusters: int = 0  # label_source="kmeans": clusters (0 = the dataset's class count)
    soft_positive_rate: float = 0.5  # soft_positive: share of queries whose positive is another clip of its class
    hard_negative_count: int = 64  # hard_negative: the most similar other-class keys kept per query
    subset_fraction: float = 1.0  # train on this stratified share of the training clips (data-size studies)
    # optimisation
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    # execution
    device: str = "cpu"
    num_threads: int = 1  # torch intra-op threads (1 measured fastest on 2 shared cores)
    num_workers: int = 1  # data-loading processes (0 = in the training process)
    checkpoint_every: int = 50
    resume: bool = True
    max_steps: int | None = None  # stop early (tests, smoke runs); None = epochs * steps per epoch
    probe: bool = True
    # a folder of random-init baselines shared by runs whose encoders start identical ("" = none): the
    # study's runs of one seed differ only in what they train (avlib.train.run_folder.shared_random_init_path)
    random_init_cache: str = ""
    progress: bool = True
    snapshot_every: int = 50  # steps between dictionary snapshots in run_dir/snapshots/ (0 = none)
    monitor_every: int = -1  # steps between online kNN monitors on val clips (-1 = once an epoch, 0 = off)
    monitor_clips: int = 100  # the monitor's fixed stratified subset of the val split (clips)
    tensorboard: bool = True  # TensorBoard event files in run_dir/tensorboard (scalars, projector, hparams)
    # scale-out (avlib.train.distributed): torchrun processes, batch norm across ranks, speed options
    nproc_per_node: int = 1  # >1: the notebook launches torchrun with this many processes (batch_size is global)
    sync_batchnorm: bool = True  # with >1 process, batch-norm statistics span the global batch
    shuffle_bn: bool = False  # MoCo's shuffling BN: keys computed in key_bn_groups random groups of the batch
    key_bn_groups: int = 0  # shuffle_bn: groups per global batch (0 = one per process)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; for GPUs)
    channels_last: bool = False  # channels-last memory format for the encoders (for GPUs)
    compile: bool = False  # torch.compile the encoders
    check_ranks: bool = True  # with >1 process, compare the dictionaries of every rank by hash after each step

    def __post_init__(self) -> None:
        # sampler, active_embedding, active_selector and the encoders name registered things: the
        # registries check them (avlib.train.check_names, before any work), see `choose`
        self._check_types()
        _check_choice("optimizer", self.optimizer, {"sgd", "adamw"})
        _check_choice("on_bad_clip", self.on_bad_clip, {"skip", "raise"})
        _check_choice("soft_target_space", self.soft_target_space, {"within", "cross", "both"})
        _check_choice("robust_weight_source", self.robust_weight_source, {"bank", "batch"})
        _check_choice("label_source", self.label_source, {"ground_truth", "kmeans"})
        _check_fraction("label_noise", self.label_noise)
        _check_choice("precision", self.precision, {"fp32", "bf16"})
        _check_choice("data_source", self.data_source, {"auto", "cache", "stream", "shards"})
        _check_choice("decoder", self.decoder, {"auto", "torchcodec", "pyav"})
        _check_choice("hue_space", self.hue_space, {"hsv", "yiq"})
        _check_choice("video_augment", self.video_augment, {"light", "strong"})
        _check_choice("video_normalize", self.video_normalize, {"dataset", "frame"})
        _check_choice("active_candidates", self.active_candidates, {"batch", "fresh", "bank", "backlog", "official"})
        _check_choice("objective", self.objective, set(OBJECTIVES))
        _check_positive("intra_weight", self.intra_weight)
        if not self.device.startswith(("cpu", "cuda")):
            raise ConfigError(f"parameter device={self.device!r} must be 'cpu', 'cuda' or 'cuda:N'")
        for name in ("num_classes", "clips_per_class", "fps", "frame_size", "sample_rate", "crop_size",
                     "n_mels", "embedding_dim", "epochs", "batch_size", "dictionary_size", "active_pool_factor",
                     "active_candidate_factor", "num_threads", "checkpoint_every", "bank_negatives", "soft_target_neighbors",
                     "hard_negative_count", "pseudo_label_every", "nproc_per_node"):
            _check_positive(name, getattr(self, name))
        for name in ("clip_seconds", "window_s", "audio_window_s", "temperature", "lr"):
            _check_positive(name, getattr(self, name))
        _check_positive("audio_offset_s", self.audio_offset_s, allow_zero=True)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("warmup_steps", self.warmup_steps, allow_zero=True)
        _check_positive("num_workers", self.num_workers, allow_zero=True)
        _check_positive("min_clips_per_class", self.min_clips_per_class, allow_zero=True)
        _check_positive("monitor_clips", self.monitor_clips)
        if self.monitor_every < -1:
            raise ConfigError(f"parameter monitor_every={self.monitor_every!r} must be a number of steps, "
                              "-1 (once an epoch) or 0 (off)")
        _check_positive("weight_sharpness", self.weight_sharpness)
        for name in ("robust_warmup_epochs", "label_warmup_epochs", "pseudo_label_clusters", "snapshot_every",
                     "key_bn_groups"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        _check_fraction("bank_momentum", self.bank_momentum)
        _check_fraction("weight_floor", self.weight_floor, closed_top=True)
        _check_fraction("soft_target_mix", self.soft_target_mix, closed_top=True)
        _check_fraction("soft_positive_rate", self.soft_positive_rate, closed_top=True)
        if not 0.0 < self.subset_fraction <= 1.0:
            raise ConfigError(f"parameter subset_fraction={self.subset_fraction!r} must lie in (0, 1]")
        _check_fraction("momentum", self.momentum)
        _check_fraction("faulty_pair_rate", self.faulty_pair_rate)
        _check_embedded_structure(self)
        if self.batch_size < 2:
            raise ConfigError("parameter batch_size must be >= 2: each query needs other clips as negatives")
        if self.batch_size % self.nproc_per_node:
            raise ConfigError(f"parameter batch_size={self.batch_size} (the global batch) must be a multiple of "
                              f"nproc_per_node={self.nproc_per_node}")
        if self.shuffle_bn and self.key_bn_groups and self.batch_size % self.key_bn_groups:
            raise ConfigError(f"parameter batch_size={self.batch_size} must be a multiple of "
                              f"key_bn_groups={self.key_bn_groups}")
        if self.crop_size > self.frame_size:
            raise ConfigError(f"parameter crop_size={self.crop_size} must be <= frame_size={self.frame_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"parameter max_steps={self.max_steps!r} must be None or >= 1")
        for name in ("window_s", "audio_window_s"):
            if getattr(self, name) > self.clip_seconds:
                raise ConfigError(f"parameter {name}={getattr(self, name)} must be <= clip_seconds={self.clip_seconds}")
        if round(self.window_s * self.fps) < 4:
            raise ConfigError(f"parameters window_s*fps={self.window_s * self.fps:g} must give >= 4 frames")

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * self.fps))

    @property
    def window_samples(self) -> int:
        return int(round(self.audio_window_s * self.sample_rate))


@dataclass(frozen=True)
class DataConfig(_Config):
    """Parameters of ``notebooks/01_data.ipynb`` (generate/load a dataset and look at it)."""

    dataset: str = EMBEDDED_DATASET
    dataset_root: str | None = None
    num_classes: int = 10
    clips_per_class: int = 120
    faulty_pair_rate: float = 0.0
    dataset_seed: int = 0
    clip_seconds: float = 3.0
    fps: int = 8
    frame_size: int = 64
    sample_rate: int = 16000
    on_bad_clip: str = "skip"
    min_clips_per_class: int = 2
    show_clips: int = 4
    class_imbalance: float = 1.0  # most / least frequent class in the train split (geometric sizes)
    clips_per_source: int = 1  # clips cut from one source "video" (shared look and sound, one split)
    av_sync: bool = True  # False: sound onsets independent of the visual events

    def __post_init__(self) -> None:
        self._check_types()
        _check_choice("on_bad_clip", self.on_bad_clip, {"skip", "raise"})
        for name in ("num_classes", "clips_per_class", "clip_seconds", "fps", "frame_size", "sample_rate"):
            _check_positive(name, getattr(self, name))
        _check_positive("show_clips", self.show_clips, allow_zero=True)
        _check_positive("min_clips_per_class", self.min_clips_per_class, allow_zero=True)
        _check_fraction("faulty_pair_rate", self.faulty_pair_rate)
        _check_embedded_structure(self)


@dataclass(frozen=True)
class DownstreamConfig(_Config):
    """Parameters of ``notebooks/04_downstream.ipynb``: a pretrained checkpoint on a downstream benchmark.

    ``dataset="run"`` probes the run's own pretraining dataset (the embedded one by default);
    ``ucf101`` / ``hmdb51`` / ``esc50`` read the user's copy at ``dataset_root`` with the official
    splits in ``metadata`` (default: ``data_manifests/<dataset>``), see ``avlib.eval.downstream``.
    """

    #: a run folder written by 02_pretrain (results go to run_dir/downstream), or a glob pattern standing for
    #: the most recently finished run folder it matches (the default: the newest run directly under runs/)
    run_dir: str = "runs/*"
    checkpoint: str = "last"  # 'last', a file in run_dir/checkpoints, or the path of a .pt checkpoint
    dataset: str = "run"  # 'run' (the run's own dataset), 'ucf101', 'hmdb51' or 'esc50'
    dataset_root: str | None = None  # your copy of the benchmark (the folder holding the class folders or audio/)
    metadata: str | None = None  # folder of the official split files (None: data_manifests/<dataset>)
    protocol: str = "standard"  # 'standard' (the dataset's usual set), 'linear', 'knn', 'finetune', 'probes' or 'all'
    split: int = 0  # 0: average over every official split (or fold); k: split or fold k only
    baseline: bool = True  # also evaluate the random-init encoders (same architecture and seed)
    clip_seconds: float = 0.0  # length of the decoded clips (0: the run's clip_seconds)
    clips_per_video: int = 3  # clips per video of a benchmark, averaged for video-level accuracy
    num_threads: int = 1  # torch intra-op threads
    num_workers: int = 2  # decoding processes (check and prepare)
    device: str = "cpu"  # 'cpu', 'cuda' or 'cuda:N' for feature extraction and fine-tuning
    eval_windows: int = 3  # windows averaged per clip
    knn_k: int = 5  # neighbours of the kNN probe
    epochs: int = 10  # fine-tuning epochs
    lr: float = 1e-3  # fine-tuning learning rate (AdamW, cosine decay)
    batch_size: int = 32  # fine-tuning batch size
    weight_decay: float = 1e-4  # fine-tuning weight decay
    seed: int = 0  # fine-tuning seed (head initialisation, batches, augmentation)
    reports_dir: str | None = None  # a copy of the results table also goes here (None: only run_dir/downstream)
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        self._check_types()  # dataset and protocol: avlib.eval.downstream.protocols_for checks them
        if self.dataset != "run" and not self.dataset_root:
            raise ConfigError(f"parameter dataset={self.dataset!r} needs dataset_root (your copy of it)")
        for name in ("num_threads", "eval_windows", "knn_k", "epochs", "lr", "batch_size", "clips_per_video"):
            _check_positive(name, getattr(self, name))
        for name in ("split", "num_workers", "clip_seconds", "weight_decay"):
            _check_positive(name, getattr(self, name), allow_zero=True)
        if self.batch_size < 2:
            raise ConfigError("parameter batch_size must be >= 2 (batch normalisation while fine-tuning)")
        if not self.device.startswith(("cpu", "cuda")):
            raise ConfigError(f"parameter device={self.device!r} must be 'cpu', 'cuda' or 'cuda:N'")


def _path_list(name: str, value: Any) -> tuple[str, ...]:
    """A list parameter of paths as a tuple of strings.  papermill's ``-y "run_dirs: [a, b]"`` gives a
    list; its ``-p run_dirs "['a', 'b']"`` gives the list's text, read here as a Python literal; a
    plain string is one path."""
    if isinstance(value, str) and value.strip().startswith(("[", "(")):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ConfigError(f"parameter {name}={value!r} is neither a path nor a Python list of quoted paths; "
                              f"with papermill pass a list as -y \"{name}: [runs/a, runs/b]\" "
                              f"(or -p {name} \"['runs/a', 'runs/b']\")") from None
    items = (value,) if isinstance(value, str) else tuple(value)
    bad = [item for item in items if not isinstance(item, str)]
    if bad:
        raise ConfigError(f"parameter {name}={value!r}: expected paths (strings), got {bad!r}")
    return items


@dataclass(frozen=True)
class DiversityConfig(_Config):
    """Parameters of ``notebooks/03_negative_diversity.ipynb`` (dictionary diversity across runs)."""

    #: run folders to compare, or glob patterns each standing for the run folders (with config.json) it
    #: matches: the default is every run folder directly under runs/ (not runs/study's nested ones)
    run_dirs: tuple[str, ...] = ("runs/*",)
    snapshot_step: int = -1  # snapshot shown in the UMAP and the inspector (-1: each run's last)
    modality: str = "video"  # dictionary shown: "video" (negatives of audio queries) or "audio"
    output_dir: str = "runs/negative_diversity"  # where the figures and the table are written (reports/ only on purpose)
    umap: bool = True  # draw the UMAP figure (needs the runs' checkpoints; ~30 s for numba on first use)
    umap_seed: int = 0
    umap_neighbors: int = 15
    smooth: int = 10  # trailing mean window of the curves, in steps
    top_k: int = 6  # negatives listed by the inspector
    num_threads: int = 1

    def __post_init__(self) -> None:
        self._check_types()
        run_dirs = _path_list("run_dirs", self.run_dirs)
        object.__setattr__(self, "run_dirs", run_dirs)  # papermill passes a list (-y "run_dirs: [a, b]")
        if not run_dirs:
            raise ConfigError("parameter run_dirs is empty: pass at least one run folder")
        _check_choice("modality", self.modality, {"video", "audio"})
        if self.snapshot_step < -1:
            raise ConfigError(f"parameter snapshot_step={self.snapshot_step!r} must be a step >= 0, or -1 (the last)")
        for name in ("umap_neighbors", "smooth", "top_k", "num_threads"):
            _check_positive(name, getattr(self, name))
