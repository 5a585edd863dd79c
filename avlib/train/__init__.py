"""Pretraining: the loop, checkpoints and run folders; data-parallel training under torchrun.

Floors, each importing only those below it: ``run_folder`` (files of a run), ``distributed``,
``snapshots`` and ``console`` (helpers; ``console``: what a run prints), ``loop`` (one process's training, stage by stage), ``launch`` (the entry
point: in this process or under torchrun, and the command line).
"""

from avlib.train.launch import pretrain
from avlib.train.loop import Interrupted, check_names
from avlib.train.run_folder import read_metrics

__all__ = ["Interrupted", "check_names", "pretrain", "read_metrics"]
