"""An interactive inspector of the negatives a query met during training (ipywidgets).

Pick a run (i.e. a sampler), a snapshot step and a query clip of that step's batch; see and hear the
query and its top-k negatives in the other modality's dictionary, ranked by similarity, each with
its class, cosine similarity, softmax weight and age.  Everything shown comes from the snapshot
(``avlib.dictionary.snapshots``): the query embedding is the one the online encoder produced at that
step and the keys are the dictionary it was scored against, so the ranking is the one training saw.
With the same seed two runs (e.g. ``random`` and ``active``) see the same batches, so toggling the
run shows the other method's dictionary for the same query clip.

The data side (:func:`rank_negatives`, :func:`inspect_query`) is plain Python, tested without a
browser; :func:`negative_inspector` builds the widget on top of it.  The widget needs a live kernel:
without one (nbconvert's HTML export, a stored executed notebook) it is a blank area, or its text
fallback, which says so.  :meth:`NegativeInspector.static_view` is a separate output, the query the
widget shows as plain HTML with its frames and spectrograms as images, for those readers.
"""

from __future__ import annotations

import base64
import html
import io
import wave
from dataclasses import dataclass, field
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch

from avlib.analysis.runs import open_run_dataset, read_config, run_label
from avlib.data.augment import AudioTransform
from avlib.dictionary.diversity import negative_weights
from avlib.dictionary.snapshots import MODALITIES, Snapshot, read_snapshot, resolve_step, snapshot_steps

OTHER = {"video": "audio", "audio": "video"}
#: what an exported notebook says in place of the live widget
LIVE_KERNEL_NOTE = ("The negative inspector is an interactive widget: it needs a live kernel (open the notebook in "
                    "JupyterLab and run it) to be shown, to pick the sampler, step, query clip, class filter or "
                    "top-k, and to play the audio.")
#: colour of same-class (biased) negatives, in the widget and in its static rendering
SAME_CLASS_COLOUR = "#c0392b"
#: class filters besides a class index: every negative, the query's class only, the other classes
CLASS_FILTERS = ("all", "same", "other")
NO_MATCH = "no negative matches this filter"


@dataclass
class RankedNegative:
    rank: int  # 1 = the most similar of ALL the query's negatives (before any class filter)
    clip_index: int
    label: int
    same_class: bool
    similarity: float  # cosine q . k
    weight: float  # softmax weight over [positive ; negatives] / temperature
    age: int  # steps since the key entered the dictionary


@dataclass
class QueryView:
    """One query at one snapshot: its positive and its (filtered) top-k negatives."""

    step: int
    query_modality: str  # the query's modality; its negatives are keys of the other modality
    clip_index: int
    label: int
    positive_similarity: float
    positive_weight: float
    num_negatives: int  # unmasked dictionary keys scored against the query
    same_class_share: float  # share of those negatives with the query's class (its biased keys)
    negatives: list[RankedNegative] = field(default_factory=list)


def rank_negatives(snapshot: Snapshot, query_modality: str, query_clip: int, labels: np.ndarray, temperature: float,
                   mask_same_clip: bool = True, top_k: int = 8, class_filter: str | int = "all") -> QueryView:
    """The negatives of query clip ``query_clip`` (one of the snapshot's batch clips) ranked by similarity.

    ``labels``: (N,) class of every clip of the dataset.  Keys from the query's own clip are not
    negatives when ``mask_same_clip`` (as in training).  ``class_filter``: ``"all"``, ``"same"``
    (the query's class: biased keys), ``"other"`` or a class index; ranks stay those of the full list.
    """
    if query_modality not in MODALITIES:
        raise ValueError(f"query_modality={query_modality!r} is not valid; choose one of {MODALITIES}")
    positions = np.flatnonzero(snapshot.batch_clip_index == query_clip)
    if len(positions) == 0:
        raise KeyError(f"clip {query_clip} is not a query at step {snapshot.step}; "
                       f"that step's queries are clips {sorted(snapshot.batch_clip_index.tolist())}")
    row = int(positions[0])
    queries, dictionary = snapshot[query_modality], snapshot[OTHER[query_modality]]
    query = torch.as_tensor(queries.queries[row:row + 1], dtype=torch.float32)  # (1, D)
    positive = torch.as_tensor(dictionary.batch_keys[row:row + 1], dtype=torch.float32)  # (1, D)
    keys = torch.as_tensor(dictionary.keys, dtype=torch.float32)  # (K, D)
    key_clips = dictionary.clip_index
    masked = (key_clips == query_clip) if mask_same_clip else np.zeros(len(key_clips), dtype=bool)  # (K,)
    weights = negative_weights(query, positive, keys, temperature, torch.as_tensor(masked)[None, :])[0]  # (K,)
    similarity = (query @ keys.T)[0]  # (1, D) @ (D, K) -> (K,)
    positive_similarity = float((query * positive).sum())
    positive_weight = float(1.0 - weights.sum())

    query_label = int(labels[query_clip])
    key_labels = np.asarray(labels)[key_clips]  # (K,)
    order = [int(i) for i in torch.argsort(similarity, descending=True, stable=True) if not masked[int(i)]]
    ranked = [
        RankedNegative(rank=rank, clip_index=int(key_clips[i]), label=int(key_labels[i]),
                       same_class=bool(key_labels[i] == query_label), similarity=float(similarity[i]),
                       weight=float(weights[i]), age=int(snapshot.step - dictionary.step_added[i]))
        for rank, i in enumerate(order, start=1)
    ]
    if class_filter == "same":
        shown = [n for n in ranked if n.same_class]
    elif class_filter == "other":
        shown = [n for n in ranked if not n.same_class]
    elif class_filter == "all":
        shown = ranked
    elif isinstance(class_filter, (int, np.integer)):
        shown = [n for n in ranked if n.label == int(class_filter)]
    else:
        raise ValueError(f"class_filter={class_filter!r} is not valid; use {CLASS_FILTERS} or a class index")
    return QueryView(step=snapshot.step, query_modality=query_modality, clip_index=int(query_clip), label=query_label,
                     positive_similarity=positive_similarity, positive_weight=positive_weight,
                     num_negatives=len(ranked),
                     same_class_share=float(np.mean([n.same_class for n in ranked])) if ranked else float("nan"),
                     negatives=shown[:top_k])


def inspect_query(run_dir, step: int, query_modality: str, query_clip: int, top_k: int = 8,
                  class_filter: str | int = "all", labels: np.ndarray | None = None) -> QueryView:
    """:func:`rank_negatives` for a run folder (``step`` -1 = its last snapshot); ``labels`` default to
    the run's dataset."""
    cfg = read_config(run_dir)
    if labels is None:
        labels = np.asarray(open_run_dataset(run_dir).labels)
    return rank_negatives(read_snapshot(run_dir, step), query_modality, query_clip, labels, cfg.temperature,
                          cfg.mask_same_clip, top_k, class_filter)


# ----------------------------------------------------------------------------- media


def frame_strip(video: np.ndarray, count: int = 6) -> np.ndarray:
    """``count`` evenly spaced frames of a clip (T, H, W, 3) side by side: (H, count * W, 3) uint8."""
    picks = np.linspace(0, len(video) - 1, min(count, len(video))).round().astype(int)
    return np.concatenate([np.asarray(video[i]) for i in picks], axis=1)


def spectrogram_image(waveform: np.ndarray, sample_rate: int, n_mels: int, height: int = 64) -> np.ndarray:
    """The log-mel spectrogram the audio encoder sees, as an RGB image (magma colours), low bins at the bottom."""
    import matplotlib

    spec = AudioTransform(sample_rate, n_mels, train=False)(waveform)[0].numpy()  # (n_mels, frames)
    scaled = (spec - spec.min()) / max(float(spec.max() - spec.min()), 1e-6)
    rgb = (matplotlib.colormaps["magma"](scaled[::-1])[..., :3] * 255).astype(np.uint8)  # (n_mels, frames, 3)
    if rgb.shape[0] != height:  # nearest-row resize so every spectrogram has the same height
        rows = np.linspace(0, rgb.shape[0] - 1, height).round().astype(int)
        rgb = rgb[rows]
    return rgb


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG of an RGB image: what a stored static rendering embeds (a 64 px frame strip and its
    spectrogram take ~11 kB, against ~69 kB as PNG: the textured frames compress badly losslessly)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    """16-bit mono WAV of a float waveform (peak-normalised so quiet clips are audible)."""
    peak = float(np.abs(waveform).max()) or 1.0
    samples = (np.clip(np.asarray(waveform) / peak, -1, 1) * 32767 * 0.9).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(samples.tobytes())
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the widget


def negative_inspector(run_dirs, step: int = -1, query_modality: str = "audio", top_k: int = 6,
                       frames: int = 6):
    """The inspector widget (an ``ipywidgets.VBox``) over one or more run folders of the same dataset.

    Controls: run (the sampler), snapshot step, query modality, query clip (from that step's batch),
    class filter, top-k.  The returned widget's ``shown()`` gives the clip indices currently listed
    (tests and the browser test read it through the page's text).
    """
    return NegativeInspector([Path(r) for r in run_dirs], step, query_modality, top_k, frames)


class NegativeInspector(widgets.VBox):
    """The widget built by :func:`negative_inspector`."""

    def __init__(self, run_dirs: list[Path], step: int, query_modality: str, top_k: int, frames: int):
        if not run_dirs:
            raise ValueError("negative_inspector: run_dirs is empty; pass at least one run folder")
        if query_modality not in MODALITIES:
            raise ValueError(f"query_modality={query_modality!r} is not valid; choose one of {MODALITIES}")
        self.run_dirs, self.frames = run_dirs, frames
        self.configs = [read_config(r) for r in run_dirs]
        self.steps = [snapshot_steps(r) for r in run_dirs]
        for run_dir, steps in zip(run_dirs, self.steps):
            if not steps:
                raise FileNotFoundError(f"{run_dir}: no dictionary snapshots (snapshot_every=0?)")
        self.cache = open_run_dataset(run_dirs[0])
        for run_dir in run_dirs[1:]:
            if open_run_dataset(run_dir).path != self.cache.path:
                raise ValueError(f"{run_dir} trained on another dataset than {run_dirs[0]}; "
                                 "the inspector compares runs of one dataset")
        self.labels = np.asarray(self.cache.labels)
        self.class_names = list(self.cache.class_names)
        self._snapshots: dict[tuple[int, int], Snapshot] = {}
        self._media: dict[int, tuple[bytes, bytes, bytes]] = {}
        self.view: QueryView | None = None

        first_step = resolve_step(run_dirs[0], step)  # a missing step is an error that lists the steps there are
        self.run_picker = widgets.ToggleButtons(
            options=[(run_label(r), i) for i, r in enumerate(run_dirs)], value=0, description="sampler")
        self.step_picker = widgets.SelectionSlider(options=self.steps[0], value=self._nearest(self.steps[0], first_step),
                                                   description="step", continuous_update=False)
        self.modality_picker = widgets.ToggleButtons(
            options=[("audio query -> video keys", "audio"), ("video query -> audio keys", "video")],
            value=query_modality, description="query", style={"button_width": "210px"})
        self.query_picker = widgets.Dropdown(description="query clip", layout=widgets.Layout(width="360px"))
        self.query_picker.add_class("avlib-query")
        self.class_picker = widgets.Dropdown(
            options=[("all classes", "all"), ("query's class (biased keys)", "same"), ("other classes", "other")]
            + [(f"class {name}", i) for i, name in enumerate(self.class_names)],
            value="all", description="negatives")
        self.top_k_picker = widgets.IntSlider(value=top_k, min=1, max=20, description="top-k")
        self.query_box = widgets.VBox()
        self.negatives_box = widgets.VBox()
        self.negatives_box.add_class("avlib-negatives")
        self._set_query_options()
        for control in (self.run_picker, self.step_picker, self.modality_picker, self.query_picker,
                        self.class_picker, self.top_k_picker):
            control.observe(self._changed, names="value")
        controls = widgets.VBox([self.run_picker, widgets.HBox([self.step_picker, self.top_k_picker]),
                                 self.modality_picker, widgets.HBox([self.query_picker, self.class_picker])])
        super().__init__([controls, self.query_box, widgets.HTML("<b>top negatives</b>"), self.negatives_box])
        self.add_class("avlib-inspector")
        self.render()

    # -- state ------------------------------------------------------------------------------
    @staticmethod
    def _nearest(steps: list[int], step: int) -> int:
        return min(steps, key=lambda s: (abs(s - step), s))

    def snapshot(self, run: int, step: int) -> Snapshot:
        if (run, step) not in self._snapshots:
            self._snapshots[(run, step)] = read_snapshot(self.run_dirs[run], step)
        return self._snapshots[(run, step)]

    def _set_query_options(self) -> None:
        clips = self.snapshot(self.run_picker.value, self.step_picker.value).batch_clip_index.tolist()
        options = [(f"clip {c} · {self.class_names[self.labels[c]]}", int(c)) for c in clips]
        keep = self.query_picker.value if self.query_picker.value in clips else int(clips[0])
        self.query_picker.options = options
        self.query_picker.value = keep

    def _changed(self, change) -> None:
        if change["owner"] is self.run_picker:  # keep the step, or the nearest one the other run has
            current_step, steps = self.step_picker.value, self.steps[self.run_picker.value]
            self.step_picker.unobserve(self._changed, names="value")
            self.step_picker.options = steps
            self.step_picker.value = self._nearest(steps, current_step)
            self.step_picker.observe(self._changed, names="value")
        if change["owner"] in (self.run_picker, self.step_picker):
            self.query_picker.unobserve(self._changed, names="value")
            self._set_query_options()
            self.query_picker.observe(self._changed, names="value")
        self.render()

    def shown(self) -> list[int]:
        """Clip indices of the negatives listed now, best first."""
        return [n.clip_index for n in self.view.negatives] if self.view else []

    # -- drawing ----------------------------------------------------------------------------
    def clip_images(self, clip: int) -> tuple[np.ndarray, np.ndarray]:
        """A clip's frame strip and log-mel spectrogram as RGB arrays: what the widget and its static
        rendering show of it."""
        audio = np.asarray(self.cache.audio[clip])
        return (frame_strip(self.cache.video[clip], self.frames),
                spectrogram_image(audio, self.cache.sample_rate, self.configs[0].n_mels))

    def _clip_media(self, clip: int) -> tuple[bytes, bytes, bytes]:
        if clip not in self._media:
            strip, spectrogram = self.clip_images(clip)
            self._media[clip] = (png_bytes(strip), png_bytes(spectrogram),
                                 wav_bytes(np.asarray(self.cache.audio[clip]), self.cache.sample_rate))
        return self._media[clip]

    def _clip_row(self, clip: int, text: str, highlight: bool = False):
        strip, spectrogram, audio = self._clip_media(clip)
        colour = SAME_CLASS_COLOUR if highlight else "#222"
        return widgets.HBox([
            widgets.HTML(f"<div style='width:230px;font-size:12px;color:{colour}'>{text}</div>"),
            widgets.Image(value=strip, format="png", layout=widgets.Layout(height="64px")),
            widgets.Image(value=spectrogram, format="png", layout=widgets.Layout(height="64px", width="160px")),
            widgets.Audio(value=audio, format="wav", autoplay=False, controls=True,
                          layout=widgets.Layout(width="230px")),
        ])

    def render(self) -> None:
        run = self.run_picker.value
        cfg = self.configs[run]
        snapshot = self.snapshot(run, self.step_picker.value)
        self.view = rank_negatives(snapshot, self.modality_picker.value, self.query_picker.value, self.labels,
                                   cfg.temperature, cfg.mask_same_clip, self.top_k_picker.value,
                                   self.class_picker.value)
        view = self.view
        self.query_box.children = [self._clip_row(view.clip_index, self._query_text())]
        rows = [self._clip_row(n.clip_index, self._negative_text(n), highlight=n.same_class) for n in view.negatives]
        self.negatives_box.children = rows or [widgets.HTML(f"<i>{NO_MATCH}</i>")]

    def _query_text(self) -> str:
        view = self.view
        return (f"<b>query</b> clip {view.clip_index} ({view.query_modality})<br>class "
                f"<b>{html.escape(self.class_names[view.label])}</b><br>step {view.step}, "
                f"{html.escape(run_label(self.run_dirs[self.run_picker.value]))}<br>positive: sim "
                f"{view.positive_similarity:.3f}, weight {view.positive_weight:.3f}<br>{view.num_negatives} negatives, "
                f"{100 * view.same_class_share:.0f}% of its class")

    def _negative_text(self, n: RankedNegative) -> str:
        return (f"#{n.rank} clip {n.clip_index}<br>class <b>{html.escape(self.class_names[n.label])}</b>"
                f"{' (same class)' if n.same_class else ''}<br>sim {n.similarity:.3f}, weight {n.weight:.4f}<br>"
                f"age {n.age} step{'' if n.age == 1 else 's'}")

    # -- without a kernel -------------------------------------------------------------------
    def static_view(self):
        """:meth:`static_html` as an output of its own (``display(inspector.static_view())``).

        Not part of the widget's own display: an executed notebook stores the widget's state
        (papermill does), and nbconvert's HTML export then draws the widget, not its ``text/html``
        fallback, from a script that needs the network, which leaves a blank area.  A separate
        output is shown by every reader."""
        from IPython.display import HTML

        return HTML(self.static_html())

    def static_html(self) -> str:
        """The query shown now and its listed negatives as self-contained HTML: the same texts, frames
        and spectrograms as the widget (JPEG images inline, ~15 kB a clip at 64 px once base64-encoded),
        same-class negatives in red; no audio (the players would add ~130 kB a clip).  Preceded by
        :data:`LIVE_KERNEL_NOTE`."""
        def row(clip: int, text: str, highlight: bool = False) -> str:
            colour = SAME_CLASS_COLOUR if highlight else "#222"
            images = "".join(f"<img class='avlib-{kind}' alt='{kind} of clip {clip}' style='height:64px;{extra}' "
                             f"src='data:image/jpeg;base64,{base64.b64encode(jpeg_bytes(image)).decode()}'>"
                             for kind, image, extra in zip(("frames", "spectrogram"), self.clip_images(clip),
                                                           ("", "width:160px;")))
            return (f"<div class='avlib-static-row' data-clip='{clip}' style='display:flex;gap:8px;align-items:center;"
                    f"margin:4px 0'><div style='width:230px;font-size:12px;color:{colour}'>{text}</div>{images}</div>")

        view = self.view
        filter_name = dict((value, label) for label, value in self.class_picker.options)[self.class_picker.value]
        negatives = "".join(row(n.clip_index, self._negative_text(n), n.same_class) for n in view.negatives)
        return (f"<div class='avlib-inspector-static'>"
                f"<p style='border-left:4px solid #e67e22;padding:4px 8px;background:#fdf2e9'>{html.escape(LIVE_KERNEL_NOTE)} "
                f"Below: a static rendering of the query it showed (sampler "
                f"<b>{html.escape(run_label(self.run_dirs[self.run_picker.value]))}</b>, step {view.step}, negatives: "
                f"{html.escape(filter_name)}, top {self.top_k_picker.value}).</p>"
                f"{row(view.clip_index, self._query_text())}<b>top negatives</b>"
                f"{negatives or f'<p><i>{NO_MATCH}</i></p>'}</div>")

    def _repr_mimebundle_(self, **kwargs):
        """The widget's own bundle, whose fallbacks (``text/html``, ``text/plain``: what a reader without
        the kernel's widget state shows in its place, e.g. nbconvert's HTML export of a notebook saved
        from JupyterLab) say that it needs a live kernel.  A live front end draws the widget: its mime
        type ranks first."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = (f"<p class='avlib-inspector-note' style='border-left:4px solid #e67e22;padding:4px 8px;"
                               f"background:#fdf2e9'>{html.escape(LIVE_KERNEL_NOTE)}</p>")
        bundle["text/plain"] = (f"{LIVE_KERNEL_NOTE} Query clip {self.view.clip_index} at step {self.view.step}; "
                                f"listed negatives (clip indices): {self.shown()}")
        return bundle
