"""Shared fixtures: a tiny untrained model registered in the zoo like a shipped one, and its weights file."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dsaecodec import zoo
from dsaecodec.models.dsae import DSAE, DSAEConfig

TINY_MODEL = "tiny-test"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Name of a small random-init DSAE (entropy tables built) registered like a shipped model."""
    torch.manual_seed(0)
    model = DSAE(DSAEConfig(channels=16, f_channels=8, z_channels=4, hidden_channels=8, lambdas=(0.001, 0.01))).eval()
    model.update_tables()
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    sha = zoo.save_weights(model, "dsae", path)
    card = zoo.ModelCard(name=TINY_MODEL, family="dsae", domain="tests", weights=str(path), sha256=sha,
                         training="random initialisation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(zoo.MODELS, TINY_MODEL, card)
        yield TINY_MODEL


@pytest.fixture
def tiny_weights_file(tiny_model, tmp_path, monkeypatch) -> Callable[[str], Path]:
    """name -> a copy of the tiny model's weights at tmp_path/name.pt, as a training run leaves them;
    whatever the test registers in the zoo is forgotten after it."""
    monkeypatch.setattr(zoo, "MODELS", dict(zoo.MODELS))

    def copy(name: str) -> Path:
        return Path(shutil.copy(zoo.MODELS[tiny_model].weights, tmp_path / f"{name}.pt"))

    return copy
