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
