"""Animates a reference image with a driving video: `python launch/sample.py`.

    python launch/sample.py --checkpoint runs/pose --ref ref.png --driving dance.mp4 -o out.mp4
    python launch/sample.py --checkpoint runs/pose --ref ref.png --pose dance_kps.mp4 -o out.mp4
    python launch/sample.py --checkpoint runs/e2e  --ref ref.png --driving dance.mp4 -o out.mp4 \
        --prompt "In the video, a ..." --side-by-side compare.mp4

The motion signal follows the checkpoint's config: a pose checkpoint turns `--driving` into
rendered skeletons (every person found; `--retarget` gives them the reference's bone lengths) or
takes an already rendered `--pose` video; an end-to-end checkpoint takes the raw `--driving`
frames (`--raw` asks for that explicitly, and a pose checkpoint refuses it). `--checkpoint` is a training run (`launch/train.py --workdir`); the converted base and VAE
it was trained on are read from its config (or `--base` / `--vae`), and the adapter is merged once.
Without a usable checkpoint nothing is generated (never from random weights).

Videos longer than `--segment-frames` (121, about 5 s) are made in segments: the reference stays
in every segment and the last `--overlap` generated frames are clamped as the start of the next
(dreamactor_jax/sampling/long_video.py). The panel size keeps the reference's aspect ratio at
about 480x832 pixels unless `--height` / `--width` are given (multiples of 16). Text: `--prompt`
(needs the text encoders) or `--text-embeddings` from tools/encode_text.py; true classifier-free
guidance at `--guidance-scale` when the prompt is not empty. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    p.add_argument("--prompt", help="text guidance (encoded now; needs the text encoders)")
    p.add_argument("--text-embeddings", help="a tools/encode_text.py file (its prompt and null prompt)")
    p.add_argument("--text-id", help="which id of --text-embeddings (default: its only / first one)")
    p.add_argument("--text-mode", default="i2v", choices=("t2v", "i2v"), help="text encoder for --prompt")
    p.add_argument("--text-model-path", help="diffusers pipeline folder of the text encoders for --prompt")
    p.add_argument("--text-device", default="cpu", help="torch device of the text encoders")
    p.add_argument("--height", type=int, help="panel height (multiple of 16; default from the reference)")
    p.add_argument("--width", type=int, help="panel width (multiple of 16; default from the reference)")
    p.add_argument("--fit", default="crop", choices=("crop", "pad"), help="how inputs meet the panel size")
    p.add_argument("--frames", type=int, help="animate at most this many frames (default: the whole video)")
    p.add_argument("--fps", type=float, help="sample the driving video at this rate (default: training fps)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps per segment")
    p.add_argument("--guidance-scale", type=float, default=5.0,
                   help="true CFG on text (applied only with a non-empty prompt; 1 turns it off)")
    p.add_argument("--embedded-guidance", type=float, default=None,
                   help="guidance-distilled backbones only (default: the run's model.guidance)")
    p.add_argument("--shift", type=float, default=7.0, help="flow-matching time shift (HunyuanVideo: 7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--segment-frames", type=int, default=121, help="frames per segment (4k + 1)")
    p.add_argument("--overlap", type=int, default=5, help="frames carried into the next segment (4j + 1)")
    p.add_argument("--retarget", action="store_true", help="pose mode: the reference's bone lengths")
    p.add_argument("--raw", action="store_true",
                   help="--driving drives as raw frames, no pose extraction (end-to-end checkpoints only, their default)")
    p.add_argument("--pose-estimator", default="mediapipe", choices=("mediapipe", "dwpose"))
    p.add_argument("--det-model", help="DWPose detector ONNX (yolox_l.onnx)")
    p.add_argument("--pose-model", help="DWPose whole-body ONNX (dw-ll_ucoco_384.onnx)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: bfloat16 on GPU/TPU, float32 on CPU")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _check_file(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise FileNotFoundError(f"{flag} {path}: no such file")


def _text(args, ref, mcfg, train_cfg) -> tuple[dict, bool]:
    """(text cond, uses CFG) from --text-embeddings or --prompt (or the empty prompt)."""
    from dreamactor_jax.sampling.pipeline import text_cond

    guidance = None
    if mcfg.guidance_embeds:
        guidance = args.embedded_guidance
        if guidance is None:
            guidance = float((train_cfg.get("model") or {}).get("guidance", 1.0))
    if args.text_embeddings:
        from dreamactor_jax.text.store import load_text_embeddings

        f = load_text_embeddings(args.text_embeddings)
        tid = args.text_id or f["ids"][0]
        if tid not in f["index"]:
            raise ValueError(f"--text-id {tid}: not in {args.text_embeddings} (ids: {f['ids'][:5]})")
        emb, null = f["emb"].take(f["index"][tid]), f["null"]
        prompt = (f["prompts"] or [""] * len(f["ids"]))[f["index"][tid]]
        if null is None and args.guidance_scale != 1.0 and prompt:
            raise ValueError(f"--text-embeddings {args.text_embeddings}: holds no null prompt for CFG; "
                             "re-run tools/encode_text.py or pass --guidance-scale 1")
    else:
        try:
            from dreamactor_jax.text.embed import TextEncoderConfig, encode_texts

            kw = {"model_path": args.text_model_path} if args.text_model_path else {}
            tcfg = TextEncoderConfig(mode=args.text_mode, device=args.text_device, **kw)
            prompt = args.prompt or ""
            emb, null, _ = encode_texts(tcfg, [prompt], [ref] if args.text_mode == "i2v" else None, progress=False)
        except (ImportError, OSError) as e:
            raise ValueError(f"text encoders: cannot load them ({str(e).splitlines()[0][:160]}); pass "
                             "--text-embeddings FILE from tools/encode_text.py (--no-text for the empty prompt)") from None
    if emb.text.shape[-1] != mcfg.text_embed_dim:
        raise ValueError(f"text embeddings: width {emb.text.shape[-1]}, the backbone takes {mcfg.text_embed_dim}")
    cfg_on = bool(prompt) and args.guidance_scale != 1.0 and null is not None
    nul = (null.text, null.text_mask, null.pooled) if cfg_on else None
    return text_cond(emb.text, emb.text_mask, emb.pooled, null=nul, scale=args.guidance_scale,
                     guidance=guidance), cfg_on


def main(argv=None) -> int:
    args = parse_args(argv)
    for flag in ("--ref", "--driving", "--pose", "--text-embeddings"):
        _check_file(flag, getattr(args, flag[2:].replace("-", "_")))
    if Path(args.output).suffix.lower() != ".mp4":
        raise ValueError(f"--output {args.output}: expected an .mp4 path")
    if args.frames is not None and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")

    from dreamactor_jax.sampling import inputs, loading
    from dreamactor_jax.sampling.pipeline import Animator, SampleSettings

    settings = SampleSettings(steps=args.steps, shift=args.shift, seed=args.seed,
                              segment_frames=args.segment_frames, overlap=args.overlap)
    if not args.checkpoint:
        raise ValueError(f"--checkpoint: not given, and sampling never uses random weights; {loading.HOWTO}")
    train_cfg, _ = loading.read_config(args.checkpoint)
    variant = train_cfg.get("variant", "pose")
    if variant == "e2e" and args.pose:
        raise ValueError(f"--pose: checkpoint {args.checkpoint} was trained end-to-end on raw frames; pass --driving")
    if args.raw and variant != "e2e":
        raise ValueError(f"--raw: checkpoint {args.checkpoint} is a {variant} checkpoint, trained on rendered "
                         "skeletons; drop --raw to extract poses from --driving, or use an end-to-end checkpoint")

    # ---------------- inputs (cheap, checked before the weights are read) ----------------
    from dreamactor_jax import media

    ref_full = inputs.read_reference(args.ref)
    h, w = inputs.choose_size(*ref_full.shape[:2], args.height, args.width)
    ref = media.resize_to(ref_full, h, w, mode=args.fit)
    fps = args.fps or float((train_cfg.get("preprocess") or {}).get("fps") or 0) or None
    flag, path = ("--pose", args.pose) if args.pose else ("--driving", args.driving)
    frames, fps = inputs.read_motion(path, h, w, fps=fps, max_frames=args.frames, fit=args.fit, what=flag)
    driving = frames if args.driving else None
    if args.pose:
        inputs.check_pose_video(frames, f"--pose {path}")
        motion = frames
    elif variant == "e2e":
        motion = frames
    else:
        est = inputs.make_pose_estimator(args.pose_estimator, det_model=args.det_model, pose_model=args.pose_model)
        ref_est = inputs.make_pose_estimator(args.pose_estimator, det_model=args.det_model,
                                             pose_model=args.pose_model, video=False) if args.retarget else None
        motion, st = inputs.pose_from_video(frames, est, what=f"--driving {path}",
                                            reference=ref if args.retarget else None, ref_estimator=ref_est, fps=fps)
        print(f"poses: person found in {st['frames'] - st['empty']}/{st['frames']} frames, up to "
              f"{st['people']} per frame{', retargeted' if st['retargeted'] else ''}", file=sys.stderr)

    # ---------------- weights, text ----------------
    t0 = time.time()
    run = loading.load(args.checkpoint, base=args.base, vae=args.vae, dtype=args.dtype)
    text, cfg_on = _text(args, ref, run.mcfg, run.config)
    print(f"loaded step {run.step} of {args.checkpoint} ({run.variant}) on {run.base} + {run.vae} in "
          f"{time.time() - t0:.0f} s; {h}x{w} per panel, {len(motion)} frames at {fps:g} fps, "
          f"CFG {'x%g' % args.guidance_scale if cfg_on else 'off'}", file=sys.stderr)

    # ---------------- sampling ----------------
    from tqdm import tqdm

    from dreamactor_jax.models import vae
    from dreamactor_jax.sampling.velocity import InContextVelocity

    animator = Animator(
        InContextVelocity(run.mcfg, true_cfg=cfg_on), run.params,
        lambda x: vae.encode_latents(run.vparams, run.vcfg, x),
        lambda z: vae.decode_latents(run.vparams, run.vcfg, z), text, settings)
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
