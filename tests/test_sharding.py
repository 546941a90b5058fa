"""Trials sharded over a device mesh (psyphy_pp.sharding and the devices= settings).

The test process sees one CPU device, where ``devices=None`` must be the
unsharded code path. The multi-device checks run in a subprocess with four
emulated CPU devices (``tests/_sharding_worker.py``); the two-process
``jax.distributed`` run is ``examples/multi_process_fit.py``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import psyphy_pp as pp
from psyphy_pp.scratch import make_loss
from psyphy_pp.sharding import TRIAL_AXIS, pad_trials, place_trials, trial_sharding

ROOT = Path(__file__).resolve().parents[1]


# -- one device (the test process) ---------------------------------------------------
@pytest.mark.parametrize(
    "devices,match",
    [(0, r"devices must be .* between 1 and the 1 device\(s\) JAX sees .* got 0"),
     (-2, "got -2"),
     (2, r"between 1 and the 1 device\(s\) JAX sees \(jax.devices\(\)\), got 2"),
     (True, "got True"),
     ("cpu", "got 'cpu'"),
     ([], r"got the sequence \[\]"),
     (Mesh(np.array(jax.devices()), ("batch",)),
      r"devices: a Mesh must have exactly one axis, named 'trials'; got axis names \('batch',\)")],
    ids=["zero", "negative", "too-many", "bool", "str", "empty", "mesh-axis"],
)
def test_trial_sharding_rejects_bad_devices(devices, match):
    with pytest.raises(ValueError, match=match):
        trial_sharding(devices)


@pytest.mark.parametrize("fit", [pp.fit_map, pp.fit_map_scratch, pp.fit_nuts])
def test_fits_check_devices_before_compiling(p_small, fit):
    with pytest.raises(ValueError, match="devices must be"):
        fit(p_small.model, p_small.data, progress_bar=False, devices=0)


def test_prob_correct_checks_devices(p_small):
    with pytest.raises(ValueError, match="devices must be"):
        p_small.model.prob_correct(p_small.truth, p_small.data.refs, p_small.data.comparisons,
                                   jax.random.PRNGKey(0), devices=3)


def test_one_device_is_the_unsharded_path(p_small):
    assert trial_sharding(None) is None
    assert trial_sharding(1) is None
    assert trial_sharding(jax.devices()) is None
    assert trial_sharding(Mesh(np.array(jax.devices()), (TRIAL_AXIS,))) is None
    arrays = place_trials(None, p_small.data.refs, p_small.data.comparisons, p_small.data.responses)
    assert arrays.mask is None and arrays.refs.shape == (p_small.data.num_trials, 2)
    # make_loss keeps the data as constants of the compiled step, as before
    assert isinstance(make_loss(p_small.model, p_small.data), functools.partial)
    fit = pp.fit_map(p_small.model, p_small.data, num_steps=2, progress_bar=False)
    assert fit.settings["num_devices"] == 1


def test_pad_trials_appends_copies_of_trial_zero():
    refs = np.arange(10.0).reshape(5, 2)
    y = np.array([1, 0, 1, 1, 0])
    (r, yy), mask = pad_trials([refs, y], 4)
    assert r.shape == (8, 2) and yy.shape == (8,)
    np.testing.assert_array_equal(r[:5], refs)  # real trials keep their indices
    np.testing.assert_array_equal(r[5:], np.broadcast_to(refs[0], (3, 2)))
    np.testing.assert_array_equal(mask, [True] * 5 + [False] * 3)
    (r2,), mask2 = pad_trials([refs], 5)
    assert r2.shape == (5, 2) and mask2.all()
    with pytest.raises(ValueError, match="at least one trial"):
        pad_trials([np.zeros((0, 2))], 4)


def test_numpyro_model_mask_gives_padding_zero_weight(p_small):
    """The masked padding rows add exactly nothing to the log density or its gradient."""
    from numpyro.infer.util import log_density

    model, truth, data = p_small.model, p_small.truth, p_small.data
    model = pp.WPPM(basis_degree=2, task=pp.Oddity(method="quadrature"))
    (refs, comps, y), mask = pad_trials([data.refs, data.comparisons, data.responses], 7)
    refs[~mask], comps[~mask], y[~mask] = 0.5, -0.5, 1 - y[~mask]  # garbage in the padding

    def density(W, refs, comps, y, mask):
        kwargs = {} if mask is None else {"mask": mask}
        return log_density(model.numpyro_model, (refs, comps, y), kwargs, {"W": W})[0]

    grad = jax.jit(jax.value_and_grad(density), static_argnums=())
    v_pad, g_pad = grad(truth["W"], jnp.asarray(refs, jnp.float32), jnp.asarray(comps, jnp.float32),
                        jnp.asarray(y, jnp.float32), jnp.asarray(mask))
    n = data.num_trials
    v, g = grad(truth["W"], jnp.asarray(refs[:n], jnp.float32), jnp.asarray(comps[:n], jnp.float32),
                jnp.asarray(y[:n], jnp.float32), None)
    np.testing.assert_allclose(v_pad, v, rtol=1e-6)
    np.testing.assert_allclose(g_pad, g, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(g))))


# -- four emulated devices (a subprocess) -----------------------------------------------
def _run_worker(*args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "_sharding_worker.py"), *args],
                         capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices():
    """Losses, gradients, padding, prob_correct and errors on four devices."""
    return _run_worker()


@pytest.fixture(scope="module")
def four_device_fits():
    """The same, plus fits on four devices: MAP, the default MAP, NUTS (a study)."""
    return _run_worker("fits")


def _assert_grads_agree(grads, rtol):
    ref = np.asarray(grads[0])
    for g in grads[1:]:
        np.testing.assert_allclose(g, ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))


def test_worker_sees_four_devices_and_1001_trials(four_devices):
    assert four_devices["num_devices"] == 4
    assert four_devices["num_trials"] == 1001


# make test checks one block per device with the quadrature and several blocks per
# device with Monte Carlo (both code paths, both likelihoods); the other two
# combinations run with the fits, in make test-studies.
_STUDY = pytest.mark.study


def _sharded(request, name):
    fixture = "four_device_fits" if name in ("blocks", "mc") else "four_devices"
    return request.getfixturevalue(fixture)[name]


@pytest.mark.parametrize("name", ["quadrature", pytest.param("blocks", marks=_STUDY)])
def test_sharded_loss_and_gradient_agree_quadrature(request, name):
    """One block per device (XLA partitions) and several (a block loop per device)."""
    r = _sharded(request, name)  # devices 1 and 4
    np.testing.assert_allclose(r["value"][1:], r["value"][0], rtol=1e-5)
    _assert_grads_agree(r["grad"], rtol=1e-5)
    assert r["num_padded"] == 3  # 1001 trials on 4 devices
    assert not r["hlo4"]["all_gather"], "the trials were gathered on every device"
    assert r["hlo4"]["all_reduce"], "no cross-device sum in the sharded program"
    assert r["hlo4"]["argument_bytes"] < r["data_bytes"] / 3  # a quarter of the data per device


@pytest.mark.parametrize("name", [pytest.param("mc", marks=_STUDY), "mc-blocks"])
def test_sharded_loss_and_gradient_agree_monte_carlo(request, name):
    """Same key, same noise: the MC loss does not depend on the number of devices.

    "mc-blocks" has several blocks per device, so each device runs its own block
    loop and passes its shard's global trial indices to the noise generator.
    The gradient's tolerance is looser: with bandwidth 1e-2 the smoothed decision is
    steep, and even ``jit`` against eager evaluation of one device differ by ~1e-5
    of the largest gradient entry in float32.
    """
    r = _sharded(request, name)
    np.testing.assert_allclose(r["value"][1:], r["value"][0], rtol=1e-5)
    _assert_grads_agree(r["grad"], rtol=1e-4)
    assert not r["hlo4"]["all_gather"]


@pytest.mark.parametrize("name", ["quadrature", pytest.param("mc", marks=_STUDY),
                                  pytest.param("blocks", marks=_STUDY), "mc-blocks"])
def test_padding_contributes_exactly_zero(request, name):
    r = _sharded(request, name)
    assert r["mask_value_diff"] == 0.0
    assert r["mask_grad_diff"] == 0.0


@pytest.mark.parametrize("fit", ["fit_map", "fit_map_scratch"])
@pytest.mark.study  # the fits take minutes: make test-studies
def test_short_fit_gives_the_same_params_on_four_devices(four_device_fits, fit):
    r = four_device_fits[fit]
    assert r["num_devices"] == [1, 4]  # devices=1, devices=None (every device)
    np.testing.assert_allclose(r["losses"][1], r["losses"][0], rtol=1e-5)
    W1, W4 = np.asarray(r["W"][0]), np.asarray(r["W"][1])
    np.testing.assert_allclose(W4, W1, rtol=1e-4, atol=1e-5 * np.max(np.abs(W1)))


@pytest.mark.study  # the fits take minutes: make test-studies
def test_default_fit_agrees_on_one_and_four_devices(four_device_fits):
    """Issue 12: a whole default fit_map on 1 and on 4 devices ends at the same MAP.

    Both runs must converge. W is compared after aligning the rotation gauge
    (diagnostics.align_gauge): Sigma = U U^T and the prior are invariant under a
    common right rotation of every W block, so the objective is flat along it.
    Sigma on a 12 x 12 grid and the aligned W must agree within 1e-4 (relative).
    """
    from psyphy_pp.diagnostics import align_gauge

    out = four_device_fits["default_fit"]
    assert out["converged"] == [True, True]
    assert out["num_devices"] == [1, 4]
    W1, W4 = (np.asarray(w) for w in out["W"])
    S1, S4 = (np.asarray(s) for s in out["Sigma"])
    assert np.max(np.abs(align_gauge(W4, W1) - W1)) <= 1e-4 * np.max(np.abs(W1))
    assert np.max(np.abs(S4 - S1)) <= 1e-4 * np.max(np.abs(S1))


def test_prob_correct_sharded_by_default(four_devices):
    assert four_devices["prob_correct"]["shape"] == [1001]
    assert four_devices["prob_correct"]["max_diff"] < 1e-5


@pytest.mark.study  # the fits take minutes: make test-studies
def test_nuts_parallel_chains_or_sharded_trials(four_device_fits):
    r = four_device_fits["nuts"]
    assert r["parallel"] == ["parallel", 1]  # 2 chains on 4 devices
    assert r["sharded"] == ["sequential", 4]  # 1 chain: trials over 4 devices
    assert r["finite"]


def test_bad_devices_in_a_four_device_process(four_devices):
    errors = four_devices["errors"]
    assert "between 1 and the 4 device(s)" in errors["too_many"] and "got 5" in errors["too_many"]
    assert "got 0" in errors["zero"]
    assert "named 'trials'" in errors["axis"] and "('batch',)" in errors["axis"]


# -- two processes over loopback ------------------------------------------------------------
@pytest.mark.study  # ~2-8 min on 2 cores: make test-studies
def test_two_processes_give_the_one_process_map():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multi_process_fit.py"), "--num-processes", "2",
         "--grid-size", "3", "--trials-per-ref", "10", "--num-steps", "10"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
    )
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    assert "all processes hold the same W: True" in out.stdout
    assert "AGREE" in out.stdout
