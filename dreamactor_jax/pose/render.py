"""OpenPose-style rendering of PoseFrames (the look ControlNet / DWPose pose images have).

Body: the 17 OpenPose limbs as filled ellipses in the standard 18 colours, dimmed to 60 %, then
the 18 joints as full-colour dots. Hands: the 20 bones coloured round the HSV wheel, joints as
blue dots. Face: white dots. Drawn with Pillow (no OpenCV needed). Widths are OpenPose's at
512 px (stick half-width 4, dot radius 4, hand line 2, face dot 3), scaled with min(H, W) / 512.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from dreamactor_jax.pose.keypoints import BODY_LIMBS, HAND_EDGES, PoseClip, PoseFrame

# OpenPose's colours, RGB: limb i and joint i share colour i.
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
HAND_COLORS = tuple(
    tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(i / len(HAND_EDGES), 1.0, 1.0))
    for i in range(len(HAND_EDGES)))
HAND_POINT_COLOR = (0, 0, 255)
FACE_POINT_COLOR = (255, 255, 255)
LIMB_DIM = 0.6


def _ellipse(cx: float, cy: float, half_len: float, half_width: float, angle: float, n: int = 36):
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ex, ey = half_len * np.cos(t), half_width * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return list(zip((cx + ca * ex - sa * ey).tolist(), (cy + sa * ex + ca * ey).tolist()))


def _dot(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, color) -> None:
    draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def render_pose(frame: PoseFrame, height: int, width: int, *, draw_hands: bool = True,
                draw_face: bool = True, min_conf: float = 0.3) -> np.ndarray:
    """Draws every person of `frame` on a black `height` x `width` canvas -> uint8 [H, W, 3].

    Points with confidence below `min_conf` are not drawn, nor any limb touching one.
    """
    if not isinstance(frame, PoseFrame):
        raise ValueError(f"render_pose: frame must be a PoseFrame, got {type(frame).__name__}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"render_pose: height and width must be positive, got {height}x{width}")
    h, w = int(height), int(width)
    s = min(h, w) / 512.0
    stick, body_r = max(1.0, 4 * s), max(1.0, 4 * s)
    hand_w, hand_r, face_r = max(1, round(2 * s)), max(1.0, 4 * s), max(1.0, 3 * s)
    size = np.array([w, h], np.float64)

    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    bodies = frame.body.astype(np.float64)
    for i, (a, b) in enumerate(BODY_LIMBS):
        for person in bodies:
            if person[a, 2] < min_conf or person[b, 2] < min_conf:
                continue
            (xa, ya), (xb, yb) = person[a, :2] * size, person[b, :2] * size
            half_len = 0.5 * np.hypot(xb - xa, yb - ya)
            angle = np.arctan2(yb - ya, xb - xa)
            draw.polygon(_ellipse((xa + xb) / 2, (ya + yb) / 2, half_len, stick, angle), fill=BODY_COLORS[i])
    if bodies.shape[0]:
        img = Image.fromarray((np.asarray(img, np.float32) * LIMB_DIM).astype(np.uint8))
        draw = ImageDraw.Draw(img)
    for person in bodies:
        for j, (x, y, c) in enumerate(person):
            if c >= min_conf:
                _dot(draw, x * w, y * h, body_r, BODY_COLORS[j])

    if draw_hands:
        for hand in frame.hands.reshape(-1, frame.hands.shape[-2], 3).astype(np.float64):
            pts = hand[:, :2] * size
            for e, (a, b) in enumerate(HAND_EDGES):
                if hand[a, 2] >= min_conf and hand[b, 2] >= min_conf:
                    draw.line([tuple(pts[a]), tuple(pts[b])], fill=HAND_COLORS[e], width=hand_w)
            for (x, y), c in zip(pts, hand[:, 2]):
                if c >= min_conf:
                    _dot(draw, x, y, hand_r, HAND_POINT_COLOR)
    if draw_face:
        for face in frame.face.astype(np.float64):
            for x, y, c in face:
                if c >= min_conf:
                    _dot(draw, x * w, y * h, face_r, FACE_POINT_COLOR)
    return np.asarray(img, np.uint8).copy()


def render_clip(clip: PoseClip, height: int | None = None, width: int | None = None, **kw) -> np.ndarray:
    """Renders every frame of a clip -> uint8 [T, H, W, 3] (default size: the clip's own)."""
    h, w = height or clip.height, width or clip.width
    if len(clip) == 0:
        return np.zeros((0, h, w, 3), np.uint8)
    return np.stack([render_pose(f, h, w, **kw) for f in clip.frames])
