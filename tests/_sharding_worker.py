"""Sharding checks run on emulated devices, in a process of their own.

tests/test_sharding.py starts this module with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be set
before JAX starts, so the checks cannot run in the test process). It prints one
JSON object of measurements; the assertions are in the test. With the argument
``fits`` it also runs the fits (MAP, default MAP, NUTS) on four devices, a study
(minutes on 2 cores).
"""

from __future__ import annotations

import functools
import json
import sys
import time


def _data(task, num_trials=1001):
    import jax

    import psyphy_pp as pp

    model = pp.WPPM(input_dim=2, basis_degree=2, extra_dims=1, task=task)
    truth = model.sample_prior(jax.random.PRNGKey(123))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=7, trials_per_ref=21,
                                         key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs[:num_trials], comps[:num_trials],
                       key=jax.random.PRNGKey(4))
    return model, truth, data


def _as_partial(loss):
    """make_loss gives a functools.partial on one device, a jax Partial on several."""
    import jax

    return loss if isinstance(loss, jax.tree_util.Partial) else jax.tree_util.Partial(loss)


@functools.cache
def _value_and_grad():
    """One compiled value-and-grad that takes the loss (a pytree) as an argument."""
    import jax

    from psyphy_pp._jit import jit

    return jit(lambda loss, params, key: jax.value_and_grad(loss)(params, key))


def _loss_and_grad(model, data, params, key, devices):
    import numpy as np

    from psyphy_pp.scratch import make_loss

    loss = _as_partial(make_loss(model, data, devices=devices))
    fn = _value_and_grad()
    value, grad = fn(loss, params, key)
    compiled = fn.lower(loss, params, key).compile()
    hlo = compiled.as_text()
    return loss, float(value), np.asarray(grad["W"]).tolist(), {
        "all_gather": "all-gather" in hlo,
        "all_reduce": "all-reduce" in hlo,
        "argument_bytes": compiled.memory_analysis().argument_size_in_bytes,
    }


def main() -> None:
    import dataclasses

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh

    import psyphy_pp as pp

    out = {"num_devices": jax.device_count(), "seconds": {}}
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        out["seconds"][name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    key = jax.random.PRNGKey(7)

    # 1. loss and gradient, sharded vs unsharded, for both likelihoods
    # ("blocks": 100-trial blocks, more than one per device: one block loop per device)
    tasks = [("quadrature", pp.Oddity(method="quadrature")),
             ("mc-blocks", pp.Oddity(method="mc", num_samples=16, chunk_size=100))]
    if "fits" in sys.argv[1:]:  # the other two combinations of likelihood and blocking
        tasks += [("mc", pp.Oddity(method="mc", num_samples=16)),
                  ("blocks", pp.Oddity(method="quadrature", chunk_size=100))]
    for name, task in tasks:
        model, truth, data = _data(task)
        out["num_trials"] = data.num_trials
        _, v1, g1, _ = _loss_and_grad(model, data, truth, key, 1)
        loss4, v4, g4, hlo4 = _loss_and_grad(model, data, truth, key, 4)
        out[name] = {"value": [v1, v4], "grad": [g1, g4], "hlo4": hlo4,
                     "data_bytes": sum(a.nbytes for a in loss4.args)}

        # 2. the padding mask: garbage in the padded rows changes nothing
        refs, comps, y, mask = loss4.args
        pad = ~np.asarray(mask)
        out[name]["num_padded"] = int(pad.sum())
        garbage = jax.tree_util.Partial(
            loss4.func,
            jax.device_put(np.where(pad[:, None], 0.9, np.asarray(refs)), refs.sharding),
            jax.device_put(np.where(pad[:, None], -0.9, np.asarray(comps)), comps.sharding),
            jax.device_put(np.where(pad, 1.0 - np.asarray(y), np.asarray(y)), y.sharding),
            mask,
        )
        # the compiled value-and-grad of loss4 takes the loss as an argument: reused
        vg, gg = _value_and_grad()(garbage, truth, key)
        out[name]["mask_value_diff"] = float(vg - v4)
        out[name]["mask_grad_diff"] = float(np.max(np.abs(np.asarray(gg["W"]) - np.asarray(g4))))

    lap("loss_and_grad")
    # 4. prob_correct: default (all devices) vs one device
    model, truth, data = _data(pp.Oddity(method="mc", num_samples=16, bandwidth=0.1))
    p4 = model.prob_correct(truth, data.refs, data.comparisons, key)
    p1 = model.prob_correct(truth, data.refs, data.comparisons, key, devices=1)
    out["prob_correct"] = {"shape": list(p4.shape), "max_diff": float(jnp.max(jnp.abs(p4 - p1)))}

    # 6. bad settings fail before compiling, naming the argument
    errors = {}
    for label, devices in [("too_many", 5), ("zero", 0),
                           ("axis", Mesh(np.array(jax.devices()), ("batch",)))]:
        try:
            pp.fit_map(model, data, num_steps=1, progress_bar=False, devices=devices)
            errors[label] = None
        except ValueError as err:
            errors[label] = str(err)
    out["errors"] = errors
    if "fits" not in sys.argv[1:]:
        print(json.dumps(out))
        return

    # 3. short MAP fits, both loops, Monte Carlo noise: same losses and params
    for fit in (pp.fit_map, pp.fit_map_scratch):
        runs = [fit(model, data, num_steps=5, progress_bar=False, devices=d) for d in (1, None)]
        out[fit.__name__] = {  # devices=None: every device
            "losses": [r.losses.tolist() for r in runs],
            "W": [np.asarray(r.params["W"]).tolist() for r in runs],
            "num_devices": [r.settings["num_devices"] for r in runs],
        }

    lap("fits")
    # 3b. the default path, a whole default fit: 1 device against all of them
    model_d, _, data_d = _data(pp.Oddity(), num_trials=301)  # 301: padded on 4 devices
    grid = pp.designs.grid_points(12, 2)
    runs = [pp.fit_map(model_d, data_d, progress_bar=False, devices=d) for d in (1, None)]
    out["default_fit"] = {
        "converged": [r.converged for r in runs],
        "num_steps": [r.num_steps for r in runs],
        "num_devices": [r.settings["num_devices"] for r in runs],
        "W": [np.asarray(r.params["W"]).tolist() for r in runs],
        "Sigma": [np.asarray(model_d.covariance(r.params, grid)).tolist() for r in runs],
    }
    lap("default_fit")
    # 5. NUTS: parallel chains when devices >= chains, trial sharding otherwise
    small = dataclasses.replace(model, basis_degree=1, task=pp.Oddity(method="quadrature"))
    tiny = pp.TrialData(data.refs[:30], data.comparisons[:30], data.responses[:30])
    nuts = dict(num_warmup=2, num_samples=2, progress_bar=False)
    par = pp.fit_nuts(small, tiny, num_chains=2, **nuts)
    seq = pp.fit_nuts(small, tiny, num_chains=1, **nuts)  # one chain: trials over 4 devices
    out["nuts"] = {
        "parallel": [par.settings["chain_method"], par.settings["num_devices"]],
        "sharded": [seq.settings["chain_method"], seq.settings["num_devices"]],
        "finite": bool(np.all(np.isfinite(seq.sample_stats["lp"]))),
    }

    lap("nuts")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
