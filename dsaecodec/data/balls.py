"""Bouncing balls: elastic discs in the unit box, drawn anti-aliased in distinct colours on black.

Positions and radii are in box units ([0, 1]², so 32×32 and 64×64 renderings of an item show the
same motion), velocities in box units per frame. Each frame is integrated in `substeps` steps;
walls reflect, and two touching balls exchange momentum along their line of centres (mass ∝ r²).
Both conserve kinetic energy exactly; overlap left by a sub-step is removed by pushing the pair apart.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "test")
MAX_PASSES = 20  # contact-resolution passes per sub-step


def initial_state(rng: np.random.Generator, balls: int, radius: tuple[float, float] = (0.08, 0.13),
                  speed: tuple[float, float] = (0.02, 0.05)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-overlapping random (positions (N, 2), velocities (N, 2), radii (N,)) in the unit box."""
    radii = rng.uniform(*radius, balls)
    positions = np.zeros((balls, 2))
    for i, r in enumerate(radii):
        for _ in range(1000):
            positions[i] = rng.uniform(r, 1.0 - r, 2)
            if np.all(np.linalg.norm(positions[:i] - positions[i], axis=1) > radii[:i] + r):
                break
        else:
            raise ValueError(f"cannot place {balls} balls of radius up to {radius[1]} in the box")
    angle = rng.uniform(0.0, 2 * np.pi, balls)
    velocities = rng.uniform(*speed, balls)[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return positions, velocities, radii


def _collide(positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray) -> bool:
    """In place: every overlapping pair that approaches gets the elastic impulse; all pairs separate.

    Returns whether any pair overlapped (a push may have created new contacts).
    """
    mass = radii ** 2
    first, second = np.triu_indices(len(radii), 1)
    gaps = np.linalg.norm(positions[second] - positions[first], axis=1) - radii[first] - radii[second]
    for i, j in zip(first[gaps < 0], second[gaps < 0]):
        delta = positions[j] - positions[i]
        distance = np.linalg.norm(delta)
        normal = delta / distance
        inverse = 1.0 / mass[i] + 1.0 / mass[j]
        approach = (velocities[i] - velocities[j]) @ normal
        if approach > 0:
            impulse = 2.0 * approach / inverse
            velocities[i] -= impulse / mass[i] * normal
            velocities[j] += impulse / mass[j] * normal
        push = (radii[i] + radii[j] - distance) / inverse  # the lighter ball moves further
        positions[i] -= push / mass[i] * normal
        positions[j] += push / mass[j] * normal
    return bool(np.any(gaps < 0))


def _bounce(positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray) -> None:
    """In place: reflect positions and velocities at the walls of the unit box."""
    low, high = radii[:, None], 1.0 - radii[:, None]
    below, above = positions < low, positions > high
    positions[:] = np.where(below, 2 * low - positions, np.where(above, 2 * high - positions, positions))
    velocities[:] = np.where(below, np.abs(velocities), np.where(above, -np.abs(velocities), velocities))


def step(positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray,
         substeps: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """New (positions, velocities), (N, 2) each, one frame later."""
    positions, velocities = positions.astype(np.float64), velocities.astype(np.float64)
    for _ in range(substeps):
        positions += velocities / substeps
        _bounce(positions, velocities, radii)
        for _ in range(MAX_PASSES):  # a push can drive a ball into a wall or a third ball
            if not _collide(positions, velocities, radii):
                break
            _bounce(positions, velocities, radii)
    return positions, velocities


def simulate(positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray, frames: int,
             substeps: int = 10) -> np.ndarray:
    """Positions (frames, N, 2) starting with the given ones."""
    track = [positions]
    for _ in range(frames - 1):
        positions, velocities = step(positions, velocities, radii, substeps)
        track.append(positions)
    return np.stack(track)


def colours(balls: int, offset: float) -> np.ndarray:
    """(N, 3) fully saturated RGB in [0, 1], hues evenly spaced from `offset` (in turns)."""
    hue = (offset + np.arange(balls) / balls) % 1.0
    return np.clip(np.abs((6 * hue[:, None] + np.array([0.0, 4.0, 2.0])) % 6 - 3) - 1, 0.0, 1.0)


def render(track: np.ndarray, radii: np.ndarray, rgb: np.ndarray, size: int) -> np.ndarray:
    """float32 (T, 3, size, size) in [0, 1]: discs with 1-px anti-aliased edges on black."""
    centres = (np.arange(size) + 0.5) / size
    dy = centres[None, None, :, None] - track[:, :, 1, None, None]  # (T, N, size, 1)
    dx = centres[None, None, None, :] - track[:, :, 0, None, None]  # (T, N, 1, size)
    cover = np.clip((radii[None, :, None, None] - np.hypot(dx, dy)) * size + 0.5, 0.0, 1.0)  # (T, N, H, W)
    image = np.einsum("tnhw,nc->tchw", cover, rgb)  # discs never overlap, so coverage adds up
    return np.clip(image, 0.0, 1.0).astype(np.float32)


class BouncingBalls(Dataset):
    """float32 (frames, 3, size, size) clips in [0, 1] of `balls` bouncing balls.

    Item i is a pure function of (split, seed, i); train and test draw from disjoint seed streams.
    """

    def __init__(self, frames: int = 32, size: int = 64, balls: int = 3, length: int = 10_000, seed: int = 0,
                 split: str = "train", substeps: int = 10):
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        self.frames, self.size, self.balls, self.length = frames, size, balls, length
        self.seed, self.split, self.substeps = seed, split, substeps

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, SPLITS.index(self.split), index))
        positions, velocities, radii = initial_state(rng, self.balls)
        track = simulate(positions, velocities, radii, self.frames, self.substeps)
        return torch.from_numpy(render(track, radii, colours(self.balls, rng.random()), self.size))
