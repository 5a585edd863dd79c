"""A shared random-init baseline (``random_init_cache``): runs of one seed that differ only in what they
train reuse one computation, and what they reuse equals what they would have computed; another seed
(other initial weights) computes its own."""

import json

from avlib.train.launch import pretrain
from tiny import tiny_config

FAST = dict(max_steps=2, snapshot_every=0, monitor_every=0, tensorboard=False)


def test_runs_of_one_seed_share_their_random_init_baseline(tmp_path):
    cache = tmp_path / "random_init"
    first = pretrain(tiny_config(tmp_path / "random", sampler="random", random_init_cache=str(cache), **FAST))
    assert len(list(cache.glob("*.json"))) == 1
    # another method, dictionary size, optimisation and objective (momentum, learning rate, epochs, shuffled
    # key BN, joint): the same encoders at init, the same probe inputs -> read from the cache (a sentinel put
    # there shows it was read, not computed again)
    shared_file = next(cache.glob("*.json"))
    shared = json.loads(shared_file.read_text())
    shared["probes"]["video"]["linear"] = -1.0
    shared_file.write_text(json.dumps(shared))
    second = pretrain(tiny_config(tmp_path / "active", sampler="active", dictionary_size=12,
                                  momentum=0.999, lr=1e-3, epochs=3, shuffle_bn=True, key_bn_groups=2,
                                  objective="joint", random_init_cache=str(cache), **FAST))
    assert len(list(cache.glob("*.json"))) == 1
    assert second["probe_random_init"]["video"]["linear"] == -1.0
    # what it would have computed: the same run without the cache gets the first run's baseline exactly
    alone = pretrain(tiny_config(tmp_path / "active_alone", sampler="active", dictionary_size=12,
                                 momentum=0.999, lr=1e-3, epochs=3, shuffle_bn=True, key_bn_groups=2,
                                 objective="joint", **FAST))
    assert alone["probe_random_init"] == first["probe_random_init"]
    # another seed draws other weights: its own baseline
    pretrain(tiny_config(tmp_path / "seed1", sampler="random", seed=1, random_init_cache=str(cache), **FAST))
    assert len(list(cache.glob("*.json"))) == 2
