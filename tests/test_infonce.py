"""InfoNCE against hand-computed cases, including the degenerate ones."""

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.losses.infonce import info_nce, same_clip_mask


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_two_orthogonal_pairs_by_hand():
    # q0 = k0 = e1, q1 = k1 = e2: each query has sim 1 with its positive and 0 with the other key.
    queries = unit([1.0, 0.0], [0.0, 1.0])
    keys = unit([1.0, 0.0], [0.0, 1.0])
    tau = 0.5
    loss, diag = info_nce(queries, keys, torch.zeros(0, 2), tau)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0.0)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert diag["pos_sim"] == pytest.approx(1.0)
    assert diag["neg_sim"] == pytest.approx(0.0)
    assert diag["batch_neg_sim"] == pytest.approx(0.0)
    assert math.isnan(diag["queue_neg_sim"])  # no queue: no dictionary negatives to average
    assert diag["top1"] == 1.0


def test_queue_negatives_enter_the_denominator():
    queries = unit([1.0, 0.0], [0.0, 1.0])
    keys = unit([1.0, 0.0], [0.0, 1.0])
    queue = unit([-1.0, 0.0])  # sim -1 with q0, 0 with q1
    tau = 1.0
    loss, diag = info_nce(queries, keys, queue, tau)
    loss0 = -math.log(math.e / (math.e + 1 + math.exp(-1)))
    loss1 = -math.log(math.e / (math.e + 1 + 1))
    assert loss.item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)
    assert diag["neg_sim"] == pytest.approx((0 + 0 - 1 + 0) / 4)
    # the fresh (in-batch) negatives apart from the dictionary's: q0.k1 = q1.k0 = 0; q0.queue = -1, q1.queue = 0
    assert diag["batch_neg_sim"] == pytest.approx(0.0)
    assert diag["queue_neg_sim"] == pytest.approx(-0.5)


def test_mask_removes_a_negative_and_all_masked_queue_equals_no_queue():
    queries = unit([1.0, 0.2], [0.3, 1.0])
    keys = unit([0.9, 0.1], [0.1, 0.8])
    queue = unit([1.0, 0.0], [0.0, 1.0], [0.5, 0.5])
    all_masked = torch.ones(2, 3, dtype=torch.bool)
    masked, _ = info_nce(queries, keys, queue, 0.1, all_masked)
    without, _ = info_nce(queries, keys, torch.zeros(0, 2), 0.1)
    assert masked.item() == pytest.approx(without.item(), rel=1e-6)
    unmasked, _ = info_nce(queries, keys, queue, 0.1)
    assert unmasked.item() > masked.item()


def test_gradient_matches_autograd_of_the_explicit_formula():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(5, 8), dim=1).requires_grad_()
    keys = F.normalize(torch.randn(5, 8), dim=1)
    queue = F.normalize(torch.randn(7, 8), dim=1)
    loss, _ = info_nce(queries, keys, queue, 0.2)
    loss.backward()
    q = queries.detach().clone().requires_grad_()
    dictionary = torch.cat([keys, queue])
    explicit = torch.stack([
        -torch.log(torch.exp(q[i] @ keys[i] / 0.2) / torch.exp(q[i] @ dictionary.T / 0.2).sum()) for i in range(5)
    ]).mean()
    explicit.backward()
    torch.testing.assert_close(queries.grad, q.grad)


def test_same_clip_mask():
    mask = same_clip_mask(torch.tensor([3, 5]), torch.tensor([5, 3, 3, 9]))
    assert mask.tolist() == [[False, True, True, False], [True, False, False, False]]


def test_uniform_loss_is_ln_of_the_unmasked_candidates_and_a_random_guess_loss_sits_on_it():
    """``uniform_loss`` = mean over queries of ln(G + unmasked queue keys); and it is the level an encoder
    that learned nothing stays at: identical queries score every candidate alike, so their loss equals it."""
    queries = unit([1.0, 0.0], [0.0, 1.0])
    keys = unit([1.0, 0.0], [0.0, 1.0])
    queue = unit([1.0, 1.0], [-1.0, 0.0], [0.0, -1.0])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    _, diag = info_nce(queries, keys, queue, 0.1, mask)
    assert diag["uniform_loss"] == pytest.approx((math.log(2 + 2) + math.log(2 + 1)) / 2, rel=1e-12)
    same = torch.ones(3, 4) / 2.0  # every query and key the same vector: a model that tells nothing apart
    loss, diag = info_nce(same, same, same[:0], 0.1)
    assert loss.item() == pytest.approx(diag["uniform_loss"], rel=1e-6) and diag["uniform_loss"] == pytest.approx(math.log(3))
    learned, diag = info_nce(queries, keys, queue, 0.1)  # positives far more similar than the negatives
    assert learned.item() < 0.1 * diag["uniform_loss"]
