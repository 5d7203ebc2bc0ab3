"""The one reader of a training-run folder (`launch/train.py --workdir`).

Layout: `<workdir>/checkpoints/<step>/` holds three Orbax items, `state` (`{step, lora, opt_state,
rng}`), `data` (the Grain iterator, one JSON per process) and `meta` (JSON: `config`, the run's
config; `fingerprint`, the architecture: `model` as diffusers config arguments and `lora` as
`LoRAConfig` fields; `data`, the data fingerprint; `step`). The trainer's checkpoint manager
(`train/checkpoint.py`) makes its Orbax manager here (`manager`); warm starts, the sampler
(`sampling/loading.py`) and the LoRA exporter (`weights/lora_export.py`) read through `open_run`,
which finds the step and reads the meta once; the adapter is read from the same open checkpoint.
The architecture of a run is `architecture(fingerprint)`, nothing else. Local or gs:// paths.

A ground-floor module: models' configs and Orbax only, so sampling never imports train.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from dreamactor_jax.utils import as_path, resolve_path

ITEMS = ("state", "data", "meta")


def manager(folder, options=None):
    """The Orbax manager of a run's `checkpoints/` folder, with its three items."""
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(folder, options=options, item_names=ITEMS)


def restore_meta(mngr, step: int) -> dict:
    import orbax.checkpoint as ocp

    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta


def checkpoints_folder(path: str | Path):
    """A workdir, its `checkpoints/` folder -> the `checkpoints/` folder (as given when it has none)."""
    p = as_path(path)
    return p / "checkpoints" if (p / "checkpoints").is_dir() else p


def find_step(path: str | Path, step: int | None = None, *, what: str = "--checkpoint",
              howto: str = "") -> tuple[Any, int]:
    """(the checkpoints folder, the step) for a workdir, its checkpoints/ folder or one step folder:
    `step`, else the step folder's own, else the latest. A one-line ValueError otherwise."""
    p = as_path(path)
    hint = f"; {howto}" if howto else ""
    if not p.exists():
        raise ValueError(f"{what} {p}: does not exist{hint}")
    if p.name.isdigit() and (p / "meta").exists() and (p / "state").exists():
        if step is not None and int(p.name) != step:
            raise ValueError(f"step: {p} is step {p.name}, step {step} asked for")
        return p.parent, int(p.name)
    folder = checkpoints_folder(p)
    steps = sorted(int(c.name) for c in folder.iterdir() if c.name.isdigit() and (c / "state").exists()) \
        if folder.is_dir() else []
    if not steps:
        raise ValueError(f"{what} {p}: not a training checkpoint, holds no trained adapter (no <step>/state "
                         f"folder){hint}")
    if step is None:
        return folder, steps[-1]
    if step not in steps:
        raise ValueError(f"step: {step} not in {p} (has {steps})")
    return folder, step


def architecture(fingerprint: Mapping):
    """(MMDiTConfig, LoRAConfig) of a run from its fingerprint: the one place a run's architecture
    comes from."""
    from dreamactor_jax.models.config import MMDiTConfig
    from dreamactor_jax.models.lora import LoRAConfig

    if "model" not in fingerprint or "lora" not in fingerprint:
        raise ValueError("the run's meta has no fingerprint with 'model' and 'lora' (not written by launch/train.py)")
    lora = dict(fingerprint["lora"])
    if "targets" in lora:
        lora["targets"] = tuple(lora["targets"])
    return MMDiTConfig.from_diffusers_config(dict(fingerprint["model"])), LoRAConfig(**lora)


def architecture_diffs(have, want) -> list[str]:
    """`key: have vs want` for each diffusers config argument where two MMDiTConfigs differ (a converted
    base against the architecture a run or config asks for); [] when they are the same backbone."""
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - JSON gives lists
    a, b = have.to_diffusers_config(), want.to_diffusers_config()
    return [f"{k}: {a.get(k)!r} vs {b[k]!r}" for k in b if norm(a.get(k)) != norm(b[k])]


@dataclasses.dataclass
class RunCheckpoint:
    """One checkpoint of a run, opened: where, which step, its meta; the state on request."""

    folder: Any          # the checkpoints/ folder (Path or epath)
    step: int
    meta: dict
    what: str
    mngr: Any = dataclasses.field(default=None, repr=False, compare=False)  # open until `close`

    @property
    def config(self) -> dict:
        return dict(self.meta.get("config") or {})

    @property
    def fingerprint(self) -> dict:
        return dict(self.meta.get("fingerprint") or {})

    @property
    def step_dir(self):
        return self.folder / str(self.step)

    def architecture(self):
        try:
            return architecture(self.fingerprint)
        except ValueError as e:
            raise ValueError(f"{self.what} {self.step_dir}: {e}") from None

    def read_state(self, abstract: Any = None) -> dict:
        """The train state (into `abstract`'s shardings and dtypes when given)."""
        import orbax.checkpoint as ocp

        if self.mngr is None:  # closed: open again
            self.mngr = manager(self.folder)
        try:
            return self.mngr.restore(self.step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds; one line for the user
            raise ValueError(f"{self.what} {self.step_dir}: cannot read its state ({str(e).splitlines()[0][:200]})") from None

    def read_lora(self, abstract: Any = None) -> dict:
        state = self.read_state(None if abstract is None else {"lora": abstract})
        if "lora" not in state:
            raise ValueError(f"{self.what} {self.step_dir}: no adapter ('lora') in its state (keys {sorted(state)})")
        return state["lora"]

    def close(self) -> None:
        if self.mngr is not None:
            self.mngr.close()
            self.mngr = None

    def __enter__(self) -> "RunCheckpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_run(path: str | Path, step: int | None = None, *, what: str = "--checkpoint",
             howto: str = "") -> RunCheckpoint:
    """Opens the checkpoint (`step`, else the latest) of a workdir, its checkpoints/ or one step
    folder and reads its meta; `close()` (or `with`) when done."""
    folder, step = find_step(path, step, what=what, howto=howto)
    folder = resolve_path(folder)
    mngr = manager(folder)
    try:
        meta = restore_meta(mngr, step)
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds; one line for the user
        mngr.close()
        raise ValueError(f"{what} {folder}/{step}: cannot read its meta ({str(e).splitlines()[0][:200]})") from None
    return RunCheckpoint(folder, step, dict(meta or {}), what, mngr)
