"""The training pipeline on tiny models: every dataset runs, resume is exact, torchrun keeps replicas identical."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from fractions import Fraction

import pytest
import torch

from dsaecodec import train, zoo
from dsaecodec.data.sprites import ContentPairs
from dsaecodec.videoio import VideoWriter
from helpers import synthetic_clip

TINY = ["--channels", "8", "--f-channels", "4", "--z-channels", "2", "--batch", "2", "--frames", "3",
        "--crop", "32", "--validation-clips", "1", "--threads", "1", "--lambdas", "0.001", "0.01"]


def tiny_run(tmp_path, *extra: str) -> list[str]:
    return ["--out", str(tmp_path / "model.pt"), *TINY, *extra]


@pytest.fixture()
def clip_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    with VideoWriter(folder / "a.mp4", 48, 40, Fraction(25)) as writer:
        for frame in synthetic_clip(12, 40, 48):
            writer.write(frame)
    return folder


@pytest.mark.parametrize("dataset", ["clips", "sprites", "balls"])
def test_twenty_steps_of_each_dataset(tmp_path, clip_folder, dataset, capsys):
    data = ["--data", str(clip_folder)] if dataset == "clips" else []
    train.main(tiny_run(tmp_path, "--dataset", dataset, "--steps", "20", "--validate-every", "10", *data))
    out = capsys.readouterr()
    assert re.search(r"step 20 q1: coded [0-9.]+ bpp \(estimate [0-9.]+\), PSNR [0-9.]+ dB", out.out + out.err)
    model = zoo.load_weights(tmp_path / "model.pt")
    assert model.qualities == 2 and model.f_entropy[0]._offset.numel() == 4  # tables built before saving


def test_paired_content_trains_f_on_the_partner_clip(tmp_path, capsys):
    train.main(tiny_run(tmp_path, "--dataset", "sprites", "--paired-content", "--steps", "3", "--validate-every", "0"))
    out = capsys.readouterr()
    assert re.search(r"step 3 q1: coded [0-9.]+ bpp", out.out + out.err)
    model = zoo.load_weights(tmp_path / "model.pt")
    x, partner = ContentPairs("test", frames=2, length=1)[0].unsqueeze(1)
    model.train()  # the rate of noisy f: the same noise on a different f gives different bits

    def f_bits(content: torch.Tensor | None) -> torch.Tensor:
        torch.manual_seed(0)
        with torch.no_grad():
            return model(x, 1, content=content)["f_bits"]

    assert torch.equal(f_bits(None), f_bits(x)) and not torch.equal(f_bits(None), f_bits(partner))


@pytest.mark.parametrize("options", [["--dataset", "balls"], ["--dataset", "sprites", "--no-f"],
                                     ["--dataset", "sprites", "--family", "frame"]])
def test_paired_content_only_for_the_f_of_a_dsae_on_sprites(tmp_path, options):
    with pytest.raises(SystemExit, match="--paired-content"):
        train.main(tiny_run(tmp_path, "--paired-content", "--steps", "1", *options))


def test_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    straight.mkdir(), split.mkdir()
    common = ["--dataset", "balls", "--steps", "6", "--validate-every", "2", "--checkpoint-every", "2"]
    train.main(tiny_run(straight, *common))
    train.main(tiny_run(split, *common, "--stop-after", "3"))
    assert not (split / "model.pt").exists() and torch.load(split / "model.pt.ckpt", weights_only=False)["step"] == 3
    train.main(tiny_run(split, *common, "--resume"))
    a = torch.load(straight / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(split / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_out_may_name_a_folder_that_does_not_exist_yet(tmp_path):
    train.main(["--out", str(tmp_path / "runs" / "a" / "model.pt"), *TINY, "--dataset", "balls", "--steps", "1",
                "--validate-every", "0"])
    assert (tmp_path / "runs" / "a" / "model.pt").is_file() and (tmp_path / "runs" / "a" / "model.pt.ckpt").is_file()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in train.argument_parser()._actions:
        assert action.help and all(option in text for option in action.option_strings)


def test_torchrun_two_processes_end_identical(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               "-m", "dsaecodec.train", *tiny_run(tmp_path, "--dataset", "balls", "--steps", "4", "--batch", "4",
                                                  "--validate-every", "0")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "weights identical on all 2 processes" in result.stdout
    assert (tmp_path / "model.pt").is_file()
