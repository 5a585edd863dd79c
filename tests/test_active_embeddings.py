"""Candidate embeddings: closed forms against torch autograd, dispatch and argument errors."""

import pytest
import torch
import torch.nn.functional as F

from avlib.active import EMBEDDINGS, badge, candidate_embedding, feature, key_grad
from avlib.losses.infonce import info_nce


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _unit(*shape, g, dtype=torch.float64):
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def test_key_grad_matches_autograd_of_infonce():
    g = _gen(0)
    b, n, d, tau = 5, 11, 7, 0.07
    q, k, pool = _unit(b, d, g=g), _unit(b, d, g=g), _unit(n, d, g=g)
    pool_var = pool.clone().requires_grad_(True)
    loss, _ = info_nce(q, k, pool_var, tau)  # the project's InfoNCE: MEAN over the B queries
    (grad,) = torch.autograd.grad(loss, pool_var)
    torch.testing.assert_close(key_grad(q, k, pool, tau), grad * b)  # key_grad is the SUM's gradient
    # and against a direct summed cross-entropy
    pool_var = pool.clone().requires_grad_(True)
    logits = q @ torch.cat([k, pool_var]).T / tau
    (grad_sum,) = torch.autograd.grad(F.cross_entropy(logits, torch.arange(b), reduction="sum"), pool_var)
    torch.testing.assert_close(key_grad(q, k, pool, tau), grad_sum)


def test_badge_g_matches_autograd_of_cross_entropy():
    g = _gen(1)
    n, m, d, h, tau = 9, 6, 5, 4, 0.2
    z, dictionary, inputs = _unit(n, d, g=g), _unit(m, d, g=g), torch.randn(n, h, generator=g, dtype=torch.float64)
    z_var = z.clone().requires_grad_(True)
    logits = z_var @ dictionary.T / tau
    label = logits.detach().argmax(dim=1)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, label, reduction="sum"), z_var)
    got_g, got_h = badge(z, inputs, dictionary, tau, normalized=False)
    torch.testing.assert_close(got_g, grad)
    assert torch.equal(got_h, inputs)


def test_badge_outer_product_is_the_weight_gradient_through_l2_normalisation():
    """g (x) h == dCE/dW for keys z = normalize(W h): the (g, h) pair is BADGE's last-layer gradient."""
    g = _gen(2)
    n, m, d, h, tau = 8, 5, 4, 6, 0.1
    w = torch.randn(d, h, generator=g, dtype=torch.float64, requires_grad=True)
    inputs = torch.randn(n, h, generator=g, dtype=torch.float64)
    dictionary = _unit(m, d, g=g)
    y = inputs @ w.T  # (N, D) pre-normalisation
    z = F.normalize(y, dim=1)
    logits = z @ dictionary.T / tau
    label = logits.detach().argmax(dim=1)
    (grad_w,) = torch.autograd.grad(F.cross_entropy(logits, label, reduction="sum"), w)
    gg, hh = badge(z.detach(), inputs, dictionary, tau, normalized=True, pre_norm=y.detach().norm(dim=1))
    torch.testing.assert_close(torch.einsum("nd,nh->dh", gg, hh), grad_w)


def test_badge_pseudo_label_ties_take_the_first_item():
    g = _gen(3)
    dictionary = _unit(4, 3, g=g)
    dictionary[3] = dictionary[1]
    z = dictionary[1:2].clone()
    gg, _ = badge(z, torch.ones(1, 2, dtype=torch.float64), dictionary, 0.5, normalized=False)
    p = torch.softmax(z @ dictionary.T / 0.5, dim=1)
    torch.testing.assert_close(gg, (p @ dictionary - dictionary[1]) / 0.5)


def test_feature_is_the_key_and_candidate_embedding_dispatches():
    g = _gen(4)
    keys = _unit(6, 3, g=g)
    assert torch.equal(feature(keys), keys)
    assert torch.equal(candidate_embedding("feature", pool_keys=keys), keys)
    q, k = _unit(2, 3, g=g), _unit(2, 3, g=g)
    torch.testing.assert_close(candidate_embedding("key_grad", queries=q, positive_keys=k, pool_keys=keys,
                                                   temperature=0.1), key_grad(q, k, keys, 0.1))
    assert sorted(EMBEDDINGS) == ["badge", "feature", "key_grad"]


def test_embedding_errors():
    g = _gen(5)
    keys = _unit(6, 3, g=g)
    with pytest.raises(ValueError, match=r"valid names: \['badge', 'feature', 'key_grad'\]"):
        candidate_embedding("gradnorm", pool_keys=keys)
    with pytest.raises(ValueError, match="candidate_embedding"):
        candidate_embedding("feature", keys=keys)
    with pytest.raises(ValueError, match="temperature"):
        key_grad(keys[:2], keys[:2], keys, 0.0)
    with pytest.raises(ValueError, match="must be"):
        key_grad(keys[:2], keys[:3], keys, 0.1)
    with pytest.raises(ValueError, match="must be"):
        badge(keys, torch.ones(5, 2), keys, 0.1)
    with pytest.raises(ValueError, match="2-D"):
        feature(keys[0])


def test_the_projection_heads_pre_norm_gives_badge_the_true_last_layer_gradient():
    """End to end with the model's own head: its third output (|W h + b| before normalisation) makes
    g (x) h equal autograd's gradient of the pseudo-labelled CE w.r.t. the last layer's weights; with
    the norm taken as 1 (what the sampler did before) it does not."""
    from avlib.models.encoders import ProjectionHead

    torch.manual_seed(0)
    head = ProjectionHead(6, 4).double().eval()
    features, dictionary, tau = torch.randn(8, 6, dtype=torch.float64), _unit(5, 4, g=_gen(7)), 0.1
    z, hidden, pre_norm = head(features)
    logits = z @ dictionary.T / tau
    (grad_w,) = torch.autograd.grad(F.cross_entropy(logits, logits.detach().argmax(dim=1), reduction="sum"),
                                    head.last.weight)
    gg, hh = badge(z.detach(), hidden.detach(), dictionary, tau, pre_norm=pre_norm.detach())
    torch.testing.assert_close(torch.einsum("nd,nh->dh", gg, hh), grad_w, rtol=1e-9, atol=1e-12)
    unit_g, _ = badge(z.detach(), hidden.detach(), dictionary, tau)
    assert not torch.allclose(torch.einsum("nd,nh->dh", unit_g, hh), grad_w, rtol=1e-3)
