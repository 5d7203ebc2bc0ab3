"""Toy motions: dance, walk, wave and jump as joint-angle curves over time.

A `Motion` is a `[T, NUM_CHANNELS]` array of offsets from the rest pose (see `skeleton.CHANNELS`),
the same for every body, so any character can perform any motion. Each family is a few smooth
curves (sines and bumps) whose amplitudes, speeds and phases come from a seed: `make_motion(seed)`
is deterministic, and different seeds give different instances of a family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dreamactor_jax.toy.skeleton import CH, NUM_CHANNELS

FAMILIES = ("dance", "walk", "wave", "jump")


@dataclass(frozen=True, eq=False)
class Motion:
    """Pose offsets over time: `angles [T, NUM_CHANNELS]` (float64), a family name and its seed."""

    angles: np.ndarray
    family: str
    seed: int

    def __post_init__(self):
        a = np.asarray(self.angles, np.float64)
        if a.ndim != 2 or a.shape[1] != NUM_CHANNELS or a.shape[0] < 1:
            raise ValueError(f"Motion.angles: expected shape [T, {NUM_CHANNELS}], got {list(a.shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError("Motion.angles: has NaN or inf")
        a = a.copy()
        a.setflags(write=False)
        object.__setattr__(self, "angles", a)

    @property
    def num_frames(self) -> int:
        return int(self.angles.shape[0])


def _dance(rng, t, n):
    a = np.zeros((n, NUM_CHANNELS))
    f1, f2 = rng.uniform(0.8, 1.6), rng.uniform(0.8, 1.6)
    p = rng.uniform(0, 2 * np.pi, 8)
    a[:, CH["spine"]] = rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * f1 * t + p[0])
    a[:, CH["head"]] = rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * f2 * t + p[1])
    base = rng.uniform(0.3, 1.6)
    a[:, CH["r_upper_arm"]] = base + rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * f1 * t + p[2])
    a[:, CH["l_upper_arm"]] = base + rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * f1 * t + p[3])
    a[:, CH["r_forearm"]] = rng.uniform(0.2, 1.2) * (1 + np.sin(2 * np.pi * f2 * t + p[4]))
    a[:, CH["l_forearm"]] = rng.uniform(0.2, 1.2) * (1 + np.sin(2 * np.pi * f2 * t + p[5]))
    a[:, CH["r_thigh"]] = rng.uniform(0.0, 0.4) * (1 + np.sin(2 * np.pi * f1 * t + p[6]))
    a[:, CH["l_thigh"]] = rng.uniform(0.0, 0.4) * (1 + np.sin(2 * np.pi * f1 * t + p[7]))
    a[:, CH["r_shin"]] = 0.8 * a[:, CH["r_thigh"]]
    a[:, CH["l_shin"]] = 0.8 * a[:, CH["l_thigh"]]
    a[:, CH["root_x"]] = rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * f1 * t + p[0])
    return a


def _walk(rng, t, n):
    a = np.zeros((n, NUM_CHANNELS))
    f = rng.uniform(0.8, 1.5)
    ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    amp = rng.uniform(0.35, 0.7)
    a[:, CH["r_thigh"]] = amp * np.sin(ph)
    a[:, CH["l_thigh"]] = -amp * np.sin(ph)
    a[:, CH["r_shin"]] = 0.9 * amp * np.maximum(0, np.sin(ph + 1.2))
    a[:, CH["l_shin"]] = 0.9 * amp * np.maximum(0, -np.sin(ph + 1.2))
    arm = rng.uniform(0.2, 0.6)
    a[:, CH["r_upper_arm"]] = -arm * np.sin(ph)
    a[:, CH["l_upper_arm"]] = arm * np.sin(ph)
    a[:, CH["r_forearm"]] = a[:, CH["l_forearm"]] = rng.uniform(0.1, 0.5)
    a[:, CH["spine"]] = 0.05 * np.sin(2 * ph)
    speed = rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)
    a[:, CH["root_x"]] = speed * (t - t.mean())
    a[:, CH["lift"]] = 0.01 * np.abs(np.sin(ph))
    return a


def _wave(rng, t, n):
    a = np.zeros((n, NUM_CHANNELS))
    side = rng.choice(["r", "l"])
    other = "l" if side == "r" else "r"
    f = rng.uniform(1.2, 2.5)
    ph = 2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)
    raise_t = np.clip(t / rng.uniform(0.15, 0.4), 0, 1)  # the arm goes up, then waves
    a[:, CH[f"{side}_upper_arm"]] = raise_t * rng.uniform(1.8, 2.6)
    a[:, CH[f"{side}_forearm"]] = raise_t * (rng.uniform(0.3, 0.9) + rng.uniform(0.4, 0.8) * np.sin(ph))
    a[:, CH[f"{other}_upper_arm"]] = rng.uniform(0.0, 0.4)
    a[:, CH[f"{other}_forearm"]] = rng.uniform(0.0, 0.8)
    a[:, CH["head"]] = rng.uniform(-0.2, 0.2) + 0.1 * np.sin(ph)
    a[:, CH["spine"]] = rng.uniform(-0.1, 0.1)
    return a


def _jump(rng, t, n):
    a = np.zeros((n, NUM_CHANNELS))
    t0, dur = rng.uniform(0.15, 0.35), rng.uniform(0.35, 0.55)
    s = np.clip((t - t0) / dur, 0, 1)
    air = 4 * s * (1 - s)  # 0 -> 1 -> 0 while airborne
    crouch = np.exp(-((t - t0) / 0.08) ** 2) + np.exp(-((t - t0 - dur) / 0.08) ** 2)
    a[:, CH["lift"]] = rng.uniform(0.08, 0.16) * air
    knee = rng.uniform(0.5, 1.0) * crouch
    a[:, CH["r_thigh"]] = a[:, CH["l_thigh"]] = 0.5 * knee + 0.2 * air
    a[:, CH["r_shin"]] = a[:, CH["l_shin"]] = knee + 0.3 * air
    arms = rng.uniform(1.5, 2.8)
    a[:, CH["r_upper_arm"]] = a[:, CH["l_upper_arm"]] = arms * air + 0.2
    a[:, CH["r_forearm"]] = a[:, CH["l_forearm"]] = rng.uniform(0.0, 0.5) * air
    a[:, CH["root_x"]] = rng.uniform(-0.08, 0.08) * s
    return a


_FAMILY_FNS = {"dance": _dance, "walk": _walk, "wave": _wave, "jump": _jump}


def make_motion(seed: int, num_frames: int, family: str | None = None, duration: float = 1.0) -> Motion:
    """A motion of `num_frames` frames spanning `duration` seconds; the family is drawn from the seed
    unless given."""
    if num_frames < 1:
        raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    rng = np.random.default_rng([int(seed), 7])
    fam = family or FAMILIES[int(rng.integers(len(FAMILIES)))]
    t = np.linspace(0.0, duration, num_frames)
    return Motion(_FAMILY_FNS[fam](rng, t, num_frames), fam, int(seed))
