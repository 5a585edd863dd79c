"""``reports/REPORT.md`` and its figures, rebuilt from the run folders of every condition present.

Every number in the report is read from a run folder (``summary.json``, ``metrics.csv``,
``downstream/run/results.json``, ``study_run.json``, ``config.json``) or ``uv.lock``-derived
versions recorded there -- or from the copies of a run's small files kept beside the report
(``reports/study/runs/``, :mod:`avlib.study.results`), so that the report can be rebuilt where the
run folders are gone (``--from-kept``); nothing depends on when the report is written, so
rebuilding it from the same runs gives the same bytes, and files whose bytes would not change are
not rewritten.

This module writes the per-condition tables and figures and the provenance; the findings (claims,
comparisons, verdicts) are :mod:`avlib.study.findings`, their statistics :mod:`avlib.study.stats`, the test
split's share of their spread :mod:`avlib.study.noise`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from avlib.config import PretrainConfig
from avlib.eval.probe import SHOT_DRAWS, SHOTS
from avlib.study.conditions import CONDITIONS
from avlib.study.findings import findings_section
from avlib.study.kept import DIVERSITY_RECORD, KEPT, RECORD, is_restored, keep_run, kept_dir, write_if_changed
from avlib.study.noise import NOISE_ANCHOR, NOISE_TITLE, arms_noise, claims_noise, noise_section
from avlib.study.results import (LINKS, LOW_SHOT_PROBE, MODALITIES, PROBE_NAMES, PROBES, ConditionResults, RunResult,
                                 collect, figure_bytes, fmt, level_label, level_text, mean_std, rel, table)
from avlib.study.run import PACKAGES, copy_if_changed

#: parameters that differ between any two runs for bookkeeping only
BOOKKEEPING = {"run_dir", "progress", "random_init_cache"}


# ----------------------------------------------------------------------------- per-condition tables


def _row_label(results: ConditionResults, variant: Variant) -> list[str]:
    cells = [f"`{variant.method}`"]
    return ([level_text(variant.level)] if results.condition.swept else []) + cells


def _first_columns(results: ConditionResults) -> list[str]:
    return ([results.condition.swept] if results.condition.swept else []) + ["method", "seeds"]


def probe_table(results: ConditionResults) -> str:
    """Linear and kNN test accuracy (%) per variant, and the random-init encoders per level; also the linear
    probe on 5 labels a class (``linear_5shot``) where the condition's runs have it (its comparisons read it
    where the full-label probe saturates: ``findings.LOW_SHOT``)."""
    low_shot = any(r.probe_or_none(m, LOW_SHOT_PROBE) is not None for r in results.runs for m in MODALITIES)
    columns = [(m, k) for m in MODALITIES for k in PROBES + ((LOW_SHOT_PROBE,) if low_shot else ())]
    header = _first_columns(results) + [f"{m} {PROBE_NAMES[k]}" for m, k in columns]
    rows = []
    levels = results.condition.levels or [None]
    for level in levels:
        level_runs = []
        for variant in results.variants:
            if variant.level != level:
                continue
            runs = results.of(variant)
            level_runs += runs
            rows.append(_row_label(results, variant) + [str(len(runs))] +
                        [fmt([r.probe(m, k) if k in PROBES else r.probe_or_none(m, k) for r in runs], 100)
                         for m, k in columns])  # every run has linear and kNN; older ones lack the 5-shot
        first_per_seed = {r.seed: r for r in reversed(level_runs)}  # same encoders for every method of a seed
        if first_per_seed:
            baseline = list(first_per_seed.values())
            rows.append(([level_text(level)] if level is not None else []) + ["*random init*", str(len(baseline))] +
                        [fmt([r.summary["probe_random_init"][m].get(k) for r in baseline], 100) for m, k in columns])
    return table(header, rows, align_from=len(_first_columns(results)) - 1)


def class_table(results: ConditionResults) -> str:
    """Balanced accuracy (mean per-class recall) and tail accuracy (mean recall of the rarest third of
    the classes by training clips; ``avlib.eval.probe.tail_classes``) per variant, beside the accuracy."""
    header = _first_columns(results) + [f"{m} {PROBE_NAMES[k]} {name}" for m in MODALITIES for k in PROBES
                                        for name in ("acc.", "balanced", "tail")]
    rows = []
    for variant in results.variants:
        runs = results.of(variant)
        cells = []
        for m in MODALITIES:
            for k in PROBES:
                cells += [fmt([r.probe(m, k) for r in runs], 100),
                          fmt([r.probe_or_none(m, f"{k}_balanced") for r in runs], 100),
                          fmt([r.probe_or_none(m, f"{k}_tail") for r in runs], 100)]
        rows.append(_row_label(results, variant) + [str(len(runs))] + cells)
    return table(header, rows, align_from=len(_first_columns(results)) - 1)


def _imperfect_labels(run: RunResult) -> bool:
    """A label-aware run whose labels are not the ground truth (k-means pseudo-labels, or noisy labels)."""
    return run.config.get("label_source") == "kmeans" or bool(run.config.get("label_noise"))


def pseudo_label_table(results: ConditionResults) -> str:
    """End-of-training purity of the labels a label-aware run used, per variant, where they are not the
    ground truth (``label_purity`` in ``summary.json``: the share of training clips whose cluster's --
    or noisy label's -- majority class is their class; logged, never used): what the methods had to
    work with.  Empty where every run used the ground truth."""
    rows = []
    for variant in results.variants:
        runs = [r for r in results.of(variant) if _imperfect_labels(r)]
        if runs:
            purity = fmt([r.summary.get("label_purity") for r in runs], 100)
            clusters = ", ".join(sorted({str(r.summary.get("label_clusters")) for r in runs}))
            rows.append(_row_label(results, variant) + [str(len(runs)), purity, clusters])
    if not rows:
        return ""
    return table(_first_columns(results) + ["label purity (%)", "clusters"], rows,
                  align_from=len(_first_columns(results)) - 1)


def diversity_table(results: ConditionResults) -> str:
    """End-of-training dictionary diversity (mean over the last epoch, then over seeds) of the runs whose
    diversity was read (kept copies made before ``diversity.json`` existed have none: the seeds column
    counts the runs that have it)."""
    header = _first_columns(results) + [f"{m} dict. {name}" for m in MODALITIES
                                        for name in ("class entropy (nats)", "distinct classes", "biased-key rate")]
    rows = []
    for variant in results.variants:
        runs = [r for r in results.of(variant) if r.diversity]
        if not runs:
            continue
        cells = []
        for m in MODALITIES:
            cells += [fmt([r.diversity[m]["entropy"] for r in runs], digits=3),
                      fmt([r.diversity[m]["classes"] for r in runs], digits=1),
                      fmt([r.diversity[m]["biased"] for r in runs], digits=3)]
        rows.append(_row_label(results, variant) + [str(len(runs))] + cells)
    return table(header, rows, align_from=len(_first_columns(results)) - 1)


def time_table(results: ConditionResults) -> str:
    """Wall time per run and the dictionary update's share of a step (the active selection for
    ``active``; the queue or memory-bank update for the others)."""
    header = _first_columns(results) + ["run wall (min)", "training (min)", "step (ms)", "dictionary update (ms)",
                                        "update share of step (%)", "update share of run wall (%)"]
    rows = []
    for variant in results.variants:
        runs = results.of(variant)
        rows.append(_row_label(results, variant) + [str(len(runs)),
                    fmt([r.summary["wall_s"] for r in runs], 1 / 60),
                    fmt([r.summary["train_wall_s"] for r in runs], 1 / 60),
                    fmt([r.summary["mean_step_s"] for r in runs], 1000),
                    fmt([r.summary["mean_select_s"] for r in runs], 1000, digits=2),
                    fmt([r.summary["mean_select_s"] / r.summary["mean_step_s"] for r in runs], 100),
                    fmt([r.summary["mean_select_s"] * r.summary["steps"] / r.summary["wall_s"] for r in runs], 100)])
    return table(header, rows, align_from=len(_first_columns(results)) - 1)


def downstream_table(results: ConditionResults, report_dir: Path) -> str | None:
    """Notebook 04's probes (first seed of each variant), beside the same run's summary.json."""
    rows = []
    for variant in results.variants:
        runs = [r for r in results.of(variant) if r.downstream]
        if not runs:
            continue
        run = runs[0]
        cells = []
        for m in MODALITIES:
            for k in PROBES:
                value = run.downstream.get((m, k))
                cells.append("–" if value is None else f"{100 * value:.1f} ({100 * run.probe(m, k):.1f})")
        notebook = run.run_dir / "04_downstream.ipynb"
        rows.append(_row_label(results, variant) + [f"[{run.seed}]({rel(notebook, report_dir)})"] + cells)
    if not rows:
        return None
    header = ([results.condition.swept] if results.condition.swept else []) + ["method", "seed"] + \
        [f"{m} {PROBE_NAMES[k]}" for m in MODALITIES for k in PROBES]
    return table(header, rows, align_from=len(header) - 4)


# ----------------------------------------------------------------------------- figures


def probe_figure(results: ConditionResults):
    """Samplers: linear-probe accuracy per method (bars: mean, whiskers: std over seeds)."""
    import matplotlib.pyplot as plt

    variants = results.variants
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    for ax, modality in zip(axes, MODALITIES):
        stats = [mean_std([r.probe(modality, "linear") for r in results.of(v)]) for v in variants]
        means = [100 * s[0] for s in stats]
        stds = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
        ax.bar(range(len(variants)), means, yerr=stds, capsize=3, color="tab:blue", alpha=0.8)
        baseline = mean_std([r.summary["probe_random_init"][modality]["linear"] for r in results.runs])[0]
        ax.axhline(100 * baseline, color="grey", linestyle="--", label="random init")
        ax.set_xticks(range(len(variants)), [v.method for v in variants], rotation=35, ha="right")
        ax.set_title(f"{modality}: linear probe, test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_figure(results: ConditionResults):
    """Sweeps: linear-probe accuracy and the video dictionary's diversity against the swept value (the
    diversity panels where the runs' diversity was read: not from kept copies that predate it)."""
    import matplotlib.pyplot as plt

    condition = results.condition
    panels = [("probe", "video", "linear probe, video (%)"), ("probe", "audio", "linear probe, audio (%)")]
    if results.has_diversity:
        panels += [("entropy", "video", "video dict. class entropy (nats)"),
                   ("biased", "video", "video dict. biased-key rate")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8))
    for ax, (quantity, modality, title) in zip(axes, panels):
        for index, method in enumerate(condition.methods):
            color = f"C{index % 10}"  # one colour per method in every panel
            xs, means, stds = [], [], []
            for level in condition.levels:
                runs = results.method_at(method, level)
                if not runs:
                    continue
                if quantity == "probe":
                    values = [100 * r.probe(modality, "linear") for r in runs]
                else:
                    values = [r.diversity[modality][quantity] for r in runs if r.diversity]
                mean, std, _ = mean_std(values)
                xs.append(level)
                means.append(mean)
                stds.append(0.0 if math.isnan(std) else std)
            if xs and condition.single_level_of(method) is not None:  # the baseline of every level: a band
                ax.axhline(means[0], color=color, linestyle="--", linewidth=1, label=f"{method} (all levels)")
                ax.axhspan(means[0] - stds[0], means[0] + stds[0], color=color, alpha=0.12)
            elif xs:
                ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, color=color, label=method)
        ax.set_xlabel(condition.swept)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- provenance


def _non_defaults(config: dict) -> dict:
    defaults = PretrainConfig().to_dict()
    return {k: v for k, v in sorted(config.items()) if k not in BOOKKEEPING and defaults.get(k) != v}


def _params_text(params: dict) -> str:
    return ", ".join(f"`{k}={v!r}`" for k, v in params.items()) or "(none)"


def provenance_section(available: dict[str, ConditionResults], report_dir: Path) -> str:
    runs = [r for results in available.values() for r in results.runs]
    attempts = [a for r in runs for a in r.record.get("attempts", [])]
    parts = ["## Provenance", ""]
    commits: dict[str, int] = {}
    for r in runs:
        last = r.record.get("attempts", [{}])[-1]
        key = f"`{last.get('commit', 'unknown')}`" + (" (uncommitted changes)" if last.get("dirty") else
                                                      " (clean)" if last.get("dirty") is False else "")
        commits[key] = commits.get(key, 0) + 1
    parts.append("- Code (git commit when each run was last launched; reports/ and runs/ not counted as changes): " +
                 "; ".join(f"{k}: {n} run(s)" for k, n in sorted(commits.items())))
    versions = sorted({json.dumps(a.get("packages", {}), sort_keys=True) for a in attempts})
    for text in versions:
        versions = json.loads(text)
        parts.append("- Packages (uv.lock): " + ", ".join(f"{k} {versions[k]}" for k in PACKAGES if k in versions))
    machines = sorted({json.dumps(a.get("machine", {}), sort_keys=True) for a in attempts})
    for text in machines:
        m = json.loads(text)
        parts.append(f"- Machine: {m.get('cpu')}, {m.get('cores')} cores, GPU: {m.get('gpu') or 'none'}, "
                     f"Python {m.get('python')}")
    jobs = sorted({a.get("jobs") for a in attempts if a.get("jobs")})
    threads = sorted({r.summary.get("num_threads") for r in runs})
    parts.append(f"- Parallel jobs: {', '.join(map(str, jobs)) or '?'}; torch threads per run: "
                 f"{', '.join(map(str, threads))}")
    started = [a["started"] for a in attempts if a.get("started")]
    finished = [a["finished"] for a in attempts if a.get("finished")]
    trained = {r.run_dir.resolve(): r for r in runs}  # a linked run (link_twins) is another's folder
    if started and finished:
        parts.append(f"- Study time (UTC, from the runs' `{RECORD}`): first run started {min(started)}, last run "
                     f"finished {max(finished)}; summed run wall time "
                     f"{sum(r.summary['wall_s'] for r in trained.values()) / 3600:.2f} h over {len(trained)} "
                     f"trained runs")
    linked = [(name, r) for name, results in available.items() for r in results.runs if r.linked]
    if linked:
        parts.append(f"- {len(linked)} run(s) of one condition are the same configuration and seed as a run of "
                     "another and link to its folder instead of training again: "
                     + ", ".join(f"{name}/{r.name} = {r.origin}" for name, r in linked))
    parts += ["", "Parameters of every run (differences from `PretrainConfig`'s defaults; the link opens a copy "
              "of the run's `config.json`, kept with its `summary.json` and `study_run.json` under `study/runs/`):", ""]
    for name, results in available.items():
        if not results.runs:
            continue
        per_run = [_non_defaults(r.config) for r in results.runs]
        common = {k: v for k, v in per_run[0].items() if all(p.get(k) == v for p in per_run)}
        parts += [f"**{name}** — common to all its runs: {_params_text(common)}", ""]
        rows = [[f"[{r.name}]({rel(kept_dir(r.run_dir, report_dir / 'study') / 'config.json', report_dir)})",
                 _params_text({"seed": r.config["seed"], **{k: r.config[k] for k in r.variant.params},
                               **{k: v for k, v in p.items() if k not in common}})]
                for r, p in zip(results.runs, per_run)]
        parts += [table(["run", "its own parameters (seed, the variant's, others not common)"], rows,
                         align_from=2), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the whole report


def plan_section(available: dict[str, ConditionResults]) -> str:
    """The conditions a claim's primary comparisons need that have not finished their planned runs
    (variants x the condition's seeds): what is still to run, and the command that runs it (it
    skips finished runs and links the runs another condition already trained)."""
    from avlib.study.findings import CLAIMS

    needed = list(dict.fromkeys(spec.condition for claim in CLAIMS for spec in claim.specs if spec.primary))
    rows = []
    for name in needed:
        condition = CONDITIONS[name]
        planned = len(condition.variants) * len(condition.seeds)
        finished = len(available[name].runs) if name in available else 0
        if finished < planned:
            command = f"`make study CONDITION={name} STUDY_ARGS='--no-downstream --no-umap'`"
            rows.append([f"`{name}`", f"{len(condition.variants)} x {len(condition.seeds)} = {planned}", str(finished),
                         str(planned - finished), command])
    if not rows:
        return ""
    return "\n".join(["## Plan", "", "Conditions with a claim's primary comparisons whose planned runs (variants x "
                      "seeds, `avlib/study/conditions.py`, which also estimates their cost) are not all finished; "
                      "a run another condition already trained is linked, not trained again.", "",
                      table(["condition", "planned runs", "finished", "still to run or link", "command"], rows,
                            align_from=1), ""])



def _where_read(results: ConditionResults, report_dir: Path, study_dir: Path, kept: bool) -> str:
    linked = sum(r.linked for r in results.runs)
    shared = f", {linked} of them another condition's runs of the same parameters" if linked else ""
    if kept:
        return (f"read from the copies of their small files kept under "
                f"`{rel(study_dir / 'runs' / results.condition.name, report_dir)}/`{shared}")
    restored = sum(is_restored(r.run_dir) for r in results.runs)
    restored_text = (f", {restored} of them restored from their copies kept under `{rel(study_dir / 'runs', report_dir)}/`"
                     " (`avlib.study.run.restore_kept`)" if restored else "")
    return f"run folders under `{rel(results.runs[0].run_dir.parent, report_dir)}/`{shared}{restored_text}"


def _condition_section(results: ConditionResults, report_dir: Path, study_dir: Path, kept: bool = False) -> str:
    condition = results.condition
    folder = study_dir / condition.name
    planned = len(condition.variants) * len(condition.seeds)  # its default plan (a command may name other seeds)
    of_planned = (f" of the {planned} it plans ({len(condition.variants)} variants x {len(condition.seeds)} seeds)"
                  if len(results.runs) < planned else "")
    parts = [f"## Condition `{condition.name}`", "", f"{condition.description.capitalize()}. "
             f"{len(results.runs)} finished runs{of_planned}"
             + (f", {len(results.incomplete)} unfinished ({', '.join(results.incomplete)})" if results.incomplete else "")
             + f"; {_where_read(results, report_dir, study_dir, kept)}.", ""]
    parts += ["### Probe accuracy (test split, %)", "",
              "Linear probe (logistic regression, C chosen on the val split) and kNN on frozen backbone features, "
              "mean ± std over seeds, from each run's `summary.json`; *random init* is the same encoders before "
              f"training. *linear 5-shot* (where the runs have it): the linear probe (C = 1) fitted on {SHOTS} labelled "
              f"training clips a class, the mean over {SHOT_DRAWS} seeded draws that are the same for every run of a "
              "dataset; – where a run predates it.", "", probe_table(results), "",
              "Per class (%): accuracy, balanced accuracy (mean per-class recall) and tail accuracy (mean recall of "
              "the rarest third of the classes by training clips, ties to the higher class index, so with balanced "
              "classes the last third), mean ± std over seeds; – where a run predates them.", "",
              class_table(results), ""]
    pseudo_labels = pseudo_label_table(results)
    if pseudo_labels:
        parts += ["Labels other than the ground truth at the end of training (`summary.json`: `label_purity`, the "
                  "share of training clips whose k-means cluster's -- or noisy label's -- majority class is their "
                  "own; ground-truth labels score 100%), mean ± std over seeds:", "", pseudo_labels, ""]
    if condition.swept:
        figure = folder / f"sweep_{condition.swept}.png"
        write_if_changed(figure, figure_bytes(sweep_figure(results)))
        parts += [f"![accuracy and diversity against {condition.swept}]({rel(figure, report_dir)})", ""]
    else:
        figure = folder / "probe_accuracy.png"
        write_if_changed(figure, figure_bytes(probe_figure(results)))
        parts += [f"![linear probe accuracy per method]({rel(figure, report_dir)})", ""]
    parts += ["### Dictionary diversity at the end of training", ""]
    if results.has_diversity:
        parts += ["From `metrics.csv` (mean over the last epoch, then mean ± std over seeds): the `video` dictionary "
                  "holds the negatives of audio queries, the `audio` dictionary those of video queries "
                  "(memory-bank methods: the sampled negatives). Class entropy is at most ln(classes); the "
                  "biased-key rate is the share of a query's negatives from its own class.", "",
                  diversity_table(results), ""]
    else:
        parts += [f"Not in this build: these runs' `metrics.csv` stayed in their run folders, which this report was "
                  f"rebuilt without, and their kept copies predate `{DIVERSITY_RECORD}`; the last report built from "
                  "the run folders (git history of `reports/REPORT.md`) holds the table. Notebook 03's figures below "
                  "are from the run folders.", ""]
    diversity_dir = folder / "diversity"
    figures = [p for p in (diversity_dir / "negative_diversity_curves_video.png",
                           diversity_dir / "negative_diversity_umap_video.png") if p.is_file()]
    if figures:
        level = f" at {level_label(condition, condition.focus_level)}" if condition.focus_level is not None else ""
        parts += [f"Notebook 03 on the first seed of every method{level}: "
                  + ", ".join(f"[{p.stem.replace('negative_diversity_', '')}]({rel(p, report_dir)})" for p in figures)
                  + f", [table]({rel(diversity_dir / 'negative_diversity.md', report_dir)}).", ""]
        parts += [f"![]({rel(p, report_dir)})" for p in figures] + [""]
    parts += ["### Time", "", "Per run, mean ± std over seeds (`summary.json`: `wall_s`, `train_wall_s`, "
              "`mean_step_s`, `mean_select_s`): the dictionary update is the active selection for `active`.", "",
              time_table(results), ""]
    downstream = downstream_table(results, report_dir)
    if downstream:
        parts += ["### Downstream probes (notebook 04)", "",
                  "`04_downstream.ipynb` with `dataset=\"run\"`, `protocol=\"probes\"` on the first seed of each "
                  "method, clip-level test accuracy (%); in brackets the same run's `summary.json` probe. The seed links "
                  "the executed notebook in the run folder.", "",
                  downstream, ""]
    notebooks = sorted((study_dir / "notebooks" / condition.name).glob("*.ipynb"))
    if notebooks:
        parts += ["Executed notebooks: " + ", ".join(f"[{p.name}]({rel(p, report_dir)})" for p in notebooks), ""]
    return "\n".join(parts)


def keep_notebooks(results: ConditionResults, runs_root: Path, study_dir: Path) -> None:
    """Copies of each run's config.json, summary.json and study record, and its end-of-training
    diversity as ``diversity.json`` (a few kB, so that the report's links, provenance and every table
    survive without runs/: ``--from-kept`` rebuilds from them), and of executed notebooks next to
    the report: the condition's 03 (~1 MB: figures and the inspector's media) and, for ``samplers``
    only, the 02 of each method's first seed (~20 kB each).
    The rest stay in their run folders, linked from the run table, to keep reports/ at a few MB:
    the 04 notebooks (~160 kB each: confusion matrices; their numbers are in the report) and the
    sweeps' 02 notebooks."""
    links = {r.name: r.origin for r in results.runs if r.linked}
    if links:  # which runs of the condition are another's (the kept folder then exists for --from-kept)
        write_if_changed(study_dir / "runs" / results.condition.name / LINKS,
                         (json.dumps(links, indent=2, sort_keys=True) + "\n").encode())
    for run in results.runs:  # the run's record travels with the report (runs/ is not committed)
        rows = {m: {k: v for k, v in row.items() if k != "run"} for m, row in run.diversity.items()}
        keep_run(run.run_dir, study_dir, diversity=rows)  # as execute_run did when the run finished
    target = study_dir / "notebooks" / results.condition.name
    executed = runs_root / results.condition.name / "03_negative_diversity.ipynb"
    if executed.is_file():
        copy_if_changed(executed, target / executed.name)
    if results.condition.swept:
        return
    first_seed = {}
    for run in results.runs:
        first_seed.setdefault(run.variant.name, run)
    for run in first_seed.values():
        executed = run.run_dir / "02_pretrain.ipynb"
        if executed.is_file():
            copy_if_changed(executed, target / f"{run.run_dir.name}_{executed.name}")


def write_report(runs_root: Path | None, reports_dir: Path, kept: bool = False) -> Path:
    """``reports_dir/REPORT.md`` (and ``reports_dir/study/``) from every condition with finished runs.

    ``kept=True``: from the copies kept under ``reports_dir/study/runs/`` instead of the run folders
    (``runs_root`` unused), a run two conditions share found for the other by its parameters."""
    report_path = reports_dir / "REPORT.md"
    study_dir = reports_dir / "study"
    if kept:
        runs_root = reports_dir / KEPT
    available = {}
    for name, condition in CONDITIONS.items():
        results = collect(condition, runs_root, twins=kept)
        if results.runs:
            available[name] = results
    if kept:
        source = ("Rebuilt by `python -m avlib.study --report-only --from-kept` from the copies of each run's "
                  f"`config.json`, `summary.json` and `{RECORD}` kept under `{rel(runs_root, reports_dir)}/` (the run "
                  "folders were not at hand); every number is read from them. Do not edit: `make study` rebuilds "
                  "it from the run folders, this command from the copies.")
    else:
        source = ("Generated by `make study` (`python -m avlib.study`, `avlib/study/`) from the run folders under "
                  f"`{rel(runs_root, reports_dir)}/`; every number is read from them. Do not edit: run the command "
                  "again (finished runs are skipped) to rebuild it.")
    parts = ["# Study report", "", source, ""]
    if not available:
        parts += ["No finished runs yet.", ""]
    else:
        cells = claims_noise(available)
        noise = noise_section(cells, arms_noise(available, cells))
        parts += ["Conditions: " + ", ".join(f"[`{n}`](#condition-{n})" for n in available)
                  + (", then the [plan](#plan)," if plan_section(available) else ", then")
                  + (f" [findings](#findings), [{NOISE_TITLE.lower()}](#{NOISE_ANCHOR})" if noise
                     else " [findings](#findings)")
                  + " and [provenance](#provenance).", ""]
        for results in available.values():
            if not kept:
                keep_notebooks(results, runs_root, study_dir)
            parts.append(_condition_section(results, reports_dir, study_dir, kept))
        plan = plan_section(available)
        parts += [plan] if plan else []
        parts.append(findings_section(available, reports_dir, study_dir))
        parts += [noise] if noise else []
        parts.append(provenance_section(available, reports_dir))
    write_if_changed(report_path, ("\n".join(parts).rstrip() + "\n").encode())
    return report_path
