"""Rasterising toy characters: anti-aliased capsules and discs from distance fields, numpy only.

A `Character` is a `Body` (proportions) plus a `Look` (colours, a torso texture, a background).
Every character also wears nine small *joint markers* in fixed, fully saturated colours
(`MARKER_JOINTS`, `MARKER_COLORS`): they are part of its appearance (a model must draw them
like any other detail), and they let `metrics.detect_markers` find joints in generated frames.
Character colours are kept desaturated so the markers stay distinct.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dreamactor_jax.pose.keypoints import (
    L_ANKLE, L_ELBOW, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, NECK, R_ANKLE, R_ELBOW, R_HIP, R_KNEE,
    R_SHOULDER, R_WRIST,
)
from dreamactor_jax.toy.skeleton import HEAD, PELVIS, Body

PATTERNS = ("plain", "stripes", "checks", "dots")
MARKER_JOINTS = (HEAD, R_ELBOW, R_WRIST, L_ELBOW, L_WRIST, R_KNEE, R_ANKLE, L_KNEE, L_ANKLE)
MARKER_NAMES = ("head", "r_elbow", "r_wrist", "l_elbow", "l_wrist", "r_knee", "r_ankle", "l_knee", "l_ankle")
MARKER_COLORS = np.array([colorsys.hsv_to_rgb(i / len(MARKER_JOINTS), 1.0, 1.0)
                          for i in range(len(MARKER_JOINTS))], np.float32)


@dataclass(frozen=True)
class Look:
    """Colours (RGB in [0, 1]) and texture of a character; `background` fills the frame."""

    skin: tuple[float, float, float] = (0.8, 0.65, 0.55)
    top: tuple[float, float, float] = (0.3, 0.35, 0.6)
    bottom: tuple[float, float, float] = (0.3, 0.3, 0.35)
    pattern: str = "plain"
    pattern_color: tuple[float, float, float] = (0.7, 0.7, 0.7)
    pattern_period: float = 0.07  # fraction of frame height
    background: tuple[float, float, float] = (0.1, 0.1, 0.12)
    markers: bool = True

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"Look.pattern: expected one of {PATTERNS}, got {self.pattern!r}")


@dataclass(frozen=True)
class Character:
    """A body and its look; `seed` is the generator seed it came from (-1 if hand-made)."""

    body: Body
    look: Look
    seed: int = -1

    @property
    def kind(self) -> str:
        return self.body.kind


@dataclass(frozen=True)
class _Prim:
    a: np.ndarray  # [T, 2] pixel coordinates of the two ends (a == b for a disc)
    b: np.ndarray
    ra: float  # radius at a and b, pixels
    rb: float
    color: tuple
    pattern: str = "plain"
    pattern_color: tuple = (0, 0, 0)
    period: float = 1.0  # pixels


def _capsule_fields(p: _Prim, ys: np.ndarray, xs: np.ndarray):
    """Signed distance (pixels) and local (u along, v across) coordinates -> each [T, H, W]."""
    ax, ay = p.a[:, 0, None, None], p.a[:, 1, None, None]
    abx, aby = p.b[:, 0, None, None] - ax, p.b[:, 1, None, None] - ay
    len2 = np.maximum(abx * abx + aby * aby, 1e-9)
    rx, ry = xs[None] - ax, ys[None] - ay
    dot = rx * abx + ry * aby
    t = np.clip(dot / len2, 0.0, 1.0)
    dx, dy = rx - t * abx, ry - t * aby
    d = np.sqrt(dx * dx + dy * dy) - (p.ra + (p.rb - p.ra) * t)
    if p.pattern == "plain":
        return d, None, None
    inv = 1.0 / np.sqrt(len2)
    return d, dot * inv, (rx * aby - ry * abx) * inv


def _texture(p: _Prim, u, v) -> np.ndarray:
    """1 where the pattern colour shows, else 0 -> [T, H, W]."""
    if p.pattern == "plain":
        return np.zeros_like(u)
    q = p.period
    if p.pattern == "stripes":
        return (np.floor(u / q) % 2).astype(np.float64)
    if p.pattern == "checks":
        return ((np.floor(u / q) + np.floor(v / q)) % 2).astype(np.float64)
    du, dv = (u / q) - np.round(u / q), (v / q) - np.round(v / q)  # dots on a lattice
    return (du ** 2 + dv ** 2 < 0.3 ** 2 * 1.0).astype(np.float64)


def _shade(c, f):
    return tuple(float(np.clip(x * f, 0, 1)) for x in c)


def character_prims(ch: Character, joints_px: np.ndarray, scale: float, *, marker_radius: float = 0.018,
                    limb_width: float = 1.0) -> tuple[list, list]:
    """Primitives (back to front) and marker primitives of one character.

    `joints_px [T, 20, 2]` are pixel coordinates; `scale` is pixels per frame height; markers have
    radius `marker_radius` frame heights (at least 0.8 pixels); limb and torso widths are the
    body's times `limb_width`.
    """
    b, lk = ch.body, ch.look
    J = lambda i: joints_px[:, i]  # noqa: E731
    s = scale
    aw, lw, tw = (limb_width * x * s for x in (b.arm_w, b.leg_w, b.torso_w))
    pat = dict(pattern=lk.pattern, pattern_color=lk.pattern_color, period=max(lk.pattern_period * s, 1.0))
    cap = lambda i, j, ra, rb, col, **kw: _Prim(J(i), J(j), ra, rb, col, **kw)  # noqa: E731
    if b.kind == "quadruped":
        far, fur = _shade(lk.top, 0.7), lk.top
        prims = [
            cap(L_SHOULDER, L_ELBOW, lw, 0.85 * lw, far), cap(L_ELBOW, L_WRIST, 0.85 * lw, 0.7 * lw, far),
            cap(L_HIP, L_KNEE, lw, 0.85 * lw, far), cap(L_KNEE, L_ANKLE, 0.85 * lw, 0.7 * lw, far),
        ]
        if b.tail > 0:
            back = J(PELVIS) - J(NECK)
            back = back / np.maximum(np.linalg.norm(back, axis=-1, keepdims=True), 1e-9)
            tip = J(PELVIS) + b.tail * s * (0.7 * back + np.array([0.0, -0.7]))
            prims.append(_Prim(J(PELVIS), tip, 0.6 * lw, 0.3 * lw, lk.bottom))
        prims += [
            cap(PELVIS, NECK, tw, 0.9 * tw, fur, **pat),
            cap(R_SHOULDER, R_ELBOW, lw, 0.85 * lw, fur), cap(R_ELBOW, R_WRIST, 0.85 * lw, 0.7 * lw, fur),
            cap(R_HIP, R_KNEE, lw, 0.85 * lw, fur), cap(R_KNEE, R_ANKLE, 0.85 * lw, 0.7 * lw, fur),
            cap(NECK, HEAD, 0.8 * tw, 0.6 * tw, fur),
            cap(HEAD, HEAD, b.head_r * s, b.head_r * s, lk.skin),
        ]
    else:
        prims = [
            cap(L_HIP, L_KNEE, lw, 0.9 * lw, lk.bottom), cap(L_KNEE, L_ANKLE, 0.9 * lw, 0.8 * lw, lk.bottom),
            cap(R_HIP, R_KNEE, lw, 0.9 * lw, lk.bottom), cap(R_KNEE, R_ANKLE, 0.9 * lw, 0.8 * lw, lk.bottom),
            cap(R_HIP, L_HIP, lw, lw, lk.bottom),
            cap(PELVIS, NECK, tw, tw, lk.top, **pat),
            cap(R_SHOULDER, L_SHOULDER, aw, aw, lk.top),
            cap(NECK, HEAD, 0.5 * aw + 0.3 * b.head_r * s, 0.5 * aw + 0.3 * b.head_r * s, lk.skin),
            cap(HEAD, HEAD, b.head_r * s, b.head_r * s, lk.skin),
            cap(L_SHOULDER, L_ELBOW, aw, 0.9 * aw, lk.top), cap(L_ELBOW, L_WRIST, 0.9 * aw, 0.8 * aw, lk.skin),
            cap(R_SHOULDER, R_ELBOW, aw, 0.9 * aw, lk.top), cap(R_ELBOW, R_WRIST, 0.9 * aw, 0.8 * aw, lk.skin),
        ]
    markers = []
    if lk.markers:
        mr = max(0.8, marker_radius * s)
        markers = [_Prim(J(j), J(j), mr, mr, tuple(MARKER_COLORS[k])) for k, j in enumerate(MARKER_JOINTS)]
    return prims, markers


def rasterize(people: Sequence[tuple[Character, np.ndarray]], height: int, width: int,
              background: tuple | None = None, *, marker_radius: float = 0.018, limb_width: float = 1.0) -> np.ndarray:
    """Draws characters (each with joints `[T, 20, 2]` in normalised frame coordinates) -> float32 [T, H, W, 3].

    People are painted in order (later ones in front); markers go on top of their own person.
    `marker_radius`, `limb_width`: see `character_prims`.
    Edges are anti-aliased by pixel coverage from the signed distance (alpha = clip(0.5 - d, 0, 1)).
    """
    if not people:
        raise ValueError("rasterize: people must name at least one (character, joints) pair")
    T = people[0][1].shape[0]
    bg = np.asarray(background if background is not None else people[0][0].look.background, np.float64)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    img = np.broadcast_to(bg, (T, height, width, 3)).copy()
    for ch, joints in people:
        joints = np.asarray(joints, np.float64)
        if joints.shape[0] != T or joints.shape[-1] != 2:
            raise ValueError(f"rasterize: joints must be [T={T}, J, 2], got {list(joints.shape)}")
        px = joints * np.array([width, height], np.float64)
        prims, markers = character_prims(ch, px, float(height), marker_radius=marker_radius,
                                         limb_width=limb_width)
        for p in prims + markers:
            d, u, v = _capsule_fields(p, ys, xs)
            alpha = np.clip(0.5 - d, 0.0, 1.0)[..., None]
            col = np.asarray(p.color, np.float64)
            if p.pattern != "plain":
                m = _texture(p, u, v)[..., None]
                col = col * (1 - m) + np.asarray(p.pattern_color, np.float64) * m
            img = img * (1 - alpha) + col * alpha
    return img.astype(np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(img) * 255.0), 0, 255).astype(np.uint8)
