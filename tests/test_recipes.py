"""Training recipes as files: configs/<model>.toml for every shipped model, and `train --config`."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from dsaecodec import train, zoo

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def card_command(card: zoo.ModelCard) -> list[str] | None:
    """The options of the one `dsaecodec train` command in a card's training note (None: the note describes
    several stages)."""
    commands = re.findall(r"dsaecodec train ((?:--?\S+(?: (?!--)[^\s,;)]+)*\s*)+)", card.training)
    return shlex.split(commands[0]) if len(commands) == 1 else None


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_shipped_model_has_the_recipe_its_card_records(name):
    """The card's one `dsaecodec train` command is what a recipe in configs/ stands for: configs/NAME.toml, which
    writes the shipped file, or, for a model shipped from a run in stages under checkpoints/, that run's recipe
    (configs/RUN.toml writing checkpoints/RUN/RUN.pt). A card that describes several commands needs configs/NAME.toml."""
    command = card_command(zoo.MODELS[name])
    if command is None:
        recipe = CONFIGS / f"{name}.toml"
        assert recipe.is_file(), f"no recipe {recipe} for shipped model {name}"
        assert train.parse_arguments(["--config", str(recipe)]).out == Path(f"dsaecodec/weights/{name}.pt")
        return
    from_command = train.argument_parser().parse_args(command)
    out = from_command.out
    run = out.stem if out.parent == Path("checkpoints") / out.stem else name
    assert out in (Path(f"dsaecodec/weights/{name}.pt"), Path(f"checkpoints/{run}/{run}.pt")), out
    recipe = CONFIGS / f"{run}.toml"
    assert recipe.is_file(), f"no recipe {recipe} for shipped model {name}"
    assert {**vars(train.parse_arguments(["--config", str(recipe)])), "config": None} == vars(from_command)


def test_a_recipe_and_its_command_line_train_identical_weights(tmp_path):
    options = ["--dataset", "balls", "--channels", "8", "--f-channels", "4", "--z-channels", "2", "--batch", "2",
               "--frames", "3", "--crop", "32", "--validation-clips", "1", "--threads", "1", "--lambdas", "0.001",
               "0.01", "--steps", "2", "--validate-every", "1", "--global-latents"]
    (tmp_path / "tiny.toml").write_text(
        '# a tiny recipe\ndataset = "balls"\nchannels = 8\nf-channels = 4\nz_channels = 2\nbatch = 2\nframes = 3\n'
        'crop = 32\nvalidation-clips = 1\nthreads = 1\nlambdas = [0.001, 0.01]\nsteps = 5\nvalidate-every = 1\n'
        'global-latents = true\nno-f = false\n')
    # one file name for both: torch.save names its archive after the file
    train.main(["--out", str(tmp_path / "command" / "run.pt"), *options])
    train.main(["--config", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "recipe" / "run.pt"), "--steps", "2"])
    # identical weights and the same recorded recipe (the files differ in the recorded training time)
    by_command, by_recipe = (torch.load(tmp_path / run / "run.pt", weights_only=True) for run in ("command", "recipe"))
    assert by_command["state_dict"].keys() == by_recipe["state_dict"].keys()
    assert all(torch.equal(by_command["state_dict"][k], by_recipe["state_dict"][k]) for k in by_command["state_dict"])
    recipe = {**by_recipe["training"]["recipe"], "out": str(tmp_path / "command" / "run.pt")}
    assert by_command["training"]["recipe"] == recipe
    assert zoo.load_weights(tmp_path / "recipe" / "run.pt").frame_size == 32


@pytest.mark.parametrize("text, message", [("steps = [", "--config"), ("no-such-option = 3", "unrecognized"),
                                           ('config = "other.toml"', "another recipe")])
def test_a_bad_recipe_is_one_clear_error(tmp_path, text, message, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text + "\n")
    with pytest.raises(SystemExit) as error:
        train.parse_arguments(["--config", str(recipe), "--out", str(tmp_path / "x.pt")])
    assert message in str(error.value.code) + capsys.readouterr().err
    with pytest.raises(SystemExit, match="--config"):
        train.parse_arguments(["--config", str(tmp_path / "missing.toml")])
