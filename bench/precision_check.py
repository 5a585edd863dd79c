"""Does bf16 autocast change what the study measures?  The same runs, seed for seed, in fp32 and bf16.

``dictionary_size`` costs ~206 h of CPU time in fp32 (``avlib/study/conditions.py``).  Autocasting the
encoders to bf16 (``precision="bf16"``; the embeddings and every loss stay float32,
``avlib.train.loop``) makes a step ~1.8x cheaper on a CPU with native bf16 (``bench/bench_train_step.py
--variants random 'random (bf16 autocast)'``).  It may only be used if it leaves the study's answer
alone, so this check reruns a decided comparison of the study in bf16 (by default ``sources`` at 8
clips per source, ``active`` against ``random``, whose video probe was *worse* in fp32) and asks three
questions of the linear probes, every one paired by seed (seed k of both precisions shares its
initial weights and data order):

1. per arm, bf16 - fp32: is the accuracy itself equivalent within ±δ?
2. the method's effect (method - baseline) in each precision: the same verdict?
3. the effect's change, (method - baseline in bf16) - (method - baseline in fp32): equivalent within ±δ?

Question 3 is the one that matters for a study: a precision that shifts both arms alike changes no
comparison.  The verdicts are :func:`avlib.study.stats.decide`'s (two one-sided tests for
equivalence at α = 0.05, δ = 2 points).  Training is chaotic: the same seed in another precision
diverges like another seed, so these answers are as noisy as the study's own comparisons.

Hence a second, low-noise measure (``--gradients RUN_DIR``, a run folder with a checkpoint): at the
checkpoint's weights, dictionaries and step, on the same training batches, the cross-modal loss's gradient
of the online encoders in fp32 and under bf16 autocast (keys from the momentum encoders in fp32, as in a
step; the intra-modal term of ``joint`` is left out).  The precision's error, ``|g_bf16 - g_fp32| /
|g_fp32|``, is set against what SGD already lives with: the difference between two batches' fp32
gradients, ``|g_i - g_{i+1}| / |g_i|``.  An error far below that noise perturbs training less than drawing
other batches does, i.e. it changes the realisation, not the expected dynamics.

    uv run python -m avlib.study --condition sources --variants random_src8 active_src8 --no-downstream \\
        --no-umap --set precision=bf16 --runs-root runs/precision_bf16 --reports-dir runs/precision_bf16/reports
    uv run python bench/precision_check.py [--gradients runs/study/dictionary_size/random_dict4096_seed0]

Writes ``reports/study/precision_check.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from avlib.analysis.runs import read_config, read_summary
from avlib.study.stats import DELTA, Decision, StatsError, decide

ROOT = Path(__file__).resolve().parents[1]
MODALITIES = ("video", "audio")


def linear_probes(root: Path, variant: str) -> dict[int, dict[str, float]]:
    """``{seed: {"video": points, "audio": points}}``: the linear probe's test accuracy (x 100) of every
    finished run ``<root>/<variant>_seed<k>`` (a folder without ``summary.json`` is unfinished: left out)."""
    probes = {}
    for folder in sorted(root.glob(f"{variant}_seed*")):
        summary = read_summary(folder)
        if summary:
            probes[int(folder.name.rsplit("_seed", 1)[1])] = {modality: 100 * summary["probe"][modality]["linear"]
                                                              for modality in MODALITIES}
    return probes


def compare(reference: Path, candidate: Path, baseline: str, method: str, delta: float = DELTA) -> dict:
    """The three questions of the module docstring on the seeds every one of the four arms finished.
    Returns ``{"seeds": [...], "<modality>": {"arm <name>": Decision, "effect reference": Decision,
    "effect candidate": Decision, "effect change": Decision}}``."""
    arms = {(precision, variant): linear_probes(root, variant)
            for precision, root in (("reference", reference), ("candidate", candidate))
            for variant in (baseline, method)}
    seeds = sorted(set.intersection(*(set(probes) for probes in arms.values())))
    if len(seeds) < 2:
        raise StatsError(f"{baseline} and {method} have {len(seeds)} seed(s) finished in both {reference} and "
                         f"{candidate}: a paired comparison needs at least 2")
    result: dict = {"seeds": seeds}
    for modality in MODALITIES:
        def values(precision: str, variant: str) -> list[float]:
            return [arms[precision, variant][seed][modality] for seed in seeds]

        effects = {precision: [m - b for b, m in zip(values(precision, baseline), values(precision, method))]
                   for precision in ("reference", "candidate")}
        result[modality] = {
            **{f"arm {variant}": decide(values("reference", variant), values("candidate", variant), delta)
               for variant in (baseline, method)},
            "effect reference": decide(values("reference", baseline), values("reference", method), delta),
            "effect candidate": decide(values("candidate", baseline), values("candidate", method), delta),
            "effect change": decide(effects["reference"], effects["candidate"], delta),
        }
    return result


def gradient_agreement(run_dir: Path, batches: int = 8) -> dict:
    """The module docstring's second measure at ``run_dir``'s newest checkpoint: per batch the relative error
    and cosine of the bf16 gradient against the fp32 one, and between consecutive batches' fp32 gradients."""
    import torch

    from avlib.config import PretrainConfig
    from avlib.samplers import StepBatch
    from avlib.train import distributed
    from avlib.train.loop import build_training, check_world, load_training_data, restore, step_loader

    cfg = PretrainConfig.from_dict({**read_config(run_dir).to_dict(), "run_dir": str(run_dir), "num_workers": 0, "device": "cpu",
                                    "compile": False, "progress": False})
    world = distributed.World()
    cache, train_indices = load_training_data(cfg, world)
    t = build_training(cfg, world, "cpu", cache, train_indices, check_world(cfg, world))
    step, _ = restore(t)
    t.model.train()
    params = [p for p in t.model.parameters() if p.requires_grad]

    def gradient(batch: dict, keys, bf16: bool) -> tuple[torch.Tensor, float]:
        t.model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            queries = t.model(batch["video"], batch["audio"])
        queries = queries.map(lambda x: x.float())  # as the loop does: the loss in float32
        loss, _ = t.sampler.loss(StepBatch(step=step, clip_index=batch["clip_index"], queries=queries, keys=keys,
                                           labels=batch["label"]))
        loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]), float(loss.detach())

    rows, previous = [], None
    first = max(0, min(step, t.total_steps - batches))  # a finished run: its last steps' batches
    for i, batch in enumerate(step_loader(t, cache, train_indices, first)):
        if i == batches:
            break
        batch = {name: batch[name][:cfg.batch_size] for name in ("video", "audio", "clip_index", "label")}
        with torch.no_grad():
            keys = t.momentum_model(batch["video"], batch["audio"])
        g32, loss32 = gradient(batch, keys, False)
        g16, loss16 = gradient(batch, keys, True)
        row = {"precision_error": float((g16 - g32).norm() / g32.norm()),
               "precision_cosine": float(torch.nn.functional.cosine_similarity(g16, g32, dim=0)),
               "loss_fp32": loss32, "loss_bf16": loss16}
        if previous is not None:
            row["batch_difference"] = float((g32 - previous).norm() / previous.norm())
            row["batch_cosine"] = float(torch.nn.functional.cosine_similarity(g32, previous, dim=0))
        rows.append(row)
        previous = g32
    return {"run_dir": str(run_dir), "step": step, "batches": rows}


def gradient_report(result: dict) -> str:
    rows = result["batches"]

    def median(name: str) -> float:
        return statistics.median(row[name] for row in rows if name in row)

    def spread(name: str) -> str:
        values = [row[name] for row in rows if name in row]
        return f"{median(name):.4f} ({min(values):.4f}–{max(values):.4f})"

    return "\n".join([
        f"## The gradient at `{Path(result['run_dir']).name}`: bf16 against fp32, and against another batch", "",
        f"At `{result['run_dir']}`'s checkpoint (step {result['step']}), {len(rows)} training batches; the online "
        "encoders' gradient of the cross-modal loss (keys from the momentum encoders in fp32). Median (range):", "",
        "| measure | relative difference | cosine |", "|---|---:|---:|",
        f"| bf16 − fp32, same batch | {spread('precision_error')} | {spread('precision_cosine')} |",
        f"| next batch − this batch, fp32 | {spread('batch_difference')} | {spread('batch_cosine')} |", "",
        f"The precision's error is {median('precision_error') / median('batch_difference'):.3f} x the difference "
        "between two batches' gradients (medians): the noise of drawing other batches, which SGD already averages "
        f"over. Loss, fp32 / bf16 (first batch): {rows[0]['loss_fp32']:.4f} / {rows[0]['loss_bf16']:.4f}.", ""])


def _row(question: str, decision: Decision) -> str:
    low, high = decision.ci95
    return (f"| {question} | {decision.mean:+.2f} [{low:+.2f}, {high:+.2f}] | {decision.sd:.2f} | "
            f"**{decision.verdict}** |")


def report(result: dict, reference: Path, candidate: Path, baseline: str, method: str, labels=("fp32", "bf16"),
           delta: float = DELTA) -> str:
    ref, cand = labels
    lines = [f"# Precision check: does {cand} change what the study measures?", "",
             f"`{method}` against `{baseline}`, linear probe (test accuracy, points), paired by seed over seeds "
             f"{', '.join(map(str, result['seeds']))} ({len(result['seeds'])}); δ = {delta:g} points; "
             f"{ref}: `{reference}`, {cand}: `{candidate}`.  Rerun: `uv run python bench/precision_check.py` "
             "(its docstring has the training command).", ""]
    for modality in MODALITIES:
        decisions = result[modality]
        lines += [f"## {modality}", "", "| question | mean [95% CI] | sd of the paired differences | verdict |",
                  "|---|---|---:|---|"]
        for variant in (baseline, method):
            lines.append(_row(f"`{variant}`: {cand} − {ref}", decisions[f"arm {variant}"]))
        lines.append(_row(f"effect (`{method}` − `{baseline}`) in {ref}", decisions["effect reference"]))
        lines.append(_row(f"effect (`{method}` − `{baseline}`) in {cand}", decisions["effect candidate"]))
        lines.append(_row(f"change of the effect ({cand} − {ref})", decisions["effect change"]))
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=str(ROOT / "reports" / "study" / "runs" / "sources"),
                        help="folder of the fp32 runs (default: the study's kept sources runs)")
    parser.add_argument("--candidate", default=str(ROOT / "reports" / "study" / "precision_bf16" / "sources"),
                        help="folder of the same runs in bf16")
    parser.add_argument("--baseline", default="random_src8")
    parser.add_argument("--method", default="active_src8")
    parser.add_argument("--gradients", nargs="*", default=[], metavar="RUN_DIR",
                        help="run folders with a checkpoint: also measure the gradient's bf16 error there")
    parser.add_argument("--batches", type=int, default=8, help="training batches per --gradients run")
    parser.add_argument("--out", default=str(ROOT / "reports" / "study" / "precision_check.md"))
    args = parser.parse_args()
    reference, candidate = Path(args.reference), Path(args.candidate)
    result = compare(reference, candidate, args.baseline, args.method)
    text = report(result, reference.relative_to(ROOT) if reference.is_relative_to(ROOT) else reference,
                  candidate.relative_to(ROOT) if candidate.is_relative_to(ROOT) else candidate,
                  args.baseline, args.method)
    for run_dir in args.gradients:
        text += "\n" + gradient_report(gradient_agreement(Path(run_dir), args.batches))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
