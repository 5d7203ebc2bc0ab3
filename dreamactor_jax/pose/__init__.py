"""Pose pipeline: keypoints format, OpenPose-style rendering, extraction, augmentation, retargeting."""

from dreamactor_jax.pose.keypoints import BODY_LIMBS, BODY_NAMES, HAND_EDGES, PoseClip, PoseFrame
from dreamactor_jax.pose.render import render_clip, render_pose

__all__ = ["BODY_LIMBS", "BODY_NAMES", "HAND_EDGES", "PoseClip", "PoseFrame", "render_clip", "render_pose"]
