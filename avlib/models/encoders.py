"""Encoder registry, projection heads and the audio-visual model.

Two sizes of encoder share one interface (input tensor -> pooled feature vector):

- ``light3d`` / ``light2d`` (defaults): small 3-D and 2-D CNNs sized so that a full pretraining run
  fits in minutes on two CPU cores.
- ``r2plus1d_18`` / ``resnet18_audio``: the paper-scale encoders of the seed papers (torchvision's
  R(2+1)D-18 for video, a ResNet-18 on log-mel spectrograms for audio), randomly initialised: no
  weights are ever downloaded.

A projection head maps the pooled feature to an L2-normalised embedding.  It also returns the
input of its last linear layer (``hidden``), which the BADGE-style active sampler needs: the
gradient w.r.t. that layer's weights is an outer product of the embedding-space gradient and it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from avlib.config import choose

# ----------------------------------------------------------------------------- video encoders


def _conv3d_block(c_in: int, c_out: int, kernel, stride, padding) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True)]


class Light3DEncoder(nn.Module):
    """A 4-layer 3-D CNN for (B, 3, T, H, W) clips: spatial stem, then space-time convolutions.

    The stem is spatial only (1x5x5) because most of the compute sits at full resolution; time is
    mixed from the second layer on, which is where bounce/flash timing becomes visible.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.features = nn.Sequential(
            *_conv3d_block(3, w1, (1, 5, 5), (1, 2, 2), (0, 2, 2)),
            *_conv3d_block(w1, w2, 3, (1, 2, 2), 1),
            *_conv3d_block(w2, w3, 3, (2, 2, 2), 1),
            *_conv3d_block(w3, w4, 3, (2, 2, 2), 1),
        )
        self.out_dim = w4

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        assert video.dim() == 5 and video.shape[1] == 3, f"expected (B, 3, T, H, W), got {tuple(video.shape)}"
        return self.features(video).mean(dim=(2, 3, 4))  # (B, C)


class R2Plus1D18Encoder(nn.Module):
    """torchvision's R(2+1)D-18 (the video encoder of AVID/CM-ACC), random init, fc removed."""

    def __init__(self):
        super().__init__()
        from torchvision.models.video import r2plus1d_18

        net = r2plus1d_18(weights=None)
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


# ----------------------------------------------------------------------------- audio encoders


def _conv2d_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class Light2DEncoder(nn.Module):
    """A 2-D CNN over (B, 1, mels, frames) log-mel spectrograms: 4 strided blocks, then a wide-in-time block.

    The strided blocks see ~0.3 s of audio; the last block (kernel 5 along time at a 160 ms stride)
    widens the receptive field to ~1 s, so that rhythm and tempo (beat periods of 0.3-0.7 s), not
    only onset density, reach the pooled feature.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in widths:
            layers += _conv2d_block(c_in, c_out)
            c_in = c_out
        layers += [nn.Conv2d(c_in, c_in, (3, 5), 1, (1, 2), bias=False), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        assert spec.dim() == 4 and spec.shape[1] == 1, f"expected (B, 1, mels, frames), got {tuple(spec.shape)}"
        return self.features(spec).mean(dim=(2, 3))  # (B, C)


class ResNet18AudioEncoder(nn.Module):
    """A ResNet-18 on one-channel log-mel spectrograms (the usual paper-scale audio encoder)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.net(spec)


VIDEO_ENCODERS: dict[str, Callable[[], nn.Module]] = {
    "light3d": Light3DEncoder,
    "r2plus1d_18": R2Plus1D18Encoder,
}
AUDIO_ENCODERS: dict[str, Callable[[], nn.Module]] = {
    "light2d": Light2DEncoder,
    "resnet18_audio": ResNet18AudioEncoder,
}


def build_encoder(kind: str, name: str) -> nn.Module:
    """Build a registered encoder; ``kind`` is "video" or "audio"."""
    registry = {"video": VIDEO_ENCODERS, "audio": AUDIO_ENCODERS}[kind]
    return choose(f"{kind}_encoder", name, registry)()


# ----------------------------------------------------------------------------- heads and model


class ProjectionHead(nn.Module):
    """Two-layer MLP to an L2-normalised embedding (MoCo v2 / AVID style)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True))
        self.last = nn.Linear(in_dim, out_dim)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L2-normalised embedding (B, out_dim), the last layer's input (B, in_dim), the norm of the
        last layer's output before normalisation (B,)): BADGE's last-layer gradient needs the last two."""
        hidden = self.hidden(feature)  # (B, in_dim)
        output = self.last(hidden)  # (B, out_dim)
        norm = output.norm(dim=1)
        return output / norm.clamp_min(1e-12)[:, None], hidden, norm


@dataclass
class Embeddings:
    """What one forward pass of an :class:`AVModel` yields for a batch of B clips."""

    video: torch.Tensor  # (B, D) L2-normalised
    audio: torch.Tensor  # (B, D) L2-normalised
    video_hidden: torch.Tensor  # (B, H_v) input of the video head's last layer
    audio_hidden: torch.Tensor  # (B, H_a)
    video_pre_norm: torch.Tensor | None = None  # (B,) norm of the video head's output before normalisation
    audio_pre_norm: torch.Tensor | None = None  # (B,)

    def fields(self) -> tuple:
        return (self.video, self.audio, self.video_hidden, self.audio_hidden, self.video_pre_norm, self.audio_pre_norm)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Embeddings":
        """The same fields, each transformed by ``fn`` (rows selected, gathered, cast, ...)."""
        return Embeddings(*(None if value is None else fn(value) for value in self.fields()))

    @staticmethod
    def cat(parts: list["Embeddings"]) -> "Embeddings":
        """Row-wise concatenation of several batches' embeddings."""
        columns = zip(*(p.fields() for p in parts))
        return Embeddings(*(None if any(v is None for v in column) else torch.cat(column) for column in columns))


class AVModel(nn.Module):
    """Video and audio encoders, each with its projection head, mapping into one embedding space."""

    def __init__(self, video_encoder: str = "light3d", audio_encoder: str = "light2d", embedding_dim: int = 128):
        super().__init__()
        self.video_backbone = build_encoder("video", video_encoder)
        self.audio_backbone = build_encoder("audio", audio_encoder)
        self.video_head = ProjectionHead(self.video_backbone.out_dim, embedding_dim)
        self.audio_head = ProjectionHead(self.audio_backbone.out_dim, embedding_dim)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> Embeddings:
        video_embedding, video_hidden, video_norm = self.video_head(self.video_backbone(video))
        audio_embedding, audio_hidden, audio_norm = self.audio_head(self.audio_backbone(audio))
        return Embeddings(video_embedding, audio_embedding, video_hidden, audio_hidden, video_norm, audio_norm)

    @torch.no_grad()
    def features(self, video: torch.Tensor | None = None, audio: torch.Tensor | None = None):
        """Frozen pooled backbone features (what downstream probes read), per modality."""
        video_feature = self.video_backbone(video) if video is not None else None
        audio_feature = self.audio_backbone(audio) if audio is not None else None
        return video_feature, audio_feature


@torch.no_grad()
def momentum_update(online: nn.Module, momentum_copy: nn.Module, momentum: float) -> None:
    """EMA update of every parameter of ``momentum_copy`` towards ``online`` (MoCo, He et al. 2020, eq. 2).

    theta_k <- m * theta_k + (1 - m) * theta_q over the WHOLE of each tensor.  (The CM-ACC reference
    code reads one slice of each parameter instead of the whole tensor; that bug is not reproduced.)
    Buffers (batch-norm running statistics) are copied, as MoCo does.
    """
    assert 0.0 <= momentum < 1.0, f"momentum must be in [0, 1), got {momentum}"
    online_params = list(online.parameters())
    copy_params = list(momentum_copy.parameters())
    assert len(online_params) == len(copy_params), "momentum copy does not match the online model"
    torch._foreach_mul_(copy_params, momentum)
    torch._foreach_add_(copy_params, online_params, alpha=1.0 - momentum)
    for online_buffer, copy_buffer in zip(online.buffers(), momentum_copy.buffers()):
        copy_buffer.copy_(online_buffer)
