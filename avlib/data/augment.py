"""Per-clip transforms: video augmentation with torchvision.transforms.v2, audio as log-mel spectrograms.

Every random choice is drawn inside ``seeded(seed)``, a private RNG scope: a training sample's
augmentation depends only on (run seed, step, slot in the batch), never on how many random numbers
were drawn before.  That is what makes a killed-and-resumed run replay exactly.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torchaudio
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# Kinetics-style normalisation constants for RGB in [0, 1].
VIDEO_MEAN = torch.tensor([0.45, 0.45, 0.45]).view(3, 1, 1, 1)
VIDEO_STD = torch.tensor([0.225, 0.225, 0.225]).view(3, 1, 1, 1)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with torch's CPU RNG seeded to ``seed``; restore the outer state afterwards.

    Seeds ``torch.default_generator`` alone, the generator every CPU draw uses (the same stream as
    ``torch.manual_seed(seed)`` gives it): ``torch.manual_seed`` also queues a lazy seeding of every
    uninitialised accelerator, recording a formatted Python stack each time, 0.15 ms of a 6-ms window
    in a DataLoader worker (``tests/test_stream.py`` checks the draws are unchanged)."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


#: RGB -> YIQ (NTSC): Y is luma, (I, Q) the chroma plane whose angle is the hue
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
HUE_SPACES = ("hsv", "yiq")


class YIQHue(torch.nn.Module):
    """Hue jitter as a rotation of the chroma plane in YIQ space by ``2 pi h``, ``h ~ U(-hue, hue)``.

    Why: torchvision's HSV hue shift converts every pixel to HSV and back, 23 of the 28 ms a 24-frame
    112-px training window costs on one core (``reports/bench_data.md``), three times its decoding (the same
    bytes by :func:`hsv_hue_shift` take about half of that, ``reports/bench_augment.md``).  A YIQ
    rotation is one 3x3 matrix per clip (the hue operator NVIDIA DALI uses); it keeps luma exactly and
    turns hues by the same angle range, but is not the same map as the HSV shift, so it is an option
    (``hue_space="yiq"``), not the default.
    """

    def __init__(self, hue: float):
        super().__init__()
        self.hue = hue

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (T, 3, H, W) uint8
        angle = 2 * torch.pi * float(torch.empty(()).uniform_(-self.hue, self.hue))
        c, s = torch.cos(torch.tensor(angle, dtype=torch.float64)), torch.sin(torch.tensor(angle, dtype=torch.float64))
        rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
        matrix = (torch.linalg.inv(_YIQ) @ rotation @ _YIQ).float()  # (3, 3): RGB -> rotated RGB
        out = torch.einsum("oc,tchw->tohw", matrix, video.float())  # (T, 3, H, W)
        return out.round_().clamp_(0, 255).to(torch.uint8)


#: below every non-zero maximum and channel range of a uint8 colour scaled to [0, 1] (>= 1/255 less rounding)
_TINY = 1e-6


def hsv_hue_shift(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """torchvision's HSV hue shift (``v2.functional.adjust_hue``) of uint8 RGB (..., 3, H, W): the same bytes in
    about half the time (``bench/bench_augment.py``).

    Why: the HSV hue shift is most of a training window's augmentation (``reports/bench_augment.md``) and the
    augmentation most of a step's CPU time where a loader worker shares the cores.  torchvision's kernel
    spends it on a few slow operations: a channel ``aminmax``, boolean masks and ``where``, ``fmod`` and
    ``remainder``, and a gather through an int64 index per channel.  Here every float operation that makes a
    value is torchvision's own, in its order, so every value rounds the same; only the bookkeeping differs:
    channel maxima by ``maximum``, masks as 0/1 floats from ``sign`` (a masked term is still multiplied by
    0 or 1, as there), ``x - floor(x)`` for the two modulos (exact on their ranges: ``fmod(h, 1)`` of
    h in [5/6, 11/6] and ``remainder(h, 1)`` of h in [-1/2, 3/2)), and the sector's choice of (v, p, q, t)
    per channel by 0/1 weights.  ``tests/test_augment_hue.py`` compares all 2^24 colours at several
    factors; the identity holds for uint8 input only (floats go to torchvision).
    """
    assert image.dtype == torch.uint8 and image.shape[-3] == 3, \
        f"expected uint8 (..., 3, H, W), got {image.dtype} {tuple(image.shape)}"
    r, g, b = (plane.to(torch.float32).mul_(1.0 / 255) for plane in image.unbind(dim=-3))  # to_dtype(scale=True)
    # RGB -> HSV (torchvision's _rgb_to_hsv); where max == min its 1-denominators meet a 0 numerator
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    channels_range = maxc - minc
    saturation = channels_range / maxc.clamp_min(_TINY)
    divisor = channels_range.clamp_min(_TINY)
    rc, gc, bc = ((maxc - plane).div_(divisor) for plane in (r, g, b))
    r_below_max, g_below_max = torch.sign(rc), torch.sign(gc)  # 0/1: the channel is not the maximum
    hue_r = (bc - gc).mul_(1.0 - r_below_max)
    hue_g = rc.add(2.0).sub_(bc).mul_(r_below_max * (1.0 - g_below_max))
    hue_b = gc.add(4.0).sub_(rc).mul_(r_below_max * g_below_max)
    hue = hue_r.add_(hue_g).add_(hue_b).mul_(1.0 / 6.0).add_(1.0)
    hue = hue.sub_(torch.floor(hue))  # fmod(hue, 1)
    hue = hue.add_(hue_factor)
    hue = hue.sub_(torch.floor(hue))  # remainder(hue, 1)
    # HSV -> RGB (torchvision's _hsv_to_rgb): sector i of h * 6 (6, from rounding, is sector 0)
    value = maxc
    h6 = hue.mul_(6)
    sector = torch.floor(h6)
    f = h6.sub_(sector)
    sxf = saturation * f
    one_minus_s = 1.0 - saturation
    q = (1.0 - sxf).mul_(value).clamp_(0.0, 1.0)
    t = sxf.add_(one_minus_s).mul_(value).clamp_(0.0, 1.0)
    p = one_minus_s.mul_(value).clamp_(0.0, 1.0)
    odd = sector - 2.0 * torch.floor(sector * 0.5)  # the middle channel is q in odd sectors, t in even ones
    middle = q.mul_(odd).add_(t.mul_(1.0 - odd))
    channels = []
    for shift in (0.0, 4.0, 2.0):  # red, green, blue: sectors (0, 5), (1, 2), (3, 4) take the value
        k = sector + shift
        k = k - 6.0 * torch.floor(k * (1.0 / 6.0))  # 0..5
        role = (k - 2.5).abs_().sub_(0.5)  # 0: p, 1: the middle channel, 2: the value
        channel = (p * ((1.0 - role) * (2.0 - role) * 0.5)).add_(middle * (role * (2.0 - role)))
        channel = channel.add_(value * (role * (role - 1.0) * 0.5))
        channels.append(channel.mul_(255 + 1.0 - 1e-3).to(torch.uint8))  # to_dtype(uint8, scale=True)
    return torch.stack(channels, dim=-3)


class ColorJitter(v2.ColorJitter):
    """torchvision's ColorJitter (the same draws, order and brightness, contrast and saturation kernels) whose
    hue shift of uint8 frames on the CPU (where the loader's workers run, and where the identity is tested) is
    :func:`hsv_hue_shift`: the same bytes, about half the time."""

    #: make_params' operation ids -> (its factor's name, torchvision's kernel)
    ADJUSTMENTS = {0: ("brightness_factor", TF.adjust_brightness), 1: ("contrast_factor", TF.adjust_contrast),
                   2: ("saturation_factor", TF.adjust_saturation), 3: ("hue_factor", TF.adjust_hue)}

    def transform(self, inpt, params: dict):
        out = inpt
        for fn_id in params["fn_idx"].tolist():  # the random order torchvision's make_params drew
            name, kernel = self.ADJUSTMENTS[fn_id]
            factor = params[name]
            if factor is None:
                continue
            if fn_id == 3 and type(out) is torch.Tensor and out.dtype == torch.uint8 and out.device.type == "cpu":
                out = hsv_hue_shift(out, factor)
            else:
                out = kernel(out, factor)
        return out


#: ``PretrainConfig.video_augment`` -> (crop scale range, brightness/contrast/saturation jitter, hue jitter,
#: probability the colour jitter is applied, probability of grey).  "light": the project's training
#: augmentation since the start (mild crop and colour changes).  "strong": SimCLR's (Chen et al. 2020,
#: App. A: colour jitter 0.8/0.8/0.8/0.2 applied with p 0.8, grey with p 0.2, crops of a wider range of
#: scales; 0.3 rather than 0.08 as the smallest share, so that a small object is not cropped out of a
#: 48-px window).  Why: two windows of one clip share its colours and framing; under "light" they can
#: be matched by those alone, and an instance-discrimination term then has no reason to learn shape
#: (``reports/objectives.md``).
#: video input normalisation (VideoTransform's ``normalize``, the run's ``video_normalize``)
VIDEO_NORMALIZATIONS = ("dataset", "frame")
VIDEO_AUGMENTS = {
    "light": ((0.6, 1.0), 0.4, 0.1, 1.0, 0.0),
    "strong": ((0.3, 1.0), 0.8, 0.2, 0.8, 0.2),
}


class VideoTransform:
    """uint8 frames (T, H, W, 3) -> normalised float (3, T, crop, crop).

    Training: random resized crop, horizontal flip and colour jitter, with the SAME parameters for
    every frame of the clip (v2 treats the leading T dimension as a batch sharing one draw), so
    motion is preserved.  Evaluation: the whole frame resized to crop x crop.  ``hue_space``: "hsv"
    (torchvision's ColorJitter hue, the default, computed by :func:`hsv_hue_shift`: the same bytes in half
    the time) or "yiq" (:class:`YIQHue`, after brightness, contrast and saturation, cheaper still).
    ``augment`` picks the strength (:data:`VIDEO_AUGMENTS`): "light" (the default) or "strong", SimCLR's
    recipe (Chen et al. 2020, Sec. 3 and App. A) for views that must not be told apart by colour or framing
    alone.  ``normalize``: "dataset" (the default: one mean and std for
    every clip, Kinetics') or "frame" (:data:`VIDEO_NORMALIZATIONS`: every frame and colour channel to its
    own mean 0 and std 1 over its pixels, as :class:`AudioTransform` standardises each spectrogram).  Why
    "frame": it removes what a clip's frames share everywhere -- its background colour, brightness and
    contrast -- which two windows of one clip (and a clip's video and its audio) can be matched by without
    the content; measured on real-media digits, ``reports/objectives.md``.
    """

    def __init__(self, crop_size: int, train: bool, hue_space: str = "hsv", augment: str = "light",
                 normalize: str = "dataset"):
        if hue_space not in HUE_SPACES:
            raise ValueError(f"parameter hue_space={hue_space!r} is not valid; valid choices: {list(HUE_SPACES)}")
        if augment not in VIDEO_AUGMENTS:
            raise ValueError(f"parameter video_augment={augment!r} is not valid; valid choices: {list(VIDEO_AUGMENTS)}")
        if normalize not in VIDEO_NORMALIZATIONS:
            raise ValueError(f"parameter video_normalize={normalize!r} is not valid; valid choices: {list(VIDEO_NORMALIZATIONS)}")
        self.per_frame = normalize == "frame"
        if train:
            scale, colour, hue, jitter_p, grey_p = VIDEO_AUGMENTS[augment]
            jitter = ([ColorJitter(brightness=colour, contrast=colour, saturation=colour, hue=hue)]
                      if hue_space == "hsv"
                      else [v2.ColorJitter(brightness=colour, contrast=colour, saturation=colour), YIQHue(hue)])
            self.transform = v2.Compose([
                v2.RandomResizedCrop(crop_size, scale=scale, ratio=(0.8, 1.25), antialias=True),
                v2.RandomHorizontalFlip(),
                *([v2.RandomApply(jitter, p=jitter_p)] if jitter_p < 1 else jitter),
                *([v2.RandomGrayscale(p=grey_p)] if grey_p > 0 else []),
            ])
        else:
            self.transform = v2.Resize((crop_size, crop_size), antialias=True)

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        assert frames.ndim == 4 and frames.shape[-1] == 3, f"expected (T, H, W, 3) uint8, got {frames.shape}"
        video = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W), copied off the memmap
        video = self.transform(video)
        video = video.permute(1, 0, 2, 3).float().div_(255.0)  # (3, T, crop, crop)
        video = (video - VIDEO_MEAN) / VIDEO_STD
        if self.per_frame:  # each frame and channel to mean 0, std 1 over its pixels
            video = (video - video.mean((2, 3), keepdim=True)) / video.std((2, 3), keepdim=True).clamp_min(1e-3)
        return video


class AudioTransform:
    """Mono waveform (S,) -> standardised log-mel spectrogram (1, n_mels, frames).

    25 ms windows with a 10 ms hop, as in the audio encoders of AVID and CM-ACC.  Each spectrogram
    is standardised on its own, which removes overall loudness (a nuisance, not content).  Training
    adds SpecAugment-style frequency masking (Park et al. 2019); no time masking, which hides onsets,
    i.e. the rhythm the audio must convey (measured: the audio probe gained less with it).
    """

    def __init__(self, sample_rate: int, n_mels: int, train: bool):
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=2 * int(0.016 * sample_rate), win_length=int(0.025 * sample_rate),
            hop_length=int(0.010 * sample_rate),
            n_mels=n_mels, f_min=50.0, f_max=sample_rate / 2,
        )
        self.train = train
        self.freq_mask = torchaudio.transforms.FrequencyMasking(freq_mask_param=max(1, n_mels // 8))

    def __call__(self, waveform: np.ndarray) -> torch.Tensor:
        spec = self.mel(torch.from_numpy(np.array(waveform, dtype=np.float32)))  # (n_mels, frames)
        spec = torch.log(spec + 1e-6)
        spec = (spec - spec.mean()) / (spec.std() + 1e-5)
        spec = spec.unsqueeze(0)  # (1, n_mels, frames)
        if self.train:
            spec = self.freq_mask(spec)
        return spec
