"""The judge's prompts: one per Video-Bench dimension, written for character animation.

The paper (sec. 4.1, appendix D) scores every video on six dimensions, 1 (very poor) to 5
(excellent), with Video-Bench's MLLM pipeline. These prompts are this project's own wording of
those six criteria (not Video-Bench's text), aimed at animated characters (people, cartoons,
animals, objects with limbs) rather than text-to-video scenes. `PROMPT_VERSION` is part of every
cache key: change it whenever a prompt, the frame sampling or the answer format changes.

Each request holds: the system text (`SYSTEM`), the dimension's criteria (`criteria`), the frames
(static frames, or rows of eight consecutive frames: `frames.judge_frames`), for subject
consistency the reference image when there is one, and the answer format (`ANSWER_FORMAT`): a JSON
object {"score": 1..5, "reason": "..."}.
"""

from __future__ import annotations

PROMPT_VERSION = "prompts-v1"

GRADES = {1: "very poor", 2: "poor", 3: "moderate", 4: "good", 5: "excellent"}

SYSTEM = (
    "You are a strict, consistent rater of generated character-animation videos. A model animated a "
    "character (a person, a cartoon, an animal or an object with limbs) so that it performs a motion. "
    "You rate ONE quality dimension at a time, on a 1-5 scale: 1 very poor, 2 poor, 3 moderate, "
    "4 good, 5 excellent. Judge only the dimension you are asked about; ignore the others. Use the "
    "whole scale: give 5 only when you see no flaw of that kind, and 1 when the flaw dominates.")

# dimension -> (which frames the judge sees, the criteria)
CRITERIA: dict[str, tuple[str, str]] = {
    "imaging_quality": ("static", (
        "Dimension: IMAGING QUALITY (low-level, per frame). Look at sharpness and detail of the "
        "character and the scene, noise and grain, compression blocks, smeared or melted textures, "
        "broken fine structures (fingers, faces, text), and exposure (blown-out or crushed areas). "
        "5: crisp, clean, well exposed in every frame. 3: acceptable but visibly soft, noisy or "
        "smeared in places. 1: heavily blurred, noisy or distorted throughout.")),
    "aesthetic_quality": ("static", (
        "Dimension: AESTHETIC QUALITY (how good it looks as a picture). Look at composition and "
        "framing of the character, harmony and appropriateness of colours and lighting, plausible "
        "anatomy and proportions of the character as drawn, and overall visual appeal. "
        "5: pleasing, harmonious, well composed, like a professional frame. 3: plain or somewhat "
        "awkward but acceptable. 1: ugly, discordant colours, badly framed or grotesque.")),
    "temporal_consistency": ("grid", (
        "Dimension: TEMPORAL CONSISTENCY. Each image is a row of consecutive frames in time order, "
        "left to right; rows follow each other in time. Look for things that change when they "
        "should not: flicker of brightness or colour, textures or patterns that crawl or boil, parts "
        "that appear, vanish or change shape between neighbouring frames, jumps between rows. "
        "5: everything that should stay the same stays the same. 3: noticeable flicker or changes "
        "in some frames. 1: the video is unstable from frame to frame.")),
    "motion_smoothness": ("grid", (
        "Dimension: MOTION SMOOTHNESS. Each image is a row of consecutive frames in time order, "
        "left to right; rows follow each other in time. Judge whether the character's movement is "
        "fluid and physically plausible: no stutter, freezes followed by jumps, limbs teleporting, "
        "impossible bending, or jittering body parts. A still character is not smooth motion: rate "
        "it by how natural its small movements are. 5: fluid, natural motion. 3: some stutter or "
        "odd poses. 1: jerky, broken or impossible motion.")),
    "background_consistency": ("grid", (
        "Dimension: BACKGROUND CONSISTENCY. Each image is a row of consecutive frames in time "
        "order; rows follow each other in time. Look only at the scene behind the character: does "
        "it stay the same place with stable objects, lighting and texture (a smooth camera move is "
        "fine), or does it warp, flicker, drift in colour, or change content where the character "
        "moves? 5: stable background. 3: visible but limited changes. 1: the background is unstable.")),
    "subject_consistency": ("grid", (
        "Dimension: SUBJECT CONSISTENCY. Each image is a row of consecutive frames in time order; "
        "rows follow each other in time. Judge whether the character keeps one identity all along: "
        "the same face, hair, body shape and proportions, clothing, colours and accessories, with "
        "no drift in colour or brightness over time and no parts that morph. When a REFERENCE IMAGE "
        "is given first, the character must also match it (identity, outfit, colours, body shape). "
        "5: one consistent character (matching the reference). 3: recognisable but with visible "
        "changes. 1: the character changes identity or falls apart.")),
}

ANSWER_FORMAT = (
    'Answer with ONE JSON object and nothing else: {"score": <integer 1 to 5>, "reason": "<one or two '
    'sentences naming what you saw>"}')


def request_text(dimension: str, *, num_images: int, with_reference: bool) -> str:
    """The user text that goes before the images of one dimension's request."""
    kind, criteria = CRITERIA[dimension]
    what = (f"{num_images} frames sampled from the video in time order" if kind == "static"
            else f"{num_images} image(s), each a row of consecutive frames of the video")
    ref = ("The first image is the REFERENCE IMAGE of the character; the images after it come from the "
           "generated video.\n" if with_reference else "")
    return f"{criteria}\n\nYou will see {what}.\n{ref}{ANSWER_FORMAT}"
