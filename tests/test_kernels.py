"""Triton kernels vs their PyTorch references, run on the CPU under TRITON_INTERPRET=1 (conftest).

Sizes are odd (never multiples of the block sizes) and inputs include ties, duplicates of centres
(zero distances) and zero weights.  Kept small: the interpreter is slow.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from avlib import kernels
from avlib.kernels import reference as ref

tk = pytest.importorskip("avlib.kernels.triton_kernels")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_dispatcher_uses_reference_on_cpu():
    x = torch.randn(5, 3)
    assert not kernels.use_triton(x)


@pytest.mark.parametrize("n,c,d", [(77, 21, 37), (65, 1, 3), (33, 40, 70)])
def test_sqdist_min_update_dense_matches_reference(n, c, d):
    g = _gen(n + c + d)
    x = torch.randn(n, d, generator=g)
    centres = torch.cat([torch.randn(c, d, generator=g), x[:3], x[:1]])  # zero distances + a tied centre
    xn, cn = torch.linalg.vecdot(x, x), torch.linalg.vecdot(centres, centres)
    running = torch.full((n,), float("inf"))
    running[::4] = torch.rand(len(running[::4]), generator=g)  # some finite running minima
    got = tk.sqdist_min_update(x, xn, centres, cn, running)
    want = ref.sqdist_min_update(x, xn, centres, cn, running)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert torch.all(got[:3] == 0), "a duplicate of a centre must be at distance exactly 0"
    # and against the direct (non-expanded) definition
    direct = torch.minimum(running, torch.cdist(x.double(), centres.double()).pow(2).amin(1).float())
    torch.testing.assert_close(got, direct, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("n,c,d,h", [(53, 7, 11, 23), (31, 19, 5, 2)])
def test_sqdist_min_update_factored_matches_materialised(n, c, d, h):
    g_ = _gen(n * c)
    g, hh = torch.randn(n, d, generator=g_), torch.randn(n, h, generator=g_)
    gc = torch.cat([torch.randn(c, d, generator=g_), g[:2]])
    hc = torch.cat([torch.randn(c, h, generator=g_), hh[:2]])
    sq = torch.linalg.vecdot(g, g) * torch.linalg.vecdot(hh, hh)
    csq = torch.linalg.vecdot(gc, gc) * torch.linalg.vecdot(hc, hc)
    running = torch.full((n,), float("inf"))
    got = tk.sqdist_min_update_factored(g, hh, sq, gc, hc, csq, running)
    want = ref.sqdist_min_update_factored(g, hh, sq, gc, hc, csq, running)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    outer = (g[:, :, None] * hh[:, None, :]).reshape(n, -1).double()
    couter = (gc[:, :, None] * hc[:, None, :]).reshape(gc.shape[0], -1).double()
    direct = torch.cdist(outer, couter).pow(2).amin(1).float()
    torch.testing.assert_close(got, direct, rtol=1e-4, atol=1e-2)
    assert torch.all(got[:2] == 0)


def test_inverse_cdf_matches_reference_with_zero_weights():
    g = _gen(3)
    w = torch.rand(101, dtype=torch.float64, generator=g)
    w[[0, 3, 4, 50, 100]] = 0.0  # zero weights at the ends and in runs
    w[7] = w[8]  # ties
    cum = w.cumsum(0)
    values = torch.rand(257, dtype=torch.float64, generator=g) * cum[-1]
    values[:3] = torch.tensor([0.0, cum[5].item(), cum[98].item()], dtype=torch.float64)  # bucket edges
    got = tk.inverse_cdf(cum, values)
    want = ref.inverse_cdf(cum, values)
    assert torch.equal(got, want)
    assert not torch.isin(got, torch.tensor([0, 3, 4, 50, 100])).any(), "zero-weight entries are never drawn"


@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_inverse_cdf_draws_follow_d2_probabilities(impl):
    """Chi-square of 20000 draws against the D^2 probabilities (fixed seeds: cannot flake)."""
    g = _gen(11)
    x = torch.randn(23, 4, generator=g)
    d2 = torch.cdist(x, x[:2]).pow(2).amin(1).double()  # zero weight at the two centres
    cum = d2.cumsum(0)
    values = torch.rand(20000, dtype=torch.float64, generator=g) * cum[-1]
    draw = tk.inverse_cdf if impl == "triton" else ref.inverse_cdf
    idx = draw(cum, values).numpy()
    counts = np.bincount(idx, minlength=23)
    assert counts[0] == 0 and counts[1] == 0
    p = (d2 / d2.sum()).numpy()
    keep = p > 0
    _, pvalue = stats.chisquare(counts[keep], p[keep] * counts.sum())
    assert pvalue > 1e-3, pvalue


def badge_label_problems(z, dictionary, temperature, labels) -> list[int]:
    """Candidates whose label is not (one of) their most similar dictionary items.

    Ties are defined by the reference's rule (argmax of the logits) up to float32 rounding: logits of
    unit vectors are sums of d products, each reduction order within d * u / tau of the exact value
    (u = 2**-24), so any item whose exact (float64) logit is that close to the best is a valid label.
    Exact duplicates of a dictionary row come out up to ~4e-7 apart on some CPUs, so "first on
    ties" is not a property of the arithmetic and is not tested.
    """
    exact = (z.double() @ dictionary.double().T) / temperature  # (N, D) @ (D, M) -> (N, M)
    tolerance = 2 * z.shape[1] * 2.0**-24 / temperature
    best = exact.max(dim=1).values
    chosen = exact.gather(1, labels[:, None]).squeeze(1)
    return torch.nonzero(chosen < best - tolerance).flatten().tolist()


@pytest.mark.parametrize("n,m,d", [(45, 70, 40), (17, 9, 130)])
def test_badge_grad_matches_reference_with_ties(n, m, d):
    g = _gen(n + m)
    z = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    dictionary = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    dictionary[m - 1] = dictionary[1]  # duplicated dictionary item: tied logits
    z[0] = dictionary[1]  # candidate 0's argmax is tied between items 1 and m-1
    got_g, got_y = tk.badge_grad(z, dictionary, 0.1)
    want_g, want_y = ref.badge_grad(z, dictionary, 0.1)
    assert badge_label_problems(z, dictionary, 0.1, got_y) == []
    assert badge_label_problems(z, dictionary, 0.1, want_y) == []
    assert int(got_y[0]) in (1, m - 1)
    differ = got_y != want_y  # only where both labels are tied items: then the rows are equal
    assert torch.equal(dictionary[got_y[differ]], dictionary[want_y[differ]])
    torch.testing.assert_close(got_g, want_g, rtol=1e-4, atol=1e-4)


def test_badge_label_check_rejects_a_label_that_is_not_the_best():
    """The tie tolerance is not so loose that a wrong label passes: the second-best item of a
    candidate whose top two logits are more than the tolerance apart is reported."""
    g = _gen(5)
    z = torch.nn.functional.normalize(torch.randn(12, 40, generator=g), dim=1)
    dictionary = torch.nn.functional.normalize(torch.randn(30, 40, generator=g), dim=1)
    _, labels = ref.badge_grad(z, dictionary, 0.1)
    assert badge_label_problems(z, dictionary, 0.1, labels) == []
    second = (z @ dictionary.T).topk(2, dim=1).indices[:, 1]
    assert badge_label_problems(z, dictionary, 0.1, second) == list(range(12))
