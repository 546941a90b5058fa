"""fit_laplace: exact Hessian, inverse on the complement of the rotation gauge, result shape.

References: central finite differences of the float64 gradient (the Hessian),
dense float64 linear algebra (the covariance), and the first-order (delta
method) covariance of Sigma, which must not depend on how the gauge is
resolved.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp import field as _field
from psyphy_pp.diagnostics import posterior_sigma
from psyphy_pp.laplace import _negative_log_posterior, gauge_directions, hessian
from tests.conftest import make_problem


@pytest.fixture(scope="module")
def small():
    """P-small with basis_degree 1 (24 weights): the default call, float32 as users run it."""
    problem = make_problem(basis_degree=1)
    model, _, data = problem
    post = pp.fit_laplace(model, data, num_draws=2000, progress_bar=False)
    return problem, post.map_fit, post


def _sigma_jacobian(model, w, points):
    """d vec Sigma(points) / d w at flat weights ``w`` (in JAX's default precision)."""
    def sigma(w):
        return _field.covariance(w.reshape(model.weights_shape), points, model.diag_term)
    J = jax.jacobian(sigma)(jnp.asarray(w, jnp.result_type(float)))
    return np.asarray(J, np.float64).reshape(-1, w.size)


def test_result_has_the_shape_of_a_nuts_posterior(small):
    (model, _, data), fit, post = small
    assert post.kind == "posterior" and post.method == "laplace"
    assert post.weight_draws().shape == (1, 2000) + model.weights_shape
    assert post.num_chains == 1 and post.num_samples == 2000
    assert post.model.task == pp.nuts.deterministic_task(model.task, 2)  # NUTS's density
    assert post.settings["gauge_dim"] == 3  # (D+E)(D+E-1)/2 with D+E = 3
    assert post.settings["max_gradient"] < 1e-3  # the centre is a stationary point
    assert isinstance(fit, pp.MapResult) and fit.converged  # the default call fits the MAP
    assert fit.settings["seed"] == 0
    assert "LaplaceResult(num_draws=2000" in repr(post)
    # the draws' mean and covariance are those of the Gaussian (Monte Carlo error only)
    flat = post.weight_draws().reshape(2000, -1).astype(np.float64)
    w = np.asarray(post.params["W"], np.float64).reshape(-1)
    sd = np.sqrt(np.diag(post.covariance()))
    assert np.all(np.abs(flat.mean(0) - w) < 5 * sd / np.sqrt(2000) + 1e-7)
    np.testing.assert_allclose(flat.std(0), sd, rtol=0.1, atol=1e-7)


def test_to_arviz_thresholds_and_save_load_work_on_it(small, tmp_path):
    (model, _, data), _, post = small
    idata = pp.to_arviz(post)
    assert idata.posterior["Sigma"].shape[:2] == (1, 2000)
    assert idata.posterior.attrs["inference_method"] == "laplace"
    assert "sample_stats" not in idata.groups()
    path = tmp_path / "laplace.npz"
    pp.save_fit(path, post)
    saved = pp.load_fit(path)
    assert saved.kind == "posterior" and saved.method == "laplace"
    np.testing.assert_array_equal(saved.weight_draws(), post.weight_draws())
    thin = {"W": post.weight_draws()[:, :40]}
    th = pp.thresholds(post.model, thin, data.unique_refs()[:2], num_directions=8)
    lo, med, hi = th.band(0.9)
    assert lo.shape == (2, 8) and np.all(lo <= med) and np.all(med <= hi)


def test_hessian_matches_finite_differences_of_the_gradient(x64):
    # At the truth rather than at a MAP: the identity holds at any point. The
    # Gauss-Hermite rule, because its nodes do not depend on W: the semi-analytic
    # rule holds its (W-dependent) node placement fixed under differentiation, so
    # its AD derivatives differ from finite differences by the quadrature error
    # (measured here: 1.7e-5 relative on the largest entry).
    model, truth, data = make_problem(basis_degree=1, trials_per_ref=10)
    model = dataclasses.replace(model, task=pp.Oddity(method="quadrature",
                                                      quadrature_rule="gauss-hermite"))
    H = hessian(model, data, truth)
    w0 = np.asarray(truth["W"], np.float64).reshape(-1)

    arrays = [jnp.asarray(a, jnp.float64) for a in (data.refs, data.comparisons, data.responses)]
    grad = jax.jit(lambda w: jax.grad(_negative_log_posterior)(w, *arrays, model))

    h = 1e-6
    eye = np.eye(w0.size)
    fd = np.stack([(np.asarray(grad(w0 + h * e)) - np.asarray(grad(w0 - h * e))) / (2 * h)
                   for e in eye])
    # central differences at h = 1e-6: truncation and rounding both ~1e-10 relative
    # (measured: h = 1e-5, 1e-6, 1e-7 agree to 1e-9 relative on the largest entry)
    np.testing.assert_allclose(H, 0.5 * (fd + fd.T), rtol=0, atol=1e-7 * np.abs(H).max())
    np.testing.assert_allclose(H, H.T, atol=0)


def test_covariance_is_the_inverse_hessian_off_the_gauge(small):
    (model, _, data), _, post = small
    H = hessian(post.model, data, post.params)
    C = post.covariance()
    Q = gauge_directions(np.asarray(post.params["W"]))
    P = np.eye(C.shape[0]) - Q @ Q.T  # projector off the gauge
    # C is the Moore-Penrose inverse of H restricted to the complement of the gauge
    # (Q is taken at the float32 centre, B at its float64 value: rounding ~1e-7)
    np.testing.assert_allclose(C @ Q, 0, atol=1e-6 * np.abs(C).max())
    np.testing.assert_allclose(P @ H @ P @ C, P, atol=1e-4)
    # H is (numerically) singular along the gauge: zero curvature at the MAP
    curv = np.abs(np.diag(Q.T @ H @ Q))
    assert curv.max() < 1e-3 * post.eigenvalues.min(), (curv, post.eigenvalues.min())


def test_gauge_directions_leave_sigma_unchanged_to_first_order(x64):
    rng = np.random.default_rng(0)
    model = pp.WPPM(basis_degree=2, extra_dims=1)
    W = rng.normal(size=model.weights_shape)
    Q = gauge_directions(W)
    assert Q.shape == (W.size, 3)
    np.testing.assert_allclose(Q.T @ Q, np.eye(3), atol=1e-12)
    J = _sigma_jacobian(model, W.reshape(-1), rng.uniform(-1, 1, size=(7, 2)))
    np.testing.assert_allclose(J @ Q, 0, atol=1e-12 * np.abs(J).max())
    assert gauge_directions(W[..., :2]).shape == (W[..., :2].size, 1)  # E = 0: one rotation


def test_sigma_bands_do_not_depend_on_how_the_gauge_is_resolved(small):
    """A rotated MAP (another point of the orbit) gives the same Sigma covariance and bands."""
    (model, _, data), fit, post = small
    rng = np.random.default_rng(1)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    W = np.asarray(fit.params["W"])
    rotated = dataclasses.replace(fit, params={"W": jnp.asarray(W @ R, W.dtype)})
    post_r = pp.fit_laplace(model, data, map_fit=rotated, num_draws=2000, seed=7,
                            progress_bar=False)
    points = data.unique_refs()
    # first order: J C J^T, exact up to rounding
    covs = []
    for p in (post, post_r):
        w = np.asarray(p.params["W"], np.float64).reshape(-1)
        J = _sigma_jacobian(p.model, w, points)
        covs.append(J @ p.covariance() @ J.T)
    np.testing.assert_allclose(covs[1], covs[0], rtol=0, atol=1e-3 * np.abs(covs[0]).max())
    # a finite width along the gauge changes nothing to first order either
    Q = gauge_directions(W)
    w = np.asarray(post.params["W"], np.float64).reshape(-1)
    J = _sigma_jacobian(post.model, w, points)
    wide = post.covariance() + 10 * Q @ Q.T
    # (J in float32: J Q is ~1e-7 of |J| instead of 0, times a width of 10)
    np.testing.assert_allclose(J @ wide @ J.T, covs[0], rtol=0, atol=1e-5 * np.abs(covs[0]).max())
    # the draws: 90% bands of Sigma agree within Monte Carlo error (2000 draws each)
    a, b = posterior_sigma(post, prob=0.9), posterior_sigma(post_r, prob=0.9)
    width = a.upper - a.lower
    np.testing.assert_allclose(b.lower, a.lower, atol=0.15 * width.max())
    np.testing.assert_allclose(b.upper, a.upper, atol=0.15 * width.max())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_draws=0), "num_draws"),
        (dict(seed=-1), "seed"),
        (dict(progress_bar=1), "progress_bar"),
        (dict(map_fit="fit"), "map_fit must be a psyphy_pp.MapResult"),
        (dict(task=pp.Oddity(method="mc")), "the Laplace Hessian needs a deterministic"),
        (dict(task=pp.Oddity(method="mc", fixed_noise=True)), "needs the quadrature likelihood"),
    ],
)
def test_fit_laplace_validates_arguments_up_front(small, kwargs, match):
    (model, _, data), _, _ = small
    with pytest.raises(ValueError, match=match):
        pp.fit_laplace(model, data, **kwargs)


def test_fit_laplace_rejects_a_map_fit_of_other_data(small):
    (model, _, data), fit, _ = small
    other = pp.TrialData(data.refs[:10], data.comparisons[:10], data.responses[:10])
    with pytest.raises(ValueError, match="map_fit was fitted to 360 trials, but data has 10"):
        pp.fit_laplace(model, other, map_fit=fit)


def test_rise_ratio_is_one_for_a_gaussian_and_flags_a_quartic():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    H = A @ A.T + 5 * np.eye(5)  # f = (w - c)^T H (w - c) / 2: a Gaussian posterior
    c = rng.standard_normal(5)
    L = np.linalg.cholesky(np.linalg.inv(H))
    z = rng.standard_normal((8, 5))

    def quadratic(w):
        return 0.5 * (w - c) @ H @ (w - c)

    assert pp.laplace.rise_ratio(quadratic, c, L, z) == pytest.approx(1.0, rel=1e-12)
    # the same curvature at the centre, plus a quartic term: narrower than the Gaussian
    ratio = pp.laplace.rise_ratio(lambda w: quadratic(w) + 100 * np.sum((w - c) ** 4), c, L, z)
    assert ratio > 1.1


def test_fit_laplace_reports_its_rise_ratio(small):
    ratio = small[2].settings["rise_ratio"]
    assert np.isfinite(ratio) and ratio > 0.5


def test_the_sampled_likelihood_matches_a_fine_rule_across_the_posterior(small):
    """NUTS and the Hessian use the 2D MAP-grade rule (8 x 4): only its spread matters.

    A constant offset of the log density does not change a posterior; its spread
    over posterior draws does (importance weights ``exp(difference)``). Reference:
    the same likelihood at 32 x 16 nodes. Measured: sd 0.009 nats, largest 0.09
    (here, degree 1), and sd 0.0105 on a 6,000-trial degree-4 observer. The bounds
    leave room for float32 rounding of a sum over 360 trials (~1e-4 relative).
    """
    (model, _, data), _, post = small
    assert post.model.task == model.task  # the default rule, not a finer one
    W = jnp.asarray(post.samples["W"][0, ::10])  # 200 draws
    arrays = [jnp.asarray(a) for a in (data.refs, data.comparisons, data.responses)]

    def loglik(m):
        return jax.jit(jax.vmap(lambda w: jnp.sum(m.log_likelihood({"W": w}, *arrays))))

    fine = dataclasses.replace(model, task=pp.Oddity(method="quadrature", num_angles=32,
                                                     num_radial=16))
    diff = np.asarray(loglik(model)(W), np.float64) - np.asarray(loglik(fine)(W), np.float64)
    assert diff.std() < 0.03, diff.std()
    assert np.abs(diff - diff.mean()).max() < 0.3, diff
