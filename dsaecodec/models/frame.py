"""Baseline: a frame-by-frame VAE with a scale hyperprior (Ballé et al. 2018), no temporal context.

Every frame is coded alone. Shapes, for frames (B, T, 3, H, W) with H, W multiples of 16, the T frames
of a clip handled as a batch of independent images:

    y_t      = g_a(x_t)                  (B, T, N, H/16, W/16)    the DSAE's analysis transform
    z_t      = h_a(|y_t|)                (B, T, N, H/64, W/64)    prior: a FactorisedCoder per quality
    sigma_t  = h_s(z_hat_t)              (B, T, N, H/16, W/16)    y_t ~ N(0, sigma_t) per element
    x_hat_t  = g_s(y_hat_t)              (B, T, 3, H, W)          the DSAE's synthesis transform

The latent map is zero-padded to a multiple of 4 before h_a, and h_s's output cropped back, so any
frame size works. Variable rate as in the DSAE: quality q multiplies each channel of y and z by a learned
gain (quantisation step 1 / gain), one model serves every level.

`FrameConfig(frame_size=S)` is the baseline in the global DSAE's geometry (S x S frames only): y_t is a
vector of `latent_channels` and so is its hyper-latent z_t, both held as 1 x 1 maps, so that the coding
path is the same:

    y_t      = g_a(x_t)                  (B, T, C_y, 1, 1)     the global DSAE's DCGAN-style g_a, then a 1x1 layer
    z_t      = h_a(|y_t|)                (B, T, C_y, 1, 1)     an MLP; prior: a FactorisedCoder per quality
    sigma_t  = h_s(z_hat_t)              (B, T, C_y, 1, 1)     an MLP
    x_hat_t  = g_s(y_hat_t)              (B, T, 3, S, S)       the global DSAE's g_s

Streams: there is no static content, so a segment's static stream is empty and its dynamic stream
holds everything: first the hyper-latents z_1:T (channel by channel, categorical under the factorised coder's
tables), then y_1:T (zero-mean Gaussians, scale indexes from h_s(z_hat)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitstream.coder import SymbolDecoder, SymbolEncoder
from dsaecodec import integer
from dsaecodec.entropy import FactorisedCoder, GaussianCoder
from dsaecodec.integer import IntegerGain
from dsaecodec.models.base import CodecConfig, CodecModel, Streams
from dsaecodec.models.layers import (
    analysis_transform,
    check_frame_size,
    conv,
    drain,
    each_frame,
    framewise,
    gain,
    global_analysis,
    global_synthesis,
    log_gains,
    nearest_level,
    synthesis_transform,
)

HYPER_STRIDE = 4  # down-sampling of h_a relative to y


@dataclass
class FrameConfig(CodecConfig):
    """Sizes of a frame-by-frame VAE: `channels` (N) for g_a, g_s, h_a, h_s, y and z.
    `lambdas[q]` weights distortion (MSE on 0..255 pixels) against bits per pixel at quality q."""

    channels: int = 64
    lambdas: tuple[float, ...] = field(default=(0.0016, 0.0032, 0.0064, 0.0128, 0.0256))
    frame_size: int = 0  # 0: latent maps at 1/16 of N channels, any frame size; S: vectors, S x S frames only
    latent_channels: int = 256  # vector latents only: the size C_y of y_t and z_t

    vector_fields = ("frame_size", "latent_channels")  # saved only for vector latents


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    """5x5 transposed convolution that exactly doubles the size."""
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class FrameVAE(CodecModel):
    name_prefix = "frame"

    def __init__(self, config: FrameConfig):
        super().__init__()
        check_frame_size(config.frame_size)
        self.config = config
        n = config.channels
        if config.frame_size:
            c = config.latent_channels
            self.g_a = nn.Sequential(global_analysis(n, config.frame_size), conv(4 * n, c, 1))
            self.g_s = global_synthesis(c, n, config.frame_size)
            self.h_a = nn.Sequential(conv(c, c, 1), nn.ReLU(), conv(c, c, 1))
            self.h_s = nn.Sequential(conv(c, c, 1), nn.ReLU(), conv(c, c, 1))
        else:
            c = n
            self.g_a = analysis_transform(n)
            self.g_s = synthesis_transform(n, n)
            self.h_a = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n, 5, 2), nn.ReLU(), conv(n, n, 5, 2))
            self.h_s = nn.Sequential(_deconv(n, n), nn.ReLU(), _deconv(n, n), nn.ReLU(), conv(n, n))
        self.y_log_gain = nn.Parameter(log_gains(config.lambdas, c, vector=bool(config.frame_size)))
        self.z_log_gain = nn.Parameter(log_gains(config.lambdas, c, vector=bool(config.frame_size)))
        self.z_entropy = nn.ModuleList(FactorisedCoder(c) for _ in config.lambdas)
        self.y_coder = GaussianCoder()

    @property
    def hyper_stride(self) -> int:
        """Down-sampling of h_a relative to y (vector latents: 1, a vector's hyper-latent is a vector)."""
        return 1 if self.frame_size else HYPER_STRIDE

    # --- transforms -------------------------------------------------------------------------------
    def hyper_analyse(self, y: Tensor) -> Tensor:
        """y (B, N, h, w) -> z (B, N, ceil(h/4), ceil(w/4)), y zero-padded to a multiple of 4
        (vector latents: y and z both (B, C_y, 1, 1))."""
        h, w = y.shape[-2:]
        pad = (0, -w % self.hyper_stride, 0, -h % self.hyper_stride)
        return self.h_a(F.pad(y.abs(), pad))

    def hyper_synthesise(self, z_hat: Tensor, shape: tuple[int, int]) -> Tensor:
        """z_hat (B, N, h', w') -> std of y (B, N, h, w) in the physical domain, cropped to `shape`."""
        return F.softplus(self.h_s(z_hat))[..., : shape[0], : shape[1]].contiguous()

    # --- training ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, quality: int) -> dict[str, Tensor]:
        """Training pass with noise for the rate and straight-through rounding for the decoder.

        In eval mode the rate is that of the rounded latents (an estimate of the coded bits).
        Returns x_hat (B, T, 3, H, W), f_bits (always 0: no static latent) and z_bits (y and hyper-latent
        bits, summed over the batch).
        """
        b, t = x.shape[:2]
        y = self.g_a(x.flatten(0, 1))
        z_hat, z_bits = self.z_entropy[nearest_level(quality)](self.hyper_analyse(y), gain(self.z_log_gain, quality))
        y_hat, y_bits = self.y_coder.forward(y, None, self.hyper_synthesise(z_hat, y.shape[-2:]),
                                             gain(self.y_log_gain, quality), self.training)
        x_hat = self.g_s(y_hat).unflatten(0, (b, t))
        return {"x_hat": x_hat, "f_bits": x.new_zeros(()), "z_bits": z_bits + y_bits}

    def aux_loss(self) -> Tensor:
        """Loss of the quantiles of the hyper-latent densities (trained by a separate optimiser, as in
        CompressAI)."""
        return sum(coder.loss() for coder in self.z_entropy)

    def update_tables(self) -> None:
        """Build the integer CDF tables of the hyper-latent densities; call before saving weights (vector
        latents: their range first fitted to the density, as in the global DSAE)."""
        for coder in self.z_entropy:
            coder.update(refit_quantiles=bool(self.frame_size))

    # --- coding one segment -----------------------------------------------------------------------
    def _y_hats(self, z_symbols: Tensor, quality: float, shape: tuple[int, int],
                take_y: Callable[[int, Tensor, IntegerGain], Tensor]) -> Iterator[Tensor]:
        """The decoder's path from the hyper-latents' table symbols (T, N, h', w') to y_hat_t (1, N, h, w), float32,
        frame by frame (a generator: frame t's y is taken when y_hat_t is asked for).

        The hyper-synthesis runs in integer arithmetic (integer.py), so that the scale indices of y are the same
        on every machine. `take_y(t, index, y_gain)` returns frame t's integer symbols of y (1, N, h, w) under the
        zero-mean Gaussians of those indices: the encoder codes them, the decoder decodes them, `sample` draws
        them. (Frame by frame, the symbols are coded in the order of the whole (T, N, h, w) tensor.)
        """
        z_gain = integer.cached(self, ("z_gain", quality), lambda: IntegerGain(self.z_log_gain, quality))
        y_gain = integer.cached(self, ("y_gain", quality), lambda: IntegerGain(self.y_log_gain, quality))
        h_s = integer.cached(self, "h_s", lambda: integer.IntegerSequential(self.h_s))
        z_hat = self.z_entropy[nearest_level(quality)].dequantise_fixed(z_symbols, z_gain)
        for t in range(z_hat.shape[0]):
            scale_raw = h_s(z_hat[t:t + 1])[..., : shape[0], : shape[1]]
            yield integer.to_float(y_gain.dequantise(take_y(t, y_gain.softplus_index(scale_raw), y_gain))).contiguous()

    def _synthesise_frames(self, y_hats: Iterable[Tensor]) -> Iterator[Tensor]:
        """Frames (3, 16h, 16w), uint8 pixels, one per y_hat_t (1, N, h, w), each synthesised when asked for."""
        for y_hat in y_hats:
            yield framewise(self.g_s, y_hat, pixels=True)[0]

    @torch.no_grad()
    def compress_segment(self, x: Iterable[Tensor], quality: float,
                         reconstruct: bool = True) -> tuple[Streams, Tensor | None]:
        """Frames (T, 3, H, W), or any iterable of (3, H, W) frames read once in order, uint8 pixels or float in
        [0, 1] -> (coded streams, all dynamic; x_hat (T, 3, H, W), uint8 pixels computed on the decoder's path, or
        None unless `reconstruct`). The frames are not held; their latents y are (the hyper-latents of the whole
        segment are coded first)."""
        y = torch.cat(each_frame(self.g_a, x))
        encoder = SymbolEncoder()
        z_symbols = self.z_entropy[nearest_level(quality)].encode_symbols(
            self.hyper_analyse(y), gain(self.z_log_gain, quality), encoder)
        y_hats = self._y_hats(z_symbols, quality, y.shape[-2:], lambda t, index, y_gain:
                              self.y_coder.encode_symbols(y_gain.quantise(y[t:t + 1]), index, encoder))
        x_hat = torch.stack(list(self._synthesise_frames(y_hats))) if reconstruct else drain(y_hats)
        symbols = self.symbol_counts(y.shape[0], y.shape[-2:])[1]
        return Streams(frames=y.shape[0], dynamic=encoder.to_bytes(), dynamic_symbols=symbols), x_hat

    @torch.no_grad()
    def decompress_frames(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Iterator[Tensor]:
        """A coded segment -> its frames (3, 16h, 16w), uint8 pixels, one at a time; `shape` = (h, w) of the latents."""
        decoder = SymbolDecoder(streams.dynamic)
        z_symbols = self.z_entropy[nearest_level(quality)].decode_symbols(
            decoder, (streams.frames, *self._hyper_shape(shape)))
        yield from self._synthesise_frames(self._y_hats(z_symbols, quality, shape, lambda t, index, y_gain:
                                                        self.y_coder.decode_symbols(decoder, index)))

    @torch.no_grad()
    def sample(self, frames: int, quality: float, shape: tuple[int, int], rng: np.random.Generator) -> Tensor:
        """Frames (T, 3, 16h, 16w), uint8 pixels, drawn from the priors, each frame independently: its hyper-latent
        from the learned density, then y from the Gaussian that the hyper-latent gives."""
        z_symbols = self.z_entropy[nearest_level(quality)].sample_symbols((frames, *self._hyper_shape(shape)), rng)
        return torch.stack(list(self._synthesise_frames(self._y_hats(
            z_symbols, quality, shape, lambda t, index, y_gain: self.y_coder.sample_symbols(index, rng)))))

    def symbol_counts(self, frames: int, shape: tuple[int, int]) -> tuple[int, int]:
        """Number of f and z symbols a segment of `frames` frames with latents of `shape` must hold."""
        h, w = shape
        hh, hw = self._hyper_shape(shape)
        return 0, frames * self.z_log_gain.shape[1] * (h * w + hh * hw)

    def _hyper_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        return -(-shape[0] // self.hyper_stride), -(-shape[1] // self.hyper_stride)
