"""Registry of shipped models and the weights-file format.

The shipped models are the cards `weights/<name>.json` (written by `write_card`) next to their weights
`weights/<name>.pt`; a weights file from a training run is registered at run time (`resolve`).

A weights file is a `torch.save`d dict: {"family": str, "config": dict, "state_dict": dict}, and, if written by
`dsaecodec train`, "training": the run that made it (`training_record`). The
entropy tables of `f` are built (`update_tables`) before saving and travel in the state dict. A
`.dsae` file names its model and a fingerprint of the weights file (the first 8 bytes of its sha256), so a
decoder can refuse a file coded with weights it does not have.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitstream.format import FINGERPRINT_SIZE, MAX_NAME_LENGTH

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"


@functools.cache
def families() -> dict[str, tuple[type[nn.Module], type]]:
    """Model families: name -> (model class, config dataclass); every class subclasses models.base.CodecModel.
    Built on first use, as importing the models imports torch (seconds), which listing the models and reading a
    file's header do not need."""
    from dsaecodec.models.dsae import DSAE, DSAEConfig
    from dsaecodec.models.frame import FrameConfig, FrameVAE
    from dsaecodec.models.rnn import RNNCodec, RNNConfig

    return {
        "dsae": (DSAE, DSAEConfig),  # DSAEConfig(use_f=False) is the ablation without the static latent
        "frame": (FrameVAE, FrameConfig),  # baseline: each frame alone under a scale hyperprior
        "rnn": (RNNCodec, RNNConfig),  # baseline: deterministic ConvLSTM state driven by the past
    }


def __getattr__(name: str) -> Any:
    """`zoo.FAMILIES` is `families()`."""
    if name == "FAMILIES":
        return families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What `dsaecodec models` shows of a model. A shipped model's card is the file `<name>.json` next to its
    weights, so that listing models and reading files needs no torch."""

    name: str
    family: str
    domain: str
    weights: str  # file name under dsaecodec/weights/ (or an absolute path, for a registered weights file)
    sha256: str
    training: str  # data and the command that produced the weights
    qualities: int = 0  # quality levels (0: not recorded)
    parameters: int = 0  # trainable parameters (0: not recorded)


def shipped_cards(folder: Path) -> dict[str, ModelCard]:
    """The cards of the models shipped in `folder`: one `<name>.json` next to each `<name>.pt`, by name."""
    cards = [ModelCard(**json.loads(path.read_text())) for path in sorted(folder.glob("*.json"))]
    return {card.name: card for card in cards}


MODELS: dict[str, ModelCard] = shipped_cards(WEIGHTS_DIR)


def write_card(weights: Path, domain: str, training: str | None = None) -> ModelCard:
    """Ship a weights file: write its card `<name>.json` next to it (name = file stem; family, quality levels,
    parameters and sha256 read from the file; the training note, unless given, from the run the file records)
    and return the card."""
    weights = Path(weights)
    if training is None:
        record = training_record(weights)
        if record is None:
            raise ValueError(f"{weights} records no training run: give the card's training note")
        training = training_summary(record)
    model = load_weights(weights)
    family = next(name for name, (model_class, _) in families().items() if type(model) is model_class)
    card = ModelCard(name=weights.stem, family=family, domain=domain, weights=weights.name, sha256=sha256_of(weights),
                     training=training, qualities=model.qualities,
                     parameters=sum(p.numel() for p in model.parameters()))
    weights.with_suffix(".json").write_text(json.dumps(dataclasses.asdict(card), indent=1) + "\n")
    return card
DEFAULT_MODEL = "dsae-natural"


class UnknownModelError(Exception):
    """A model name or weights hash that no shipped model has."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, family: str, path: Path, training: dict | None = None) -> str:
    """Write a weights file atomically; returns its sha256 (hex). `training`: the run that made it (see
    `training_record`)."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    saved = {"family": family, "config": model.config.to_dict(), "state_dict": model.state_dict()}
    torch.save(saved if training is None else {**saved, "training": training}, tmp)
    os.replace(tmp, path)
    return sha256_of(path)


def training_record(path: Path) -> dict | None:
    """The run a weights file records (None for files written before runs were recorded): {"recipe": the options
    that differ from their defaults, as recipe-file keys; "command": the `dsaecodec train` line they stand for;
    "data": what the data sources held; "steps"; "stages": the runs it took (--resume), each {"from", "to": steps;
    "seconds": its time, None where a run did not record it}; "history": the learning curve, one dict per validation pass and quality (step, quality, coded_bpp,
    estimated_bpp, psnr)}."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True).get("training")


def training_summary(record: dict) -> str:
    """A card's training note from a training record: data, steps, time and the command."""
    return f"{record['data']}; {record['steps']} steps, {training_time(record)}: {record['command']}"


def training_time(record: dict) -> str:
    """A training record's time in words: the total over its stages, and how many stages."""
    times = [stage["seconds"] for stage in record["stages"]]
    total = f"{sum(t for t in times if t is not None):.0f} s" + (" (and stages of unrecorded time)" if None in times else "")
    return total + (f" in {len(times)} stages" if len(times) > 1 else "")


def resize_table_buffers(model: nn.Module, state_dict: dict) -> None:
    """Entropy-table buffers have data-dependent sizes: shape them like the saved ones before loading."""
    import torch

    for name, buffer in model.named_buffers():
        if name.rsplit(".", 1)[-1] in ("_quantized_cdf", "_offset", "_cdf_length") and name in state_dict:
            module = model.get_submodule(name.rsplit(".", 1)[0])
            module.register_buffer(name.rsplit(".", 1)[-1], torch.empty_like(state_dict[name]))


def load_weights(path: Path) -> nn.Module:
    """Build the model a weights file describes and load it (eval mode, CPU)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model_class, config_class = families()[checkpoint["family"]]
    config = checkpoint["config"]
    config["lambdas"] = tuple(config["lambdas"])
    model = model_class(config_class(**config))
    resize_table_buffers(model, checkpoint["state_dict"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def checked_weights(card: ModelCard) -> Path:
    """The weights file of a registered model; UnknownModelError if it is missing or does not match the card's
    sha256. Needs no torch."""
    path = WEIGHTS_DIR / card.weights
    if not path.is_file():
        raise UnknownModelError(f"weights of {card.name} are missing ({path})")
    if sha256_of(path) != card.sha256:
        raise UnknownModelError(f"weights of {card.name} do not match their registered sha256 ({path})")
    return path


def registered_card(name: str) -> ModelCard:
    """The card of a registered model, or UnknownModelError."""
    if name not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; shipped models: {', '.join(MODELS)}")
    return MODELS[name]


def load_model(name: str) -> tuple[nn.Module, ModelCard]:
    """A shipped model by name, its weights checked against the registered sha256."""
    card = registered_card(name)
    return load_weights(checked_weights(card)), card


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
    import torch

    try:
        family = torch.load(path, map_location="cpu", weights_only=True)["family"]
    except Exception as error:  # not a torch file, or not one of ours
        raise UnknownModelError(f"{path} is not a dsaecodec weights file ({error})") from error
    if family not in families():
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


def card_for(name: str, fingerprint_hex: str) -> ModelCard:
    """The registered model a .dsae file asks for, by name and weights fingerprint (the hex of the first
    FINGERPRINT_SIZE bytes of the weights' sha256, as the file stores it), or UnknownModelError."""
    card = MODELS.get(name)
    if card is None or len(fingerprint_hex) != 2 * FINGERPRINT_SIZE or not card.sha256.startswith(fingerprint_hex):
        raise UnknownModelError(f"this file needs model {name!r} with weights fingerprint {fingerprint_hex}, which "
                                f"this installation does not have")
    return card
