"""Priors shared by the models: the ConvLSTM cell and the stochastic prior of the dynamic latents, their integer
counterparts that coding runs (dsaecodec/integer.py), and the thread rule under which the codec runs the rest.
The entropy coders they parametrise are in dsaecodec/entropy.py.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsaecodec import integer
from dsaecodec.entropy import in_float32
from dsaecodec.integer import FRACTION_BITS, INPUT_BOUND, IntegerConv2d, IntegerSequential, round_shift_


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


class IntegerConvLSTMCell:
    """A `ConvLSTMCell` in integer arithmetic: input and state int64 activations (value / 2^FRACTION_BITS).

    The gates' convolution is an `IntegerConv2d`, sigmoid and tanh are tables, products are rounded half up.
    The cell state is clamped to +-ACTIVATION_LIMIT (it grows by at most 1 per step; the float cell is not
    clamped, but the next convolution would clamp its input there anyway).
    """

    def __init__(self, cell: ConvLSTMCell):
        self.hidden_channels = cell.hidden_channels
        self.gates = IntegerConv2d(cell.gates)
        self.activations = integer.Tables([("sigmoid", 3 * cell.hidden_channels), ("tanh", cell.hidden_channels)])

    def zero_state(self, like: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = like.shape
        zeros = like.new_zeros(b, self.hidden_channels, h, w, dtype=torch.int64)
        return zeros, zeros

    def __call__(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        i, f, o, g = self.activations(self.gates(torch.cat([x, h], dim=1))).chunk(4, dim=1)  # one lookup for four
        c = round_shift_((f * c).add_(i * g), FRACTION_BITS).clamp_(-INPUT_BOUND, INPUT_BOUND)
        h = round_shift_(o * integer.tanh(c), FRACTION_BITS)
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

    @in_float32
    def step(self, z_prev: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """One step: `z_prev` (B, C_z, h, w) -> (mu, scale) of the next latent, each (B, C_z, h, w), and the new state."""
        if state is None:
            state = self.cell.zero_state(z_prev)
        state = self.cell(z_prev, state)
        mu, scale_raw = self.head(state[0]).chunk(2, dim=1)
        return mu, F.softplus(scale_raw), state

    def integer(self) -> IntegerDynamicsPrior:
        """The prior in integer arithmetic, from the current weights, for coding."""
        return IntegerDynamicsPrior(self)


class IntegerDynamicsPrior:
    """`DynamicsPrior.step` in integer arithmetic, what the codec runs: the same on every machine.

    `step(z_prev, state)`: z_prev (B, C_z, h, w) int64 activations (the dequantised previous latent, value /
    2^FRACTION_BITS) -> (mu, int64 activations: the mean the symbols are centred on; scale_raw, int64 activations:
    the scale is `integer.softplus(scale_raw)`, whose indices `IntegerGain.softplus_index` gives; the new state, two
    int64 activation maps).
    """

    def __init__(self, prior: DynamicsPrior):
        self.cell = IntegerConvLSTMCell(prior.cell)
        self.head = IntegerSequential(prior.head)

    def step(self, z_prev: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        if state is None:
            state = self.cell.zero_state(z_prev)
        state = self.cell(z_prev, state)
        mu, scale_raw = self.head(state[0]).chunk(2, dim=1)
        return mu, scale_raw, state
