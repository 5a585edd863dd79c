"""Benchmark of active selection (k-means++ seeding and friends), side by side, on this machine.

    .venv/bin/python bench/bench_select.py             # full grid (~15 min on a 2-core CPU)
    .venv/bin/python bench/bench_select.py --quick     # ~1 min smoke run

For every (N, D, K, threads) and method: median wall time and CPU time over ``--repeats`` runs,
the potential of the selection (sum of squared distances to the nearest pick, relative to the
median of the plain torch reference: speed is never bought with quality), the memory-bandwidth
floor ``K * N * D * 4 bytes / copy bandwidth`` (the time to stream the pool once per pick; the
copy bandwidth is measured in the same run with a large tensor copy, read + write bytes) and
each time's ratio to it.  Writes ``reports/bench_select.md`` and ``reports/bench_select.csv``.

Methods:
  official      the official CM-ACC algorithm re-implemented from its description: k-means++
                seeding, Lloyd k-means with Python loops over points and centres, then the nearest
                point per centroid (timed where it should take < ~60 s, else marked skipped)
  sklearn       scikit-learn ``kmeans_plusplus`` (default greedy trials, and n_local_trials=1)
  plain         avlib, ``algorithm="plain"``: exact D^2, one pass over the pool per pick
  fast          avlib default: exact D^2 by rejection from blocked bounds (bf16 bounds on AMX CPUs)
  greedy        avlib, ``greedy_trials="auto"`` (scikit-learn's 2 + ln k trials, batched GEMM)
  lloyd_nearest avlib's vectorised version of the official algorithm (10 Lloyd iterations)
  triton        avlib default on a CUDA tensor (Triton kernels); skipped without a CUDA GPU
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlib.active import kmeanspp_potential, select  # noqa: E402

OFFICIAL_BUDGET_S = 60.0


# ----------------------------------------------------------------------------------------------
# data and measurements
# ----------------------------------------------------------------------------------------------


def mixture(n: int, d: int, clusters: int = 100, spread: float = 0.5, seed: int = 0) -> torch.Tensor:
    """A Gaussian mixture (clustered, like real embeddings; harder for bound-based samplers than
    structureless noise, whose D^2 barely changes as centres are added)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    labels = torch.randint(clusters, (n,), generator=g)
    return (centres[labels] + spread * torch.randn(n, d, generator=g)).contiguous()


def copy_bandwidth(nbytes: int = 512 * 2**20, repeats: int = 5) -> float:
    """Bytes per second (read + write) of a large float32 tensor copy, best of ``repeats``."""
    src = torch.ones(nbytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    potential: list[float] = field(default_factory=list)


def timed(fn, x: torch.Tensor, repeats: int) -> Timing:
    """Run ``fn(x, seed) -> indices`` ``repeats`` times; wall, process CPU time and potentials."""
    out = Timing()
    for seed in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        idx = fn(x, seed)
        out.wall.append(time.perf_counter() - t)
        out.cpu.append(time.process_time() - c)
        out.potential.append(kmeanspp_potential(x, torch.as_tensor(idx, dtype=torch.long)))
    return out


# ----------------------------------------------------------------------------------------------
# methods: fn(x, seed) -> indices
# ----------------------------------------------------------------------------------------------


def official(x: torch.Tensor, k: int, seed: int, iters: int = 10) -> list[int]:
    """The official CM-ACC selection as its code does it: Python loops over points and centres."""
    rng = np.random.default_rng(seed)
    pts = x.numpy().astype(np.float64)
    n = len(pts)
    centres = [pts[rng.integers(n)]]
    d2 = np.array([float(np.sum((p - centres[0]) ** 2)) for p in pts])
    for _ in range(1, k):  # k-means++ seeding, one Python loop over points per pick
        c = pts[rng.choice(n, p=d2 / d2.sum())]
        centres.append(c)
        d2 = np.array([min(d2[i], float(np.sum((pts[i] - c) ** 2))) for i in range(n)])
    centres = np.array(centres)
    for _ in range(iters):  # Lloyd: for each point, for each centre
        assign = np.empty(n, dtype=int)
        for i in range(n):
            best, best_j = math.inf, 0
            for j in range(k):
                dist = float(np.sum((pts[i] - centres[j]) ** 2))
                if dist < best:
                    best, best_j = dist, j
            assign[i] = best_j
        for j in range(k):
            members = pts[assign == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    taken: list[int] = []
    for j in range(k):  # nearest untaken point per centroid
        order = np.argsort(((pts - centres[j]) ** 2).sum(axis=1))
        taken.append(int(next(i for i in order if i not in taken)))
    return taken


def sklearn_kmeanspp(x: torch.Tensor, k: int, seed: int, trials: int | None) -> list[int]:
    from sklearn.cluster import kmeans_plusplus

    return kmeans_plusplus(x.numpy(), k, random_state=seed, n_local_trials=trials)[1].tolist()


def avlib_method(x: torch.Tensor, k: int, seed: int, **options) -> torch.Tensor:
    return select(x, k, generator=torch.Generator().manual_seed(seed), **options)


def avlib_cuda(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    out = select(x, k, generator=torch.Generator().manual_seed(seed))
    torch.cuda.synchronize()
    return out.cpu()


# ----------------------------------------------------------------------------------------------
# the grid
# ----------------------------------------------------------------------------------------------


def run(args) -> list[dict]:
    from threadpoolctl import threadpool_limits

    rows = []
    official_rate = None  # seconds per (N * K) Python-loop step, measured at the smallest N, to extrapolate
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            bandwidth = copy_bandwidth()
            for n in args.n:
                for d in args.d:
                    x = mixture(n, d)
                    for k in args.k:
                        floor = k * n * d * 4 / bandwidth
                        methods = [
                            ("official (python loops)", lambda x, s: official(x, k, s)),
                            ("sklearn default trials", lambda x, s: sklearn_kmeanspp(x, k, s, None)),
                            ("sklearn n_local_trials=1", lambda x, s: sklearn_kmeanspp(x, k, s, 1)),
                            ("avlib plain (1 pass/pick)", lambda x, s: avlib_method(x, k, s, algorithm="plain")),
                            ("avlib fast exact D^2", lambda x, s: avlib_method(x, k, s)),
                            ("avlib greedy (auto trials)", lambda x, s: avlib_method(x, k, s, greedy_trials="auto")),
                            ("avlib lloyd_nearest", lambda x, s: avlib_method(x, k, s, selector="lloyd_nearest")),
                            ("avlib triton (CUDA)", None),
                        ]
                        results = {}
                        for name, fn in methods:
                            note = ""
                            timing = None
                            if name.startswith("official"):
                                est = official_rate * n * k if official_rate else 0.0
                                if n > min(args.n) or est > OFFICIAL_BUDGET_S:
                                    note = f"skipped (est. {est:.0f} s)" if est else "skipped"
                                else:
                                    timing = timed(fn, x, 1)
                                    official_rate = statistics.median(timing.wall) / (n * k)
                            elif name.startswith("avlib triton"):
                                if torch.cuda.is_available():
                                    xc = x.cuda()
                                    avlib_cuda(xc, k, 0)  # compile / warm up
                                    timing = timed(lambda _x, s: avlib_cuda(xc, k, s), x, args.repeats)
                                else:
                                    note = "skipped (no CUDA GPU on this machine)"
                            else:
                                fn(x, 0) if n * d <= 4096 * 128 else None  # warm-up on small sizes only
                                timing = timed(fn, x, args.repeats)
                            results[name] = (timing, note)
                            if timing is not None and args.verbose:
                                print(f"  t={threads} N={n} D={d} K={k} {name}: {statistics.median(timing.wall):.4f} s",
                                      flush=True)
                        ref_pot = statistics.median(results["avlib plain (1 pass/pick)"][0].potential)
                        for name, (timing, note) in results.items():
                            row = dict(threads=threads, N=n, D=d, K=k, method=name, note=note,
                                       floor_s=floor, bandwidth_GBps=bandwidth / 1e9)
                            if timing is not None:
                                wall = statistics.median(timing.wall)
                                row.update(median_s=wall, min_s=min(timing.wall), cpu_s=statistics.median(timing.cpu),
                                           potential_rel=statistics.median(timing.potential) / ref_pot,
                                           time_over_floor=wall / floor, repeats=len(timing.wall))
                            rows.append(row)
                        print(f"done threads={threads} N={n} D={d} K={k}", flush=True)
    return rows


def fmt(v, spec):
    return "" if v is None or v == "" else format(v, spec)


def write_report(rows: list[dict], args, command: str, elapsed: float) -> None:
    """One Markdown table per thread count, plus the CSV of every row."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["threads", "N", "D", "K", "method", "median_s", "min_s", "cpu_s", "potential_rel", "floor_s",
              "time_over_floor", "bandwidth_GBps", "repeats", "note"]
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in fields})
    lines = [
        "# Active selection benchmark (k-means++ seeding and friends)",
        "",
        f"- command: `{command}`",
        f"- machine: {cpu_model()}, {__import__('os').cpu_count()} logical CPUs; "
        f"torch {torch.__version__}; numpy {np.__version__}; "
        f"scikit-learn {__import__('sklearn').__version__}; python {platform.python_version()}",
        f"- CUDA GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none (Triton rows skipped)'}",
        f"- data: Gaussian mixture, 100 clusters, spread 0.5, float32; repeats = {args.repeats} (median; "
        f"`min_s` is the fastest run); total bench time {elapsed / 60:.1f} min",
        "- potential: median over repeats of sum_i min_j |x_i - x_pick_j|^2, relative to the median of "
        "`avlib plain` (1.00 = same quality; < 1 is better)",
        "- floor: K*N*D*4 bytes / copy bandwidth (read+write bytes of a 512 MiB tensor copy, measured in this "
        "run at that thread count) = streaming the pool once per pick",
        "- wall time and CPU time (`cpu_s`, process CPU seconds) are both given: when other jobs share the "
        "machine, wall time inflates while CPU time stays closer to the work done",
        "",
    ]
    for threads in sorted({r["threads"] for r in rows}):
        lines += [f"## {threads} thread(s)", "",
                  "| N | D | K | method | median s | min s | cpu s | potential (rel.) | floor s | time/floor | note |",
                  "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            if r["threads"] != threads:
                continue
            lines.append(
                f"| {r['N']} | {r['D']} | {r['K']} | {r['method']} | {fmt(r.get('median_s'), '.4f')} | "
                f"{fmt(r.get('min_s'), '.4f')} | {fmt(r.get('cpu_s'), '.4f')} | {fmt(r.get('potential_rel'), '.3f')} | "
                f"{r['floor_s']:.4f} | {fmt(r.get('time_over_floor'), '.2f')} | {r['note']} |"
            )
        lines.append("")
    out.write_text("\n".join(lines))
    print(f"wrote {out} and {out.with_suffix('.csv')}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run (small grid, 1 repeat)")
    p.add_argument("--repeats", type=int, default=3, help="runs per cell (median reported); default 3")
    p.add_argument("--n", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--d", type=int, nargs="+", default=[128, 512])
    p.add_argument("--k", type=int, nargs="+", default=[64, 256])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", default="reports/bench_select.md")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.k, args.repeats = [1024, 4096], [128], [64], 1
    command = "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:])
    t = time.perf_counter()
    rows = run(args)
    write_report(rows, args, command, time.perf_counter() - t)


if __name__ == "__main__":
    main()
