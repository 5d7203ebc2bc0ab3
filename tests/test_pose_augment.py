"""Pose augmentation geometry: bone factors, connectivity, box normalisation, determinism."""

import numpy as np
import pytest

from dreamactor_jax.pose.augment import (LIMB_GROUPS, BoneFactors, PoseAugConfig, augment_clip, bone_lengths,
                                         clip_box, draw_factors, normalize_to_box, rescale_bones)
from dreamactor_jax.pose.keypoints import BODY_LIMBS, NECK, NOSE, L_WRIST, R_WRIST, PoseClip, PoseFrame, standard_person


def jittered_clip(rng, t=5, people=2, w=320, h=240):
    frames = []
    for _ in range(t):
        ps = [standard_person((rng.uniform(0.3, 0.7), rng.uniform(0.4, 0.6)), rng.uniform(0.4, 0.8))
              for _ in range(people)]
        f = PoseFrame.concat(ps)
        noise = lambda a: np.concatenate([a[..., :2] + rng.normal(0, 0.01, a[..., :2].shape), a[..., 2:]], -1)
        frames.append(PoseFrame(noise(f.body), noise(f.hands), noise(f.face)))
    return PoseClip(frames, w, h, 30.0)


def test_each_bone_scales_by_its_own_factor_and_joints_stay_connected():
    rng = np.random.default_rng(0)
    f = jittered_clip(rng, t=1).frames[0]
    factors = BoneFactors(rng.uniform(0.6, 1.5, 17), rng.uniform(0.6, 1.5, (2, 20)), 1.3)
    g = rescale_bones(f, factors)
    for w, h in [(1, 1), (640, 360)]:  # in normalised units and in pixels of a non-square frame
        (lb, lh), (nb, nh) = bone_lengths(f, w, h), bone_lengths(g, w, h)
        np.testing.assert_allclose(nb, lb * factors.body, rtol=1e-4, atol=2e-6)
        np.testing.assert_allclose(nh, lh * factors.hands, rtol=1e-4, atol=2e-6)
    # connectivity: each bone's direction is unchanged, so child = parent + factor * old bone
    for i, (p, c) in enumerate(BODY_LIMBS):
        old = f.body[:, c, :2] - f.body[:, p, :2]
        np.testing.assert_allclose(g.body[:, c, :2] - g.body[:, p, :2], factors.body[i] * old, atol=1e-5)
    np.testing.assert_allclose(g.body[:, NECK], f.body[:, NECK], atol=1e-6)  # the root stays
    # hands hang from the moved wrists, the face from the moved nose, scaled by the head factor
    for hand, wrist in ((0, L_WRIST), (1, R_WRIST)):
        np.testing.assert_allclose(g.hands[:, hand, 0, :2] - g.body[:, wrist, :2],
                                   f.hands[:, hand, 0, :2] - f.body[:, wrist, :2], atol=1e-5)
    np.testing.assert_allclose(g.face[..., :2] - g.body[:, NOSE, None, :2],
                               1.3 * (f.face[..., :2] - f.body[:, NOSE, None, :2]), atol=1e-5)


def test_invisible_points_stay_invisible_and_children_follow_parents():
    f = standard_person(face=False)
    body = f.body.copy()
    body[0, 3, 2] = 0.0  # right elbow missing: the wrist has no visible parent
    f = f.replace(body=body)
    factors = BoneFactors.from_groups({"arms": 1.5, "torso": 1.2})
    g = rescale_bones(f, factors)
    assert g.body[0, 3, 2] == 0 and np.all(g.body[0, 3, :2] == 0)
    assert np.all(g.face[..., 2] == 0) and np.all(g.face[..., :2] == 0)
    # the wrist moves with the shoulder (torso factor), its own bone cannot be measured
    shoulder_move = g.body[0, 2, :2] - f.body[0, 2, :2]
    np.testing.assert_allclose(g.body[0, 4, :2] - f.body[0, 4, :2], shoulder_move, atol=1e-6)
    assert np.all(g.body[..., 2] == f.body[..., 2])


def test_group_factors_and_per_side():
    rng = np.random.default_rng(1)
    f = draw_factors(rng, PoseAugConfig())
    for g, idx in LIMB_GROUPS.items():
        assert len(set(f.body[list(idx)].round(12))) == 1, g
        lo, hi = getattr(PoseAugConfig(), g)
        assert lo <= f.body[idx[0]] <= hi
    assert len(set(f.hands.ravel().round(12))) == 1
    s = draw_factors(np.random.default_rng(1), PoseAugConfig(per_side=True))
    assert s.body[2] != s.body[4] and s.hands[0, 0] != s.hands[1, 0]  # right arm vs left arm


def test_box_normalisation_maps_clip_box_onto_target_box():
    rng = np.random.default_rng(2)
    clip = jittered_clip(rng, t=4, w=320, h=240)
    out = normalize_to_box(clip, 512, 256, target_box=(0.5, 0.0, 1.0, 1.0), margin=0.1)
    assert (out.width, out.height, len(out)) == (512, 256, 4)
    x0, y0, x1, y1 = clip_box(out)
    tx0, ty0, tx1, ty1 = 256 + 0.1 * 256, 0.1 * 256, 512 - 0.1 * 256, 256 - 0.1 * 256
    # centred, inside, and touching the target on the limiting axis
    assert np.isclose((x0 + x1) / 2, (tx0 + tx1) / 2, atol=1e-3) and np.isclose((y0 + y1) / 2, 128, atol=1e-3)
    assert x0 >= tx0 - 1e-3 and x1 <= tx1 + 1e-3 and y0 >= ty0 - 1e-3 and y1 <= ty1 + 1e-3
    assert np.isclose(x1 - x0, tx1 - tx0, atol=1e-3) or np.isclose(y1 - y0, ty1 - ty0, atol=1e-3)
    # aspect kept: a uniform scale in pixels, same for every frame and person
    a, b = clip_box(clip), (x0, y0, x1, y1)
    np.testing.assert_allclose((b[2] - b[0]) / (a[2] - a[0]), (b[3] - b[1]) / (a[3] - a[1]), rtol=1e-4, atol=2e-6)
    la, lb = bone_lengths(clip.frames[3], 320, 240)[0], bone_lengths(out.frames[3], 512, 256)[0]
    np.testing.assert_allclose(lb / la, (b[2] - b[0]) / (a[2] - a[0]), rtol=1e-4)


def test_box_normalisation_degenerate_and_empty():
    empty = PoseClip([PoseFrame.empty()] * 2, 64, 64)
    assert normalize_to_box(empty).num_empty == 2
    body = np.zeros((1, 18, 3), np.float32)
    body[0, 1] = (0.2, 0.3, 1.0)  # a single visible point goes to the centre
    out = normalize_to_box(PoseClip([PoseFrame.from_body(body)], 100, 100))
    np.testing.assert_allclose(out.frames[0].body[0, 1], (0.5, 0.5, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="target_box"):
        normalize_to_box(empty, target_box=(0.5, 0, 0.2, 1))


def test_augment_clip_is_seeded_and_one_draw_per_clip():
    clip = jittered_clip(np.random.default_rng(3), t=3)
    a, fa = augment_clip(clip, np.random.default_rng(7))
    b, fb = augment_clip(clip, np.random.default_rng(7))
    c, _ = augment_clip(clip, np.random.default_rng(8))
    assert all(x.allclose(y, 0) for x, y in zip(a.frames, b.frames))
    assert not all(x.allclose(y) for x, y in zip(a.frames, c.frames))
    # one draw for the whole clip: every frame's bone-length ratios equal the same factors
    no_box = PoseAugConfig(box_normalization=False)
    d, fd = augment_clip(clip, np.random.default_rng(7), no_box)
    np.testing.assert_allclose(fd.body, fa.body)
    for f0, f1 in zip(clip.frames, d.frames):
        np.testing.assert_allclose(bone_lengths(f1)[0], bone_lengths(f0)[0] * fd.body, rtol=1e-4, atol=2e-6)
    x0, y0, x1, y1 = clip_box(a)
    assert x0 >= 0.05 * 320 - 1e-3 and x1 <= 0.95 * 320 + 1e-3 and y0 >= 0.05 * 240 - 1e-3
