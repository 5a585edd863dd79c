"""Pretraining: the loop, checkpoints and run folders; data-parallel training under torchrun."""

from avlib.train.loop import Interrupted, pretrain, read_metrics

__all__ = ["Interrupted", "pretrain", "read_metrics"]
