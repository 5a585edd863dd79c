"""Downstream probes on frozen features: linear (logistic regression) and kNN, per modality.

A probe reads only the pooled backbone features (not the projection head), averaged over several
evenly spaced windows of each clip, from encoders in eval mode.  The linear probe's regularisation
is chosen on the validation split (when it has clips) and the accuracy is reported on the test
split, so the number is never tuned on what it reports.

Besides accuracy (which a frequent class dominates), each probe reports *balanced accuracy*, the
mean per-class recall over the classes with test clips, and *tail accuracy*, the mean recall of the
rarest third of the classes (:func:`tail_classes`): with ``class_imbalance`` > 1 the question is
whether a method's representation serves the rare classes too, which plain accuracy hides.

And a **low-shot linear probe** (``linear_5shot``): the same probe trained on only :data:`SHOTS` labelled
clips of each class, the mean over :data:`SHOT_DRAWS` seeded draws (the same clips for every run of a
dataset, so runs stay paired).  With all training labels a linear probe saturates once the classes are
separable: at ``dictionary_size``'s 18,000 training clips both ``random`` and ``active`` reached 99.6-99.8%
(random init 44.6%), which leaves no room to tell them apart; with 5 labels a class they reached 86.9 /
88.2% on video and 72.3 / 68.8% on audio against 10.4 / 9.5% at random init
(``reports/study/dictionary_size_schedule.md``).  Few labels is also how SSL
representations are usually compared when labels are scarce (semi-supervised evaluation).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from avlib.data.dataset import AVWindows, collate
from avlib.data.decode import DecodeError
from avlib.models.encoders import AVModel

C_GRID = (0.01, 0.1, 1.0, 10.0)
#: the low-shot probe: labelled training clips per class, draws averaged, and the draws' seed (fixed: every run
#: of a dataset gets the same labelled clips)
SHOTS = 5
SHOT_DRAWS = 3
SHOT_SEED = 0


@torch.no_grad()
def extract_features(model: AVModel, cache, indices, cfg, *, eval_windows: int = 3, batch_size: int = 64,
                     device: str = "cpu") -> dict[str, np.ndarray]:
    """Frozen features of clips ``indices``: {"video": (N, Fv), "audio": (N, Fa), "labels": (N,), "clips": (N,)}.

    A clip with a window that cannot be decoded (a streamed file or shard sample broken after validation)
    is left out of the features, with a warning naming it: a probe must not stop a finished run, and a
    clip's features must be its own (``clips`` holds the clip index of each row that is kept)."""
    was_training = model.training
    model.eval()
    indices = np.asarray(indices)
    dataset = AVWindows(cache, indices, cfg, train=False, eval_windows=eval_windows)
    sums: dict[str, np.ndarray] = {}  # modality -> (N, F) features summed over the windows
    broken: dict[int, str] = {}  # position -> why one of its windows failed
    for window in range(eval_windows):
        for begin in range(0, len(dataset), batch_size):
            positions, items = [], []
            for p in range(begin, min(begin + batch_size, len(dataset))):
                try:
                    items.append(dataset[(p, window)])
                    positions.append(p)
                except DecodeError as exc:
                    broken[p] = f"{cache.describe(int(indices[p]))}: {exc.reason}"
            if not items:
                continue
            batch = collate(items)
            video, audio = model.features(batch["video"].to(device), batch["audio"].to(device))
            for modality, feature in (("video", video), ("audio", audio)):
                values = feature.float().cpu().numpy()  # (b, F)
                total = sums.setdefault(modality, np.zeros((len(indices), values.shape[1]), np.float32))
                total[positions] += values
    model.train(was_training)
    keep = np.array([p not in broken for p in range(len(indices))], dtype=bool)
    if broken:
        first = next(iter(broken.values()))
        warnings.warn(f"{len(broken)} of {len(indices)} clips left out of the probe features: a window could not "
                      f"be decoded (first: {first})", stacklevel=2)
    features = {modality: total[keep] / eval_windows for modality, total in sums.items()}
    features["labels"] = np.asarray(cache.labels)[indices[keep]]
    features["clips"] = indices[keep]
    return features


@dataclass
class ProbeResult:
    accuracy: float
    predictions: np.ndarray
    details: dict = field(default_factory=dict)
    # class probabilities (N, len(classes)) for the labels seen in training, ``classes`` in order;
    # downstream video-level accuracy averages them over the clips of a video
    scores: np.ndarray | None = None
    classes: np.ndarray | None = None


def linear_probe(train_x, train_y, test_x, test_y, val_x=None, val_y=None) -> ProbeResult:
    """Standardised features -> multinomial logistic regression; C picked on val (else C=1)."""
    scaler = StandardScaler().fit(train_x)
    train_z, test_z = scaler.transform(train_x), scaler.transform(test_x)

    def fit(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000).fit(train_z, train_y)

    chosen_c, val_scores = 1.0, {}
    if val_x is not None and len(val_x) > 0:
        val_z = scaler.transform(val_x)
        val_scores = {c: float((fit(c).predict(val_z) == val_y).mean()) for c in C_GRID}
        chosen_c = max(C_GRID, key=lambda c: (val_scores[c], -abs(np.log10(c))))  # ties -> closer to C=1
    classifier = fit(chosen_c)
    predictions = classifier.predict(test_z)
    return ProbeResult(float((predictions == test_y).mean()), predictions, {"C": chosen_c, "val": val_scores},
                       classifier.predict_proba(test_z), classifier.classes_)


def shot_draws(train_y, shots: int = SHOTS, draws: int = SHOT_DRAWS, seed: int = SHOT_SEED) -> list[np.ndarray]:
    """``draws`` row sets of the training features, each ``shots`` rows of every class (all of a class with
    fewer), sorted; seeded by (seed, draw) only, so the same labels give the same rows in every run."""
    train_y = np.asarray(train_y)
    sets = []
    for draw in range(draws):
        rng = np.random.default_rng([seed, draw])
        rows = [rng.choice(np.flatnonzero(train_y == c), min(shots, int((train_y == c).sum())), replace=False)
                for c in np.unique(train_y)]
        sets.append(np.sort(np.concatenate(rows)))
    return sets


def low_shot_probe(train_x, train_y, test_x, test_y, shots: int = SHOTS, draws: int = SHOT_DRAWS,
                   seed: int = SHOT_SEED) -> float:
    """Mean test accuracy of :func:`linear_probe` (C = 1: a validation split would hold more labels than
    the probe) over :func:`shot_draws`."""
    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    return float(np.mean([linear_probe(train_x[rows], train_y[rows], test_x, test_y).accuracy
                          for rows in shot_draws(train_y, shots, draws, seed)]))


def knn_probe(train_x, train_y, test_x, test_y, k: int = 5) -> ProbeResult:
    """Cosine k-nearest-neighbour vote (distance-weighted) on L2-normalised features."""
    k = min(k, len(train_x))
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance").fit(train_x, train_y)
    predictions = classifier.predict(test_x)
    return ProbeResult(float((predictions == test_y).mean()), predictions, {"k": k},
                       classifier.predict_proba(test_x), classifier.classes_)


def per_class_recall(predictions, labels, num_classes: int) -> np.ndarray:
    """(num_classes,) share of each class's clips predicted as that class; NaN for a class without clips."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    clips = np.bincount(labels, minlength=num_classes).astype(float)  # (C,)
    hits = np.bincount(labels[predictions == labels], minlength=num_classes).astype(float)  # (C,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(clips > 0, hits / np.maximum(clips, 1), np.nan)


def tail_classes(train_labels, num_classes: int, share: float = 1 / 3) -> np.ndarray:
    """The rarest ``share`` of the classes by their number of TRAINING clips (the pretraining train split).

    Rule: classes are ranked from rarest to most frequent by their count of training clips; among
    equal counts the HIGHER class index ranks as rarer, so with balanced classes the tail is simply
    the last third of the class indices.  The tail holds ``max(1, round(share * num_classes))``
    classes (3 of 10, 1 of 3).  A class with no training clip counts 0 and is the rarest of all.
    """
    counts = np.bincount(np.asarray(train_labels), minlength=num_classes)[:num_classes]  # (C,)
    order = sorted(range(num_classes), key=lambda c: (counts[c], -c))  # rarest first, ties: higher index
    return np.sort(np.asarray(order[:max(1, round(share * num_classes))], dtype=np.int64))


def class_scores(predictions, labels, num_classes: int, tail) -> dict[str, float | None]:
    """``balanced`` (mean recall over the classes with test clips) and ``tail`` (mean recall over the
    ``tail`` classes with test clips); None where no class qualifies (JSON has no NaN)."""
    recall = per_class_recall(predictions, labels, num_classes)  # (C,)

    def mean(values: np.ndarray) -> float | None:
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else None

    return {"balanced": mean(recall), "tail": mean(recall[np.asarray(tail, dtype=np.int64)])}


def probe_clips(cache, split: str) -> np.ndarray:
    """The clips of a split that a probe reads: all of them, less the corrupted ones (a manifest's
    ``corrupted`` column, e.g. the embedded dataset's faulty pairs) in the probe's TRAINING split.

    Why: a corrupted clip carries another clip's sound, so its audio does not show its label; the
    robust-xID paper (Morgado et al. 2021) pretrains on faulty pairs but evaluates on clean data.
    The flag is read here only, never by pretraining."""
    indices = cache.select(split)
    if split == "train" and "corrupted" in cache.index["columns"]:
        clean = np.asarray(cache.column("corrupted")).astype(str) != "1"
        indices = indices[clean[indices]]
    return indices


def pack_flags(flags) -> str:
    """A boolean vector as a hex string, one bit per entry (``np.packbits`` order); :func:`unpack_flags`."""
    return np.packbits(np.asarray(flags, dtype=bool).astype(np.uint8)).tobytes().hex()


def unpack_flags(text: str, count: int) -> np.ndarray:
    """(count,) bool: the vector :func:`pack_flags` packed."""
    flags = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if len(flags) < count or len(flags) - count >= 8:
        raise ValueError(f"{len(text)} hex characters hold {len(flags)} bits, not {count} flags")
    return flags[:count].astype(bool)


def clip_correctness(details: dict) -> dict:
    """Which test clips each probe got right, compact enough for ``summary.json``: ``{"clips": n, modality:
    {"linear": hex, "knn": hex}}``, one bit per test clip in the test split's order (the dataset's, the same
    for every run of one dataset), 45 hex characters per probe at 180 test clips.  From
    ``run_probes(..., return_details=True)``'s details.

    Why: part of a probe's spread over seeds is which test clips each run happens to get right, and only
    per-clip correctness tells that part from training's exactly (``avlib.study.stats.noise_from_clips``;
    ``bootstrap_sd`` resamples the clips)."""
    record: dict = {}
    for modality, found in details.items():
        labels = np.asarray(found["test_labels"])
        record["clips"] = int(len(labels))
        record[modality] = {kind: pack_flags(np.asarray(found[kind].predictions) == labels) for kind in ("linear", "knn")}
    return record


def run_probes(model: AVModel, cache, cfg, *, eval_windows: int = 3, knn_k: int = 5, device: str = "cpu",
               return_details: bool = False):
    """Linear and kNN test accuracy for video and audio features: {"video": {"linear", "knn", ...}, "audio": ...}.

    Each probe ``P`` in (linear, knn) also gives ``P_balanced`` (mean per-class recall) and
    ``P_tail`` (mean recall of the rarest third of the classes by their count in the pretraining
    train split, corrupted clips included: :func:`tail_classes`).
    """
    split_features = {
        split: extract_features(model, cache, probe_clips(cache, split), cfg, eval_windows=eval_windows, device=device)
        for split in ("train", "val", "test")
        if len(probe_clips(cache, split)) > 0
    }
    for required in ("train", "test"):
        if required not in split_features:
            raise ValueError(f"the dataset has no {required!r} clips; probes need train and test splits")
    train, test, val = split_features["train"], split_features["test"], split_features.get("val")
    num_classes = len(cache.class_names)
    tail = tail_classes(np.asarray(cache.labels)[np.asarray(cache.select("train"))], num_classes)
    results, details = {}, {}
    for modality in ("video", "audio"):
        linear = linear_probe(train[modality], train["labels"], test[modality], test["labels"],
                              None if val is None else val[modality], None if val is None else val["labels"])
        knn = knn_probe(train[modality], train["labels"], test[modality], test["labels"], k=knn_k)
        results[modality] = {"linear": linear.accuracy, "knn": knn.accuracy,
                             f"linear_{SHOTS}shot": low_shot_probe(train[modality], train["labels"], test[modality],
                                                                   test["labels"])}
        for kind, result in (("linear", linear), ("knn", knn)):
            for name, value in class_scores(result.predictions, test["labels"], num_classes, tail).items():
                results[modality][f"{kind}_{name}"] = value
        details[modality] = {"linear": linear, "knn": knn, "test_labels": test["labels"], "tail_classes": tail}
    return (results, details) if return_details else results


def monitor_indices(cache, clips: int, seed: int = 0) -> np.ndarray:
    """A fixed, seeded, stratified subset of the val split (about ``clips`` clips, every class kept)
    for the online kNN monitor; empty when the dataset has no val clips."""
    val = np.asarray(cache.select("val"))
    if len(val) == 0:
        return val
    labels = np.asarray(cache.labels)[val]
    classes = np.unique(labels)
    per_class = max(2, -(-clips // len(classes)))  # at least 2: leave-one-out needs a neighbour of the class
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(val[labels == label])[:per_class] for label in classes]
    return np.sort(np.concatenate(kept))


def knn_leave_one_out(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Accuracy of a cosine kNN vote (similarity-weighted) where each clip is classified by its k
    nearest *other* clips of the set: a label-light measure of how class-structured features are."""
    x = torch.nn.functional.normalize(torch.as_tensor(features, dtype=torch.float64), dim=1)
    similarity = x @ x.T  # (N, D) @ (D, N) -> (N, N)
    similarity.fill_diagonal_(-float("inf"))  # never one's own neighbour
    k = min(k, len(labels) - 1)
    top = similarity.topk(k, dim=1)
    y = torch.as_tensor(labels)
    votes = torch.zeros(len(labels), int(y.max()) + 1, dtype=torch.float64)
    votes.scatter_add_(1, y[top.indices], top.values.clamp_min(0) + 1e-12)  # (N, C)
    return float((votes.argmax(dim=1) == y).double().mean())


class KnnMonitor:
    """The online kNN monitor (as solo-learn prints each epoch): leave-one-out kNN accuracy of the
    current backbone features on a fixed stratified subset of the val split, per modality.

    Features come from the encoders in eval mode over one centred window per clip: no random draw,
    no batch-norm statistic changes, so monitoring never changes what training does.
    """

    def __init__(self, cache, cfg, *, clips: int = 100, device: str = "cpu"):
        self.cache, self.cfg, self.device = cache, cfg, device
        self.indices = monitor_indices(cache, clips, seed=cfg.seed)

    @property
    def enabled(self) -> bool:
        return len(self.indices) > 2

    def __call__(self, model: AVModel) -> dict[str, float]:
        features = extract_features(model, self.cache, self.indices, self.cfg, eval_windows=1, device=self.device)
        return {f"knn_{modality}": knn_leave_one_out(features[modality], features["labels"])
                for modality in ("video", "audio")}
