"""The entropy coders every model uses: a learned factorised density and a Gaussian with a mean and a scale index.

Domains. A latent `y` lives in its *physical* domain (what the networks consume). Quality level q codes it
in the *gained* domain `y * gain`, where `gain` (1, C, 1, 1) holds the level's per-channel gains and the
quantisation step is 1. The coders take physical latents and the gain, and give back physical latents:

    coder(y, ...) -> (y_hat, bits)     training: y_hat rounded straight-through, bits under additive uniform noise
                                       (eval mode: bits of the rounded latent, an estimate of the coded size)
    coder.encode(y, ..., SymbolEncoder) -> y_hat     y_hat exactly as decode gives it
    coder.decode(SymbolDecoder, ...)    -> y_hat
    coder.sample(..., rng)              -> y_hat     drawn from the coded density

`FactorisedCoder`: one learned density per channel (Ballé et al. 2018, appendix 6.1), the model of CompressAI's
`EntropyBottleneck`, with its parameter and buffer names, so weights trained with it load unchanged. Symbols
are integers around the channel medians, coded under integer CDF tables that `update` builds and the weights
carry, so encoder and decoder see the same numbers.

`GaussianCoder`: mean-centred integers `round(y * gain - mu * gain)` under zero-mean Gaussians whose standard
deviation is `SCALE_TABLE[index]`, `index` the smallest table entry >= `scale * gain`; only the integer index
(and the mean, where the dequantised latent feeds a recurrence) has to match between encoder and decoder.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitstream.coder import SCALE_TABLE as _SCALE_TABLE_NP
from bitstream.coder import SYMBOL_BOUND, SymbolDecoder, SymbolEncoder
from dsaecodec import integer
from dsaecodec.integer import IntegerGain

SCALE_TABLE = torch.tensor(_SCALE_TABLE_NP, dtype=torch.float32)
SCALE_MIN = float(_SCALE_TABLE_NP[0])
LIKELIHOOD_MIN = 1e-9  # probabilities are bounded below by this, so that every rate is finite
CDF_PRECISION = 16  # bits of the integer CDF tables of FactorisedCoder


def in_float32(method: Callable) -> Callable:
    """Decorator: run a training-time method of an entropy model with autocast off and its tensor arguments in
    float32, so that bf16 training (`dsaecodec train --bf16`) rounds only the transforms, never a likelihood or
    the prior that sets it. Float32 arguments pass unchanged (`.float()` returns the tensor itself)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        args = [a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return method(self, *args, **kwargs)

    return wrapper


def scale_index(scale: Tensor) -> Tensor:
    """Index (int64, same shape) of the smallest table entry >= `scale` (gained domain), clipped to the table."""
    table = SCALE_TABLE.to(scale.device)
    return torch.bucketize(scale.clamp_min(SCALE_MIN).contiguous(), table[:-1])


def ste_round(x: Tensor) -> Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def bits(likelihood: Tensor) -> Tensor:
    """Total information content in bits (a scalar) of a likelihood tensor."""
    return -torch.log2(likelihood).sum()


class _LowerBoundFunction(torch.autograd.Function):
    """max(x, bound) whose gradient also passes below the bound when it pushes x up (towards the bound)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad_output < 0)
        return passes * grad_output, None


class LowerBound(nn.Module):
    """`max(x, bound)` with a gradient that lets values below the bound rise (CompressAI's `LowerBound`);
    the bound is a float32 buffer (1,) named `bound`."""

    bound: Tensor

    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return _LowerBoundFunction.apply(x, self.bound)


def quantized_cdf(pmf: np.ndarray, precision: int = CDF_PRECISION) -> np.ndarray:
    """Integer CDF int32 (K + 1,) from 0 to 2^precision of a float32 pmf (K,), every symbol given at least one
    unit: CompressAI's `pmf_to_quantized_cdf` (after ryg_rans), step for step, so it builds the same tables.

    Frequencies are the pmf scaled to 2^precision and rounded half away from zero, then rescaled (integer
    division) to sum to at most 2^precision, the last symbol taking the remainder; a symbol left with no unit
    takes one from the symbol of the smallest frequency above one (the first such).
    """
    pmf = np.asarray(pmf, dtype=np.float32)
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        raise ValueError("pmf must be finite and nonnegative")
    units = 1 << precision
    frequency = np.floor(pmf.astype(np.float64) * units + 0.5).astype(np.int64)  # exact: units is a power of 2
    total = int(frequency.sum())
    if total == 0:
        raise ValueError("pmf must have at least one element that rounds to a nonzero frequency")
    cdf = np.concatenate([[0], np.cumsum(units * frequency // total)])
    cdf[-1] = units
    for i in range(len(pmf)):
        if cdf[i] == cdf[i + 1]:
            frequencies = np.diff(cdf)
            donor = int(np.argmin(np.where(frequencies > 1, frequencies, units + 1)))
            if frequencies[donor] <= 1:
                raise ValueError(f"a pmf of {len(pmf)} symbols does not fit {precision}-bit frequencies")
            if donor < i:
                cdf[donor + 1: i + 1] -= 1
            else:
                cdf[i + 1: donor + 1] += 1
    return cdf.astype(np.int32)


class FactorisedCoder(nn.Module):
    """A learned density per channel for latents (B, C, h, w), coded channel by channel.

    The cumulative of channel c is sigmoid(g_c(v)), g_c a monotone chain of small layers (widths 1 -> filters
    -> 1): `matrices[i]` (C, out, in) through softplus, `biases[i]` (C, out, 1), and between layers
    `factors[i]` (C, out, 1) adding tanh(factor) * tanh(logits). `quantiles` (C, 1, 3) holds each channel's
    lower tail, median and upper tail, trained towards `target` by `loss()` (the auxiliary loss); `update()`
    turns the density between the tails into the integer tables `_quantized_cdf` (C, L_max + 2),
    `_cdf_length` (C,) and `_offset` (C,) that coding uses.
    """

    _offset: Tensor
    _quantized_cdf: Tensor
    _cdf_length: Tensor

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9):
        super().__init__()
        # Registration order fixes the order of parameters and state-dict entries (as in CompressAI's files),
        # and the bias initialisation below is the only draw from the random generator, as there.
        self.likelihood_lower_bound = LowerBound(LIKELIHOOD_MIN)
        self.register_buffer("_offset", torch.IntTensor())
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())
        self.channels, self.filters = int(channels), tuple(int(f) for f in filters)
        widths = (1, *self.filters, 1)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i, (width_in, width_out) in enumerate(zip(widths, widths[1:])):
            self.matrices.append(nn.Parameter(torch.full((channels, width_out, width_in),
                                                         float(np.log(np.expm1(1 / scale / width_out))))))
            self.biases.append(nn.Parameter(torch.empty(channels, width_out, 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, width_out, 1)))
        self.quantiles = nn.Parameter(torch.Tensor([-init_scale, 0, init_scale]).repeat(channels, 1, 1))
        tail = np.log(2 / tail_mass - 1)
        self.register_buffer("target", torch.Tensor([-tail, 0, tail]))

    # --- the density ------------------------------------------------------------------------------
    def _logits_cumulative(self, values: Tensor, stop_gradient: bool) -> Tensor:
        """Logits of the cumulative at `values` (C, 1, N), gained domain -> (C, 1, N)."""
        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _likelihood(self, values: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """P(bin of width 1 around `values`) (C, 1, N), and the logits of its lower and upper edges."""
        lower = self._logits_cumulative(values - 0.5, stop_gradient)
        upper = self._logits_cumulative(values + 0.5, stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def _rate_likelihood(self, y_gained: Tensor) -> Tensor:
        """Likelihoods (B, C, h, w) of `y_gained` plus uniform noise (training) or rounded around the medians
        (eval), lower-bounded."""
        channels_first = y_gained.transpose(0, 1).contiguous()
        values = channels_first.reshape(self.channels, 1, -1)
        if self.training:
            values = values + torch.empty_like(values).uniform_(-0.5, 0.5)
        else:
            medians = self.quantiles[:, :, 1:2]
            values = torch.round(values - medians) + medians
        likelihood = self.likelihood_lower_bound(self._likelihood(values)[0])
        return likelihood.reshape(channels_first.shape).transpose(0, 1).contiguous()

    def _medians(self) -> Tensor:
        """The channel medians (1, C, 1, 1), gained domain, without gradient."""
        return self.quantiles[:, 0, 1].detach()[None, :, None, None]

    @in_float32
    def forward(self, y: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        """Training step: y (B, C, h, w) physical, gain (1, C, 1, 1) -> (y_hat (B, C, h, w), rounded around
        the medians with a straight-through gradient; bits, a scalar)."""
        # y * gain is formed once per use, as the training step always has: the two gradients are then added
        # after the multiplication, which keeps the trained weights of every recipe bit for bit.
        likelihood = self._rate_likelihood(y * gain)
        medians = self._medians()
        return (ste_round(y * gain - medians) + medians) / gain, bits(likelihood)

    def loss(self) -> Tensor:
        """Auxiliary loss (a scalar): how far the quantiles' cumulative logits are from their targets. Only the
        quantiles get its gradient; train them with their own optimiser."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    # --- the tables ---------------------------------------------------------------------------------
    @torch.no_grad()
    def fit_quantiles(self, bound: float = 1e4, iterations: int = 60) -> None:
        """Set the quantiles (the median, and the tails the tables cover) to those of the learned density,
        found by bisection on the monotone cumulative in [-bound, bound].

        This is the point the auxiliary loss moves the quantiles towards by small optimiser steps; where the
        latents' range grows faster than those steps (vector latents: +-190 measured against tables of +-12),
        values outside the tables are clamped when coded.
        """
        target = self.target.to(self.quantiles).expand_as(self.quantiles)
        low = torch.full_like(self.quantiles, -bound)
        high = torch.full_like(self.quantiles, bound)
        for _ in range(iterations):
            middle = (low + high) / 2
            above = self._logits_cumulative(middle, stop_gradient=True) > target
            high, low = torch.where(above, middle, high), torch.where(above, low, middle)
        self.quantiles.copy_((low + high) / 2)

    @torch.no_grad()
    def update(self, refit_quantiles: bool = False) -> None:
        """Build the integer tables from the density between the quantiles' tails (after `fit_quantiles`
        if `refit_quantiles`); call before coding or saving weights.

        Channel c gets symbols for the integers `_offset[c] + k`, k = 0..L_c - 1, around its median, plus one
        overflow symbol for the mass outside (never coded: values are clamped into the table instead).
        """
        if refit_quantiles:
            self.fit_quantiles()
        medians = self.quantiles[:, 0, 1]
        below = torch.ceil(medians - self.quantiles[:, 0, 0]).int().clamp(min=0)
        above = torch.ceil(self.quantiles[:, 0, 2] - medians).int().clamp(min=0)
        lengths = below + above + 1
        samples = torch.arange(int(lengths.max()), device=medians.device) + (medians - below)[:, None, None]
        pmf, lower, upper = self._likelihood(samples, stop_gradient=True)  # each (C, 1, L_max)
        tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        tables = torch.zeros(self.channels, samples.shape[-1] + 2, dtype=torch.int32)
        for c, length in enumerate(lengths.tolist()):
            cdf = quantized_cdf(torch.cat([pmf[c, 0, :length], tail_mass[c]]).cpu().numpy())
            tables[c, : len(cdf)] = torch.from_numpy(cdf)
        self._offset, self._quantized_cdf, self._cdf_length = -below, tables.to(medians.device), lengths + 2

    def pmfs(self) -> list[np.ndarray]:
        """Per-channel categorical tables from the integer CDFs: `pmfs[c]` is float64 (L_c,) over symbols
        0..L_c - 1 (the overflow symbol dropped)."""
        if self._quantized_cdf.numel() == 0:
            raise ValueError("the entropy tables are not built: call update() first")
        cdf = self._quantized_cdf.cpu().numpy().astype(np.int64)
        lengths = self._cdf_length.cpu().numpy() - 2
        return [np.diff(cdf[c, : n + 1]).astype(np.float64) for c, n in enumerate(lengths)]

    # --- coding -------------------------------------------------------------------------------------
    # The *_symbols methods code table symbols (B, C, h, w), int64: value (symbol + `_offset[c]`) + median, gained
    # domain. `encode`, `decode` and `sample` dequantise them in float (physical); `dequantise_fixed` exactly, for
    # a network whose output the entropy decoder depends on (the frame VAE's hyper-synthesis).
    def _dequantise(self, symbols: Tensor, gain: Tensor) -> Tensor:
        """Table symbols (B, C, h, w) -> y_hat, physical, float32 and contiguous: the encoder's symbols inherit
        g_a's channels-last strides, and convolutions round differently per layout."""
        offsets = self._offset.long()[None, :, None, None]
        return (symbols + offsets + self._medians()).float().contiguous() / gain

    def dequantise_fixed(self, symbols: Tensor, gain: IntegerGain) -> Tensor:
        """Table symbols (B, C, h, w) -> y_hat, physical, as int64 activations (integer.py), the same on every
        machine: (symbol + offset + median) * step, the median rounded to the activations' grid."""
        offsets = self._offset.long()[None, :, None, None]
        return gain.dequantise(symbols + offsets, integer.to_fixed(self._medians()))

    def encode_symbols(self, y: Tensor, gain: Tensor, coder: SymbolEncoder) -> Tensor:
        """Code y (B, C, h, w), physical, into `coder`, each channel's values in one call, clamped into the
        channel's table; returns the table symbols."""
        pmfs = self.pmfs()
        symbols = torch.round(y * gain - self._medians()).long() - self._offset.long()[None, :, None, None]
        largest = torch.tensor([len(pmf) - 1 for pmf in pmfs], device=y.device)[None, :, None, None]
        symbols = torch.minimum(symbols.clamp_min(0), largest)
        for c, pmf in enumerate(pmfs):
            coder.categorical(symbols[:, c].flatten().cpu().numpy(), pmf)
        return symbols

    def decode_symbols(self, coder: SymbolDecoder, shape: tuple[int, int, int]) -> Tensor:
        """Decode the table symbols (B, C, h, w), `shape` = (B, h, w), on this coder's device."""
        count = int(np.prod(shape))
        return torch.stack([torch.from_numpy(coder.categorical(pmf, count)).long().reshape(shape)
                            for pmf in self.pmfs()], dim=1).to(self._offset.device)

    def sample_symbols(self, shape: tuple[int, int, int], rng: np.random.Generator) -> Tensor:
        """Table symbols (B, C, h, w), `shape` = (B, h, w), drawn from the coded tables, on this coder's device."""
        symbols = np.stack([rng.choice(len(pmf), size=shape, p=pmf / pmf.sum()) for pmf in self.pmfs()], axis=1)
        return torch.from_numpy(symbols).to(self._offset.device)

    def encode(self, y: Tensor, gain: Tensor, coder: SymbolEncoder) -> Tensor:
        """Code y (B, C, h, w), physical (see `encode_symbols`); returns y_hat as the decoder has it."""
        return self._dequantise(self.encode_symbols(y, gain, coder), gain)

    def decode(self, coder: SymbolDecoder, shape: tuple[int, int, int], gain: Tensor) -> Tensor:
        """Decode y_hat (B, C, h, w), physical, `shape` = (B, h, w)."""
        return self._dequantise(self.decode_symbols(coder, shape), gain)

    def sample(self, shape: tuple[int, int, int], gain: Tensor, rng: np.random.Generator) -> Tensor:
        """y_hat (B, C, h, w), physical, `shape` = (B, h, w), drawn from the coded tables (as decode would
        give it)."""
        return self._dequantise(self.sample_symbols(shape, rng), gain)


class GaussianCoder:
    """Latents coded as mean-centred integers under zero-mean Gaussians with a scale index (any shape).

    `mu` and `scale` (physical, broadcastable to y) come from the model's prior; `mu=None` is a zero mean.
    Not an `nn.Module`: it holds no state, and a module would add an entry to every saved state dict.
    """

    @staticmethod
    def likelihood(y_gained: Tensor, mu_gained: Tensor | None, scale_gained: Tensor) -> Tensor:
        """P(bin of width 1 around y) under N(mu, scale), gained domain, lower-bounded (same shape as y)."""
        scale = scale_gained.clamp_min(SCALE_MIN)
        value = (y_gained if mu_gained is None else y_gained - mu_gained).abs()
        upper = 0.5 * torch.erfc(-(0.5 - value) / (scale * 2**0.5))
        lower = 0.5 * torch.erfc(-(-0.5 - value) / (scale * 2**0.5))
        return (upper - lower).clamp_min(LIKELIHOOD_MIN)

    @in_float32
    def forward(self, y: Tensor, mu: Tensor | None, scale: Tensor, gain: Tensor,
                training: bool) -> tuple[Tensor, Tensor]:
        """Training step -> (y_hat, rounded around mu with a straight-through gradient; bits, a scalar, of
        y plus uniform noise if `training`, else of y_hat)."""
        y_gained = y * gain
        mu_gained = None if mu is None else mu * gain
        y_rounded = ste_round(y_gained) if mu_gained is None else ste_round(y_gained - mu_gained) + mu_gained
        rate_proxy = y_gained + torch.empty_like(y_gained).uniform_(-0.5, 0.5) if training else y_rounded
        rate = bits(self.likelihood(rate_proxy, mu_gained, scale * gain))
        return y_rounded / gain, rate

    @staticmethod
    def _coding_parameters(mu: Tensor | None, scale: Tensor, gain: Tensor) -> tuple[Tensor | None, Tensor]:
        """(mu_gained or None, scale index int64) as encoder and decoder both compute them."""
        return None if mu is None else mu * gain, scale_index(scale * gain)

    @staticmethod
    def _dequantise(symbols: Tensor, mu_gained: Tensor | None, gain: Tensor) -> Tensor:
        """Symbols (int) -> y_hat, physical, float32 and contiguous (one memory layout on both sides)."""
        y_hat_gained = symbols.float() if mu_gained is None else symbols.float() + mu_gained
        return y_hat_gained.contiguous() / gain

    # The *_symbols methods code integers under given scale indices (any shape, int64): the integer path, where
    # the model computes the indices and the dequantisation itself. encode / decode / sample take float means and
    # scales (a float prior's path; every shipped model codes through the integer one).
    @staticmethod
    def encode_symbols(symbols: Tensor, index: Tensor, coder: SymbolEncoder) -> Tensor:
        """Code integer-valued `symbols`, clamped to +-SYMBOL_BOUND, under the Gaussians of `index` (same shape);
        returns the clamped symbols (int64)."""
        symbols = symbols.clamp(-SYMBOL_BOUND, SYMBOL_BOUND).long()
        coder.gaussian(symbols.flatten().cpu().numpy(), index.flatten().cpu().numpy())
        return symbols

    @staticmethod
    def decode_symbols(coder: SymbolDecoder, index: Tensor) -> Tensor:
        """Decode the symbols (int64, the shape of `index`)."""
        symbols = torch.from_numpy(coder.gaussian(index.flatten().cpu().numpy())).long()
        return symbols.reshape(index.shape).to(index.device)

    @staticmethod
    def sample_symbols(index: Tensor, rng: np.random.Generator) -> Tensor:
        """Symbols (int64, the shape of `index`) drawn from the quantised Gaussians of `index`."""
        std = _SCALE_TABLE_NP[index.flatten().cpu().numpy()]
        symbols = np.clip(np.round(rng.normal(0.0, std)), -SYMBOL_BOUND, SYMBOL_BOUND).astype(np.int64)
        return torch.from_numpy(symbols).reshape(index.shape).to(index.device)

    def encode(self, y: Tensor, mu: Tensor | None, scale: Tensor, gain: Tensor, coder: SymbolEncoder) -> Tensor:
        """Code `round(y * gain - mu * gain)`, clamped to +-SYMBOL_BOUND, into `coder`; returns y_hat as the
        decoder has it."""
        mu_gained, index = self._coding_parameters(mu, scale, gain)
        centred = y * gain if mu_gained is None else y * gain - mu_gained
        symbols = self.encode_symbols(torch.round(centred), index, coder)
        return self._dequantise(symbols, mu_gained, gain)

    def decode(self, coder: SymbolDecoder, mu: Tensor | None, scale: Tensor, gain: Tensor) -> Tensor:
        """Decode y_hat of the shape of `scale * gain`, physical."""
        mu_gained, index = self._coding_parameters(mu, scale, gain)
        return self._dequantise(self.decode_symbols(coder, index), mu_gained, gain)

    def sample(self, mu: Tensor | None, scale: Tensor, gain: Tensor, rng: np.random.Generator) -> Tensor:
        """y_hat drawn from the quantised Gaussians the coder would code it under (as decode would give it)."""
        mu_gained, index = self._coding_parameters(mu, scale, gain)
        return self._dequantise(self.sample_symbols(index, rng), mu_gained, gain)
