"""Animates a reference image with a driving video: `python launch/sample.py`.

    python launch/sample.py --checkpoint runs/pose --ref ref.png --driving dance.mp4 -o out.mp4
    python launch/sample.py --checkpoint runs/pose --ref ref.png --pose dance_kps.mp4 -o out.mp4
    python launch/sample.py --checkpoint runs/e2e  --ref ref.png --driving dance.mp4 -o out.mp4 \
        --prompt "In the video, a ..." --side-by-side compare.mp4

The motion signal and the in-context layout follow the checkpoint's config. Layout: its
`objective.layout`, spatial (the paper's side-by-side canvas; runs from before the setting) or
temporal (the reference as a leading frame). Motion: a pose checkpoint turns `--driving` into
rendered skeletons (poses estimated on the whole source frames, every person found; `--retarget`
gives them the reference's bone lengths) or takes an already rendered `--pose` video; an
end-to-end checkpoint takes the raw `--driving` frames (`--raw` asks for that explicitly, and a pose
checkpoint refuses it). `--checkpoint` is a training run
(`launch/train.py --workdir`); the converted base and VAE it was trained on are read from its config
(or `--base` / `--vae`), checked before any input is read, and the adapter is merged once. It can
also be a packed run (`dreamactor_jax/sampling/packed.py`: base, adapters, autoencoder kind and
sampling defaults in one folder), e.g. the shipped toy model:

    python launch/sample.py --checkpoint dreamactor_jax/toy/pretrained --ref dreamactor_jax/toy/pretrained/examples/case0/ref.png \
        --pose dreamactor_jax/toy/pretrained/examples/case0/pose.mp4 -o toy.mp4     # FOLDER/e2e: --driving RGB video

Without a usable checkpoint nothing is generated (never from random weights).

Videos longer than `--segment-frames` (121, about 5 s) are made in segments: the reference stays
in every segment and the last `--overlap` generated frames are clamped as the start of the next
(dreamactor_jax/sampling/long_video.py). The panel size keeps the reference's aspect ratio at
the training panel's area (about 480x832 pixels for configs/pose.py) unless `--height` / `--width` are given (multiples of 16); a driving video of
the other orientation is padded into it (`--fit` to choose). The VAE runs tiled, the tiles sized
from the free memory (`--vae-tiling`).

Text: `--text-embeddings` from tools/encode_text.py, `--prompt` (encoded now with the local text
encoders; never downloaded here), or `--no-text` (the zero text, no encoder needed); with none of
them, the empty prompt through the local encoders. True classifier-free guidance at
`--guidance-scale` when the prompt is not empty. A backbone with image tokens (HunyuanVideo-1.5) gets
the reference's SigLIP tokens in both guidance branches (`--image-encoder`, a local folder), or zero
tokens with `--zero-image-embeds`. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# Used where neither the command line nor a packed run's `sampling` says otherwise (HunyuanVideo I2V).
SAMPLING_DEFAULTS = {"steps": 50, "shift": 7.0, "segment_frames": 121, "overlap": 5}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", required=True, help="the character image")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--driving", help="driving video (poses extracted, or raw frames for an e2e checkpoint)")
    src.add_argument("--pose", help="an already rendered skeleton video (pose checkpoints)")
    p.add_argument("-o", "--output", required=True, help="the generated video (.mp4)")
    p.add_argument("--side-by-side", help="also write reference | driving | pose | result here (.mp4)")
    p.add_argument("--checkpoint", help="training run folder (launch/train.py --workdir) or a step in it")
    p.add_argument("--base", help="converted backbone folder (default: the run's base_checkpoint)")
    p.add_argument("--vae", help="converted VAE folder (default: the run's preprocess.vae_checkpoint)")
    txt = p.add_mutually_exclusive_group()
    txt.add_argument("--prompt", help="text guidance (encoded now; needs the text encoders on this machine)")
    txt.add_argument("--text-embeddings", help="a tools/encode_text.py file (its prompt and null prompt)")
    txt.add_argument("--no-text", action="store_true", help="no text: the zero text, no text encoder needed")
    p.add_argument("--text-id", help="which id of --text-embeddings (default: its only / first one)")
    p.add_argument("--text-mode", default="i2v", choices=("t2v", "i2v"), help="text encoder for --prompt")
    p.add_argument("--text-model-path", help="diffusers pipeline folder of the backbone's text encoders (default "
                   "for HunyuanVideo: the Hugging Face cache of hunyuanvideo-community/HunyuanVideo[-I2V] by "
                   "--text-mode; HunyuanVideo-1.5: required, its Qwen2.5-VL + ByT5 folders)")
    p.add_argument("--text-device", default="cpu", help="torch device of the text encoders")
    p.add_argument("--image-encoder", help="backbones with image tokens (HunyuanVideo-1.5): local SigLIP folder "
                   "(or the I2V pipeline folder) for the reference's image tokens")
    p.add_argument("--zero-image-embeds", action="store_true", help="backbones with image tokens: zero image "
                   "tokens instead (text-to-video conditioning, no image encoder needed)")
    p.add_argument("--height", type=int, help="panel height (multiple of 16; default from the reference)")
    p.add_argument("--width", type=int, help="panel width (multiple of 16; default from the reference)")
    p.add_argument("--fit", choices=("crop", "pad"), help="how inputs meet the panel (default: crop; a "
                   "driving video of the other orientation: pad)")
    p.add_argument("--frames", type=int, help="animate at most this many frames (default: the whole video)")
    p.add_argument("--fps", type=float, help="sample the driving video at this rate (default: training fps)")
    p.add_argument("--steps", type=int, help="denoising steps per segment (default: the checkpoint's, else 50)")
    p.add_argument("--step-cache", type=float, default=0.0,
                   help="first-block step cache threshold (sampling.step_cache; 0 = off, the default; "
                        "0.05 skipped 1/6 of the toy model's steps at 55.7 dB against uncached, docs/benchmarks.md)")
    p.add_argument("--guidance-scale", type=float, default=5.0,
                   help="true CFG on text (applied only with a non-empty prompt; 1 turns it off)")
    p.add_argument("--embedded-guidance", type=float, default=None,
                   help="guidance-distilled backbones only (default: the run's model.guidance)")
    p.add_argument("--shift", type=float, help="flow-matching time shift (default: the checkpoint's, else 7 as HunyuanVideo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segment-frames", type=int, help="frames per segment (4k + 1; default: the checkpoint's, else 121)")
    p.add_argument("--overlap", type=int, help="frames carried into the next segment (4j + 1; default: the checkpoint's, else 5)")
    p.add_argument("--retarget", action="store_true", help="pose mode: the reference's bone lengths")
    p.add_argument("--raw", action="store_true",
                   help="--driving drives as raw frames, no pose extraction (end-to-end checkpoints only, their default)")
    p.add_argument("--pose-estimator", default="mediapipe", choices=("mediapipe", "dwpose"))
    p.add_argument("--det-model", help="DWPose detector ONNX (yolox_l.onnx)")
    p.add_argument("--pose-model", help="DWPose whole-body ONNX (dw-ll_ucoco_384.onnx)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: bfloat16 on GPU/TPU, float32 on CPU")
    p.add_argument("--vae-tiling", default="auto", help="auto (from free memory), framewise, pipeline, off, "
                   "or a spatial tile side in pixels")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _check_paths(args) -> None:
    for flag in ("--ref", "--driving", "--pose", "--text-embeddings"):
        path = getattr(args, flag[2:].replace("-", "_"))
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")
    ins = {Path(p).resolve() for p in (args.ref, args.driving, args.pose) if p}
    for flag, path in (("--output", args.output), ("--side-by-side", args.side_by_side)):
        if path is None:
            continue
        if Path(path).suffix.lower() != ".mp4":
            raise ValueError(f"{flag} {path}: expected an .mp4 path")
        if Path(path).resolve() in ins:
            raise ValueError(f"{flag} {path}: is one of the inputs; choose another output path")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    from dreamactor_jax.models.vae_tiling import TILING_CHOICES, resolve_tiling

    if args.vae_tiling not in TILING_CHOICES:
        resolve_tiling(args.vae_tiling, [])  # a tile side: checked now, not after loading the weights


def _motion(args, plan, h, w, ref, fps):
    """(motion frames for the model, the driving frames or None, fps, a note) in the panel."""
    from dreamactor_jax.sampling import inputs

    flag, path = ("--pose", args.pose) if args.pose else ("--driving", args.driving)
    inputs.motion_info(path, flag)  # a still image or an unreadable file: before the pose model loads
    est = None
    if args.driving and plan.variant != "e2e":
        est = inputs.make_pose_estimator(args.pose_estimator, det_model=args.det_model, pose_model=args.pose_model)
    frames, fps, _, clip = inputs.read_motion(path, h, w, fps=fps, max_frames=args.frames, fit=args.fit,
                                              what=flag, estimator=est)
    if args.pose:
        inputs.check_pose_video(frames, f"--pose {path}")
        return frames, None, fps, ""
    if plan.variant == "e2e":
        return frames, frames, fps, ""
    ref_est = None
    if args.retarget:
        ref_est = inputs.make_pose_estimator(args.pose_estimator, det_model=args.det_model,
                                             pose_model=args.pose_model, video=False)
    motion, st = inputs.pose_from_clip(clip, what=f"--driving {path}", reference=ref if args.retarget else None,
                                       ref_estimator=ref_est)
    note = (f"poses: person found in {st['frames'] - st['empty']}/{st['frames']} frames, up to "
            f"{st['people']} per frame{', retargeted' if st['retargeted'] else ''}")
    return motion, frames, fps, note


def main(argv=None) -> int:
    args = parse_args(argv)
    _check_paths(args)

    from dreamactor_jax.sampling import inputs, loading
    from dreamactor_jax.sampling.pipeline import Animator, SampleSettings
    from dreamactor_jax.sampling.text_choice import TextSpec

    # ---------------- what will be loaded, and the text: checked before any slow work ----------------
    plan = loading.check(args.checkpoint, base=args.base, vae=args.vae, dtype=args.dtype)
    for k, v in {**SAMPLING_DEFAULTS, **(plan.config.get("sampling") or {})}.items():  # a packed run's defaults
        if k in SAMPLING_DEFAULTS or k in ("height", "width"):
            setattr(args, k, v if getattr(args, k) is None else getattr(args, k))
    settings = SampleSettings(steps=args.steps, shift=args.shift, seed=args.seed,
                              segment_frames=args.segment_frames, overlap=args.overlap, step_cache=args.step_cache,
                              layout=loading.layout_of(plan.config))  # the in-context layout the run trained with
    if plan.variant == "e2e" and args.pose:
        raise ValueError(f"--pose: checkpoint {args.checkpoint} was trained end-to-end on raw frames; pass --driving")
    if args.raw and plan.variant != "e2e":
        raise ValueError(f"--raw: checkpoint {args.checkpoint} is a {plan.variant} checkpoint, trained on rendered "
                         "skeletons; drop --raw to extract poses from --driving, or use an end-to-end checkpoint")
    packed_text = plan.config.get("packed") and not (args.prompt or args.text_embeddings or args.no_text)
    text_spec = TextSpec.from_args(args)
    text_source = None if packed_text else text_spec.source(plan.mcfg)  # a packed run may carry a fixed text
    from dreamactor_jax.text.hv15 import image_token_fn  # the image stream, when the backbone has one

    image_tokens = image_token_fn(plan.mcfg.image_embed_dim, args.image_encoder, zero=args.zero_image_embeds,
                                  device=args.text_device, flag="--image-encoder", zero_flag="--zero-image-embeds")

    # ---------------- inputs ----------------
    from dreamactor_jax import media

    ref_full = inputs.read_reference(args.ref)
    pre = plan.config.get("preprocess") or {}
    area = int(pre.get("height") or 480) * int(pre.get("width") or 832)  # the training panel's area
    h, w = inputs.choose_size(*ref_full.shape[:2], args.height, args.width, area=area)
    ref = media.resize_to(ref_full, h, w, mode=args.fit or "crop")
    fps = args.fps or float(pre.get("fps") or 0) or None
    motion, driving, fps, note = _motion(args, plan, h, w, ref, fps)
    if note:
        print(note, file=sys.stderr)

    # ---------------- weights, text, VAE tiling ----------------
    from dreamactor_jax.models.vae_tiling import resolve_tiling

    t0 = time.time()
    run = loading.load(args.checkpoint, plan=plan)
    if packed_text and getattr(run, "text", None) is not None:
        text, cfg_on, text_what = run.text, False, "the packed run's fixed text"  # e.g. the toy model's
    else:
        text, cfg_on, text_what = text_spec.condition(text_source or text_spec.source(run.mcfg), ref, run.mcfg, run.config)
    tiling, tiling_line = None, f"autoencoder {run.vae}"
    if run.vcfg is not None:
        seg = min(settings.segment_frames, 4 * ((len(motion) + 2) // 4) + 1)
        canvas_w = 2 * w if settings.layout == "spatial" else w  # temporal: the reference is a frame, not a panel
        tiling, tiling_line = resolve_tiling(args.vae_tiling, [("encode", seg, h, canvas_w), ("decode", seg, h, w)],
                                             base_channels=run.vcfg.block_out_channels[0], dtype=run.vcfg.dtype,
                                             framewise=run.vcfg.tiling.framewise_encode)
    encode, decode = loading.codec(run, tiling)
    print(f"loaded step {run.step} of {args.checkpoint} ({run.variant}) on {run.base} + {run.vae} in "
          f"{time.time() - t0:.0f} s; {h}x{w} per panel, {len(motion)} frames at {fps:g} fps, "
          f"{settings.layout} in-context layout, text: {text_what}, "
          f"CFG {'x%g' % args.guidance_scale if cfg_on else 'off'}; {tiling_line}", file=sys.stderr)

    # ---------------- sampling ----------------
    from tqdm import tqdm

    from dreamactor_jax.sampling.velocity import InContextVelocity

    animator = Animator(
        InContextVelocity(run.mcfg, true_cfg=cfg_on), run.params,
        encode, decode, text, settings, image_tokens=image_tokens)
    segments = animator.plan(len(motion))
    bar = tqdm(total=len(segments) * settings.steps, unit="step", disable=args.quiet, file=sys.stderr,
               desc=f"{len(segments)} segment(s)")

    def on_step(seg, step):
        bar.set_description(f"segment {seg + 1}/{len(segments)}")
        bar.update(1)
    t0 = time.time()
    video, _ = animator.animate(ref, motion, on_step=on_step)
    bar.close()

    # ---------------- outputs ----------------
    media.write_video(args.output, video, fps)
    if args.side_by_side:
        panels = [ref] + ([driving] if driving is not None else []) + ([motion] if motion is not driving else []) + [video]
        media.write_video(args.side_by_side, inputs.side_by_side(panels), fps)
    seams = ""
    if len(segments) > 1:
        from dreamactor_jax.sampling.long_video import boundary_continuity

        c = boundary_continuity(video, segments)
        seams = f"; seams: boundary change {c['ratio']:.2f}x the median change between frames"
    print(f"wrote {args.output} ({len(video)} frames, {h}x{w}, {len(segments)} segment(s), "
          f"{time.time() - t0:.0f} s{seams})" + (f" and {args.side_by_side}" if args.side_by_side else ""))
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
