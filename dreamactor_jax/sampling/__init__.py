"""Sampling: flow-matching schedule, denoising loop, long videos."""
