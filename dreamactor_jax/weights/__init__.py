"""PyTorch <-> JAX weight mapping (diffusers names), conversion and LoRA export."""
