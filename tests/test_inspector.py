"""The negative inspector's data: given a run folder (or a snapshot) and a query, the ranked list is right."""

import math

import numpy as np
import pytest
import torch

from avlib.analysis.inspector import frame_strip, inspect_query, negative_inspector, rank_negatives, wav_bytes
from avlib.analysis.runs import open_run_dataset
from avlib.dictionary.snapshots import read_snapshot, write_snapshot
from avlib.train import pretrain
from tiny import tiny_config


def _unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


@pytest.fixture
def built_snapshot(tmp_path):
    """Queries are clips 10 (class 0) and 11 (class 1); the video dictionary holds 5 keys, one of them
    a stale copy of clip 10 itself."""
    video_keys = _unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0], [1, 0, 0.01])
    video = {"keys": video_keys, "clip_index": torch.tensor([1, 2, 3, 4, 10]), "step_added": torch.tensor([5, 6, 7, 8, 8]),
             "queries": _unit([1, 0, 0], [0, 1, 0]), "batch_keys": _unit([0, 0, 1], [0, 1, 0])}
    audio = {"keys": _unit([0, 0, 1]), "clip_index": torch.tensor([3]), "step_added": torch.tensor([8]),
             "queries": _unit([1, 0, 0], [0, 0, 1]), "batch_keys": _unit([0.8, 0.6, 0], [0, 1, 0])}
    write_snapshot(tmp_path, 9, torch.tensor([10, 11]), {"video": video, "audio": audio})
    labels = np.zeros(12, dtype=np.int64)
    labels[[3, 11]] = 1
    labels[4] = 2
    return read_snapshot(tmp_path), labels


def test_audio_query_ranks_video_keys_by_similarity_without_its_own_clip(built_snapshot):
    snapshot, labels = built_snapshot
    view = rank_negatives(snapshot, "audio", 10, labels, temperature=1.0, top_k=10)
    # audio query of clip 10 = (1, 0, 0); clip 10's own video key is masked
    assert [n.clip_index for n in view.negatives] == [1, 2, 3, 4]
    assert [n.rank for n in view.negatives] == [1, 2, 3, 4]
    assert view.num_negatives == 4 and view.label == 0
    assert [n.same_class for n in view.negatives] == [True, True, False, False]
    assert view.same_class_share == pytest.approx(0.5)
    assert [n.age for n in view.negatives] == [4, 3, 2, 1]
    # softmax over [positive ; 4 negatives] at temperature 1: positive = audio query . video batch key (0, 0, 1) = 0
    sims = np.array([1.0, 0.9 / math.hypot(0.9, 0.1), 0.0, -1.0])
    expected = np.exp(sims) / (np.exp(0.0) + np.exp(sims).sum())
    assert np.allclose([n.similarity for n in view.negatives], sims, atol=2e-3)
    assert np.allclose([n.weight for n in view.negatives], expected, atol=2e-3)
    assert view.positive_weight == pytest.approx(1 / (1 + np.exp(sims).sum()), abs=2e-3)
    # without masking, the stale copy of the query's own clip is a negative too (cosine 0.99995)
    unmasked = rank_negatives(snapshot, "audio", 10, labels, temperature=1.0, mask_same_clip=False, top_k=10)
    assert [n.clip_index for n in unmasked.negatives] == [1, 10, 2, 3, 4] and unmasked.num_negatives == 5


def test_filters_keep_the_full_ranking_and_top_k_cuts(built_snapshot):
    snapshot, labels = built_snapshot
    assert [n.clip_index for n in rank_negatives(snapshot, "audio", 10, labels, 1.0, top_k=2).negatives] == [1, 2]
    other = rank_negatives(snapshot, "audio", 10, labels, 1.0, top_k=10, class_filter="other").negatives
    assert [(n.clip_index, n.rank) for n in other] == [(3, 3), (4, 4)]
    assert [n.clip_index for n in rank_negatives(snapshot, "audio", 10, labels, 1.0, class_filter="same").negatives] == [1, 2]
    assert [n.clip_index for n in rank_negatives(snapshot, "audio", 10, labels, 1.0, class_filter=2).negatives] == [4]
    with pytest.raises(ValueError, match="class_filter"):
        rank_negatives(snapshot, "audio", 10, labels, 1.0, class_filter="nope")


def test_video_query_meets_the_audio_dictionary_and_unknown_queries_are_named(built_snapshot):
    snapshot, labels = built_snapshot
    view = rank_negatives(snapshot, "video", 11, labels, temperature=0.5)
    assert [n.clip_index for n in view.negatives] == [3] and view.negatives[0].similarity == pytest.approx(0.0, abs=1e-3)
    assert view.positive_similarity == pytest.approx(1.0, abs=1e-3)  # video query (0,1,0) . audio batch key (0,1,0)
    with pytest.raises(KeyError, match=r"queries are clips \[10, 11\]"):
        rank_negatives(snapshot, "video", 5, labels, 1.0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspector")
    for sampler in ("random", "active"):
        pretrain(tiny_config(folder / sampler, sampler=sampler, epochs=3, snapshot_every=3, probe=False))
    return folder / "random", folder / "active"


def test_inspect_query_on_a_run_folder_matches_a_brute_force_ranking(two_runs):
    run_dir = two_runs[0]
    snapshot = read_snapshot(run_dir)
    labels = np.asarray(open_run_dataset(run_dir).labels)
    query = int(snapshot.batch_clip_index[1])
    view = inspect_query(run_dir, -1, "audio", query, top_k=100)
    # brute force in numpy from the raw arrays
    q = snapshot["audio"].queries[1].astype(np.float64)
    keys = snapshot["video"].keys.astype(np.float64)
    clips = snapshot["video"].clip_index
    keep = clips != query
    sims = keys[keep] @ q
    order = np.argsort(-sims, kind="stable")
    assert [n.clip_index for n in view.negatives] == clips[keep][order].tolist()
    logits = np.concatenate([[q @ snapshot["video"].batch_keys[1].astype(np.float64)], sims]) / 0.07
    weights = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose([n.weight for n in view.negatives], weights[1:][order], rtol=1e-3, atol=1e-7)
    assert [n.label for n in view.negatives] == labels[clips[keep][order]].tolist()


def test_widget_lists_other_negatives_for_another_query_and_toggles_the_sampler(two_runs):
    inspector = negative_inspector(two_runs, step=-1, query_modality="audio", top_k=4)
    first_query, first = inspector.query_picker.value, inspector.shown()
    assert first == [n.clip_index for n in inspect_query(two_runs[0], -1, "audio", first_query, top_k=4).negatives]
    inspector.query_picker.value = inspector.query_picker.options[2][1]
    assert inspector.view.clip_index == inspector.query_picker.options[2][1]
    assert inspector.shown() == [n.clip_index for n in inspect_query(two_runs[0], -1, "audio", inspector.view.clip_index,
                                                                      top_k=4).negatives]
    query = inspector.view.clip_index
    inspector.run_picker.value = 1  # the active run: same seed, same batch, so the same query clip
    assert inspector.view.clip_index == query
    assert inspector.shown() == [n.clip_index for n in inspect_query(two_runs[1], -1, "audio", query, top_k=4).negatives]
    inspector.class_picker.value = "same"
    assert all(n.same_class for n in inspector.view.negatives)
    assert len(inspector.negatives_box.children) >= 1


def test_media_helpers():
    video = np.random.default_rng(0).integers(0, 255, (16, 8, 10, 3), dtype=np.uint8)
    strip = frame_strip(video, 4)
    assert strip.shape == (8, 40, 3) and (strip[:, :10] == video[0]).all() and (strip[:, 30:] == video[15]).all()
    data = wav_bytes(np.sin(np.linspace(0, 100, 800)).astype(np.float32), 8000)
    assert data[:4] == b"RIFF" and len(data) == 44 + 2 * 800


def test_without_a_kernel_readers_see_a_note_and_a_static_rendering_of_the_first_query(two_runs):
    """In place of the widget, a reader without the kernel (nbconvert's HTML export, a stored executed
    notebook) shows its fallback, which says it needs a live kernel; :meth:`static_view` is a separate
    output with the query and its listed negatives, the widget's own frame strips and spectrograms as
    inline PNGs, same-class negatives in red, shown by nbconvert even where the notebook stores the
    widget's state (papermill's executed copies do; nbconvert then draws the widget from a script that
    needs the network).  Control: without the static output, the export has no image at all."""
    import base64
    import html
    import io
    import re

    import nbformat
    from nbconvert import HTMLExporter
    from PIL import Image

    from avlib.analysis.inspector import LIVE_KERNEL_NOTE, SAME_CLASS_COLOUR

    inspector = negative_inspector(two_runs, step=-1, query_modality="audio", top_k=4)
    bundle = inspector._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # a live front end still draws the widget
    assert LIVE_KERNEL_NOTE in html.unescape(bundle["text/html"]) and "needs a live kernel" in bundle["text/plain"]
    static = inspector.static_view().data
    assert LIVE_KERNEL_NOTE in html.unescape(static)
    rows = re.findall(r"<div class='avlib-static-row' data-clip='(\d+)'.*?</div>(<img.*?>)(<img.*?>)</div>", static)
    assert [int(clip) for clip, _, _ in rows] == [inspector.view.clip_index] + inspector.shown()
    def decoded(tag):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(re.search(r"base64,([^']+)'", tag)[1]))), dtype=float)

    images = [inspector.clip_images(int(clip)) for clip, _, _ in rows]
    for (clip, frames, spectrogram), own, other in zip(rows, images, images[1:] + images[:1]):
        for tag, mine, theirs in ((frames, own[0], other[0]), (spectrogram, own[1], other[1])):
            shown = decoded(tag)  # the clip's own strip and spectrogram, up to JPEG's loss
            assert shown.shape == mine.shape and np.abs(shown - mine).mean() < 12.0  # of 255
            assert np.abs(shown - mine).mean() < np.abs(shown - theirs).mean()  # another clip's differ more
    colours = re.findall(r"data-clip='\d+' [^>]*><div style='width:230px;font-size:12px;color:([^']+)'", static)[1:]
    assert [c == SAME_CLASS_COLOUR for c in colours] == [n.same_class for n in inspector.view.negatives]
    inspector.class_picker.value = "same"  # only the biased keys: every listed row is marked
    same_rows = re.findall(r"color:([^']+)'>#\d+ clip", inspector.static_html())
    assert len(same_rows) == len(inspector.shown()) and set(same_rows) <= {SAME_CLASS_COLOUR}
    inspector.class_picker.value = "all"

    def exported(*outputs, widget_state=True):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[
            nbformat.v4.new_output("display_data", data=data) for data in outputs])])
        if widget_state:  # as papermill stores it: the view's model is in the notebook's widget state
            model = bundle["application/vnd.jupyter.widget-view+json"]["model_id"]
            notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
                "state": {model: {"model_name": "VBoxModel", "model_module": "@jupyter-widgets/controls",
                                  "model_module_version": "2.0.0", "state": {}}}, "version_major": 2, "version_minor": 0}}
        return HTMLExporter().from_notebook_node(notebook)[0]

    image_tags = r"src=[\"']data:image/jpeg;base64,"
    for state in (True, False):
        page = exported(bundle, {"text/html": static}, widget_state=state)
        assert "needs a live kernel" in page
        assert len(re.findall(image_tags, page)) == 2 * (1 + len(inspector.shown()))
    assert "needs a live kernel" in exported(bundle, widget_state=False)  # the fallback, where the widget was
    assert not re.findall(image_tags, exported(bundle)) and not re.findall(image_tags, exported(bundle, widget_state=False))
