"""``label_noise``: label-aware samplers get ground truth with a stated share of the training clips'
labels replaced by a random other class (Wang et al. 2024's noisy-label setting); the probes keep
the true labels."""

import pytest
import torch

from avlib.config import ConfigError, PretrainConfig
from avlib.samplers import ClipFacts, build_sampler
from avlib.samplers.label_aware import noisy_labels, purity
from avlib.train import pretrain
from tiny import TINY, tiny_config


def _facts(num_clips=3000, classes=5, train=2000):
    labels = torch.arange(num_clips) % classes  # (N,)
    return ClipFacts(labels=labels, train_index=torch.randperm(num_clips, generator=torch.Generator().manual_seed(0))
                     [:train].sort().values)


def test_the_stated_share_of_training_labels_moves_to_a_uniformly_random_other_class():
    facts = _facts()
    noisy = noisy_labels(facts.labels, facts.train_index, facts.num_classes, 0.3, seed=4)
    changed = noisy != facts.labels  # (N,)
    train = torch.zeros_like(changed)
    train[facts.train_index] = True
    assert int(changed[train].sum()) == round(0.3 * 2000) == 600  # exactly the share, of training clips
    assert not bool(changed[~train].any())  # val/test clips keep theirs
    assert bool(((noisy >= 0) & (noisy < 5)).all())
    # the new class is uniform over the four others: each (true, noisy) pair ~ 600 / 20 = 30 times
    pairs = torch.zeros(5, 5)
    pairs.index_put_((facts.labels[changed], noisy[changed]), torch.ones(int(changed.sum())), accumulate=True)
    assert bool((pairs.diagonal() == 0).all())
    off = pairs[~torch.eye(5, dtype=torch.bool)]
    assert float(off.min()) >= 12 and float(off.max()) <= 52  # a fixed shift (+1) would put all 120 in one cell
    # deterministic in the seed, another seed flips other clips; no noise, no change
    assert torch.equal(noisy, noisy_labels(facts.labels, facts.train_index, 5, 0.3, seed=4))
    assert not torch.equal(noisy, noisy_labels(facts.labels, facts.train_index, 5, 0.3, seed=5))
    assert torch.equal(noisy_labels(facts.labels, facts.train_index, 5, 0.0, seed=4), facts.labels)


def test_a_label_aware_sampler_sees_the_noisy_labels_and_the_clip_facts_stay_true():
    facts = _facts(num_clips=300, classes=5, train=200)
    truth = facts.labels.clone()
    cfg = PretrainConfig(**{**TINY, "sampler": "class_aware", "label_noise": 0.3, "seed": 3})
    sampler = build_sampler(cfg, facts, {"video": 6, "audio": 6})
    labels = sampler.clip_labels.labels
    assert int((labels != truth).sum()) == 60 and torch.equal(facts.labels, truth)
    assert torch.equal(labels, noisy_labels(truth, facts.train_index, 5, 0.3, seed=3))
    assert float(sampler.clip_labels.purity) == pytest.approx(purity(labels[facts.train_index],
                                                                     truth[facts.train_index]))
    assert float(sampler.clip_labels.purity) == pytest.approx(0.7, abs=0.01)
    clean = build_sampler(PretrainConfig(**{**TINY, "sampler": "class_aware", "seed": 3}), facts, {"video": 6, "audio": 6})
    assert torch.equal(clean.clip_labels.labels, truth) and float(clean.clip_labels.purity) == 1.0


def test_label_noise_is_validated_and_refused_with_pseudo_labels():
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match=r"parameter label_noise=.* must lie in \[0, 1\)"):
            PretrainConfig(label_noise=bad)
    cfg = PretrainConfig(**{**TINY, "sampler": "soft_positive", "label_source": "kmeans", "label_noise": 0.3})
    with pytest.raises(ConfigError, match="label_noise=0.3 replaces ground-truth labels; with label_source='kmeans'"):
        build_sampler(cfg, _facts(300, 5, 200), {"video": 6, "audio": 6})


def test_a_noisy_run_trains_on_noisy_labels_and_its_probes_score_the_true_ones(tmp_path):
    """Two tiny soft_positive runs, clean and 30% noise: the random-init probes (same encoders, same
    clips) are identical -- the probes read the true labels -- while the sampler's labels were noisy."""
    runs = {}
    for noise in (0.0, 0.3):
        cfg = tiny_config(tmp_path / f"noise{noise}", sampler="soft_positive", label_noise=noise, max_steps=2,
                          label_warmup_epochs=0)
        runs[noise] = pretrain(cfg)
    assert runs[0.0]["probe_random_init"] == runs[0.3]["probe_random_init"]
    assert runs[0.0]["label_purity"] == 1.0 and runs[0.3]["label_purity"] < 0.9
