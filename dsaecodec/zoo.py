"""Registry of shipped models and the weights-file format.

A weights file is a `torch.save`d dict: {"family": str, "config": dict, "state_dict": dict}. The
entropy tables of `f` are built (`update_tables`) before saving and travel in the state dict. A
`.dsae` file names its model and the sha256 of the weights file, so a decoder can refuse a file
coded with weights it does not have.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bitstream.format import MAX_NAME_LENGTH
from dsaecodec.models.dsae import DSAE, DSAEConfig
from dsaecodec.models.frame import FrameConfig, FrameVAE
from dsaecodec.models.rnn import RNNCodec, RNNConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"
FAMILIES: dict[str, tuple[type[nn.Module], type]] = {
    "dsae": (DSAE, DSAEConfig),  # DSAEConfig(use_f=False) is the ablation without the static latent
    "frame": (FrameVAE, FrameConfig),  # baseline: each frame alone under a scale hyperprior
    "rnn": (RNNCodec, RNNConfig),  # baseline: deterministic ConvLSTM state driven by past reconstructions
}
"""Model families: name -> (model class, config dataclass). Every model class implements the codec interface
(`qualities`, `forward`, `aux_loss`, `update_tables`, `compress_segment`, `decompress_segment`, `symbol_counts`)."""


@dataclass(frozen=True)
class ModelCard:
    """What `dsaecodec models` shows of a shipped model."""

    name: str
    family: str
    domain: str
    weights: str  # file name under dsaecodec/weights/
    sha256: str
    training: str  # data and the command that produced the weights


MODELS: dict[str, ModelCard] = {
    card.name: card
    for card in [
        ModelCard(
            name="dsae-natural",
            family="dsae",
            domain="natural video (64x64 crops of real clips)",
            weights="dsae-natural.pt",
            sha256="824fe782963c3ff40db79fce55862928db1d7246d31de2cd7624185fbbd9f380",
            training="6000 steps on bigbuckbunny + bikes (carphone and bikes' centre held out): "
                     "dsaecodec train --dataset clips --out dsaecodec/weights/dsae-natural.pt --steps 6000 --threads 1",
        ),
        ModelCard(
            name="dsae-sprites",
            family="dsae",
            domain="sprites (64x64 procedural characters; vector latents, 64x64 frames only)",
            weights="dsae-sprites.pt",
            sha256="f8f7ca7551fb1b32284627da89291d55d416501cd790b6cc7f50d9967e4c5fb1",
            training="the paper's geometry without labels, 4500 steps on the sprites train split (2384 s, 2 threads): "
                     "dsaecodec train --dataset sprites --global-latents --channels 32 --f-channels 256 "
                     "--z-channels 32 --hidden-channels 256 --lr 1e-3 --lambdas 0.0001 0.0002 0.0004 0.0008 0.0016 "
                     "--rate-warmup 1500 --validate-every 500 --out dsaecodec/weights/dsae-sprites.pt --steps 4500 "
                     "--threads 2",
        ),
        ModelCard(
            name="frame-natural",
            family="frame",
            domain="natural video (64x64 crops of real clips)",
            weights="frame-natural.pt",
            sha256="19da473044814f9d904ea2e40c134c679d866546a354fe9371997fd19749452d",
            training="baseline, same data and steps as dsae-natural: dsaecodec train --family frame --dataset clips "
                     "--out dsaecodec/weights/frame-natural.pt --steps 6000 --threads 1",
        ),
        ModelCard(
            name="rnn-natural",
            family="rnn",
            domain="natural video (64x64 crops of real clips)",
            weights="rnn-natural.pt",
            sha256="ec4ad2456a037066e1365f53387d442c4f40457677c77a330dfd534439fe58aa",
            training="baseline, same data and steps as dsae-natural: dsaecodec train --family rnn --dataset clips "
                     "--out dsaecodec/weights/rnn-natural.pt --steps 6000 --threads 1",
        ),
        ModelCard(
            name="frame-sprites",
            family="frame",
            domain="sprites (64x64 procedural characters; vector latents, 64x64 frames only)",
            weights="frame-sprites.pt",
            sha256="114dd5a5e18c171112e24f066de0d4237afc96482dc81e468452d4b7d18a5aca",
            training="baseline in dsae-sprites' geometry (vector y_t of 256 under a vector hyperprior: -11% "
                     "parameters), same data, steps and schedule (1169 s, 2 threads): dsaecodec train --family frame "
                     "--dataset sprites --global-latents --channels 32 --latent-channels 256 --lr 1e-3 --lambdas "
                     "0.0001 0.0002 0.0004 0.0008 0.0016 --rate-warmup 1500 --validate-every 500 "
                     "--out dsaecodec/weights/frame-sprites.pt --steps 4500 --threads 2",
        ),
        ModelCard(
            name="rnn-sprites",
            family="rnn",
            domain="sprites (64x64 procedural characters; vector latents, 64x64 frames only)",
            weights="rnn-sprites.pt",
            sha256="d04649ade1758ed1adb4e94c50d145a1c3caddf1561a494a47f292efdd89b80e",
            training="baseline in dsae-sprites' geometry (vector y_t 64, LSTM state 256 driven by past "
                     "reconstructions: +0.05% parameters), same data, steps and schedule (1704 s, 2 threads): "
                     "dsaecodec train --family rnn --dataset sprites --global-latents --channels 32 "
                     "--latent-channels 64 --hidden-channels 256 --lr 1e-3 --lambdas 0.0001 0.0002 0.0004 0.0008 "
                     "0.0016 --rate-warmup 1500 --validate-every 500 --out dsaecodec/weights/rnn-sprites.pt "
                     "--steps 4500 --threads 2",
        ),
        ModelCard(
            name="dsae-nof-natural",
            family="dsae",
            domain="natural video (64x64 crops of real clips)",
            weights="dsae-nof-natural.pt",
            sha256="8dca8d03d504b828c44f1e98168b748e77ba73306632a42750d9d3fe4ecbff31",
            training="ablation without f (dynamics only, z_t widened to 64 channels for the parameter budget), same "
                     "data and steps as dsae-natural: dsaecodec train --no-f --z-channels 64 --dataset clips "
                     "--out dsaecodec/weights/dsae-nof-natural.pt --steps 6000 --threads 1",
        ),
        ModelCard(
            name="dsae-nof-sprites",
            family="dsae",
            domain="sprites (64x64 procedural characters; vector latents, 64x64 frames only)",
            weights="dsae-nof-sprites.pt",
            sha256="fae31f9b9ab2309fce189a18d94e0e5972112642d6352d17ce62bd474128596e",
            training="ablation without f in dsae-sprites' geometry (vector z_t widened to 128, LSTM state 384: "
                     "+7.9% parameters), same data, steps and schedule (1307 s, 2 threads): dsaecodec train "
                     "--dataset sprites --global-latents --no-f --channels 32 --z-channels 128 --hidden-channels 384 "
                     "--lr 1e-3 --lambdas 0.0001 0.0002 0.0004 0.0008 0.0016 --rate-warmup 1500 --validate-every 500 "
                     "--out dsaecodec/weights/dsae-nof-sprites.pt --steps 4500 --threads 2",
        ),
        ModelCard(
            name="dsae-sprites-paired",
            family="dsae",
            domain="sprites (64x64 procedural characters)",
            weights="dsae-sprites-paired.pt",
            sha256="a891b2d9c4eafa140a39bfbb3f9709691ff74949bd9607eb4885fb926e122586",
            training="3000 steps on the sprites train split, f inferred from the same character in another motion "
                     "(weak supervision; resumed once at step 2000): dsaecodec train --dataset sprites --paired-content "
                     "--out dsaecodec/weights/dsae-sprites-paired.pt --steps 3000 --threads 1 --rate-warmup 500",
        ),
        ModelCard(
            name="dsae-sprites-paired-z4",
            family="dsae",
            domain="sprites (64x64 procedural characters)",
            weights="dsae-sprites-paired-z4.pt",
            sha256="0095b1f351213d4e439fcd8da43b7bd31d882d7c7d4d510855da0dc81a2bc122",
            training="as dsae-sprites-paired with a 4-channel z_t, so that z has little room for content: "
                     "dsaecodec train --dataset sprites --paired-content --z-channels 4 "
                     "--out dsaecodec/weights/dsae-sprites-paired-z4.pt --steps 3000 --threads 1 --rate-warmup 500",
        ),
        ModelCard(
            name="dsae-sprites-paired-z4-long",
            family="dsae",
            domain="sprites (64x64 procedural characters)",
            weights="dsae-sprites-paired-z4-long.pt",
            sha256="d7f9977b8ebc317b862a7175df1843d173ebbe489e0f27e5a574fb6b607a3a4e",
            training="dsae-sprites-paired-z4 trained on to 7500 steps (the cosine schedule restarts at step 3000): "
                     "its command with --out dsaecodec/weights/dsae-sprites-paired-z4-long.pt, then the same with "
                     "--steps 7500 --resume",
        ),
        ModelCard(
            name="dsae-sprites-paired-motion",
            family="dsae",
            domain="sprites (64x64 procedural characters)",
            weights="dsae-sprites-paired-motion.pt",
            sha256="b33d7ee344cce2e17052c5c3e470918137a3fc1e7c6107a6b307145dafbe71b3",
            training="dsae-sprites-paired-z4-long fine-tuned for 3000 steps with z_1:T also inferred from another "
                     "character in the same motion (supervised swaps of train characters): dsaecodec train --dataset "
                     "sprites --paired-content --paired-motion --z-channels 4 --init "
                     "dsaecodec/weights/dsae-sprites-paired-z4-long.pt --out "
                     "dsaecodec/weights/dsae-sprites-paired-motion.pt --steps 3000 --threads 1",
        ),
    ]
}
DEFAULT_MODEL = "dsae-natural"


class UnknownModelError(Exception):
    """A model name or weights hash that no shipped model has."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, family: str, path: Path) -> str:
    """Write a weights file atomically; returns its sha256 (hex)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"family": family, "config": model.config.to_dict(), "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return sha256_of(path)


def resize_table_buffers(model: nn.Module, state_dict: dict) -> None:
    """Entropy-table buffers have data-dependent sizes: shape them like the saved ones before loading."""
    for name, buffer in model.named_buffers():
        if name.rsplit(".", 1)[-1] in ("_quantized_cdf", "_offset", "_cdf_length") and name in state_dict:
            module = model.get_submodule(name.rsplit(".", 1)[0])
            module.register_buffer(name.rsplit(".", 1)[-1], torch.empty_like(state_dict[name]))


def load_weights(path: Path) -> nn.Module:
    """Build the model a weights file describes and load it (eval mode, CPU)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model_class, config_class = FAMILIES[checkpoint["family"]]
    config = checkpoint["config"]
    config["lambdas"] = tuple(config["lambdas"])
    model = model_class(config_class(**config))
    resize_table_buffers(model, checkpoint["state_dict"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_model(name: str) -> tuple[nn.Module, ModelCard]:
    """A shipped model by name, its weights checked against the registered sha256."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; shipped models: {', '.join(MODELS)}")
    card = MODELS[name]
    path = WEIGHTS_DIR / card.weights
    if not path.is_file():
        raise UnknownModelError(f"weights of {name} are missing ({path})")
    if sha256_of(path) != card.sha256:
        raise UnknownModelError(f"weights of {name} do not match their registered sha256 ({path})")
    return load_weights(path), card


def weights_card(path: Path, name: str | None = None) -> ModelCard:
    """A ModelCard for a weights file that is not shipped (e.g. a fresh training run), named `name` or
    the file stem. UnknownModelError if the file is missing or not a weights file, or if the name is not
    1..64 printable ASCII characters (what a .dsae header holds)."""
    path = Path(path)
    name = path.stem if name is None else name
    if not path.is_file():
        raise UnknownModelError(f"no weights file {path}")
    if not (name.isascii() and name.isprintable() and 1 <= len(name) <= MAX_NAME_LENGTH):
        raise UnknownModelError(f"model name {name!r} must be 1..{MAX_NAME_LENGTH} printable ASCII characters")
    try:
        family = torch.load(path, map_location="cpu", weights_only=True)["family"]
    except Exception as error:  # not a torch file, or not one of ours
        raise UnknownModelError(f"{path} is not a dsaecodec weights file ({error})") from error
    if family not in FAMILIES:
        raise UnknownModelError(f"{path} holds an unknown model family {family!r}")
    return ModelCard(name=name, family=family, domain="unregistered weights file", weights=str(path.absolute()),
                     sha256=sha256_of(path), training=f"not shipped: {path}")


def register_weights_file(path: Path) -> str:
    """Register `weights_card(path)` under the file stem so the file codes and decodes like a shipped model
    in this process; returns the name. Registering weights already known under that name is a no-op;
    UnknownModelError if the name is taken by other weights."""
    card = weights_card(path)
    known = MODELS.get(card.name)
    if known is not None and known.sha256 != card.sha256:
        raise UnknownModelError(f"model name {card.name!r} is taken by other weights; rename {Path(path).name}")
    MODELS.setdefault(card.name, card)
    return card.name


def resolve(name_or_path: str | Path) -> str:
    """The registered name of a shipped model's name, or of a weights file (a path ending in .pt, registered under
    its stem by `register_weights_file`); UnknownModelError for anything else."""
    text = str(name_or_path)
    if text.endswith(".pt"):
        return register_weights_file(Path(text))
    if text not in MODELS:
        raise UnknownModelError(f"unknown model {text!r}: not one of {', '.join(MODELS)}, nor a weights file (.pt)")
    return text


def card_for(name: str, sha256: str) -> ModelCard:
    """The shipped model a .dsae file asks for (by name and weights hash), or UnknownModelError."""
    card = MODELS.get(name)
    if card is None or card.sha256 != sha256:
        raise UnknownModelError(
            f"this file needs model {name!r} with weights sha256 {sha256[:16]}…, which this installation does not have"
        )
    return card
