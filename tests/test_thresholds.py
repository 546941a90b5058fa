"""Thresholds: root finding on P(correct), ellipse fits, posterior bands and plots."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.designs import box_distances
from psyphy_pp.thresholds import (
    Ellipses,
    Thresholds,
    _solver,
    fit_ellipses,
    threshold_directions,
    threshold_task,
)
from tests.reference import oddity_prob_reference

matplotlib.use("Agg")

SIGMA = 0.05


def constant_model(input_dim: int = 2, task: pp.Oddity | None = None) -> pp.WPPM:
    """A degree-1 model whose field is constant when only W[0, ..., 0] is non-zero."""
    task = task or (pp.Oddity(method="quadrature") if input_dim in (2, 3)
                    else pp.Oddity(method="mc", fixed_noise=True, num_samples=4000))
    return pp.WPPM(input_dim=input_dim, basis_degree=1, extra_dims=1, diag_term=1e-9, task=task)


def constant_params(model: pp.WPPM, U0: np.ndarray) -> dict:
    """``{"W": W}`` with ``Sigma(x) = U0 U0^T + diag_term I`` everywhere."""
    W = np.zeros(model.weights_shape)
    W[(0,) * model.input_dim] = U0
    return {"W": W}


def isotropic_U0(d: int, sigma: float = SIGMA) -> np.ndarray:
    return np.concatenate([sigma * np.eye(d), np.zeros((d, 1))], axis=1)


def reference_threshold_in_sigmas(num_samples: int = 200_000, iterations: int = 12):
    """Solve P(correct)(s) = 2/3 for Sigma = I by bisection on the numpy Monte Carlo
    reference (common random numbers); return (s, its standard error)."""
    S = np.eye(2)

    def p(s):
        return oddity_prob_reference(S, S, np.zeros(2), np.array([s, 0.0]),
                                     num_samples=num_samples, seed=1)

    lo, hi = 2.3, 2.8
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if p(mid)[0] < 2.0 / 3.0 else (lo, mid)
    s = 0.5 * (lo + hi)
    slope = (p(s + 0.1)[0] - p(s - 0.1)[0]) / 0.2
    return s, p(s)[1] / slope


def test_thresholds_isotropic_match_numpy_reference():
    model = constant_model()
    params = constant_params(model, isotropic_U0(2))
    refs = np.array([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.6]])
    th = pp.thresholds(model, params, refs, num_directions=8)
    assert th.distances.shape == (3, 8)
    assert th.reached.all() and th.monotone.all() and th.ellipses.ok.all()
    s_ref, s_err = reference_threshold_in_sigmas()
    ratio = th.distances / SIGMA
    # Monte Carlo error of the independent solution, plus the quadrature's ~1e-3.
    np.testing.assert_allclose(ratio, s_ref, atol=4 * s_err + 2e-3)
    # DESIGN.md: "s is about 2.554 sigma in 2D".
    np.testing.assert_allclose(ratio, 2.554, rtol=2e-3)
    # The points lie on a circle of that radius, and so does the fitted ellipse.
    np.testing.assert_allclose(np.linalg.norm(th.points - refs[:, None], axis=-1), th.distances)
    np.testing.assert_allclose(th.ellipses.axes, th.distances.mean(), rtol=1e-3)
    np.testing.assert_allclose(th.ellipses.centre, refs, atol=1e-4)


def test_thresholds_3d_isotropic_quadrature():
    model = constant_model(3)
    th = pp.thresholds(model, constant_params(model, isotropic_U0(3)), [[0.0, 0.0, 0.0]],
                       num_directions=10)
    assert th.directions.shape == (10, 3) and th.reached.all()
    # DESIGN.md: about 2.717 sigma in 3D. The default 384-node polar rule errs by
    # ~7e-4 in P(correct) (benchmarks/quadrature_3d.py), ~0.3% in distance: 2.726.
    np.testing.assert_allclose(th.distances / SIGMA, 2.717, rtol=5e-3)
    assert th.ellipses.axes.shape == (1, 3) and th.ellipses.ok.all()


def test_thresholds_3d_isotropic_fixed_noise_monte_carlo():
    task = pp.Oddity(method="mc", fixed_noise=True, num_samples=4000)
    model = constant_model(3, task)
    th = pp.thresholds(model, constant_params(model, isotropic_U0(3)), [[0.0, 0.0, 0.0]],
                       num_directions=10)
    assert th.reached.all()
    # Each direction has its own fixed noise: P(correct) at threshold is off by
    # ~sqrt(p (1 - p) / 4000) = 0.0075, i.e. ~1.5% in distance per direction. So
    # 6% (4 standard errors). (This was 3% until the noise generator changed:
    # measured over the 10 directions, the threefry draws gave -4.1%..+2.4% and
    # the hash draws -2.9%..+3.9%, both within the 4-SE band.)
    np.testing.assert_allclose(th.distances / SIGMA, 2.717, rtol=0.06)
    np.testing.assert_allclose(np.mean(th.distances / SIGMA), 2.717, rtol=0.02)


def test_thresholds_scale_linearly_with_sigma(rng):
    model = constant_model()
    U0 = SIGMA * rng.normal(size=(2, 3))
    refs = np.array([[0.0, 0.0], [0.2, 0.4]])
    th1 = pp.thresholds(model, constant_params(model, U0), refs, num_directions=12)
    th2 = pp.thresholds(model, constant_params(model, 2.0 * U0), refs, num_directions=12)
    assert th1.reached.all() and th2.reached.all()
    np.testing.assert_allclose(th2.distances, 2.0 * th1.distances, rtol=2e-3)
    np.testing.assert_allclose(th2.ellipses.axes, 2.0 * th1.ellipses.axes, rtol=2e-3)
    np.testing.assert_allclose(th2.ellipses.angle, th1.ellipses.angle, atol=2e-3)
    # With constant noise the threshold ellipse is a fixed multiple of Sigma's.
    S = U0 @ U0.T
    w = np.sqrt(np.linalg.eigvalsh(S))[::-1]
    np.testing.assert_allclose(th1.ellipses.axes / w, 2.5518, rtol=3e-3)


def test_thresholds_target_not_reached_is_reported_not_nan():
    model = constant_model()
    params = constant_params(model, isotropic_U0(2, sigma=0.3))  # threshold ~0.77
    refs = np.array([[0.0, 0.0], [0.9, 0.0], [1.0, 1.0]])
    th = pp.thresholds(model, params, refs, num_directions=8)
    for arr in (th.distances, th.points, th.ellipses.centre, th.ellipses.matrix,
                th.ellipses.axes, th.ellipses.rotation):
        assert np.all(np.isfinite(arr))
    assert th.reached[0].all()
    # From x = 0.9 the box ends 0.1 away along +x: not reached, distance = box edge.
    assert not th.reached[1, 0] and th.distances[1, 0] == pytest.approx(0.1)
    assert th.reached[1, 4]  # along -x there is room
    # From the corner, directions pointing out of the box have zero room.
    assert not th.reached[2, 0] and th.distances[2, 0] == 0.0
    np.testing.assert_allclose(th.distances[~th.reached], th.max_distances[~th.reached])
    assert not th.ellipses.ok[2]  # too few reached directions: placeholder circle
    assert th.table()["num_reached"].tolist() == [8, int(th.reached[1].sum()), int(th.reached[2].sum())]


def test_thresholds_target_above_reach_of_the_box_everywhere():
    model = constant_model()
    th = pp.thresholds(model, constant_params(model, isotropic_U0(2, sigma=2.0)), [[0.0, 0.0]],
                       num_directions=4)
    assert not th.reached.any()
    np.testing.assert_allclose(th.distances, 1.0)
    assert np.isfinite(th.ellipses.axes).all() and not th.ellipses.ok.any()


def test_thresholds_flags_non_monotone_psychometric_function():
    # A prior draw whose noise changes fast near the corner: P(correct) first
    # dips below chance along +x from (-1, -1) (checked against tests/reference.py).
    import jax

    model = pp.WPPM(basis_degree=4, diag_term=1e-4, task=pp.Oddity(method="quadrature"))
    truth = model.sample_prior(jax.random.PRNGKey(123))
    th = pp.thresholds(model, truth, [[-1.0, -1.0]], directions=[[1.0, 0.0]])
    assert th.monotone.tolist() == [[False]] and th.reached.all()
    iso = constant_model()
    th = pp.thresholds(iso, constant_params(iso, isotropic_U0(2)), [[-1.0, -1.0]],
                       directions=[[1.0, 0.0]])
    assert th.monotone.tolist() == [[True]]


def test_thresholds_posterior_draws_give_bands():
    model = constant_model()
    factors = np.array([[0.8, 1.0, 1.2], [0.9, 1.1, 1.0]])
    W = constant_params(model, isotropic_U0(2))["W"]
    draws = {"W": factors[..., None, None, None, None] * W}  # (chains=2, draws=3, ...)
    refs = np.array([[0.0, 0.0], [0.5, 0.5]])
    th = pp.thresholds(model, draws, refs, num_directions=6, chunk_size=4)
    assert th.sample_shape == (2, 3)
    assert th.distances.shape == (2, 3, 2, 6) and th.ellipses.axes.shape == (2, 3, 2, 2)
    one = pp.thresholds(model, {"W": draws["W"][1, 2]}, refs, num_directions=6)
    np.testing.assert_allclose(th.distances[1, 2], one.distances, rtol=1e-6)
    np.testing.assert_allclose(th.distances / factors[..., None, None],
                               np.broadcast_to(one.distances, th.distances.shape), rtol=2e-3)
    lo, med, hi = th.band(0.9)
    assert lo.shape == med.shape == hi.shape == (2, 6)
    assert np.all(lo <= med) and np.all(med <= hi) and np.all(lo < hi)
    np.testing.assert_allclose(med, one.distances, rtol=2e-3)
    point = th.median()
    assert point.sample_shape == () and point.ellipses.ok.all()
    table = th.table(prob=0.9)
    assert np.all(table["axis_0_lower"] < table["axis_0"]) and np.all(table["axis_0"] < table["axis_0_upper"])


def test_thresholds_reuse_the_compiled_solver():
    model = constant_model()
    params = constant_params(model, isotropic_U0(2))
    pp.thresholds(model, params, [[0.0, 0.0]], num_directions=4)
    hits = _solver.cache_info().hits
    pp.thresholds(model, constant_params(model, isotropic_U0(2, 0.07)), [[0.1, 0.0]],
                  num_directions=4)
    assert _solver.cache_info().hits == hits + 1


def test_thresholds_in_user_units():
    model = constant_model()
    th = pp.thresholds(model, constant_params(model, isotropic_U0(2)), [[0.0, 0.0], [0.4, -0.4]],
                       num_directions=8)
    norm = pp.Normalization([0.0, 10.0], [255.0, 20.0], names=["R", "G"])
    user = th.to_user(norm)
    assert user.normalization is norm
    np.testing.assert_allclose(user.points, norm.to_user(th.points))
    np.testing.assert_allclose(user.refs, norm.to_user(th.refs))
    np.testing.assert_allclose(np.linalg.norm(user.directions, axis=-1), 1.0)
    # The user-unit ellipse passes through the user-unit points.
    e = user.ellipses
    x = user.points - e.centre[:, None]
    q = np.einsum("rki,rij,rkj->rk", x, np.linalg.inv(e.matrix), x)
    np.testing.assert_allclose(q, 1.0, atol=2e-3)
    np.testing.assert_allclose(e.axes[0], 2.554 * SIGMA * norm.scale[[0, 1]], rtol=3e-3)
    with pytest.raises(ValueError, match="already in user units"):
        user.to_user(norm)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target=1 / 3), r"target must be a probability in \(1/3, 1\)"),
        (dict(target=1.0), r"target must be a probability in \(1/3, 1\)"),
        (dict(refs=[[0.0, 1.5]]), r"refs must lie in \[-1, 1\]"),
        (dict(refs=[[0.0, 0.0, 0.0]]), r"refs must have shape \(N, 2\)"),
        (dict(params={"W": np.zeros((3, 2, 2, 3))}), r"params\['W'\] must have shape"),
        (dict(task=pp.Oddity(method="mc")), "task must be a deterministic"),
        (dict(num_directions=0), "num_directions must be a positive integer"),
        (dict(directions=[[0.0, 0.0]]), "directions must be finite and non-zero"),
        (dict(num_grid=0), "num_grid must be a positive integer"),
    ],
    ids=["target-chance", "target-one", "refs-box", "refs-dim", "params-shape", "task-noisy",
         "no-directions", "zero-direction", "num-grid"],
)
def test_thresholds_rejects_bad_input(kwargs, message):
    model = constant_model()
    args = dict(params=constant_params(model, isotropic_U0(2)), refs=[[0.0, 0.0]])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pp.thresholds(model, args.pop("params"), args.pop("refs"), **args)


def test_threshold_task_makes_the_likelihood_deterministic():
    assert threshold_task(pp.Oddity(), 2).method == "quadrature"
    assert threshold_task(pp.Oddity(), 3).method == "quadrature"
    t1 = threshold_task(pp.Oddity(method="mc", num_samples=100), 1)
    assert t1.fixed_noise and t1.num_samples == 2000
    fixed = pp.Oddity(method="mc", fixed_noise=True)
    assert threshold_task(fixed, 2) is fixed


def test_threshold_directions_are_unit_vectors():
    for d in (1, 2, 3, 4):
        dirs = threshold_directions(10, d)
        assert dirs.shape == (10, d)
        np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    dirs = threshold_directions(8, 2)
    np.testing.assert_allclose(dirs[:4], -dirs[4:], atol=1e-12)  # antipodal pairs


def test_fit_ellipses_recovers_an_offset_rotated_ellipse():
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    a, b, phi, c = 0.3, 0.1, 0.4, np.array([0.02, -0.01])
    R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    pts = c + (np.stack([a * np.cos(t), b * np.sin(t)], -1) @ R.T)
    e = fit_ellipses(np.zeros((1, 2)), pts[None])
    np.testing.assert_allclose(e.centre[0], c, atol=1e-12)
    np.testing.assert_allclose(e.axes[0], [a, b], rtol=1e-10)
    np.testing.assert_allclose(e.angle[0], phi, atol=1e-10)
    assert e.ok.all()
    # Without the centre (or with only half of the points) the fit is centred on the ref.
    centred = fit_ellipses(np.zeros((1, 2)), (pts - c)[None], mask=(t < np.pi)[None])
    np.testing.assert_allclose(centred.centre[0], 0.0)
    np.testing.assert_allclose(centred.axes[0], [a, b], rtol=1e-10)
    # Two points cannot fix an ellipse: a finite placeholder, flagged.
    few = fit_ellipses(np.zeros((1, 2)), pts[None], mask=(np.arange(12) < 2)[None])
    assert not few.ok[0] and np.isfinite(few.axes).all()


def test_psychometric_curves_rise_from_chance():
    model = constant_model()
    params = constant_params(model, isotropic_U0(2))
    s = np.linspace(0.0, 0.3, 7)
    p = pp.psychometric_curves(model, params, [[0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], s)
    assert p.shape == (1, 2, 7)
    assert abs(p[0, 0, 0] - 1 / 3) < 1e-3 and np.all(np.diff(p) > 0)
    import jax

    # (jitted: model.prob_correct runs op by op otherwise, which is slow for quadrature)
    direct = jax.jit(lambda W: model.prob_correct({"W": W}, np.zeros((1, 2)),
                                                  np.array([[0.15, 0.0]])))(params["W"])
    np.testing.assert_allclose(p[0, 0, 3], direct[0], rtol=1e-5)
    draws = {"W": np.stack([params["W"], 2 * params["W"]])}
    assert pp.psychometric_curves(model, draws, [[0.0, 0.0]], [[1.0, 0.0]], s).shape == (2, 1, 1, 7)


def test_threshold_tables_and_csv(tmp_path):
    model = constant_model()
    th = pp.thresholds(model, constant_params(model, isotropic_U0(2)), [[0.0, 0.0]],
                       num_directions=4)
    th.to_csv(tmp_path / "t.csv")
    th.to_csv(tmp_path / "p.csv", points=True)
    header, row = (tmp_path / "t.csv").read_text().splitlines()
    assert header.split(",") == ["ref_0", "ref_1", "centre_0", "centre_1", "axis_0", "axis_1",
                                 "angle_deg", "num_reached", "monotone", "ellipse_ok",
                                 "ellipse_reason"]
    assert float(row.split(",")[4]) == th.ellipses.axes[0, 0]  # full precision
    assert row.endswith(",1,")  # ok, empty reason
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("ref_0,ref_1,dir_0,dir_1,distance")


def test_plot_threshold_field_and_psychometric_panel():
    import matplotlib.pyplot as plt

    from psyphy_pp.plotting import plot_psychometric_curves, plot_threshold_field

    model = constant_model()
    params = constant_params(model, isotropic_U0(2))
    refs = np.array([[0.0, 0.0], [0.5, -0.5], [1.0, 1.0]])
    point = pp.thresholds(model, params, refs, num_directions=8)
    draws = {"W": np.stack([0.9 * params["W"], params["W"], 1.1 * params["W"]])}
    post = pp.thresholds(model, draws, refs, num_directions=8)
    fig = plot_threshold_field(point, truth=point)
    assert len(fig.axes[0].patches) == 2 * len(refs)
    fig = plot_threshold_field(post, truth=point)
    assert len(fig.axes[0].patches) == 3 * len(refs)  # bands, medians, truth
    norm = pp.Normalization([0, 0], [255, 255])
    fig = plot_threshold_field(point.to_user(norm))
    assert fig.axes[0].get_xlim()[1] > 255
    fig = plot_psychometric_curves(model, draws, refs[:2], [[1.0, 0.0], [0.0, 1.0]],
                                   normalization=norm)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2 + 2
    plt.close("all")
    with pytest.raises(ValueError, match="input_dim 2"):
        plot_threshold_field(dataclasses.replace(
            point, refs=np.zeros((3, 3)), directions=np.zeros((8, 3))))
    with pytest.raises(ValueError, match="scale must be 'auto' or a positive number, got 0"):
        plot_threshold_field(point, scale=0)


def test_display_scale_keeps_neighbouring_ellipses_apart():
    """Circles of radius rho at references 0.5 apart: the scale is the nice number
    at or below 0.45 * spacing / rho (relative to the box), and the drawn circles
    have radius scale * rho about their references."""
    import matplotlib.pyplot as plt

    from psyphy_pp.plotting import display_scale, plot_threshold_field

    refs = pp.designs.grid_points(3, 2, -0.5, 0.5)
    dirs = np.stack([np.cos(np.linspace(0, 2 * np.pi, 8, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 8, endpoint=False))], axis=1)

    base = pp.thresholds(constant_model(), constant_params(constant_model(), isotropic_U0(2)),
                         refs, num_directions=8)

    def circles(rho):
        return dataclasses.replace(base, directions=dirs, distances=np.full((9, 8), rho),
                                   reached=np.ones((9, 8), bool))

    box = 2.2  # the plotted box, [-1.1, 1.1]
    for rho, expected in [(0.6, 0.2), (0.2, 1.0), (0.01, 20.0), (0.1, 2.0)]:
        raw = 0.45 * (0.5 / box) / (rho / box)
        assert display_scale(circles(rho)) == pytest.approx(expected), raw
        assert expected <= raw < 2.5 * expected
    th = circles(0.6)
    fig = plot_threshold_field(th, show_points=False)
    ax = fig.axes[0]
    assert "drawn at 0.2x" in ax.get_title()
    widths = [p.width for p in ax.patches]  # th.ellipses: those of the solver's thresholds
    np.testing.assert_allclose(widths, 2 * 0.2 * th.ellipses.axes[:, 0], rtol=1e-6)
    fig = plot_threshold_field(circles(0.6), show_points=False, scale=1)
    assert "drawn at" not in fig.axes[0].get_title()
    single = dataclasses.replace(circles(0.6), refs=refs[:1], distances=np.full((1, 8), 0.6),
                                 reached=np.ones((1, 8), bool), max_distances=np.ones((1, 8)))
    assert display_scale(single) == 1.0
    plt.close("all")


# ----- ellipse_ok and its reason, on synthetic threshold points (no solver) -----


def ellipse_points(a: float, b: float, k: int = 16, phi: float = 0.0) -> np.ndarray:
    """``k`` points on the centred ellipse with half-axes ``a``, ``b`` rotated by ``phi``."""
    t = 2 * np.pi * np.arange(k) / k
    R = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    return np.stack([a * np.cos(t), b * np.sin(t)], -1) @ R.T


def synthetic_thresholds(refs: np.ndarray, radius: np.ndarray, k: int = 16) -> Thresholds:
    """Thresholds of a circle of ``radius`` (shape ``(*S, R)``) around each reference,
    cut at the box edge, as :func:`psyphy_pp.thresholds` would report them."""
    dirs = threshold_directions(k, 2)
    s_max = box_distances(refs, dirs)
    wanted = np.asarray(radius)[..., None] * np.ones(k)
    reached = wanted <= s_max
    dist = np.minimum(wanted, s_max)
    pts = refs[:, None, :] + dist[..., None] * dirs
    ell = fit_ellipses(refs, pts, mask=reached)
    return Thresholds(refs=refs, directions=dirs, distances=dist, reached=reached,
                      monotone=np.ones_like(reached), max_distances=s_max, ellipses=ell)


def grid_refs(n: int = 6) -> np.ndarray:
    g = np.linspace(-1.0, 1.0, n)
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def test_ellipse_ok_ordinary_ellipse_has_empty_reason():
    e = fit_ellipses(np.zeros((1, 2)), ellipse_points(0.3, 0.1, phi=0.4)[None])
    assert e.ok.tolist() == [True] and e.reason.tolist() == [""]
    np.testing.assert_allclose(e.axes[0], [0.3, 0.1], rtol=1e-10)


def test_ellipse_larger_than_the_box_is_not_ok():
    # The case of a fit with a huge learning rate: a half-axis of 4.1 model units.
    e = fit_ellipses(np.zeros((2, 2)), np.stack([ellipse_points(4.1, 0.2, phi=0.3),
                                                 ellipse_points(1.9, 0.2)]))
    np.testing.assert_allclose(e.axes[:, 0], [4.1, 1.9], rtol=1e-10)  # geometry kept
    assert e.ok.tolist() == [False, True]
    assert e.reason.tolist() == ["half-axis 4.1 > box width 2 (model units)", ""]
    # Just over the limit, the number still reads as more than 2.
    just = fit_ellipses(np.zeros((1, 2)), ellipse_points(2.0004, 0.1)[None])
    assert just.reason[0] == "half-axis 2.0004 > box width 2 (model units)"
    # Points in other units: the box check is off.
    assert fit_ellipses(np.zeros((1, 2)), 100 * ellipse_points(4.1, 0.2)[None],
                        check_box=False).ok.all()


def test_ellipse_at_a_corner_with_few_directions_reached_is_not_ok():
    # Thresholds of 0.1 around the middle, an edge and a corner of the box, 16 directions.
    refs = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    th = synthetic_thresholds(refs, np.full(3, 0.1))
    n = th.reached.sum(-1)
    # Half the directions have room at an edge, 4 at this corner (the 2 along its
    # edges leave the box by rounding): the case of the user's corner references.
    assert n.tolist() == [16, 8, 4]
    e = th.ellipses
    assert e.ok.tolist() == [True, True, False]
    assert e.reason.tolist() == ["", "", "4/16 directions reached the target (need 8)"]
    np.testing.assert_allclose(e.axes[:2], 0.1, rtol=1e-10)
    # The user's case: 4 of 16 directions, extrapolated to a half-axis of 2.8, is not
    # ok for the count (the first reason that applies), not for the size.
    pts = ellipse_points(2.8, 0.05)[None]
    mask = (np.arange(16) % 4 == 0)[None]
    few = fit_ellipses(np.zeros((1, 2)), pts, mask=mask)
    assert few.reason.tolist() == ["4/16 directions reached the target (need 8)"]
    # Too few points to fix a conic at all: a placeholder circle, same reason kind.
    two = fit_ellipses(np.zeros((1, 2)), ellipse_points(0.3, 0.1)[None],
                       mask=(np.arange(16) < 2)[None])
    assert two.reason.tolist() == ["2/16 directions reached the target (need 8)"]
    assert np.isfinite(two.axes).all()


def test_ellipse_not_an_ellipse_and_nan_points():
    # Points on a hyperbola x^2 - y^2 = 0.01: the conic is not an ellipse.
    t = np.linspace(-1.0, 1.0, 8)
    hyper = np.stack([0.1 * np.cosh(t) * np.sign(t + 1e-9), 0.1 * np.sinh(t)], -1)
    e = fit_ellipses(np.zeros((1, 2)), hyper[None])
    assert e.reason.tolist() == ["conic not an ellipse"] and np.isfinite(e.matrix).all()
    # A non-finite point is not used (and counts as not reached).
    pts = ellipse_points(0.3, 0.1)
    pts[3] = np.nan
    e = fit_ellipses(np.zeros((1, 2)), pts[None])
    assert e.ok.all() and np.isfinite(e.axes).all()
    np.testing.assert_allclose(e.axes[0], [0.3, 0.1], rtol=1e-10)


def test_ellipses_constructor_keeps_reason_and_ok_consistent():
    c, M = np.zeros((2, 2)), np.stack([np.eye(2)] * 2)
    e = Ellipses.from_matrix(c, M, ok=[True, False])
    assert e.reason.tolist() == ["", "fit failed"]
    with pytest.raises(ValueError, match="exactly where ok"):
        Ellipses.from_matrix(c, M, ok=[True, False], reason=["", ""])
    with pytest.raises(ValueError, match="reason must have shape"):
        Ellipses.from_matrix(c, M, reason=[""])
    norm = pp.Normalization([0, 0], [255, 255])
    e = Ellipses.from_matrix(c, M, ok=[True, False], reason=["", "half-axis 3 > box width 2 (model units)"])
    assert e.to_user(norm).reason.tolist() == e.reason.tolist()


def test_threshold_table_has_the_reason_column_and_csv_refuses_to_overwrite(tmp_path):
    refs = np.array([[0.0, 0.0], [1.0, 1.0]])
    th = synthetic_thresholds(refs, np.array([0.1, 0.1]))
    table = th.table()
    names = list(table)
    assert names[-2:] == ["ellipse_ok", "ellipse_reason"]
    assert table["ellipse_ok"].tolist() == [1, 0]
    assert table["ellipse_reason"].tolist() == ["", "4/16 directions reached the target (need 8)"]
    path = tmp_path / "t.csv"
    th.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0].endswith(",ellipse_ok,ellipse_reason")
    assert lines[1].endswith(",1,") and lines[2].endswith(",0,4/16 directions reached the target (need 8)")
    with pytest.raises(FileExistsError):
        th.to_csv(path)
    with pytest.raises(FileExistsError):
        th.to_csv(path, points=True)
    assert path.read_text().splitlines() == lines  # untouched
    th.to_user(pp.Normalization([0, 0], [255, 255])).to_csv(path, overwrite=True)
    user_lines = path.read_text().splitlines()
    assert user_lines[2].endswith(",0,4/16 directions reached the target (need 8)")
    assert user_lines[1] != lines[1]


def test_threshold_reprs_are_short_for_a_grid_with_posterior_draws():
    refs = grid_refs(6)
    rng = np.random.default_rng(0)
    radius = 0.1 * rng.uniform(0.8, 1.2, size=(4, 50, 1)) * np.ones(36)
    th = synthetic_thresholds(refs, radius)
    # One draw whose ellipse at an inner reference is wider than the box.
    pts = th.points.copy()
    pts[0, 0, 14] = refs[14] + ellipse_points(3.0, 0.05)
    th = dataclasses.replace(th, ellipses=fit_ellipses(refs, pts, mask=th.reached))
    assert th.sample_shape == (4, 50)
    text = repr(th)
    assert len(text) < 800 and len(text.splitlines()) <= 6
    assert "36 references x 16 directions" in text and "posterior draws (4, 50)" in text
    assert "input_dim 2" in text and "model units" in text and "0.6667" in text
    # The 4 corners never reach 8 directions; one draw's ellipse is larger than the box.
    assert (th.reached.sum(-1) < 8).sum() == 800
    assert f"ok {200 * 32 - 1}/{200 * 36}" in text
    assert "800 too few directions reached the target" in text
    assert "1 half-axis larger than the box" in text
    for obj in (th.ellipses, th.median(), th.median().ellipses,
                th.to_user(pp.Normalization([0, 0], [255, 255], names=["R", "G"]))):
        assert len(repr(obj)) < 800, repr(obj)
    user = repr(th.to_user(pp.Normalization([0, 0], [255, 255], names=["R", "G"])))
    assert "user units (R, G)" in user
    point = repr(th.median())
    assert "point estimate" in point and "ok 32/36 references" in point
    assert "4 too few directions" in point
    assert th.ellipses.reason_counts() == {"too few directions reached the target": 800,
                                          "half-axis larger than the box": 1}


def test_median_in_user_units_checks_the_box_in_model_units():
    refs = grid_refs(3)
    radius = np.full((2, 9), 0.1)
    th = synthetic_thresholds(refs, radius)
    norm = pp.Normalization([0, 0], [255, 1000])  # user units much larger than the box
    user = th.to_user(norm).median()
    model = th.median()
    assert user.ellipses.ok.tolist() == model.ellipses.ok.tolist()
    assert user.ellipses.reason.tolist() == model.ellipses.reason.tolist()
    np.testing.assert_allclose(user.ellipses.matrix, model.ellipses.to_user(norm).matrix,
                               rtol=1e-9, atol=1e-9)
