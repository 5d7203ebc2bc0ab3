"""Pose extraction: the estimator interface, the MediaPipe default, and running over a clip.

An estimator is any callable `image uint8 [H, W, 3] RGB -> PoseFrame`. Two are provided:
- `MediaPipeEstimator` (the default; `pip install 'dreamactor-jax[pose]'`): mediapipe 0.10.14's
  legacy Holistic solution, whose pip package bundles the models, so it runs offline: body
  (33 landmarks, model_complexity 1), both hands (21) and the face mesh (468), for ONE person per
  frame. The multi-person Tasks API (PoseLandmarker, num_poses > 1) needs `.task` bundles that the
  wheel does not ship, and its bare `.tflite` files lack the metadata the Tasks API requires
  (tried: "requires specifying NormalizationOptions metadata"). For several people use DWPose.
- `DWPoseEstimator` (dwpose.py): the paper's estimator, from the user's ONNX files, all people.

Mapping MediaPipe -> OpenPose-18 (MediaPipe indices; "left" is the person's left):
nose 0, neck = midpoint of shoulders 11/12 (conf = the lower), r_shoulder 12, r_elbow 14,
r_wrist 16, l_shoulder 11, l_elbow 13, l_wrist 15, r_hip 24, r_knee 26, r_ankle 28, l_hip 23,
l_knee 25, l_ankle 27, r_eye 5, l_eye 2, r_ear 8, l_ear 7. Confidence = landmark visibility.
Hands: MediaPipe's 21 points are OpenPose's order; conf = the body wrist's visibility (at least 0.5). Face: the 468-point
mesh -> the 68-point layout by `FACEMESH_TO_68` (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67; the map used widely with MediaPipe), conf 1. Points outside the frame get conf 0.

Poses are estimated on the whole source frame (downscaled to at most `DETECT_MAX_SIDE` pixels on
its long side by `detection_frame`), never on the panel the model sees: a crop into another aspect
would cut heads and feet off before the estimator looks, and a small panel hides small people.
`fit_pose` / `fit_clip` then move the keypoints to where `media.resize_to` puts the frame.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from dreamactor_jax.pose.keypoints import L_WRIST, R_WRIST, PoseClip, PoseFrame

MP_TO_OPENPOSE = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
FACEMESH_TO_68 = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,                                      # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,                                                # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,                          # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,                                # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,                                                  # inner lips
)


DETECT_MAX_SIDE = 1280  # long side the estimators see at most (MediaPipe works at 256, DWPose at 640)


class PoseEstimator(Protocol):
    def __call__(self, image: np.ndarray) -> PoseFrame: ...


def _in_frame(pts: np.ndarray) -> np.ndarray:
    """Zeroes the confidence of points outside [0, 1]^2."""
    out = np.array(pts, np.float32)
    off = np.any((out[..., :2] < 0) | (out[..., :2] > 1), -1)
    out[off, 2] = 0.0
    return out


def mediapipe_body(landmarks: np.ndarray) -> np.ndarray:
    """MediaPipe pose landmarks [33, 3] (x, y, visibility) -> OpenPose-18 body [18, 3]."""
    lm = _in_frame(np.clip(np.nan_to_num(landmarks), -1e3, 1e3))
    lm[:, 2] = np.clip(lm[:, 2], 0, 1)
    body = np.zeros((18, 3), np.float32)
    for op, mp in enumerate(MP_TO_OPENPOSE):
        if mp >= 0:
            body[op] = lm[mp]
    body[1, :2] = (lm[11, :2] + lm[12, :2]) / 2
    body[1, 2] = min(lm[11, 2], lm[12, 2])
    return body


@dataclasses.dataclass
class MediaPipeEstimator:
    """MediaPipe 0.10.14 Holistic (bundled models, offline): one person's body, hands and face.

    Holistic finds the hands and face in regions derived from the body, so they belong to it.
    `video=True` lets MediaPipe track between consecutive frames (faster, steadier); use it only
    when frames are fed in order from one clip.
    """

    video: bool = False
    min_detection_confidence: float = 0.5

    def __post_init__(self):
        try:
            import mediapipe as mp  # noqa: PLC0415
        except ImportError:
            raise ValueError("the MediaPipe estimator needs mediapipe==0.10.14: "
                             "pip install 'dreamactor-jax[pose]'") from None
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=not self.video, model_complexity=1, refine_face_landmarks=False,
            min_detection_confidence=self.min_detection_confidence)

    def __call__(self, image: np.ndarray) -> PoseFrame:
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"MediaPipe: image must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
        res = self._holistic.process(image)
        if res.pose_landmarks is None:
            return PoseFrame.empty()
        lms = np.array([(p.x, p.y, p.visibility) for p in res.pose_landmarks.landmark], np.float32)
        body = mediapipe_body(lms)
        hands = np.zeros((2, 21, 3), np.float32)
        for slot, hand, wrist in ((0, res.left_hand_landmarks, L_WRIST), (1, res.right_hand_landmarks, R_WRIST)):
            if hand is not None:  # the person's left / right hand; conf: the body wrist's visibility
                conf = max(float(body[wrist, 2]), 0.5)
                hands[slot] = _in_frame([(p.x, p.y, conf) for p in hand.landmark])
        face = np.zeros((68, 3), np.float32)
        if res.face_landmarks is not None:
            pts = np.array([(p.x, p.y, 1.0) for p in res.face_landmarks.landmark], np.float32)
            face = _in_frame(pts[list(FACEMESH_TO_68)])
        return PoseFrame(body[None], hands[None], face[None])

    def close(self) -> None:
        self._holistic.close()


def make_estimator(kind: str = "mediapipe", *, det_model=None, pose_model=None, video: bool = False,
                   **kw) -> Callable[[np.ndarray], PoseFrame]:
    """`mediapipe` (default, offline) or `dwpose` (needs det_model and pose_model ONNX paths)."""
    if kind == "mediapipe":
        return MediaPipeEstimator(video=video, **kw)
    if kind == "dwpose":
        if not det_model or not pose_model:
            raise ValueError("dwpose: give both det_model (yolox_l.onnx) and pose_model (dw-ll_ucoco_384.onnx)")
        from dreamactor_jax.pose.dwpose import DWPoseEstimator  # noqa: PLC0415
        return DWPoseEstimator(det_model, pose_model, **kw)
    raise ValueError(f"pose estimator must be 'mediapipe' or 'dwpose', got {kind!r}")


@dataclasses.dataclass
class ExtractStats:
    num_frames: int = 0
    num_empty: int = 0   # frames where nobody was found


def extract_frames(frames: Iterable[np.ndarray], estimator: Callable[[np.ndarray], PoseFrame],
                   stats: ExtractStats | None = None) -> Iterator[PoseFrame]:
    """Streams one PoseFrame per frame, counting frames and empty frames into `stats`."""
    stats = stats if stats is not None else ExtractStats()
    for frame in frames:
        pose = estimator(frame)
        stats.num_frames += 1
        stats.num_empty += pose.num_people == 0
        yield pose


def extract_clip(frames: Iterable[np.ndarray], estimator, *, fps: float = 0.0) -> tuple[PoseClip, ExtractStats]:
    """All frames' poses as a PoseClip (frames are consumed one at a time, never held)."""
    stats, poses, size = ExtractStats(), [], None
    for frame in frames:
        size = size or np.shape(frame)[:2]
        poses.extend(extract_frames([frame], estimator, stats))
    if size is None:
        raise ValueError("extract_clip: no frames")
    return PoseClip(poses, size[1], size[0], fps), stats


def looks_like_pose_video(frames, *, max_frames: int = 8) -> bool:
    """True if the frames look like rendered skeletons: mostly black, the rest saturated or white.

    Used to accept an already-rendered pose video (e.g. `*_kps.mp4`) as the motion signal as is.
    Looks at up to `max_frames` frames spread over `frames` ([T, H, W, 3] uint8 or a list).
    """
    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    if len(frames) == 0:
        raise ValueError("looks_like_pose_video: no frames")
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    votes = []
    for i in idx:
        f = np.asarray(frames[i]).astype(np.int16)
        hi, lo = f.max(-1), f.min(-1)
        dark = hi < 40
        drawn = ~dark
        if dark.mean() < 0.75 or drawn.mean() < 1e-4:
            votes.append(False)
            continue
        # skeleton pixels: strongly saturated colours (limbs, joints) or near-white (face dots)
        vivid = ((hi - lo) > 0.5 * hi) | (lo > 200)
        votes.append(vivid[drawn].mean() > 0.6)
    return sum(votes) > len(votes) / 2


def detection_frame(frame: np.ndarray, max_side: int = DETECT_MAX_SIDE) -> np.ndarray:
    """The whole source frame for the estimator, downscaled (aspect kept) to at most `max_side`."""
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    from PIL import Image  # noqa: PLC0415

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.Resampling.BILINEAR))


def fit_pose(pose: PoseFrame, src_h: int, src_w: int, height: int, width: int, mode: str = "crop") -> PoseFrame:
    """Keypoints measured on a whole `src_h x src_w` frame, moved to where `media.resize_to(frame,
    height, width, mode=mode)` puts them (normalised to the `height x width` panel). Points that the
    crop cuts away keep their confidence and lie outside [0, 1] (a limb leaving the frame is drawn
    up to the border)."""
    from dreamactor_jax.media.resize import fit_geometry  # noqa: PLC0415

    g = fit_geometry(src_h, src_w, height, width, mode)
    scale = np.array([g.resized_w / width, g.resized_h / height], np.float64)
    offset = np.array([g.left / width, g.top / height], np.float64)

    def move(a):
        a = np.array(a, np.float64)
        a[..., :2] = a[..., :2] * scale + offset
        return a
    return PoseFrame(move(pose.body), move(pose.hands), move(pose.face))


def fit_clip(clip: PoseClip, height: int, width: int, mode: str = "crop") -> PoseClip:
    """`fit_pose` on every frame: a clip measured at its own size, as seen in a `height x width` panel."""
    frames = [fit_pose(f, clip.height, clip.width, height, width, mode) for f in clip.frames]
    return PoseClip(frames, width, height, clip.fps)
