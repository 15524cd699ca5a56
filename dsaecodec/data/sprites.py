"""Procedural cartoon sprites, 64×64 RGB, in the spirit of the LPC Sprites of Li & Mandt (2018).

A character (an *identity*) is one option of each of four content attributes, 6 options each:
1296 identities, split once and for all into 1000 for training and 296 for testing (as in the paper).
An action (walk, spellcast, slash) seen from a direction (left, front, right) is a cycle of
`CYCLE` poses; a clip takes consecutive poses from a starting phase, looping the cycle.

A pose is a 3-D stick figure (limb angles); a frame is drawn by projecting it to the side or front
view and painting anti-aliased signed-distance shapes (capsules, ellipses, polygons) with a 1-px
dark outline. Left is the mirror image of right. Everything is a pure function of the labels.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

SIZE = 64
CYCLE = 8  # poses per action cycle
ACTIONS = ("walk", "spellcast", "slash")
DIRECTIONS = ("left", "front", "right")
LEFT, FRONT, RIGHT = range(3)


class Look(NamedTuple):
    """One option of a content attribute: a name, an RGB colour (0-255) and a shape (skin has none)."""
    name: str
    colour: tuple[int, int, int]
    shape: str = ""


BODY = (Look("pale", (255, 224, 200)), Look("tan", (226, 170, 110)), Look("brown", (160, 100, 55)),
        Look("dark", (92, 58, 36)), Look("green", (120, 180, 80)), Look("lavender", (185, 160, 235)))
HAIR = (Look("black short", (25, 25, 30), "short"), Look("blonde long", (245, 205, 70), "long"),
        Look("red spiky", (215, 45, 25), "spiky"), Look("brown bun", (120, 70, 35), "bun"),
        Look("white mohawk", (240, 240, 240), "mohawk"), Look("blue bob", (50, 90, 215), "bob"))
TOP = (Look("red t-shirt", (205, 35, 40), "t-shirt"), Look("green long-sleeve", (40, 150, 60), "long-sleeve"),
       Look("blue tank", (40, 90, 220), "tank"), Look("yellow striped", (245, 215, 50), "striped"),
       Look("purple jacket", (130, 60, 170), "jacket"), Look("orange tunic", (245, 135, 30), "tunic"))
BOTTOM = (Look("brown trousers", (110, 70, 40), "trousers"), Look("navy trousers", (30, 40, 100), "trousers"),
          Look("black shorts", (30, 30, 30), "shorts"), Look("khaki shorts", (190, 170, 115), "shorts"),
          Look("red skirt", (190, 20, 60), "skirt"), Look("teal skirt", (30, 160, 160), "skirt"))
ATTRIBUTES: dict[str, tuple[Look, ...]] = {"body": BODY, "hair": HAIR, "top": TOP, "bottom": BOTTOM}
N_IDENTITIES = int(np.prod([len(options) for options in ATTRIBUTES.values()]))
N_TRAIN = 1000
SPLIT_SEED = 2018  # fixes the identity split for every dataset seed

BACKGROUND = np.array((236, 233, 222), np.float32)
SHADOW = np.array((205, 200, 188), np.float32)
OUTLINE = np.array((35, 28, 30), np.float32)
SHOE = np.array((70, 45, 30), np.float32)
EYE = np.array((20, 20, 40), np.float32)
BLADE, HILT = np.array((200, 205, 220), np.float32), np.array((140, 95, 40), np.float32)
SPARK, GLOW = np.array((255, 255, 225), np.float32), np.array((255, 215, 70), np.float32)
SHIRT_TRIM, BELT = np.array((250, 250, 245), np.float32), np.array((75, 68, 70), np.float32)


# --- poses -------------------------------------------------------------------------------------

class Limb(NamedTuple):
    """Angles in degrees of a two-segment limb hanging from its root joint."""
    pitch: float  # upper segment swung forward (towards the facing direction) from straight down
    bend: float  # added to the pitch for the lower segment (elbows bend forward > 0, knees back < 0)
    roll: float = 0.0  # both segments raised sideways, away from the body's midline


class Pose(NamedTuple):
    arms: tuple[Limb, Limb]  # (right, left) of the character; the right hand holds a sword
    legs: tuple[Limb, Limb]
    prop: str = ""  # "", "sword" or "spark" (magic at both hands)


STAND = Limb(0.0, 0.0, 3.0)


def _walk_pose(k: int) -> Pose:
    """Pose k of the walk: legs swing ±30°, each knee bends after toe-off, arms swing against the legs."""
    phi = 2 * np.pi * k / CYCLE
    legs = tuple(Limb(30 * np.sin(phi + half), -40 * max(np.cos(phi + half + np.pi / 4), 0.0), 3)
                 for half in (0.0, np.pi))
    arms = (Limb(-30 * np.sin(phi), 20, 6), Limb(30 * np.sin(phi), 20, 6))
    return Pose(arms, legs)


def _spellcast_pose(k: int) -> Pose:
    """Pose k of the spellcast: both arms rise forward and outward overhead, sparkle, and fall."""
    pitch = (10, 45, 85, 115, 125, 125, 90, 40)[k]
    arm = Limb(pitch, 15 if pitch < 115 else 0, 10 + pitch / 6)
    return Pose((arm, arm), (STAND, STAND), "spark" if pitch >= 115 else "")


def _slash_pose(k: int) -> Pose:
    """Pose k of the slash: the sword arm winds up behind the head and swings down and forward."""
    pitch, bend = ((30, 30), (100, 30), (170, 20), (205, 10), (150, 0), (95, 0), (55, 0), (35, 20))[k]
    stance = (Limb(18, -10, 6), Limb(-18, 0, 6))
    return Pose((Limb(pitch, bend, 20), Limb(25, 35, 8)), stance, "sword")


POSES: tuple[tuple[Pose, ...], ...] = tuple(tuple(make(k) for k in range(CYCLE))
                                            for make in (_walk_pose, _spellcast_pose, _slash_pose))


# --- signed-distance shapes on the pixel grid (negative inside, in pixels) ---------------------

_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5  # pixel centres


def _capsule(a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Segment a-b (x, y) thickened to `radius`."""
    ab = b - a
    t = np.clip(((_X - a[0]) * ab[0] + (_Y - a[1]) * ab[1]) / max(ab @ ab, 1e-9), 0.0, 1.0)
    return np.hypot(_X - a[0] - t * ab[0], _Y - a[1] - t * ab[1]) - radius


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Axis-aligned ellipse (distance approximated by scaling the unit circle's)."""
    return (np.hypot((_X - cx) / rx, (_Y - cy) / ry) - 1.0) * min(rx, ry)


def _polygon(*points: tuple[float, float]) -> np.ndarray:
    """Convex polygon with vertices in clockwise screen order (y down); exact inside, close outside."""
    edges = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        nx, ny = y1 - y0, x0 - x1  # outward normal of a clockwise edge on a y-down screen
        edges.append(((_X - x0) * nx + (_Y - y0) * ny) / np.hypot(nx, ny))
    return np.max(edges, axis=0)


def _box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return _polygon((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _blend(canvas: np.ndarray, sdf: np.ndarray, colour: np.ndarray) -> None:
    """Paint `colour` over the (H, W, 3) canvas where sdf < 0, with a 1-px anti-aliased edge."""
    touched = sdf < 0.5
    alpha = np.minimum(0.5 - sdf[touched], 1.0)[:, None]
    canvas[touched] = canvas[touched] * (1.0 - alpha) + alpha * colour


def _paint(canvas: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]], outline: bool = True) -> None:
    """Paint a group of shapes in order; the group's union gets one 1-px dark outline."""
    if outline:
        _blend(canvas, np.min([sdf for sdf, _ in parts], axis=0) - 1.0, OUTLINE)
    for sdf, colour in parts:
        _blend(canvas, sdf, colour)


# --- the character -----------------------------------------------------------------------------

HEAD = (7.0, 7.5)  # radii (x, y)
SHOULDER_Y, HIP_Y, GROUND_Y = 26.0, 40.0, 58.0  # standing, before bobbing
ARM, LEG = (8.0, 7.5), (9.0, 9.0)  # segment lengths
ARM_R, LEG_R = 2.0, 2.3
SLEEVES = {"tank": 0, "tunic": 0, "t-shirt": 1, "striped": 1, "long-sleeve": 2, "jacket": 2}  # segments covered
LATERAL = (-1.0, 1.0)  # (right, left) limbs of a character facing the viewer are on the image (left, right)
FAR_SHADE = 0.75  # far limbs in side views are darker


def _limb(root: np.ndarray, limb: Limb, lengths: tuple[float, float], lateral: float, side: bool) -> np.ndarray:
    """Screen points (3, 2) root, joint, end of a limb, projected to the side view or the front view."""
    points = [root]
    for pitch, length in zip((limb.pitch, limb.pitch + limb.bend), lengths):
        p, r = np.radians(pitch), np.radians(limb.roll)
        dx = np.sin(p) * np.cos(r) if side else lateral * np.sin(r)
        points.append(points[-1] + length * np.array((dx, np.cos(p) * np.cos(r))))
    return np.array(points, np.float32)


def _skeleton(pose: Pose, side: bool) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(arms, legs, bob): limb points (right, left) and the body's vertical shift that puts the lower foot
    on the ground."""
    legs = [_limb(np.array((32.0 if side else 32.0 + 3.0 * s, HIP_Y)), leg, LEG, s, side)
            for leg, s in zip(pose.legs, LATERAL)]
    bob = GROUND_Y - max(points[-1, 1] for points in legs)
    for points in legs:
        points[:, 1] += bob
    arms = [_limb(np.array((32.0 if side else 32.0 + 6.5 * s, SHOULDER_Y + bob)), arm, ARM, s, side)
            for arm, s in zip(pose.arms, LATERAL)]
    return arms, legs, bob


def _hair(style: str, hx: float, hy: float, side: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(behind-the-head or None, over-the-head) hair shapes around the head centre (hx, hy)."""
    rx, ry = HEAD
    top = hy - ry
    cap = np.maximum(_ellipse(hx, hy, rx + 1.0, ry + 1.0), _Y - (hy - 2.0))  # the crown
    if side:  # ... and the back of the head down to the ear
        cap = np.minimum(cap, np.max([_ellipse(hx, hy, rx + 1.0, ry + 1.0), _X - (hx - 2.0), _Y - (hy + 1.0)], axis=0))
    if style == "short":
        return None, cap
    if style == "long":
        back = _box(hx - 8.5, hy - 3, hx - 1, hy + 13) if side else \
            _polygon((hx - 8, hy - 4), (hx + 8, hy - 4), (hx + 9.5, hy + 12), (hx - 9.5, hy + 12))
        return back, cap
    if style == "spiky":
        tips = ((-5, -4), (-1, -4), (3, -4)) if side else ((-4, -2), (0, 0), (4, 2))  # (base x, tip offset)
        spikes = [_polygon((hx + x - 3.5, top + 3), (hx + x + d, top - 5), (hx + x + 3.5, top + 3)) for x, d in tips]
        return None, np.min([cap, *spikes], axis=0)
    if style == "bun":
        bun = _ellipse(hx - 5, hy - 7, 3.5, 3.5) if side else _ellipse(hx, top - 2, 3.8, 3.3)
        return None, np.minimum(cap, bun)
    if style == "mohawk":  # a ridge from the brow over the crown, no cap
        if side:
            return None, _capsule(np.array((hx + 4, top + 1)), np.array((hx - 6, top + 3)), 3.0)
        return None, _capsule(np.array((hx, top - 2.5)), np.array((hx, top + 4)), 2.5)
    if style == "bob":  # a helmet of hair down to the chin, cut open for the face
        face = _box(hx - 1, hy - 2.5, hx + 10, hy + 12) if side else _box(hx - 5, hy - 2.5, hx + 5, hy + 12)
        return None, np.max([_ellipse(hx, hy, rx + 1.8, ry + 1.5), _Y - (hy + 6), -face], axis=0)
    raise ValueError(f"unknown hair style {style!r}")


def _leg_parts(points: np.ndarray, skin: np.ndarray, bottom: Look, side: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Thigh, shin and shoe of a leg; trousers cover both segments, shorts the thigh, skirts neither."""
    colour = np.array(bottom.colour, np.float32)
    thigh = colour if bottom.shape != "skirt" else skin
    shin = colour if bottom.shape == "trousers" else skin
    toe = points[2] + np.array((1.5 if side else 0.0, 0.5))
    return [(_capsule(points[0], points[1], LEG_R), thigh), (_capsule(points[1], points[2], LEG_R), shin),
            (_ellipse(*toe, 3.2 if side else 2.6, 1.8), SHOE)]


def _arm_parts(points: np.ndarray, skin: np.ndarray, top: Look) -> list[tuple[np.ndarray, np.ndarray]]:
    """Upper arm, forearm and hand; sleeves cover 0, 1 or 2 segments."""
    shirt = np.array(top.colour, np.float32)
    upper, lower = (shirt if SLEEVES[top.shape] > i else skin for i in range(2))
    return [(_capsule(points[0], points[1], ARM_R), upper), (_capsule(points[1], points[2], ARM_R), lower),
            (_ellipse(*points[2], 2.2, 2.2), skin)]


def _shaded(parts: list[tuple[np.ndarray, np.ndarray]], shade: float) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(sdf, colour * shade) for sdf, colour in parts]


def _hips(bottom: Look, waist: float, side: bool) -> np.ndarray:
    """The skirt, or the seat of the trousers/shorts, hanging from the waist."""
    if bottom.shape == "skirt":
        hem = waist + 9.0
        if side:
            return _polygon((28.0, waist - 3), (36.0, waist - 3), (38.5, hem), (25.5, hem))
        return _polygon((26.5, waist - 3), (37.5, waist - 3), (40.5, hem), (23.5, hem))
    return _box(28.0, waist - 3, 36.0, waist + 3) if side else _box(26.5, waist - 3, 37.5, waist + 3)


def _torso_parts(top: Look, bob: float, side: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The shirt with its trim: stripes, the jacket's open front, the tunic's belt (tunics reach below the hips)."""
    shirt = np.array(top.colour, np.float32)
    waist, y0 = HIP_Y + bob, SHOULDER_Y - 2.0 + bob
    bottom = waist + (5.0 if top.shape == "tunic" else 0.0)
    flare = 1.5 if top.shape == "tunic" else 0.0
    torso = _polygon((28.5, y0), (35.5, y0), (36.0, bottom), (28.0, bottom)) if side else \
        _polygon((25.0, y0), (39.0, y0), (37.0 + flare, bottom), (27.0 - flare, bottom))
    trim = {"striped": (np.abs((_Y - bob) % 4.0 - 2.0) - 1.0, shirt * 0.55),
            "jacket": (_box(34.5, 0, 37, SIZE) if side else _box(30.5, 0, 33.5, SIZE), SHIRT_TRIM),
            "tunic": (_box(0, waist - 2, SIZE, waist), BELT)}.get(top.shape)
    return [(torso, shirt)] + ([(np.maximum(torso, trim[0]), trim[1])] if trim else [])


def _prop_parts(prop: str, arms: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A sword along the right forearm, or a spark in each hand, or nothing."""
    if prop == "sword":
        elbow, hand = arms[0][1], arms[0][2]
        along = (hand - elbow) / np.linalg.norm(hand - elbow)
        guard, across = hand + 2 * along, np.array((-along[1], along[0]))
        return [(_capsule(guard, hand + 15 * along, 1.1), BLADE),
                (_capsule(guard - 3 * across, guard + 3 * across, 1.0), HILT)]
    if prop == "spark":
        return [part for points in arms for part in ((_ellipse(*points[2], 3.5, 3.5), GLOW),
                                                     (_ellipse(*points[2], 1.8, 1.8), SPARK))]
    return []


def _draw(look: dict[str, Look], pose: Pose, side: bool) -> np.ndarray:
    """Float (64, 64, 3) image, 0-255, of a character facing right (`side`) or the viewer.

    Painted back to front: back hair, far limbs (side view), legs, hips, torso, head, near arms, prop.
    """
    skin = np.array(look["body"].colour, np.float32)
    arms, legs, bob = _skeleton(pose, side)
    canvas = np.broadcast_to(BACKGROUND, (SIZE, SIZE, 3)).copy()
    _blend(canvas, _ellipse(32.0, GROUND_Y + 1.0, 11.0, 2.2), SHADOW)

    hx, hy = (33.0 if side else 32.0), 16.0 + bob
    back_hair, front_hair = _hair(look["hair"].shape, hx, hy, side)
    hair = np.array(look["hair"].colour, np.float32)
    if back_hair is not None:
        _paint(canvas, [(back_hair, hair * FAR_SHADE)])
    if side:
        _paint(canvas, _shaded(_arm_parts(arms[1], skin, look["top"]), FAR_SHADE))
        _paint(canvas, _shaded(_leg_parts(legs[1], skin, look["bottom"], side), FAR_SHADE))
    near_legs = [part for points in (legs[:1] if side else legs)
                 for part in _leg_parts(points, skin, look["bottom"], side)]
    hips = (_hips(look["bottom"], HIP_Y + bob, side), np.array(look["bottom"].colour, np.float32))
    if look["bottom"].shape == "skirt":  # over the legs
        _paint(canvas, near_legs)
        _paint(canvas, [hips])
    else:  # one piece with the legs
        _paint(canvas, [hips] + near_legs)
    _paint(canvas, _torso_parts(look["top"], bob, side))

    _paint(canvas, [(_ellipse(hx, hy, *HEAD), skin), (front_hair, hair)])
    for ex in ((hx + 3.5,) if side else (hx - 3, hx + 3)):
        _blend(canvas, _ellipse(ex, hy + 1, 1.1, 1.4), EYE)

    for points in (arms[:1] if side else arms):
        _paint(canvas, _arm_parts(points, skin, look["top"]))
    props = _prop_parts(pose.prop, arms)
    if props:
        _paint(canvas, props, outline=pose.prop != "spark")
    return canvas


# --- public API --------------------------------------------------------------------------------

def attributes_of(identity: int) -> dict[str, int]:
    """Attribute options {"body", "hair", "top", "bottom"} of an identity in [0, N_IDENTITIES)."""
    shape = [len(options) for options in ATTRIBUTES.values()]
    return {name: int(i) for name, i in zip(ATTRIBUTES, np.unravel_index(identity, shape))}


def identity_of(attributes: Mapping[str, int]) -> int:
    """Inverse of `attributes_of`."""
    shape = [len(options) for options in ATTRIBUTES.values()]
    return int(np.ravel_multi_index([attributes[name] for name in ATTRIBUTES], shape))


def render_frame(attributes: Mapping[str, int], action: int, direction: int, phase: int) -> np.ndarray:
    """uint8 (64, 64, 3) frame: pose `phase` (mod CYCLE) of `action` seen from `direction`."""
    return _frame(identity_of(attributes), action, direction, phase % CYCLE).copy()


def render_clip(attributes: Mapping[str, int], action: int, direction: int, frames: int, phase: int = 0) -> np.ndarray:
    """uint8 (frames, 64, 64, 3): consecutive poses of the action cycle from `phase`, looping."""
    identity = identity_of(attributes)
    return np.stack([_frame(identity, action, direction, (phase + t) % CYCLE) for t in range(frames)])


def _frame(identity: int, action: int, direction: int, phase: int) -> np.ndarray:
    """Read-only uint8 (64, 64, 3) frame; left is the mirror image of right."""
    if direction == LEFT:
        return _drawn(identity, action, RIGHT, phase)[:, ::-1]
    return _drawn(identity, action, direction, phase)


@lru_cache(maxsize=None)  # at most 1296 identities x 3 actions x 2 views x 8 poses = 62 208 frames, 0.76 GiB
def _drawn(identity: int, action: int, direction: int, phase: int) -> np.ndarray:
    """Read-only uint8 (64, 64, 3) front or right view, drawn once (drawing costs ~3 ms; training asks
    for each frame many times, more so with partners)."""
    attributes = attributes_of(identity)
    look = {name: options[attributes[name]] for name, options in ATTRIBUTES.items()}
    frame = np.round(_draw(look, POSES[action][phase], side=direction != FRONT)).clip(0, 255).astype(np.uint8)
    frame.flags.writeable = False
    return frame


class Sprites(Dataset):
    """(clip, labels): float32 (T, 3, 64, 64) in [0, 1] and a dict of ints
    {"body", "hair", "top", "bottom", "action", "direction", "phase", "identity"}.

    The split's distinct clips (identity × action × direction × starting phase: 72 000 train,
    21 312 test) are visited in an order fixed by `seed`; `length` (default: all of them) may be
    shorter (a subset) or longer (wraps). Item i is a pure function of (split, seed, i).

    With `motion_changes` p > 0, a clip's character switches with probability p to another
    action × direction at a random frame k (1 <= k < T) and goes on from the same phase: motion
    that changes within a clip, as it does in real video. The labels then hold the first motion,
    and "change" holds k (T: no change).
    """

    def __init__(self, split: str = "train", frames: int = 8, length: int | None = None, seed: int = 0,
                 motion_changes: float = 0.0):
        if not 0 <= motion_changes <= 1:
            raise ValueError(f"motion_changes is a probability, not {motion_changes}")
        self.ids = self.identities(split)
        self.frames, self.seed, self.motion_changes = frames, seed, motion_changes
        self.grid = (len(self.ids), len(ACTIONS), len(DIRECTIONS), CYCLE)
        self.order = np.random.default_rng(seed).permutation(int(np.prod(self.grid)))
        self.length = len(self.order) if length is None else length

    @staticmethod
    def identities(split: str) -> np.ndarray:
        """Sorted identity numbers of the "train" (1000) or "test" (296) characters."""
        chosen = np.random.default_rng(SPLIT_SEED).permutation(N_IDENTITIES)
        parts = {"train": chosen[:N_TRAIN], "test": chosen[N_TRAIN:]}
        if split not in parts:
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        return np.sort(parts[split])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, int]]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        clip_number = self.order[index % len(self.order)]
        slot, action, direction, phase = (int(i) for i in np.unravel_index(clip_number, self.grid))
        identity = int(self.ids[slot])
        attributes = attributes_of(identity)
        clip = render_clip(attributes, action, direction, self.frames, phase)
        change = self.frames
        rng = np.random.default_rng([self.seed, index]) if self.motion_changes and self.frames > 1 else None
        if rng is not None and rng.random() < self.motion_changes:
            change = int(rng.integers(1, self.frames))
            others = [m for m in np.ndindex(len(ACTIONS), len(DIRECTIONS)) if m != (action, direction)]
            new_action, new_direction = others[rng.integers(len(others))]
            clip[change:] = render_clip(attributes, new_action, new_direction, self.frames - change, phase + change)
        labels = {**attributes, "action": action, "direction": direction, "phase": phase, "identity": identity,
                  "change": change}
        return _as_tensor(clip), labels


class Partners(Dataset):
    """float32 (1 + content + motion, T, 3, 64, 64): item i of `Sprites(split, frames, length, seed)`,
    then (content) a *content partner*: the same character doing another action or facing another
    direction, from a random phase; then (motion) a *motion partner*: another character of the split
    in the same motion (action, direction and phase).

    Weak supervision for `dsaecodec train --paired-content / --paired-motion`: the model infers f from
    the content partner and z_1:T from the motion partner, and must reconstruct the clip, so f cannot
    carry the motion nor z_1:T the content. Item i is a pure function of (split, seed, i).
    """

    def __init__(self, split: str = "train", frames: int = 8, length: int | None = None, seed: int = 0,
                 content: bool = True, motion: bool = False):
        if not (content or motion):
            raise ValueError("Partners needs a content or a motion partner")
        self.clips = Sprites(split, frames, length, seed)
        self.seed, self.content, self.motion = seed, content, motion

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        clip, labels = self.clips[index]
        rng = np.random.default_rng((self.seed, 7, index))
        own_motion = (labels["action"], labels["direction"])
        items = [clip]
        if self.content:
            motions = [(a, d) for a in range(len(ACTIONS)) for d in range(len(DIRECTIONS)) if (a, d) != own_motion]
            action, direction = motions[rng.integers(len(motions))]
            items.append(_as_tensor(render_clip(attributes_of(labels["identity"]), action, direction,
                                                self.clips.frames, int(rng.integers(CYCLE)))))
        if self.motion:
            others = self.clips.ids[self.clips.ids != labels["identity"]]
            items.append(_as_tensor(render_clip(attributes_of(int(others[rng.integers(len(others))])), *own_motion,
                                                self.clips.frames, labels["phase"])))
        return torch.stack(items)


def _as_tensor(clip: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float() / 255.0
