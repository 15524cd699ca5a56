"""Entropy-model pieces shared by every model: the ConvLSTM prior, the scale table, quantisation helpers.

Conventions. A latent `y` lives in its *physical* domain (what the decoder consumes). For quality level
`q` it is coded in the *gained* domain `y * gain[q]`, where the quantisation step is 1. Symbols are
mean-centred integers `round(y * gain - mu * gain)`, coded under a zero-mean Gaussian whose standard deviation
is `SCALE_TABLE[scale_index]`; only the integer `scale_index` has to match between encoder and decoder.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from bitstream.coder import SCALE_TABLE as _SCALE_TABLE_NP
from bitstream.coder import SYMBOL_BOUND

SCALE_TABLE = torch.tensor(_SCALE_TABLE_NP, dtype=torch.float32)
SCALE_MIN = float(_SCALE_TABLE_NP[0])
LIKELIHOOD_MIN = 1e-9


@contextlib.contextmanager
def codec_threads() -> Iterator[None]:
    """Run the block with one intra-op torch thread.

    PyTorch's CPU kernels (transposed convolutions, GDN) round differently with different thread
    counts. The codec pins the thread count so that the decoded frames and every entropy parameter
    are the same whatever `torch.set_num_threads` the caller chose.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def scale_index(scale: Tensor) -> Tensor:
    """Index (int64, same shape) of the smallest table entry >= `scale` (gained domain), clipped to the table."""
    table = SCALE_TABLE.to(scale.device)
    return torch.bucketize(scale.clamp_min(SCALE_MIN), table[:-1])


def sample_gaussian_symbols(index: Tensor, rng: np.random.Generator) -> Tensor:
    """Mean-centred symbols (int32, same shape and device as `index`) drawn from the quantised Gaussians
    N(0, SCALE_TABLE[index]) that the coder would code them under (sampling from a prior)."""
    scale = _SCALE_TABLE_NP[index.flatten().cpu().numpy()]
    symbols = np.clip(np.round(rng.normal(0.0, scale)), -SYMBOL_BOUND, SYMBOL_BOUND).astype(np.int32)
    return torch.from_numpy(symbols).reshape(index.shape).to(index.device)


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def centred_symbols(y_gained: Tensor, mu_gained: Tensor) -> Tensor:
    """Integer symbols `clamp(round(y - mu), ±SYMBOL_BOUND)` as int32 (same shape)."""
    return torch.round(y_gained - mu_gained).clamp(-SYMBOL_BOUND, SYMBOL_BOUND).to(torch.int32)


def gaussian_likelihood(y_gained: Tensor, mu_gained: Tensor, scale_gained: Tensor) -> Tensor:
    """P(bin of width 1 around y) under N(mu, scale), gained domain; lower-bounded for a finite rate."""
    scale = scale_gained.clamp_min(SCALE_MIN)
    value = (y_gained - mu_gained).abs()
    upper = 0.5 * torch.erfc(-(0.5 - value) / (scale * 2**0.5))
    lower = 0.5 * torch.erfc(-(-0.5 - value) / (scale * 2**0.5))
    return (upper - lower).clamp_min(LIKELIHOOD_MIN)


def bits(likelihood: Tensor) -> Tensor:
    """Total information content in bits of a likelihood tensor."""
    return -torch.log2(likelihood).sum()


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: input (B, C_in, h, w), state two (B, C_hidden, h, w) maps."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2)

    def zero_state(self, like: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = like.shape
        zeros = like.new_zeros(b, self.hidden_channels, h, w)
        return zeros, zeros

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class DynamicsPrior(nn.Module):
    """Stochastic ConvLSTM prior p(z_t | z_<t) = N(mu_t, scale_t), in the physical domain.

    The LSTM reads the dequantised previous latent `z_hat_{t-1}` (zeros at t = 1) and predicts
    the mean and scale of `z_t`; with `kernel_size=1` it is a plain LSTM per position (vector latents).
    It never sees the static latent `f`, so the `z` stream of a file
    can be decoded (and swapped) independently of `f`.
    """

    def __init__(self, z_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.cell = ConvLSTMCell(z_channels, hidden_channels, kernel_size)
        self.head = nn.Sequential(
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size, padding=kernel_size // 2),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden_channels, 2 * z_channels, kernel_size, padding=kernel_size // 2),
        )

    def step(self, z_prev: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """One step: `z_prev` (B, C_z, h, w) -> (mu, scale) of the next latent, each (B, C_z, h, w), and the new state."""
        if state is None:
            state = self.cell.zero_state(z_prev)
        state = self.cell(z_prev, state)
        mu, scale_raw = self.head(state[0]).chunk(2, dim=1)
        return mu, F.softplus(scale_raw), state


@torch.no_grad()
def fit_quantiles(bottleneck: EntropyBottleneck, bound: float = 1e4, iterations: int = 60) -> None:
    """Set the quantiles of an `EntropyBottleneck` (its median, and the tails its tables cover) to those of its
    learned density, found by bisection on the monotone cumulative in [-bound, bound].

    This is the point the auxiliary loss moves the quantiles towards by small optimiser steps; where the
    latents' range grows faster than those steps (vector latents: +-190 measured against tables of +-12), values
    outside the tables are clamped when coded.
    """
    target = bottleneck.target.to(bottleneck.quantiles).expand_as(bottleneck.quantiles)
    low = torch.full_like(bottleneck.quantiles, -bound)
    high = torch.full_like(bottleneck.quantiles, bound)
    for _ in range(iterations):
        middle = (low + high) / 2
        above = bottleneck._logits_cumulative(middle, stop_gradient=True) > target
        high, low = torch.where(above, middle, high), torch.where(above, low, middle)
    bottleneck.quantiles.copy_((low + high) / 2)


def bottleneck_pmfs(bottleneck: EntropyBottleneck) -> list[np.ndarray]:
    """Per-channel categorical tables of an updated `EntropyBottleneck`.

    `pmfs[c]` is float64 (K_c,) over symbols 0..K_c-1, which stand for the integers `_offset[c] + k`
    relative to the channel's median (gained domain). Built from the integer CDF tables stored with
    the weights, so encoder and decoder see the same numbers.
    """
    cdf = bottleneck._quantized_cdf.cpu().numpy().astype(np.int64)
    lengths = bottleneck._cdf_length.cpu().numpy() - 2  # drop CompressAI's overflow symbol
    return [np.diff(cdf[c, : n + 1]).astype(np.float64) for c, n in enumerate(lengths)]
