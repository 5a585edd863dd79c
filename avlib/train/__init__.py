"""Pretraining: the loop, checkpoints and run folders."""

from avlib.train.loop import load_run, pretrain, read_metrics

__all__ = ["load_run", "pretrain", "read_metrics"]
