"""Building blocks shared by every codec model, so that the baselines use the DSAE's transforms exactly.

`analysis_transform` and `synthesis_transform` return the very `nn.Sequential` stacks the DSAE was built
with (same layer order, so the same parameter names): frames -> features at 1/STRIDE resolution and
back. `GDN` and `subpel_conv3x3` are CompressAI's layers of those names, with the same parameters, buffers
and arithmetic, so weights trained with CompressAI load and compute unchanged.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsaecodec.entropy import LowerBound

STRIDE = 16  # total down-sampling of the analysis transform; frames are padded to a multiple of it
GLOBAL_INITIAL_GAIN = 32.0  # initial gain of vector latents at the highest quality (quantisation step 1/32)


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Conv2d:
    """A 'same'-padded convolution."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def subpel_conv3x3(cin: int, cout: int, factor: int) -> nn.Sequential:
    """Sub-pixel up-sampling: a 3x3 convolution to cout * factor^2 channels, then a pixel shuffle."""
    return nn.Sequential(conv(cin, cout * factor**2), nn.PixelShuffle(factor))


class NonNegative(nn.Module):
    """The reparametrisation that keeps a GDN parameter >= `minimum`: value = max(p, sqrt(minimum +
    pedestal))^2 - pedestal, pedestal = 2^-36 (buffers `pedestal` and `lower_bound.bound`, as CompressAI's
    `NonNegativeParametrizer`)."""

    pedestal: Tensor

    def __init__(self, minimum: float = 0.0, offset: float = 2**-18):
        super().__init__()
        self.register_buffer("pedestal", torch.Tensor([offset**2]))
        self.lower_bound = LowerBound((minimum + offset**2) ** 0.5)

    def init(self, value: Tensor) -> Tensor:
        """The parameter p that stands for `value`."""
        return torch.sqrt(torch.max(value + self.pedestal, self.pedestal))

    def forward(self, parameter: Tensor) -> Tensor:
        return self.lower_bound(parameter) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalised divisive normalisation (Ballé et al. 2016) of (B, C, H, W):
    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), or x_i * sqrt(...) for the inverse (IGDN).
    Parameters `beta` (C,) and `gamma` (C, C) are stored reparametrised (`beta_reparam`, `gamma_reparam`)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(minimum=beta_min)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma_reparam = NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        beta = self.beta_reparam(self.beta)
        gamma = self.gamma_reparam(self.gamma).reshape(channels, channels, 1, 1)
        norm = F.conv2d(x**2, gamma, beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def log_gains(lambdas: tuple[float, ...], channels: int, vector: bool = False) -> Tensor:
    """Initial log gains (Q, C): step size ~ 1/sqrt(lambda), the high-rate optimum for MSE; 1 at the highest
    quality, or 1/GLOBAL_INITIAL_GAIN for vector latents (`vector`). Why finer for vectors: the latents of
    random-init networks differ little from clip to clip (std ~0.04 measured on sprites), so under a unit step they
    all round alike and the decoder learns the mean clip."""
    lam = torch.tensor(lambdas, dtype=torch.float32)
    return (0.5 * torch.log(lam / lam.max()))[:, None].repeat(1, channels) + (math.log(GLOBAL_INITIAL_GAIN)
                                                                              if vector else 0.0)


def gain(log_gain: Tensor, quality: float) -> Tensor:
    """Per-channel gains at `quality`, shaped (1, C, 1, 1) to multiply a latent. Between two trained levels the
    log gains are interpolated linearly (Cui et al. 2021), so quality is continuous from 0 to the highest level."""
    lower = min(int(quality), log_gain.shape[0] - 1)
    weight = quality - lower
    log_gain_q = log_gain[lower] if weight == 0 else (1 - weight) * log_gain[lower] + weight * log_gain[lower + 1]
    return log_gain_q.exp()[None, :, None, None]


def nearest_level(quality: float) -> int:
    """The trained level nearest to `quality` (halves round up): whose entropy model codes a quality in between."""
    return int(quality + 0.5)


def analysis_transform(channels: int) -> nn.Sequential:
    """g_a: (B, 3, H, W) -> (B, channels, H/16, W/16); four 5x5 stride-2 convolutions with GDN between."""
    n = channels
    return nn.Sequential(
        conv(3, n, 5, 2), GDN(n), conv(n, n, 5, 2), GDN(n), conv(n, n, 5, 2), GDN(n), conv(n, n, 5, 2)
    )


def synthesis_transform(in_channels: int, channels: int) -> nn.Sequential:
    """g_s: (B, in_channels, h, w) -> (B, 3, 16h, 16w); a 3x3 convolution, then four sub-pixel up-samplings
    with inverse GDN between."""
    n = channels
    return nn.Sequential(
        conv(in_channels, n),
        subpel_conv3x3(n, n, 2), GDN(n, inverse=True),
        subpel_conv3x3(n, n, 2), GDN(n, inverse=True),
        subpel_conv3x3(n, n, 2), GDN(n, inverse=True),
        subpel_conv3x3(n, 3, 2),
    )


def global_analysis(n: int, size: int) -> nn.Sequential:
    """(B, 3, S, S) -> (B, 4n, 1, 1): four 4x4 stride-2 convolutions (n, 2n, 4n, 4n channels) with leaky ReLUs,
    then one S/16 x S/16 convolution (the DCGAN-style stack of the paper's sprites model)."""
    widths = (3, n, 2 * n, 4 * n, 4 * n)
    layers: list[nn.Module] = []
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers, nn.Conv2d(4 * n, 4 * n, size // STRIDE))


def global_synthesis(in_channels: int, n: int, size: int) -> nn.Sequential:
    """(B, in_channels, 1, 1) -> (B, 3, S, S) in (0, 1): an S/16 x S/16 transposed convolution, then four 4x4
    stride-2 transposed convolutions (4n, 2n, n, 3 channels) with leaky ReLUs, and a sigmoid."""
    widths = (4 * n, 4 * n, 2 * n, n, 3)
    layers: list[nn.Module] = [nn.ConvTranspose2d(in_channels, 4 * n, size // STRIDE), nn.BatchNorm2d(4 * n),
                               nn.LeakyReLU(0.2)]
    for cin, cout in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers[:-2], nn.Sigmoid())


def to_pixels(x: Tensor) -> Tensor:
    """Frames in [0, 1] (clamped here) -> 8-bit pixels round(255 x), uint8: what a decoder outputs."""
    return torch.round(x.clamp(0, 1) * 255.0).to(torch.uint8)


def framewise(transform: nn.Module, x: Tensor, pixels: bool = False) -> Tensor:
    """`transform(x)` of a batch of frames (N, C, H, W), float or uint8 pixels (read as pixel / 255). Without
    autograd (coding) one frame at a time, so that the activations held, and the float copy of uint8 input, are
    one frame's whatever N is; with autograd (training) as one batch. `pixels`: the outputs as `to_pixels` gives
    them (uint8, N x 3 bytes per pixel), each converted as soon as it is computed."""
    def run(frames: Tensor) -> Tensor:
        out = transform(frames.float() / 255.0 if frames.dtype == torch.uint8 else frames)
        return to_pixels(out) if pixels else out

    if torch.is_grad_enabled() or x.shape[0] == 1:
        return run(x)
    first = run(x[:1])
    out = first.new_empty((x.shape[0], *first.shape[1:]))  # filled in place: no second copy, as cat would make
    out[:1] = first
    for i in range(1, x.shape[0]):
        out[i:i + 1] = run(x[i:i + 1])
    return out


def each_frame(transform: nn.Module, frames: Iterable[Tensor]) -> list[Tensor]:
    """`transform` of every frame (C, H, W) of `frames` (uint8 pixels or float; read once, in order, none held) as
    a list of (1, C', h, w) outputs. ValueError for no frames."""
    outputs = [framewise(transform, frame[None]) for frame in frames]
    if not outputs:
        raise ValueError("a segment needs at least one frame")
    return outputs


def drain(frames: Iterable[object]) -> None:
    """Run a generator of a coding loop to its end, keeping nothing it yields (an encoder that codes every frame
    but needs no reconstruction); returns None, what a model gives for x_hat then."""
    for _ in frames:
        pass


def check_frame_size(frame_size: int) -> None:
    """Vector-latent models fold S x S frames to 1 x 1 through stride 16: S must be 0 (no fixed size) or a
    positive multiple of 16."""
    if frame_size < 0 or frame_size % STRIDE:
        raise ValueError(f"frame_size must be 0 or a positive multiple of {STRIDE}, got {frame_size}")

