"""The embedded dataset's structure parameters: faulty pairs in train only, class imbalance, clips
per source, onsets without synchrony, 50 classes; the defaults reproduce the balanced dataset; the
redundancy each puts into a random dictionary, measured against the balanced control."""
import csv
import dataclasses
import hashlib
import json
from collections import Counter

import numpy as np
import pytest

import avlib.data.synthetic as syn
from avlib.config import ConfigError, DataConfig, PretrainConfig
from avlib.data.dataset import embedded_spec
from avlib.data.structure import class_entropy, random_dictionary_redundancy
from avlib.data.synthetic import SyntheticSpec


def _rows(spec):
    return list(csv.DictReader(syn._manifest_text(spec).splitlines()))


def test_defaults_keep_the_hash_and_layout_of_the_balanced_dataset():
    spec = SyntheticSpec()
    old_fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in syn._LATER_FIELDS}
    old = json.dumps({"format_version": syn.FORMAT_VERSION, "spec": old_fields}, sort_keys=True)
    assert syn.spec_hash(spec) == hashlib.sha256(old.encode()).hexdigest()  # cached datasets stay valid
    classes, sources, splits = syn._layout(spec)
    np.testing.assert_array_equal(classes, np.arange(1200) // 120)
    np.testing.assert_array_equal(sources, np.arange(1200))
    assert splits == syn._splits(spec) and "group" not in _rows(spec)[0]
    for name in ("class_imbalance", "clips_per_source", "av_sync"):
        assert syn.spec_hash(dataclasses.replace(spec, **{name: {"class_imbalance": 2.0, "clips_per_source": 2,
                                                                 "av_sync": False}[name]})) != syn.spec_hash(spec)
    assert embedded_spec(PretrainConfig(class_imbalance=4.0, clips_per_source=3, av_sync=False)) == SyntheticSpec(
        class_imbalance=4.0, clips_per_source=3, av_sync=False)


def test_faulty_pairs_stay_in_the_train_split():
    spec = SyntheticSpec(num_classes=4, clips_per_class=20, faulty_pair_rate=0.5)
    rows = _rows(spec)
    train = [r for r in rows if r["split"] == "train"]
    bad = [r for r in rows if r["corrupted"] == "1"]
    assert len(bad) == round(0.5 * len(train)) and all(r["split"] == "train" for r in bad)
    lenders = {r["audio_source"] for r in bad}
    assert lenders <= {r["clip_id"] for r in train}  # no val/test sound is heard in pretraining
    assert all(r["audio_source"] == r["clip_id"] for r in rows if r["split"] != "train")


def test_class_imbalance_makes_a_geometric_long_tail_in_train_and_keeps_val_and_test_balanced():
    spec = SyntheticSpec(num_classes=10, clips_per_class=120, class_imbalance=20.0)
    per = Counter((r["label"], r["split"]) for r in _rows(spec))
    names = [syn.class_attributes(k)["name"] for k in range(10)]
    train = np.array([per[(n, "train")] for n in names])
    assert train[0] == 72 and train[-1] == round(72 / 20) and (np.diff(train) <= 0).all()
    ratios = train[:-1] / train[1:]
    assert np.allclose(ratios[:6], 20 ** (1 / 9), rtol=0.1)  # geometric (rounding aside)
    assert {per[(n, "val")] for n in names} == {12} and {per[(n, "test")] for n in names} == {36}


def test_clips_of_one_source_share_look_and_sound_and_one_split():
    spec = SyntheticSpec(num_classes=3, clips_per_class=20, clips_per_source=4, duration_s=1.0, frame_size=32)
    rows = _rows(spec)
    groups: dict[str, list] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r["group"], []).append(i)
    assert max(len(g) for g in groups.values()) == 4
    for members in groups.values():
        assert len({rows[i]["split"] for i in members}) == 1 and len({rows[i]["label"] for i in members}) == 1
    a, b = (syn.plan_clip(spec, i) for i in groups[rows[0]["group"]][:2])
    other = syn.plan_clip(spec, groups[rows[5]["group"]][0])
    assert a.source == b.source != other.source
    for key in ("background_colour", "object_colour", "radius", "grating"):
        np.testing.assert_array_equal(a.visual[key], b.visual[key])
        assert not np.array_equal(a.visual[key], other.visual[key])
    assert a.audio["f0"] == b.audio["f0"] != other.audio["f0"] and a.audio["tilt"] == b.audio["tilt"]
    assert not np.array_equal(a.events, b.events) and a.visual["phase"] != b.visual["phase"]


def test_without_sync_sound_onsets_are_drawn_apart_from_the_visual_events():
    synced, free = SyntheticSpec(duration_s=3.0), SyntheticSpec(duration_s=3.0, av_sync=False)
    gaps = {True: [], False: []}
    for spec in (synced, free):
        for i in range(0, 1200, 97):
            plan = syn.plan_clip(spec, i)
            onsets = plan.events if plan.audio_events is None else plan.audio_events
            inside = onsets[(onsets > 0) & (onsets < 3)]
            gaps[spec.av_sync].append(np.abs(inside[:, None] - plan.events[None]).min(1))
            if not spec.av_sync:  # same class tempo: the onset rate matches the event rate
                assert abs(np.diff(onsets).mean() / np.diff(plan.events).mean() - 1) < 0.15
    assert np.concatenate(gaps[True]).max() == 0.0
    assert np.median(np.concatenate(gaps[False])) > 0.03  # the control above: exactly 0
    # the visual stream of an unsynchronised clip is the synchronised one's
    np.testing.assert_array_equal(syn.plan_clip(free, 3).events, syn.plan_clip(synced, 3).events)


def test_fifty_classes_have_distinct_definitions_and_render():
    spec = SyntheticSpec(num_classes=50, clips_per_class=1, duration_s=0.5, frame_size=32)
    table = syn.describe_classes(spec)
    assert len({c["name"] for c in table}) == 50
    assert len({(c["shape"], c["motion"]) for c in table}) == 50
    assert len({(c["timbre"], c["rhythm"], c["period_s"]) for c in table}) == 50
    frames = syn.render_video(spec, syn.plan_clip(spec, 49))
    assert frames.shape == (4, 32, 32, 3) and frames.std() > 5
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpec(num_classes=51)
    with pytest.raises(ConfigError, match="num_classes"):
        DataConfig(num_classes=51)
    with pytest.raises(ConfigError, match="class_imbalance"):
        PretrainConfig(class_imbalance=0.5)


def test_redundancy_of_a_random_dictionary_against_the_balanced_control():
    def measure(**kw):
        classes, sources, splits = syn._layout(SyntheticSpec(**kw))
        train = np.asarray(splits) == "train"
        return random_dictionary_redundancy(classes[train], sources[train], steps=100)

    balanced, imbalanced, sourced = measure(), measure(class_imbalance=20.0), measure(clips_per_source=8)
    assert balanced["entropy_ratio"] > 0.99 and balanced["unique_source_share"] > 0.95
    assert imbalanced["entropy_ratio"] < 0.9  # measured 0.845 (README)
    assert sourced["unique_source_share"] < 0.5  # measured 0.341
    assert class_entropy(np.array([0, 0, 1, 1])) == pytest.approx(np.log(2))


def test_probes_train_on_clean_clips_and_test_on_a_clean_split(tmp_path):
    from avlib.data.dataset import open_dataset
    from avlib.eval.probe import probe_clips
    from tiny import tiny_config

    cache = open_dataset(tiny_config(tmp_path, faulty_pair_rate=0.5), progress=False)
    corrupted = cache.column("corrupted")
    train = cache.select("train")
    assert corrupted[train].sum() == round(0.5 * len(train)) > 0  # the pretraining data keeps them
    kept = probe_clips(cache, "train")
    assert len(kept) == len(train) - corrupted[train].sum() and not corrupted[kept].any()
    for split in ("val", "test"):
        np.testing.assert_array_equal(probe_clips(cache, split), cache.select(split))
        assert not corrupted[cache.select(split)].any()


def test_notebook_plots_of_class_frequencies_and_sources():
    import matplotlib

    matplotlib.use("Agg")
    from avlib.analysis.plots import (plot_class_frequencies, plot_clips_per_source, same_source_clips,
                                      source_sizes)

    classes, sources, splits = syn._layout(SyntheticSpec(num_classes=4, clips_per_class=20, class_imbalance=4.0,
                                                         clips_per_source=3))
    names = [syn.class_attributes(k)["name"] for k in range(4)]
    fig, counts = plot_class_frequencies(classes, np.asarray(splits), names)
    assert counts["train"][0] / counts["train"][-1] == 4 and len(set(counts["test"])) == 1
    assert len(fig.axes[0].patches) == 12  # 4 classes x 3 splits
    assert source_sizes(sources).max() == 3 and source_sizes(np.arange(5)).tolist() == [1] * 5
    plot_clips_per_source(sources)
    shown = same_source_clips(sources, 3)
    assert len(shown) == 3 and len(set(sources[shown])) == 1
