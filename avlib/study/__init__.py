"""The reproducible study: one command runs a condition's pretraining runs through the notebooks,
then the diversity and downstream notebooks, then rebuilds ``reports/REPORT.md`` from the run
folders (``python -m avlib.study --help``; ``make study``).

``conditions`` says which runs make up each condition and why, ``run`` executes them (resumable,
in parallel jobs), ``report`` writes the report from whatever run folders exist.
"""

from avlib.study.conditions import CONDITIONS, DEFAULT_CONDITION, DEFAULT_SEEDS, get_condition
from avlib.study.main import run_study

__all__ = ["CONDITIONS", "DEFAULT_CONDITION", "DEFAULT_SEEDS", "get_condition", "run_study"]
