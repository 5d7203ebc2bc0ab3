"""Retargeting: the driving skeleton takes the reference's bone lengths, keeps its own motion."""

import numpy as np
import pytest

from dreamactor_jax.pose.augment import BoneFactors, bone_lengths, rescale_bones
from dreamactor_jax.pose.keypoints import NECK, PoseClip, PoseFrame, standard_person
from dreamactor_jax.pose.retarget import retarget_clip, retarget_factors


def moving_clip(rng, w=300, h=400, t=6):
    """A person walking right and swinging the arms: the pose changes, bone lengths do not."""
    base = standard_person((0.4, 0.5), 0.7)
    frames = []
    for i in range(t):
        f = rescale_bones(base, BoneFactors.from_groups({}))
        body = f.body.copy()
        body[..., 0] += 0.02 * i
        ang = 0.3 * np.sin(i)  # rotate the right forearm about the elbow
        v = (body[0, 4, :2] - body[0, 3, :2]) * np.array([w, h])
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ v
        body[0, 4, :2] = body[0, 3, :2] + rot / np.array([w, h])
        hands = f.hands.copy()
        hands[..., 0] += 0.02 * i
        hands[0, 1, :, :2] += body[0, 4, :2] - f.body[0, 4, :2] - np.array([0.02 * i, 0])
        frames.append(PoseFrame(body, hands, f.face + np.array([0.02 * i, 0, 0], np.float32)))
    return PoseClip(frames, w, h, 25.0)


def test_retargeted_bones_match_the_reference_and_root_is_kept():
    rng = np.random.default_rng(0)
    drv = moving_clip(rng)
    true = BoneFactors(rng.uniform(0.7, 1.4, 17), rng.uniform(0.7, 1.4, (2, 20)), 1.0)
    ref_w, ref_h = 600, 800  # same aspect as the driving frame, twice the pixels
    ref = rescale_bones(drv.frames[0], true)
    out, f = retarget_clip(drv, ref, ref_w, ref_h, lengths="first")
    np.testing.assert_allclose(f.body, true.body, rtol=1e-4)
    for frame in out.frames:  # every frame's bones now have the reference's lengths (in frame heights)
        got = bone_lengths(frame, drv.width / drv.height, 1.0)[0][0]
        want = bone_lengths(ref, ref_w / ref_h, 1.0)[0][0]
        np.testing.assert_allclose(got, want, rtol=1e-3)
    for a, b in zip(drv.frames, out.frames):  # the driving root trajectory is kept
        np.testing.assert_allclose(b.body[:, NECK], a.body[:, NECK], atol=1e-6)
        # and the motion: each bone keeps its direction
        da = a.body[0, 4, :2] - a.body[0, 3, :2]
        db = b.body[0, 4, :2] - b.body[0, 3, :2]
        assert np.isclose(da[0] * db[1] - da[1] * db[0], 0, atol=1e-6) and np.dot(da, db) > 0


def test_median_mode_keep_size_and_fallbacks():
    rng = np.random.default_rng(1)
    drv = moving_clip(rng)
    ref = rescale_bones(drv.frames[2], BoneFactors.from_groups({"arms": 1.3, "legs": 0.8}))
    body = ref.body.copy()
    body[0, 9:11, 2] = 0  # right knee, ankle unseen on the reference: the legs' median is used
    ref = ref.replace(body=body, hands=np.zeros_like(ref.hands))  # no hands found on the reference
    f = retarget_factors(drv, ref, 300, 400, lengths="median")
    np.testing.assert_allclose(f.body[[2, 3, 4, 5]], 1.3, rtol=1e-4)
    np.testing.assert_allclose(f.body[[7, 8, 10, 11]], 0.8, rtol=1e-4)
    np.testing.assert_allclose(f.hands, np.median(f.body[[2, 3, 4, 5]]), rtol=1e-4)  # arms' ratio
    # keep_size: proportions only; the summed length of the measured bones is unchanged
    g = retarget_factors(drv, ref.replace(body=ref.body * np.array([0.5, 0.5, 1], np.float32)), 300, 400,
                         keep_size=True, lengths="first")
    lb = bone_lengths(drv.frames[0], 0.75, 1.0)[0][0]
    ok = np.isfinite(bone_lengths(ref)[0][0])
    np.testing.assert_allclose((lb * g.body)[ok].sum(), lb[ok].sum(), rtol=1e-4)


def test_errors():
    drv = moving_clip(np.random.default_rng(2), t=2)
    with pytest.raises(ValueError, match="reference has 0 people"):
        retarget_clip(drv, PoseFrame.empty(), 10, 10)
    with pytest.raises(ValueError, match="no frame of the driving clip"):
        retarget_clip(PoseClip([PoseFrame.empty()], 10, 10), standard_person(), 10, 10)
    with pytest.raises(ValueError, match="lengths"):
        retarget_clip(drv, standard_person(), 10, 10, lengths="mean")


def test_anchor_reference_starts_at_the_reference_neck():
    rng = np.random.default_rng(3)
    drv = moving_clip(rng, w=300, h=400)
    ref = standard_person((0.7, 0.4), 0.35)      # smaller, elsewhere, in a 600 x 400 image
    out, f = retarget_clip(drv, ref, 600, 400, anchor="reference", lengths="first")
    np.testing.assert_allclose(out.frames[0].body[0, NECK, :2], _ref_neck_in_driving(ref, 600, 400, drv), atol=1e-5)
    s = np.median(f.body)
    to_h = np.array([300 / 400, 1.0])
    for a, b in zip(drv.frames[1:], out.frames[1:]):  # the root moves s times as far as the driving root
        da = (a.body[0, NECK, :2] - drv.frames[0].body[0, NECK, :2]) * to_h
        db = (b.body[0, NECK, :2] - out.frames[0].body[0, NECK, :2]) * to_h
        np.testing.assert_allclose(db, s * da, atol=1e-5)
    with pytest.raises(ValueError, match="anchor"):
        retarget_clip(drv, ref, 600, 400, anchor="middle")


def _ref_neck_in_driving(ref, w, h, drv):
    """The reference's neck in frame-height units, expressed in the driving frame's normalised x, y."""
    x_h, y = ref.body[0, NECK, 0] * w / h, ref.body[0, NECK, 1]
    return np.array([x_h / (drv.width / drv.height), y])
