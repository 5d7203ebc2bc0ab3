"""Toy bodies: a 2D kinematic tree in OpenPose-18 slots, for humanoids and quadrupeds.

A `Body` holds one character's proportions (bone lengths and widths, as fractions of the frame
height). A pose is a vector of joint-angle *offsets* from the body's rest pose (`CHANNELS`), so
one motion drives every body: a humanoid raises its arm where a quadruped lifts a front leg.
`forward_kinematics(body, pose)` gives the 18 OpenPose joints (plus the pelvis) in units of the
frame height, relative to the pelvis; `place` puts the feet on the ground. Everything is numpy and
exact, so "character X performing motion Y" is known to the pixel.

Coordinates: x right, y down (image convention); angles are `atan2(dy, dx)` in radians, so
"up" is -pi/2. The figure's right side is on the image's left, as OpenPose sees a person.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dreamactor_jax.pose.keypoints import (
    L_ANKLE, L_EAR, L_ELBOW, L_EYE, L_HIP, L_KNEE, L_SHOULDER, L_WRIST, NECK, NOSE, NUM_BODY,
    R_ANKLE, R_EAR, R_ELBOW, R_EYE, R_HIP, R_KNEE, R_SHOULDER, R_WRIST,
)

KINDS = ("humanoid", "quadruped")

# One pose = offsets from the rest pose, in this order (radians, except the two root channels).
CHANNELS = (
    "root_x",  # horizontal shift of the pelvis, fraction of frame width
    "lift",  # height of the lowest foot above the ground, fraction of frame height (jumps)
    "spine",  # tilt of the trunk
    "head",  # turn of the head on the neck
    "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm",  # + raises the arm outwards / bends the elbow
    "r_thigh", "r_shin", "l_thigh", "l_shin",  # + swings the leg outwards / bends the knee
)
NUM_CHANNELS = len(CHANNELS)
CH = {name: i for i, name in enumerate(CHANNELS)}

PELVIS, HEAD = NUM_BODY, NUM_BODY + 1  # extra (non-OpenPose) joints of `forward_kinematics`
NUM_JOINTS = NUM_BODY + 2
# Bones whose length is fixed by the body (both ends are OpenPose joints), for body-shape checks.
LIMB_BONES = {
    "r_upper_arm": (R_SHOULDER, R_ELBOW), "r_forearm": (R_ELBOW, R_WRIST),
    "l_upper_arm": (L_SHOULDER, L_ELBOW), "l_forearm": (L_ELBOW, L_WRIST),
    "r_thigh": (R_HIP, R_KNEE), "r_shin": (R_KNEE, R_ANKLE),
    "l_thigh": (L_HIP, L_KNEE), "l_shin": (L_KNEE, L_ANKLE),
}


@dataclass(frozen=True)
class Body:
    """One character's proportions; lengths and widths are fractions of the frame height."""

    kind: str = "humanoid"
    torso: float = 0.22  # pelvis -> neck
    neck: float = 0.07  # neck -> head centre
    head_r: float = 0.055
    shoulder: float = 0.07  # half shoulder width (quadruped: shoulder set-back from the neck)
    hip: float = 0.045  # half hip width (quadruped: hip set-forward from the pelvis)
    upper_arm: float = 0.12
    forearm: float = 0.11
    thigh: float = 0.14
    shin: float = 0.14
    torso_w: float = 0.06  # half widths (radii)
    arm_w: float = 0.022
    leg_w: float = 0.028
    tail: float = 0.0  # quadrupeds have one

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Body.kind: expected one of {KINDS}, got {self.kind!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name != "kind" and not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Body.{f.name}: expected a finite non-negative length, got {v}")

    def replace(self, **kw) -> "Body":
        return dataclasses.replace(self, **kw)

    def bone_lengths(self) -> dict[str, float]:
        """Length of each of `LIMB_BONES` (fractions of the frame height)."""
        return {"r_upper_arm": self.upper_arm, "r_forearm": self.forearm, "l_upper_arm": self.upper_arm,
                "l_forearm": self.forearm, "r_thigh": self.thigh, "r_shin": self.shin,
                "l_thigh": self.thigh, "l_shin": self.shin}


def _unit(angle):
    return np.stack([np.cos(angle), np.sin(angle)], -1)


def rest_pose() -> np.ndarray:
    return np.zeros(NUM_CHANNELS, np.float32)


def forward_kinematics(body: Body, pose: np.ndarray) -> np.ndarray:
    """Joints for pose offsets `pose [..., NUM_CHANNELS]` -> `[..., 20, 2]` (OpenPose-18, pelvis, head).

    Units are frame heights, the pelvis at the origin (`root_x` and `lift` are applied by `place`).
    """
    pose = np.asarray(pose, np.float64)
    if pose.shape[-1] != NUM_CHANNELS:
        raise ValueError(f"pose: expected last axis {NUM_CHANNELS} ({', '.join(CHANNELS)}), got {pose.shape}")
    b = body
    c = {name: pose[..., i] for i, name in enumerate(CHANNELS)}
    quad = b.kind == "quadruped"
    # Spine direction u (pelvis -> neck) and the figure's "right" vector r (image left for a humanoid).
    spine = (np.pi if quad else -np.pi / 2) + c["spine"]
    u, r = _unit(spine), _unit(spine - np.pi / 2)
    pelvis = np.zeros(pose.shape[:-1] + (2,))
    neck = pelvis + b.torso * u
    head = neck + b.neck * _unit(spine + (np.pi / 4 if quad else 0.0) + c["head"])
    if quad:  # side view: both legs of a pair hang from (almost) the same point
        r_sh, l_sh = neck - (b.shoulder + 0.01) * u, neck - (b.shoulder - 0.01) * u
        r_hp, l_hp = pelvis + (b.hip - 0.01) * u, pelvis + (b.hip + 0.01) * u
        down = spine - np.pi / 2
        # Offsets swing legs forward (towards the head) and bend knees; arm channels are halved.
        a_r_ua = down + 0.5 * c["r_upper_arm"]
        a_l_ua = down + 0.5 * c["l_upper_arm"]
        a_r_fa, a_l_fa = a_r_ua - 0.5 * c["r_forearm"], a_l_ua - 0.5 * c["l_forearm"]
        a_r_th, a_l_th = down - 0.5 * c["r_thigh"], down - 0.5 * c["l_thigh"]
        a_r_sh, a_l_sh = a_r_th + 0.5 * c["r_shin"], a_l_th + 0.5 * c["l_shin"]
    else:
        r_sh, l_sh = neck + b.shoulder * r, neck - b.shoulder * r
        r_hp, l_hp = pelvis + b.hip * r, pelvis - b.hip * r
        down = spine + np.pi
        rest_arm, rest_leg = 0.25, 0.08  # arms and legs slightly apart at rest
        a_r_ua, a_l_ua = down + rest_arm + c["r_upper_arm"], down - rest_arm - c["l_upper_arm"]
        a_r_fa, a_l_fa = a_r_ua + c["r_forearm"], a_l_ua - c["l_forearm"]
        a_r_th, a_l_th = down + rest_leg + c["r_thigh"], down - rest_leg - c["l_thigh"]
        a_r_sh, a_l_sh = a_r_th - c["r_shin"], a_l_th + c["l_shin"]
    r_el = r_sh + b.upper_arm * _unit(a_r_ua)
    l_el = l_sh + b.upper_arm * _unit(a_l_ua)
    r_wr, l_wr = r_el + b.forearm * _unit(a_r_fa), l_el + b.forearm * _unit(a_l_fa)
    r_kn, l_kn = r_hp + b.thigh * _unit(a_r_th), l_hp + b.thigh * _unit(a_l_th)
    r_an, l_an = r_kn + b.shin * _unit(a_r_sh), l_kn + b.shin * _unit(a_l_sh)
    # Face points: eyes and ears on the head disc (a quadruped looks left, showing one side).
    hd = spine + (np.pi / 4 if quad else 0.0) + c["head"]
    if quad:
        fwd, up = _unit(spine + c["head"]), _unit(spine + c["head"] - np.pi / 2)
        nose = head + 0.9 * b.head_r * fwd
        r_eye = l_eye = head + 0.35 * b.head_r * fwd - 0.3 * b.head_r * up
        r_ear = l_ear = head - 0.3 * b.head_r * fwd - 0.7 * b.head_r * up
        r_eye, l_eye = r_eye + 0.01 * up, l_eye - 0.01 * up
    else:
        hu, hr = _unit(hd), _unit(hd - np.pi / 2)
        nose = head
        r_eye, l_eye = head + 0.4 * b.head_r * (hu + hr), head + 0.4 * b.head_r * (hu - hr)
        r_ear, l_ear = head + 0.9 * b.head_r * hr, head - 0.9 * b.head_r * hr
    out = np.zeros(pose.shape[:-1] + (NUM_JOINTS, 2))
    for idx, p in ((NOSE, nose), (NECK, neck), (R_SHOULDER, r_sh), (R_ELBOW, r_el), (R_WRIST, r_wr),
                   (L_SHOULDER, l_sh), (L_ELBOW, l_el), (L_WRIST, l_wr), (R_HIP, r_hp), (R_KNEE, r_kn),
                   (R_ANKLE, r_an), (L_HIP, l_hp), (L_KNEE, l_kn), (L_ANKLE, l_an), (R_EYE, r_eye),
                   (L_EYE, l_eye), (R_EAR, r_ear), (L_EAR, l_ear), (PELVIS, pelvis), (HEAD, head)):
        out[..., idx, :] = p
    return out


def place(body: Body, pose: np.ndarray, *, x0: float = 0.5, ground: float = 0.92,
          aspect: float = 1.0) -> np.ndarray:
    """Joints in normalised frame coordinates ([0, 1] by width and height) -> `[..., 20, 2]`.

    The pelvis goes to `x0 + root_x`; the body is lifted so that its lowest foot touches `ground`,
    plus `lift` (so feet stay planted when knees bend, and jumps leave the ground).
    `aspect` is width / height of the frame (lengths are in frame heights).
    """
    pose = np.asarray(pose, np.float64)
    j = forward_kinematics(body, pose)
    feet = j[..., [R_ANKLE, L_ANKLE] + ([R_WRIST, L_WRIST] if body.kind == "quadruped" else []), 1]
    lowest = feet.max(-1) + max(body.leg_w, 0.01)
    y_shift = ground - lowest - pose[..., CH["lift"]]
    out = np.empty_like(j)
    out[..., 0] = j[..., 0] / aspect + (x0 + pose[..., CH["root_x"]])[..., None]
    out[..., 1] = j[..., 1] + y_shift[..., None]
    return out
