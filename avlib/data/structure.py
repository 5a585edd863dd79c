"""The redundancy a dataset puts into a random dictionary: class balance and clips per source.

Why: CM-ACC (Ma et al. 2021, Sec. 1 and 3) argues that a randomly filled MoCo dictionary holds many
keys of the same class and near-duplicate keys (clips of one video), which an active dictionary
should remove.  Whether a dataset can show that depends on what a RANDOM dictionary already looks
like on it; on a balanced dataset with one clip per source it is already at the maximum class
entropy.  This module measures it without training: a FIFO queue of ``dictionary_size`` keys fed
with the batches of the training loop's random order (an epoch-wise permutation, last incomplete
batch dropped), and after every step the queue's class entropy (nats) and unique-source share
(distinct sources / keys).
"""
from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["class_entropy", "random_dictionary_redundancy", "source_groups"]


def class_entropy(labels: np.ndarray) -> float:
    """Shannon entropy (nats) of the label distribution of ``labels`` (any hashable values)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def source_groups(cache, indices=None) -> np.ndarray:
    """(N,) source of each clip: the manifest's ``group`` column, else each clip its own source."""
    indices = np.arange(len(cache)) if indices is None else np.asarray(indices)
    if "group" in cache.index["columns"]:
        return np.asarray(cache.column("group")).astype(str)[indices]
    return np.asarray(cache.clip_ids, dtype=object)[indices].astype(str)


def random_dictionary_redundancy(labels, groups, *, batch_size: int = 32, dictionary_size: int = 256,
                                 steps: int = 300, seed: int = 0) -> dict:
    """Mean over steps (once the queue is full) of a random FIFO dictionary's class entropy, its
    ratio to ln(classes), and its unique-source share; ``labels``/``groups`` (N,) of the train clips.

    Returns {"class_entropy", "max_entropy" (ln of the number of classes in ``labels``),
    "entropy_ratio", "unique_source_share", "steps"}."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    n = len(labels)
    if n < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {n} clips")
    rng = np.random.default_rng(seed)
    queue: deque = deque(maxlen=dictionary_size)
    entropies, shares = [], []
    order, offset = rng.permutation(n), 0
    for _ in range(steps + dictionary_size // batch_size + 1):
        if offset + batch_size > n:
            order, offset = rng.permutation(n), 0
        queue.extend(order[offset:offset + batch_size])
        offset += batch_size
        if len(queue) == dictionary_size:
            keys = np.fromiter(queue, dtype=np.int64)
            entropies.append(class_entropy(labels[keys]))
            shares.append(len(np.unique(groups[keys])) / len(keys))
        if len(entropies) == steps:
            break
    max_entropy = float(np.log(len(np.unique(labels))))
    entropy = float(np.mean(entropies))
    return {"class_entropy": entropy, "max_entropy": max_entropy, "entropy_ratio": entropy / max_entropy,
            "unique_source_share": float(np.mean(shares)), "steps": len(entropies)}
