"""psyphy_pp's MCMC driver against NumPyro's own MCMC loop (the reference)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from psyphy_pp._mcmc import run_kernel

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
