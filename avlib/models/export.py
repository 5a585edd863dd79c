"""Encoders you can take away: ``run_dir/encoders.pt`` and :func:`load_pretrained`.

The end of every run writes ``encoders.pt``: the video and audio backbones' plain state dicts and the
few settings that rebuild them and prepare their inputs, so a user can embed media in their own code
without the training stack, checkpoints or optimiser state:

    video_encoder, audio_encoder = avlib.load_pretrained("runs/active")
    video_features = video_encoder(video)   # video (B, 3, T, crop_size, crop_size) -> (B, F)
    audio_features = audio_encoder(audio)   # audio (B, 1, n_mels, frames) log-mel  -> (B, F)

Inputs are what evaluation feeds the encoders (``avlib.data.dataset.AVWindows`` with
``train=False``): ``window_s`` seconds of RGB frames at ``fps``, decoded at ``frame_size`` on the
short side, centre-cropped to ``crop_size``, normalised by ``avlib.data.augment.VideoTransform``;
``audio_window_s`` seconds of mono audio at ``sample_rate`` as an ``n_mels``-band log-mel
spectrogram (``avlib.data.augment.AudioTransform``).  Each returned module carries these settings as
``.settings``; :func:`avlib.embed_file` does the whole preparation for one media file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avlib.models.encoders import build_encoder

ENCODERS_FILE = "encoders.pt"
FORMAT = "avlib-encoders/1"
#: what rebuilds the encoders and prepares their inputs (names as in PretrainConfig)
SETTINGS = ("video_encoder", "audio_encoder", "embedding_dim", "fps", "frame_size", "crop_size", "window_s",
            "audio_window_s", "sample_rate", "n_mels")


def export_encoders(model, cfg, path: str | Path) -> Path:
    """Write the backbones of ``model`` (an ``AVModel``) and ``cfg``'s input settings to ``path``."""
    path = Path(path)
    state = {"format": FORMAT, "settings": {name: getattr(cfg, name) for name in SETTINGS},
             "video": {k: v.detach().cpu() for k, v in model.video_backbone.state_dict().items()},
             "audio": {k: v.detach().cpu() for k, v in model.audio_backbone.state_dict().items()}}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def load_pretrained(path_or_run_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, nn.Module]:
    """``(video_encoder, audio_encoder)``: plain ``torch.nn.Module``s in eval mode, from a run folder
    or an ``encoders.pt`` file; each has the input settings as ``.settings`` (module docstring)."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        path = path / ENCODERS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no exported encoders (a run writes {ENCODERS_FILE} into its folder "
                                "when it ends)")
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an avlib encoders file (format {state.get('format')!r}, expected {FORMAT!r})")
    settings = dict(state["settings"])
    encoders = []
    for modality in ("video", "audio"):
        encoder = build_encoder(modality, settings[f"{modality}_encoder"])
        encoder.load_state_dict(state[modality])
        encoder.settings = settings
        encoders.append(encoder.to(device).eval())
    return encoders[0], encoders[1]
