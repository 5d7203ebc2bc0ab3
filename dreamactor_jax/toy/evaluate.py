"""Cross-identity evaluation on held-out characters and motions, against the exact ground truth.

Each case animates a held-out reference character X with the pose video of a held-out driver D
performing a held-out motion; the target is X performing that motion (`world.cross_case`).
Methods: `still` (the reference repeated), `prior` (the I2V prior from the reference alone, no
adapter), `canvas_no_lora` (the prior given the in-context input, no adapter) and trained
adapters. Generation uses the project's sampler (`dreamactor_jax.sampling`); the motion part of
the in-context sample is clamped to the given pose latents at every step (replacement, as for
long-video context frames). Scores skip frame 0 (the reference itself for every method).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dreamactor_jax.sampling.sampler import sample
from dreamactor_jax.sampling.velocity import InContextVelocity
from dreamactor_jax.sampling.scheduler import flow_sigmas
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.toy import metrics as M
from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy.data import normalized_pose_video
from dreamactor_jax.toy.world import CrossCase, WorldConfig
from dreamactor_jax.train import objective as obj


def generate(c, base: dict, lora: dict | None, lc, layout: str, refs: np.ndarray, poses: np.ndarray | None,
             *, seed: int = 0) -> np.ndarray:
    """Samples videos uint8 [N, T, H, W, 3] for references uint8 [N, H, W, 3] and pose videos
    [N, T, H, W, 3]; `lc` is the adapter's config section (rank, alpha), None without adapter."""
    cfg = tm.mmdit_config(c.model)
    lcfg = tm.lora_config(lc) if lora is not None else None
    model_fn = InContextVelocity(cfg, lora_cfg=lcfg)
    params = base if lcfg is None else (base, lora)
    e = c.eval
    sigmas = jnp.asarray(flow_sigmas(int(e.steps), float(e.shift)))
    n, t = refs.shape[0], int(c.world.num_frames)
    out = []
    for s in range(0, n, int(e.batch)):
        ref = ae.to_pixels(jnp.asarray(refs[s:s + int(e.batch)]))
        b = ref.shape[0]
        video = jnp.zeros((b, t) + ref.shape[1:], jnp.float32)
        pose = None if poses is None else ae.to_pixels(jnp.asarray(poses[s:s + b]))
        tgt, cond, mask = tm.build(layout, video, pose, ref)
        noise = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), s), tgt.shape, jnp.float32)
        known = known_mask = None
        if layout != "i2v" and bool(e.clamp_motion):
            known, known_mask = tgt, 1.0 - tm.loss_weights(layout, tgt.shape)[None]
        lat = sample(model_fn, params, tm.sample_cond(c.model, cond, mask), noise, sigmas, known, known_mask)
        out.append(ae.to_uint8(ae.decode(tm.video_part(layout, lat))))
    return np.concatenate(out)


def score(videos: np.ndarray, cases: list[CrossCase], cfg: WorldConfig) -> dict[str, float]:
    """Mean PSNR, SSIM, marker keypoint error/PCK and body-shape error/leakage over cases (frames 1..T-1)."""
    rows, shapes = [], []
    for v, case in zip(videos, cases):
        v, tgt = v[1:], case.target.video[1:]
        det = M.detect_markers(v)
        kp = M.keypoint_scores(det, M.marker_truth(case.target.joints[1:]), cfg.aspect)
        rows.append({"psnr": M.psnr(v, tgt), "ssim": M.ssim(v, tgt), **kp})
        shapes.append(M.shape_scores(det, case.ref_char.body, case.driver_char.body, cfg.aspect))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out.update(M.summarize_shape(shapes))
    return out


def motion_inputs(cases: list[CrossCase], c, lc=None) -> np.ndarray:
    """The driving half as adapter `lc` (a config section; None: the pose-augmented default) was
    trained to read it: the driver's RGB video (`lc.motion == "video"`, the end-to-end model), its
    pose video box-normalised by `c.data.pose_norm` (pose augmentation), or its raw pose video."""
    wcfg = WorldConfig(**dict(c.world))
    if lc is not None and lc.get("motion", "pose") == "video":
        return np.stack([k.driving.video for k in cases])
    if lc is None or bool(lc.pose_aug):
        norm = str(c.data.get("pose_norm", "median"))
        return np.stack([normalized_pose_video(k.driving, wcfg, norm, k.reference) for k in cases])
    return np.stack([k.driving.pose_video for k in cases])


def evaluate_baselines(c, cases: list[CrossCase], prior: dict, canvas: bool = True) -> dict[str, np.ndarray]:
    """Videos of the baselines: `still`, `prior` (I2V from the reference) and, with `canvas`,
    `canvas_no_lora` (the prior given the in-context input)."""
    wcfg = WorldConfig(**dict(c.world))
    refs = np.stack([k.reference for k in cases])
    seed = int(c.eval.seed)
    out = {"still": np.repeat(refs[:, None], wcfg.num_frames, 1),
           "prior": generate(c, prior, None, None, "i2v", refs, None, seed=seed)}
    if canvas:
        out["canvas_no_lora"] = generate(c, prior, None, None, "spatial", refs, motion_inputs(cases, c), seed=seed)
    return out


def evaluate_adapter(c, cases: list[CrossCase], prior: dict, lora: dict, lc) -> np.ndarray:
    """Videos of one trained adapter (config section `lc`: layout, pose_aug, motion, rank, alpha)."""
    refs = np.stack([k.reference for k in cases])
    return generate(c, prior, lora, lc, str(lc.layout), refs, motion_inputs(cases, c, lc), seed=int(c.eval.seed))


INFLUENCE_SIGMAS = (0.9, 0.5, 0.2)


def motion_influence(c, cases: list[CrossCase], base: dict, lora: dict | None, lc, *, layout: str = "spatial",
                     max_cases: int = 16, seed: int = 0) -> dict[str, float]:
    """How much the model reads its motion input: the rms change of the velocity it predicts for the
    character video when each case's driving pose video is swapped for another case's, relative to
    the velocity's rms, at noise levels `INFLUENCE_SIGMAS` (same noisy target, same reference).

    ~0 means the motion signal is ignored (the video could only follow the pose by chance). Keys
    `sigma_0.9`, ... and `mean`. `lc` is the adapter's config section (None without an adapter).
    """
    cases = cases[:max_cases]
    if len(cases) < 2:
        raise ValueError("motion_influence: needs at least 2 cases (to swap their pose videos)")
    cfg = tm.mmdit_config(c.model)
    lcfg = tm.lora_config(lc) if lora is not None else None
    model_fn = jax.jit(InContextVelocity(cfg, lora_cfg=lcfg))
    params = base if lcfg is None else (base, lora)
    video = ae.to_pixels(jnp.asarray(np.stack([k.target.video for k in cases])))
    pose = ae.to_pixels(jnp.asarray(motion_inputs(cases, c, lc)))
    tgt, cond, mask = tm.build(layout, video, pose, video[:, 0])
    _, swapped, _ = tm.build(layout, video, jnp.roll(pose, 1, axis=0), video[:, 0])
    noise = jax.random.normal(jax.random.PRNGKey(seed), tgt.shape, jnp.float32)
    w = tm.loss_weights(layout, tgt.shape)[None]
    out = {}
    for sigma in INFLUENCE_SIGMAS:
        sig = jnp.full((tgt.shape[0],), sigma, jnp.float32)
        xt, t = obj.add_noise(tgt, noise, sig), obj.timesteps_from_sigmas(sig)
        v1 = model_fn(params, xt, t, tm.sample_cond(c.model, cond, mask)).astype(jnp.float32)
        v2 = model_fn(params, xt, t, tm.sample_cond(c.model, swapped, mask)).astype(jnp.float32)
        out[f"sigma_{sigma}"] = float(jnp.sqrt(jnp.sum(w * (v1 - v2) ** 2) / jnp.sum(w * v1 ** 2)))
    out["mean"] = float(np.mean(list(out.values())))
    return out


def frame_grid(rows: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """Stacks clips uint8 [T, H, W, 3] (one per row, same T and H) into one image, upscaled (nearest)."""
    width = max(r.shape[0] * r.shape[2] for r in rows)
    lines = []
    for r in rows:
        line = np.concatenate(list(r), 1)
        pad = np.zeros((line.shape[0], width - line.shape[1], 3), np.uint8)
        lines.append(np.concatenate([line, pad], 1))
        lines.append(np.full((1, width, 3), 255, np.uint8))
    img = np.concatenate(lines[:-1], 0)
    return np.kron(img, np.ones((scale, scale, 1), np.uint8))


def save_png(path, img: np.ndarray) -> None:
    from dreamactor_jax.utils import atomic_path
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
