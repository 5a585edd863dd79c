"""Streaming shards (avlib.data.sources.ShardBatches): the split by rank and worker, the seeded epoch
order and the mid-epoch resume, measured on what real DataLoader workers deliver (no decoding: the
windows are stand-ins that return the (position, seed) items they are asked for)."""

import textwrap

import numpy as np
import pytest
from torch.utils.data import DataLoader

from avlib.data.sources import SHARD_SHUFFLE_BLOCK, ShardBatches


class ItemsOnly:
    """Stands in for AVWindows: the item itself is the sample."""

    def __init__(self, count: int):
        self.indices = np.arange(count)

    def __getitem__(self, item):
        return item


class Shards:
    """Stands in for ShardedClips: ``count`` samples over shards of ``per_shard`` (the last one shorter)."""

    def __init__(self, count: int, per_shard: int):
        self.sample_shard = np.arange(count) // per_shard


def as_list(items):
    return list(items)


def delivered(count, per_shard, batch, steps, rank, world, workers, start=0, seed=0):
    """[(step, [(position, seed)])] in the order a DataLoader with ``workers`` processes yields them."""
    stream = ShardBatches(ItemsOnly(count), Shards(count, per_shard), batch, seed, steps, start,
                          shard=(rank, world), collate_batch=as_list)
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return list(zip(range(start, steps), (list(map(tuple, b)) for b in loader)))


@pytest.mark.parametrize("workers", [0, 2])
def test_one_epoch_over_two_ranks_and_two_workers_is_every_sample_once(workers):
    count, batch = 48, 8  # 48 samples in 5 shards of 10 (the last holds 8); 6 steps an epoch
    steps = count // batch
    seen = []
    for rank in range(2):
        got = delivered(count, 10, batch, steps, rank, 2, workers)
        assert [step for step, _ in got] == list(range(steps)), "every rank runs every step, in order"
        assert all(len(items) == batch // 2 for _, items in got), "every rank gets its share of every batch"
        seen += [position for _, items in got for position, _ in items]
    assert sorted(seen) == list(range(count))


def test_an_uneven_split_drops_only_the_incomplete_last_global_batch():
    count, batch = 50, 8  # 6 steps of 8: 48 samples read, 2 left for this epoch (others next epoch)
    seen = [p for rank in range(2) for _, items in delivered(count, 10, batch, 6, rank, 2, 0) for p, _ in items]
    assert len(seen) == len(set(seen)) == 48


def test_each_epoch_reads_the_shards_in_a_new_seeded_order_and_ranks_read_contiguous_shards():
    stream = ShardBatches(ItemsOnly(100), Shards(100, 10), 10, 0, 30, shard=(0, 1))
    first, second = stream.epoch_sequence(0), stream.epoch_sequence(1)
    assert sorted(first) == sorted(second) == list(range(100))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, ShardBatches(ItemsOnly(100), Shards(100, 10), 10, 0, 30).epoch_sequence(0))
    assert not np.array_equal(first, ShardBatches(ItemsOnly(100), Shards(100, 10), 10, 1, 30).epoch_sequence(0))
    # a rank's share of an epoch comes from about 1/W of the shards (contiguous in the epoch's shard order)
    ranks = [ShardBatches(ItemsOnly(100), Shards(100, 10), 10, 0, 30, shard=(r, 2)).rank_share(0) for r in range(2)]
    shards = [set(np.asarray(share) // 10) for share in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 and not shards[0] & shards[1]


def test_the_local_shuffle_stays_inside_its_block():
    count = 3 * SHARD_SHUFFLE_BLOCK
    stream = ShardBatches(ItemsOnly(count), Shards(count, SHARD_SHUFFLE_BLOCK), 64, 0, 10)
    order, share = stream.epoch_sequence(0), stream.rank_share(0)
    for begin in range(0, count, SHARD_SHUFFLE_BLOCK):  # one shard per block here
        block = share[begin:begin + SHARD_SHUFFLE_BLOCK]
        assert sorted(block) == sorted(order[begin:begin + SHARD_SHUFFLE_BLOCK]), "the block keeps its samples"
        assert not np.array_equal(block, order[begin:begin + SHARD_SHUFFLE_BLOCK]), "shuffled within the block"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resume_mid_epoch_starts_at_the_same_sample(workers):
    count, batch, steps = 40, 4, 25  # 10 steps an epoch: resume at step 13, in the second epoch
    whole = delivered(count, 7, batch, steps, 0, 1, workers)
    resumed = delivered(count, 7, batch, steps, 0, 1, workers, start=13)
    assert resumed == whole[13:]
    # and the key sequence is not trivially the same for another seed (the test can fail)
    assert delivered(count, 7, batch, steps, 0, 1, 0, start=13, seed=1) != whole[13:]


def test_sample_seeds_are_the_step_batches_seeds():
    """A sample's augmentation seed is (seed, step, global slot): the same rule as the cache's StepBatches."""
    from avlib.data.dataset import SAMPLE_STREAM, derive_seed

    items = ShardBatches(ItemsOnly(16), Shards(16, 4), 4, 3, 8, shard=(1, 2)).batch(5)
    assert [seed for _, seed in items] == [derive_seed(3, SAMPLE_STREAM, 5, slot) for slot in (2, 3)]


KILL_AFTER_STEP = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import avlib.train.run_folder as run_folder
    from avlib.train import pretrain
    from tiny import tiny_config

    original_write = run_folder.MetricsLog.write
    def write_then_die(self, row):
        original_write(self, row)
        if row["step"] == 3:  # after the step-2 checkpoint, inside the second epoch: then SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)
    run_folder.MetricsLog.write = write_then_die
    pretrain(tiny_config({run_dir!r}, dataset={shards!r}, num_workers=2, **{settings!r}))
""")


def test_a_run_from_shards_killed_mid_epoch_reads_the_same_samples_after_resuming(tmp_path):
    """End to end: the same batches (``batch_digest``, the global batch's clips in slot order) and losses
    as an uninterrupted run, though the killed run streams with 2 loader workers and the other with none."""
    import multiprocessing
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from avlib.data.dataset import resolve_manifest
    from avlib.data.shards import write_shards
    from avlib.train import pretrain, read_metrics
    from tiny import tiny_config

    settings = dict(epochs=3, checkpoint_every=2, probe=False, tensorboard=False, snapshot_every=0, monitor_every=0)
    shards = tmp_path / "shards"
    write_shards(resolve_manifest(tiny_config(tmp_path / "x"), progress=False), shards, samples_per_shard=4,
                 min_duration_s=1.0, progress=False)
    pretrain(tiny_config(tmp_path / "whole", dataset=str(shards), num_workers=0, **settings))
    whole = read_metrics(tmp_path / "whole")
    assert len(whole) >= 6 and whole[0]["epoch"] == 0 and whole[3]["epoch"] == 1, "3 steps an epoch, 2 epochs at least"
    killed = tmp_path / "killed"
    script = KILL_AFTER_STEP.format(tests=str(Path(__file__).parent), run_dir=str(killed), shards=str(shards),
                                    settings=settings)
    process = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    pretrain(tiny_config(killed, dataset=str(shards), num_workers=2, **settings))
    assert not multiprocessing.active_children()  # the loader's workers stopped with the run (SlotLoader.close)
    resumed = read_metrics(killed)
    assert [r["batch_digest"] for r in resumed] == [r["batch_digest"] for r in whole]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]
    # the control: the epochs really read different orders (a digest that never changed would pass anyway)
    assert len({r["batch_digest"] for r in whole}) == len(whole)
