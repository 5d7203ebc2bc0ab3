"""The MMDiT backbone: config, layers, the one attention function, the model, LoRA."""

from dreamactor_jax.models.config import MMDiTConfig

__all__ = ["MMDiTConfig"]
