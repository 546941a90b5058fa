"""Deterministic quadrature for P(correct) in the 3D oddity task (DESIGN.md 2b).

As in :mod:`psyphy_pp.oddity.quadrature2d`, whitening by
``Sbar = (2/3) S0 + (1/3) S1 = L L^T`` (:mod:`psyphy_pp.oddity.whitening`)
gives ``u' = P x`` and ``v' = K y`` with ``x ~ N(0, I)``, ``y ~ N(m, I)`` independent,
``P = L^{-1} chol(2 S0)``, ``K = L^{-1} chol(S0/2 + S1)`` (both lower triangular) and
``m = chol(S0/2 + S1)^{-1} (r - c)``; the answer is correct iff
``(3/4)|u'|^2 + |<u', v'>| < |v'|^2``. Two rules are provided.

:func:`oddity_prob_gauss_hermite_3d` is the construction of DESIGN 2b: tensor
Gauss-Hermite nodes in ``y``; for each ``v'``, directions ``e`` of ``u'`` measured
from ``v'`` (Gauss-Legendre in ``cos t`` on ``[0, 1]``, folded by ``e -> -e``, times a
periodic trapezoid rule in the azimuth) and the radial Gaussian integral in closed
form::

    P(correct | v') = 2 (2 pi)^{-3/2} |A|^{-1/2} int_{half sphere} a^{-3/2}
                      [sqrt(pi/2) erf(S / sqrt 2) - S exp(-S^2 / 2)] dOmega,
    a = e^T A^{-1} e,  S = |v'| g(cos t) sqrt(a),  g(s) = (2/3)(sqrt(s^2 + 3) - s).

``P(correct | v')`` grows like ``|v'|^3`` at ``v' = 0``, a kink that tensor
Gauss-Hermite resolves slowly.

:func:`oddity_prob_polar_3d` removes that kink. The correct region is a cone in the
six-dimensional ``(x, y)`` space (the condition is homogeneous of degree 2), so polar
coordinates about the origin, ``x = r f``, ``y = rho n`` with ``f, n`` unit vectors and
``(r, rho) = R (sin psi, cos psi)``, give::

    P(incorrect) = (2 pi)^-3 exp(-|m|^2/2) int_{S^2} dn int_{S^2} df
                   int_{Psi(f, n)}^{pi/2} sin^2 psi cos^2 psi M5(cos psi <n, m>) dpsi,

    M5(tau) = int_0^inf R^5 exp(-R^2/2 + tau R) dR
            = 8 + 9 tau^2 + tau^4 + (15 tau + 10 tau^3 + tau^5) sqrt(2 pi) exp(tau^2/2) Phi(tau).

Along a ray the trial is correct iff ``tan psi < G``, the positive root of
``(3/4) alpha G^2 + |c| G - kappa`` with ``alpha = |P f|^2``, ``c = <P f, K n>``,
``kappa = |K n|^2``; ``Psi = atan G``. So the radial integral (the six-dimensional
analogue of the 2D rule's closed-form ``v'`` average) is exact, and what is left is
smooth: ``n`` by Gauss-Legendre in ``cos theta`` measured from ``m`` times a trapezoid
azimuth, ``f`` measured from ``P^T K n`` (so that the kink ``c = 0`` sits on the edge
of the half sphere, folded by ``f -> -f``) the same way, and ``psi`` by Gauss-Legendre on
``[Psi, pi/2]``. The rule integrates the *incorrect* part, so that near the ceiling
``1 - p`` keeps its relative accuracy. ``exp(-|m|^2/2) M5`` is evaluated as
``exp(-|m|^2/2) poly + poly sqrt(2 pi) exp(log Phi(tau) + (tau^2 - |m|^2)/2)``, both
bounded because ``tau^2 <= |m|^2``; there is no singularity at ``r = c`` (``m = 0``).

The 2D semi-analytic trick (the ``v'`` average in closed form) does not carry over:
in 2D the direction of ``u'`` relative to ``v'`` is a fixed rotation ``R_t`` of ``v'``,
so the integrand is a Gaussian in ``v'`` times ``|v'|^2``; in 3D the azimuth about
``v'`` has no linear frame, and the radial factor is ``|v'|^3``, not a polynomial.

All algebra is closed-form on batches (``psyphy_pp._linalg``, explicit 3-vectors); no
LAPACK (DESIGN.md section 5). Accuracy and cost against smoothed Monte Carlo:
``python -m benchmarks.quadrature_3d``.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_POLAR_NODES",
    "oddity_prob_gauss_hermite_3d",
    "oddity_prob_polar_3d",
]

import math
from functools import cache

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, log_ndtr

from psyphy_pp._linalg import solve_lower, solve_lower_matrix
from psyphy_pp._nodes import hermite_rule, legendre_rule
from psyphy_pp._typing import Array, ArrayLike
from psyphy_pp._validation import covariance_triplet
from psyphy_pp.oddity.whitening import whiten

#: Default node counts of :func:`oddity_prob_polar_3d`:
#: ``(num_n_polar, num_n_azimuth, num_f_polar, num_f_azimuth, num_psi)``.
DEFAULT_POLAR_NODES = (4, 6, 3, 6, 4)

# Rate of the node spacing in cos theta per |m|^2 (oddity_prob_polar_3d).
_N_RATE = 0.25

Vec = tuple[Array, Array, Array]


@cache
def _sphere_rule(n_cos: int, n_azi: int, lo: float) -> tuple[np.ndarray, ...]:
    """Product rule on ``{cos in [lo, 1]}``: ``cos, sin, cos phi, sin phi, weights``.

    Flattened over ``n_cos * n_azi`` nodes; the weights include ``2 pi / n_azi``.
    """
    c, wc = legendre_rule(n_cos, lo, 1.0)
    phi = 2.0 * np.pi * (np.arange(n_azi) + 0.5) / n_azi
    c, phi = np.meshgrid(c, phi, indexing="ij")
    w = np.broadcast_to(wc[:, None] * (2.0 * np.pi / n_azi), c.shape)
    s = np.sqrt(np.maximum(1.0 - c**2, 0.0))
    return tuple(a.reshape(-1) for a in (c, s, np.cos(phi), np.sin(phi), w))


def _factors(S0: ArrayLike, S1: ArrayLike, delta: ArrayLike) -> tuple[Array, ...]:
    """Validate, promote to float, and return ``P, K, m`` (module docstring)."""
    S0, S1, delta = covariance_triplet(S0, S1, delta, 3)
    w = whiten(S0, S1, delta)
    return w.Ma, w.K, solve_lower(w.LB, delta)


def _lower_matvec(M: Array, v: Vec) -> Vec:
    """``M v`` for lower-triangular ``M (..., 3, 3)`` and ``v`` with a trailing node axis."""
    e = lambda i, j: M[..., i, j, None]  # noqa: E731
    return (
        e(0, 0) * v[0],
        e(1, 0) * v[0] + e(1, 1) * v[1],
        e(2, 0) * v[0] + e(2, 1) * v[1] + e(2, 2) * v[2],
    )


def _lower_rmatvec(M: Array, v: Vec) -> Vec:
    """``M^T v`` for lower-triangular ``M (..., 3, 3)`` and ``v`` with a trailing node axis."""
    e = lambda i, j: M[..., i, j, None]  # noqa: E731
    return (
        e(0, 0) * v[0] + e(1, 0) * v[1] + e(2, 0) * v[2],
        e(1, 1) * v[1] + e(2, 1) * v[2],
        e(2, 2) * v[2],
    )


def _dot(a: Vec, b: Vec) -> Array:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _safe_unit(v: Vec) -> tuple[Vec, Array]:
    """``(v / |v|, |v|)``, with ``(e_z, 0)`` (and finite gradients) at ``v = 0``."""
    r2 = _dot(v, v)
    ok = r2 > jnp.finfo(r2.dtype).tiny
    r = jnp.sqrt(jnp.where(ok, r2, 1.0))
    inv = jnp.where(ok, 1.0 / r, 0.0)
    unit = (v[0] * inv, v[1] * inv, jnp.where(ok, v[2] * inv, 1.0))
    return unit, jnp.where(ok, r, 0.0)


def _frame(n: Vec) -> tuple[Vec, Vec]:
    """Two unit vectors completing the unit vector ``n`` to an orthonormal basis.

    The branchless construction of Duff et al. (2017, JCGT 6(1)); the frame jumps
    where ``n_z`` changes sign, which moves the azimuth nodes but not the integral.
    """
    x, y, z = n
    s = jnp.where(z >= 0.0, 1.0, -1.0).astype(z.dtype)
    a = -1.0 / (s + z)
    b = x * y * a
    return (1.0 + s * x * x * a, s * b, -s * x), (b, s + y * y * a, -y)


def _combine(c: Array, s: Array, cp: Array, sp: Array, pole: Vec, w1: Vec, w2: Vec) -> Vec:
    """``c pole + s (cp w1 + sp w2)``, broadcasting a new trailing node axis."""
    return tuple(
        c * p[..., None] + s * (cp * a[..., None] + sp * b[..., None])
        for p, a, b in zip(pole, w1, w2)
    )


def oddity_prob_gauss_hermite_3d(
    S0: ArrayLike,
    S1: ArrayLike,
    delta: ArrayLike,
    *,
    num_cos: int = 10,
    num_azimuth: int = 20,
    num_hermite: int = 8,
) -> Array:
    """P(correct) by the DESIGN 2b construction in 3D (Gauss-Hermite in ``v'``).

    ``num_cos * num_azimuth * num_hermite**3`` evaluations per trial; kept as the
    baseline that :func:`oddity_prob_polar_3d` improves on. The batch axes of the
    three arguments are broadcast.

    Args:
        S0: Noise covariance at the reference, ``Sigma(r)``, shape ``(..., 3, 3)``.
        S1: Noise covariance at the comparison, ``Sigma(c)``, shape ``(..., 3, 3)``.
        delta: ``r - c``, shape ``(..., 3)``.
        num_cos: Gauss-Legendre nodes in ``cos t`` on ``[0, 1]``.
        num_azimuth: Trapezoid nodes in the azimuth about ``v'``.
        num_hermite: Gauss-Hermite nodes per dimension of ``v'``.

    Returns:
        P(correct), shape ``(...)``, clipped to ``[0, 1]``.

    Raises:
        ValueError: If an argument does not have input dimension 3.
    """
    P, K, m = _factors(S0, S1, delta)
    dtype = m.dtype
    z, w_z = (jnp.asarray(a, dtype) for a in hermite_rule(num_hermite, 3))
    ct, st, cp, sp, w_e = (jnp.asarray(a, dtype) for a in _sphere_rule(num_cos, num_azimuth, 0.0))
    g = 2.0 / 3.0 * (jnp.sqrt(ct**2 + 3.0) - ct)

    # v' = K (m + z) at the Hermite nodes, (..., H) per component.
    y = tuple(m[..., i, None] + z[:, i] for i in range(3))
    v = _lower_matvec(K, y)
    vhat, vnorm = _safe_unit(v)
    w1, w2 = _frame(vhat)
    # a(e) = |P^{-1} e|^2, e = ct vhat + st (cp w1 + sp w2): Gram matrix of P^{-1} (vhat, w1, w2).
    Pinv = solve_lower_matrix(P, jnp.broadcast_to(jnp.eye(3, dtype=dtype), P.shape))
    ph, p1, p2 = (_lower_matvec(Pinv, x) for x in (vhat, w1, w2))
    e = lambda x: x[..., None]  # noqa: E731
    ghh, gh1, gh2 = e(_dot(ph, ph)), e(_dot(ph, p1)), e(_dot(ph, p2))
    g11, g12, g22 = e(_dot(p1, p1)), e(_dot(p1, p2)), e(_dot(p2, p2))
    a = (ct**2 * ghh + 2.0 * ct * st * (cp * gh1 + sp * gh2)
         + st**2 * (cp**2 * g11 + 2.0 * cp * sp * g12 + sp**2 * g22))  # (..., H, E)
    sa = jnp.sqrt(a)
    S = e(vnorm) * g * sa
    # sqrt(pi/2) erf(S/sqrt 2) - S exp(-S^2/2) = int_0^S x^2 exp(-x^2/2) dx; its series
    # below S = 0.3 avoids the float32 cancellation.
    small = S < 0.3
    Sb = jnp.where(small, 1.0, S)
    big = math.sqrt(math.pi / 2.0) * erf(Sb / math.sqrt(2.0)) - Sb * jnp.exp(-0.5 * Sb**2)
    S2 = S * S
    series = S * S2 * (1.0 / 3.0 - S2 * (0.1 - S2 / 56.0))
    radial = jnp.where(small, series, big) / (a * sa)
    det_pinv = Pinv[..., 0, 0] * Pinv[..., 1, 1] * Pinv[..., 2, 2]  # = |A|^{-1/2}
    prob = 2.0 * (2.0 * np.pi) ** -1.5 * det_pinv * ((radial @ w_e) @ w_z)
    return jnp.clip(prob, 0.0, 1.0)


def _e_m5(tau: Array, m2: Array) -> Array:
    """``exp(-m2/2) M5(tau)`` for ``tau^2 <= m2`` (module docstring), no overflow."""
    t2 = tau * tau
    poly0 = 8.0 + t2 * (9.0 + t2)
    poly1 = tau * (15.0 + t2 * (10.0 + t2))
    expo = jnp.minimum(log_ndtr(tau) + 0.5 * (t2 - m2), 0.0)
    return jnp.exp(-0.5 * m2) * poly0 + poly1 * math.sqrt(2.0 * math.pi) * jnp.exp(expo)


def oddity_prob_polar_3d(
    S0: ArrayLike,
    S1: ArrayLike,
    delta: ArrayLike,
    *,
    nodes: tuple[int, int, int, int, int] = DEFAULT_POLAR_NODES,
    return_incorrect: bool = False,
) -> Array:
    """P(correct) by six-dimensional polar coordinates with a closed-form radius.

    See the module docstring. ``nodes = (num_n_polar, num_n_azimuth, num_f_polar,
    num_f_azimuth, num_psi)``: Gauss-Legendre nodes in ``cos theta`` of ``n`` (on
    ``[-1, 1]``, measured from ``m``), trapezoid nodes in its azimuth, Gauss-Legendre
    nodes in ``cos t`` of ``f`` (on ``[0, 1]``, measured from ``P^T K n``), trapezoid
    nodes in its azimuth, Gauss-Legendre nodes in ``psi``; the product is the number
    of evaluations per trial. The batch axes of the three arguments are broadcast.

    Args:
        S0: Noise covariance at the reference, ``Sigma(r)``, shape ``(..., 3, 3)``.
        S1: Noise covariance at the comparison, ``Sigma(c)``, shape ``(..., 3, 3)``.
        delta: ``r - c``, shape ``(..., 3)``.
        nodes: Node counts, see above.
        return_incorrect: If True, return ``1 - P(correct)`` (computed directly, with
            full relative precision near the ceiling) instead.

    Returns:
        P(correct) (or ``1 - P(correct)``), shape ``(...)``, clipped to ``[0, 1]``.

    Raises:
        ValueError: If an argument does not have input dimension 3.
    """
    n_pol, n_azi, f_pol, f_azi, n_psi = (int(k) for k in nodes)
    P, K, m = _factors(S0, S1, delta)
    dtype = m.dtype
    cf, sf, cpf, spf, w_f = (jnp.asarray(a, dtype) for a in _sphere_rule(f_pol, f_azi, 0.0))
    x_psi, w_psi = (jnp.asarray(a, dtype) for a in legendre_rule(n_psi, 0.0, 1.0))
    e = lambda x: x[..., None]  # noqa: E731

    # n measured from m: <n, m> = |m| cos theta. For large |m| the integrand is
    # concentrated near cos theta = 1, like exp(-kappa (1 - cos theta)) with kappa ~ |m|^2
    # cos^2 psi; 1 - cos theta = -log1p(-(1 - w) E) / k, E = 1 - exp(-2 k), maps a
    # Gauss-Legendre rule in w on [0, 1] to nodes spread over that scale (k = _N_RATE |m|^2;
    # the identity map as k -> 0).
    mhat, mnorm = _safe_unit((m[..., 0], m[..., 1], m[..., 2]))
    m2 = mnorm**2
    wl, ww = (jnp.asarray(a, dtype) for a in legendre_rule(n_pol, 0.0, 1.0))
    phi = 2.0 * np.pi * (np.arange(n_azi) + 0.5) / n_azi
    cpn, spn = (jnp.asarray(np.tile(a, n_pol), dtype) for a in (np.cos(phi), np.sin(phi)))
    k = jnp.maximum(_N_RATE * m2, 1e-4)
    E = -jnp.expm1(-2.0 * e(k))
    D = 1.0 - (1.0 - wl) * E  # (..., n_pol)
    one_minus = -jnp.log1p(-(1.0 - wl) * E) / e(k)
    cn = 1.0 - one_minus
    sn = jnp.sqrt(jnp.maximum(one_minus * (2.0 - one_minus), 0.0))
    w_n = ww * E / (e(k) * D) * (2.0 * np.pi / n_azi)
    rep = lambda x: jnp.repeat(x, n_azi, axis=-1)  # noqa: E731
    cn, sn, w_n = rep(cn), rep(sn), rep(w_n)  # (..., Jn)
    w1m, w2m = _frame(mhat)
    n = tuple(
        cn * p[..., None] + sn * (cpn * a[..., None] + spn * b[..., None])
        for p, a, b in zip(mhat, w1m, w2m)
    )
    tau0 = e(mnorm) * cn  # (..., Jn)
    Kn = _lower_matvec(K, n)
    kappa = _dot(Kn, Kn)
    h = _lower_rmatvec(P, Kn)  # P^T K n, never 0
    hhat, hnorm = _safe_unit(h)
    w1, w2 = _frame(hhat)
    # alpha = |P f|^2 with f = cf hhat + sf (cpf w1 + spf w2): Gram of P (hhat, w1, w2).
    ph, p1, p2 = (_lower_matvec(P, x) for x in (hhat, w1, w2))
    ghh, gh1, gh2 = e(_dot(ph, ph)), e(_dot(ph, p1)), e(_dot(ph, p2))
    g11, g12, g22 = e(_dot(p1, p1)), e(_dot(p1, p2)), e(_dot(p2, p2))
    alpha = (cf**2 * ghh + 2.0 * cf * sf * (cpf * gh1 + spf * gh2)
             + sf**2 * (cpf**2 * g11 + 2.0 * cpf * spf * g12 + spf**2 * g22))  # (..., Jn, Jf)
    c = e(hnorm) * cf  # |<P f, K n>| = cos t |h|
    kap = e(kappa)
    G = 2.0 * kap / (c + jnp.sqrt(c * c + 3.0 * alpha * kap))
    psi0 = jnp.arctan(G)
    # psi on [Psi, pi/2]: (..., Jn, Jf, Jpsi).
    span = 0.5 * np.pi - psi0
    psi = e(psi0) + e(span) * x_psi
    cos_psi, sin_psi = jnp.cos(psi), jnp.sin(psi)
    tau = e(e(tau0)) * cos_psi
    val = (sin_psi * cos_psi) ** 2 * _e_m5(tau, m2[..., None, None, None])
    inner = e(span) * val @ w_psi  # (..., Jn, Jf)
    p_inc = (2.0 * (2.0 * np.pi) ** -3) * jnp.sum((inner @ w_f) * w_n, axis=-1)
    prob = p_inc if return_incorrect else 1.0 - p_inc
    return jnp.clip(prob, 0.0, 1.0)
