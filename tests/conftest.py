"""Shared fixtures: the P-small problem of DESIGN.md section 3."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import pytest

import psyphy_pp as pp


class Problem(NamedTuple):
    model: pp.WPPM
    truth: dict
    data: pp.TrialData


def make_problem(task: pp.Oddity | None = None, *, grid_size: int = 3, trials_per_ref: int = 40,
                 basis_degree: int = 2, seed: int = 123) -> Problem:
    """P-small: D = 2, basis_degree 2, 3 x 3 grid, 40 trials per reference."""
    model = pp.WPPM(input_dim=2, basis_degree=basis_degree, extra_dims=1,
                    task=task or pp.Oddity())
    truth = model.sample_prior(jax.random.PRNGKey(seed))
    refs, comps = pp.designs.grid_design(model, truth, grid_size=grid_size,
                                         trials_per_ref=trials_per_ref, key=jax.random.PRNGKey(3))
    data = pp.simulate(model, truth, refs, comps, key=jax.random.PRNGKey(4))
    return Problem(model, truth, data)


@pytest.fixture(scope="session")
def p_small() -> Problem:
    return make_problem()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
