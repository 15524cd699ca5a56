"""Baseline: a deterministic recurrent codec. No static latent; a ConvLSTM state carries the past.

The state is driven by what the decoder decoded last, so it is a deterministic function of the past.
Shapes, for frames (B, T, 3, H, W) with H, W multiples of 16:

    s_t        = ConvLSTM(e(p_{t-1}), s_{t-1})          h_t (B, C_h, H/16, W/16); e(p_0) := 0
    mu_t, sigma_t = prior(h_t)                           entropy parameters of y_t
    y_t        = latent(g_a(x_t), h_t)                   (B, C_y, H/16, W/16)
    x_hat_t    = g_s(y_hat_t, h_t)                       the DSAE's transforms g_a, g_s

What drives it, p_t, is the model's `state_from` option:
- "latents": the decoded latent and the state that decoded it, [y_hat_t, h_t], and `e` three 3x3 convolutions of
  them at 1/16. They determine x_hat_t = g_s(y_hat_t, h_t), so `e` can compute what the encoder of a reconstruction
  would (`distil_past` teaches it exactly that), and the decoding loop (e, ConvLSTM, prior; all at 1/16) stays
  small: g_s runs after it, in float, as the DSAE's does.
- "reconstructions" (also every weights file without the option): the clamped reconstruction x_hat_t, and `e`
  four 3x3 stride-2 convolutions of it. The loop then holds g_s, so g_s runs in exact integer arithmetic too
  (exact pixels everywhere, at several times the decode time of a float g_s: README, "Robustness").
y_t is coded as mean-centred integers round(y_t - mu_t) under zero-mean Gaussians with scale indexes,
as the DSAE codes z_t. Variable rate as in the DSAE: quality q multiplies each channel of y by a learned
gain. There is no static content, so a segment's static stream is empty and its dynamic stream
holds y_1:T. The encoder runs the decoder's loop (same code path, same shapes), so decoding is bit-exact.

`RNNConfig(frame_size=S)` is the baseline in the global DSAE's geometry (S x S frames only): g_a and g_s are
the global DSAE's DCGAN-style stacks, `e` of reconstructions is such a stack of width feature_channels / 4, and
y_t and the state are vectors held as 1 x 1 maps (the ConvLSTM with 1x1 kernels is an LSTM, `latent`, `prior`
and `e` of latents are MLPs).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitstream.coder import SymbolDecoder, SymbolEncoder
from dsaecodec import integer
from dsaecodec.entropy import GaussianCoder
from dsaecodec.integer import IntegerGain
from dsaecodec.models.base import CodecConfig, CodecModel, Streams
from dsaecodec.models.layers import (
    analysis_transform,
    check_frame_size,
    conv,
    drain,
    each_frame,
    gain,
    global_analysis,
    global_synthesis,
    log_gains,
    synthesis_transform,
    to_pixels,
)
from dsaecodec.priors import ConvLSTMCell, IntegerConvLSTMCell

State = tuple[Tensor, Tensor]


@dataclass
class RNNConfig(CodecConfig):
    """Sizes of the recurrent codec: `channels` for g_a and g_s, `latent_channels` for y_t, `hidden_channels`
    for the ConvLSTM, `feature_channels` for the encoder `e` of what drives it.
    `lambdas[q]` weights distortion (MSE on 0..255 pixels) against bits per pixel at quality q; `state_from` says
    what drives the state ("latents" or "reconstructions", see the module's docstring; files without it hold
    models trained on reconstructions)."""

    channels: int = 64
    latent_channels: int = 64
    hidden_channels: int = 64
    feature_channels: int = 32
    lambdas: tuple[float, ...] = field(default=(0.0016, 0.0032, 0.0064, 0.0128, 0.0256))
    frame_size: int = 0  # 0: latent maps at 1/16, any frame size; S: vector latents, S x S frames only
    state_from: str = "reconstructions"


class RNNCodec(CodecModel):
    name_prefix = "rnn"

    def __init__(self, config: RNNConfig):
        super().__init__()
        check_frame_size(config.frame_size)
        if config.frame_size and config.state_from == "reconstructions" and config.feature_channels % 4:
            raise ValueError(f"vector latents need feature_channels divisible by 4, got {config.feature_channels}")
        if config.state_from not in ("latents", "reconstructions"):
            raise ValueError(f"state_from is 'latents' or 'reconstructions', not {config.state_from!r}")
        self.config = config
        n, cy, ch, ce = config.channels, config.latent_channels, config.hidden_channels, config.feature_channels
        size = config.frame_size
        d, kernel = (4 * n, 1) if size else (n, 3)  # width of g_a's features; kernel of the recurrent maps
        self.g_a = global_analysis(n, size) if size else analysis_transform(n)
        self.latent = nn.Sequential(conv(d + ch, d, kernel), nn.LeakyReLU(0.1), conv(d, cy, kernel))
        self.g_s = global_synthesis(cy + ch, n, size) if size else synthesis_transform(cy + ch, n)
        if config.state_from == "latents":
            self.past = nn.Sequential(conv(cy + ch, d, kernel), nn.LeakyReLU(0.1), conv(d, d, kernel),
                                      nn.LeakyReLU(0.1), conv(d, ce, kernel))
        elif size:
            self.past = global_analysis(ce // 4, size)
        else:
            self.past = nn.Sequential(
                conv(3, ce, 3, 2), nn.LeakyReLU(0.1), conv(ce, ce, 3, 2), nn.LeakyReLU(0.1),
                conv(ce, ce, 3, 2), nn.LeakyReLU(0.1), conv(ce, ce, 3, 2),
            )
        self.cell = ConvLSTMCell(ce, ch, kernel)
        self.prior = nn.Sequential(conv(ch, ch, kernel), nn.LeakyReLU(0.1), conv(ch, 2 * cy, kernel))
        self.y_log_gain = nn.Parameter(log_gains(config.lambdas, cy, vector=bool(size)))
        self.y_coder = GaussianCoder()

    # --- the recurrence, shared by training, encoder and decoder ----------------------------------
    @property
    def reads_latents(self) -> bool:
        """Whether the decoded latents (not the reconstructions) drive the state."""
        return self.config.state_from == "latents"

    def past_input(self, previous: Tensor, hidden: Tensor) -> Tensor:
        """What `past` reads of the previous step: [y_hat, h] (latents) or x_hat (reconstructions)."""
        return torch.cat([previous, hidden], dim=1) if self.reads_latents else previous

    def advance(self, previous: Tensor | None, state: State | None, like: Tensor) -> State:
        """The state for the next frame, from the previous decoded latent y_hat (B, C_y, h, w), read with the
        state's h, or reconstruction (B, 3, H, W) in [0, 1] (`state_from`), or None before the first frame; `like`
        (B, *, h, w) gives batch and latent size."""
        if previous is None:
            b, _, h, w = like.shape
            inputs = like.new_zeros(b, self.config.feature_channels, h, w)
        else:
            inputs = self.past(self.past_input(previous, state[0]))
        return self.cell(inputs, state if state is not None else self.cell.zero_state(inputs))

    def entropy_parameters(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, std) of y_t (B, C_y, h, w) each, physical domain, from h_t."""
        mu, scale_raw = self.prior(hidden).chunk(2, dim=1)
        return mu, F.softplus(scale_raw)

    def infer_y(self, features: Tensor, hidden: Tensor) -> Tensor:
        """y_t (B, C_y, h, w) from g_a(x_t) (B, N, h, w) and h_t."""
        return self.latent(torch.cat([features, hidden], dim=1))

    def synthesise(self, y_hat: Tensor, hidden: Tensor) -> Tensor:
        """x_hat_t (B, 3, 16h, 16w), not clamped, from y_hat_t and h_t."""
        return self.g_s(torch.cat([y_hat, hidden], dim=1))

    # --- training ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, quality: int) -> dict[str, Tensor]:
        """Training pass with noise for the rate and straight-through rounding for the decoder.

        In eval mode the rate is that of the rounded latents (an estimate of the coded bits).
        Returns x_hat (B, T, 3, H, W), f_bits (always 0: no static latent) and z_bits (bits of y_1:T,
        summed over the batch). The state is driven by the model's own decoded latents or (clamped) reconstructions,
        as in coding.
        """
        b, t = x.shape[:2]
        features = self.g_a(x.flatten(0, 1)).unflatten(0, (b, t))
        y_gain = gain(self.y_log_gain, quality)
        state, previous, x_hats, y_bits = None, None, [], x.new_zeros(())
        for step in range(t):
            state = self.advance(previous, state, features[:, step])
            mu, scale = self.entropy_parameters(state[0])
            y_hat, step_bits = self.y_coder.forward(self.infer_y(features[:, step], state[0]), mu, scale, y_gain,
                                                    self.training)
            y_bits = y_bits + step_bits
            x_hat = self.synthesise(y_hat, state[0])
            x_hats.append(x_hat)
            previous = y_hat if self.reads_latents else x_hat.clamp(0, 1)
        return {"x_hat": torch.stack(x_hats, dim=1), "f_bits": x.new_zeros(()), "z_bits": y_bits}

    def aux_loss(self) -> Tensor:
        """No learned density, so no auxiliary loss: a constant zero."""
        return self.y_log_gain.new_zeros(())

    def update_tables(self) -> None:
        """Nothing to build: every symbol is coded under the fixed Gaussian scale table."""

    # --- coding one segment -----------------------------------------------------------------------
    def _roll_out(self, quality: float, frames: int, shape: tuple[int, int],
                  take_symbols: Callable[[int, Tensor, Tensor, Tensor, IntegerGain], Tensor],
                  pixels: bool = True) -> Iterator[Tensor | None]:
        """The decoder's loop, frame by frame with batch 1, in integer arithmetic (integer.py): the state, the means
        and scale indices of y (and the reconstructions, where the state reads them) are the same on every machine;
        where it reads the latents, g_s runs in float after the loop's step, as the DSAE's does.

        `take_symbols(t, h_t, mu, index, y_gain)` returns the integer symbols (1, C_y, h, w) of frame t, coded around
        the mean `mu` (int64 activations) under the scale indices `index`: the encoder codes them, the decoder decodes
        them, `sample` draws them; h_t is the state (int64 activations). Yields x_hat_t (3, 16h, 16w), uint8 pixels,
        frame by frame (a generator: frame t's symbols are taken when x_hat_t is asked for); None instead unless
        `pixels`, where the loop needs no synthesis (the state reads the latents).
        """
        past, prior, g_s, cell = integer.cached(self, "loop", lambda: (
            integer.convert(self.past), integer.convert(self.prior),
            None if self.reads_latents else integer.convert(self.g_s),  # g_s in the loop: in integers
            IntegerConvLSTMCell(self.cell)))
        y_gain = integer.cached(self, ("y_gain", quality), lambda: IntegerGain(self.y_log_gain, quality))
        state, previous = None, None
        for t in range(frames):
            if previous is None:
                inputs = self.y_log_gain.new_zeros(1, self.config.feature_channels, *shape, dtype=torch.int64)
            else:
                inputs = past(self.past_input(previous, state[0]))
            state = cell(inputs, state if state is not None else cell.zero_state(inputs))
            mu, scale_raw = prior(state[0]).chunk(2, dim=1)
            index = y_gain.softplus_index(scale_raw)
            y_hat = mu + y_gain.dequantise(take_symbols(t, state[0], mu, index, y_gain))
            if g_s is None:
                previous = y_hat
                yield (to_pixels(self.synthesise(integer.to_float(y_hat), integer.to_float(state[0])))[0] if pixels
                       else None)
            else:
                previous = g_s(torch.cat([y_hat, state[0]], dim=1)).clamp(0, integer.ONE)
                yield to_pixels(integer.to_float(previous))[0]

    @torch.no_grad()
    def compress_segment(self, x: Iterable[Tensor], quality: float,
                         reconstruct: bool = True) -> tuple[Streams, Tensor | None]:
        """Frames (T, 3, H, W), or any iterable of (3, H, W) frames read once in order, uint8 pixels or float in
        [0, 1] -> (coded streams, all dynamic; x_hat (T, 3, H, W), uint8 pixels computed on the decoder's path, or
        None unless `reconstruct`). The frames are not held, their features are (N channels at 1/16)."""
        features = each_frame(self.g_a, x)  # (1, N, h, w) each
        encoder = SymbolEncoder()

        def encode_frame(t: int, hidden: Tensor, mu: Tensor, index: Tensor, y_gain: IntegerGain) -> Tensor:
            y = self.infer_y(features[t], integer.to_float(hidden))
            return self.y_coder.encode_symbols(y_gain.quantise(y, mu), index, encoder)

        shape = features[0].shape[-2:]
        x_hats = self._roll_out(quality, len(features), shape, encode_frame, pixels=reconstruct)
        x_hat = torch.stack(list(x_hats)) if reconstruct else drain(x_hats)
        symbols = self.symbol_counts(len(features), shape)[1]
        return Streams(frames=len(features), dynamic=encoder.to_bytes(), dynamic_symbols=symbols), x_hat

    @torch.no_grad()
    def decompress_frames(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Iterator[Tensor]:
        """A coded segment -> its frames (3, 16h, 16w), uint8 pixels, one at a time; `shape` = (h, w) of the latents."""
        decoder = SymbolDecoder(streams.dynamic)
        yield from self._roll_out(quality, streams.frames, shape,
                                  lambda t, hidden, mu, index, y_gain: self.y_coder.decode_symbols(decoder, index))

    @torch.no_grad()
    def sample(self, frames: int, quality: float, shape: tuple[int, int], rng: np.random.Generator) -> Tensor:
        """Frames (T, 3, 16h, 16w), uint8 pixels, drawn from the prior: each y_t from the Gaussian that the
        state predicts, decoded and fed back as the decoder does."""
        return torch.stack(list(self._roll_out(quality, frames, shape, lambda t, hidden, mu, index, y_gain:
                                               self.y_coder.sample_symbols(index, rng))))

    def symbol_counts(self, frames: int, shape: tuple[int, int]) -> tuple[int, int]:
        """Number of f and z symbols a segment of `frames` frames with latents of `shape` must hold."""
        return 0, frames * self.config.latent_channels * shape[0] * shape[1]


def restate(trained: RNNCodec, model: RNNCodec) -> None:
    """Load a trained RNN codec whose state reads its reconstructions into `model`, the same codec reading its
    decoded latents (`state_from`). Every tensor but those of `past` (the encoder `e`, whose input changes) is
    kept; `past` keeps its fresh initialisation but for a last layer of zeros, so `model` first decodes as `trained`
    would with the first frame's input (zero) at every step, and training teaches it what to read.
    ValueError unless the two are RNN codecs that differ only in `state_from`."""
    old = trained.config
    if not (isinstance(old, RNNConfig) and old.state_from == "reconstructions"
            and model.config == replace(old, state_from="latents")):
        raise ValueError("only an RNN codec's state can change, from reconstructions to latents")
    kept = {name: tensor for name, tensor in trained.state_dict().items() if not name.startswith("past.")}
    missing, _ = model.load_state_dict(kept, strict=False)
    assert all(name.startswith("past.") for name in missing)
    with torch.no_grad():
        for tensor in model.past[-1].parameters():
            tensor.zero_()


def distil_past(trained: RNNCodec, model: RNNCodec, clips: Iterable[Tensor], batches: int, updates: int = 4,
                lr: float = 1e-3) -> list[float]:
    """Teach `model.past` (state read from the latents, `restate`d from `trained`) what `trained.past` computes of
    the reconstruction x_hat_t = g_s(y_hat_t, h_t): on `trained`'s own coding-like roll-out (eval mode: rounded
    latents) of each of `batches` batches of clips (B, T, 3, H, W), at qualities in turn, `updates` Adam steps on
    `model.past` alone (learning rate `lr` decaying to 0 on a cosine) reduce the mean squared error of its output
    for [y_hat_t, h_t] to `trained.past`'s for x_hat_t, t < T - 1. Returns each batch's error (before its first
    step). With a perfect fit, `model` codes as `trained` does."""
    optimizer = torch.optim.Adam(model.past.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=batches * updates)
    trained.eval()
    errors = []
    for k, x in zip(range(batches), clips):
        latents, features = [], []  # g_s's input [y_hat_t, h_t] for t = 0..T-1; past's output for x_hat_0..T-2
        hooks = [trained.g_s.register_forward_hook(lambda module, inputs, output: latents.append(inputs[0])),
                 trained.past.register_forward_hook(lambda module, inputs, output: features.append(output))]
        try:
            with torch.no_grad():
                trained(x, k % trained.qualities)
        finally:
            for hook in hooks:
                hook.remove()
        inputs, targets = torch.cat(latents[:-1]), torch.cat(features)
        for update in range(updates):
            error = F.mse_loss(model.past(inputs), targets)
            optimizer.zero_grad()
            error.backward()
            optimizer.step()
            schedule.step()
            if not update:
                errors.append(error.item())
    return errors
