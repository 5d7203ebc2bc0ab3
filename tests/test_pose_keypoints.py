"""PoseFrame / PoseClip: validation, canonical missing points, JSON round trip."""

import json

import numpy as np
import pytest

from dreamactor_jax.pose.keypoints import (BODY_LIMBS, HAND_EDGES, NUM_BODY, NUM_FACE, NUM_HAND,
                                           PoseClip, PoseFrame, standard_person)


def random_frame(rng, p):
    def part(shape):
        a = rng.uniform(0.05, 0.95, shape + (3,)).astype(np.float32)
        a[..., 2] = rng.uniform(0, 1, shape) * (rng.uniform(size=shape) > 0.2)  # some missing
        return a
    return PoseFrame(part((p, NUM_BODY)), part((p, 2, NUM_HAND)), part((p, NUM_FACE)))


def test_shapes_and_empty():
    f = PoseFrame.empty()
    assert f.num_people == 0 and f.body.shape == (0, 18, 3) and f.hands.shape == (0, 2, 21, 3)
    assert f.face.shape == (0, 68, 3)
    g = random_frame(np.random.default_rng(0), 3)
    assert g.num_people == 3 and g.body.dtype == np.float32
    assert g.person(1).allclose(PoseFrame(g.body[1:2], g.hands[1:2], g.face[1:2]))
    assert PoseFrame.concat([g.person(0), g.person(2)]).num_people == 2


def test_missing_points_are_canonical_and_arrays_readonly():
    body = np.random.default_rng(1).uniform(0.1, 0.9, (1, 18, 3)).astype(np.float32)
    body[0, 4, 2] = 0.0
    f = PoseFrame.from_body(body)
    assert np.all(f.body[0, 4] == 0) and np.all(f.body[0, 3] == body[0, 3])
    assert f.hands.shape == (1, 2, 21, 3) and np.all(f.hands[..., 2] == 0)
    with pytest.raises(ValueError):
        f.body[0, 0, 0] = 1.0


@pytest.mark.parametrize("bad, msg", [
    (dict(body=np.zeros((1, 17, 3))), "body"),
    (dict(body=np.full((1, 18, 3), np.nan)), "NaN"),
    (dict(face=np.full((1, 68, 3), 2.0)), "confidence"),
    (dict(hands=np.zeros((2, 2, 21, 3))), "same number of people"),
])
def test_bad_input_is_a_clear_value_error(bad, msg):
    f = standard_person()
    arrays = dict(body=f.body, hands=f.hands, face=f.face) | bad
    with pytest.raises(ValueError, match=msg):
        PoseFrame(**arrays)


def test_json_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    frames = [random_frame(rng, p) for p in (2, 0, 1)]
    clip = PoseClip(frames, width=640, height=360, fps=24.0)
    path = tmp_path / "sub" / "kps.json"
    clip.save(path)
    back = PoseClip.load(path)
    assert (back.width, back.height, back.fps, len(back)) == (640, 360, 24.0, 3)
    assert back.num_empty == 1
    for a, b in zip(frames, back.frames):
        assert a.allclose(b, atol=1e-6)
    assert not list(tmp_path.glob("sub/.*"))  # no temporary file left behind


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        PoseClip.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="other.json"):
        PoseClip.load(other)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        PoseClip.load(tmp_path / "missing.json")


def test_skeleton_tables():
    assert len(BODY_LIMBS) == 17 and len(HAND_EDGES) == 20
    # every body joint but the neck (the root) is the child of exactly one limb: a tree
    children = [b for _, b in BODY_LIMBS]
    assert sorted(children) == sorted(set(range(18)) - {1})
    assert sorted(b for _, b in HAND_EDGES) == list(range(1, 21))


def test_standard_person_is_inside_its_box():
    f = standard_person(center=(0.3, 0.6), height=0.5)
    xy = f.body[0, :, :2]
    assert np.isclose(xy[:, 1].max() - xy[:, 1].min(), 0.5 * 0.82, atol=1e-5)
    assert np.all(f.hands[..., 2] == 1) and np.all(f.face[..., 2] == 1)
