"""OpenPose-style rendering: colours where the limbs and joints are, nothing where they are not."""

import numpy as np
import pytest

from dreamactor_jax.pose.keypoints import BODY_LIMBS, NECK, R_SHOULDER, PoseClip, PoseFrame, standard_person
from dreamactor_jax.pose.render import (BODY_COLORS, FACE_POINT_COLOR, HAND_POINT_COLOR, LIMB_DIM,
                                        render_clip, render_pose)


def px(frame_xy, h, w):
    return int(frame_xy[1] * h), int(frame_xy[0] * w)


def test_empty_frame_is_black_at_any_size():
    for h, w in [(64, 48), (33, 17), (720, 1280)]:
        im = render_pose(PoseFrame.empty(), h, w)
        assert im.shape == (h, w, 3) and im.dtype == np.uint8 and im.max() == 0


@pytest.mark.parametrize("h, w", [(256, 192), (512, 768), (97, 131)])
def test_joints_and_limbs_have_openpose_colours(h, w):
    f = standard_person(hands=False, face=False)
    im = render_pose(f, h, w)
    body = f.body[0]
    # Joints that no other drawn part covers: elbows, knees, ankles (index = colour index).
    for j in (3, 6, 9, 12, 10, 13):
        y, x = px(body[j], h, w)
        assert tuple(im[y, x]) == BODY_COLORS[j], j
    # The middle of a long limb (no dot there) has its colour dimmed to 60 %.
    for i, (a, b) in enumerate(BODY_LIMBS):
        if i in (7, 8, 10, 11):  # thighs and shins
            y, x = px((body[a, :2] + body[b, :2]) / 2, h, w)
            expect = (np.array(BODY_COLORS[i]) * LIMB_DIM).astype(np.uint8)
            assert np.all(im[y, x] == expect), i
    # Far from the figure the canvas stays black.
    assert im[2, 2].max() == 0 and im[h - 2, w - 2].max() == 0


def test_low_confidence_points_and_their_limbs_are_not_drawn():
    f = standard_person(hands=False, face=False)
    body = f.body.copy()
    body[0, 3, 2] = 0.1  # right elbow
    im = render_pose(f.replace(body=body), 256, 256)
    ref = render_pose(f, 256, 256)
    y, x = px(body[0, 3], 256, 256)
    assert im[y, x].max() == 0 and ref[y, x].max() > 0
    mid = (body[0, 2, :2] + body[0, 3, :2]) / 2  # shoulder-elbow limb gone too
    assert im[px(mid, 256, 256)].max() == 0


def test_hands_and_face_switches():
    f = standard_person()
    full = render_pose(f, 512, 512)
    bare = render_pose(f, 512, 512, draw_hands=False, draw_face=False)
    tip = f.hands[0, 0, 4, :2]  # thumb tip of the left hand
    assert tuple(full[px(tip, 512, 512)]) == HAND_POINT_COLOR
    assert bare[px(tip, 512, 512)].max() == 0
    contour = f.face[0, 0, :2]
    assert tuple(full[px(contour, 512, 512)]) == FACE_POINT_COLOR
    assert bare[px(contour, 512, 512)].max() == 0


def test_several_people_and_stick_width_scales():
    a, b = standard_person((0.25, 0.5), 0.7), standard_person((0.75, 0.5), 0.7)
    both = render_pose(PoseFrame.concat([a, b]), 256, 512)
    only_a = render_pose(a, 256, 512)
    assert both[:, 256:].sum() > 0 and only_a[:, 256:].sum() == 0
    np.testing.assert_array_equal(both[:, :250], only_a[:, :250])
    # the drawn area grows with the square of the resolution (widths scale with it)
    small = (render_pose(a, 256, 512) > 0).any(-1).mean()
    large = (render_pose(a, 1024, 2048) > 0).any(-1).mean()
    assert abs(large / small - 1.0) < 0.25


def test_render_clip_and_errors():
    clip = PoseClip([standard_person(), PoseFrame.empty()], width=64, height=48)
    v = render_clip(clip)
    assert v.shape == (2, 48, 64, 3) and v[0].max() > 0 and v[1].max() == 0
    with pytest.raises(ValueError, match="height and width"):
        render_pose(standard_person(), 0, 10)
    with pytest.raises(ValueError, match="PoseFrame"):
        render_pose(np.zeros((1, 18, 3)), 10, 10)
