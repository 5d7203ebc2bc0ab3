"""The toy training pipeline: exact autoencoder, layouts, and a few-step run whose loss falls."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamactor_jax import incontext
from dreamactor_jax.toy import autoencoder as ae
from dreamactor_jax.toy import model as tm
from dreamactor_jax.toy.demo import load_config
from dreamactor_jax.train import objective as obj

jax.config.update("jax_enable_x64", False)


def test_autoencoder_is_exact_orthonormal_and_commutes_with_the_canvas():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, 8, 12, 3)).astype(np.float32)
    z = ae.encode(x)
    assert z.shape == (2, 3, 4, 6, ae.LATENT_CHANNELS)
    np.testing.assert_allclose(ae.decode(z), x, atol=1e-6)
    np.testing.assert_allclose((z ** 2).sum(), (x ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ae.encode(jnp.asarray(x))), z, atol=1e-6)
    ref, drv = x[:, 0], rng.uniform(-1, 1, x.shape).astype(np.float32)
    canvas = incontext.make_canvas(ref, drv, "spatial", fill=0.0)
    np.testing.assert_allclose(ae.encode(canvas), np.concatenate([ae.encode(canvas[..., :12, :]),
                                                                  ae.encode(drv)], 3), atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        ae.encode(x[:, :, :7])


@pytest.mark.parametrize("layout", ["i2v", "spatial", "temporal"])
def test_layouts_put_reference_and_motion_where_the_mask_says(layout):
    rng = np.random.default_rng(1)
    video = jnp.asarray(rng.uniform(-1, 1, (2, 3, 8, 8, 3)), jnp.float32)
    pose = jnp.asarray(rng.uniform(-1, 1, (2, 3, 8, 8, 3)), jnp.float32)
    tgt, cond, mask = tm.build(layout, video, None if layout == "i2v" else pose, video[:, 0])
    assert tgt.shape == cond.shape and mask.shape == tgt.shape[:4] + (1,)
    assert float(jnp.abs(cond * (1 - mask)).max()) == 0.0  # the condition is zero where M is 0
    v = tm.video_part(layout, tgt)
    np.testing.assert_allclose(np.asarray(ae.decode(v)), np.asarray(video), atol=1e-5)
    w = tm.loss_weights(layout, tgt.shape)
    assert w.shape == tgt.shape[1:4] + (1,)
    assert float(w.sum()) == np.prod(v.shape[1:4])  # the loss covers exactly the video part
    if layout == "spatial":  # the same region as the project's objective
        rw = obj.region_weights(tgt.shape[3], "target")
        np.testing.assert_array_equal(np.asarray(w[0, 0, :, 0]), np.asarray(rw))


def test_config_variants_and_bad_options():
    c = load_config("gpu,layout=temporal,aug=off,seed=3")
    assert c.lora.layout == "temporal" and not c.lora.pose_aug and c.lora.seed == 3
    assert c.model.rope_axes_dim[0] + c.model.rope_axes_dim[1] + c.model.rope_axes_dim[2] == c.model.head_dim
    for name in ("cpu", "ci"):
        m = load_config(name).model
        assert sum(m.rope_axes_dim) == m.head_dim
    with pytest.raises(ValueError, match="variant"):
        load_config("tpu")
    with pytest.raises(ValueError, match="unknown option"):
        load_config("ci,lr=1")
    c = load_config("gpu,prior.steps=15,check_loss=1")
    assert c.prior.steps == 15 and c.check_loss is True


def test_few_steps_of_prior_and_pose_lora_make_the_loss_fall():
    """The CI check of issue 9: a few steps of each stage on the `ci` config; the losses fall."""
    from dreamactor_jax.toy import data as toy_data
    from dreamactor_jax.toy.adapter import train_lora
    from dreamactor_jax.toy.pretrain import pretrain_prior
    from dreamactor_jax.toy.world import WorldConfig

    c = load_config("ci")
    wcfg = WorldConfig(**dict(c.world))
    prior_data = toy_data.prior_set(wcfg, 16, 0, num_chars=8, num_motions=8)
    prior, losses, _ = pretrain_prior(c, prior_data, log=lambda m: None)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    pose_data = toy_data.pose_set(wcfg, 16, num_chars=8, num_motions=8, aug_copies=1)
    assert pose_data["pose_aug"].shape == (16, 1) + pose_data["pose"].shape[1:]
    lora, losses, _, (before, after) = train_lora(c, prior, pose_data, log=lambda m: None)
    assert np.isfinite(losses).all() and after < before


def test_still_baseline_scores_against_the_exact_target():
    from dreamactor_jax.toy.evaluate import frame_grid, score
    from dreamactor_jax.toy.world import WorldConfig, heldout_cases

    wcfg = WorldConfig(height=32, width=32, num_frames=4)
    cases = heldout_cases(2, wcfg)
    exact = score(np.stack([k.target.video for k in cases]), cases, wcfg)
    still = score(np.stack([np.repeat(k.reference[None], 4, 0) for k in cases]), cases, wcfg)
    assert exact["psnr"] > 60 and exact["kp_err"] < 0.02 and abs(exact["leakage"]) < 0.3
    assert still["psnr"] < exact["psnr"] and still["kp_err"] > exact["kp_err"]
    grid = frame_grid([cases[0].target.video, cases[1].driving.pose_video], scale=2)
    assert grid.shape == ((32 * 2 + 1) * 2, 4 * 32 * 2, 3)
