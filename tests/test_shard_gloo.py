"""The shard split on a real process group: 2 gloo ranks, each reading its share of a shard folder
through the training loop's own loader (:func:`avlib.train.loop.step_loader`) with 2 DataLoader
workers, for one epoch.  The union over ranks and workers must be every training sample exactly
once, and every rank must run the same number of steps (a rank with fewer steps would hang the
others in their next all-reduce).  ``tests/test_shard_stream.py`` checks the same split with the
ranks emulated by ``ShardBatches(shard=...)``; here the rank and the world size come from
``torch.distributed`` as a torchrun launch sets them (:func:`avlib.train.distributed.start`).
"""

import multiprocessing
import os
import socket
import traceback
from types import SimpleNamespace

import pytest

from tiny import tiny_config

WORLD_SIZE, WORKERS, BATCH = 2, 2, 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def collate_with_pid(items, stack=None):
    """The training collate, plus the DataLoader worker process that built the batch."""
    from avlib.data.dataset import collate

    return collate(items, stack=stack) | {"worker_pid": os.getpid()}


def one_rank(rank: int, port: int, shards: str, run_dir: str, results) -> None:
    """Join the gloo group from torchrun's environment variables, read one epoch, report what was read."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        import torch.distributed as dist

        import avlib.train.loop as loop
        from avlib.data.sources import open_clips
        from avlib.train import distributed
        from avlib.train.loop import step_loader

        world, device = distributed.start("cpu")
        assert dist.is_initialized() and dist.get_backend() == "gloo" and world.rank == dist.get_rank()
        cfg = tiny_config(run_dir, dataset=shards, num_workers=WORKERS, batch_size=BATCH)
        clips = open_clips(cfg, progress=False)
        train = clips.select("train")
        steps = len(train) // BATCH  # one epoch
        loop.collate = collate_with_pid  # the collate step_loader wraps in its slots, read when it builds the loader
        training = SimpleNamespace(cfg=cfg, world=world, device=device, total_steps=steps,
                                   sampler=SimpleNamespace(extra_candidates=lambda: 0))
        loader = step_loader(training, clips, train, 0)
        read = [(batch["clip_index"].tolist(), batch["worker_pid"]) for batch in loader]
        assert (loader.batches_in_slots, loader.batches_handed) == (len(read), 0), "every batch in its worker's slot"
        counts = [None] * WORLD_SIZE
        dist.all_gather_object(counts, len(read))  # over gloo: what every rank learns of the others
        results.put({"rank": rank, "read": read, "steps_of_every_rank": counts, "epoch_steps": steps,
                     "train": [int(c) for c in train], "main_pid": os.getpid()})
        distributed.stop(world)
    except BaseException:
        results.put({"rank": rank, "error": traceback.format_exc()})
        raise


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    """The tiny dataset's shards, with one of its 15 training rows moved to "val": 14 training samples,
    7 whole global batches of 2, so one epoch reads every training sample (none left for the next)."""
    import csv

    from avlib.data.dataset import resolve_manifest
    from avlib.data.shards import write_shards

    root = tmp_path_factory.mktemp("gloo-shards")
    source = resolve_manifest(tiny_config(root / "x"), progress=False)
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["path"] = str(source.parent / row["path"])
    next(row for row in rows if row["split"] == "train")["split"] = "val"
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shards = root / "shards"
    write_shards(manifest, shards, samples_per_shard=3, min_duration_s=1.0, progress=False)
    return shards


@pytest.mark.scaleout  # 2 fresh interpreters importing avlib.train (~10 s CPU each) + 4 workers: 142 s at load 5-9
def test_two_gloo_ranks_with_two_workers_each_read_every_training_sample_once(shard_folder, tmp_path):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as torchrun starts them
    results = context.Queue()
    port = free_port()
    ranks = [context.Process(target=one_rank, args=(rank, port, str(shard_folder), str(tmp_path / f"r{rank}"),
                                                    results)) for rank in range(WORLD_SIZE)]
    for process in ranks:
        process.start()
    try:
        reports = sorted((results.get(timeout=600) for _ in ranks), key=lambda r: r["rank"])
        for process in ranks:
            process.join(timeout=60)
    finally:
        for process in ranks:  # a rank left waiting for a failed one
            if process.is_alive():
                process.kill()
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in ranks] == [0] * WORLD_SIZE

    train = reports[0]["train"]
    steps = reports[0]["epoch_steps"]
    assert len(train) == 14 and steps == 7, "an epoch of 7 whole global batches"
    for report in reports:
        assert report["steps_of_every_rank"] == [steps] * WORLD_SIZE, "every rank runs the same number of steps"
        assert len(report["read"]) == steps
        assert all(len(clips) == BATCH // WORLD_SIZE for clips, _ in report["read"]), "a rank's share of each batch"
        workers = {pid for _, pid in report["read"]}
        assert len(workers) == WORKERS and report["main_pid"] not in workers, "2 real worker processes built them"
    seen = [clip for report in reports for clips, _ in report["read"] for clip in clips]
    assert sorted(seen) == sorted(train), "the union over ranks and workers is every training sample once"
    # the control: the ranks read different samples (a loader that ignored the rank would read one share twice)
    shares = [{clip for clips, _ in report["read"] for clip in clips} for report in reports]
    assert not shares[0] & shares[1]
