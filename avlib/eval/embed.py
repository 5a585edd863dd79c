"""Embed one media file with exported encoders, preparing it exactly as evaluation does."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from avlib.config import PretrainConfig
from avlib.data.dataset import AVWindows, collate
from avlib.data.decode import decode_clip


@torch.no_grad()
def embed_file(path: str | Path, video_encoder: nn.Module, audio_encoder: nn.Module,
               windows: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features ``(video (F,), audio (F,))`` of a media file: decoded at the encoders'
    settings (``load_pretrained``), ``windows`` evenly spaced aligned windows, features averaged over
    them -- what the probes read of a clip.  The file must last at least the longer window."""
    settings = video_encoder.settings
    cfg = PretrainConfig(**{name: settings[name] for name in ("fps", "frame_size", "crop_size", "window_s",
                                                              "audio_window_s", "sample_rate", "n_mels")},
                         clip_seconds=max(settings["window_s"], settings["audio_window_s"]))
    clip = decode_clip(path, fps=cfg.fps, frame_size=cfg.frame_size, sample_rate=cfg.sample_rate)
    if len(clip.frames) < cfg.window_frames or len(clip.audio) < cfg.window_samples:
        raise ValueError(f"{path}: {len(clip.frames) / cfg.fps:.2f}s of video and "
                         f"{len(clip.audio) / cfg.sample_rate:.2f}s of audio; the encoders need "
                         f"{cfg.window_s:g}s and {cfg.audio_window_s:g}s")
    # a one-clip source with the face AVWindows reads (avlib.data.sources): metadata and read(window)
    one_clip = SimpleNamespace(labels=np.zeros(1, np.int64), frame_counts=np.array([len(clip.frames)]),
                               sample_counts=np.array([len(clip.audio)]), describe=lambda _clip: str(path),
                               read=lambda _clip, f0, frames, s0, samples: (clip.frames[f0:f0 + frames],
                                                                            clip.audio[s0:s0 + samples]))
    items = AVWindows(one_clip, [0], cfg, train=False, eval_windows=windows)
    batch = collate([items[(0, window)] for window in range(windows)])
    return video_encoder(batch["video"]).mean(0), audio_encoder(batch["audio"]).mean(0)
