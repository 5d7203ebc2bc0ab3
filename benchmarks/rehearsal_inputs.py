"""The rehearsal's inputs (benchmarks/rehearsal.py): real videos, keypoints, a reference, text embeddings.

From ../shared/assets: three portrait videos (a phone dance video 604x1080 at 30 fps, a stylised
dance 768x1216 at 8 fps, a talking head 300x350 at 30 fps) and one landscape video made from the
phone dance video by padding it into a 960x544 frame (a vertical video in a landscape frame, as
they are often posted; the assets hold no landscape video of a person). The reference is the anime
character ax-11.jpeg (`tiny`: the first 2.5 s of each video). tools/extract_pose.py writes each video's keypoints (the
manifest's `pose` files, at the video's rate) and the phone dance's become the driving pose video
for sampling (127 frames at 30 fps). That needs mediapipe; a GPU machine without it takes the folder `--prepare` made.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

VIDEOS = {"mtv": "mtv-00001.mp4", "dance": "dance1_right.mp4", "talk": "talkinghead-2.mp4"}
LANDSCAPE = ("mtv_landscape", "mtv", (544, 960))
REFERENCE = "ax-11.jpeg"
ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"rehearsal_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _extract(video: Path, out_mp4: Path, out_json: Path | None, fps: float | None, num_frames: int | None):
    args = [str(video), "-o", str(out_mp4), "--quiet", "--input-kind", "video"]
    if out_json is not None:
        args += ["--json", str(out_json)]
    if fps:
        args += ["--fps", str(fps)]
    if num_frames:
        args += ["--num-frames", str(num_frames)]
    _tool("extract_pose")(args)


def prepare_inputs(assets: Path, dest: Path, *, tiny: bool, prepared: str | None = None) -> dict:
    """Fills `dest` with videos, keypoints, manifest.jsonl, ref.png and driver_pose.mp4; returns a summary.

    With `prepared` (a folder an earlier call made, e.g. on a CPU machine with mediapipe), copies it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if prepared:
        src = Path(prepared)
        info_path = src / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"--inputs {src}: no info.json (make it with benchmarks/rehearsal.py --prepare)")
        info = json.loads(info_path.read_text())
        if info.get("tiny") != tiny:
            raise ValueError(f"--inputs {src}: prepared for {'tiny' if info.get('tiny') else 'full size'}, "
                             f"this run is {'tiny' if tiny else 'full size'}")
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, dest / f.name)
        return {**info, "from": str(src)}
    import numpy as np
    from PIL import Image

    from dreamactor_jax import media

    missing = [n for n in (*VIDEOS.values(), REFERENCE) if not (assets / n).is_file()]
    if missing:
        raise FileNotFoundError(f"--assets {assets}: missing {missing} (the real test assets)")
    fps = 8.0 if tiny else 24.0
    for vid, name in VIDEOS.items():
        if tiny:  # the first 2.5 s, at most 384 px: enough for 9-frame clips of 32x64 (and quick to code)
            info = media.video_info(assets / name)
            v = media.read_video(assets / name, num_frames=round(2.5 * info.fps))
            s = 384 / max(info.height, info.width)
            v = media.resize_to(v, 16 * round(info.height * s / 16), 16 * round(info.width * s / 16), mode="crop")
            media.write_video(dest / f"{vid}.mp4", v, info.fps)
        else:
            shutil.copyfile(assets / name, dest / f"{vid}.mp4")
    lid, src_id, (h, w) = LANDSCAPE
    if tiny:
        h, w = h * 2 // 5 // 16 * 16, w * 2 // 5 // 16 * 16
    frames = media.read_video(dest / f"{src_id}.mp4")
    media.write_video(dest / f"{lid}.mp4", media.resize_to(frames, h, w, mode="pad"), 30.0)
    Image.fromarray(media.read_image(assets / REFERENCE)).save(dest / "ref.png")
    ids = [*VIDEOS, lid]
    rows, found = [], {}
    from dreamactor_jax.pose.keypoints import PoseClip
    from dreamactor_jax.pose.render import render_clip

    for vid in ids:  # keypoints at the video's own rate (tiny: 8 fps); preprocess resamples them
        _extract(dest / f"{vid}.mp4", dest / f"{vid}_pose.mp4", dest / f"{vid}.json", fps if tiny else None, None)
        clip = PoseClip.load(dest / f"{vid}.json")
        found[vid] = f"{len(clip) - clip.num_empty}/{len(clip)}"
        (dest / f"{vid}_pose.mp4").unlink()
        rows.append({"video": f"{vid}.mp4", "id": vid, "pose": f"{vid}.json"})
    (dest / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the driving pose video for sampling: the phone dance's skeletons at its rate (full: 127 frames at
    # 30 fps, two segments), drawn at its size as tools/extract_pose.py draws them
    clip = PoseClip.load(dest / "mtv.json")
    media.write_video(dest / "driver_pose.mp4", render_clip(clip), clip.fps)
    info = {"tiny": tiny, "ids": ids, "keypoints_fps": fps if tiny else "source", "person_found": found,
            "sizes": {vid: list(np.shape(media.read_video(dest / f"{vid}.mp4", num_frames=1))[1:3]) for vid in ids},
            "driver_frames": media.video_info(dest / "driver_pose.mp4").num_frames}
    (dest / "info.json").write_text(json.dumps(info, indent=1))
    return info


def write_text_file(path: Path, mcfg, ids: list[str], real: str | None = None) -> None:
    """A text embeddings file for `ids` + "prompt" at the backbone's widths: a copy of `real`, or random
    (seeded; the shapes of tools/encode_text.py's T2V output: 256 tokens, some valid) with a null prompt."""
    if real:
        shutil.copyfile(real, path)
        return
    import numpy as np

    from dreamactor_jax.text.store import TextEmbeddings, save_text_embeddings

    rng = np.random.default_rng(0)
    n, length = len(ids) + 1, 8 if mcfg.text_embed_dim <= 64 else 256

    def emb(rows: int, valid: int) -> TextEmbeddings:
        mask = np.zeros((rows, length), np.int32)
        mask[:, :valid] = 1
        return TextEmbeddings(rng.standard_normal((rows, length, mcfg.text_embed_dim)).astype(np.float32), mask,
                              rng.standard_normal((rows, mcfg.pooled_projection_dim)).astype(np.float32))
    save_text_embeddings(path, emb(n, max(2, length // 2)), [*ids, "prompt"], null=emb(1, 1),
                         prompts=["a person dances"] * n, meta={"text_source": {"random": n}})
