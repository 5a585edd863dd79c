"""The study command end to end, reduced: two samplers, one seed, tiny runs, no UMAP.

Runs every notebook the real study runs (02 per run, 04 on the first seed, 03 over the condition)
and checks that the report has its sections and tables, that a second invocation skips finished
work and leaves reports/ byte-identical, and that a bad condition is refused with the valid names.
"""

import hashlib
import json
import re
from pathlib import Path

import pytest

from avlib.config import ConfigError
from avlib.study import CONDITIONS, DEFAULT_SEEDS
from avlib.study.conditions import FIVE_SEEDS, STUDY_BASE, TEN_SEEDS
from avlib.study.main import bf16_note, main, run_study
from avlib.study.run import link_twins, parse_overrides, plan_runs
from avlib.study.stats import decide
from avlib.train.launch import parse_args
from tiny import TINY

OVERRIDES = {k: v for k, v in TINY.items() if k != "progress"}  # the study sets progress itself
VARIANTS = ("random", "active")


def tree_state(folder):
    """Every file's bytes (hashed) and modification time: 'nothing changed' means both."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    lines = []
    report, failures = run_study("samplers", jobs=2, runs_root=root / "runs", reports_dir=root / "reports",
                                 seeds=(0,), variants=VARIANTS, overrides=OVERRIDES, umap=False, log=lines.append)
    assert not failures, failures
    return root, report, lines


def test_the_report_has_every_section_and_table(study):
    root, report, lines = study
    assert report == root / "reports" / "REPORT.md"
    text = report.read_text()
    for heading in ("## Condition `samplers`", "### Probe accuracy (test split, %)",
                    "### Dictionary diversity at the end of training", "### Time", "### Downstream probes (notebook 04)",
                    "## Findings", "### CM-ACC (Ma et al., ICLR 2021)", "### Robust xID (Morgado et al., CVPR 2021)",
                    "## Provenance"):
        assert heading in text, heading
    for method in VARIANTS:
        assert f"| `{method}` | 1 |" in text  # a row in the probe, diversity and time tables
        assert (root / "runs" / "samplers" / f"{method}_seed0" / "04_downstream.ipynb").is_file()
        assert (root / "reports" / "study" / "notebooks" / "samplers" / f"{method}_seed0_02_pretrain.ipynb").is_file()
        kept = root / "reports" / "study" / "runs" / "samplers" / f"{method}_seed0"  # the report's links resolve
        assert {p.name for p in kept.iterdir()} == {"config.json", "summary.json", "study_run.json", "diversity.json"}
        assert f"(study/runs/samplers/{method}_seed0/config.json)" in text
    assert "| *random init* | 1 |" in text
    planned = CONDITIONS["samplers"]
    assert (f"{len(VARIANTS)} finished runs of the {len(planned.variants) * len(planned.seeds)} it plans "
            f"({len(planned.variants)} variants x {len(planned.seeds)} seeds)") in text  # a partial condition says so
    assert "| method | seeds | video linear acc. | video linear balanced | video linear tail |" in text
    assert "untested (fewer than 2 seeds)" in text  # one seed: the findings refuse to judge
    assert "Packages (uv.lock): torch" in text and "Machine: " in text
    study_dir = root / "reports" / "study"
    for figure in ("samplers/probe_accuracy.png", "samplers/diversity/negative_diversity_curves_video.png",
                   "notebooks/samplers/03_negative_diversity.ipynb"):
        assert (study_dir / figure).stat().st_size > 0, figure
        assert figure.split("/")[-1] in text


def test_each_finished_run_logs_one_line_with_its_probes_and_wall_time(study):
    """Issue 34: one line per finished run with its key numbers (summary.json), in both executors'
    log (execute_run's message): the probes trained (random init), the final loss, the wall time."""
    _, _, lines = study
    number = r"\d\.\d{3} \(\d\.\d{3}\)"
    for method in VARIANTS:
        (line,) = [line for line in lines if f"samplers/{method}_seed0: trained" in line]
        assert re.search(rf"probes trained \(random init\): video linear {number} knn {number}, "
                         rf"audio linear {number} knn {number}; final loss \d+\.\d{{3}}; \d+ steps, \d+ ms/step, "
                         rf"wall [\d.]+ min$", line), line


def test_a_second_invocation_skips_everything_and_changes_nothing(study, capsys):
    root, report, _ = study
    before_reports, before_runs = tree_state(root / "reports"), tree_state(root / "runs")
    argv = ["--condition", "samplers", "--jobs", "2", "--runs-root", str(root / "runs"),
            "--reports-dir", str(root / "reports"), "--seeds", "0", "--no-umap", "--variants", *VARIANTS]
    for name, value in OVERRIDES.items():
        argv += ["--set", f"{name}={value}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skipped (finished)") == len(VARIANTS) and "diversity notebook skipped" in out
    assert tree_state(root / "reports") == before_reports
    assert tree_state(root / "runs") == before_runs


def test_study_overrides_are_typed_like_the_training_command_line():
    texts = {"epochs": "3", "lr": "0.01", "shuffle_bn": "true", "max_steps": "None", "sampler": "random",
             "dataset_root": "none"}
    overrides = parse_overrides([f"{name}={text}" for name, text in texts.items()])
    flags = parse_args([part for name, text in texts.items() for part in (f"--{name}", text)])
    assert overrides == {name: getattr(flags, name) for name in texts}
    assert overrides == {"epochs": 3, "lr": 0.01, "shuffle_bn": True, "max_steps": None, "sampler": "random",
                         "dataset_root": None}
    with pytest.raises(ConfigError, match="parameter epochs='three': expected int"):
        parse_overrides(["epochs=three"])
    with pytest.raises(ConfigError, match=r"unknown parameter 'epoch' \(did you mean 'epochs'\?\) in --set 'epoch=3'"):
        parse_overrides(["epoch=3"])
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_overrides(["epochs"])


def test_a_bad_condition_names_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ConfigError, match="valid conditions: .*'samplers'.*'faulty_pair_rate'"):
        run_study("nope", runs_root=tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--condition", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_every_condition_plans_valid_runs_and_refuses_overriding_what_it_sets(tmp_path):
    for condition in CONDITIONS.values():
        names = [v.name for v in condition.variants]
        runs = plan_runs(condition, tmp_path, DEFAULT_SEEDS, variant_names=names)  # every PretrainConfig validates
        assert len(runs) == len(names) * len(DEFAULT_SEEDS)
        assert len({r.run_dir for r in runs}) == len(runs)
        assert sum(r.downstream for r in runs) == len(names)
    with pytest.raises(ConfigError, match="faulty_pair_rate"):
        plan_runs(CONDITIONS["faulty_pair_rate"], tmp_path, (0,), overrides={"faulty_pair_rate": 0.1})
    with pytest.raises(ConfigError, match="no variant 'nope'"):
        plan_runs(CONDITIONS["samplers"], tmp_path, (0,), variant_names=["nope"])


def test_study_runs_start_from_the_study_base_which_set_and_the_variant_override(tmp_path):
    # the study's base differs from the main job's defaults on purpose (cost); a run must carry it
    assert STUDY_BASE == {"clips_per_class": 60, "epochs": 60}
    (run,) = plan_runs(CONDITIONS["samplers"], tmp_path, (0,), variant_names=["random"])
    assert {k: run.parameters[k] for k in STUDY_BASE} == STUDY_BASE
    (run,) = plan_runs(CONDITIONS["samplers"], tmp_path, (0,), variant_names=["random"], overrides={"epochs": 3})
    assert (run.parameters["epochs"], run.parameters["clips_per_class"]) == (3, 60)
    (run,) = plan_runs(CONDITIONS["redundancy"], tmp_path, (0,), variant_names=["active_cpc120"])
    assert (run.parameters["clips_per_class"], run.parameters["epochs"]) == (120, 60)


# the conditions on the structure of real video and on the robust / label-aware shortcuts: name ->
# (swept parameter, its values in the runs' parameters, the levels the report shows, methods)
STRUCTURE_METHODS = ("random", "active", "active_aware", "active_official")
NEW_CONDITIONS = {
    "imbalance": ("class_imbalance", [1.0, 5.0, 20.0], [1.0, 5.0, 20.0], STRUCTURE_METHODS),
    "sources": ("clips_per_source", [1, 4, 8], [1.0, 4.0, 8.0], STRUCTURE_METHODS),
    "sync": ("av_sync", [True, False], [1.0, 0.0], STRUCTURE_METHODS),
    "faulty_clean": ("faulty_pair_rate", [0.0, 0.25, 0.5], [0.0, 0.25, 0.5], ("xid", "robust_xid")),
    "label_free": ("label_source", ["ground_truth", "kmeans"], ["ground_truth", "kmeans"],
                   ("random", "soft_positive", "class_aware", "hard_negative")),
}


@pytest.mark.parametrize("name", list(NEW_CONDITIONS))
def test_new_conditions_expand_to_every_method_at_every_level_over_their_seeds(name, tmp_path):
    swept, values, levels, methods = NEW_CONDITIONS[name]
    condition = CONDITIONS[name]
    assert condition.swept == swept and condition.levels == levels and condition.methods == list(methods)
    # 10 seeds where a claim's primary comparisons are (issue 31); sync has none and keeps 5
    assert condition.seeds == (FIVE_SEEDS if name == "sync" else TEN_SEEDS)
    assert FIVE_SEEDS == (0, 1, 2, 3, 4) and TEN_SEEDS == tuple(range(10))
    # label_free runs random once (at ground_truth): it ignores the labels, so it is the baseline of both levels
    assert len(condition.variants) == len(values) * len(methods) - (name == "label_free")
    for variant in condition.variants:
        value = values[levels.index(variant.level)]
        assert variant.params[swept] == value and type(variant.params[swept]) is type(value)
    # active_official: the official code's selector over the official candidate source
    official = [v for v in condition.variants if v.method == "active_official"]
    for variant in official:
        assert {k: variant.params[k] for k in ("sampler", "active_embedding", "active_selector", "active_candidates")} \
            == {"sampler": "active", "active_embedding": "key_grad", "active_selector": "lloyd_nearest",
                "active_candidates": "official"}
    aware = [v for v in condition.variants if v.method == "active_aware"]
    assert all(v.params["active_dictionary_aware"] is True for v in aware)
    assert all("active_candidates" not in v.params for v in condition.variants if v.method == "active")
    # every variant builds a valid PretrainConfig
    runs = plan_runs(condition, tmp_path, condition.seeds)
    assert len(runs) == len(condition.variants) * len(condition.seeds) and {r.seed for r in runs} == set(condition.seeds)
    first = condition.variants[0]
    expected_tag = {"imbalance": "imb1", "sources": "src1", "sync": "sync1", "faulty_clean": "faulty0",
                    "label_free": "ground_truth"}[name]
    assert first.name == f"{methods[0]}_{expected_tag}"


def test_the_study_command_runs_a_conditions_own_seeds_by_default(tmp_path, monkeypatch):
    import avlib.study.main as study_main

    planned = {}

    def fake_plan(condition, runs_root, seeds, variants, overrides, downstream=True):
        planned["seeds"] = tuple(seeds)
        return []

    monkeypatch.setattr(study_main, "plan_runs", fake_plan)
    monkeypatch.setattr(study_main, "execute_runs", lambda *args, **kwargs: [])
    monkeypatch.setattr(study_main, "execute_diversity", lambda *args, **kwargs: None)
    monkeypatch.setattr(study_main, "write_report", lambda runs_root, reports_dir: reports_dir / "REPORT.md")
    run_study("faulty_clean", runs_root=tmp_path, reports_dir=tmp_path, log=lambda *_: None)
    assert planned["seeds"] == TEN_SEEDS
    run_study("sync", runs_root=tmp_path, reports_dir=tmp_path, log=lambda *_: None)
    assert planned["seeds"] == FIVE_SEEDS
    run_study("samplers", runs_root=tmp_path, reports_dir=tmp_path, log=lambda *_: None)
    assert planned["seeds"] == DEFAULT_SEEDS
    assert study_main.main(["--condition", "label_free", "--runs-root", str(tmp_path), "--reports-dir",
                            str(tmp_path), "--seeds", "7"]) == 0
    assert planned["seeds"] == (7,)


def test_report_tables_show_named_levels_and_balanced_and_tail_accuracy(tmp_path):
    from avlib.study.findings import _label_source_note
    from avlib.study.report import class_table, probe_table, pseudo_label_table
    from avlib.study.results import ConditionResults, RunResult

    condition = CONDITIONS["label_free"]
    runs = []
    for variant in (condition.variant("soft_positive_ground_truth"), condition.variant("soft_positive_kmeans")):
        for seed, accuracy in ((0, 0.8), (1, 0.6)):
            probe = {m: {"linear": accuracy, "knn": accuracy, "linear_balanced": accuracy - 0.1,
                         "knn_balanced": accuracy - 0.1, "linear_tail": accuracy - 0.2, "knn_tail": None}
                     for m in ("video", "audio")}
            labels = ({"label_purity": accuracy - 0.3, "label_clusters": 10} if variant.level == "kmeans"
                      else {"label_purity": 1.0})
            config = {"sampler": "soft_positive", "label_source": variant.level}
            runs.append(RunResult(variant, seed, tmp_path, config,
                                  {"probe": probe, "probe_random_init": probe, **labels}, {}, {}, None))
    results = ConditionResults(condition, runs, [])
    # the pseudo-labels' purity is reported for the k-means runs only (ground truth is 100% by definition)
    pseudo = pseudo_label_table(results)
    assert "| kmeans | `soft_positive` | 2 | 40.0 ± 14.1 | 10 |" in pseudo and "ground_truth" not in pseudo
    assert "purity of 40.0 ± 14.1% over 2 runs" in _label_source_note({"label_free": results})
    assert pseudo_label_table(ConditionResults(condition, runs[:2], [])) == ""
    table = class_table(results)
    # mean ± std over the two seeds; a tail without test clips (None) is left out, here of every run
    assert "| ground_truth | `soft_positive` | 2 | 70.0 ± 14.1 | 60.0 ± 14.1 | 50.0 ± 14.1 | 70.0 ± 14.1 | 60.0 ± 14.1 | – |" in table
    assert "| kmeans | `soft_positive` | 2 |" in table
    assert "| kmeans | *random init* | 2 |" in probe_table(results)
    assert "5-shot" not in probe_table(results)  # none of these runs has the low-shot probe


def test_the_probe_table_shows_the_5_shot_probe_where_runs_have_it(tmp_path):
    from avlib.study.report import probe_table
    from avlib.study.results import ConditionResults, RunResult

    condition = CONDITIONS["dictionary_size"]
    runs = []
    for name, seed, shot in (("random_dict4096", 0, 0.80), ("random_dict4096", 1, 0.90), ("active_dict4096", 0, None)):
        probe = {m: {"linear": 0.99, "knn": 0.9, **({"linear_5shot": shot} if shot else {})} for m in ("video", "audio")}
        init = {m: {"linear": 0.4, "knn": 0.2} for m in ("video", "audio")}  # a random-init probe from before it
        runs.append(RunResult(condition.variant(name), seed, tmp_path, {}, {"probe": probe, "probe_random_init": init},
                              {}, {}, None))
    table = probe_table(ConditionResults(condition, runs, []))
    assert "| video linear | video kNN | video linear 5-shot | audio linear | audio kNN | audio linear 5-shot |" in table
    assert "| 4096 | `random` | 2 | 99.0 ± 0.0 | 90.0 ± 0.0 | 85.0 ± 7.1 |" in table
    assert "| 4096 | `active` | 1 | 99.0 | 90.0 | – |" in table  # a run made before the probe existed
    assert "| 4096 | *random init* | 2 | 40.0 ± 0.0 | 20.0 ± 0.0 | – |" in table


def _probe_run(condition, name, seed, accuracy, config=None, tail=0.1):
    from avlib.study.results import RunResult

    probe = {m: {"linear": accuracy, "knn": accuracy, "linear_tail": accuracy - tail} for m in ("video", "audio")}
    return RunResult(condition.variant(name), seed, Path("."), dict(config or {}), {"probe": probe}, {}, {}, None)


def test_the_findings_decide_with_the_stats_rule_paired_by_seed():
    """Per-seed differences decide (the shared seed swing cancels); the unpaired test on the same values
    cannot; one seed is untested."""
    from avlib.study.findings import compare
    from avlib.study.results import ConditionResults

    sources = CONDITIONS["sources"]
    swing = [0.0, 0.12, -0.08, 0.05, -0.1]  # what seed k does to both methods
    runs = [_probe_run(sources, f"{method}_src8", seed, 0.6 + swing[seed] + shift + 0.002 * (-1) ** seed)
            for method, shift in (("random", 0.0), ("active", 0.03)) for seed in range(5)]
    results = ConditionResults(sources, runs, [])
    c = compare(results, "random", "active", 8.0, "video linear", True)
    assert c.paired and c.pairing == "paired" and c.seeds == (5, 5)
    assert c.verdict == "better" and c.decision.mean == pytest.approx(3.0)
    assert c.decision.differences == pytest.approx((3.0,) * 5)
    unpaired = decide(list(c.baseline_values.values()), list(c.method_values.values()), paired=False)
    assert unpaired.verdict == "inconclusive"  # the seed swing (~9 points) hides a 3-point gain
    # identical arms but for noise well inside ±2 points: equivalent; fewer than two seeds: untested
    runs = [_probe_run(sources, f"{method}_src8", seed, 0.6 + swing[seed] + 0.002 * (method == "active") * (-1) ** seed)
            for method in ("random", "active") for seed in range(5)]
    assert compare(ConditionResults(sources, runs, []), "random", "active", 8.0, "audio linear", True).verdict \
        == "equivalent"
    one = ConditionResults(sources, [r for r in runs if r.seed == 0], [])
    assert compare(one, "random", "active", 8.0, "audio linear", True).verdict == "untested (fewer than 2 seeds)"


def test_a_one_level_baseline_is_paired_only_on_the_same_data_and_primaries_are_holm_corrected():
    from avlib.study.findings import CLAIMS, compare, claim_comparisons
    from avlib.study.results import ConditionResults

    labels = CONDITIONS["label_free"]
    data = {"clips_per_class": 60, "dataset_seed": 0}
    runs = [_probe_run(labels, name, seed, accuracy + 0.05 * (seed % 2), {**data, "seed": seed})
            for seed in range(5) for name, accuracy in (("random_ground_truth", 0.5), ("soft_positive_kmeans", 0.51),
                                                        ("class_aware_kmeans", 0.6), ("hard_negative_kmeans", 0.5))]
    results = ConditionResults(labels, runs, [])
    c = compare(results, "random", "soft_positive", "kmeans", "video linear", True, "ground_truth")
    assert c.paired and c.pairing == "paired (baseline at ground_truth: same data and seeds)"
    # another dataset under the same seeds is not a pair
    other = [_probe_run(labels, r.name.rsplit("_seed", 1)[0], r.seed, r.probe("video", "linear"),
                        {**r.config, "dataset_seed": 1} if r.variant.method != "random" else r.config) for r in runs]
    c = compare(ConditionResults(labels, other, []), "random", "soft_positive", "kmeans", "video linear", True,
                "ground_truth")
    assert not c.paired and c.pairing == "Welch (unpaired), baseline at ground_truth"
    # the claim's six primary comparisons are decided together: Holm-adjusted over 18 hypotheses
    comparisons = claim_comparisons(CLAIMS[2], {"label_free": results})
    primary = [c for c in comparisons if c.primary]
    assert len(primary) == 6 and all(c.holm and c.decision.p_adjusted for c in primary)
    alone = compare(results, "random", "soft_positive", "kmeans", "video linear", True, "ground_truth").decision
    assert alone.verdict == "better" and alone.within_margin  # +1 point each seed: better, by less than δ
    soft = next(c for c in primary if c.method == "soft_positive" and c.metric == "video linear")
    assert soft.decision.p_adjusted["better"] == pytest.approx(0.0) and soft.verdict == "better"
    assert {c.verdict for c in primary if c.method == "class_aware"} == {"better"}
    assert {c.verdict for c in primary if c.method == "hard_negative"} == {"equivalent"}


def test_claims_read_the_testbed_conditions_with_their_trends_and_baseline_levels(tmp_path):
    """CM-ACC is decided at the most redundant level of `sources` (tail accuracy beside it), with the trend
    over the levels and its intervals; label_free's k-means runs are compared with the one random variant
    (ground_truth), paired."""
    from avlib.study.findings import CLAIMS, _trend, claim_comparisons
    from avlib.study.results import ConditionResults

    sources = CONDITIONS["sources"]
    runs = [_probe_run(sources, f"{method}_src{level}", seed, base + gain * (method == "active") + 0.01 * seed)
            for level, gain in ((1, 0.0), (4, 0.02), (8, 0.05)) for method, base in (("random", 0.6), ("active", 0.6))
            for seed in range(3)]
    labels = CONDITIONS["label_free"]
    runs_lf = [_probe_run(labels, name, seed, accuracy + 0.01 * seed) for seed in range(3)
               for name, accuracy in (("random_ground_truth", 0.5), ("soft_positive_kmeans", 0.6),
                                      ("soft_positive_ground_truth", 0.7))]
    available = {"sources": ConditionResults(sources, runs, []), "label_free": ConditionResults(labels, runs_lf, [])}
    cmacc = claim_comparisons(CLAIMS[0], available)
    primary = [c for c in cmacc if c.primary]
    assert {(c.level, c.metric) for c in primary} == {(8.0, "video linear"), (8.0, "audio linear")}
    assert all(c.decision.mean == pytest.approx(5.0) and c.verdict == "better" and c.paired for c in primary)
    assert len(cmacc) == len({(c.condition, c.level, c.method, c.metric) for c in cmacc})  # each cell once
    trend = _trend(available, "sources", "random", "active")
    assert ("video linear: +0.00 [+0.00, +0.00] equivalent at 1, +2.00 [+2.00, +2.00] better at 4, "
            "+5.00 [+5.00, +5.00] better at 8; from 1 to 8 the difference grows (+5.00") in trend
    label = [c for c in claim_comparisons(CLAIMS[2], available) if c.primary and c.method == "soft_positive"]
    assert {c.level for c in label} == {"kmeans"} and all(c.decision.mean == pytest.approx(10.0) for c in label)
    assert "not tested (run `make study CONDITION=imbalance`)" in _trend(available, "imbalance", "random", "active")
    # label-free's trend: both label sources against the one random baseline (ground truth -> k-means)
    label_trend = _trend(available, "label_free", "random", "soft_positive")
    assert "+20.00 [+20.00, +20.00] better at ground_truth, +10.00 [+10.00, +10.00] better at kmeans" in label_trend
    assert "from ground_truth to kmeans the difference falls (-10.00" in label_trend and "paired t" in label_trend
    assert _trend(available, "label_free", "random", "class_aware").endswith("needs runs at two levels or more.")


def test_a_run_equal_to_a_finished_run_of_another_condition_is_linked_not_trained(tmp_path):
    """imbalance at 1 and sources at 1 are both the study base: the second is a link to the first;
    a run that differs in one parameter (or the runs of the same condition) is left to train."""
    from avlib.config import PretrainConfig

    (trained,) = plan_runs(CONDITIONS["sources"], tmp_path, (0,), variant_names=["active_src1"])
    trained.run_dir.mkdir(parents=True)
    PretrainConfig.from_dict(trained.parameters).save(trained.run_dir / "config.json")
    (trained.run_dir / "summary.json").write_text("{}")
    runs = plan_runs(CONDITIONS["imbalance"], tmp_path, (0, 1), variant_names=["active_imb1", "active_imb5"])
    runs += plan_runs(CONDITIONS["sources"], tmp_path, (0,), variant_names=["random_src1"])
    assert link_twins(runs, tmp_path, log=lambda *_: None) == 1
    (twin,) = [r for r in runs if r.run_dir.is_symlink()]
    assert twin.name == "active_imb1_seed0" and twin.finished and not twin.downstream_finished
    assert twin.run_dir.resolve() == trained.run_dir.resolve()
    assert not (tmp_path / "imbalance" / "active_imb1_seed1").exists()  # another seed is another run
    assert link_twins(runs, tmp_path, log=lambda *_: None) == 0  # idempotent
    no_downstream = plan_runs(CONDITIONS["sources"], tmp_path, (0, 1), downstream=False)
    assert not any(r.downstream for r in no_downstream)


def test_a_folder_holding_a_run_of_another_configuration_is_refused_not_counted_finished(tmp_path):
    """A 30-epoch pilot under the runs root must not pass for the 60-epoch run of the same name."""
    from avlib.config import PretrainConfig
    from avlib.study.run import execute_runs

    (run,) = plan_runs(CONDITIONS["sources"], tmp_path, (0,), variant_names=["random_src8"])
    run.run_dir.mkdir(parents=True)
    PretrainConfig.from_dict({**run.parameters, "epochs": 30}).save(run.run_dir / "config.json")
    (run.run_dir / "summary.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"random_src8_seed0 holds a run of another configuration "
                                          r"\(epochs=30 there, 60 planned\)"):
        execute_runs([run], tmp_path / "reports", jobs=1, log=lambda *_: None)


def test_provenance_counts_a_linked_run_once_and_names_its_twin(tmp_path):
    from avlib.config import PretrainConfig
    from avlib.study.report import provenance_section
    from avlib.study.results import ConditionResults, RunResult

    trained_dir = tmp_path / "runs" / "sources" / "random_src1_seed0"
    trained_dir.mkdir(parents=True)
    linked_dir = tmp_path / "runs" / "imbalance" / "random_imb1_seed0"
    linked_dir.parent.mkdir(parents=True)
    linked_dir.symlink_to("../sources/random_src1_seed0", target_is_directory=True)
    config = PretrainConfig.from_dict({**STUDY_BASE, "sampler": "random"}).to_dict()
    summary = {"wall_s": 3600.0, "num_threads": 1}

    def result(condition, variant, run_dir):
        return ConditionResults(CONDITIONS[condition], [RunResult(CONDITIONS[condition].variant(variant), 0, run_dir,
                                                                  config, summary, {}, {}, None)], [])

    record = {"attempts": [{"started": "2026-11-29T03:46:00Z", "finished": "2026-11-29T03:50:00Z"}]}
    available = {"sources": result("sources", "random_src1", trained_dir),
                 "imbalance": result("imbalance", "random_imb1", linked_dir)}
    for results in available.values():
        results.runs[0].record.update(record)
    text = provenance_section(available, tmp_path / "reports")
    assert "summed run wall time 1.00 h over 1 trained runs" in text
    assert "1 run(s) of one condition" in text and "imbalance/random_imb1_seed0 = sources/random_src1_seed0" in text
    # the linked run's parameters link to its origin's kept copy (kept once, not once per condition)
    assert "[random_imb1_seed0](study/runs/sources/random_src1_seed0/config.json)" in text
    assert "study/runs/imbalance/" not in text


def _write_finished(run, accuracy, wall_s=60.0):
    """A finished run folder as the loop leaves it (config.json, summary.json) and its study record."""
    from avlib.config import PretrainConfig

    run.run_dir.mkdir(parents=True)
    PretrainConfig.from_dict(run.parameters).save(run.run_dir / "config.json")
    probe = {m: {"linear": accuracy, "knn": accuracy} for m in ("video", "audio")}
    summary = {"probe": probe, "probe_random_init": probe, "wall_s": wall_s, "train_wall_s": wall_s,
               "mean_step_s": 0.5, "mean_select_s": 0.001, "steps": 100, "num_clips": 600, "num_threads": 1}
    (run.run_dir / "summary.json").write_text(json.dumps(summary))
    (run.run_dir / "study_run.json").write_text(json.dumps({"condition": run.condition, "attempts": [
        {"started": "2026-11-29T03:46:00Z", "finished": "2026-11-29T03:50:00Z", "commit": "abc", "dirty": False}]}))


def test_the_report_rebuilds_from_the_kept_copies_with_the_same_numbers_and_twins(tmp_path):
    """Without the run folders, --from-kept reads reports/study/runs/ and finds the run two conditions share
    (kept once, under the condition that trained it) for the other: every table and verdict is the same."""
    from avlib.study.report import write_report

    runs_root, reports = tmp_path / "runs", tmp_path / "reports"
    trained = plan_runs(CONDITIONS["sources"], runs_root, (0, 1), variant_names=["random_src1", "active_src1"])
    for run in trained:
        _write_finished(run, 0.5 + 0.1 * (run.variant.method == "active") + 0.02 * run.seed)
    twins = plan_runs(CONDITIONS["sync"], runs_root, (0, 1), variant_names=["random_sync1", "active_sync1"])
    assert link_twins(twins, runs_root, log=lambda *_: None) == 4
    from_folders = write_report(runs_root, reports).read_text()
    kept = reports / "study" / "runs"
    assert sorted(p.name for p in kept.iterdir()) == ["sources", "sync"]
    assert [p.name for p in (kept / "sync").iterdir()] == ["links.json"]  # a linked run is kept once
    import shutil

    shutil.rmtree(runs_root)
    assert main(["--report-only", "--from-kept", "--reports-dir", str(reports)]) == 0
    from_kept = (reports / "REPORT.md").read_text()

    def numbers(text):  # everything but the lines naming where the runs were read from
        return [line for line in text.splitlines() if "read from" not in line and "run folders under" not in line
                and not line.startswith(("Generated by `make study`", "Rebuilt by"))]

    assert numbers(from_kept) == numbers(from_folders)
    assert "4 run(s) of one condition are the same configuration" in from_kept
    assert "sync/random_sync1_seed0 = sources/random_src1_seed0" in from_kept
    assert "2 of them another condition's runs" not in from_kept and "4 of them another condition's runs" in from_kept
    with pytest.raises(SystemExit):
        main(["--from-kept", "--reports-dir", str(reports)])  # it only rebuilds the report


def test_a_run_made_before_a_parameter_existed_is_still_the_same_run(tmp_path):
    """config.json of an older run lacks a newer parameter: it ran at the default, so it stays finished,
    its twin is still linked and check_existing_folders does not refuse it."""
    from avlib.study.run import check_existing_folders, same_run_parameters

    (run,) = plan_runs(CONDITIONS["sources"], tmp_path, (0,), variant_names=["random_src8"])
    _write_finished(run, 0.5)
    saved = json.loads((run.run_dir / "config.json").read_text())
    del saved["decoder"], saved["data_source"]  # added after the committed study's runs
    (run.run_dir / "config.json").write_text(json.dumps(saved))
    check_existing_folders([run])
    assert same_run_parameters(saved) == same_run_parameters(json.loads(json.dumps(
        {**saved, "decoder": "auto", "data_source": "auto"})))
    saved["decoder"] = "pyav"  # a real difference is still one
    (run.run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="decoder='pyav' there, 'auto' planned"):
        check_existing_folders([run])


def test_label_quality_runs_the_label_aware_methods_at_three_label_qualities_against_one_random(tmp_path):
    from avlib.config import PretrainConfig

    condition = CONDITIONS["label_quality"]
    assert condition.levels == ["ground_truth", "noise0.3", "kmeans"] and condition.seeds == TEN_SEEDS
    assert condition.methods == ["random", "soft_positive", "class_aware"]
    assert condition.single_level_of("random") == "ground_truth"  # it reads no labels: every level's baseline
    params = {v.name: v.params for v in condition.variants}
    assert params["soft_positive_noise0.3"] == {"sampler": "soft_positive", "label_source": "ground_truth",
                                                "label_noise": 0.3}
    assert params["class_aware_kmeans"] == {"sampler": "class_aware", "label_source": "kmeans"}
    assert len(condition.variants) == 7
    # its ground-truth and k-means variants are label_free's runs (linked, not trained again); the noisy ones train
    for run in plan_runs(CONDITIONS["label_free"], tmp_path, (0,)):
        run.run_dir.mkdir(parents=True)
        PretrainConfig.from_dict(run.parameters).save(run.run_dir / "config.json")
        (run.run_dir / "summary.json").write_text("{}")
    planned = plan_runs(condition, tmp_path, (0,))
    assert link_twins(planned, tmp_path, log=lambda *_: None) == 5
    assert sorted(r.variant.name for r in planned if not r.run_dir.exists()) == ["class_aware_noise0.3",
                                                                               "soft_positive_noise0.3"]


def test_dictionary_size_is_cm_accs_axis_on_a_dataset_the_largest_dictionary_is_a_small_share_of():
    from avlib.data.synthetic import SyntheticSpec, _layout

    condition = CONDITIONS["dictionary_size"]
    assert condition.levels == [256.0, 1024.0, 4096.0] and condition.seeds == TEN_SEEDS
    assert condition.methods == ["random", "active", "active_official"]
    variant = condition.variant("random_dict4096")
    spec = SyntheticSpec(num_classes=variant.params["num_classes"], clips_per_class=variant.params["clips_per_class"])
    train = list(_layout(spec)[2]).count("train")
    assert train == 18000 and 4096 / train < 0.25  # at the study base 256 keys are 71% of 360 training clips
    # the official dynamics' pool holds 10/3 of the dictionary (init_dict: 10 batches of pool, 3 of dictionary)
    pools = {v.level: v.params["active_pool_factor"] for v in condition.variants if v.method == "active_official"}
    assert pools == {256.0: 27, 1024.0: 107, 4096.0: 427}
    assert all("active_pool_factor" not in v.params for v in condition.variants if v.method != "active_official")
    # 11,240 steps: at 2 epochs (1124) the cross-modal term never learned the clips (its positive pulled ahead of
    # the fresh negatives at step 2,169 of the 20-epoch schedule, at 4096 keys)
    assert all(v.params["epochs"] == 20 and v.params["objective"] == "joint" for v in condition.variants)
    # its primary comparisons read the 5-shot probe: the full-label linear probe saturated there (99.6-99.8%)
    from avlib.study.findings import CLAIMS, LOW_SHOT

    specs = [spec for spec in CLAIMS[0].specs if spec.condition == "dictionary_size"]
    assert {spec.method for spec in specs if spec.primary} == {"active", "active_official"}
    assert all(spec.metrics == LOW_SHOT for spec in specs if spec.primary)
    # bf16 autocast (bench/precision_check.py: it changes no decided comparison), and the study says when the CPU
    # has no native bf16 to make it pay
    assert all(v.params["precision"] == "bf16" for v in condition.variants)
    runs = plan_runs(condition, Path("/nonexistent"), (0,), ["random_dict4096"])
    assert "no native bf16" in bf16_note(runs, native=False) and bf16_note(runs, native=True) is None
    assert bf16_note(plan_runs(CONDITIONS["sources"], Path("/nonexistent"), (0,)), native=False) is None


def test_the_label_aware_claim_decides_on_label_quality_once_it_has_runs():
    """label_quality holds label_free's soft_positive and class_aware cells (the same runs, linked): once it has
    runs they come from it, at its noisy and k-means levels; hard_negative stays label_free's."""
    from avlib.study.findings import CLAIMS, claim_comparisons, claim_trends
    from avlib.study.results import ConditionResults

    labels, quality = CONDITIONS["label_free"], CONDITIONS["label_quality"]
    data = {"clips_per_class": 60, "seed": 0}
    free = [_probe_run(labels, v.name, seed, 0.5 + 0.01 * seed, {**data, "seed": seed}) for v in labels.variants
            for seed in range(3)]
    lq = [_probe_run(quality, v.name, seed, 0.5 + 0.01 * seed + 0.05 * (v.method != "random"), {**data, "seed": seed})
          for v in quality.variants for seed in range(3)]
    only_free = {"label_free": ConditionResults(labels, free, [])}
    primary = [c for c in claim_comparisons(CLAIMS[2], only_free) if c.primary]
    assert {(c.condition, c.method) for c in primary} == {("label_free", m) for m in ("soft_positive", "class_aware",
                                                                                      "hard_negative")}
    both = {**only_free, "label_quality": ConditionResults(quality, lq, [])}
    comparisons = claim_comparisons(CLAIMS[2], both)
    primary = [c for c in comparisons if c.primary]
    assert {(c.condition, c.method, c.level) for c in primary} == {
        ("label_quality", m, level) for m in ("soft_positive", "class_aware") for level in ("noise0.3", "kmeans")
    } | {("label_free", "hard_negative", "kmeans")}
    assert all(c.paired and c.verdict == "better" for c in primary if c.condition == "label_quality")
    assert not any(c.condition == "label_free" and c.method != "hard_negative" for c in comparisons)
    assert ("label_free", "random", "soft_positive") not in claim_trends(CLAIMS[2], both)
    assert ("label_quality", "random", "soft_positive") in claim_trends(CLAIMS[2], both)


def test_the_committed_report_holds_no_unformatted_placeholder():
    """A string that lost its f prefix leaves ``{NAME[...]:g}`` in the report (it did once: δ's line)."""
    text = (Path(__file__).resolve().parents[1] / "reports" / "REPORT.md").read_text()
    assert not re.findall(r"\{[A-Za-z_]+(?:\[[^\]]*\])?(?::[^}]*)?\}", text)


def test_a_new_session_restores_the_finished_runs_from_the_kept_copies_and_trains_nothing(study, tmp_path):
    """runs/ is lost with the session, reports/ is committed: the study command run again on an empty runs root
    restores every finished run from its kept copy (nothing trained, nothing probed, notebook 03 not run over
    folders without metrics), leaves the kept copies' bytes alone, and writes the report --from-kept writes."""
    import shutil

    root, _, _ = study
    reports, from_kept = tmp_path / "reports", tmp_path / "from_kept"
    shutil.copytree(root / "reports", reports)
    shutil.copytree(root / "reports", from_kept)
    kept = reports / "study" / "runs"
    before = tree_state(kept)
    lines = []
    _, failures = run_study("samplers", jobs=1, runs_root=tmp_path / "runs", reports_dir=reports, seeds=(0,),
                            variants=VARIANTS, overrides=OVERRIDES, umap=False, log=lines.append)
    assert not failures, failures
    log = "\n".join(lines)
    for method in VARIANTS:
        assert f"samplers/{method}_seed0: restored from the kept copy" in log
        record = json.loads((tmp_path / "runs" / "samplers" / f"{method}_seed0" / "study_run.json").read_text())
        assert record["restored_from_kept"][0]["from"].endswith(f"study/runs/samplers/{method}_seed0")
        assert not (tmp_path / "runs" / "samplers" / f"{method}_seed0" / "checkpoints").exists()
    assert f"{len(VARIANTS)} runs under" in log and f"({len(VARIANTS)} already finished)" in log
    assert log.count("skipped (finished)") == len(VARIANTS)  # notebook 04 is not asked of a folder without checkpoint
    assert "diversity notebook skipped" in log and "restored from kept copies" in log
    assert tree_state(kept) == before  # the restore mark stays out of the kept copies
    assert main(["--report-only", "--from-kept", "--reports-dir", str(from_kept)]) == 0

    def tables(text):  # every line but those naming where the runs were read from
        return [line for line in text.splitlines() if "read from" not in line and "run folders under" not in line
                and not line.startswith(("Generated by `make study`", "Rebuilt by"))]

    restored_report = (reports / "REPORT.md").read_text()
    assert tables(restored_report) == tables((from_kept / "REPORT.md").read_text())
    assert "2 of them restored from their copies kept under `study/runs/`" in restored_report
    assert "| `random` | 1 |" in restored_report and "### Dictionary diversity" in restored_report
