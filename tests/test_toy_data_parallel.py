"""The toy prior trained data parallel over 2 fake CPU devices equals one device (issue 9's GPU runs).

The 2-device part runs in a child process (XLA's host device count is fixed when jax starts).
"""

from __future__ import annotations

import numpy as np
import pytest

from fake_devices import run_on_fake_devices


def test_prior_on_two_devices_equals_one():
    out = run_on_fake_devices(__file__, count=2, timeout=900)
    assert "OK" in out


def test_bad_device_counts_are_refused():
    from dreamactor_jax.toy.pretrain import data_parallel

    with pytest.raises(ValueError, match="prior.devices"):
        data_parallel(0, 8)
    with pytest.raises(ValueError, match="prior.devices"):
        data_parallel(1000, 8)
    placement, split = data_parallel(1, 8)
    assert split is None


def _child():
    import jax

    from dreamactor_jax.toy import data as toy_data
    from dreamactor_jax.toy.recipe import load as load_config
    from dreamactor_jax.toy.pretrain import data_parallel, pretrain_prior
    from dreamactor_jax.toy.world import WorldConfig

    assert jax.device_count() == 2, jax.devices()
    try:
        data_parallel(2, 5)
        raise AssertionError("an odd batch was split over 2 devices")
    except ValueError as e:
        assert "prior.batch" in str(e)
    c = load_config("ci", ["--config.prior.steps=6"])
    wcfg = WorldConfig(**dict(c.world))
    data = toy_data.prior_set(wcfg, 16, 0, num_chars=8, num_motions=8)
    one, losses1, _ = pretrain_prior(c, data, log=lambda m: None)
    c2 = load_config("ci", ["--config.prior.steps=6", "--config.prior.devices=2"])
    two, losses2, _ = pretrain_prior(c2, data, log=lambda m: None)
    np.testing.assert_allclose(losses2, losses1, rtol=1e-4)
    # Returned on one device, where the demo's adapter and sampler run: they take it as it is.
    assert all(x.sharding.device_set == {jax.devices()[0]} for x in jax.tree_util.tree_leaves(two))
    from dreamactor_jax.toy.adapter import train_lora
    pose = toy_data.pose_set(wcfg, 8, num_chars=8, num_motions=8, aug_copies=1)
    _, lora_losses, _, _ = train_lora(load_config("ci", ["--config.lora.steps=2"]), two, pose, log=lambda m: None)
    assert np.isfinite(lora_losses).all()
    # Whole parameter vector (leaves near zero take full-size Adam steps on summation-order noise).
    flat = lambda p: np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(p)])  # noqa: E731
    a, b = flat(one), flat(two)
    assert np.linalg.norm(b - a) / np.linalg.norm(a) < 1e-4, np.linalg.norm(b - a) / np.linalg.norm(a)
    # The batch really is split: the compiled step sums gradients across the devices.
    from dreamactor_jax.toy import model as tm
    from dreamactor_jax.toy.pretrain import flow_config, jitted, optim_config, prior_step
    from dreamactor_jax.train.optim import make_optimizer

    placement, split = data_parallel(2, int(c.prior.batch))
    ocfg = optim_config(c.prior)
    statics = (tm.mmdit_config(c.model), tm.text_spec(c.model), flow_config(c), ocfg, int(c.prior.batch),
               float(c.prior.completion), split, 0.0)
    state = jax.device_put((one, make_optimizer(ocfg).init(one), one, jax.numpy.zeros((), jax.numpy.int32)),
                           placement)
    clips = jax.device_put(data["video"], placement)
    hlo = jitted(prior_step).lower(state, clips=clips, key=jax.random.PRNGKey(0), statics=statics).compile().as_text()
    assert "all-reduce" in hlo
    print("OK")


if __name__ == "__main__":
    _child()
