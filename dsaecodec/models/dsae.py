"""The Disentangled Sequential Autoencoder (Li & Mandt, 2018) as a variable-rate video codec.

A segment of T frames x_1:T is described by one static latent `f` (content) and one dynamic
latent `z_t` per frame (change). Shapes, for frames (B, T, 3, H, W) with H, W multiples of 16:

    features = g_a(x_t)                       (B, T, N, H/16, W/16)
    f        = content(mean_t features)       (B, C_f, H/16, W/16)   prior: a FactorisedCoder per quality
    z_t      = dynamics(features_t [, f_hat]) (B, T, C_z, H/16, W/16) prior: ConvLSTM p(z_t | z_hat_<t)
    x_hat_t  = g_s(z_hat_t, f_hat)            (B, T, 3, H, W)

Quality level q scales each latent channel by a learned gain before rounding (Cui et al. 2021), so
the quantisation step of channel c is 1 / gain[q, c]; one model serves every level.

`DSAEConfig(use_f=False)` is the ablation without the static latent: no content encoder, no f
stream (the static stream is empty), z_t = dynamics(features_t) and x_hat_t = g_s(z_hat_t), under the
same stochastic ConvLSTM prior.

`DSAEConfig(frame_size=S)` is the paper's own geometry for fixed-size domains (sprites, bouncing balls):
S x S frames only, and every latent is a vector, held as a 1 x 1 map so that the coding path is the same:

    features = g_a(x_t)                       (B, T, 4N, 1, 1)   DCGAN-style convolutions (batch norm, leaky ReLU)
    f        = content(mean_t features)       (B, C_f, 1, 1)     an MLP (1x1 convolutions)
    z_t      = dynamics(features_t [, f_hat]) (B, T, C_z, 1, 1)  an MLP
    x_hat_t  = g_s(z_hat_t, f_hat)            (B, T, 3, S, S)    transposed convolutions, then a sigmoid
    prior of z_t: an LSTM (the ConvLSTM with 1x1 kernels), which never sees f

(The spatial model's GDN transforms, folded to a vector, decoded every sprite clip to the same mean
character for 1000 steps; this stack, as in the paper, starts to separate clips within a few hundred.)

A vector z_t has no spatial layout in which to hide content, which is why the paper's model
disentangles without labels. f pools the frames by their mean rather than by the paper's bidirectional
LSTM. (Training runs g_a on a whole batch of segments at once; coding, one frame at a time.)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from bitstream.coder import SymbolDecoder, SymbolEncoder
from dsaecodec.entropy import FactorisedCoder, GaussianCoder
from dsaecodec.integer import IntegerGain, cached, to_float
from dsaecodec.models.base import CodecConfig, CodecModel, Streams
from dsaecodec.models.layers import (
    analysis_transform,
    check_frame_size,
    drain,
    each_frame,
    framewise,
    gain,
    global_analysis,
    global_synthesis,
    nearest_level,
    synthesis_transform,
)
from dsaecodec.models.layers import conv as _conv
from dsaecodec.models.layers import log_gains as _log_gains
from dsaecodec.priors import DynamicsPrior

@dataclass
class DSAEConfig(CodecConfig):
    """Sizes of a DSAE. `lambdas[q]` weights distortion (MSE on 0..255 pixels) against bits per pixel at quality q."""

    channels: int = 64
    f_channels: int = 64
    z_channels: int = 16
    hidden_channels: int = 64
    variant: str = "full"  # "full": q(z_t | x_t, f); "factorised": q(z_t | x_t)
    lambdas: tuple[float, ...] = field(default=(0.0016, 0.0032, 0.0064, 0.0128, 0.0256))
    use_f: bool = True  # False: the ablation without f (f_channels and the variant are then moot)
    frame_size: int = 0  # 0: latents are maps at 1/16, any frame size; S: vector latents, S x S frames only


class DSAE(CodecModel):
    name_prefix = "dsae"

    def __init__(self, config: DSAEConfig):
        super().__init__()
        if config.variant not in ("full", "factorised"):
            raise ValueError(f"unknown DSAE variant {config.variant!r}")
        check_frame_size(config.frame_size)
        self.config = config
        n, cf, cz = config.channels, config.f_channels if config.use_f else 0, config.z_channels
        # The order in which the modules are built fixes the initial weights a seed gives, and with them the
        # weights a recipe trains to: the spatial model keeps its original order (g_a, content, dynamics, g_s),
        # the global one the order its shipped recipe was trained with (g_a, g_s, content, dynamics).
        if config.frame_size:  # vector latents: one feature vector of 4N per frame
            d, kernel = 4 * n, 1
            self.g_a = global_analysis(n, config.frame_size)
            self.g_s = global_synthesis(cz + cf, n, config.frame_size)
        else:
            d, kernel = n, 3
            self.g_a = analysis_transform(n)
        if config.use_f:
            self.content = nn.Sequential(_conv(d, d, kernel), nn.LeakyReLU(0.1), _conv(d, cf, kernel))
        dyn_in = d + cf if config.variant == "full" else d
        self.dynamics = nn.Sequential(_conv(dyn_in, d, kernel), nn.LeakyReLU(0.1), _conv(d, cz, kernel))
        if not config.frame_size:
            self.g_s = synthesis_transform(cz + cf, n)
        if config.use_f:
            self.f_log_gain = nn.Parameter(_log_gains(config.lambdas, cf, vector=bool(config.frame_size)))
        self.z_log_gain = nn.Parameter(_log_gains(config.lambdas, cz, vector=bool(config.frame_size)))
        self.f_entropy = nn.ModuleList(FactorisedCoder(cf) for _ in (config.lambdas if config.use_f else ()))
        self.z_prior = DynamicsPrior(cz, config.hidden_channels, kernel)
        self.z_coder = GaussianCoder()

    @property
    def has_static_latent(self) -> bool:
        return self.config.use_f

    # --- transforms -------------------------------------------------------------------------------
    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Frames (B, T, 3, H, W), float in [0, 1] or uint8 pixels -> (features (B, T, N, h, w), f (B, C_f, h, w) or None without f);
        vector latents: N is 4 * channels and h = w = 1."""
        b, t = x.shape[:2]
        features = framewise(self.g_a, x.flatten(0, 1)).unflatten(0, (b, t))
        return features, self.content(features.mean(dim=1)) if self.config.use_f else None

    def infer_z(self, features: Tensor, f_hat: Tensor | None) -> Tensor:
        """Posterior mean of z: (B, T, N, h, w) features (+ f_hat for the full variant) -> (B, T, C_z, h, w)."""
        b, t = features.shape[:2]
        inputs = features
        if self.config.variant == "full" and f_hat is not None:
            inputs = torch.cat([features, f_hat[:, None].expand(-1, t, -1, -1, -1)], dim=2)
        return self.dynamics(inputs.flatten(0, 1)).unflatten(0, (b, t))

    def synthesise(self, z_hat: Tensor, f_hat: Tensor | None, pixels: bool = False) -> Tensor:
        """(B, T, C_z, h, w) and (B, C_f, h, w) or None -> frames (B, T, 3, 16h, 16w) (vector latents: S x S),
        not clamped; `pixels`: as uint8 pixels (`layers.to_pixels`)."""
        b, t = z_hat.shape[:2]
        inputs = z_hat
        if f_hat is not None:
            inputs = torch.cat([z_hat, f_hat[:, None].expand(-1, t, -1, -1, -1)], dim=2)
        return framewise(self.g_s, inputs.flatten(0, 1), pixels).unflatten(0, (b, t))

    # --- training ---------------------------------------------------------------------------------
    def _quantise_f(self, f: Tensor, quality: int) -> tuple[Tensor, Tensor]:
        """Training-time f (B, C_f, h, w) -> (f_hat with straight-through rounding, its bits under noise)."""
        return self.f_entropy[nearest_level(quality)](f, gain(self.f_log_gain, quality))

    def forward(self, x: Tensor, quality: int, content: Tensor | None = None,
                motion: Tensor | None = None) -> dict[str, Tensor]:
        """Training pass with noise for the rate and straight-through rounding for the decoder.

        content (B, T', 3, H, W), optional: clips to infer f from instead of x (paired-content training:
        the same characters in other motions), so that f cannot carry x's motion.
        motion (B, T, 3, H, W), optional: clips to infer z_1:T from (given their own f, as the encoder of
        the clip that a swap takes z_1:T from) instead of x (paired-motion training: other characters in
        x's motion), so that z_1:T cannot carry x's content.

        In eval mode the rate is that of the rounded latents (an estimate of the coded bits).
        Returns x_hat (B, T, 3, H, W), f_bits and z_bits (scalars, summed over the batch).
        The z prior is teacher-forced on the quantised posterior latents of earlier steps.
        """
        if content is None or motion is None:  # x's features or f are needed
            features, f = self.analyse(x)
        if content is not None:
            f = self.analyse(content)[1]
        f_hat, f_bits = None, x.new_zeros(())
        if self.config.use_f:
            f_hat, f_bits = self._quantise_f(f, quality)
        if motion is None:
            z = self.infer_z(features, f_hat)
        else:
            motion_features, motion_f = self.analyse(motion)  # motion_f conditions z only; its bits are not spent
            z = self.infer_z(motion_features, self._quantise_f(motion_f, quality)[0] if self.config.use_f else None)
        z_gain = gain(self.z_log_gain, quality)
        z_prev, state, z_hats, z_bits = torch.zeros_like(z[:, 0]), None, [], x.new_zeros(())
        for t in range(z.shape[1]):
            mu, scale, state = self.z_prior.step(z_prev, state)
            z_prev, step_bits = self.z_coder.forward(z[:, t], mu, scale, z_gain, self.training)
            z_bits = z_bits + step_bits
            z_hats.append(z_prev)
        z_hat = torch.stack(z_hats, dim=1)
        x_hat = self.synthesise(z_hat, f_hat)
        return {"x_hat": x_hat, "f_bits": f_bits, "z_bits": z_bits, "z_hat": z_hat, "f_hat": f_hat}

    def swap_consistency(self, z_hat: Tensor, f_hat: Tensor) -> tuple[Tensor, Tensor]:
        """Unsupervised swap consistency, two scalars (z term, f term): each clip's z_hat (B, T, C_z, h, w) is
        synthesised with the next clip's f_hat (B, C_f, h, w) (the batch rolled by one), as a swap of two files
        would decode, and the frames are analysed again; each term is the mean squared distance of the
        re-inferred z (or f) to the z_hat (or f_hat) the frames were made of, relative to the variance of that
        target (0: consistent; about 0.2 for the models trained without it). A decoder that took the motion from
        f, or the content from z_1:T, would draw frames whose latents are the other clip's: the loss keeps each
        factor in its own latent without labels (the targets are detached)."""
        f_other = f_hat.roll(1, dims=0)
        features, f = self.analyse(self.synthesise(z_hat, f_other).clamp(0, 1))
        z = self.infer_z(features, f)
        z_term, f_term = (((made - target.detach()) ** 2).mean() / target.detach().var().clamp_min(1e-6)
                          for made, target in ((z, z_hat), (f, f_other)))
        return z_term, f_term

    def aux_loss(self) -> Tensor:
        """Loss of the quantiles of f's densities (trained by a separate optimiser, as in CompressAI);
        a constant zero without f, which has no quantiles."""
        if not self.config.use_f:
            return self.z_log_gain.new_zeros(())
        return sum(coder.loss() for coder in self.f_entropy)

    def update_tables(self) -> None:
        """Build the integer CDF tables of f's density; call before saving weights. For vector latents the
        tables' range is first fitted to the density (the spatial models keep the range their training left, so
        that their recipes still reproduce the shipped files)."""
        for coder in self.f_entropy:
            coder.update(refit_quantiles=bool(self.frame_size))

    # --- coding one segment -----------------------------------------------------------------------
    def _roll_out_z(self, quality: float, frames: int, shape: tuple[int, int],
                    take_symbols: Callable[[int, Tensor, Tensor, IntegerGain], Tensor]) -> Iterator[Tensor]:
        """The z prior run exactly as the decoder runs it, frame by frame, in integer arithmetic (integer.py), so
        that means, scale indices and the prior's state are the same on every machine.

        `take_symbols(t, mu, index, z_gain)` returns the integer symbols (1, C_z, h, w) of frame t, coded around
        the mean `mu` (int64 activations) under the scale indices `index`: the encoder codes them, the decoder
        decodes them, `sample` draws them. z_hat_t = mu + symbols * step, exactly. Yields z_hat_t (1, C_z, h, w),
        float32, frame by frame (a generator: frame t's symbols are taken when z_hat_t is asked for).
        """
        prior = cached(self, "z_prior", self.z_prior.integer)
        z_gain = cached(self, ("z_gain", quality), lambda: IntegerGain(self.z_log_gain, quality))
        z_prev = self.z_log_gain.new_zeros(1, self.config.z_channels, *shape, dtype=torch.int64)
        state = None
        for t in range(frames):
            mu, scale_raw, state = prior.step(z_prev, state)
            z_prev = mu + z_gain.dequantise(take_symbols(t, mu, z_gain.softplus_index(scale_raw), z_gain))
            yield to_float(z_prev)

    def _synthesise_frames(self, z_hats: Iterable[Tensor], f_hat: Tensor | None) -> Iterator[Tensor]:
        """Frames (3, 16h, 16w), uint8 pixels, one per z_hat_t (1, C_z, h, w), each synthesised when asked for."""
        for z_hat in z_hats:
            yield self.synthesise(z_hat[:, None], f_hat, pixels=True)[0, 0]

    @torch.no_grad()
    def compress_segment(self, x: Iterable[Tensor], quality: float,
                         reconstruct: bool = True) -> tuple[Streams, Tensor | None]:
        """Frames (T, 3, H, W), or any iterable of (3, H, W) frames read once in order, uint8 pixels or float in
        [0, 1] -> (coded streams: f static, z_1:T dynamic; x_hat (T, 3, H, W), uint8 pixels, or None unless
        `reconstruct`).

        The frames are not held, but their features are (N channels at 1/16, float32: N/64 bytes per pixel), since
        f needs every frame before z_1 can be coded. `x_hat` is the decoder's output, computed on the same code path.
        """
        features = each_frame(self.g_a, x)  # (1, N, h, w) each
        f_encoder, f_hat, f_count = SymbolEncoder(), None, 0
        if self.config.use_f:
            f = self.content(torch.stack(features, dim=1).mean(dim=1))
            f_hat = self.f_entropy[nearest_level(quality)].encode(f, gain(self.f_log_gain, quality), f_encoder)
            f_count = f.numel()

        z_encoder = SymbolEncoder()

        def encode_frame(t: int, mu: Tensor, index: Tensor, z_gain: IntegerGain) -> Tensor:
            z = self.infer_z(features[t][:, None], f_hat)[:, 0]
            return self.z_coder.encode_symbols(z_gain.quantise(z, mu), index, z_encoder)

        shape = features[0].shape[-2:]
        z_hats = self._roll_out_z(quality, len(features), shape, encode_frame)
        x_hat = torch.stack(list(self._synthesise_frames(z_hats, f_hat))) if reconstruct else drain(z_hats)
        streams = Streams(frames=len(features), static=f_encoder.to_bytes(), dynamic=z_encoder.to_bytes(),
                          static_symbols=f_count, dynamic_symbols=self.symbol_counts(len(features), shape)[1])
        return streams, x_hat

    def decode_f(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Tensor | None:
        """The static latent f_hat (1, C_f, h, w) of a coded segment (None for a model without f)."""
        if not self.config.use_f:
            return None
        return self.f_entropy[nearest_level(quality)].decode(SymbolDecoder(streams.static), (1, *shape),
                                              gain(self.f_log_gain, quality))

    def _decode_z_frames(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Iterator[Tensor]:
        """The dynamic latents z_hat_t (1, C_z, h, w) of a coded segment, decoded frame by frame."""
        z_decoder = SymbolDecoder(streams.dynamic)
        return self._roll_out_z(quality, streams.frames, shape,
                                lambda t, mu, index, z_gain: self.z_coder.decode_symbols(z_decoder, index))

    def decode_z(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Tensor:
        """The dynamic latents z_hat (1, T, C_z, h, w) of a coded segment."""
        return torch.stack(list(self._decode_z_frames(streams, quality, shape)), dim=1)

    @torch.no_grad()
    def decompress_frames(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Iterator[Tensor]:
        """A coded segment -> its frames (3, 16h, 16w) (vector latents: S x S), uint8 pixels, one at a time (only
        f_hat and one frame's latents are held); `shape` = (h, w) of the latents (`latent_shape`)."""
        f_hat = self.decode_f(streams, quality, shape)
        yield from self._synthesise_frames(self._decode_z_frames(streams, quality, shape), f_hat)

    # --- sampling from the priors (controlled generation) ------------------------------------------
    def sample_f(self, quality: float, shape: tuple[int, int], rng: np.random.Generator) -> Tensor:
        """f_hat (1, C_f, h, w) drawn from the learned density of f at this quality."""
        return self.f_entropy[nearest_level(quality)].sample((1, *shape), gain(self.f_log_gain, quality), rng)

    def sample_z(self, quality: float, frames: int, shape: tuple[int, int], rng: np.random.Generator) -> Tensor:
        """z_hat (1, T, C_z, h, w) drawn from the ConvLSTM prior, each step fed the previous sample."""
        return torch.stack(list(self._roll_out_z(quality, frames, shape, lambda t, mu, index, z_gain:
                                                 self.z_coder.sample_symbols(index, rng))), dim=1)

    @torch.no_grad()
    def sample(self, frames: int, quality: float, shape: tuple[int, int], rng: np.random.Generator) -> Tensor:
        """Frames (T, 3, 16h, 16w), uint8 pixels, drawn from the priors: f from its density (none without f),
        z_1:T from the z prior."""
        f_hat = self.sample_f(quality, shape, rng) if self.config.use_f else None
        return self.synthesise(self.sample_z(quality, frames, shape, rng), f_hat, pixels=True)[0]

    def symbol_counts(self, frames: int, shape: tuple[int, int]) -> tuple[int, int]:
        """Number of f and z symbols a segment of `frames` frames with latents of `shape` must hold."""
        h, w = shape
        f_symbols = self.config.f_channels * h * w if self.config.use_f else 0
        return f_symbols, frames * self.config.z_channels * h * w


def widen_z(trained: DSAE, wider: DSAE) -> None:
    """Load a trained spatial DSAE into `wider`, the same model with more z channels (C_z -> C_z').

    Every tensor of `trained` is kept. The new channels z[C_z:] come from fresh rows of the dynamics
    network scaled by 0.1 (so that they mostly round to 0 and cost few bits at first); the synthesis and
    the z prior start blind to them (zero weights where they read them), and the prior gives them mean 0
    and the mean scale bias of the old channels. So `wider` decodes exactly as `trained` does until
    training teaches it what the new channels should carry.
    Raises ValueError unless the two are DSAEs with spatial latents that differ only by a larger z_channels.
    """
    old, new = trained.config, wider.config
    if not (isinstance(old, DSAEConfig) and isinstance(new, DSAEConfig)):
        raise ValueError("only a DSAE's z can grow")
    c0, c1 = old.z_channels, new.z_channels
    if old.frame_size or c1 <= c0 or replace(old, z_channels=c1) != new:
        raise ValueError("only the z_channels of a spatial DSAE can grow")
    state = {name: tensor.clone() for name, tensor in wider.state_dict().items()}
    trained_state = trained.state_dict()

    def place(name: str, dim: int, blocks: list[tuple[int, int, str]]) -> None:
        """Copy `name` block by block along `dim`: each block (old size, new size, fill of the grown part:
        'fresh' keeps the new initialisation, 'small' a tenth of it, 'zero', 'mean' of the block's old entries)."""
        source, target = trained_state[name].movedim(dim, 0), state[name].movedim(dim, 0)
        s = t = 0
        for old_size, new_size, fill in blocks:
            target[t:t + old_size] = source[s:s + old_size]
            if fill == "small":
                target[t + old_size:t + new_size] *= 0.1
            elif fill == "zero":
                target[t + old_size:t + new_size] = 0
            elif fill == "mean":
                target[t + old_size:t + new_size] = source[s:s + old_size].mean(dim=0)
            s, t = s + old_size, t + new_size

    z_first = [(c0, c1, "zero")]
    for name, tensor in trained_state.items():
        if tensor.shape == state[name].shape:
            state[name] = tensor.clone()
    place("z_log_gain", 1, [(c0, c1, "mean")])
    place("dynamics.2.weight", 0, [(c0, c1, "small")])
    place("dynamics.2.bias", 0, [(c0, c1, "small")])
    place("g_s.0.weight", 1, z_first + ([(old.f_channels,) * 2 + ("fresh",)] if old.use_f else []))
    place("z_prior.cell.gates.weight", 1, z_first + [(old.hidden_channels,) * 2 + ("fresh",)])
    place("z_prior.head.2.weight", 0, [(c0, c1, "zero"), (c0, c1, "zero")])  # rows: mean, then scale
    place("z_prior.head.2.bias", 0, [(c0, c1, "zero"), (c0, c1, "mean")])
    wider.load_state_dict(state)


def widen_channels(trained: DSAE, wider: DSAE) -> None:
    """Load a trained spatial DSAE into `wider`, the same model with wider transforms (channels N -> N').

    Every tensor of `trained` is kept in the leading slice of its wider counterpart. The new feature channels keep
    their fresh initialisation where they are computed (new rows of each convolution and GDN), and every old
    channel reads them with zero weights (new columns of the old rows; the GDNs' gamma keeps its initial zeros
    there: `wider` must be as built, untrained), so
    `wider` computes exactly what `trained` does until training puts the new channels to use. The latents, their
    entropy models and the z prior do not change. The full posterior's first layer reads [features, f]: its f
    columns move behind the new feature columns.
    Raises ValueError unless the two are DSAEs with spatial latents that differ only by larger channels.
    """
    old, new = trained.config, wider.config
    if not (isinstance(old, DSAEConfig) and isinstance(new, DSAEConfig)):
        raise ValueError("only a DSAE's channels can grow")
    n0, n1 = old.channels, new.channels
    if old.frame_size or n1 <= n0 or replace(old, channels=n1) != new:
        raise ValueError("only the channels of a spatial DSAE can grow")
    from dsaecodec.zoo import resize_table_buffers  # the weights-file module imports the models

    resize_table_buffers(wider, trained.state_dict())  # the entropy tables, built or not, as trained has them
    state = {name: tensor.clone() for name, tensor in wider.state_dict().items()}
    f_read = old.use_f and old.variant == "full"
    for name, source in trained.state_dict().items():
        target = state[name]
        if source.shape == target.shape:
            state[name] = source.clone()
            continue
        rows = source.shape[0]
        if source.dim() == 1 or name.endswith(".gamma"):  # biases, GDN beta; gamma (C, C): the new block stays
            target[tuple(slice(0, size) for size in source.shape)] = source  # as fresh (0 off the diagonal)
        elif name == "dynamics.0.weight" and f_read:  # columns [features N | f], new rows fresh
            target[:rows, :n0], target[:rows, n0:n1] = source[:, :n0], 0
            target[:rows, n1:] = source[:, n0:]
        else:  # a convolution (out, in, k, k): old rows copied, their new input columns zero, new rows fresh
            columns = source.shape[1]
            target[:rows, :columns], target[:rows, columns:] = source, 0
    wider.load_state_dict(state)


def widen(trained: DSAE, wider: DSAE) -> None:
    """`widen_z`, `widen_channels`, or both (z first, into a DSAE with only the wider z), whichever options `wider`
    has larger; ValueError for any other change."""
    old, new = trained.config, wider.config
    if not (isinstance(old, DSAEConfig) and isinstance(new, DSAEConfig)):
        raise ValueError("only a DSAE can grow")
    if replace(old, z_channels=new.z_channels) == new:
        widen_z(trained, wider)
    elif new.z_channels == old.z_channels:
        widen_channels(trained, wider)
    else:
        middle = DSAE(replace(old, z_channels=new.z_channels))
        widen_z(trained, middle)
        widen_channels(middle, wider)
