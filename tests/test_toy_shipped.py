"""The toy model shipped in `dreamactor_jax/toy/pretrained/`: its files, its card, and its scores.

The card (`card.json`) was written by the command that trained the model on the GPU. Here: every
weight file is the one the card hashed, the whole pack stays small, the card's command is the one
the toy recipe describes (`dreamactor_jax/toy/recipe.py`, `configs/toy_pose.py`: `SHIP_COMMAND`, run
with the card's config), and the model reproduces
the card's `check` scores: the first held-out cases sampled in float32 at full matmul precision,
recomputed on this machine, within the card's stated tolerance.
"""

import json

import pytest

from dreamactor_jax.sampling import packed
from dreamactor_jax.toy import recipe, shipped

pytestmark = pytest.mark.skipif(not (shipped.SHIPPED / "card.json").is_file(),
                                reason="no shipped toy model in dreamactor_jax/toy/pretrained")
MAX_BYTES = 25 * 10**6


def test_files_are_the_cards_small_and_stored_in_half_precision():
    card = shipped.read_card()
    info = packed.read_info(shipped.SHIPPED)
    weights = sorted(p.name for p in shipped.SHIPPED.glob("*.safetensors"))
    assert weights == sorted(card["files"]) == sorted(info["base"] + [a["file"] for a in info["adapters"].values()])
    for name, digest in card["files"].items():
        assert packed.sha256(shipped.SHIPPED / name) == digest, name
    total = sum(p.stat().st_size for p in shipped.SHIPPED.rglob("*") if p.is_file())
    assert total < MAX_BYTES, total
    assert info["dtype"] in ("bfloat16", "float16") and info["autoencoder"]["kind"] == "haar"
    for key in ("command", "config", "commit", "date", "scores", "check", "check_tolerance"):
        assert card.get(key), key
    assert set(card["scores"]) >= {"still", "prior", "pose"}


def test_the_cards_command_is_the_one_the_config_describes():
    mod = recipe
    card = shipped.read_card()
    assert card["command"] == mod.SHIP_COMMAND
    assert card["config"] == mod.SHIP_COMMAND.split("--config ")[1].split()[0]
    # every value the card recorded is the config's today (through JSON, as the card stores it); the
    # code may have grown sections since (e.g. `e2e`), which did not take part in that run
    now = json.loads(json.dumps(mod.get_config(card["config"]).to_dict()))

    def same(rec, cur, path=""):
        if isinstance(rec, dict):
            for k, v in rec.items():
                assert isinstance(cur, dict) and k in cur, f"config has no {path}{k}"
                same(v, cur[k], f"{path}{k}.")
        else:
            assert rec == cur, f"{path[:-1]}: card {rec!r}, config {cur!r}"
    same(card["config_resolved"], now)
    if "e2e" in card:
        assert card["e2e"]["command"] == mod.E2E_COMMAND
    info = packed.read_info(shipped.SHIPPED)
    assert info["extra"]["toy_config"] == card["config_resolved"]


def test_shipped_model_reproduces_its_cards_check_scores():
    card = shipped.read_card()
    want, tol = card["check"], card["check_tolerance"]
    got = shipped.check_scores(shipped.SHIPPED, cases=want["cases"], steps=want["steps"])
    assert set(got["scores"]) == set(want["scores"])
    for method, cases in want["scores"].items():
        for i, (w, g) in enumerate(zip(cases, got["scores"][method])):
            for k, t in tol.items():
                assert abs(g[k] - w[k]) <= t, (method, i, k, g[k], w[k])
