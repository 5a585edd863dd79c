"""avlib.active.select: distinct picks, determinism, EXACT D^2 distribution, edge cases, errors.

Every statistical test uses fixed seeds, so it is deterministic; the thresholds are loose enough
(p > 1e-3) for a correct sampler and far too tight for a biased one (e.g. sampling by the stale
bounds without the rejection step fails the exact-distribution test by many orders of magnitude).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from avlib.active import SELECTORS, candidate_embedding, kmeanspp_potential, select
from avlib.active import selectors as sel
from avlib.active.points import Bf16Bounds, Points
from avlib.kernels import reference as ref


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _mixture(n, d, clusters, seed, spread=0.2):
    g = _gen(seed)
    centres = 3 * torch.randn(clusters, d, generator=g)
    return centres[torch.randint(clusters, (n,), generator=g)] + spread * torch.randn(n, d, generator=g)


def _embeddings(name, n=23, d=6, h=5, b=4, m=7, seed=0):
    g = _gen(seed)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    if name == "key_grad":
        return candidate_embedding(name, queries=unit(b, d), positive_keys=unit(b, d), pool_keys=unit(n, d),
                                   temperature=0.1)
    if name == "badge":
        return candidate_embedding(name, pool_keys=unit(n, d), pool_inputs=torch.randn(n, h, generator=g),
                                   dictionary_keys=unit(m, d), temperature=0.1)
    return candidate_embedding(name, pool_keys=unit(n, d))


@pytest.mark.parametrize("selector", sorted(SELECTORS))
@pytest.mark.parametrize("embedding", ["key_grad", "badge", "feature"])
def test_every_embedding_selector_pair(embedding, selector):
    emb = _embeddings(embedding)
    for k in (1, 5, 23):
        a = select(emb, k, selector, generator=_gen(1))
        b = select(emb, k, selector, generator=_gen(1))
        assert a.dtype == torch.long and a.shape == (k,)
        assert len(set(a.tolist())) == k and 0 <= a.min() and a.max() < 23
        assert torch.equal(a, b), "same seed, same selection"


@pytest.mark.parametrize("options", [dict(), dict(greedy_trials="auto"), dict(greedy_trials=3)])
def test_kmeanspp_options_distinct_and_deterministic(options):
    x = _mixture(300, 5, 6, seed=2)
    a = select(x, 40, generator=_gen(5), **options)
    assert len(set(a.tolist())) == 40
    assert torch.equal(a, select(x, 40, generator=_gen(5), **options))


# ----------------------------------------------------------------------------------------------
# exact D^2 distribution
# ----------------------------------------------------------------------------------------------

POINTS_1D = torch.tensor([[0.0], [0.3], [4.0], [4.5], [10.0]])  # two tight pairs and a far point


def _exact_sequence_probabilities(x: torch.Tensor, k: int) -> dict[tuple, float]:
    d = torch.cdist(x.double(), x.double()).pow(2).numpy()
    n = len(x)
    probs = {}
    for seq in itertools.permutations(range(n), k):
        p = 1.0 / n
        for t in range(1, k):
            d2 = d[:, list(seq[:t])].min(axis=1)
            p *= d2[seq[t]] / d2.sum()
        probs[seq] = p
    return probs


VARIANTS = {
    "rejection": dict(),
    "rejection-bf16-small-buffers": dict(bounds="bf16", max_buffer=2, min_accept=0.9),
    "rejection-fp32-small-buffers": dict(bounds="fp32", max_buffer=2, min_accept=0.9),
    "rejection-refresh-every-pick": dict(bounds="fp32", refresh_every=1, max_buffer=3),
    "plain": dict(algorithm="plain"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kmeanspp_exact_distribution_of_ordered_picks(variant):
    """All 60 ordered outcomes of N=5, k=3 against their exact probabilities (chi-square)."""
    exact = _exact_sequence_probabilities(POINTS_1D, 3)
    draws = 3000
    gen = _gen(1234)
    counts = dict.fromkeys(exact, 0)
    for _ in range(draws):
        counts[tuple(select(POINTS_1D, 3, generator=gen, **VARIANTS[variant]).tolist())] += 1
    keys = sorted(exact, key=exact.get)
    obs = np.array([counts[s] for s in keys], dtype=float)
    exp = np.array([exact[s] for s in keys]) * draws
    # pool the rarest outcomes so that every cell expects >= 5
    cells_o, cells_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(obs, exp):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            cells_o.append(acc_o), cells_e.append(acc_e)
            acc_o = acc_e = 0.0
    cells_o[-1] += acc_o
    cells_e[-1] += acc_e
    _, pvalue = stats.chisquare(cells_o, cells_e)
    assert pvalue > 1e-3, f"{variant}: chi-square p = {pvalue:.2e}"


def test_stale_bounds_without_rejection_would_fail():
    """Sanity of the test above: sampling by the first centre's distances only is rejected."""
    exact = _exact_sequence_probabilities(POINTS_1D, 3)
    d = torch.cdist(POINTS_1D, POINTS_1D).pow(2).numpy()
    biased = {}
    for seq in exact:  # draws 2 and 3 both by D^2 to the FIRST centre only (stale bounds)
        p = 1.0 / 5
        w = d[:, seq[0]].copy()
        p *= w[seq[1]] / w.sum()
        w[seq[1]] = 0
        p *= w[seq[2]] / w.sum()
        biased[seq] = p
    tv = 0.5 * sum(abs(exact[s] - biased[s]) for s in exact)
    assert tv > 0.1  # a 3000-draw chi-square detects this easily


def test_potential_distribution_matches_plain_reference():
    """Two-sample KS test of the potential over seeds: fast rejection sampler vs one-pass-per-pick."""
    x = _mixture(400, 8, 12, seed=3)
    fast = [kmeanspp_potential(x, select(x, 15, generator=_gen(s))) for s in range(150)]
    plain = [kmeanspp_potential(x, select(x, 15, generator=_gen(10_000 + s), algorithm="plain")) for s in range(150)]
    assert stats.ks_2samp(fast, plain).pvalue > 1e-3


def test_greedy_reaches_sklearn_potential():
    from sklearn.cluster import kmeans_plusplus

    x = _mixture(600, 8, 25, seed=4)
    ours = np.median([kmeanspp_potential(x, select(x, 20, generator=_gen(s), greedy_trials="auto")) for s in range(15)])
    theirs = np.median([kmeanspp_potential(x, torch.as_tensor(kmeans_plusplus(x.numpy(), 20, random_state=s)[1]))
                        for s in range(15)])
    plain = np.median([kmeanspp_potential(x, select(x, 20, generator=_gen(s))) for s in range(15)])
    assert ours <= 1.05 * theirs
    assert ours < plain  # greedy trials improve on plain D^2 sampling


# ----------------------------------------------------------------------------------------------
# distances, bounds, duplicates
# ----------------------------------------------------------------------------------------------


def test_factored_distances_match_materialised_outer_products():
    g_ = _gen(6)
    g, h = torch.randn(13, 4, generator=g_, dtype=torch.float64), torch.randn(13, 7, generator=g_, dtype=torch.float64)
    outer = (g[:, :, None] * h[:, None, :]).reshape(13, -1)
    pf, pd = Points.factored(g, h), Points.dense(outer)
    torch.testing.assert_close(pf.sqdist(pf), torch.cdist(outer, outer).pow(2), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pf.sqdist(pf), pd.sqdist(pd), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("selector", ["kmeanspp", "lloyd_nearest"])
def test_factored_selection_equals_materialised_selection(selector):
    g_ = _gen(7)
    g, h = torch.randn(40, 3, generator=g_, dtype=torch.float64), torch.randn(40, 4, generator=g_, dtype=torch.float64)
    outer = (g[:, :, None] * h[:, None, :]).reshape(40, -1)
    a = select((g, h), 8, selector, generator=_gen(8))
    b = select(outer, 8, selector, generator=_gen(8))
    assert torch.equal(a, b)


def test_bf16_bounds_are_upper_bounds_on_adversarial_data():
    g = _gen(9)
    far = 100.0 + 0.01 * torch.randn(300, 64, generator=g)  # tight, far from the origin
    x = torch.cat([far, far[:20], torch.randn(100, 64, generator=g) * 1e-3, torch.zeros(5, 64)])
    points = Points.dense(x)
    bounds = Bf16Bounds(x, points.sqnorm)
    centres = torch.tensor([0, 5, 310, 400, 420, 421])
    inf = torch.full((x.shape[0],), float("inf"))
    exact = ref.sqdist_min_update(x, points.sqnorm, x[centres], points.sqnorm[centres], inf)
    upper = bounds.min_update(centres, inf)
    assert torch.all(upper >= exact)


def test_duplicates_are_picked_only_after_every_distinct_value():
    base = torch.tensor([[0.0, 0.0], [5.0, 1.0], [-3.0, 4.0]])
    x = base[torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])]  # 3 distinct values, 10 rows
    for options in [dict(), dict(algorithm="plain"), dict(greedy_trials="auto"), dict(bounds="fp32", max_buffer=2)]:
        for seed in range(20):
            picks = select(x, 6, generator=_gen(seed), **options)
            assert len(set(picks.tolist())) == 6
            first3 = {tuple(r) for r in x[picks[:3]].tolist()}
            assert len(first3) == 3, options  # D^2 = 0 for copies of chosen centres
    picks = select(x, 6, "kcenter", generator=_gen(0))
    assert len({tuple(r) for r in x[picks[:3]].tolist()}) == 3 and len(set(picks.tolist())) == 6


@pytest.mark.parametrize("selector", sorted(SELECTORS))
def test_all_identical_inputs(selector):
    x = torch.ones(9, 4)
    picks = select(x, 9, selector, generator=_gen(0))
    assert sorted(picks.tolist()) == list(range(9))


def test_all_identical_fill_is_uniform():
    x = torch.ones(4, 2)
    counts = np.zeros(4)
    gen = _gen(3)
    for _ in range(800):
        counts[select(x, 2, generator=gen)[1].item()] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# the other selectors
# ----------------------------------------------------------------------------------------------


def test_kcenter_is_farthest_point_traversal():
    x = _mixture(120, 3, 5, seed=10).double()
    picks = select(x, 10, "kcenter", first=7).tolist()
    d = torch.cdist(x, x)
    want = [7]
    for _ in range(9):
        want.append(int(d[:, want].min(dim=1).values.argmax()))
    assert picks == want


def test_lloyd_nearest_without_iterations_returns_its_seeds():
    """With 0 Lloyd iterations the centroids are the k-means++ seeds, each its own nearest point."""
    x = _mixture(200, 4, 8, seed=11)
    seeds = select(x, 12, generator=_gen(3))
    assert torch.equal(select(x, 12, "lloyd_nearest", generator=_gen(3), lloyd_iters=0, seeding="d2"), seeds)


def test_lloyd_nearest_official_seeding_draws_by_plain_distance():
    """seeding="distance" (the official code's): P(first i, then j) = 1/N * d_ij / sum_l d_il.
    Chi-square over 3000 seeded draws of two seeds (lloyd_iters=0 returns the seeds, each its own
    nearest candidate); the D^2 law differs from it by a clear total variation, so the test can fail."""
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [4.0, 4.0]], dtype=torch.float64)
    d = torch.cdist(x, x)
    n = x.shape[0]
    plain = (d / d.sum(1, keepdim=True) / n).numpy()
    squared = (d**2 / (d**2).sum(1, keepdim=True) / n).numpy()
    assert 0.5 * np.abs(plain - squared).sum() > 0.05
    counts = np.zeros((n, n))
    gen = _gen(21)
    draws = 3000
    for _ in range(draws):
        counts[tuple(select(x, 2, "lloyd_nearest", generator=gen, lloyd_iters=0).tolist())] += 1
    off = ~np.eye(n, dtype=bool)
    assert counts[~off].sum() == 0  # a seed is never drawn twice
    assert stats.chisquare(counts[off], plain[off] * draws).pvalue > 1e-3
    assert stats.chisquare(counts[off], squared[off] * draws).pvalue < 1e-6


def test_lloyd_nearest_matches_bruteforce():
    x = _mixture(150, 3, 6, seed=12).double()
    k = 6
    init = select(x, k, generator=_gen(4))
    c = x[init].clone()
    for _ in range(100):  # textbook Lloyd to convergence, loops over clusters
        a = torch.cdist(x, c).argmin(1)
        c_next = torch.stack([x[a == j].mean(0) if (a == j).any() else c[j] for j in range(k)])
        if torch.equal(c_next, c):
            break
        c = c_next
    dist = torch.cdist(x, c)
    want = []
    for j in range(k):
        order = dist[:, j].argsort()
        want.append(next(int(i) for i in order if int(i) not in want))
    assert select(x, k, "lloyd_nearest", generator=_gen(4), seeding="d2").tolist() == want


def test_lloyd_nearest_breaks_midpoint_ties_by_the_lowest_index():
    """One cluster of two points: its centroid is their midpoint, equidistant from both up to
    rounding.  The stated rule (within 4x the rounding bound, lowest index) picks row 0 whichever point is
    perturbed in the last bits -- without it the pick would follow the rounding."""
    for wiggle in (0.0, 3e-7, -3e-7):
        x = torch.tensor([[0.3, 0.1], [2.3 + wiggle, 0.1]])
        assert select(x, 1, "lloyd_nearest", generator=_gen(0)).tolist() == [0]
        assert select(x.flip(0), 1, "lloyd_nearest", generator=_gen(0)).tolist() == [0]
    # a clear winner is still the nearest, not the lowest index
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.1, 0.0]])  # centroid (0.7, 0): row 1 at 0.3, row 2 at 0.4
    assert select(x, 1, "lloyd_nearest", generator=_gen(0)).tolist() == [1]


def test_random_is_uniform():
    counts = np.zeros(6)
    gen = _gen(0)
    for _ in range(600):
        counts[select(torch.randn(6, 2), 2, "random", generator=gen).numpy()] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# argument errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: select(x, 11), r"k must be in \[1, N=10\]"),
        (lambda x: select(x, 0), r"k must be in \[1, N=10\]"),
        (lambda x: select(x, 2.5), r"k must be an int"),
        (lambda x: select(x, 2, "nope"), r"unknown selector='nope'; valid choices: \['kcenter', 'kmeanspp', 'lloyd_nearest', 'random'\]"),
        (lambda x: select(x, 2, "random", greedy_trials=2), r"unknown option.*valid options"),
        (lambda x: select(x, 2, greedy_trials=0), r"greedy_trials must be"),
        (lambda x: select(x, 2, algorithm="fast"), r"algorithm must be one of"),
        (lambda x: select(x, 2, bounds="fp8"), r"bounds must be one of"),
        (lambda x: select(x, 2, "lloyd_nearest", lloyd_iters=-1), r"lloyd_iters"),
        (lambda x: select(x[0], 2), r"embeddings must be 2-D"),
        (lambda x: select(x.long(), 2), r"embeddings must be a floating-point"),
        (lambda x: select((x, x[:9]), 2), r"same number of rows"),
        (lambda x: select((x, x, x), 2), r"embeddings must be an \(N, D\) float tensor or a pair"),
        (lambda x: select(torch.where(x > 1, float("nan"), x), 2), r"embeddings contains non-finite"),
        (lambda x: select((x, torch.where(x > 1, float("inf"), x)), 2), r"embeddings\[1\] \(h\) contains non-finite"),
        (lambda x: select(x, 2, first=10), r"first must be"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    x = torch.randn(10, 3, generator=_gen(0))
    x[0, 0] = 2.0
    with pytest.raises(ValueError, match=match):
        call(x)


def test_potential_helper():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    assert math.isclose(kmeanspp_potential(x, torch.tensor([0])), 10.0)
    assert math.isclose(sel.kmeanspp_potential(x, torch.tensor([0, 2])), 1.0)


def test_greedy_bf16_ranking_matches_float32_greedy():
    """bf16-ranked greedy vs float32 greedy: same trial draws (they need the same exact D^2); only
    near-tied trials may rank differently."""
    x = _mixture(500, 16, 30, seed=13, spread=0.05) + 50.0  # far from the origin: bf16 errors matter
    agree = 0
    for seed in range(3):
        a = select(x, 25, generator=_gen(seed), greedy_trials=4, bounds="bf16")
        b = select(x, 25, generator=_gen(seed), greedy_trials=4, bounds="fp32")
        agree += int((a == b).sum())
        assert kmeanspp_potential(x, a) <= 1.05 * kmeanspp_potential(x, b)
    assert agree >= 0.9 * 75


def test_bf16_approx_error_bound_is_rigorous():
    g = _gen(14)
    far = 100.0 + 0.01 * torch.randn(300, 64, generator=g)
    x = torch.cat([far, far[:20], torch.randn(100, 64, generator=g) * 1e-3, torch.zeros(5, 64)])
    points = Points.dense(x)
    bounds = Bf16Bounds(x, points.sqnorm, points.zero_tol)
    for c in [0, 5, 310, 400, 421]:
        exact = points.sqdist(points.take([c]))[:, 0]
        col = bounds.approx(torch.tensor([c]))[:, 0]
        assert torch.all((col - exact).abs() <= bounds.error(c, col))


# ----------------------------------------------------------------------------- dictionary-aware selection


def _exact_pair_probabilities(x: torch.Tensor, centres: torch.Tensor) -> dict[tuple[int, int], float]:
    """P(first pick i, second pick j) of D^2 sampling conditional on ``centres``, by enumeration (float64)."""
    x, centres = x.double(), centres.double()
    d = torch.cdist(x, centres).pow(2).amin(1)
    probabilities = {}
    for i in range(len(x)):
        if d[i] == 0:
            continue
        after = torch.minimum(d, (x - x[i]).pow(2).sum(1))
        for j in range(len(x)):
            if j != i and after[j] > 0:
                probabilities[(i, j)] = float(d[i] / d.sum() * after[j] / after.sum())
    return probabilities


def test_dictionary_aware_kmeanspp_draws_exact_conditional_d2_pairs():
    """Every ordered pair of picks out of 6 candidates beside 2 centres: 20000 seeded draws against
    the enumerated probabilities (chi-square, p > 1e-3; fixed seeds, so it cannot flake).  Candidate
    0 duplicates a centre and is never picked."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(2, 3, generator=g)
    x = torch.cat([centres[:1], torch.randn(5, 3, generator=g)])
    exact = _exact_pair_probabilities(x, centres)
    draws = torch.Generator().manual_seed(4)
    counts: dict[tuple[int, int], int] = {}
    for _ in range(20000):
        pair = tuple(select(x, 2, "kmeanspp", generator=draws, centers=centres).tolist())
        counts[pair] = counts.get(pair, 0) + 1
    assert set(counts) <= set(exact), "a pair with probability 0 was drawn (a duplicate of a centre?)"
    assert all(0 not in pair for pair in counts)
    pairs = sorted(exact)
    observed = np.array([counts.get(pair, 0) for pair in pairs])
    expected = np.array([exact[pair] for pair in pairs]) * observed.sum()
    _, pvalue = stats.chisquare(observed, expected)
    assert pvalue > 1e-3, pvalue


def test_dictionary_aware_selection_avoids_what_the_dictionary_holds():
    """Candidates in two tight clusters, the dictionary already holding one of them: k-center and
    (with high probability) k-means++ pick from the other; without centres both clusters are hit."""
    g = torch.Generator().manual_seed(0)
    held = torch.randn(1, 8, generator=g) * 10
    other = torch.randn(1, 8, generator=g) * 10
    x = torch.cat([held + 0.01 * torch.randn(20, 8, generator=g), other + 0.01 * torch.randn(20, 8, generator=g)])
    picks = select(x, 1, "kcenter", generator=torch.Generator().manual_seed(1), centers=held)
    assert int(picks[0]) >= 20
    in_other = [int(select(x, 1, "kmeanspp", generator=torch.Generator().manual_seed(s), centers=held)[0]) >= 20
                for s in range(50)]
    assert sum(in_other) == 50
    with pytest.raises(ValueError, match="centers= works with selector='kmeanspp' or 'kcenter'"):
        select(x, 2, "random", centers=held)
