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

Everything is deterministic from (config, seed); only the "train" split of the world is used.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import asdict

import numpy as np

from dreamactor_jax.pose.augment import PoseAugConfig, augment_clip, normalize_to_box
from dreamactor_jax.pose.render import render_clip as render_pose_clip
from dreamactor_jax.toy.world import WorldConfig, character, motion, render_clip, render_scene

# Bone factors as wide as the world's own variety of bodies (our choice; the paper gives none). The
# normalisation box is the toy world's median clip box (x 0.21-0.79, y 0.20-0.89 of the frame over
# 300 training clips), so a normalised skeleton has a typical character's size and place (the
# whole frame would blow every skeleton up ~1.3x past the character it drives).
TOY_AUG = PoseAugConfig(torso=(0.8, 1.25), arms=(0.7, 1.4), legs=(0.7, 1.4), head=(0.8, 1.25),
                        target_box=(0.2, 0.2, 0.8, 0.9), margin=0.0)
INFER_NORM = dict(target_box=TOY_AUG.target_box, margin=TOY_AUG.margin)


def normalized_pose_video(clip, cfg: WorldConfig) -> np.ndarray:
    """The driving pose video as a pose-augmented model sees it at inference: box-normalised only."""
    pc = normalize_to_box(clip.pose_clip(), cfg.width, cfg.height, **INFER_NORM)
    return render_pose_clip(pc, cfg.height, cfg.width)


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
    cfgd, ci, mi, copies, seed = args
    cfg = WorldConfig(**cfgd)
    clip = render_clip(character("train", ci, cfg), motion("train", mi, cfg), cfg)
    rng = np.random.default_rng([seed, ci, mi, 5])
    augs = [render_pose_clip(augment_clip(clip.pose_clip(), rng, TOY_AUG)[0], cfg.height, cfg.width)
            for _ in range(copies)]
    aug = np.stack(augs) if copies else np.zeros((0,) + clip.pose_video.shape, np.uint8)
    return clip.video, clip.pose_video, aug


def _map(fn, items, workers: int):
    if workers <= 1:
        return [fn(x) for x in items]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(fn, items, chunksize=max(1, len(items) // (4 * workers)))


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
             seed: int = 0, workers: int = 1) -> dict[str, np.ndarray]:
    """{"video", "pose": uint8 [N, T, H, W, 3], "pose_aug": uint8 [N, A, T, H, W, 3]} (self-supervised pairs)."""
    cfgd = asdict(cfg)
    pairs = _pairs(num_clips, seed + 1, num_chars, num_motions)
    out = _map(_pose_item, [(cfgd, int(c), int(m), aug_copies, seed) for c, m in pairs], workers)
    return {"video": np.stack([o[0] for o in out]), "pose": np.stack([o[1] for o in out]),
            "pose_aug": np.stack([o[2] for o in out])}
