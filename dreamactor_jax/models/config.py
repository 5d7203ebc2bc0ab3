"""`MMDiTConfig`: the HunyuanVideo MMDiT architecture plus the runtime switches of this port.

Architecture fields use diffusers' `HunyuanVideoTransformer3DModel` config names, so a diffusers
`config.json` maps over field by field (`from_diffusers_config`). Runtime fields (dtypes, attention
kernel, remat policy, scan) change how the same function is computed, never what it computes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import jax.numpy as jnp

IMAGE_CONDITION_TYPES = (None, "latent_concat", "token_replace")
# The `qk_norm` values diffusers builds a HunyuanVideo transformer with ("*_across_heads" fail in its
# constructor: they need a kv_heads it does not pass); "l2" only without dual-stream blocks (their
# added text projections refuse it).
QK_NORMS = (None, "rms_norm", "layer_norm", "fp32_layer_norm", "l2")
_DUAL_QK_NORMS = QK_NORMS[:4]
# Parameters of each (per-head) qk norm kind, as in diffusers (RMSNorm weight; LayerNorm weight, bias).
QK_NORM_LEAVES = {None: (), "rms_norm": ("scale",), "layer_norm": ("scale", "bias"), "fp32_layer_norm": (), "l2": ()}
REFINER_MLP_RATIO = 4.0  # diffusers builds the text refiner with its default ratio, not config.mlp_ratio
ATTENTION_IMPLS = ("auto", "xla", "cudnn", "tpu")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_attention", "save_attention_and_dots")


@dataclass(frozen=True)
class MMDiTConfig:
    """Architecture (diffusers names) and runtime switches; frozen so it can be a static jit arg."""

    # --- architecture (diffusers `HunyuanVideoTransformer3DModel` names and defaults) ---
    in_channels: int = 16
    out_channels: int = 16
    num_attention_heads: int = 24
    attention_head_dim: int = 128
    num_layers: int = 20  # dual-stream blocks
    num_single_layers: int = 40  # single-stream blocks
    num_refiner_layers: int = 2  # text token refiner blocks
    mlp_ratio: float = 4.0
    patch_size: int = 2
    patch_size_t: int = 1
    qk_norm: str | None = "rms_norm"
    guidance_embeds: bool = True
    text_embed_dim: int = 4096
    pooled_projection_dim: int = 768
    rope_theta: float = 256.0
    rope_axes_dim: tuple[int, int, int] = (16, 56, 56)
    image_condition_type: str | None = None

    # --- runtime switches (how it is computed, not what) ---
    dtype: str = "float32"  # compute dtype of activations and matmuls ("bfloat16" on GPU/TPU)
    param_dtype: str = "float32"  # dtype of parameters made by `init_params`
    attention_impl: str = "auto"  # "auto" (cudnn on GPU, else xla), "xla", "cudnn", "tpu"
    remat_policy: str = "none"  # a name of REMAT_POLICIES, a per-layer plan, or auto[:GIB] (models.remat)
    scan_layers: bool = True  # run stacked blocks under lax.scan; False = Python loop (debugging)

    def __post_init__(self):
        if self.image_condition_type not in IMAGE_CONDITION_TYPES:
            raise ValueError(
                f"image_condition_type: expected one of {IMAGE_CONDITION_TYPES}, got {self.image_condition_type!r}"
            )
        self._check_architecture()
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl: expected one of {ATTENTION_IMPLS}, got {self.attention_impl!r}")
        from dreamactor_jax.models.remat import parse as parse_remat

        parse_remat(self.remat_policy)  # a name, a per-layer plan or auto (models.remat); raises naming it
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16", "float64"):
                raise ValueError(f"{name}: expected float32, bfloat16 or float16 (float64: CPU checks), got {getattr(self, name)!r}")
        object.__setattr__(self, "rope_axes_dim", tuple(int(d) for d in self.rope_axes_dim))

    def _check_architecture(self) -> None:
        """Refuses exactly what diffusers refuses (or cannot run); everything else is built."""
        ints = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "patch_size",
                "patch_size_t", "text_embed_dim", "pooled_projection_dim")
        for name in ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("num_layers", "num_single_layers", "num_refiner_layers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected 0 or more layers, got {getattr(self, name)!r}")
        if not self.mlp_ratio >= 0:  # 0 builds (feed-forward of width 0: its output is the bias), as in diffusers
            raise ValueError(f"mlp_ratio: expected >= 0, got {self.mlp_ratio!r}")
        if self.qk_norm not in QK_NORMS:
            raise ValueError(f"qk_norm: expected one of {QK_NORMS} (diffusers' Attention), got {self.qk_norm!r}")
        if self.num_layers > 0 and self.qk_norm not in _DUAL_QK_NORMS:
            raise ValueError(f"qk_norm: {self.qk_norm!r} is refused by diffusers for the dual-stream blocks "
                             f"(num_layers={self.num_layers}); expected one of {_DUAL_QK_NORMS}")
        rope = tuple(self.rope_axes_dim)
        if len(rope) != 3 or any(int(d) < 0 or int(d) % 2 for d in rope) or sum(rope) != self.attention_head_dim:
            raise ValueError(
                f"rope_axes_dim: expected 3 even dims (frames, height, width) summing to "
                f"attention_head_dim={self.attention_head_dim}, got {rope}"
            )

    # --- derived sizes ---
    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def mlp_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def refiner_mlp_dim(self) -> int:
        """Feed-forward width of the text refiner blocks: always 4x (diffusers ignores mlp_ratio there)."""
        return int(self.hidden_size * REFINER_MLP_RATIO)

    @property
    def patch_dim(self) -> int:
        """Input features of one patch token: pt * p * p * in_channels."""
        return self.patch_size_t * self.patch_size * self.patch_size * self.in_channels

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def replace(self, **changes: Any) -> "MMDiTConfig":
        return dataclasses.replace(self, **changes)

    # --- named configs ---
    @classmethod
    def named(cls, name: str, **overrides: Any) -> "MMDiTConfig":
        """Full-size variants `t2v`, `i2v-16ch`, `i2v-33ch`, or tiny test ones `tiny-<variant>`."""
        if name not in _NAMED:
            raise ValueError(f"config name: expected one of {sorted(_NAMED)}, got {name!r}")
        return cls(**{**_NAMED[name], **overrides})

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any], **overrides: Any) -> "MMDiTConfig":
        """Builds the config from a diffusers `config.json` dict (unknown `_`-keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ValueError(f"diffusers config: keys not understood by MMDiTConfig: {unknown}")
        if kwargs.get("out_channels") is None:
            kwargs["out_channels"] = kwargs.get("in_channels", 16)
        if "rope_axes_dim" in kwargs:
            kwargs["rope_axes_dim"] = tuple(kwargs["rope_axes_dim"])
        return cls(**{**kwargs, **overrides})

    def to_diffusers_config(self) -> dict[str, Any]:
        """The architecture fields as diffusers' constructor arguments."""
        runtime = {"dtype", "param_dtype", "attention_impl", "remat_policy", "scan_layers"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in runtime}
        out["rope_axes_dim"] = tuple(out["rope_axes_dim"])
        return out


_FULL = {}
_TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=2,
    text_embed_dim=32,
    pooled_projection_dim=24,
    rope_axes_dim=(4, 6, 6),
)
_VARIANTS = {
    "t2v": dict(in_channels=16, guidance_embeds=True, image_condition_type=None),
    "i2v-16ch": dict(in_channels=16, guidance_embeds=True, image_condition_type="token_replace"),
    "i2v-33ch": dict(in_channels=33, guidance_embeds=False, image_condition_type="latent_concat"),
}
_NAMED = {**{k: {**_FULL, **v} for k, v in _VARIANTS.items()}, **{f"tiny-{k}": {**_TINY, **v} for k, v in _VARIANTS.items()}}
