"""Every registered sampler trains end to end on a tiny run; the active sampler's pool invariants."""

import pytest
import torch
import torch.nn.functional as F

from avlib.active import EMBEDDINGS, SELECTORS
from avlib.config import PretrainConfig
from avlib.models.encoders import Embeddings
from avlib.samplers import SAMPLERS, StepBatch, build_sampler
from avlib.train import pretrain, read_metrics
from tiny import TINY, tiny_config


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_trains_and_fills_its_dictionaries(name, tmp_path):
    summary = pretrain(tiny_config(tmp_path / name, sampler=name, max_steps=4, probe=False))
    rows = read_metrics(tmp_path / name)
    assert summary["sampler"] == name and len(rows) == 4
    assert all(r["select_s"] >= 0 for r in rows)
    state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)["sampler"]
    for modality in ("video", "audio"):
        if f"{modality}_queue.count" in state:  # MoCo queues
            assert int(state[f"{modality}_queue.count"]) > 0
        else:  # memory banks: some slots written
            assert int(state[f"{modality}_bank.step_added"].max()) >= 0


def _fake_batch(step, batch_size=4, dim=8, hidden=6, generator_seed=0, candidates=0):
    g = torch.Generator().manual_seed(100 + step)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=g), dim=-1)

    embeddings = lambda: Embeddings(unit(batch_size, dim), unit(batch_size, dim),  # noqa: E731
                                    torch.randn(batch_size, hidden, generator=g), torch.randn(batch_size, hidden, generator=g))
    clips = torch.arange(step * batch_size, (step + 1) * batch_size)
    batch = StepBatch(step=step, clip_index=clips, queries=embeddings(), keys=embeddings(),
                      generator=torch.Generator().manual_seed(generator_seed + step))
    if candidates:  # extra candidate clips, numbered after every batch clip
        batch.candidates = Embeddings(unit(candidates, dim), unit(candidates, dim), torch.randn(candidates, hidden, generator=g),
                                      torch.randn(candidates, hidden, generator=g))
        batch.candidate_clip_index = 1000 + torch.arange(step * candidates, (step + 1) * candidates)
    return batch


@pytest.mark.parametrize("aware", [False, True])
@pytest.mark.parametrize("selector", ["kmeanspp", "kcenter", "random"])
def test_fresh_candidates_enter_one_in_factor_and_the_rest_never(selector, aware):
    """The default source: B of factor x B fresh candidates enter each step; the others are gone for
    good (never in a later dictionary), so enter_share is exactly 1/factor and keys enter at age 0."""
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_selector": selector, "active_dictionary_aware": aware,
                            "active_candidates": "fresh"})
    sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
    assert sampler.extra_candidates() == 2 * 4
    rejected: set[int] = set()
    for step in range(6):
        batch = _fake_batch(step, candidates=8)
        before = set(sampler.video_queue.valid()[1].tolist())
        row = sampler.update(batch)
        entered = set(sampler.video_queue.valid()[1].tolist()) - before
        considered = set(batch.clip_index.tolist()) | set(batch.candidate_clip_index.tolist())
        assert len(entered) == 4 and entered <= considered and not entered & rejected
        rejected |= considered - entered
    assert row["video_sel_enter_share"] == pytest.approx(1 / 3) and row["audio_sel_enter_share"] == pytest.approx(1 / 3)
    assert row["video_sel_mean_age_steps"] == 0.0 and row["video_sel_unique_clip_share"] == 1.0


@pytest.mark.parametrize("selector", ["kmeanspp", "lloyd_nearest", "random"])
def test_batch_source_lets_one_in_factor_of_each_batch_enter_and_drops_the_rest(selector):
    """The default source: B // factor of the batch's keys enter, the rest never do (enter_share 1/factor)."""
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_selector": selector, "active_candidate_factor": 2, "active_candidates": "batch"})
    sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
    assert sampler.extra_candidates() == 0
    rejected: set[int] = set()
    for step in range(6):
        batch = _fake_batch(step)
        before = set(sampler.audio_queue.valid()[1].tolist())
        row = sampler.update(batch)
        entered = set(sampler.audio_queue.valid()[1].tolist()) - before
        assert len(entered) == 2 and entered <= set(batch.clip_index.tolist()) and not entered & rejected
        rejected |= set(batch.clip_index.tolist()) - entered
    assert row["video_sel_enter_share"] == 0.5 and row["audio_sel_enter_share"] == 0.5
    assert row["audio_sel_mean_age_steps"] == 0.0


def _versions_entered(sampler, modality, entered_versions):
    """Add the (clip, arrival step) of every key the last update chose; return how many were new."""
    record = sampler.last_selection[modality]
    chosen = record["chosen"]
    versions = set(zip(record["clip_index"][chosen].tolist(), record["step_added"][chosen].tolist()))
    new = versions - entered_versions
    entered_versions |= versions
    return len(new)


@pytest.mark.parametrize("source", ["bank", "official"])
@pytest.mark.parametrize("aware", [False, True])
def test_sources_that_keep_keys_count_each_candidate_once(source, aware):
    """bank and official: B keys enter every step (from step 0); a key may be chosen twice (official:
    it stays in the pool; bank: it is drawn again), and the tally counts every (clip, arrival step)
    once, so enter_share is exactly (distinct keys that entered) / (keys that arrived)."""
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_candidates": source, "active_pool_factor": 3, "active_candidate_factor": 3,
                            "active_dictionary_aware": aware})
    sampler = build_sampler(cfg, 12, hidden_dims={"video": 6, "audio": 6})
    entered: set = set()
    first_entries = 0
    for step in range(12):
        batch = _fake_batch(step)
        batch.clip_index = batch.clip_index % 12  # 3 batches an epoch: clips come back with new keys
        before = len(sampler.video_queue)
        row = sampler.update(batch)
        assert len(sampler.video_queue) == min(64, before + 4)
        record = sampler.last_selection["video"]
        if source == "official":  # the pool: the last 3 batches (fewer at the start), oldest first
            assert record["keys"].shape[0] == 4 * min(3, step + 1)
            assert int(record["step_added"].min()) == max(0, step - 2)
        else:  # the batch + 8 bank keys of other clips, written in earlier steps
            drawn = record["clip_index"][4:]
            assert drawn.numel() == min(8, 4 * step) and not set(drawn.tolist()) & set(batch.clip_index.tolist())
            assert bool((record["step_added"][4:] < step).all())
            assert torch.equal(sampler.video_bank.step_added[batch.clip_index], torch.full((4,), step))
        first_entries += _versions_entered(sampler, "video", entered)
    assert row["video_sel_enter_share"] == pytest.approx(first_entries / (12 * 4))
    # without awareness some keys are chosen twice; dictionary-aware k-means++ gives a key already in
    # the dictionary (a centre) weight 0, so with 12 clips and 64 slots every key enters once
    assert 0.25 < row["video_sel_enter_share"] <= 1.0
    assert row["video_sel_enter_share"] < 1.0 or aware


@pytest.mark.parametrize("embedding", sorted(EMBEDDINGS))
@pytest.mark.parametrize("selector", sorted(SELECTORS))
def test_active_pool_keeps_its_backlog_and_enqueues_each_key_at_most_once(embedding, selector):
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_embedding": embedding, "active_selector": selector, "active_pool_factor": 3,
                            "active_candidates": "backlog"})
    sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
    for step in range(8):
        sampler.update(_fake_batch(step))
        for modality, queue in sampler.dictionaries().items():
            _, clips = queue.valid()
            # backlog = (3 - 1) * 4 = 8 candidates: nothing enters for 2 steps, then B = 4 per step
            assert len(clips) == 4 * max(0, step - 1)
            assert len(set(clips.tolist())) == len(clips), "a candidate entered the dictionary twice"
            pool = getattr(sampler, f"{modality}_pool")
            assert int(pool.size) == min(8, 4 * (step + 1))
            assert not set(pool.clip_index[: int(pool.size)].tolist()) & set(clips.tolist())


def test_stale_candidates_age_out_of_the_pool():
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 8,
                            "active_pool_factor": 3, "active_candidates": "backlog"})  # candidates live 3 steps
    sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
    for step in range(6):
        sampler.update(_fake_batch(step))
        pool = sampler.audio_pool
        ages = step - pool.step_added[: int(pool.size)]
        assert bool((ages < 3).all())


def test_active_selection_is_deterministic_given_the_step_generator():
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_candidates": "backlog"})

    def run():
        sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
        for step in range(5):
            sampler.update(_fake_batch(step))
        return sampler.audio_queue.valid()[1].tolist()

    assert run() == run()


def test_active_prefers_diverse_candidates_over_a_redundant_cluster():
    """k-center on key features, with a backlog of near-duplicates of one key, picks the fresh spread-out keys."""
    cfg = PretrainConfig(**{**TINY, "sampler": "active", "embedding_dim": 8, "dictionary_size": 64,
                            "active_embedding": "feature", "active_selector": "kcenter", "active_pool_factor": 3,
                            "active_candidates": "backlog"})
    sampler = build_sampler(cfg, 100, hidden_dims={"video": 6, "audio": 6})
    same = F.normalize(torch.ones(1, 8), dim=1)
    for step in range(2):  # the backlog (8 candidates) fills with near-duplicates of one key
        b = _fake_batch(step)
        b.keys.audio = F.normalize(same.repeat(4, 1) + 1e-3 * torch.randn(4, 8), dim=1)
        sampler.update(b)
    batch = _fake_batch(2)  # 4 fresh, spread-out keys arrive; 4 of the 12 candidates enter
    sampler.update(batch)
    entered = sampler.audio_queue.valid()[1].tolist()
    assert len(entered) == 4 and sum(c in batch.clip_index.tolist() for c in entered) >= 3
