"""objective = cross | joint | intra: the second window, the intra-modal queues, the loss the optimiser
sees, and a joint run killed mid-way resuming to the same metrics (its checkpoint holds the queues)."""

import shutil

import pytest
import torch
import torch.nn.functional as F

import avlib.train.run_folder as run_folder
from avlib.config import ConfigError
from avlib.data.dataset import SECOND_WINDOW_STREAM, AVWindows, collate, derive_seed, open_dataset
from avlib.losses.infonce import same_clip_mask
from avlib.losses.intra import intra_nce
from avlib.models.encoders import Embeddings
from avlib.samplers import SAMPLERS
from avlib.samplers.base import StepBatch
from avlib.samplers.intra import IntraDictionaries
from avlib.train import pretrain, read_metrics
from tiny import tiny_config

QUIET = dict(probe=False, tensorboard=False, snapshot_every=0, monitor_every=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return open_dataset(tiny_config(tmp_path_factory.mktemp("c")), progress=False)


def test_a_second_window_only_when_the_objective_needs_it_and_from_the_items_seed(cache, tmp_path):
    train = cache.select("train")
    cross = AVWindows(cache, train, tiny_config(tmp_path), train=True)
    joint = AVWindows(cache, train, tiny_config(tmp_path, objective="joint"), train=True)
    plain, both = cross[(2, 1234)], joint[(2, 1234)]
    assert "video2" not in plain and "video2" not in collate([plain, cross[(3, 5)]])  # cross reads no second window
    assert torch.equal(plain["video"], both["video"]) and torch.equal(plain["audio"], both["audio"])  # first unchanged
    assert both["video2"].shape == both["video"].shape and both["audio2"].shape == both["audio"].shape
    assert not torch.equal(both["video2"], both["video"]) and not torch.equal(both["audio2"], both["audio"])
    again = joint[(2, 1234)]  # a resumed run replays it: a function of (position, seed) only
    assert torch.equal(again["video2"], both["video2"]) and torch.equal(again["audio2"], both["audio2"])
    # drawn from derive_seed(item seed, SECOND_WINDOW_STREAM): the window another item would draw first
    video, audio, _ = joint._window(derive_seed(1234, SECOND_WINDOW_STREAM), 2, int(train[2]))
    assert torch.equal(video, both["video2"]) and torch.equal(audio, both["audio2"])
    assert not torch.equal(joint[(2, 1235)]["video2"], both["video2"])
    batch = collate([both, joint[(3, 5)]])
    assert batch["video2"].shape == (2, *both["video"].shape) and batch["audio2"].shape == (2, *both["audio"].shape)
    evaluation = AVWindows(cache, train, tiny_config(tmp_path, objective="joint"), train=False)
    assert "video2" not in evaluation[(0, 0)]  # probes read one window


def embeddings(rows: int, seed: int, dim: int = 8) -> Embeddings:
    g = torch.Generator().manual_seed(seed)
    video, audio = F.normalize(torch.randn(rows, dim, generator=g), dim=1), F.normalize(torch.randn(rows, dim, generator=g), dim=1)
    return Embeddings(video, audio, video, audio)


def test_intra_queues_are_fifo_per_modality_and_the_loss_scores_the_same_modality(tmp_path):
    intra = IntraDictionaries(tiny_config(tmp_path, dictionary_size=6, embedding_dim=8))
    clips = [torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 0, 6])]
    views = [embeddings(4, seed) for seed in (1, 2)]
    for step in range(2):
        batch = StepBatch(step=step, clip_index=clips[step], queries=embeddings(4, 10 + step), keys=embeddings(4, 20),
                          second_keys=views[step])
        if step == 1:  # the loss before the update: queue = step 0's 4 window-2 keys, same-clip key masked
            loss, diagnostics = intra.loss(batch)
            queue_clips = clips[0]
            expected, _ = intra_nce({m: getattr(batch.queries, m) for m in ("video", "audio")},
                                    {m: getattr(views[1], m) for m in ("video", "audio")},
                                    {m: getattr(views[0], m) for m in ("video", "audio")}, 0.07,
                                    {m: same_clip_mask(clips[1], queue_clips) for m in ("video", "audio")})
            assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
            assert diagnostics["intra_uniform_loss"] < torch.log(torch.tensor(8.0)).item()  # clip 0's stale key masked
            # a video query never meets audio keys: scoring it against the audio queue gives another loss
            swapped = StepBatch(step=1, clip_index=clips[1], queries=batch.queries, keys=batch.keys,
                                second_keys=Embeddings(views[1].audio, views[1].video, views[1].audio, views[1].video))
            assert intra.loss(swapped)[0].item() != pytest.approx(loss.item(), rel=1e-3)
        row = intra.update(batch)
        assert row == {"intra_video_keys": min(6, 4 * (step + 1)), "intra_audio_keys": min(6, 4 * (step + 1))}
    # FIFO: slots 0-3 step 0's keys, then step 1's wrap around: slots 4, 5, 0, 1
    assert intra.video_queue.clip_index.tolist() == [0, 6, 2, 3, 4, 5]
    torch.testing.assert_close(intra.video_queue.keys[[4, 5, 0, 1]], views[1].video)
    torch.testing.assert_close(intra.audio_queue.keys[[2, 3]], views[0].audio[2:])
    with pytest.raises(ValueError, match="needs StepBatch.second_keys"):
        intra.loss(StepBatch(step=2, clip_index=clips[0], queries=views[0], keys=views[0]))


@pytest.mark.parametrize("bad, message", [(dict(objective="both"), r"objective='both' is not valid; valid choices"),
                                          (dict(intra_weight=0.0), r"intra_weight=0.0 must be > 0")])
def test_bad_objective_parameters_name_themselves(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, **bad)


def crash_after(monkeypatch, step: int) -> None:
    """The run dies (an exception out of the loop) right after writing metrics row ``step``."""
    original = run_folder.MetricsLog.write

    def write_then_die(self, row):
        original(self, row)
        if row["step"] == step:
            raise RuntimeError("killed")

    monkeypatch.setattr(run_folder.MetricsLog, "write", write_then_die)


def test_the_losses_per_objective_and_a_joint_run_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    cfg = dict(sampler="random", epochs=3, checkpoint_every=4, intra_weight=0.5, **QUIET)
    reference = pretrain(tiny_config(tmp_path / "joint", objective="joint", **cfg))
    rows = read_metrics(tmp_path / "joint")
    assert reference["objective"] == "joint" and len(rows) == reference["steps"] >= 8
    for row in rows:  # the optimiser's loss: cross + 0.5 x intra
        assert row["loss"] == pytest.approx(row["cross_loss"] + 0.5 * row["intra_loss"], rel=1e-6)
        assert row["intra_loss"] == pytest.approx(0.5 * (row["intra_video_loss"] + row["intra_audio_loss"]), rel=1e-6)
    state = torch.load(tmp_path / "joint" / "checkpoints" / "last.pt", weights_only=False)
    assert int(state["intra"]["video_queue.count"]) == reference["steps"] * 4  # every step's 4 window-2 keys
    intra_rows = read_metrics(tmp_path / "intra") if pretrain(tiny_config(tmp_path / "intra", objective="intra",
                                                                          max_steps=3, **cfg)) else []
    assert all(row["loss"] == row["intra_loss"] for row in intra_rows)  # the control: intra terms alone
    assert [r["cross_loss"] for r in intra_rows] != [r["cross_loss"] for r in rows[:3]]  # the cross term untrained

    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        crash_after(patch, 5)
        with pytest.raises(RuntimeError, match="killed"):
            pretrain(tiny_config(killed, objective="joint", **cfg))
    assert max(r["step"] for r in read_metrics(killed)) == 5  # rows after the step-4 checkpoint exist
    emptied = tmp_path / "emptied"  # control: the same checkpoint with its intra queues emptied
    shutil.copytree(killed, emptied)
    tiny_config(emptied, objective="joint", **cfg).save(emptied / "config.json")  # the copy's own run_dir
    state = torch.load(emptied / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 4 and int(state["intra"]["audio_queue.count"]) == 16
    for modality in ("video", "audio"):
        state["intra"][f"{modality}_queue.count"].zero_()
        state["intra"][f"{modality}_queue.pointer"].zero_()
    torch.save(state, emptied / "checkpoints" / "last.pt")

    resumed = pretrain(tiny_config(killed, objective="joint", **cfg))
    assert [r["loss"] for r in read_metrics(killed)] == [r["loss"] for r in rows]
    assert resumed["final_loss"] == reference["final_loss"]
    pretrain(tiny_config(emptied, objective="joint", **cfg))
    diverged = [r["loss"] for r in read_metrics(emptied)]
    assert diverged[:4] == [r["loss"] for r in rows[:4]] and diverged[4] != rows[4]["loss"]


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_joint_works_with_every_sampler_which_keeps_its_own_dictionaries(name, tmp_path):
    """The sampler's cross-modal loss and dictionaries, plus the intra term and queues, whatever the method."""
    pretrain(tiny_config(tmp_path / name, sampler=name, objective="joint", max_steps=3, **QUIET))
    rows = read_metrics(tmp_path / name)
    assert all(r["loss"] == pytest.approx(r["cross_loss"] + r["intra_loss"], rel=1e-6) for r in rows)
    assert all(0 < r["uniform_loss"] and 0 < r["intra_uniform_loss"] for r in rows)
    state = torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)
    assert int(state["intra"]["video_queue.count"]) == int(state["intra"]["audio_queue.count"]) == 3 * 4
    assert not any(key.startswith("intra") for key in state["sampler"])  # the sampler's state is its own
