"""How much quality a model's representation holds: each level's PSNR, and the PSNR when every quantisation step
is made much finer than the top level's.

    python benchmarks/ceiling.py                                        # dsae-natural and frame-natural, carphone and bikes
    python benchmarks/ceiling.py --models dsae-natural,checkpoints/dsae-natural-span/dsae-natural-span.pt --finer 16,256

A level that spends more bits for little PSNR is either quantised too coarsely (then finer steps buy PSNR) or at
the model's ceiling (then they do not: the transforms, not the rate, limit the quality). The first `--frames` frames
of each clip are coded in segments of 8 frames (one batch) by the training pass in eval mode: latents rounded,
bits estimated from the learned densities (within ~2% of the coded bits on the validation clips; no file is
written). `--finer K` multiplies every latent's gain by K at the top level, i.e. steps K times finer.

Finer steps only show what the *encoder's* latents hold. `--fit STEPS` asks what the *synthesis transform* can draw
at all: starting from the encoder's latents (unquantised), it fits them to the frames by STEPS Adam steps on the
MSE alone, no rounding and no rate, and prints the PSNR of the frames drawn from the fitted latents (DSAE: f and
every z_t; frame VAE: every y_t). The gap to the finer-steps PSNR is what a better encoder could win; the fitted
PSNR itself is the most these weights can give at any rate. About 4 min per 1500 steps for 16 carphone frames on 2
cores; the RNN codec, whose latents also drive its own state, is not fitted. `--fit-only z`
(or `f`) fits one of a DSAE's latents alone, the other staying the encoder's: which encoder leaves the gap.

    python benchmarks/ceiling.py --sets carphone --frames 16 --fit 1500
    python benchmarks/ceiling.py --sets carphone --frames 16 --fit 1500 --fit-only z --models dsae-natural
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate_distortion import SETS  # noqa: E402

from dsaecodec import zoo  # noqa: E402
from dsaecodec.models.dsae import DSAE  # noqa: E402
from dsaecodec.models.frame import FrameVAE  # noqa: E402

SEGMENT = 8


@torch.no_grad()
def psnr_and_bits(model: torch.nn.Module, segments: torch.Tensor, quality: int, finer: float = 1.0) -> tuple[float, float]:
    """(PSNR in dB of 8-bit reconstructions, estimated bits per frame) of segments (S, T, 3, H, W) in [0, 1] at a
    level, with every log gain raised by log(finer)."""
    gains = [p for name, p in model.named_parameters() if name.endswith("log_gain")]
    saved = [p.clone() for p in gains]
    for p in gains:
        p.add_(math.log(finer))
    try:
        out = model(segments, quality)
    finally:
        for p, value in zip(gains, saved):
            p.copy_(value)
    x_hat = torch.round(out["x_hat"].clamp(0, 1) * 255) / 255
    mse = (x_hat - segments).pow(2).mean().item()
    bits = sum(v.item() for k, v in out.items() if k.endswith("_bits"))
    return 10 * math.log10(1 / mse), bits / (segments.shape[0] * segments.shape[1])


def fit_latents(model: torch.nn.Module, segments: torch.Tensor, steps: int, lr: float = 0.05,
                only: str | None = None) -> torch.Tensor:
    """The frames (S, T, 3, H, W), not clamped, that a DSAE or frame VAE synthesises from latents fitted to segments
    (S, T, 3, H, W) in [0, 1] by `steps` Adam steps (learning rate `lr`) on the MSE, starting from the encoder's
    unquantised latents; the weights are not changed. `only` ("z" or "f", a DSAE's): fit that latent alone, the
    other staying the encoder's. ValueError for another model or latent."""
    with torch.no_grad():
        if isinstance(model, DSAE):
            features, f = model.analyse(segments)
            latents = [model.infer_z(features, f)] + ([f] if f is not None else [])
            names = ["z", "f"][:len(latents)]

            def draw(z: torch.Tensor, f: torch.Tensor | None = None) -> torch.Tensor:
                return model.synthesise(z, f)
        elif isinstance(model, FrameVAE):
            latents, names = [model.g_a(segments.flatten(0, 1))], ["y"]

            def draw(y: torch.Tensor) -> torch.Tensor:
                return model.g_s(y).unflatten(0, segments.shape[:2])
        else:
            raise ValueError(f"{type(model).__name__}: only a DSAE's or a frame VAE's latents can be fitted")
    if only is not None and (not isinstance(model, DSAE) or only not in names):
        raise ValueError(f"{type(model).__name__} has no latent {only!r} to fit alone")
    latents = [latent.clone() for latent in latents]
    free = [latent.requires_grad_(True) for name, latent in zip(names, latents) if only in (None, name)]
    optimiser = torch.optim.Adam(free, lr=lr)
    for _ in range(steps):
        with torch.enable_grad():
            loss = (draw(*latents) - segments).pow(2).mean()
            gradients = torch.autograd.grad(loss, free)  # the weights' .grad stay untouched
        for latent, gradient in zip(free, gradients):
            latent.grad = gradient
        optimiser.step()
    with torch.no_grad():
        return draw(*latents)


def fitted_psnr(model: torch.nn.Module, segments: torch.Tensor, steps: int, only: str | None = None) -> float:
    """PSNR in dB of the 8-bit frames `fit_latents` draws, against segments (S, T, 3, H, W) in [0, 1]."""
    x_hat = torch.round(fit_latents(model, segments, steps, only=only).clamp(0, 1) * 255) / 255
    return 10 * math.log10(1 / (x_hat - segments).pow(2).mean().item())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dsae-natural,frame-natural",
                        help="comma-separated shipped model names or weights files")
    parser.add_argument("--sets", default="carphone,bikes", help="comma-separated natural test sets")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (a multiple of 8)")
    parser.add_argument("--finer", default="256", help="comma-separated factors of finer quantisation at the top level")
    parser.add_argument("--fit", type=int, default=0, metavar="STEPS",
                        help="also fit the latents to the frames by STEPS Adam steps on the MSE (no rate) and print "
                             "the PSNR the synthesis then reaches (DSAE and frame VAE; slow, see above)")
    parser.add_argument("--fit-only", choices=("z", "f"), default=None,
                        help="with --fit, a DSAE's: fit only z_1:T or only f, the other staying the encoder's")
    args = parser.parse_args(argv)
    if args.fit < 0:
        parser.error("--fit must be >= 0")
    if args.fit_only and not args.fit:
        parser.error("--fit-only needs --fit STEPS")
    if args.frames <= 0 or args.frames % SEGMENT:
        parser.error(f"--frames must be a positive multiple of {SEGMENT}")
    unknown = [name for name in args.sets.split(",") if name not in SETS or SETS[name].domain != "natural"]
    if unknown:
        parser.error(f"unknown natural test set {unknown[0]!r}")
    paths = {name: Path(name).expanduser() for name in args.models.split(",")}
    missing = [name for name, path in paths.items() if path.suffix == ".pt" and not path.is_file()]
    if missing:
        parser.error(f"{missing[0]}: no such weights file")
    for model_name, path in paths.items():
        model = zoo.load_weights(path) if path.suffix == ".pt" else zoo.load_model(model_name)[0]
        model.eval()
        for set_name in args.sets.split(","):
            frames = SETS[set_name].load(False)[0][1][:args.frames]
            if len(frames) < args.frames:
                parser.error(f"{set_name} has only {len(frames)} frames")
            segments = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255).unflatten(0, (-1, SEGMENT))
            top = model.qualities - 1
            levels = [psnr_and_bits(model, segments, q) for q in range(model.qualities)]
            finer = [(float(k), *psnr_and_bits(model, segments, top, float(k))) for k in args.finer.split(",")]
            print(f"{model_name} on {set_name} ({args.frames} frames): "
                  + " | ".join(f"q{q} {bits:.0f} b/f {psnr:.2f} dB" for q, (psnr, bits) in enumerate(levels))
                  + "".join(f" | q{top} {k:g}x finer: {bits:.0f} b/f {psnr:.2f} dB" for k, psnr, bits in finer)
                  + (f" | fitted {args.fit_only or 'latents'} ({args.fit} steps): "
                     f"{fitted_psnr(model, segments, args.fit, args.fit_only):.2f} dB"
                     if args.fit and isinstance(model, DSAE if args.fit_only else (DSAE, FrameVAE)) else ""),
                  flush=True)


if __name__ == "__main__":
    main()
