"""DreamActor-M2 in JAX. The public API (`dreamactor_jax.api`) is importable from here:

    import dreamactor_jax as da
    run = da.load_run("runs/pose")                  # or da.load_base("ckpt/i2v-33ch") for the backbone alone
    video, _ = da.make_animator(run).animate(ref, motion)

Those names are imported on first use, so `import dreamactor_jax` loads neither JAX nor the models.
"""

from __future__ import annotations

_API = ("Animator", "Base", "Loaded", "SampleSettings", "default_dtype", "forward", "load_base", "load_run",
        "load_vae", "make_animator", "text_cond")

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from dreamactor_jax import api

        return getattr(api, name)
    raise AttributeError(f"module 'dreamactor_jax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
