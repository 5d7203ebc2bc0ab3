"""Pose pipeline: keypoints format, OpenPose-style rendering, extraction, augmentation, retargeting.

- keypoints.py: `PoseFrame` (one frame's people: body [P,18,3], hands [P,2,21,3], face [P,68,3]),
  `PoseClip` (frames + size + fps, JSON I/O).
- render.py: `render_pose` draws a PoseFrame OpenPose-style.
- extract.py: estimator interface, `MediaPipeEstimator` (offline default), `extract_clip`,
  `looks_like_pose_video`; dwpose.py: `DWPoseEstimator` (ONNX models given by the user).
- augment.py: section 3.3's bone-length scaling and clip-level box normalisation.
- retarget.py: driving skeleton -> the reference's bone lengths at inference.
"""

from dreamactor_jax.pose.augment import (BoneFactors, PoseAugConfig, augment_clip, bone_lengths, clip_box,
                                         draw_factors, normalize_to_box, rescale_bones)
from dreamactor_jax.pose.extract import (ExtractStats, MediaPipeEstimator, extract_clip, extract_frames,
                                         looks_like_pose_video, make_estimator)
from dreamactor_jax.pose.keypoints import (BODY_LIMBS, BODY_NAMES, HAND_EDGES, PoseClip, PoseFrame,
                                           standard_person)
from dreamactor_jax.pose.render import render_clip, render_pose
from dreamactor_jax.pose.retarget import retarget_clip, retarget_factors

__all__ = [
    "BODY_LIMBS", "BODY_NAMES", "HAND_EDGES", "BoneFactors", "ExtractStats", "MediaPipeEstimator",
    "PoseAugConfig", "PoseClip", "PoseFrame", "augment_clip", "bone_lengths", "clip_box", "draw_factors",
    "extract_clip", "extract_frames", "looks_like_pose_video", "make_estimator", "normalize_to_box",
    "render_clip", "render_pose", "rescale_bones", "retarget_clip", "retarget_factors", "standard_person",
]
