"""Intra-modal InfoNCE (avlib.losses.intra) against a hand-written reference, and its controls."""

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.losses.intra import intra_nce, objective_loss


def unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def reference(queries, view_keys, queue_keys, tau, masks=None, offset=0):
    """The formula written out, one query at a time: for modality m and query i,
    -log exp(q_i . k_(offset+i) / tau) / sum over [every second-window key of the batch ; the modality's
    unmasked queue keys] of exp(q_i . k / tau), then the mean over queries, then over the two modalities."""
    per_modality = []
    for m in ("video", "audio"):
        terms = []
        for i in range(queries[m].shape[0]):
            candidates = [view_keys[m][j] for j in range(view_keys[m].shape[0])]
            candidates += [queue_keys[m][k] for k in range(queue_keys[m].shape[0])
                           if masks is None or not bool(masks[m][i, k])]
            denominator = sum(math.exp(float(queries[m][i] @ key) / tau) for key in candidates)
            terms.append(-math.log(math.exp(float(queries[m][i] @ view_keys[m][offset + i]) / tau) / denominator))
        per_modality.append(sum(terms) / len(terms))
    return sum(per_modality) / 2


def case(seed=0, batch=4, dim=6, queue=5):
    queries = {"video": unit(batch, dim, seed=seed), "audio": unit(batch, dim, seed=seed + 1)}
    # second windows: near their query (a learnable pairing), so the loss is far from a uniform guess
    view_keys = {m: F.normalize(q + 0.3 * unit(batch, dim, seed=seed + 2 + k), dim=1)
                 for k, (m, q) in enumerate(queries.items())}
    queue_keys = {"video": unit(queue, dim, seed=seed + 5), "audio": unit(queue - 2, dim, seed=seed + 6)}
    return queries, view_keys, queue_keys


def test_matches_the_formula_written_out_with_masks_and_an_offset():
    queries, view_keys, queue_keys = case()
    masks = {"video": torch.tensor([[1, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]]).bool(),
             "audio": torch.tensor([[0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]]).bool()}
    loss, diagnostics = intra_nce(queries, view_keys, queue_keys, 0.2, masks)
    assert loss.item() == pytest.approx(reference(queries, view_keys, queue_keys, 0.2, masks), rel=1e-5)
    assert diagnostics["intra_video_loss"] != diagnostics["intra_audio_loss"]
    assert loss.item() == pytest.approx((diagnostics["intra_video_loss"] + diagnostics["intra_audio_loss"]) / 2)
    # candidates per video query: 4 second windows + the unmasked queue keys (3, 5, 4, 0); audio: 4 + (2, 3, 2, 3)
    expected_uniform = (sum(map(math.log, (7, 9, 8, 4))) / 4 + sum(map(math.log, (6, 7, 6, 7))) / 4) / 2
    assert diagnostics["intra_uniform_loss"] == pytest.approx(expected_uniform, rel=1e-9)
    # this rank's 2 queries of a global batch of 4 second windows, positives at rows 2, 3
    half = {m: q[2:] for m, q in queries.items()}
    half_masks = {m: mask[2:] for m, mask in masks.items()}
    shifted, _ = intra_nce(half, view_keys, queue_keys, 0.2, half_masks, positive_offset=2)
    assert shifted.item() == pytest.approx(reference(half, view_keys, queue_keys, 0.2, half_masks, offset=2), rel=1e-5)


def test_gradient_is_autograd_of_the_reference_formula():
    queries, view_keys, queue_keys = case(seed=3)
    leaves = {m: q.clone().requires_grad_() for m, q in queries.items()}
    intra_nce(leaves, view_keys, queue_keys, 0.1)[0].backward()
    explicit = {m: q.clone().requires_grad_() for m, q in queries.items()}
    total = 0
    for m in ("video", "audio"):
        logits = torch.cat([explicit[m] @ view_keys[m].T, explicit[m] @ queue_keys[m].T], dim=1) / 0.1  # (B, G + K)
        total = total + (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean() / 2
    total.backward()
    for m in ("video", "audio"):
        torch.testing.assert_close(leaves[m].grad, explicit[m].grad)


def test_controls_a_wrong_pairing_or_the_other_modality_changes_the_loss():
    """The loss pairs each query with ITS clip's second window of the SAME modality: rolling the keys by
    one clip, or scoring video queries against audio keys, must give another (here: higher) loss."""
    queries, view_keys, queue_keys = case(seed=7)
    right, diagnostics = intra_nce(queries, view_keys, queue_keys, 0.1)
    assert diagnostics["intra_video_top1"] == 1.0 and diagnostics["intra_audio_top1"] == 1.0
    rolled = {m: k.roll(1, dims=0) for m, k in view_keys.items()}
    wrong_clip, wrong = intra_nce(queries, rolled, queue_keys, 0.1)
    assert wrong_clip.item() > right.item() + 1.0 and wrong["intra_video_top1"] == 0.0
    swapped = {"video": view_keys["audio"], "audio": view_keys["video"]}
    queues = {"video": queue_keys["video"][:3], "audio": queue_keys["audio"]}  # same size, so they can swap too
    other_modality, _ = intra_nce(queries, swapped, {"video": queues["audio"], "audio": queues["video"]}, 0.1)
    assert other_modality.item() > right.item() + 1.0


def test_missing_modality_is_refused():
    queries, view_keys, queue_keys = case()
    with pytest.raises(AssertionError, match="missing \\['audio'\\]"):
        intra_nce({"video": queries["video"]}, view_keys, queue_keys, 0.1)


def test_objective_loss_per_objective():
    cross, intra = torch.tensor(2.0), torch.tensor(3.0)
    assert objective_loss("cross", cross, None, 0.5).item() == 2.0
    assert objective_loss("joint", cross, intra, 0.5).item() == 3.5
    assert objective_loss("intra", cross, intra, 0.5).item() == 3.0  # the control: no term to balance
    with pytest.raises(AssertionError, match="needs the intra-modal loss"):
        objective_loss("joint", cross, None, 1.0)
