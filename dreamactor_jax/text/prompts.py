"""The three instructions of the text-guidance path (paper section 3.3, appendix G).

A multimodal LLM describes the driving video's *motion without appearance* and the reference
image's *appearance without pose*; an LLM then fuses both into one target-oriented description
(`T_fusion`) that the backbone reads through its text encoder. The texts below are written for
this project and follow the structure of the paper's listings 1-3 (scope, completeness, hand
details, a fixed temporal structure; appearance attributes only; fusion rules with body-part
mapping for non-human characters and an output that starts with "In the video, ...").

`PROMPT_VERSION` names this exact wording. Any change to a text below must bump it, so that the
caption cache (`cache.py`) never serves a caption made by an older prompt.
"""

from __future__ import annotations

import hashlib

PROMPT_VERSION = "dam2-v1"
# The digest of each version's texts (see `prompt_digest`); a test checks the current one.
PROMPT_DIGESTS = {"dam2-v1": "bd651d9b6cf9d789"}

MOTION_OPENING = "In the video, the character's initial pose is"
FUSION_OPENING = "In the video,"

MOTION_PROMPT = """\
Describe how the character in this video moves. Write one detailed motion description that \
obeys every rule below, as a single paragraph without line breaks.
1. Basic constraints
- Scope: describe only motion, pose, posture, facial expression and how they change. Do not \
mention appearance (clothing, hair, colours, accessories, body shape) or gender.
- Completeness: cover the face, both hands and the whole body; do not leave out any key change \
of pose.
- Precision: state directions and relative positions instead of vague phrases (say "right hand \
raised to shoulder height in front of the chest, palm facing the viewer", never just "hand \
raised").
2. What to describe
- Time range: only the first 5 seconds of the video.
- Hands: for each hand, say where the palm and the back of the hand face (the character \
itself, the viewer, left or right), where the hand is relative to body parts, and any contact \
with objects or other characters.
- Expression: follow how the facial expression changes (for example "from a smile to \
laughter").
- Other behaviour: mention speaking, singing, blinking or nodding when present.
3. Fixed structure
- Begin with "In the video, the character's initial pose is".
- Mark the changes in order with "Subsequently," (first change), "Then," (second change), \
"After that," (third change, only if there is one) and "Finally," (the final state).
- One continuous paragraph: no line breaks, lists, bullet points or headings.
4. Example of the expected form
In the video, the character's initial pose is standing upright and smiling, the right hand \
raised beside the face with the palm facing the character and the back of the hand facing the \
viewer, the left hand resting on the hip. Subsequently, the character lowers the right hand to \
the waist. Then, the character starts speaking while the left hand stays on the hip. After \
that, the smile fades into a calm expression. Finally, the character stops speaking and keeps \
both arms relaxed at the sides."""

APPEARANCE_PROMPT = """\
Describe how the character in this image looks. Write one detailed appearance description \
that obeys every rule below, as a single paragraph without line breaks.
1. Basic constraints
- Scope: describe only appearance and gender. Do not describe actions, posture or movement \
(phrases such as "raising a hand" or "sitting" are not allowed).
- Completeness: cover every visible attribute: clothing, accessories, facial features.
- Accuracy: say only what the image shows; when something is unclear, say so (for example \
"long hair, gender undistinguishable") instead of guessing.
2. What to describe
- Gender: male, female or gender undistinguishable, from visual cues only.
- Face: hair colour and style, eyes, eyebrows, lip colour, facial accessories such as glasses \
or earrings.
- Clothing and accessories: style, colour and details of each garment; accessories such as a \
watch, a bag or jewellery.
- Held objects: every object the character holds.
- Body: visible attributes such as skin tone or fur colour and body shape, without posture.
- Non-human characters: name the kind of creature or object and its visible body parts.
3. Output form
- One continuous paragraph: no line breaks, lists, bullet points or headings.
- Order: gender, then face, then clothing and accessories, then held objects, then body.
- Concise: name each attribute once.
4. Example of the expected form
The character in the image is male with short black hair combed to the side, thick dark \
eyebrows, brown eyes and thin-rimmed round glasses. He wears a navy blue hooded sweatshirt \
with a white logo on the chest, light grey jeans and white sneakers, and a black watch on his \
left wrist. His right hand holds a red paper cup; he has light tan skin and a slim build."""

FUSION_PROMPT = """\
Transfer the motion of the character in a video onto the character of an image. You are given \
the image character's appearance description and the video character's motion description. \
Write one complete, natural and fluent description of the image character performing that \
motion, as a single paragraph without line breaks, obeying every rule below.
1. Basic constraints
- Appearance: keep every detail of the appearance description; omit or change nothing.
- Motion: keep every motion, pose, expression and behaviour of the motion description; omit \
or change nothing.
- Plausibility: respect the anatomy of the image character (for example, bird wings have no \
palms or fingers).
- Fusion: only map body parts so that the motion fits the appearance; do not invent content.
2. Number of characters (decided by the image)
- Several characters in the video, one in the image: give the image character the motion of \
the most prominent video character.
- Several characters in the image, one in the video: give the video motion to every image \
character.
- Other mismatches: keep the image characters' appearance and number, and keep the video \
motion in full.
3. Body-part mapping (only when the image character is not human)
- Human to bird: hands and arms become wings (palm and finger details become wing edge, \
direction, opening and closing); legs and feet become claws.
- Human to cat or other quadruped: hands become forelegs, legs become hind legs, palm \
orientation becomes forepaw orientation.
- Other characters: upper limbs become forelimbs or feelers, lower limbs become hind or \
supporting limbs, finger and palm actions become the matching organ's motion (wing flapping, \
claw opening).
- Details without a matching body part are dropped and replaced by a plausible description; \
never add body parts the character does not have.
- Interactions with the environment are kept and mapped onto the character's own body.
4. Output
- Include everything from both descriptions, fused naturally, with no awkward splicing.
- For a bird, do not use the words human, hand, palm, finger or fist.
- Begin with "In the video, a" or "In the video, an".
5. Input
Image appearance (appearance_caption): {appearance_caption}
Video motion (motion_caption): {motion_caption}
6. Example
appearance_caption: The character in the image is female with long red hair in a braid, green \
eyes and a silver nose ring. She wears a yellow raincoat and black rubber boots.
motion_caption: In the video, the character's initial pose is standing with both hands in \
the coat pockets. Subsequently, the character waves the right hand at shoulder height, palm \
facing the viewer. Finally, the character smiles and puts the hand back in the pocket.
Output: In the video, a woman with long red hair in a braid, green eyes and a silver nose ring, \
wearing a yellow raincoat and black rubber boots, stands with both hands in her coat pockets. \
Subsequently, she waves her right hand at shoulder height with the palm facing the viewer. \
Finally, she smiles and puts the hand back in her pocket."""


def fusion_prompt(appearance_caption: str, motion_caption: str) -> str:
    """The fusion instruction with both captions filled in."""
    for name, value in (("appearance_caption", appearance_caption), ("motion_caption", motion_caption)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
    return FUSION_PROMPT.format(appearance_caption=appearance_caption.strip(),
                                motion_caption=motion_caption.strip())


def prompt_digest() -> str:
    """Short hash of the three texts; tests use it to catch an edit made without a version bump."""
    h = hashlib.sha256()
    for text in (MOTION_PROMPT, APPEARANCE_PROMPT, FUSION_PROMPT):
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]
