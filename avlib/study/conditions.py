"""The study's conditions: which runs each one is made of, and why those values.

A *condition* is a sweep the study command runs when it is selected: a list of *variants* (a
sampler, possibly with its own settings, at one level of the swept parameter) times seeds.  Every
run is the default ``PretrainConfig`` (one torch thread) with :data:`STUDY_BASE` on top, then the
variant's parameters, so the only thing that differs between two runs of a condition is what the
condition is about.

Why a base (60 clips per class, 60 epochs) and not the main job's defaults (120 clips per class, 45
epochs): the study compares methods against each other, and at the smaller dataset its 24-run
default condition fits in about 80 minutes on two cores, where the main job's size costs 1.5 times
as much per run.  Its runs' ``config.json`` files say so, and the report lists the base among the
parameters common to every run.

Costs below are in *base-run units*: one base run (660 steps at ~0.30 s, probes) is ~4 min
alone on the 2-core development machine; two jobs side by side share its two cores, so a unit costs
roughly 2.5 min of study wall time with ``--jobs 2`` (training time scales with the steps, i.e. with
the training clips at a fixed number of epochs).

* ``samplers`` (the default): every method once, 8 variants x 3 seeds = 24 units (~1 h).
  ``active`` is CM-ACC as the paper describes it (key-gradient embeddings + k-means++ seeding);
  ``active_official`` runs the official code's dynamics and selector (``active_candidates=
  "official"``: a FIFO pool of recent batches whose chosen keys stay; ``lloyd_nearest``: Lloyd to
  convergence, then the key nearest each centre).
* ``redundancy``: ``clips_per_class`` in (20, 40, 60, 120) for ``random`` and ``active``.  The
  dictionary keeps 256 keys, so with 20 clips per class (~120 training clips) a random queue holds
  about two stale copies of every clip: that is the redundancy CM-ACC argues an active dictionary
  avoids; 120 clips per class is the far end (no clip repeats).  Steps scale with the clips:
  (20+40+60+120)/60 = 4 units per sampler and seed, 24 units (~1 h).
* ``dictionary_size`` (CM-ACC's own axis: a random dictionary gets redundant as it grows): 256,
  1024 and 4096 keys for ``random``, ``active`` and ``active_official``, on the embedded dataset at
  its largest, 50 classes x 600 clips (18,000 training clips: the largest dictionary holds 23% of
  them, 1024 keys 5.7%, 256 keys 1.4%; at the base, 256 keys are 71% of 360 clips and a random queue
  repeats clips), objective ``joint`` (the cross-modal loss plus the intra-modal one, each with
  ``dictionary_size`` keys; the sampler fills only the cross-modal dictionaries, the intra-modal ones
  stay FIFO in every arm).  ``active_official``'s pool holds 10/3 as many keys as the dictionary, as
  the official code's ``init_dict`` fills 10 batches of pool against 3 of dictionary
  (``active_pool_factor`` = ceil(10/3 x size / batch) = 27, 107, 427 batches).
  **20 epochs (11,240 steps).**  The first schedule, 2 epochs (1124 steps, each clip seen twice), did
  not train: its cross-modal term learned when a key was made, not what a clip holds.  A query stayed
  exactly as similar to its own clip's key as to the batch's other fresh keys (``pos_sim`` =
  ``batch_neg_sim``, 0.24-0.32), the loss fell only because the dictionary's older keys were less
  similar, and climbed back to chance as the learning rate decayed; with ``cross`` alone the keys
  collapsed (video linear 11.7% against 44.6% at random init) under every variation tried.  When does
  the positive pull ahead of the fresh negatives (a 50-step mean of ``pos_sim - batch_neg_sim`` above
  0.1; ``bench/dictionary_schedule.py --onset``)?  At the base (352 clips a pass, 256 keys) at step
  218; with 50 classes of 320 clips a pass at 252; at 3,584 clips a pass (10 classes) at 426 with
  256 keys and 805 with 2,048; in this condition's data at 4096 keys (``joint``, ``random``, seed 0)
  at step 2,169 of the 20-epoch schedule, while its learning rate is still near its peak.  The 2-epoch
  schedule's rate had decayed by then.  So a pass over more clips, and a larger dictionary, each
  delay when cross-modal learning starts; the classes do not.  Every run's ``summary.json`` now has
  ``positive_margin`` and warns when it stays at or below 0.01 (``avlib.train.learning_signal``).
  The checks, their runs and numbers: ``reports/study/dictionary_size_schedule.md``.
  Cost at 2 jobs on the 2-core machine: a random step is 531 ms (``sources`` at 1, ``mean_step_s``),
  the official selection 11.1 ms a step over a 4-batch pool (``mean_select_s``); timed alone on random
  embeddings (``key_grad`` + ``lloyd_nearest``, one thread, two modalities), the selection costs 33 ms
  at the 4-batch pool, 75, 563 and 2862 ms at 27, 107 and 427 batches: scaled by the runs' 11.1 / 33,
  about 25, 190 and 960 ms a step, i.e. 1.05x, 1.4x and 2.8x a random step (the unscaled timing:
  1.1x, 2.1x, 6.4x).  So a run is 11,240 x (531 ms + its selection) + 12.5 min of probes: 1.9 h for
  ``random`` and ``active``, 1.9 / 2.5 / 4.9 h for ``active_official`` at 256 / 1024 / 4096 keys, 206 h
  for the 90 runs (~103 h with 2 jobs): a GPU job (``make gpu-check``'s section 5 measures its
  training hours on a CUDA device).  The probes and the random-init probes encode 30,000
  clips (50x the base's 600: ~6 min each at the base's 7.5 s per 600 clips); the random-init probes
  are computed once per seed and shared by its 9 runs (``random_init_cache``: the 9 start from the same
  weights and probe the same clips); the dataset is generated once (8.6 s per 100 clips with 2
  workers: ~45 min; a killed generation resumes) and its decoded cache takes ~15 GB.
  **Read with 5 labels a class** (``linear_5shot``, ``avlib.eval.probe.low_shot_probe``): at seed 0 (fp32)
  ``random`` and ``active`` reached 99.6-99.8% with the linear probe on all 18,000 training labels, a ceiling
  that hides any difference, and 86.9 / 88.2% video, 72.3 / 68.8% audio with 5 labels a class (random init
  10.4 / 9.5%); the full-label probe stays as a description.
  **bf16 autocast** (``precision="bf16"``: the encoders' passes; the embeddings, losses, selection and
  probes stay float32) makes a step 0.54x fp32's (0.63x in an earlier run) on a CPU with native bf16
  (``reports/bench_precision.md``; the study logs a note where the CPU has none).  It changes a run's
  realisation, not its answer (``bench/precision_check.py``, ``reports/study/precision_check.md``): at the
  condition's own checkpoint the bf16 gradient differs from fp32's by 5% (cosine 0.999), against 141%
  between two batches' fp32 gradients, so the precision perturbs training ~28x less than drawing other
  batches does.  The study's decided comparison, ``sources`` at 8 (``active`` - ``random``, video), rerun in bf16 at its 10 seeds:
  -6.56 [-10.99, -2.12], worse, as in fp32 (-5.11 [-8.41, -1.81]); no arm moved on average (bf16 - fp32
  between -0.89 and +1.61 points), but a seed in the other precision diverges like another seed (sd of
  the same-seed differences 3.1-6.4), so the change of an effect is only bounded to about ±6 points
  (video -1.44 [-7.23, +4.34]).  Every arm of the condition runs in bf16: its comparisons never mix
  precisions.  At the conservative 0.63x a ``random`` / ``active`` run is ~1.25 h, ``active_official``
  ~1.3 / 1.9 / 4.3 h at 256 / 1024 / 4096 keys (its selection stays float32): ~149 h for the 90 runs instead of 206 h; the primary cells (4096 keys)
  ~67 h, ``random`` and ``active`` alone ~25 h.  The colour jitter's hue shift now makes torchvision's bytes in
  half the time (``avlib.data.augment.hsv_hue_shift``, ``reports/bench_augment.md``): two of this condition's
  trainings at once step 1.15x as often (0.303 against 0.348 s), and its ``random`` and ``active`` runs, measured
  in the study, every 0.345 s at 2 jobs (the trainer 0.206 s and the loader's worker 0.137 s of CPU a step).
* ``faulty_pair_rate``: 0, 0.25 and 0.5 of the clips with another clip's audio (the robust paper's
  setting), for ``random``, ``active``, ``xid`` and ``robust_xid``: 36 units (~1.5 h).
* ``subset_fraction``: 0.25, 0.5 and 1.0 of the training clips for ``random``, ``active`` and
  ``soft_positive`` (does label-aware sampling help more when data are scarce?).  Epochs stay at 60,
  so a smaller subset also trains for fewer steps (the usual data-size protocol):
  3 x 3 x 1.75 = ~16 units (~40 min).

The conditions below ask whether the methods' claims survive the structure of real video
(``avlib.data.synthetic``: imbalance, near-duplicate clips, unsynchronised sound), and whether
the robust and label-aware results hold without the shortcuts of the first study (evaluation is
clean, labels come from k-means).  They ran **5 seeds** first (0..4): with 3 seeds, 17 of
the 24 comparisons in ``reports/REPORT.md`` were unresolved, and their "seeds to resolve" were 9 or
more; 5 seeds narrow the std of a mean by a further sqrt(5/3) = 1.3x without doubling the cost.
At 5 seeds every primary comparison was still inconclusive, so those with a claim's primary
comparisons now plan 10 (the unit counts below are the 5-seed ones; the plan at 10 is at the end).
The queue methods are ``random``, ``active`` (the default candidate source), ``active_aware``
(``active_dictionary_aware=True``: the dictionary's keys count as chosen centres; its selection
costs ~50 ms against ~22 ms per step in ``reports/bench_train_step.md``, so ~1.1 units) and
``active_official`` (the official code's selector over the official candidate source; its step
cost is in ``reports/bench_train_step.md``).  A unit's
2.5 min assumes every run costs about a base run; active runs may cost more per step.

* ``imbalance``: ``class_imbalance`` 1, 5, 20 (most / least frequent class of the train split;
  val and test stay balanced).  Training clips fall with r (360, 183, 125 at 60 clips per class and
  10 classes), so steps do too: 1 + 0.51 + 0.35 = 1.86 units per method and seed, 4 x 5 x 1.86 =
  ~37 units (~1.5 h).  The probes' balanced and tail accuracy (``summary.json``) say whether a
  method serves the rare classes.
* ``sources``: ``clips_per_source`` 1, 4, 8: groups of clips cut from one source share their look
  and sound (the near-duplicates CM-ACC argues a random dictionary is full of); same clip count, so
  3 x 4 x 5 = 60 units (~2.5 h).
* ``sync``: ``av_sync`` True / False (level 1 / 0): without synchrony only the class links the two
  streams; 2 x 4 x 5 = 40 units (~1.7 h).
* ``faulty_clean``: ``faulty_pair_rate`` 0, 0.25, 0.5 for ``xid`` and ``robust_xid`` now that the
  faulty pairs only touch the train split (val and test clips are clean, so the probes measure the
  representation, not the corruption); 3 x 2 x 5 = 30 units (~1.25 h).
* ``label_free``: ``soft_positive``, ``class_aware`` and ``hard_negative`` with ``label_source``
  ``ground_truth`` and ``kmeans`` (its level is the label source's name): does label-aware sampling
  still help without the probes' own labels?  k-means re-clusters every 20 steps (cost not measured
  separately); ``random`` runs once (at level ``ground_truth``: it ignores the labels) as the
  baseline of both levels; (2 x 3 + 1) x 5 = 35 units (~1.5 h).

* ``label_quality`` (Wang et al.'s own axis: their soft positives gain +6.7 linear points in-domain
  with ground truth, +2.4 with pseudo-labels, +0.7 with 30% of the labels wrong): ``soft_positive``
  and ``class_aware`` with ground truth, ground truth with ``label_noise`` 0.3 (30% of the training
  clips' labels replaced by a random other class, ``avlib.samplers.label_aware.noisy_labels``) and
  k-means pseudo-labels, against one ``random`` (it reads no labels: the baseline of every level).
  Its ground-truth and k-means variants are ``label_free``'s runs (linked), so only the noisy-label
  variants train: 2 x 10 = 20 units.

**10 seeds** (0..9, :data:`TEN_SEEDS`) for every condition holding a claim's primary comparison
(``sources``, ``imbalance``, ``faulty_clean``, ``label_free``, ``label_quality``,
``dictionary_size``); ``sync`` keeps 5 (no primary comparison).  Planned, in ``make
study-testbed``'s order and with the runs two conditions share linked (estimated from the
committed runs' mean ``wall_s`` per variant at 2 jobs; ``label_quality``'s noisy variants at their
ground-truth twins'; ``dictionary_size`` as 11,240 steps x (531 ms + the selection above) + 2 x 50 x
7.5 s of probes): ``sources`` 120 runs (60 finished, 60 to train, 6.9 h of run time), ``imbalance``
120 (40 finished, 40 linked, 40 to train, 1.8 h), ``faulty_clean`` 60 (30 finished, 30 to train,
3.3 h), ``sync`` 40 (all finished or linked), ``label_free`` 70 (30 finished, 10 linked, 30 to
train, 3.2 h), ``label_quality`` 70 (50 linked, 20 to train, 2.2 h), ``dictionary_size`` 90 (all
to train, 205.7 h at its 20 epochs: 112 / 114 min a run for ``random`` / ``active``, 117 / 148 / 292 min
for ``active_official`` at 256 / 1024 / 4096 keys, in fp32; ~149 h in the bf16 it now trains in).  In all
270 runs to train, 223 h of run time in fp32 (~166 h with ``dictionary_size`` in bf16), about 112 h (83 h)
with 2 jobs on 2 cores, nearly all of it ``dictionary_size``.

Notebook 03 (curves, UMAP, inspector) compares the methods of a sweep at one level, its
``focus_level`` (the most redundant, noisiest or scarcest setting: 20 clips per class, 512 keys,
half the pairs faulty, a quarter of the data), since its views need runs of one dataset.

Three seeds are the least that gives a standard deviation; the findings say how many more would
settle a comparison the seeds leave open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from avlib.config import ConfigError, PretrainConfig

#: seeds of every condition unless the command names others (or the condition its own)
DEFAULT_SEEDS = (0, 1, 2)
#: seeds of the conditions added with the dataset structure (module docstring: why 5)
FIVE_SEEDS = (0, 1, 2, 3, 4)
#: seeds of every condition with a claim's primary comparisons (issue 31): a paired 90% interval is
#: +-1.83 sd / sqrt(n) wide, +-0.95 sd at 5 seeds and +-0.58 sd at 10, so with the paired sds measured at 5
#: seeds (2.0-7.3 points) 10 seeds can show equivalence within +-2 points where the sd is under ~3.4
TEN_SEEDS = tuple(range(10))

#: parameters every study run starts from (``--set`` and a variant's own parameters override them);
#: why not the defaults: see the module docstring
STUDY_BASE: dict = {"clips_per_class": 60, "epochs": 60}

#: every method with its study label and PretrainConfig parameters
SAMPLER_VARIANTS: dict[str, dict] = {
    "random": {"sampler": "random"},
    "active": {"sampler": "active", "active_embedding": "key_grad", "active_selector": "kmeanspp"},
    # the official code's dynamics (FIFO pool of recent batches, chosen keys stay) and selector
    "active_official": {"sampler": "active", "active_embedding": "key_grad", "active_selector": "lloyd_nearest",
                        "active_candidates": "official"},
    "xid": {"sampler": "xid"},
    "robust_xid": {"sampler": "robust_xid"},
    "soft_positive": {"sampler": "soft_positive"},
    "class_aware": {"sampler": "class_aware"},
    "hard_negative": {"sampler": "hard_negative"},
}


#: the queue methods of the dataset-structure conditions (imbalance, sources, sync)
STRUCTURE_VARIANTS: dict[str, dict] = {
    "random": SAMPLER_VARIANTS["random"],
    "active": SAMPLER_VARIANTS["active"],  # the default candidate source
    "active_aware": {**SAMPLER_VARIANTS["active"], "active_dictionary_aware": True},
    "active_official": SAMPLER_VARIANTS["active_official"],
}


@dataclass(frozen=True)
class Variant:
    """One setting of a condition; its runs are ``<name>_seed<k>``."""

    name: str  # folder prefix and table row, e.g. "active_faulty0.25"
    method: str  # the SAMPLER_VARIANTS label, e.g. "active": what findings compare
    params: dict = field(hash=False)  # PretrainConfig overrides
    # the swept parameter's value (None for the samplers condition); a name where the parameter is a
    # choice (label_free: "ground_truth" / "kmeans"), 1.0 / 0.0 for a bool (sync)
    level: float | str | None = None


@dataclass(frozen=True)
class Condition:
    name: str
    description: str
    variants: tuple[Variant, ...]
    # the PretrainConfig parameter a sweep varies, or the name of an axis of several (label_quality: the
    # label source and label_noise together)
    swept: str | None = None
    # the level whose seed-0 runs notebook 03 compares (curves, UMAP, inspector need one dataset);
    # every level's end-of-training diversity is in the report's tables either way
    focus_level: float | str | None = None
    seeds: tuple[int, ...] = DEFAULT_SEEDS  # run unless the command names seeds

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ConfigError(f"condition {self.name!r} has no variant {name!r}; "
                          f"valid: {[v.name for v in self.variants]}")

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(v.method for v in self.variants))

    @property
    def levels(self) -> list[float | str]:
        return list(dict.fromkeys(v.level for v in self.variants if v.level is not None))

    def single_level_of(self, method: str) -> float | str | None:
        """The one level a method is planned at in a sweep of several (label_free's ``random``, which
        ignores the labels): it is then the baseline of every level.  None otherwise."""
        levels = [v.level for v in self.variants if v.method == method]
        return levels[0] if len(levels) == 1 and len(self.levels) > 1 else None


def _level(value) -> float | str:
    """A swept value as a level: numbers (and bools) as floats, names as they are."""
    return value if isinstance(value, str) else float(value)


def _sweep(name: str, description: str, swept: str, short: str, values, methods, focus,
           seeds=DEFAULT_SEEDS, table: dict[str, dict] = SAMPLER_VARIANTS, common: dict | None = None,
           per_level=None) -> Condition:
    """Every method (a label of ``table``) at every value of ``swept``; runs are
    ``<method>_<short><level>``, e.g. ``active_faulty0.25``, ``random_sync0`` (a bool's level is
    1.0 / 0.0), ``class_aware_kmeans``.  ``common``: parameters of every variant (the condition's own
    dataset); ``per_level(method, value)``: a variant's further parameters at a level."""
    def tag(value) -> str:
        return f"{short}{value}" if isinstance(value, str) else f"{short}{float(value):g}"

    variants = tuple(
        Variant(f"{method}_{tag(value)}", method,
                {**(common or {}), **table[method], swept: value, **(per_level(method, value) if per_level else {})},
                _level(value))
        for value in values for method in methods
    )
    return Condition(name, description, variants, swept, _level(focus), tuple(seeds))


def _without(condition: Condition, *names: str) -> Condition:
    """``condition`` less the named variants (runs that would repeat another variant exactly)."""
    kept = tuple(v for v in condition.variants if v.name not in names)
    assert len(kept) == len(condition.variants) - len(names), names
    return Condition(condition.name, condition.description, kept, condition.swept, condition.focus_level,
                     condition.seeds)


#: label_quality's levels, best labels first: the name of each level -> the label parameters it sets
#: (30% noise as in Wang et al. 2024; k-means labels ended at 46.8% purity in label_free)
LABEL_QUALITIES: dict[str, dict] = {
    "ground_truth": {"label_source": "ground_truth"},
    "noise0.3": {"label_source": "ground_truth", "label_noise": 0.3},
    "kmeans": {"label_source": "kmeans"},
}
#: dictionary_size's dataset and schedule (module docstring: 18,000 training clips, 11,240 steps: at 2 epochs
#: the cross-modal term learned the keys' age, not the clips; at 4096 keys its positive pulls ahead at step 2,169)
#: and bf16 autocast of the encoders (embeddings and losses stay float32): ~1.6-1.8x cheaper steps on a CPU with
#: native bf16, with no change to a decided comparison of the study (bench/precision_check.py)
DICTIONARY_DATASET: dict = {"num_classes": 50, "clips_per_class": 600, "epochs": 20, "objective": "joint",
                            "precision": "bf16"}
#: the official code's pool against dictionary (init_dict: 10 batches of pool, 3 of dictionary)
OFFICIAL_POOL_PER_DICTIONARY = 10 / 3


def _official_pool(method: str, size: int) -> dict:
    """``active_official``'s pool at dictionary ``size``: 10/3 of the dictionary, in batches."""
    if method != "active_official":
        return {}
    batch = PretrainConfig().batch_size  # the study keeps it
    return {"active_pool_factor": math.ceil(OFFICIAL_POOL_PER_DICTIONARY * size / batch)}


def _label_quality() -> Condition:
    """``random`` once (it reads no labels: the baseline of every level, paired by seed) and the two
    label-aware methods Wang et al. measured, at each label quality of :data:`LABEL_QUALITIES`."""
    variants = [Variant("random_ground_truth", "random", dict(SAMPLER_VARIANTS["random"]), "ground_truth")]
    for level, labels in LABEL_QUALITIES.items():
        for method in ("soft_positive", "class_aware"):
            variants.append(Variant(f"{method}_{level}", method, {**SAMPLER_VARIANTS[method], **labels}, level))
    return Condition("label_quality", "label quality of the label-aware methods: ground truth, ground truth with 30% "
                     "of the training labels replaced by a random other class, k-means pseudo-labels",
                     tuple(variants), "label_quality", "noise0.3", TEN_SEEDS)


CONDITIONS: dict[str, Condition] = {
    "samplers": Condition(
        "samplers",
        "every method at the study's base configuration (60 clips per class, 60 epochs)",
        tuple(Variant(label, label, params) for label, params in SAMPLER_VARIANTS.items()),
    ),
    "redundancy": _sweep("redundancy", "clips per class of the embedded dataset (the dictionary keeps 256 keys)",
                         "clips_per_class", "cpc", (20, 40, 60, 120), ("random", "active"), focus=20),
    "dictionary_size": _sweep("dictionary_size",
                              "keys per dictionary (50 classes x 600 clips, 20 epochs, objective joint; with 2 epochs "
                              "its cross-modal term learned when a key was made, not what a clip holds: "
                              "reports/study/dictionary_size_schedule.md)",
                              "dictionary_size", "dict", (256, 1024, 4096), ("random", "active", "active_official"),
                              focus=4096, seeds=TEN_SEEDS, common=DICTIONARY_DATASET, per_level=_official_pool),
    "faulty_pair_rate": _sweep("faulty_pair_rate", "share of clips whose audio is another clip's (faulty positives)",
                               "faulty_pair_rate", "faulty", (0.0, 0.25, 0.5), ("random", "active", "xid", "robust_xid"),
                               focus=0.5),
    "subset_fraction": _sweep("subset_fraction", "stratified share of the training clips (60 epochs each)",
                              "subset_fraction", "frac", (0.25, 0.5, 1.0), ("random", "active", "soft_positive"),
                              focus=0.25),
    "imbalance": _sweep("imbalance", "class imbalance of the train split (most / least frequent class; val and "
                        "test balanced)", "class_imbalance", "imb", (1.0, 5.0, 20.0), tuple(STRUCTURE_VARIANTS),
                        focus=20, seeds=TEN_SEEDS, table=STRUCTURE_VARIANTS),
    "sources": _sweep("sources", "clips cut from one source video (shared look and sound, near-duplicates)",
                      "clips_per_source", "src", (1, 4, 8), tuple(STRUCTURE_VARIANTS), focus=8, seeds=TEN_SEEDS,
                      table=STRUCTURE_VARIANTS),
    "sync": _sweep("sync", "audio-visual synchrony (1: sound onsets follow the visual events, 0: independent)",
                   "av_sync", "sync", (True, False), tuple(STRUCTURE_VARIANTS), focus=0, seeds=FIVE_SEEDS,
                   table=STRUCTURE_VARIANTS),
    "faulty_clean": _sweep("faulty_clean", "share of TRAIN clips whose audio is another clip's (val and test clean)",
                           "faulty_pair_rate", "faulty", (0.0, 0.25, 0.5), ("xid", "robust_xid"), focus=0.5,
                           seeds=TEN_SEEDS),
    "label_free": _without(
        _sweep("label_free", "labels of the label-aware methods: the manifest's or k-means pseudo-labels",
               "label_source", "", ("ground_truth", "kmeans"), ("random", "soft_positive", "class_aware",
                                                                "hard_negative"),
               focus="kmeans", seeds=TEN_SEEDS),
        "random_kmeans"),  # random ignores label_source: one random variant is the baseline of both levels
    "label_quality": _label_quality(),
}
DEFAULT_CONDITION = "samplers"


def get_condition(name: str) -> Condition:
    if name not in CONDITIONS:
        raise ConfigError(f"condition={name!r} is not valid; valid conditions: {list(CONDITIONS)}")
    return CONDITIONS[name]
