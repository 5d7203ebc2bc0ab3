"""A web page for character animation: `python launch/app.py` (needs the `app` extra: pip install -e ".[app]").

    python launch/app.py                                   # the shipped toy model, http://127.0.0.1:7860
    python launch/app.py --checkpoint runs/pose --text-embeddings prompt.safetensors --port 8080

Pick (or upload) a reference image and a driving video, choose the checkpoint (the shipped toy model
by default: its pose adapter, or FOLDER/ADAPTER for another adapter of a packed run), and press
Animate: the page shows the progress of the denoising steps, then the result next to its inputs
(reference | driving | result), and offers the generated video for download. It samples exactly as
launch/sample.py does (`sampling.loading`, `sampling.pipeline.Animator`), one request at a time.

A pose checkpoint takes a rendered skeleton video as it is and estimates poses from any other video
(mediapipe); an end-to-end checkpoint takes the raw frames. Checkpoints other than packed runs need
their text condition as a tools/encode_text.py file (`--text-embeddings`). The page listens on
127.0.0.1 unless --host says otherwise; it makes no outside connections.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

DISPLAY_MIN = 256  # small panels (the toy's 32x32) are shown enlarged, by whole pixels


def toy_examples() -> list[tuple[str, str, str]]:
    """(reference, pose video, RGB driving video) of each example case shipped with the toy model."""
    from dreamactor_jax.toy.shipped import SHIPPED

    out = []
    for case in sorted((SHIPPED / "examples").glob("case*")):
        files = [case / "ref.png", case / "pose.mp4", case / "driving.mp4"]
        if all(f.is_file() for f in files):
            out.append(tuple(str(f) for f in files))
    return out


def enlarge(frames: np.ndarray) -> np.ndarray:
    """Whole-pixel (nearest) enlargement so the shorter side is at least DISPLAY_MIN, even sizes."""
    k = max(1, -(-DISPLAY_MIN // min(frames.shape[-3:-1])))
    return np.kron(frames, np.ones((1,) * (frames.ndim - 3) + (k, k, 1), np.uint8))


class Animate:
    """Loads checkpoints once (cached by path) and animates a (reference, driving video) pair."""

    def __init__(self, text_embeddings: str | None = None, workdir: str | None = None):
        self.runs: dict[str, object] = {}
        self.text_embeddings = text_embeddings
        self.lock = threading.Lock()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dreamactor_app_"))

    def _run(self, checkpoint: str):
        from dreamactor_jax.sampling import loading

        if checkpoint not in self.runs:
            self.runs[checkpoint] = loading.load(checkpoint)
        return self.runs[checkpoint]

    def _text(self, run):
        if getattr(run, "text", None) is not None:
            return run.text
        if not self.text_embeddings:
            raise ValueError("this checkpoint needs a text condition: start the page with --text-embeddings FILE "
                             "(tools/encode_text.py)")
        from dreamactor_jax.sampling.pipeline import text_cond
        from dreamactor_jax.text.store import load_text_embeddings

        f = load_text_embeddings(self.text_embeddings)
        emb = f["emb"].take(f["index"][f["ids"][0]])
        return text_cond(emb.text, emb.text_mask, emb.pooled)

    def __call__(self, ref_path: str | None, drive_path: str | None, checkpoint: str, steps: int, seed: int = 0,
                 progress=None) -> tuple[str, str]:
        """Returns (side-by-side mp4 for the page, the generated mp4 for download)."""
        from dreamactor_jax import media
        from dreamactor_jax.api import make_animator
        from dreamactor_jax.pose.extract import looks_like_pose_video
        from dreamactor_jax.sampling import inputs, loading

        if not ref_path:
            raise ValueError("reference: pick or upload an image")
        if not drive_path:
            raise ValueError("driving video: pick or upload a video")
        checkpoint = (checkpoint or "").strip()
        if not checkpoint:
            raise ValueError("checkpoint: give a packed run or training run folder")
        cfg, _ = loading.read_config(checkpoint)
        sampling = cfg.get("sampling") or {}
        ref_full = inputs.read_reference(ref_path)
        h, w = inputs.choose_size(*ref_full.shape[:2], sampling.get("height"), sampling.get("width"))
        ref = media.resize_to(ref_full, h, w)
        rate = (cfg.get("preprocess") or {}).get("fps") or None
        frames, fps, _, _ = inputs.read_motion(drive_path, h, w, fps=rate)
        if cfg.get("variant") == "e2e" or looks_like_pose_video(frames):
            motion = frames
        else:  # poses estimated on the whole source frames, then mapped into the panel
            _, _, _, clip = inputs.read_motion(drive_path, h, w, fps=rate,
                                               estimator=inputs.make_pose_estimator("mediapipe"))
            motion, _ = inputs.pose_from_clip(clip, what="driving video")
        with self.lock:  # one animation at a time: the model and the accelerator are shared
            run = self._run(checkpoint)
            animator = make_animator(run, text=self._text(run), steps=int(steps), seed=int(seed))
            total = len(animator.plan(len(motion))) * animator.settings.steps
            done = [0]

            def on_step(seg, step):
                done[0] += 1
                if progress is not None:
                    progress((done[0], total), desc=f"denoising step {done[0]}/{total}")
            video, _ = animator.animate(ref, motion, on_step=on_step)
        out = Path(tempfile.mkdtemp(dir=self.workdir))
        result, side = out / "result.mp4", out / "side_by_side.mp4"
        media.write_video(result, enlarge(video), fps)
        panels = [ref, frames] + ([motion] if motion is not frames else []) + [video]
        media.write_video(side, enlarge(inputs.side_by_side(panels)), fps)
        return str(side), str(result)


def build(default_checkpoint: str, text_embeddings: str | None = None):
    """The Gradio page (a `gr.Blocks`)."""
    import gradio as gr

    animate = Animate(text_embeddings)
    examples = toy_examples()
    choices = [default_checkpoint]
    from dreamactor_jax.sampling import packed
    if packed.is_packed(default_checkpoint):
        folder, _ = packed.resolve(default_checkpoint)
        info = packed.read_info(folder)
        choices = [str(folder)] + [f"{folder}/{n}" for n in info["adapters"] if n != info["default_adapter"]]

    def run(ref, drive, ckpt, steps, seed, progress=gr.Progress()):
        try:
            side, result = animate(ref, drive, ckpt, steps, seed, progress=progress)
        except (ValueError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None
        return side, result, f"done: {Path(result).name}"

    with gr.Blocks(title="DreamActor-JAX: animate a character") as page:
        gr.Markdown("## Animate a character\nA reference image and a driving video in, the character performing "
                    "the motion out (launch/sample.py's sampler). The default checkpoint is the toy model shipped "
                    "with the package (32x32 toy characters; its pose adapter takes a skeleton video).")
        with gr.Row():
            ref = gr.Image(label="reference image", type="filepath", format="png", height=256,
                           elem_id="reference")
            drive = gr.File(label="driving video (skeleton video for a pose checkpoint)", file_types=["video"],
                            elem_id="driving")
        with gr.Row():
            ckpt = gr.Dropdown(choices=choices, value=choices[0], allow_custom_value=True, label="checkpoint",
                               elem_id="checkpoint")
            steps = gr.Slider(1, 100, value=30, step=1, label="denoising steps", elem_id="steps")
            seed = gr.Number(value=0, precision=0, label="seed", elem_id="seed")
        button = gr.Button("Animate", variant="primary", elem_id="animate")
        status = gr.Textbox(label="status", interactive=False, elem_id="status")
        side = gr.Video(label="reference | driving | result", elem_id="result")
        download = gr.File(label="generated video", elem_id="download")
        if examples:
            gr.Examples([[r, p] for r, p, _ in examples], inputs=[ref, drive], label="toy examples (reference, skeleton video)")
            gr.Examples([[r, d] for r, _, d in examples], inputs=[ref, drive],
                        label="toy examples (reference, RGB driving video: for an end-to-end adapter)")
        button.click(run, [ref, drive, ckpt, steps, seed], [side, download, status], concurrency_limit=1)
    return page


def main(argv=None) -> int:
    from dreamactor_jax.toy.shipped import SHIPPED

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(SHIPPED), help="default checkpoint (default: the shipped toy model)")
    ap.add_argument("--text-embeddings", help="tools/encode_text.py file, for checkpoints without a stored text condition")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    a = ap.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError('the web page needs gradio: pip install -e ".[app]"') from None
    from dreamactor_jax.sampling import loading

    loading.read_config(a.checkpoint)  # a bad default checkpoint fails here, not at the first click
    build(a.checkpoint, a.text_embeddings).queue().launch(server_name=a.host, server_port=a.port, share=False,
                                                          inbrowser=False, show_error=True)
    return 0


if __name__ == "__main__":
    from dreamactor_jax.utils import cli_main

    cli_main(main)
