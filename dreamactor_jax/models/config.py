"""`MMDiTConfig`: the MMDiT architecture (one of `BACKBONES`) plus the runtime switches of this port.

A backbone is a config, not a fork: HunyuanVideo (`HunyuanVideoTransformer3DModel`) and
HunyuanVideo-1.5 (`HunyuanVideo15Transformer3DModel`) are the same blocks with different sizes and a
few switches (`num_single_layers`, `pooled_projection_dim`, `guidance_embeds`, `text_embed_2_dim`,
`image_embed_dim`, `use_meanflow`, `legacy_text_mask`). `backbone` names the diffusers class and so
which constructor keys a diffusers `config.json` has, and the values that class fixes (`Backbone`).
Architecture fields use diffusers' config names, so a `config.json` maps over field by field
(`from_diffusers_config`). Runtime fields (dtypes, attention kernel, remat policy, scan) change how
the same function is computed, never what it computes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
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
NUM_TOKEN_TYPES = 3  # cond_type_embed rows: 0 text (refined), 1 glyph (ByT5), 2 image (SigLIP)


@dataclass(frozen=True)
class Backbone:
    """One diffusers transformer class: its name, its constructor keys, the fields it fixes, its names."""

    diffusers_class: str
    diffusers_keys: tuple[str, ...]  # MMDiTConfig fields that are constructor arguments of the class
    fixed: dict = field(default_factory=dict)  # fields the class has no argument for: their only value
    pipeline_keys: tuple[str, ...] = ()  # config.json keys the forward never reads (ignored on load)
    time_embed: str = "time_text_embed"  # module name of the timestep (+ guidance, pooled) embedding
    qk_norms: tuple = QK_NORMS  # the qk_norm values its forward runs
    positive: tuple[str, ...] = ()  # widths the class always builds a layer for (0 would be another model)
    text_encoders: str = "hunyuan"  # the text encoders of its pipeline (`sampling.text_choice.ENCODERS`)


_COMMON_KEYS = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "num_layers",
                "num_refiner_layers", "mlp_ratio", "patch_size", "patch_size_t", "qk_norm", "text_embed_dim",
                "rope_theta", "rope_axes_dim")
BACKBONES = {
    "hunyuan_video": Backbone(
        "HunyuanVideoTransformer3DModel",
        _COMMON_KEYS + ("num_single_layers", "guidance_embeds", "pooled_projection_dim", "image_condition_type"),
        dict(text_embed_2_dim=0, image_embed_dim=0, use_meanflow=False, legacy_text_mask=True),
        positive=("pooled_projection_dim",),
    ),
    "hunyuan_video15": Backbone(
        "HunyuanVideo15Transformer3DModel",
        _COMMON_KEYS + ("text_embed_2_dim", "image_embed_dim", "use_meanflow"),
        dict(num_single_layers=0, guidance_embeds=False, pooled_projection_dim=0, image_condition_type=None,
             legacy_text_mask=False),
        pipeline_keys=("target_size", "task_type"),
        time_embed="time_embed",
        qk_norms=tuple(q for q in QK_NORMS if q is not None),  # its attention calls norm_q unconditionally
        positive=("text_embed_2_dim", "image_embed_dim"),
        text_encoders="hv15",
    ),
}


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
    text_embed_2_dim: int = 0  # glyph-text (ByT5) token width; 0 = no glyph tokens
    image_embed_dim: int = 0  # image (SigLIP) token width; 0 = no image tokens
    use_meanflow: bool = False  # a second timestep embedder for MeanFlow's `timestep_r`
    # HunyuanVideo 1.0's text masking: the refiner always attends token 0 and the joint attention keeps
    # the first `sum(text_mask)` text keys (right padding). False (1.5): the masks as given.
    legacy_text_mask: bool = True
    backbone: str = "hunyuan_video"  # a key of BACKBONES: the diffusers class this config describes

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
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: expected one of {sorted(BACKBONES)}, got {self.backbone!r}")
        for name, value in BACKBONES[self.backbone].fixed.items():
            if getattr(self, name) != value:
                raise ValueError(f"{name}: backbone {self.backbone!r} ({self.diffusers_class}) has no such setting; "
                                 f"expected {value!r}, got {getattr(self, name)!r}")
        for name in ("text_embed_2_dim", "image_embed_dim", "pooled_projection_dim"):
            if int(getattr(self, name)) < (1 if name in BACKBONES[self.backbone].positive else 0):
                low = "a positive integer" if name in BACKBONES[self.backbone].positive else "0 or more"
                raise ValueError(f"{name}: expected {low}, got {getattr(self, name)!r}")
        ints = ("in_channels", "out_channels", "num_attention_heads", "attention_head_dim", "patch_size",
                "patch_size_t", "text_embed_dim")
        for name in ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        for name in ("num_layers", "num_single_layers", "num_refiner_layers"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}: expected 0 or more layers, got {getattr(self, name)!r}")
        if not self.mlp_ratio >= 0:  # 0 builds (feed-forward of width 0: its output is the bias), as in diffusers
            raise ValueError(f"mlp_ratio: expected >= 0, got {self.mlp_ratio!r}")
        if self.qk_norm not in BACKBONES[self.backbone].qk_norms:
            raise ValueError(f"qk_norm: expected one of {BACKBONES[self.backbone].qk_norms} for backbone "
                             f"{self.backbone!r} ({self.diffusers_class}), got {self.qk_norm!r}")
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
    def diffusers_class(self) -> str:
        return BACKBONES[self.backbone].diffusers_class

    @property
    def token_types(self) -> bool:
        """Whether text, glyph and image tokens are told apart by `cond_type_embed` (any extra stream)."""
        return self.text_embed_2_dim > 0 or self.image_embed_dim > 0

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    def replace(self, **changes: Any) -> "MMDiTConfig":
        return dataclasses.replace(self, **changes)

    # --- named configs ---
    @classmethod
    def named(cls, name: str, **overrides: Any) -> "MMDiTConfig":
        """Full-size `t2v`, `i2v-16ch`, `i2v-33ch` (HunyuanVideo), `hv15`, `hv15-meanflow`
        (HunyuanVideo-1.5), or tiny test ones `tiny-<name>`."""
        if name not in _NAMED:
            raise ValueError(f"config name: expected one of {sorted(_NAMED)}, got {name!r}")
        return cls(**{**_NAMED[name], **overrides})

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any], **overrides: Any) -> "MMDiTConfig":
        """Builds the config from a diffusers `config.json` dict (unknown `_`-keys are ignored).

        The backbone is `_class_name`'s, or without one, the backbone whose keys the dict has."""
        kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
        backbone = backbone_of(config)
        bb = BACKBONES[backbone]
        unknown = sorted(set(kwargs) - set(bb.diffusers_keys) - set(bb.pipeline_keys) - set(bb.fixed) - {"backbone"})
        if unknown:
            raise ValueError(f"diffusers config: keys not understood by MMDiTConfig ({bb.diffusers_class}): {unknown}")
        kwargs = {k: v for k, v in kwargs.items() if k not in bb.pipeline_keys}
        kwargs["backbone"] = backbone
        kwargs.update({k: v for k, v in bb.fixed.items() if k not in kwargs})
        if kwargs.get("out_channels") is None:
            kwargs["out_channels"] = kwargs.get("in_channels", 16)
        if "rope_axes_dim" in kwargs:
            kwargs["rope_axes_dim"] = tuple(kwargs["rope_axes_dim"])
        return cls(**{**kwargs, **overrides})

    def to_diffusers_config(self) -> dict[str, Any]:
        """The architecture fields as constructor arguments of `self.diffusers_class`."""
        out = {k: getattr(self, k) for k in BACKBONES[self.backbone].diffusers_keys}
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
# HunyuanVideo-1.5 (diffusers' HunyuanVideo15Transformer3DModel defaults: the 8.3B 480p/720p I2V model):
# 54 dual blocks at 2048 (16 x 128), patch 1, 65 = 32 noise + 32 condition latent + 1 mask channels.
_HV15 = dict(BACKBONES["hunyuan_video15"].fixed, backbone="hunyuan_video15", in_channels=65, out_channels=32,
             num_attention_heads=16, attention_head_dim=128, num_layers=54, num_refiner_layers=2, mlp_ratio=4.0,
             patch_size=1, patch_size_t=1, text_embed_dim=3584, text_embed_2_dim=1472, image_embed_dim=1152)
_TINY_HV15 = dict(_HV15, in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                  text_embed_dim=32, text_embed_2_dim=24, image_embed_dim=20, rope_axes_dim=(4, 6, 6))
_NAMED.update({"hv15": _HV15, "hv15-meanflow": dict(_HV15, use_meanflow=True),
               "tiny-hv15": _TINY_HV15, "tiny-hv15-meanflow": dict(_TINY_HV15, use_meanflow=True)})


def backbone_of(config: Mapping[str, Any]) -> str:
    """The backbone a diffusers config dict describes: by `_class_name`, else by its keys."""
    if "backbone" in config:
        return config["backbone"]
    by_class = {b.diffusers_class: name for name, b in BACKBONES.items()}
    if "_class_name" in config:
        if config["_class_name"] not in by_class:
            raise ValueError(f"diffusers config: _class_name {config['_class_name']!r} is not one of {sorted(by_class)}")
        return by_class[config["_class_name"]]
    own = lambda b: set(b.diffusers_keys) - set(_COMMON_KEYS)
    hits = [name for name, b in BACKBONES.items() if own(b) & set(config)]
    return hits[0] if len(hits) == 1 else "hunyuan_video"
