"""Synthetic datasets: sprites (content/action labels, identity split) and bouncing balls (physics)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dsaecodec.data import balls, sprites
from dsaecodec.data.balls import BouncingBalls
from dsaecodec.data.sprites import (ACTIONS, ATTRIBUTES, CYCLE, DIRECTIONS, Partners, Sprites, attributes_of,
                                    render_clip)

CHARACTER = {"body": 1, "hair": 2, "top": 3, "bottom": 4}


# --- sprites -----------------------------------------------------------------------------------

def test_sprites_item_shapes_and_labels():
    clip, labels = Sprites("train")[0]
    assert clip.shape == (8, 3, 64, 64) and clip.dtype == torch.float32
    assert 0.0 <= clip.min() and clip.max() <= 1.0 and clip.std() > 0.1
    assert set(labels) == {*ATTRIBUTES, "action", "direction", "phase", "identity", "change"}
    assert labels["change"] == 8  # no motion changes by default
    assert all(type(value) is int for value in labels.values())
    assert attributes_of(labels["identity"]) == {name: labels[name] for name in ATTRIBUTES}
    assert sprites.identity_of(labels) == labels["identity"]
    assert 0 <= labels["action"] < len(ACTIONS) and 0 <= labels["direction"] < len(DIRECTIONS)


def test_sprites_labels_reproduce_the_clip():
    clip, labels = Sprites("test", frames=5, seed=3)[17]
    attributes = {name: labels[name] for name in ATTRIBUTES}
    again = render_clip(attributes, labels["action"], labels["direction"], 5, labels["phase"])
    assert torch.equal(clip, torch.from_numpy(again).permute(0, 3, 1, 2).float() / 255.0)


def test_sprites_deterministic_by_split_seed_index():
    first, second = Sprites("train", seed=1), Sprites("train", seed=1)
    assert torch.equal(first[7][0], second[7][0]) and first[7][1] == second[7][1]
    assert not torch.equal(first[7][0], first[8][0])
    assert first[7][1] != Sprites("train", seed=2)[7][1]


def test_motion_changes_switch_to_another_motion_from_the_same_phase():
    plain, changing = Sprites("train", frames=6, length=40, seed=2), Sprites("train", frames=6, length=40, seed=2,
                                                                              motion_changes=0.5)
    changes = 0
    for i in range(40):
        (clip, labels), (own, _) = changing[i], plain[i]
        k = labels["change"]
        assert 1 <= k <= 6 and torch.equal(clip[:k], own[:k])  # the first motion, as without changes
        if k < 6:
            changes += 1
            attributes = {name: labels[name] for name in ATTRIBUTES}
            rest = [torch.from_numpy(render_clip(attributes, a, d, 6 - k, labels["phase"] + k)).permute(0, 3, 1, 2)
                    .float() / 255.0 for a, d in itertools.product(range(len(ACTIONS)), range(len(DIRECTIONS)))
                    if (a, d) != (labels["action"], labels["direction"])]
            assert any(torch.equal(clip[k:], r) for r in rest)  # another motion, same character, same phase
        assert torch.equal(clip, changing[i][0])  # a pure function of the index
    assert 10 <= changes <= 30
    assert all(Sprites("train", length=10, motion_changes=1.0)[i][1]["change"] < 8 for i in range(10))
    with pytest.raises(ValueError, match="probability"):
        Sprites("train", motion_changes=1.5)


def test_sprites_length_and_looping():
    data = Sprites("train", frames=CYCLE + 4, length=10)
    assert len(data) == 10 and len(Sprites("test")) == 296 * len(ACTIONS) * len(DIRECTIONS) * CYCLE
    with pytest.raises(IndexError):
        data[10]
    clip, _ = data[0]
    assert clip.shape[0] == CYCLE + 4 and torch.equal(clip[CYCLE:], clip[:4])


def test_identity_split_is_disjoint_and_covers_every_option():
    train, test = Sprites.identities("train"), Sprites.identities("test")
    assert len(train) == 1000 and len(test) == 296
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(range(sprites.N_IDENTITIES))
    for ids in (train, test):
        seen = [attributes_of(int(i)) for i in ids]
        for name, options in ATTRIBUTES.items():
            assert {a[name] for a in seen} == set(range(len(options))), name
    assert all(Sprites("test", length=20)[i][1]["identity"] in set(test) for i in range(0, 20, 5))
    with pytest.raises(ValueError):
        Sprites.identities("validation")


def test_actions_and_directions_give_different_pose_sequences():
    clips = {(a, d): render_clip(CHARACTER, a, d, CYCLE) for a in range(len(ACTIONS)) for d in range(len(DIRECTIONS))}
    assert len(clips) >= 9
    for (key, x), (other, y) in itertools.combinations(clips.items(), 2):
        assert np.abs(x.astype(int) - y).mean() > 1.0, (key, other)
    for clip in clips.values():
        assert len({frame.tobytes() for frame in clip}) >= CYCLE - 1  # poses move (a cast may hold one)


def test_every_attribute_option_changes_the_pixels():
    for name, options in ATTRIBUTES.items():
        assert len(options) >= 6
        for direction in (sprites.FRONT, sprites.RIGHT):
            frames = [sprites.render_frame({**CHARACTER, name: o}, 0, direction, 0) for o in range(len(options))]
            for x, y in itertools.combinations(frames, 2):
                assert (np.abs(x.astype(int) - y).max(axis=-1) > 30).sum() >= 20, (name, direction)


def test_left_is_the_mirror_of_right():
    left = render_clip(CHARACTER, 2, sprites.LEFT, 3, phase=2)
    assert np.array_equal(left, render_clip(CHARACTER, 2, sprites.RIGHT, 3, phase=2)[:, :, ::-1])


def _as_uint8(clip: torch.Tensor) -> np.ndarray:
    return np.round(clip.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def test_partners_show_the_same_character_in_another_motion_and_another_character_in_the_same_motion():
    items = Partners("train", frames=2, length=2, seed=3, content=True, motion=True)
    content_only = Partners("train", frames=2, length=2, seed=3)
    motion_only = Partners("train", frames=2, length=2, seed=3, content=False, motion=True)
    clips = Sprites("train", frames=2, length=2, seed=3)
    train_ids = Sprites.identities("train")
    for index in range(2):
        item, (clip, labels) = items[index], clips[index]
        assert item.shape == (3, 2, 3, 64, 64) and torch.equal(item[0], clip) and torch.equal(items[index], item)
        assert torch.equal(content_only[index], item[:2]) and motion_only[index].shape == (2, 2, 3, 64, 64)
        motion = (labels["action"], labels["direction"])
        content_partner = _as_uint8(item[1])
        matches = [(a, d) for a, d, p in itertools.product(range(len(ACTIONS)), range(len(DIRECTIONS)), range(CYCLE))
                   if np.array_equal(render_clip(attributes_of(labels["identity"]), a, d, 2, p), content_partner)]
        assert matches and motion not in matches
        motion_partner = _as_uint8(item[2])
        characters = [i for i in train_ids
                      if np.array_equal(render_clip(attributes_of(i), *motion, 2, labels["phase"]), motion_partner)]
        assert characters and labels["identity"] not in characters
    with pytest.raises(ValueError, match="partner"):
        Partners("train", content=False, motion=False)


def test_sprites_collate_in_a_dataloader():
    clips, labels = next(iter(DataLoader(Sprites("train", length=8), batch_size=4)))
    assert clips.shape == (4, 8, 3, 64, 64)
    assert set(labels) >= {"body", "hair", "top", "bottom", "action", "direction", "identity"}
    assert all(value.shape == (4,) and value.dtype == torch.int64 for value in labels.values())


# --- bouncing balls ----------------------------------------------------------------------------

def kinetic_energy(velocities: np.ndarray, radii: np.ndarray) -> float:
    return float(0.5 * (radii ** 2 * (velocities ** 2).sum(axis=1)).sum())


def test_balls_shapes_ranges_and_sizes():
    for size, frames in ((64, 32), (32, 100)):
        clip = BouncingBalls(frames=frames, size=size, length=5)[4]
        assert clip.shape == (frames, 3, size, size) and clip.dtype == torch.float32
        assert clip.min() == 0.0 and clip.max() == 1.0
        assert not torch.equal(clip[0], clip[-1])
    with pytest.raises(IndexError):
        BouncingBalls(length=5)[5]


def test_balls_deterministic_and_splits_disjoint():
    data = BouncingBalls(frames=10, seed=4)
    assert torch.equal(data[3], BouncingBalls(frames=10, seed=4)[3])
    assert not torch.equal(data[3], data[4])
    assert not torch.equal(data[3], BouncingBalls(frames=10, seed=4, split="test")[3])
    assert not torch.equal(data[3], BouncingBalls(frames=10, seed=5)[3])


def test_balls_have_distinct_colours():
    rgb = balls.colours(5, 0.3)
    assert min(np.abs(a - b).max() for a, b in itertools.combinations(rgb, 2)) > 0.5


def test_head_on_collision_exchanges_momentum_elastically():
    radii = np.array([0.1, 0.15])
    positions, velocities = np.array([[0.3, 0.5], [0.6, 0.5]]), np.array([[0.05, 0.0], [-0.04, 0.0]])
    after_p, after_v = balls.step(positions, velocities, radii)
    momentum = lambda v: (radii[:, None] ** 2 * v).sum(axis=0)
    assert after_v[0, 0] < 0 < after_v[1, 0]  # they bounced
    assert np.allclose(momentum(after_v), momentum(velocities))
    assert kinetic_energy(after_v, radii) == pytest.approx(kinetic_energy(velocities, radii), rel=1e-12)
    equal, touching = np.array([0.1, 0.1]), np.array([[0.35, 0.5], [0.6, 0.5]])
    assert np.allclose(balls.step(touching, velocities, equal)[1], velocities[::-1])  # equal masses swap


def test_balls_conserve_energy_stay_in_box_and_never_overlap():
    positions, velocities, radii = balls.initial_state(np.random.default_rng(0), 6, speed=(0.04, 0.08))
    energy, ball_collisions = kinetic_energy(velocities, radii), 0
    for _ in range(60):
        new_p, new_v = balls.step(positions, velocities, radii)
        ball_collisions += not np.allclose(np.abs(new_v), np.abs(velocities))  # walls only flip signs
        positions, velocities = new_p, new_v
        assert kinetic_energy(velocities, radii) == pytest.approx(energy, rel=1e-9)
        assert np.all(positions >= radii[:, None]) and np.all(positions <= 1 - radii[:, None])
        first, second = np.triu_indices(len(radii), 1)
        gaps = np.linalg.norm(positions[first] - positions[second], axis=1) - radii[first] - radii[second]
        assert gaps.min() > -1e-6
    assert ball_collisions >= 3
