"""instance_nce (weighted, soft-target xID loss) and its two robust ingredients, on hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.losses.instance import (agreement_weights, bank_agreement_weights, instance_nce, neighbour_targets,
                                   slot_agreement, standardised_agreement)

TAU = 0.5
# two queries in 2-D; query 0 = e0, query 1 = e1
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
POS = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # similarities 1.0 and 0.8
NEG = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # shared negatives


def _ce(pos, negs, tau=TAU):
    """-log(exp(pos/tau) / sum exp(all/tau)), by hand."""
    logits = [pos / tau] + [n / tau for n in negs]
    return -(logits[0] - math.log(sum(math.exp(x) for x in logits)))


def test_one_hot_unweighted_matches_the_hand_computed_loss():
    loss, diag = instance_nce(Q, POS, NEG, TAU)
    expected = 0.5 * (_ce(1.0, [0.0, -1.0]) + _ce(0.8, [1.0, 0.0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert diag["pos_sim"] == pytest.approx(0.9)
    assert diag["neg_sim"] == pytest.approx((0.0 - 1.0 + 1.0 + 0.0) / 4)
    assert diag["top1"] == pytest.approx(0.5)  # query 1 ranks negative e1 (sim 1.0) above its positive (0.8)


def test_per_query_negatives_equal_shared_ones_when_the_same():
    shared, _ = instance_nce(Q, POS, NEG, TAU)
    per_query, _ = instance_nce(Q, POS, NEG[None].expand(2, -1, -1), TAU)
    assert per_query.item() == pytest.approx(shared.item(), rel=1e-6)


def test_weights_are_a_normalised_weighted_mean():
    weights = torch.tensor([3.0, 1.0])
    loss, diag = instance_nce(Q, POS, NEG, TAU, weights=weights)
    expected = (3 * _ce(1.0, [0.0, -1.0]) + 1 * _ce(0.8, [1.0, 0.0])) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert (diag["weight_min"], diag["weight_max"], diag["weight_mean"]) == (1.0, 3.0, 2.0)


def test_weight_totals_make_the_mean_of_split_batches_the_whole_batchs_weighted_mean():
    """Data parallelism: each rank passes its share of the global weight sum (sum x B / G); the
    average of the ranks' losses (what DDP's gradient averaging optimises) is the global weighted mean."""
    weights = torch.tensor([3.0, 1.0])
    whole, _ = instance_nce(Q, POS, NEG, TAU, weights=weights)
    share = weights.sum() * (1 / 2)
    halves = [instance_nce(Q[i:i + 1], POS[i:i + 1], NEG, TAU, weights=weights[i:i + 1], weight_total=share)[0]
              for i in range(2)]
    assert (0.5 * (halves[0] + halves[1])).item() == pytest.approx(whole.item(), rel=1e-6)
    plain = [instance_nce(Q[i:i + 1], POS[i:i + 1], NEG, TAU, weights=weights[i:i + 1])[0] for i in range(2)]
    assert (0.5 * (plain[0] + plain[1])).item() != pytest.approx(whole.item(), rel=1e-3)  # why the total is needed


def test_all_weights_at_the_floor_leave_the_loss_unchanged():
    plain, _ = instance_nce(Q, POS, NEG, TAU)
    floored, _ = instance_nce(Q, POS, NEG, TAU, weights=torch.full((2,), 0.3))
    assert floored.item() == pytest.approx(plain.item(), rel=1e-6)


def test_soft_target_with_a_single_neighbour():
    # candidates of each query: [positive, neighbour (= NEG row 0 for both), NEG row 1]
    targets = neighbour_targets(torch.tensor([[0.2], [0.7]]), mix=0.25, temperature=TAU, num_candidates=3)
    assert torch.allclose(targets, torch.tensor([[0.75, 0.25, 0.0], [0.75, 0.25, 0.0]]))
    loss, _ = instance_nce(Q, POS, NEG, TAU, targets=targets)
    logp0 = F.log_softmax(torch.tensor([1.0, 0.0, -1.0]) / TAU, 0)
    logp1 = F.log_softmax(torch.tensor([0.8, 1.0, 0.0]) / TAU, 0)
    expected = -0.5 * ((0.75 * logp0[0] + 0.25 * logp0[1]) + (0.75 * logp1[0] + 0.25 * logp1[1]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_neighbour_targets_follow_the_neighbour_softmax():
    targets = neighbour_targets(torch.tensor([[1.0, 0.0]]), mix=0.5, temperature=1.0)
    e = math.exp(1.0)
    assert torch.allclose(targets, torch.tensor([[0.5, 0.5 * e / (e + 1), 0.5 / (e + 1)]]))
    assert torch.allclose(neighbour_targets(torch.tensor([[0.3, 0.1]]), mix=0.0, temperature=1.0),
                          torch.tensor([[1.0, 0.0, 0.0]]))


def test_every_negative_masked_gives_zero_loss_and_nan_negative_similarity():
    loss, diag = instance_nce(Q, POS, NEG, TAU, negative_mask=torch.ones(2, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(diag["neg_sim"]) and diag["masked_neg"] == 1.0 and diag["top1"] == 1.0


def test_masking_drops_a_negative_from_the_denominator():
    mask = torch.tensor([[False, True], [True, False]])
    loss, _ = instance_nce(Q, POS, NEG, TAU, negative_mask=mask)
    assert loss.item() == pytest.approx(0.5 * (_ce(1.0, [0.0]) + _ce(0.8, [0.0])), rel=1e-6)


def test_soft_target_on_a_masked_negative_is_refused():
    targets = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(AssertionError, match="masked"):
        instance_nce(Q, POS, NEG, TAU, targets=targets, negative_mask=torch.tensor([[True, False], [False, False]]))


def test_same_class_negative_share_ignores_unknown_labels():
    _, diag = instance_nce(Q, POS, NEG, TAU, query_labels=torch.tensor([0, -1]), negative_labels=torch.tensor([0, 1]))
    assert diag["same_class_neg"] == pytest.approx(1 / 4)  # one of four counted negatives shares a known class


def test_agreement_weights_are_monotone_floored_and_standardised():
    agreement = torch.tensor([-1.0, 0.0, 1.0])
    weights = agreement_weights(agreement, floor=0.3, sharpness=1.0)
    assert weights[1].item() == pytest.approx(0.3 + 0.7 * 0.5)  # the mean agreement sits halfway
    assert bool((weights[1:] > weights[:-1]).all()) and bool((weights > 0.3).all()) and bool((weights < 1).all())
    std = agreement.std(unbiased=False).item()
    assert weights[2].item() == pytest.approx(0.3 + 0.7 / (1 + math.exp(-1.0 / std)))
    # scale-free: doubling every agreement does not change the weights
    assert torch.allclose(agreement_weights(2 * agreement, 0.3, 1.0), weights)
    # floor 1 switches the weighting off; a reference moves the "typical" agreement
    assert torch.allclose(agreement_weights(agreement, 1.0, 1.0), torch.ones(3))
    shifted = agreement_weights(torch.tensor([0.0]), 0.3, 1.0, reference=torch.tensor([0.0, 2.0]))
    assert shifted.item() == pytest.approx(0.3 + 0.7 / (1 + math.e))


def _slots(cosines):
    """Unit video and audio slots in 2-D whose per-clip cosine is ``cosines``: video = e0, audio at angle acos(c)."""
    c = torch.as_tensor(cosines, dtype=torch.float64)
    video = torch.stack([torch.ones_like(c), torch.zeros_like(c)], dim=1)
    audio = torch.stack([c, (1 - c ** 2).sqrt()], dim=1)
    return video, audio


def test_bank_agreement_weights_judge_a_clip_against_every_training_clips_slots():
    # six training clips; clips 4 and 5 disagree (faulty pairs), the others agree well
    cosines = [0.9, 0.8, 0.85, 0.95, -0.2, 0.0]
    video_bank, audio_bank = _slots(cosines)
    assert torch.allclose(slot_agreement(video_bank, audio_bank), torch.tensor(cosines, dtype=torch.float64))
    reference = torch.tensor(cosines, dtype=torch.float64)
    mean, std = reference.mean().item(), reference.std(unbiased=False).item()
    # a batch holding only clips 0 and 4: each weight is the floored sigmoid of its dataset-wide z-score
    batch = torch.tensor([0, 4])
    weights = bank_agreement_weights(video_bank[batch], audio_bank[batch], video_bank, audio_bank,
                                     floor=0.3, sharpness=0.5)
    for weight, cosine in zip(weights.tolist(), (0.9, -0.2)):
        assert weight == pytest.approx(0.3 + 0.7 / (1 + math.exp(-(cosine - mean) / (0.5 * std))))
    # a batch of the two faulty clips only: the dataset says both are faulty (below halfway); a batch
    # z-score of the same two clips would call the better of them "typical" and give it more than half
    faulty = torch.tensor([4, 5])
    from_bank = bank_agreement_weights(video_bank[faulty], audio_bank[faulty], video_bank, audio_bank, 0.3, 1.0)
    from_batch = agreement_weights(slot_agreement(video_bank[faulty], audio_bank[faulty]), 0.3, 1.0)
    assert bool((from_bank < 0.3 + 0.35).all()) and from_batch[1].item() > 0.3 + 0.35
    assert standardised_agreement(torch.tensor([3.0]), torch.tensor([1.0, 3.0])).item() == pytest.approx(1.0)


def test_instance_nce_gradient_flows_to_queries_only_through_the_loss():
    queries = Q.clone().requires_grad_(True)
    loss, _ = instance_nce(queries, POS, NEG, TAU, weights=torch.tensor([1.0, 0.0]))
    loss.backward()
    assert queries.grad[1].abs().sum().item() == 0.0  # a zero-weight query gets no gradient
    assert queries.grad[0].abs().sum().item() > 0.0


def test_uniform_loss_counts_each_querys_unmasked_candidates_in_the_weighted_mean():
    mask = torch.tensor([[False, True], [False, False]])  # query 0 keeps 1 negative, query 1 both
    weights = torch.tensor([1.0, 3.0])
    _, diag = instance_nce(Q, POS, NEG, TAU, negative_mask=mask, weights=weights)
    assert diag["uniform_loss"] == pytest.approx((1 * math.log(2) + 3 * math.log(3)) / 4, rel=1e-9)
    # a soft target does not change a uniform guess's loss: ln(candidates) whatever the target
    targets = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    _, soft = instance_nce(Q, POS, NEG, TAU, targets=targets)
    assert soft["uniform_loss"] == pytest.approx(math.log(3), rel=1e-9)
