"""Offline metrics on synthetic inputs with known answers: VBench flicker, smoothness, background,
subject drift (a colour-drifting video is flagged), seams, PSNR / SSIM against a torch reference,
pose-based motion fidelity and body shape (ideal against itself, a still image gets none)."""

from __future__ import annotations

import numpy as np
import pytest

from dreamactor_jax.eval import fidelity, motion, temporal
from dreamactor_jax.eval.masks import dilate, motion_masks, subject_masks
from dreamactor_jax.pose import PoseClip, PoseFrame, standard_person
from dreamactor_jax.pose.augment import BoneFactors, rescale_bones
from dreamactor_jax.pose.keypoints import L_ELBOW, L_WRIST, R_ELBOW, R_WRIST

RNG = np.random.default_rng(0)


def square_video(t=24, h=48, w=64, colour=(200, 60, 40), drift=0.0, bg_noise=0.0, seed=0, towards=(1.0, -0.5, -1.0)):
    """A square walking over a textured still background; its colour shifts by `drift` levels in all."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 120, (h, w, 3)).astype(np.float64)
    frames, masks = [], []
    for i in range(t):
        f = bg + (rng.normal(0, bg_noise, bg.shape) if bg_noise else 0)
        m = np.zeros((h, w), bool)
        x = 4 + i * (w - 24) // t
        m[14:34, x:x + 16] = True
        c = np.asarray(colour, np.float64) + drift * i / (t - 1) * np.asarray(towards)
        f[m] = c
        frames.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def test_flicker_is_vbench_mean_abs_difference():
    cv2 = pytest.importorskip("cv2")
    v = RNG.integers(0, 255, (6, 20, 30, 3), np.uint8)
    ref = np.mean([np.mean(cv2.absdiff(v[i], v[i + 1])) for i in range(len(v) - 1)])  # VBench's mae_seq
    out = temporal.flicker(v)
    assert out["mae"] == pytest.approx(ref, rel=1e-12) and out["score"] == pytest.approx((255 - ref) / 255)
    assert temporal.flicker(np.repeat(v[:1], 5, 0)) == {"mae": 0.0, "score": 1.0}
    with pytest.raises(ValueError, match="2 frames"):
        temporal.flicker(v[:1])


def test_smoothness_linear_motion_is_perfect_and_a_cut_jumps():
    base, step = RNG.integers(0, 100, (1, 16, 16, 3)), RNG.integers(0, 12, (1, 16, 16, 3))
    lin = (base + step * np.arange(12)[:, None, None, None]).astype(np.uint8)  # integer steps: exact
    s = temporal.smoothness(lin)
    assert s["interp_mae"] == 0.0 and s["score"] == 1.0 and s["jump_ratio"] < 1.01 and s["luma_flicker"] < 1e-4
    cut = lin.copy()
    cut[6:] = 255 - cut[6:]
    assert temporal.smoothness(cut)["jump_ratio"] > 5


def test_background_and_drift_on_a_square_walking_over_a_still_background():
    v, m = square_video()
    bg = temporal.background(v, dilate(m))
    assert bg["flicker"] == 0.0 and bg["drift"] == 0.0 and 0.5 < bg["coverage"] < 0.9
    noisy, _ = square_video(bg_noise=8.0)
    assert temporal.background(noisy, dilate(m))["flicker"] > 5
    steady = temporal.subject_drift(v, m, reference_colour=np.array([200, 60, 40]))
    assert steady["color_drift"] == 0.0 and steady["ref_color_dist"] == 0.0 and not steady["flagged"]
    drifting, _ = square_video(drift=60.0)
    d = temporal.subject_drift(drifting, m)
    assert d["flagged"] and d["color_drift"] > 20 and d["luma_drift"] < 5  # a hue drift at near-constant luma
    darker, _ = square_video(drift=30.0, towards=(-1, -1, -1))
    d = temporal.subject_drift(darker, m)
    assert d["flagged"] and d["luma_drift"] > 15
    # the motion mask finds the square without being told where it is
    mm = motion_masks(v)
    assert (mm & m).sum() / m.sum() > 0.9 and (mm & ~m).sum() / m.sum() < 0.1
    found, info = subject_masks(v, segmenter=lambda f: np.zeros(f.shape[:2]))  # finds nobody -> motion
    assert info["source"] == "motion" and info["found"] == 1.0
    assert temporal.subject_drift(drifting, subject_masks(drifting)[0])["flagged"]  # end to end, no masks given
    with pytest.raises(ValueError, match="fewer than 2 frames"):
        temporal.subject_drift(v, np.zeros_like(m))


def test_seams_measure_the_jump_at_segment_boundaries():
    v, m = square_video(t=25)
    ok = temporal.seams(v, m, [9, 17])
    assert ok["seams"] == 2 and ok["frame_jump"] < 1.5 and ok["subject_color_jump"] <= 1.0
    bad = v.copy()
    for t in range(17, 25):
        bad[t][m[t]] = (120, 160, 40)  # the subject changes colour at the second seam
    assert temporal.seams(bad, m, [9, 17])["subject_color_jump"] > 10


def _ssim_torch(a, b):
    """Independent SSIM: torch conv2d with the 11x11 Gaussian window (sigma 1.5)."""
    torch = pytest.importorskip("torch")
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    k = torch.tensor(np.outer(g, g) / np.outer(g, g).sum(), dtype=torch.float64)[None, None].repeat(3, 1, 1, 1)
    x = torch.tensor(a.astype(np.float64) / 255).permute(2, 0, 1)[None]
    y = torch.tensor(b.astype(np.float64) / 255).permute(2, 0, 1)[None]
    # half-sample symmetric padding (scipy's "reflect", skimage's SSIM), then a valid convolution
    pad = lambda z: torch.tensor(np.pad(z.numpy(), ((0, 0), (0, 0), (5, 5), (5, 5)), mode="symmetric"))  # noqa: E731
    f = lambda z: torch.nn.functional.conv2d(pad(z), k, groups=3)  # noqa: E731
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())


def test_psnr_ssim_against_references():
    a = RNG.integers(0, 255, (3, 24, 32, 3), np.uint8)
    b = np.clip(a.astype(int) + RNG.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a / 255.0 - b / 255.0) ** 2)
    assert fidelity.psnr(a, b) == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)
    ref = np.mean([_ssim_torch(x, y) for x, y in zip(a, b)])
    assert abs(fidelity.ssim(a, b) - ref) / abs(ref) < 1e-6
    same = fidelity.fidelity(a, a)
    assert same["psnr"] == fidelity.PSNR_CAP and same["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        fidelity.psnr(a, b[:, :20])


# ---------------------------------------------------------------- poses
def waving(t=16, center=(0.5, 0.5), height=0.8, width=640, height_px=480, amplitude=1.0):
    """One person waving: both forearms (and hands) swing rigidly about the elbows."""
    frames = []
    size = np.array([width, height_px], np.float64)
    for i in range(t):
        p = standard_person(center, height)
        body, hands = p.body.copy(), p.hands.copy()
        a = amplitude * np.sin(2 * np.pi * i / t)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        for elbow, wrist, h in ((R_ELBOW, R_WRIST, 1), (L_ELBOW, L_WRIST, 0)):
            e = body[0, elbow, :2] * size  # rotate in pixels, so lengths are kept
            body[0, wrist, :2] = (e + (body[0, wrist, :2] * size - e) @ rot.T) / size
            hands[0, h, :, :2] = (e + (hands[0, h, :, :2] * size - e) @ rot.T) / size
        frames.append(PoseFrame(body, hands, p.face))
    return PoseClip(frames, width, height_px, 8.0)


def test_motion_fidelity_is_ideal_on_itself_and_ignores_placement():
    drv = waving()
    same = motion.motion_fidelity(drv, drv)
    for part in motion.PARTS + ("all",):
        assert same[part]["pck@0.05"] == 1.0 and same[part]["err"] == 0.0 and same[part]["missed"] == 0.0, part
    moved = waving(center=(0.3, 0.45), height=0.5, width=320, height_px=240)  # elsewhere, smaller, other frame
    m = motion.motion_fidelity(moved, drv)
    assert m["all"]["pck@0.05"] == 1.0 and m["all"]["err"] < 0.01 and m["face"]["pck@0.05"] == 1.0


def test_a_still_image_gets_no_motion_fidelity_and_misses_cost():
    drv = waving(amplitude=1.2)
    still = PoseClip([drv.frames[0]] * len(drv), drv.width, drv.height, drv.fps)
    s = motion.motion_fidelity(still, drv)
    assert s["arms"]["pck@0.05"] < 0.7 and s["hands"]["pck@0.1"] < 0.5 and s["arms"]["err"] > 0.03  # elbows stay put
    assert s["all"]["pck@0.05"] < 0.6 and s["all"]["err"] > 0.03
    empty = PoseClip([PoseFrame.empty()] * len(drv), drv.width, drv.height)
    e = motion.motion_fidelity(empty, drv)
    assert e["found"] == 0.0 and e["all"]["missed"] == 1.0 and e["all"]["err"] == motion.MISS_COST
    with pytest.raises(ValueError, match="no person found in the driving"):
        motion.motion_fidelity(drv, empty)


def test_body_shape_measures_proportions_not_size():
    drv = waving()
    ref = drv.frames[0]
    same = motion.body_shape(drv, ref, drv.width, drv.height)
    assert same["shape_err"] == pytest.approx(0.0, abs=1e-6)
    big = waving(center=(0.6, 0.5), height=0.4, width=1280, height_px=960)  # the same body, smaller, elsewhere
    assert motion.body_shape(big, ref, drv.width, drv.height)["shape_err"] < 1e-3
    long_legs = rescale_bones(ref, BoneFactors.from_groups({"legs": 1.4}))
    out = motion.body_shape(drv, long_legs, drv.width, drv.height, driving=drv)
    assert out["shape_err"] > 0.1 and out["legs"] > out["arms"] and out["legs"] > 0.2
    assert out["driver_shape_err"] == pytest.approx(out["shape_err"])  # the output copied the driver
    with pytest.raises(ValueError, match="no person found on the reference"):
        motion.body_shape(drv, PoseFrame.empty(), 10, 10)
