"""psyphy_pp's MCMC driver against NumPyro's own MCMC loop (the reference)."""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from psyphy_pp._mcmc import _run_in_threads, _Stopped, run_kernel
from psyphy_pp._progress import _NoBar

FIELDS = ("num_steps", "diverging", "adapt_state.step_size")


def _model(y):
    """A location, a constrained scale and a deterministic site."""
    loc = numpyro.sample("loc", dist.Normal(0.0, 3.0).expand([2]))
    scale = numpyro.sample("scale", dist.HalfNormal(2.0))
    numpyro.deterministic("ratio", loc / scale)
    numpyro.sample("y", dist.Normal(loc, scale), obs=y)


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_run_kernel_reproduces_numpyro_mcmc_draw_for_draw(chain_method):
    y = jnp.asarray(np.random.default_rng(0).normal([1.0, -2.0], 0.5, size=(20, 2)))
    settings = dict(num_warmup=60, num_samples=40, num_chains=2, chain_method=chain_method)
    mcmc = MCMC(NUTS(_model), progress_bar=False, **settings)
    mcmc.run(jax.random.PRNGKey(3), y, extra_fields=FIELDS)
    want = mcmc.get_samples(group_by_chain=True)
    want_fields = mcmc.get_extra_fields(group_by_chain=True)

    got = run_kernel(NUTS(_model), jax.random.PRNGKey(3), (y,), {}, fields=FIELDS,
                     progress_bar=False, **settings)

    assert set(got.samples) == set(want) == {"loc", "scale", "ratio"}
    for name, value in want.items():
        assert got.samples[name].shape == value.shape
        # Same kernel, keys and arithmetic; only the compiler options differ.
        np.testing.assert_allclose(got.samples[name], value, rtol=1e-4, atol=1e-5)
    for name in FIELDS:
        np.testing.assert_allclose(got.fields[name], want_fields[name], rtol=1e-4)


def test_threaded_chains_give_the_sequential_draws():
    y = jnp.asarray(np.random.default_rng(1).normal([0.5, 1.0], 0.3, size=(15, 2)))
    settings = dict(num_warmup=40, num_samples=30, num_chains=3, fields=FIELDS,
                    progress_bar=False)
    seq = run_kernel(NUTS(_model), jax.random.PRNGKey(5), (y,), {},
                     chain_method="sequential", **settings)
    thr = run_kernel(NUTS(_model), jax.random.PRNGKey(5), (y,), {},
                     chain_method="threaded", **settings)
    for name, value in seq.samples.items():
        # The same compiled chunk, keys and arithmetic, only run side by side.
        np.testing.assert_array_equal(thr.samples[name], value)
    for name in FIELDS:
        np.testing.assert_array_equal(thr.fields[name], seq.fields[name])


def test_a_failing_threaded_chain_stops_the_others_and_raises():
    started = threading.Event()
    chunks_after_failure = []

    def run(state, compiled, bar, stop):
        if state == "bad":
            started.wait(5)
            raise RuntimeError("chain failed")
        out = []
        for _ in range(1000):
            started.set()
            if stop.is_set():
                raise _Stopped
            time.sleep(0.005)
            out.append({"x": np.zeros(1)})
        chunks_after_failure.append(len(out))
        return out

    with pytest.raises(RuntimeError, match="chain failed"):
        _run_in_threads(run, ["good", "bad"], None, _NoBar())
    assert not chunks_after_failure  # the good chain stopped early instead of finishing
