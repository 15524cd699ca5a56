"""The one interface every codec model implements (DSAE, frame VAE, deterministic RNN).

A model codes one segment of frames at a time:

    streams, x_hat = model.compress_segment(x, quality)                 x (T, 3, H, W), or an iterable of (3, H, W)
                                                                         frames: uint8 pixels or float in [0, 1]
    streams, _ = model.compress_segment(frames, quality, reconstruct=False)   no x_hat: no synthesis, nothing held
    for frame in model.decompress_frames(streams, quality, latent_shape): ...   latent_shape = model.latent_shape(H, W)
    x_hat = model.decompress_segment(streams, quality, latent_shape)     the same frames, stacked

x_hat is uint8 pixels (T, 3, H, W), what a file decodes to. The networks take and give one frame at a time
(`layers.framewise`), the encoder reads its input frames once, in order, without holding them, and the decoder
gives its frames one at a time, so memory does not grow with the segment's pixels: only with its latents (and
the features a DSAE needs for f, N/64 bytes per pixel).

`streams` (a `Streams`) holds the entropy-coded bytes; only dsaecodec.codec turns them into file records.
Coding takes any quality from 0 to `qualities - 1` (between trained levels the gains are interpolated, see
`layers.gain`); training takes the trained levels, integers.

and trains with `forward(x, quality) -> {"x_hat", "f_bits", "z_bits"}`, `aux_loss()` and
`update_tables()` (build the integer entropy tables before saving or coding).
`sample(frames, quality, latent_shape, rng)` draws frames (T, 3, H, W), uint8 pixels, from the model's own priors.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from dsaecodec.models.layers import STRIDE


@dataclass(frozen=True)
class Streams:
    """One segment as a model codes it: the entropy-coded `static` stream (the content latent f, sent once per
    segment; empty for a model without one) and the `dynamic` stream (everything coded per frame), with the
    number of symbols each holds."""

    frames: int
    static: bytes = b""
    dynamic: bytes = b""
    static_symbols: int = 0
    dynamic_symbols: int = 0


class CodecConfig:
    """Base of the model configs (dataclasses with `lambdas` and `frame_size`). `to_dict` is the config as saved
    in weights files: `asdict(config)`, less `vector_fields` when `frame_size` is 0, so that spatial models' files
    stay byte-identical to those written before vector latents existed."""

    vector_fields: ClassVar[tuple[str, ...]] = ("frame_size",)

    def to_dict(self) -> dict:
        saved = asdict(self)
        if not self.frame_size:
            for name in self.vector_fields:
                del saved[name]
        return saved


class CodecModel(nn.Module):
    """Base of every codec model: quality levels, geometry and declared capabilities.

    Subclasses set `config` (a dataclass with `lambdas`, one per quality level, and `frame_size`: 0 for any
    frame size, latents are maps at 1/STRIDE; S > 0 for only S x S frames, latents are vectors) and may
    override `has_static_latent` (True for models with a content latent f, which `generate` and the
    disentanglement benchmark need).
    """

    name_prefix = ""
    has_static_latent = False

    @property
    def qualities(self) -> int:
        return len(self.config.lambdas)

    @property
    def frame_size(self) -> int:
        return self.config.frame_size

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the latents for frames of this size; ValueError if the model cannot code that size."""
        if self.frame_size:
            if (height, width) != (self.frame_size, self.frame_size):
                raise ValueError(f"this model codes only {self.frame_size}x{self.frame_size} frames "
                                 f"(global latents), not {width}x{height}")
            return 1, 1
        return -(-height // STRIDE), -(-width // STRIDE)

    def decompress_segment(self, streams: Streams, quality: float, shape: tuple[int, int]) -> Tensor:
        """A coded segment -> frames (T, 3, H, W), uint8 pixels: `decompress_frames`, stacked."""
        return torch.stack(list(self.decompress_frames(streams, quality, shape)))


def load_with_other_levels(trained: CodecModel, model: CodecModel) -> None:
    """Load a trained model into `model`, the same model with other quality levels (rate-distortion weights
    `lambdas`). Each new level starts as the trained level of the nearest lambda (in log): its entropy model, and
    its log gains (`*_log_gain`, (Q, C)) shifted by half the log ratio of the two lambdas (the quantisation step
    of MSE's high-rate optimum goes as 1/sqrt(lambda)). A level whose lambda the trained model has codes as it did.
    ValueError unless the two models are of one family and differ only in their lambdas."""
    from dsaecodec.zoo import resize_table_buffers  # the weights-file module imports the models

    old, new = trained.config, model.config
    if type(old) is not type(new) or replace(old, lambdas=new.lambdas) != new:
        raise ValueError("only the lambdas of a trained model can change")
    nearest = [min(range(len(old.lambdas)), key=lambda q: abs(math.log(lam / old.lambdas[q]))) for lam in new.lambdas]
    shift = torch.tensor([0.5 * math.log(lam / old.lambdas[q]) for lam, q in zip(new.lambdas, nearest)])
    trained_state, state = trained.state_dict(), {}
    for name in model.state_dict():
        per_level = re.fullmatch(r"(\w+_entropy)\.(\d+)\.(.+)", name)  # ModuleLists of one coder per level
        if re.fullmatch(r"\w+_log_gain", name):
            state[name] = trained_state[name][nearest] + shift[:, None].to(trained_state[name])
        elif per_level:
            state[name] = trained_state[f"{per_level[1]}.{nearest[int(per_level[2])]}.{per_level[3]}"].clone()
        else:
            state[name] = trained_state[name].clone()
    resize_table_buffers(model, state)
    model.load_state_dict(state)
