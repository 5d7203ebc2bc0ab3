"""Turns a video (or an image) into an OpenPose-style pose video (or image) and keypoints JSON.

    python tools/extract_pose.py dance.mp4 -o dance_pose.mp4 --json dance_pose.json
    python tools/extract_pose.py dance.mp4 -o pose.mp4 --estimator dwpose \
        --det-model yolox_l.onnx --pose-model dw-ll_ucoco_384.onnx
    python tools/extract_pose.py ref.png -o ref_pose.png --json ref_pose.json
    python tools/extract_pose.py anyone-video-2_kps.mp4 -o pose.mp4   # already a pose video: copied
    python tools/extract_pose.py driving.mp4 -o pose.mp4 --retarget ref.png  # the ref's bone lengths

Frames are streamed (read, estimated, drawn, encoded one at a time), so a long video is never
held in memory; only the keypoints are. The summary line says in how many frames nobody was
found; when nobody is found in any frame of a video it is an error and nothing is written (an
image without anyone, e.g. a non-human reference, still gives its empty pose image, and says so).
A video's output must end in .mp4, an image's in an image suffix, the keypoints' in .json. An input that already looks like a rendered pose video (`--input-kind auto`, the default)
is passed through re-encoded, without keypoints. `--retarget REF` rescales the driving skeleton's
bones to those found on the reference image (dreamactor_jax.pose.retarget); the keypoints are then
all extracted before drawing (they are small; frames are still streamed). Outputs are written
atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="a video (mp4, ...) or an image")
    p.add_argument("-o", "--output", required=True, help="pose video (.mp4) or pose image (.png)")
    p.add_argument("--json", help="where to write the keypoints (PoseClip JSON)")
    p.add_argument("--estimator", default="mediapipe", choices=("mediapipe", "dwpose"))
    p.add_argument("--det-model", help="DWPose detector ONNX (yolox_l.onnx)")
    p.add_argument("--pose-model", help="DWPose whole-body ONNX (dw-ll_ucoco_384.onnx)")
    p.add_argument("--input-kind", default="auto", choices=("auto", "video", "pose"),
                   help="pose: the input is already a rendered pose video (copied); auto: detect it")
    p.add_argument("--fps", type=float, help="sample the video at this fps (default: its own)")
    p.add_argument("--num-frames", type=int, help="keep only this many frames")
    p.add_argument("--no-hands", action="store_true")
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--no-tracking", action="store_true",
                   help="MediaPipe: treat every frame as a still image (no tracking between frames)")
    p.add_argument("--retarget", metavar="REF_IMAGE",
                   help="give the driving skeleton the bone lengths of the person on this image")
    p.add_argument("--retarget-lengths", default="median", choices=("median", "first"),
                   help="measure the driving bones on the first frame or as the clip median")
    p.add_argument("--keep-size", action="store_true",
                   help="retarget proportions only, keep the driving figure's overall size")
    p.add_argument("--anchor", default="driving", choices=("driving", "reference"),
                   help="retarget: keep the driving neck path, or start it at the reference's neck")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _estimator(args, video: bool):
    from dreamactor_jax.pose.extract import make_estimator  # noqa: PLC0415

    if args.estimator == "dwpose":
        return make_estimator("dwpose", det_model=args.det_model, pose_model=args.pose_model)
    return make_estimator("mediapipe", video=video and not args.no_tracking)


def _summary(clip) -> str:
    n, empty = len(clip), clip.num_empty
    people = max((f.num_people for f in clip.frames), default=0)
    hands = sum(int((f.hands[..., 2] > 0).any(-1).sum()) for f in clip.frames)
    faces = sum(int((f.face[..., 2] > 0).any(-1).sum()) for f in clip.frames)
    return (f"person found in {n - empty}/{n} frames ({empty} with nobody), at most {people} per frame; "
            f"{hands} hands and {faces} faces in all")


def run_image(args) -> int:
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from dreamactor_jax.media import read_image  # noqa: PLC0415
    from dreamactor_jax.pose import PoseClip, render_pose  # noqa: PLC0415
    from dreamactor_jax.utils import atomic_path  # noqa: PLC0415

    image = read_image(args.input)
    h, w = image.shape[:2]
    est = _estimator(args, video=False)
    pose = est(image)
    clip = PoseClip([pose], w, h)
    out = render_pose(pose, h, w, draw_hands=not args.no_hands, draw_face=not args.no_face)
    with atomic_path(args.output) as tmp:
        Image.fromarray(np.asarray(out)).save(tmp, format=Image.registered_extensions().get(
            Path(args.output).suffix.lower(), "PNG"))
    if args.json:
        clip.save(args.json)
    print(f"{args.input}: {_summary(clip)}; wrote {args.output}" + (f" and {args.json}" if args.json else ""))
    return 0


def _reference_pose(args):
    """The reference image's first person, with the image's width and height."""
    from dreamactor_jax.media import read_image  # noqa: PLC0415

    image = read_image(args.retarget)
    est = _estimator(args, video=False)
    try:
        pose = est(image)
    finally:
        close = getattr(est, "close", None)
        if close:
            close()
    if pose.num_people == 0:
        raise ValueError(f"{args.retarget}: no person found on the reference image; cannot retarget")
    return pose, image.shape[1], image.shape[0]


def run_video(args) -> int:
    from tqdm import tqdm  # noqa: PLC0415

    from dreamactor_jax.media import iter_frames, video_info, write_video  # noqa: PLC0415
    from dreamactor_jax.pose import PoseClip, render_pose  # noqa: PLC0415
    from dreamactor_jax.pose.extract import ExtractStats, extract_frames, looks_like_pose_video  # noqa: PLC0415

    info = video_info(args.input)
    fps = args.fps or info.fps
    if not fps or fps <= 0:
        raise ValueError(f"{args.input}: unknown frame rate; pass --fps")
    sampling = dict(fps=args.fps, num_frames=args.num_frames, min_frames=2)
    total = args.num_frames or (round(info.duration * fps) if info.duration else None)
    kind = args.input_kind
    if kind == "auto" and args.retarget:
        kind = "video"
    if kind == "auto":
        first = list(iter_frames(args.input, num_frames=min(8, max(info.num_frames, 2))))
        kind = "pose" if looks_like_pose_video(first) else "video"
    frames = tqdm(iter_frames(args.input, **sampling), total=total, unit="frame", disable=args.quiet,
                  desc=Path(args.input).name, file=sys.stderr)
    if kind == "pose":
        if args.retarget or args.json:
            raise ValueError(f"{args.input}: a rendered pose video has no keypoints to retarget or save; "
                             "use --input-kind video to run the estimator on it anyway")
        n = [0]

        def passthrough():
            for f in frames:
                n[0] += 1
                yield f
        write_video(args.output, passthrough(), fps)
        print(f"{args.input}: already a pose video; copied {n[0]} frames to {args.output} (no keypoints)")
        return 0

    ref = _reference_pose(args) if args.retarget else None
    est = _estimator(args, video=True)
    stats, poses, size = ExtractStats(), [], []

    def draw(pose):
        return render_pose(pose, size[0], size[1], draw_hands=not args.no_hands, draw_face=not args.no_face)

    def extracted():
        for frame in frames:
            if not size:
                size.extend(frame.shape[:2])
            (pose,) = extract_frames([frame], est, stats)
            poses.append(pose)
            yield pose
        if stats.num_frames and stats.num_empty == stats.num_frames:  # before the output is renamed into place
            raise ValueError(f"{args.input}: no person found in any of its {stats.num_frames} frames; "
                             "nothing written (a rendered pose video? --input-kind pose copies it)")
    try:
        if ref is None:
            write_video(args.output, (draw(p) for p in extracted()), fps)
        else:
            for _ in extracted():
                pass
    finally:
        close = getattr(est, "close", None)
        if close:
            close()
    if ref is not None:
        from dreamactor_jax.pose.retarget import retarget_clip  # noqa: PLC0415

        driving = PoseClip(poses, size[1], size[0], fps)
        if driving.num_empty == len(driving):
            raise ValueError(f"{args.input}: nobody found in any frame; nothing to retarget")
        clip, factors = retarget_clip(driving, *ref, lengths=args.retarget_lengths,
                                      keep_size=args.keep_size, anchor=args.anchor)
        write_video(args.output, (draw(p) for p in clip.frames), fps)
        print(f"retargeted to {args.retarget}: arm x{factors.body[2:6].mean():.2f}, "
              f"leg x{factors.body[[7, 8, 10, 11]].mean():.2f}, torso x{factors.body[[0, 1, 6, 9]].mean():.2f}")
        poses = list(clip.frames)
    clip = PoseClip(poses, size[1], size[0], fps)
    if args.json:
        clip.save(args.json)
    print(f"{args.input}: {_summary(clip)}; wrote {args.output}" + (f" and {args.json}" if args.json else ""))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file")
    if args.num_frames is not None and args.num_frames < 2:
        raise ValueError(f"--num-frames must be at least 2, got {args.num_frames}")
    image = src.suffix.lower() in IMAGE_SUFFIXES
    out = Path(args.output).suffix.lower()
    if image and out not in IMAGE_SUFFIXES:
        raise ValueError(f"-o {args.output}: the input is an image, so the output is one "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not image and out != ".mp4":
        raise ValueError(f"-o {args.output}: the input is a video, so the output is an .mp4")
    if args.json and Path(args.json).suffix.lower() != ".json":
        raise ValueError(f"--json {args.json}: expected a .json path")
    if Path(args.output).resolve() == src.resolve():
        raise ValueError(f"-o {args.output}: is the input; choose another output path")
    return run_image(args) if image else run_video(args)


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
