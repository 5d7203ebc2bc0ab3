"""Toy training sets, rendered in parallel processes: prior videos, and pose-driven clips.

- `prior_set`: what the I2V prior is pretrained on: single characters at W x H and two-person
  videos at 2W x H (so the backbone has seen wide frames before it meets the 2W in-context canvas).
  A share `split` of them are split-screen duos (`split_screen`): two panels side by side, each
  with its own character and background, one motion at the same place of each panel (the
  side-by-side comparison, tutorial and reaction videos a real backbone has seen). That is the
  in-context canvas's geometry: a panel to animate beside a panel that shows the motion. The
  others are one scene, a share `sync` of them duos dancing in step (the same motion, the second
  actor exactly W to the right of the first), like the dance-duo videos a real backbone has seen.
  Both give the stand-in backbone the in-context prior the paper relies on: motion at one place
  of the frame mirrored at another.
- `pose_set`: clips of training characters performing training motions, their pose videos, and
  `aug_copies` pose videos per clip with the paper's pose augmentation (bone-length scaling and
  box normalisation, `dreamactor_jax.pose.augment`), drawn once here so training stays on device.

Box normalisation (`norm`): `median` maps the skeleton clip's box into the world's median clip box
(the same box for every clip); `reference` maps it so that its first frame's box of the nine
marker joints lands on the box of the markers found on the reference image (`reference_box`,
scale by height, bottom centres aligned): the skeleton then stands where the reference character
stands, at its size, and only its bone lengths (augmented in training) and its motion differ. In
training the reference is the clip's own frame 0, at inference the reference image, so both see
the same normalisation.

Everything is deterministic from (config, seed); only the "train" split of the world is used.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
from dataclasses import asdict

import numpy as np

from dreamactor_jax.pose.augment import PoseAugConfig, augment_clip, normalize_to_box
from dreamactor_jax.pose.keypoints import NOSE, PoseClip, PoseFrame
from dreamactor_jax.pose.render import render_clip as render_pose_clip
from dreamactor_jax.toy.metrics import detect_markers
from dreamactor_jax.toy.render import MARKER_JOINTS
from dreamactor_jax.toy.skeleton import HEAD
from dreamactor_jax.toy.world import WorldConfig, character, cross_case, motion, render_clip, render_scene

# Bone factors as wide as the world's own variety of bodies (our choice; the paper gives none). The
# normalisation box is the toy world's median clip box (x 0.21-0.79, y 0.20-0.89 of the frame over
# 300 training clips), so a normalised skeleton has a typical character's size and place (the
# whole frame would blow every skeleton up ~1.3x past the character it drives).
TOY_AUG = PoseAugConfig(torso=(0.8, 1.25), arms=(0.7, 1.4), legs=(0.7, 1.4), head=(0.8, 1.25),
                        target_box=(0.2, 0.2, 0.8, 0.9), margin=0.0)
INFER_NORM = dict(target_box=TOY_AUG.target_box, margin=TOY_AUG.margin)
NORMS = ("median", "reference")
# The OpenPose keypoints at the nine marker joints (a humanoid's head centre is its nose keypoint).
MARKER_KEYPOINTS = tuple(NOSE if j == HEAD else j for j in MARKER_JOINTS)


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"pose normalisation: expected one of {NORMS}, got {norm!r}")


def reference_box(image: np.ndarray, min_found: int = 3) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) in pixels of the joint markers found on a reference image uint8 [H, W, 3];
    None when fewer than `min_found` are found (then nothing can be anchored to it)."""
    h, w = image.shape[:2]
    m = detect_markers(image)[0]
    ok = m[:, 2] >= 0.3
    if ok.sum() < min_found:
        return None
    xy = m[ok, :2] * np.array([w, h])
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def anchor_to_box(clip: PoseClip, box: tuple[float, float, float, float]) -> PoseClip:
    """Moves and scales a skeleton clip (one factor for x and y) so that its first frame's marker-joint
    box has the height and bottom centre of `box` (pixels); the whole clip moves with it."""
    kp = clip.frames[0].body
    pts = kp[0, list(MARKER_KEYPOINTS)] if kp.shape[0] else np.zeros((0, 3))
    pts = pts[pts[:, 2] > 0][:, :2] * np.array([clip.width, clip.height])
    if len(pts) < 2:
        return clip
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    s = (box[3] - box[1]) / (y1 - y0) if y1 - y0 > 1e-6 else 1.0
    src, dst = np.array([(x0 + x1) / 2, y1]), np.array([(box[0] + box[2]) / 2, box[3]])
    size = np.array([clip.width, clip.height], np.float64)

    def move(a):
        a = np.array(a, np.float64)
        a[..., :2] = ((a[..., :2] * size - src) * s + dst) / size
        return a
    return PoseClip([PoseFrame(move(f.body), move(f.hands), move(f.face)) for f in clip.frames],
                    clip.width, clip.height, clip.fps)


def normalize_pose(pc: PoseClip, cfg: WorldConfig, norm: str, reference: np.ndarray | None) -> PoseClip:
    """Box normalisation of a skeleton clip: `median` box, or anchored to the `reference` image."""
    _check_norm(norm)
    if norm == "median":
        return normalize_to_box(pc, cfg.width, cfg.height, **INFER_NORM)
    box = reference_box(reference) if reference is not None else None
    return anchor_to_box(pc, box) if box is not None else pc


def normalized_pose_video(clip, cfg: WorldConfig, norm: str = "median", reference: np.ndarray | None = None) -> np.ndarray:
    """The driving pose video as a pose-augmented model sees it at inference: box-normalised only
    (`norm`: into the median box, or anchored to the `reference` image's markers)."""
    return render_pose_clip(normalize_pose(clip.pose_clip(), cfg, norm, reference), cfg.height, cfg.width)


def _pairs(n: int, seed: int, num_chars: int, num_motions: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 99])
    return np.stack([rng.integers(num_chars, size=n), rng.integers(num_motions, size=n)], 1)


def _partner(ci: int, cfg: WorldConfig, kind: str | None = None):
    """The second actor of two-person video `ci` (of body `kind` when given: one motion fits one kind)."""
    return character("train", (ci * 7 + 3) % 1_000_000, cfg, kind=kind)


def scene_actors(ci: int, mi: int, cfg: WorldConfig, seed: int, sync: float):
    """The two actors (character, motion, x in the 2W scene) of wide scene (ci, mi): with
    probability `sync` a duo in step (one motion, the second actor exactly W right of the first)."""
    rng = np.random.default_rng([seed, ci, mi])
    a, ma = character("train", ci, cfg), motion("train", mi, cfg)
    if rng.uniform() < sync:
        b = _partner(ci, cfg, kind=a.body.kind)
        xa = rng.uniform(0.2, 0.3)
        return [(a, ma, xa), (b, ma, xa + 0.5)]
    b = _partner(ci, cfg)
    mb = motion("train", (mi * 5 + 1) % 1_000_000, cfg)
    return [(a, ma, rng.uniform(0.15, 0.4)), (b, mb, rng.uniform(0.6, 0.85))]


def split_screen(ci: int, mi: int, cfg: WorldConfig, seed: int) -> np.ndarray:
    """Split-screen duo (ci, mi): uint8 [T, H, 2W, 3], two panels of W, each its own character and
    background, both performing one motion at the same place of their panel."""
    rng = np.random.default_rng([seed, ci, mi, 11])
    a = character("train", ci, cfg)
    b = _partner(ci, cfg, kind=a.body.kind)
    mo, x0 = motion("train", mi, cfg), rng.uniform(0.35, 0.65)
    return np.concatenate([render_clip(a, mo, cfg, x0).video, render_clip(b, mo, cfg, x0).video], 2)


def _prior_item(args):
    cfgd, ci, mi, wide, sync, split, seed = args
    cfg = WorldConfig(**cfgd)
    if not wide:
        return render_clip(character("train", ci, cfg), motion("train", mi, cfg), cfg).video
    if np.random.default_rng([seed, ci, mi, 12]).uniform() < split:
        return split_screen(ci, mi, cfg, seed)
    wcfg = WorldConfig(**{**cfgd, "width": 2 * cfg.width})
    return render_scene(scene_actors(ci, mi, cfg, seed, sync), wcfg).video


def _pose_item(args):
    cfgd, ci, mi, copies, seed, norm = args
    cfg = WorldConfig(**cfgd)
    clip = render_clip(character("train", ci, cfg), motion("train", mi, cfg), cfg)
    rng = np.random.default_rng([seed, ci, mi, 5])
    aug_cfg = TOY_AUG if norm == "median" else dataclasses.replace(TOY_AUG, box_normalization=False)
    augs = [render_pose_clip(normalize_pose(augment_clip(clip.pose_clip(), rng, aug_cfg)[0], cfg, norm,
                                            clip.video[0]), cfg.height, cfg.width)
            for _ in range(copies)]
    aug = np.stack(augs) if copies else np.zeros((0,) + clip.pose_video.shape, np.uint8)
    return clip.video, clip.pose_video, aug


def _map(fn, items, workers: int):
    if workers <= 1:
        return [fn(x) for x in items]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, items, chunksize=max(1, len(items) // (4 * workers)))


def _map_later(fn, items, workers: int):
    """Starts `_map` in worker processes now (the caller goes on, e.g. training on the accelerator)
    and returns a function that waits for the results (computed then, without workers)."""
    if workers <= 1:
        return lambda: [fn(x) for x in items]
    pool = mp.get_context("spawn").Pool(workers)
    pending = pool.map_async(fn, items, chunksize=max(1, len(items) // (4 * workers)))

    def get():
        try:
            return pending.get()
        finally:
            pool.close()
            pool.join()
    return get


def prior_set(cfg: WorldConfig, num_clips: int, num_scenes: int, *, num_chars: int, num_motions: int,
              seed: int = 0, workers: int = 1, sync: float = 0.0, split: float = 0.0) -> dict[str, np.ndarray]:
    """{"video": uint8 [N, T, H, W, 3], "wide": uint8 [M, T, H, 2W, 3]} from training characters;
    a share `split` of the wide scenes are split-screen duos, a share `sync` of the others duos in
    step in one scene (see the module docstring)."""
    for name, share in (("sync", sync), ("split", split)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name}: expected a share in [0, 1], got {share}")
    cfgd = asdict(cfg)
    pairs = _pairs(num_clips + num_scenes, seed, num_chars, num_motions)
    items = [(cfgd, int(c), int(m), i >= num_clips, float(sync), float(split), seed)
             for i, (c, m) in enumerate(pairs)]
    out = _map(_prior_item, items, workers)
    empty = lambda w: np.zeros((0, cfg.num_frames, cfg.height, w, 3), np.uint8)  # noqa: E731
    return {"video": np.stack(out[:num_clips]) if num_clips else empty(cfg.width),
            "wide": np.stack(out[num_clips:]) if num_scenes else empty(2 * cfg.width)}


def pose_set(cfg: WorldConfig, num_clips: int, *, num_chars: int, num_motions: int, aug_copies: int,
             seed: int = 0, workers: int = 1, norm: str = "median", later: bool = False):
    """{"video", "pose": uint8 [N, T, H, W, 3], "pose_aug": uint8 [N, A, T, H, W, 3]} (self-supervised
    pairs; `pose` raw, `pose_aug` bone-scaled and box-normalised by `norm`). With `later`, the
    rendering starts in the background and a function returning that dict is returned instead."""
    _check_norm(norm)
    cfgd = asdict(cfg)
    pairs = _pairs(num_clips, seed + 1, num_chars, num_motions)
    get = _map_later(_pose_item, [(cfgd, int(c), int(m), aug_copies, seed, norm) for c, m in pairs], workers)

    def stack():
        out = get()
        return {"video": np.stack([o[0] for o in out]), "pose": np.stack([o[1] for o in out]),
                "pose_aug": np.stack([o[2] for o in out])}
    return stack if later else stack()


def _case_item(args):
    cfgd, i, kind = args
    cfg = WorldConfig(**cfgd)
    return cross_case(character("heldout", 2 * i, cfg, kind=kind), character("heldout", 2 * i + 1, cfg, kind=kind),
                      motion("heldout", i, cfg), cfg)


def heldout_cases_later(n: int, cfg: WorldConfig, *, kind: str | None = "humanoid", workers: int = 1):
    """`world.heldout_cases(n, cfg, kind)` rendered in background processes: returns a function that
    waits for the list."""
    return _map_later(_case_item, [(asdict(cfg), i, kind) for i in range(n)], workers)
