"""What sampling runs on: a trained adapter, the converted base it was trained on, and the VAE.

`--checkpoint` is a training run (`launch/train.py --workdir`), its `checkpoints/` folder, or one
step folder inside it, read through `run_folder` (opened once: `check` reads its meta, `load` its
adapter). The meta holds the run's config: the variant (`pose` / `e2e`) and where the converted
base (`base_checkpoint`) and VAE (`preprocess.vae_checkpoint`) are, which `--base` / `--vae`
override (moved folders), and the in-context layout it trained with (`layout_of`); and its
fingerprint, the backbone and LoRA shape the adapter was trained with (`run_folder.architecture`).
The adapter is merged into the base once (`models.lora.merge_lora`).

Nothing here ever makes random weights: a run trained on a random base (a smoke run), a missing
base or VAE folder, or no checkpoint at all is a ValueError that says which command to run first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from dreamactor_jax import run_folder
from dreamactor_jax.sampling import packed
from dreamactor_jax.utils import as_path

HOWTO = ("convert the backbone (python tools/convert_weights.py HunyuanVideo-I2V/transformer ckpt/base "
         "--variant i2v-33ch) and the VAE (python tools/convert_weights.py HunyuanVideo-I2V/vae ckpt/vae), "
         "train an adapter on them (python launch/train.py --config configs/pose.py --workdir runs/pose "
         "--config.base_checkpoint=ckpt/base --config.data.shards=shards/ "
         "--config.preprocess.vae_checkpoint=ckpt/vae), then pass --checkpoint runs/pose")


@dataclasses.dataclass
class Loaded:
    mcfg: Any                 # MMDiTConfig (runtime dtype set)
    params: dict              # base with the adapter merged
    vcfg: Any                 # VAEConfig
    vparams: dict
    variant: str              # "pose" or "e2e"
    config: dict              # the training run's config
    step: int
    base: str
    vae: str


def default_dtype() -> str:
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def layout_of(config: dict) -> str:
    """The in-context layout a run's adapter was trained with: its config's `objective.layout` (a packed
    run's adapter entry `layout`); runs from before the setting were spatial. The sampler uses it
    (`SampleSettings.layout`), so a run always samples the way it trained."""
    return (config.get("objective") or {}).get("layout") or "spatial"


def read_config(path: str | Path) -> tuple[dict, int]:
    """(the run's config dict, step) of the latest (or given) checkpoint, without reading arrays."""
    if packed.is_packed(path):  # a packed run (base, adapters and autoencoder in one folder)
        return packed.read_config(path)
    with run_folder.open_run(path, howto=HOWTO) as run:
        return run.config, run.step


def _check_dir(flag: str, path: str | None, what: str, kind: str) -> Path:
    """A converted folder of model `kind` ("mmdit" / "vae"), or a one-line error saying what to do."""
    import json

    if not path:
        raise ValueError(f"{flag}: the run names no converted {what} (trained on random weights?); "
                         f"sampling never uses random weights: pass {flag} DIR or {HOWTO}")
    p = as_path(path)
    if not (p / "config.json").is_file():
        raise ValueError(f"{flag} {p}: not a converted {what} folder (no config.json); {HOWTO}")
    try:
        found = (json.loads((p / "config.json").read_text()).get("_dreamactor") or {}).get("model")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        found = None
    if found != kind:
        raise ValueError(f"{flag} {p}: holds {found or 'no converted model'!s}, expected the converted {what}; {HOWTO}")
    return p


@dataclasses.dataclass
class Plan:
    """What `load` will read, checked without reading any array (cheap: do it before the inputs)."""
    checkpoint: str
    config: dict
    step: int
    variant: str
    base: Path
    vae: Path
    mcfg: Any
    vcfg: Any
    run: Any = dataclasses.field(default=None, repr=False)  # the open run_folder.RunCheckpoint: `load` reads its adapter
    lcfg: Any = None          # the adapter's LoRAConfig (from the run's fingerprint)


def check(checkpoint: str | Path | None, *, base: str | None = None, vae: str | None = None,
          dtype: str | None = None) -> Plan:
    """The adapter run, the converted base and the VAE exist and fit together (configs only)."""
    if not checkpoint:
        raise ValueError(f"--checkpoint: not given, and sampling never uses random weights; {HOWTO}")
    if packed.is_packed(checkpoint):  # a packed run carries its own base and autoencoder
        if base or vae:
            raise ValueError(f"--base/--vae: {checkpoint} is a packed run, which carries its own base and autoencoder")
        config, step = packed.read_config(checkpoint)
        folder, _ = packed.resolve(checkpoint)
        mcfg = packed.model_config(packed.read_info(folder), dtype or default_dtype())
        return Plan(str(checkpoint), config, step, config["variant"], folder, folder, mcfg, None)
    run = run_folder.open_run(checkpoint, howto=HOWTO)
    try:
        return _check_run(run, checkpoint, base, vae, dtype)
    except BaseException:
        run.close()
        raise


def _check_run(run, checkpoint, base, vae, dtype) -> Plan:
    from dreamactor_jax.weights.checkpoint import load_config

    config, step = run.config, run.step
    variant = config.get("variant", "pose")
    base_dir = _check_dir("--base", base or config.get("base_checkpoint"), "backbone", "mmdit")
    vae_dir = _check_dir("--vae", vae or (config.get("preprocess") or {}).get("vae_checkpoint"), "VAE", "vae")
    dtype = dtype or default_dtype()

    mcfg = load_config(base_dir, dtype=dtype, param_dtype=dtype)
    trained, lcfg = run.architecture()
    diffs = run_folder.architecture_diffs(mcfg, trained)
    if diffs:
        name = (config.get("model") or {}).get("name") or "its fingerprint's"
        raise ValueError(f"--base {base_dir}: not the backbone the adapter was trained on ({name}): "
                         + ", ".join(diffs[:3]))
    if mcfg.in_channels != 2 * mcfg.out_channels + 1:
        raise ValueError(f"--base {base_dir}: in_channels {mcfg.in_channels}; the in-context input needs "
                         f"noise + condition + mask = {2 * mcfg.out_channels + 1}")
    vcfg = load_config(vae_dir, dtype=dtype)
    if vcfg.latent_channels != mcfg.out_channels:
        raise ValueError(f"--vae {vae_dir}: {vcfg.latent_channels} latent channels, the backbone takes "
                         f"{mcfg.out_channels}")
    return Plan(str(checkpoint), config, step, variant, base_dir, vae_dir, mcfg, vcfg, run, lcfg)


def load(checkpoint: str | Path | None, *, base: str | None = None, vae: str | None = None,
         dtype: str | None = None, plan: Plan | None = None) -> Loaded:
    """Reads adapter, base and VAE, checks they fit together, merges the adapter into the base."""
    from dreamactor_jax.models import lora as lora_lib
    from dreamactor_jax.weights.checkpoint import load_params

    plan = plan or check(checkpoint, base=base, vae=vae, dtype=dtype)
    if packed.is_packed(plan.checkpoint):
        return packed.load(plan.checkpoint, dtype=str(plan.mcfg.dtype))
    with plan.run:  # opened by `check`: its meta read there, the adapter now, then closed
        lora = plan.run.read_lora()
    config, step, variant, base_dir, vae_dir = plan.config, plan.step, plan.variant, plan.base, plan.vae
    mcfg, vcfg, lcfg, dtype = plan.mcfg, plan.vcfg, plan.lcfg, str(plan.mcfg.dtype)
    params = load_params(base_dir, dtype=jnp.dtype(dtype))
    try:
        donate = () if jax.default_backend() == "cpu" else (0,)  # reuse the base's buffers on GPU/TPU
        params = jax.jit(lambda p, a: lora_lib.merge_lora(p, a, mcfg, lcfg), donate_argnums=donate)(params, lora)
    except (KeyError, TypeError) as e:
        raise ValueError(f"--checkpoint: adapter does not fit the backbone at {base_dir} ({e})") from None
    vparams = load_params(vae_dir)
    return Loaded(mcfg, params, vcfg, vparams, variant, config, step, str(base_dir), str(vae_dir))


def codec(run, tiling=None) -> tuple[Any, Any]:
    """(encode, decode) of a loaded run: its VAE (`tiling`: a `vae_tiling.Tiling`, None keeps the VAE
    config's) or, for a packed run without one, the pack's own autoencoder."""
    from dreamactor_jax.models import vaes

    if run.vcfg is None:  # a packed run's own autoencoder (e.g. the toy model's exact Haar transform)
        return run.encode, run.decode
    vcfg = run.vcfg if tiling is None else dataclasses.replace(run.vcfg, tiling=tiling)
    if jax.default_backend() == "cpu" and (run.config.get("train") or {}).get("fast_compile"):
        vcfg = dataclasses.replace(vcfg, xla_options=(("xla_backend_optimization_level", 0),))  # smoke runs
    vae = vaes.module_for(vcfg)  # models.vae or models.vae15 (HunyuanVideo-1.5), by the VAE's config
    return (lambda x: vae.encode_latents(run.vparams, vcfg, x)), (lambda z: vae.decode_latents(run.vparams, vcfg, z))
