"""The memory-bank (xid, robust_xid) and label-aware (soft_positive, class_aware, hard_negative) samplers.

Constructed batches check each method's rule; tiny end-to-end runs check determinism with a seed
and that an interrupted run resumes to the same metrics.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from avlib.config import ConfigError, PretrainConfig
from avlib.models.encoders import Embeddings
from avlib.samplers import ClipFacts, StepBatch, build_sampler
from avlib.samplers.label_aware import LabelAwareSampler, purity
from avlib.samplers.xid import MemoryBankSampler, auroc
from avlib.train import pretrain, read_metrics
from tiny import TINY, tiny_config

DIM, HIDDEN, BATCH = 8, 6, 4


def _config(sampler, **overrides):
    return PretrainConfig(**{**TINY, "sampler": sampler, "embedding_dim": DIM, "batch_size": BATCH,
                             "label_warmup_epochs": 0, **overrides})


def _facts(num_clips=24, classes=3, corrupted=None):
    labels = torch.arange(num_clips) % classes
    return ClipFacts(labels=labels, train_index=torch.arange(num_clips), corrupted=corrupted)


def _unit(g, *shape):
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def _batch(step, clips, *, aligned=None, seed=0):
    """Embeddings whose two modalities agree for clips where ``aligned`` is True (default: all)."""
    g = torch.Generator().manual_seed(1000 * seed + step)
    size = len(clips)
    video = _unit(g, size, DIM)
    audio = video.clone()
    if aligned is not None:
        audio[~aligned] = _unit(g, int((~aligned).sum()), DIM)  # faulty pairs: unrelated audio
    audio = F.normalize(audio + 0.05 * torch.randn(size, DIM, generator=g), dim=1)
    hidden = torch.randn(size, HIDDEN, generator=g)
    embeddings = Embeddings(video, audio, hidden, hidden)
    return StepBatch(step=step, clip_index=torch.as_tensor(clips), queries=embeddings, keys=embeddings,
                     generator=torch.Generator().manual_seed(7 + step))


def test_auroc_and_purity_on_hand_cases():
    assert auroc(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5
    assert math.isnan(auroc(torch.tensor([0.1, 0.2]), torch.tensor([0, 0])))
    assert purity(torch.tensor([0, 0, 1, 1]), torch.tensor([2, 2, 2, 1])) == 0.75
    assert purity(torch.tensor([1, 0, -1]), torch.tensor([0, 1, 1])) == 1.0


def test_xid_draws_bank_negatives_and_never_its_own_clip():
    sampler = build_sampler(_config("xid", bank_negatives=16), _facts(), {"video": HIDDEN, "audio": HIDDEN})
    assert isinstance(sampler, MemoryBankSampler)
    batch = _batch(0, [0, 1, 2, 3])
    loss, diagnostics = sampler.loss(batch)
    assert torch.isfinite(loss) and diagnostics["robust"] == 0.0 and math.isnan(diagnostics["weight_mean"])
    sampler.update(batch)
    assert torch.allclose(sampler.video_bank.keys_of(torch.arange(4)), batch.keys.video)  # first write takes the key
    assert sampler.video_bank.step_added_of(torch.arange(5)).tolist() == [0] * 4 + [-1]


def test_robust_xid_switches_on_after_warmup_and_its_weights_single_out_faulty_pairs():
    corrupted = torch.zeros(24, dtype=torch.bool)
    corrupted[::4] = True  # clips 0, 4, 8, ...: audio from elsewhere
    cfg = _config("robust_xid", robust_warmup_epochs=1, bank_negatives=16, soft_target_neighbors=2)
    sampler = build_sampler(cfg, _facts(corrupted=corrupted), {"video": HIDDEN, "audio": HIDDEN})
    steps_per_epoch = 24 // BATCH
    for step in range(2 * steps_per_epoch):
        clips = torch.arange(step % steps_per_epoch * BATCH, (step % steps_per_epoch + 1) * BATCH)
        batch = _batch(step, clips, aligned=~corrupted[clips])
        loss, diagnostics = sampler.loss(batch)
        assert torch.isfinite(loss)
        assert diagnostics["robust"] == float(step >= steps_per_epoch)
        if step >= steps_per_epoch:
            assert diagnostics["weight_corrupted"] < diagnostics["weight_clean"]
        sampler.update(batch)
    summary = sampler.summary()
    assert summary["weighted_clips"] == 24 and summary["corrupted_clips"] == 6
    assert summary["weight_auroc"] == 1.0 and summary["bank_agreement_auroc"] == 1.0
    assert summary["weight_final_min"] >= cfg.weight_floor
    clean = build_sampler(cfg, _facts(corrupted=torch.zeros(24, dtype=torch.bool)), {"video": HIDDEN, "audio": HIDDEN})
    assert "bank_agreement_auroc" not in clean.summary(), "no corrupted pairs: no AUROC (JSON has no NaN)"


def test_bank_weight_source_scores_clips_by_their_bank_slots_against_every_training_clip():
    from avlib.losses.instance import bank_agreement_weights

    corrupted = torch.zeros(24, dtype=torch.bool)
    corrupted[::4] = True
    cfg = _config("robust_xid", robust_warmup_epochs=1, bank_negatives=16, soft_target_neighbors=2,
                  robust_weight_source="bank")
    sampler = build_sampler(cfg, _facts(corrupted=corrupted), {"video": HIDDEN, "audio": HIDDEN})
    steps_per_epoch = 24 // BATCH
    for step in range(2 * steps_per_epoch):
        clips = torch.arange(step % steps_per_epoch * BATCH, (step % steps_per_epoch + 1) * BATCH)
        batch = _batch(step, clips, aligned=~corrupted[clips])
        if step >= steps_per_epoch:  # the weights come from the banks as they stand before this step's update
            train = torch.arange(24)
            expected = bank_agreement_weights(sampler.video_bank.keys_of(clips), sampler.audio_bank.keys_of(clips),
                                              sampler.video_bank.keys_of(train), sampler.audio_bank.keys_of(train),
                                              cfg.weight_floor, cfg.weight_sharpness)
            assert torch.allclose(sampler.positive_weights(batch), expected)
        loss, diagnostics = sampler.loss(batch)
        assert torch.isfinite(loss)
        if step >= steps_per_epoch:
            assert diagnostics["weight_corrupted"] < diagnostics["weight_clean"]
        sampler.update(batch)
        if step >= steps_per_epoch:
            assert torch.allclose(sampler.last_weight[clips], expected), "update records the weights the loss used"
    summary = sampler.summary()
    assert summary["weight_auroc"] == 1.0 and summary["bank_agreement_auroc"] == 1.0
    assert summary["batch_agreement_auroc"] == 1.0  # the batch score of every clip is kept too
    with pytest.raises(ConfigError, match="robust_weight_source"):
        _config("robust_xid", robust_weight_source="memory")


def test_plain_xid_reports_both_scores_aurocs_but_no_weights():
    corrupted = torch.zeros(24, dtype=torch.bool)
    corrupted[1::3] = True
    sampler = build_sampler(_config("xid", bank_negatives=16), _facts(corrupted=corrupted),
                            {"video": HIDDEN, "audio": HIDDEN})
    for step in range(24 // BATCH):
        clips = torch.arange(step * BATCH, (step + 1) * BATCH)
        batch = _batch(step, clips, aligned=~corrupted[clips])
        sampler.loss(batch)
        sampler.update(batch)
    summary = sampler.summary()
    assert summary["bank_agreement_auroc"] == 1.0 and summary["batch_agreement_auroc"] == 1.0
    assert "weight_auroc" not in summary


@pytest.mark.parametrize("space", ["within", "cross", "both"])
def test_robust_neighbours_are_other_training_clips_ranked_by_bank_similarity(space):
    facts = ClipFacts(labels=torch.zeros(10, dtype=torch.long), train_index=torch.arange(2, 10))
    cfg = _config("robust_xid", soft_target_neighbors=3, soft_target_space=space)
    sampler = build_sampler(cfg, facts, {"video": HIDDEN, "audio": HIDDEN})
    index, similarity = sampler.neighbours(torch.tensor([2, 0]))
    assert index.shape == (2, 3) and not (index == torch.tensor([[2], [0]])).any()
    assert bool((index >= 2).all()), "neighbours come from the training slots only"
    assert bool((similarity[:, :-1] >= similarity[:, 1:]).all()), "ranked most similar first"


def test_soft_positive_partners_share_the_class_and_have_a_stored_key():
    cfg = _config("soft_positive", soft_positive_rate=1.0)
    sampler = build_sampler(cfg, _facts(), {"video": HIDDEN, "audio": HIDDEN})
    first = _batch(0, [0, 1, 2, 3])
    assert torch.equal(sampler.partners(first), first.clip_index), "no stored keys yet: no partner"
    sampler.update(first)
    later = _batch(1, [6, 7, 8, 9])  # classes 0, 1, 2, 0; stored keys of clips 0..3 (classes 0, 1, 2, 0)
    partners = sampler.partners(later)
    labels = sampler.clip_labels.labels
    assert torch.equal(labels[partners], labels[later.clip_index])
    assert bool((partners != later.clip_index).all()) and set(partners.tolist()) <= {0, 1, 2, 3}
    loss, diagnostics = sampler.loss(later)
    assert torch.isfinite(loss) and diagnostics["soft_positives"] == 1.0
    # a zero rate never swaps
    sampler.cfg = _config("soft_positive", soft_positive_rate=0.0)
    assert torch.equal(sampler.partners(later), later.clip_index)


def test_class_aware_masks_every_same_class_negative_and_hard_negative_keeps_count():
    facts = _facts()
    for name, expected_counted in (("class_aware", None), ("hard_negative", 2)):
        sampler = build_sampler(_config(name, hard_negative_count=2, dictionary_size=8), facts,
                                {"video": HIDDEN, "audio": HIDDEN})
        for step in range(3):
            batch = _batch(step, list(range(4 * step, 4 * step + 4)))
            loss, diagnostics = sampler.loss(batch)
            assert torch.isfinite(loss)
            assert diagnostics["same_class_neg"] == 0.0, name
            sampler.update(batch)
        if expected_counted is not None:
            keys = 4 + len(sampler.audio_queue)  # batch keys + queue
            assert diagnostics["masked_neg"] == pytest.approx(1 - expected_counted / keys)


def test_kmeans_pseudo_labels_cluster_the_stored_keys_without_ground_truth():
    cfg = _config("class_aware", label_source="kmeans", pseudo_label_every=2, pseudo_label_clusters=3)
    sampler = build_sampler(cfg, _facts(), {"video": HIDDEN, "audio": HIDDEN})
    assert isinstance(sampler, LabelAwareSampler)
    assert bool((sampler.clip_labels.labels == -1).all()), "no labels before the first clustering"
    prototypes = F.normalize(torch.eye(3, DIM), dim=1)  # one direction per true class
    for step in range(6):
        clips = torch.arange(4 * step, 4 * step + 4)
        batch = _batch(step, clips)
        keys = F.normalize(prototypes[clips % 3] + 0.05 * batch.keys.video, dim=1)
        batch.keys = Embeddings(keys, keys, batch.keys.video_hidden, batch.keys.audio_hidden)
        sampler.update(batch)
    labels = sampler.clip_labels.labels
    assert bool((labels >= 0).all()) and float(sampler.clip_labels.purity) == 1.0
    summary = sampler.summary()
    assert {k: summary[k] for k in ("label_source", "label_purity", "label_clusters")} == {
        "label_source": "kmeans", "label_purity": 1.0, "label_clusters": 3}
    assert summary["selection"]["video"]["enter_share"] == 1.0  # a FIFO queue enqueues all it considers


NEW_SAMPLERS = {
    "robust_xid": dict(robust_warmup_epochs=1, faulty_pair_rate=0.25),
    "soft_positive": dict(label_source="kmeans", pseudo_label_every=2, pseudo_label_clusters=3, label_warmup_epochs=1),
    "hard_negative": dict(label_warmup_epochs=1),
}


def test_label_aware_samplers_act_as_random_during_their_warmup():
    cfg = _config("class_aware", label_warmup_epochs=1, dictionary_size=8)  # 24 clips / 4 = 6 warm-up steps
    sampler = build_sampler(cfg, _facts(), {"video": HIDDEN, "audio": HIDDEN})
    soft = build_sampler(_config("soft_positive", label_warmup_epochs=1, soft_positive_rate=1.0), _facts(),
                         {"video": HIDDEN, "audio": HIDDEN})
    for step in range(8):
        batch = _batch(step, list(range(4 * (step % 6), 4 * (step % 6) + 4)))
        _, diagnostics = sampler.loss(batch)
        _, soft_diagnostics = soft.loss(batch)
        if step < 6:
            assert diagnostics["masked_neg"] < 0.5 and soft_diagnostics["soft_positives"] == 0.0
        else:
            assert diagnostics["same_class_neg"] == 0.0 and soft_diagnostics["soft_positives"] == 1.0
        sampler.update(batch)
        soft.update(batch)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NEW_SAMPLERS))
def test_interrupted_run_resumes_to_the_same_metrics(name, tmp_path, monkeypatch):
    overrides = dict(sampler=name, max_steps=8, checkpoint_every=3, probe=False, **NEW_SAMPLERS[name])
    straight = pretrain(tiny_config(tmp_path / "straight", **overrides))
    again = pretrain(tiny_config(tmp_path / "again", **overrides))
    assert again["final_loss"] == straight["final_loss"], "same seed, same run"

    sampler_class = type(build_sampler(tiny_config(tmp_path / "x", **overrides), 30, {"video": 4, "audio": 4}))
    original = sampler_class.update

    def crash_at_step_5(self, batch):
        if batch.step == 5:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch)

    monkeypatch.setattr(sampler_class, "update", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(tmp_path / "resumed", **overrides))
    monkeypatch.setattr(sampler_class, "update", original)
    resumed = pretrain(tiny_config(tmp_path / "resumed", **overrides))  # from the step-3 checkpoint
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == [r["loss"] for r in read_metrics(tmp_path / "straight")]
    assert resumed["final_loss"] == straight["final_loss"]
    for key in ("weight_auroc", "label_purity"):
        if key in straight:
            assert resumed[key] == straight[key] or (math.isnan(resumed[key]) and math.isnan(straight[key]))
