"""FP8 (e4m3) matmuls for the frozen base, opt-in: `quantize_blocks(params)` once, then sample as usual.

The block linears (attention q/k/v/out, feed-forward, single-stream MLP and proj_out) of the stacked
`transformer_blocks` and `single_transformer_blocks` are stored as float8_e4m3fn with one fp32 scale
per output feature (`{"kernel_fp8", "kernel_scale", "bias"}` in place of `{"kernel", "bias"}`);
`layers.linear` sees the keys and quantises the activations per tensor (dynamic scale: max|x| / 448),
multiplies in fp8 with fp32 accumulation and rescales. The modulation linears (per sample, not per
token), embedders, refiner and output layer stay as they were. On Hopper, XLA lowers the f8 x f8 dot
to the FP8 tensor cores; on CPU it computes the same numbers by upcasting (what the tests check).

Error against bf16 (tests/test_fp8.py, tiny MMDiT, fp32 reference): reported there; the speed on an
H100/H200 is not measured yet (`benchmarks/bench_sample.py --fp8`). Opt-in because it changes the
numbers (e4m3 keeps 3 mantissa bits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

E4M3 = jnp.float8_e4m3fn
E4M3_MAX = 448.0
QUANTIZED = ("to_q", "to_k", "to_v", "to_out_0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
             "proj", "net_2", "proj_mlp", "proj_out")
STACKS = ("transformer_blocks", "single_transformer_blocks")


def quantize_kernel(w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[..., in, out] -> (float8_e4m3fn kernel, fp32 scale [..., out]): per output feature, max|w| -> 448."""
    w = w.astype(jnp.float32)
    scale = jnp.maximum(jnp.max(jnp.abs(w), axis=-2), 1e-12) / E4M3_MAX
    return (w / scale[..., None, :]).astype(E4M3), scale


def _quantize_tree(tree):
    if not isinstance(tree, dict):
        return tree
    out = {}
    for k, v in tree.items():
        if k in QUANTIZED and isinstance(v, dict) and "kernel" in v:
            q, s = quantize_kernel(v["kernel"])
            out[k] = {"kernel_fp8": q, "kernel_scale": s, **({"bias": v["bias"]} if "bias" in v else {})}
        else:
            out[k] = _quantize_tree(v)
    return out


def quantize_blocks(params: dict) -> dict:
    """The base with the block linears in fp8 (see the module doc); everything else unchanged."""
    return {k: (_quantize_tree(v) if k in STACKS else v) for k, v in params.items()}


def is_fp8(p: dict) -> bool:
    return "kernel_fp8" in p


def matmul(x: jax.Array, kernel_fp8: jax.Array, kernel_scale: jax.Array) -> jax.Array:
    """`x @ kernel` with x quantised per tensor to e4m3, fp32 accumulation; result in x's dtype."""
    sx = jnp.maximum(jnp.max(jnp.abs(x)).astype(jnp.float32), 1e-12) / E4M3_MAX
    xq = (x.astype(jnp.float32) / sx).astype(E4M3)
    y = jax.lax.dot_general(xq, kernel_fp8, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return (y * (sx * kernel_scale)).astype(x.dtype)
