"""Deterministic quadrature for P(correct) in the 2D oddity task (DESIGN.md 2b).

With ``u = z0 - z1 ~ N(0, 2 S0)`` and ``v = (z0 + z1)/2 - z2 ~ N(delta, S0/2 + S1)``
(independent, ``delta = r - c``), whitening by ``Sbar = (2/3) S0 + (1/3) S1 = L L^T``
gives ``u' = L^{-1} u ~ N(0, A)`` and ``v' = L^{-1} v ~ N(mu, B)`` with::

    A = 2 L^{-1} S0 L^{-T} = 2 (Q^T Q)^{-1},  Q = L0^{-1} L,  L0 L0^T = S0,
    B = L^{-1} (S0/2 + S1) L^{-T} = K K^T,   K = L^{-1} L_B,  L_B L_B^T = S0/2 + S1,
    mu = L^{-1} delta,

and the answer is correct iff ``(3/4)|u'|^2 + |<u', v'>| < |v'|^2``. Along a unit
direction ``e`` that holds for ``u' = rho e`` iff ``rho < R = |v'| g(<e, v'>/|v'|)``,
``g(s) = (2/3)(sqrt(s^2 + 3) - |s|)``. Measuring the direction from ``v'``,
``e = R_t v'/|v'|`` (``R_t`` the rotation by ``t``), the symmetry ``e -> -e`` folds
the circle onto ``t in [-pi/2, pi/2]``, where ``|s| = cos t`` and everything is
analytic up to the kinks at the ends. The radial Gaussian integral is closed-form::

    P(correct | v') = |A|^{-1/2} / pi * int_{-pi/2}^{pi/2} (1 - exp(-a R^2 / 2)) / a dt,
    a(t) = e^T A^{-1} e.

Two rules integrate this over ``v'``; both use Gauss-Legendre in ``t``:

* :func:`oddity_prob_quadrature` (DESIGN 2b): tensor Gauss-Hermite nodes
  ``v' = mu + K z``. Cost ``num_angles * num_hermite**2`` evaluations per trial.
* :func:`oddity_prob_semianalytic`: writing ``(1 - exp(-x))/x = int_0^1 exp(-lam x)
  dlam``, the integrand for fixed ``(t, lam)`` is ``|v'|^2`` times a Gaussian in
  ``v'``, whose expectation under ``N(mu, B)`` is closed-form. With
  ``N_t = g(cos t)^2 R_t^T A^{-1} R_t`` and ``M = I + lam B N_t``::

      P(correct) = |A|^{-1/2} / (2 pi) int dt g^2 int_0^1 dlam det(M)^{-1/2}
                   exp(-lam mu^T N_t M^{-1} mu / 2) (tr(M^{-1} B) + |M^{-1} mu|^2).

  The integrand decays in ``lam`` like ``(1 + lam tr(B N_t))^{-3/2}`` and
  ``exp(-lam mu^T N_t mu / 2)``; ``lam`` is integrated by Gauss-Legendre in ``s`` after
  ``lam = expm1(kappa s) / rate`` (geometric spacing over those scales), on
  ``[0, lam_max]`` where the Gaussian factor beyond ``lam_max`` is below ``e^-25``.
  Cost ``num_angles * num_radial`` evaluations per trial, much more accurate per
  evaluation (see ``benchmarks/quadrature_accuracy.py``) and smooth at ``v' = 0``.

  The complement uses the same integrand on ``lam in [1, inf)``: ``exp(-x)/x =
  int_1^inf exp(-lam x) dlam`` and ``|A|^{-1/2} / pi int (1/a) dt = 1`` (the whole
  Gaussian), so ``P(incorrect | v') = |A|^{-1/2} / pi int exp(-a R^2 / 2) / a dt`` and
  ``1 - P(correct)`` is the formula above with ``int_1^inf dlam``
  (``return_incorrect=True``). Far above threshold it is exponentially small and
  keeps its relative precision, where ``1 - p`` computed from ``p`` rounds to 0 even
  in float64. ``lam`` is mapped to ``w = (1 + rho) / (1 + rho lam) in (0, 1]``, with
  ``rho = 2 det(B N_t) / tr(B N_t)`` (the harmonic mean of the eigenvalues of
  ``B N_t``): for ``B N_t`` a multiple of ``I`` (S0 = S1) the algebraic factors
  become polynomials in ``w`` and the Gaussian factor ``exp(c w)``, exactly, with
  ``c`` its log-slope at ``lam = 1``. ``y = 1 - w`` then gets the geometric spacing
  of the ``[0, 1]`` rule (rate ``0.5 + 0.15 c``, truncated where ``c y > 12``).

Both rules share the angle integral, whose integrand has a peak of width about
``1/sqrt(cond A)``: when S0 and S1 differ strongly (e.g. very elongated ellipses
rotated against each other) and r, c are far apart, 8 angles err by up to ~0.1 and
16 by ~1e-2; for S1 close to S0, as in a smooth WPPM field, ``A`` is close to ``2 I``.

All matrix algebra is closed-form on batches (:mod:`psyphy_pp.oddity.whitening`, explicit 2x2
formulas); no LAPACK (DESIGN.md section 5). On CPU, XLA's YNNPACK reduce fusions make
the value-and-grad of either rule several times slower; compiling with
``compiler_options={"xla_cpu_experimental_ynn_fusion_type": ""}`` avoids them.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_NUM_ANGLES",
    "DEFAULT_NUM_HERMITE",
    "DEFAULT_NUM_RADIAL",
    "oddity_prob_quadrature",
    "oddity_prob_semianalytic",
]

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np

from psyphy_pp._linalg import solve_lower_matrix
from psyphy_pp._nodes import hermite_rule, legendre_rule
from psyphy_pp._typing import Array, ArrayLike
from psyphy_pp._validation import covariance_triplet
from psyphy_pp.oddity.whitening import whiten

#: Default Gauss-Legendre nodes in the angle ``t`` (both rules).
DEFAULT_NUM_ANGLES = 8
#: Default Gauss-Hermite nodes per dimension of ``v'`` (the rule has this squared).
DEFAULT_NUM_HERMITE = 6
#: Default Gauss-Legendre nodes in ``lam`` for :func:`oddity_prob_semianalytic`.
DEFAULT_NUM_RADIAL = 4


# Substitution in lam (oddity_prob_semianalytic): truncation where the Gaussian factor
# is below exp(-_EXP_CUT), and the weight of the exponential decay rate in the
# geometric node spacing. Tuned on 2,000 random configurations from 0 to 3,000 standard
# deviations apart; neighbouring values (20-30, 0.15-0.25) do about as well.
_EXP_CUT = 25.0
_RATE_Q = 0.2
# The same for the complement rule on lam in [1, inf) (return_incorrect=True), in
# y = 1 - w (module docstring): rate _INC_RATE_0 + _INC_RATE_Q * c, truncation where
# c y > _INC_CUT (a relative error e^-12 = 6e-6 of 1 - p). Tuned on the 200 + 200
# configurations of benchmarks/quadrature_accuracy.py and on S0 = S1 from 0 to 30
# standard deviations: 8 x 4 nodes err by 8e-7 on average (lam rule alone) and by at
# most 2e-4 relative to 1 - p far out; neighbouring values do about as well.
_INC_CUT = 12.0
_INC_RATE_0 = 0.5
_INC_RATE_Q = 0.15


@cache
def _angle_rule(n: int) -> tuple[np.ndarray, ...]:
    """Gauss-Legendre on ``t in [-pi/2, pi/2]``: ``cos t, sin t, g(cos t)^2, weights``."""
    x, w = np.polynomial.legendre.leggauss(n)
    t, w = 0.5 * np.pi * x, 0.5 * np.pi * w
    cos, sin = np.cos(t), np.sin(t)
    g2 = (2.0 / 3.0 * (np.sqrt(cos**2 + 3.0) - cos)) ** 2
    return cos, sin, g2, w


def _whiten(S0: ArrayLike, S1: ArrayLike, delta: ArrayLike) -> tuple[Array, ...]:
    """Validate, promote to a float dtype, and return ``Q, K, mu`` (module docstring)."""
    w = whiten(*covariance_triplet(S0, S1, delta, 2))
    Q = solve_lower_matrix(w.L0, w.L)  # lower triangular, A^{-1} = Q^T Q / 2
    return Q, w.K, w.mu  # B = K K^T


def oddity_prob_quadrature(
    S0: ArrayLike,
    S1: ArrayLike,
    delta: ArrayLike,
    *,
    num_angles: int = DEFAULT_NUM_ANGLES,
    num_hermite: int = DEFAULT_NUM_HERMITE,
) -> Array:
    """P(correct) by Gauss-Legendre (angle) x Gauss-Hermite (``v'``) quadrature, D = 2.

    The rule of DESIGN.md 2b; :func:`oddity_prob_semianalytic` is more accurate
    for the same cost. The batch axes of the three arguments are broadcast.

    Args:
        S0: Noise covariance at the reference, ``Sigma(r)``, shape ``(..., 2, 2)``.
        S1: Noise covariance at the comparison, ``Sigma(c)``, shape ``(..., 2, 2)``.
        delta: ``r - c``, shape ``(..., 2)``.
        num_angles: Gauss-Legendre nodes in the angle ``t``.
        num_hermite: Gauss-Hermite nodes per dimension of ``v'``.

    Returns:
        P(correct), shape ``(...)``, clipped to ``[0, 1]``.

    Raises:
        ValueError: If an argument does not have input dimension 2.
    """
    Q, K, mu = _whiten(S0, S1, delta)
    dtype = mu.dtype
    cos, sin, g2, w_t = (jnp.asarray(a, dtype) for a in _angle_rule(num_angles))
    z, w_z = (jnp.asarray(a, dtype) for a in hermite_rule(num_hermite, 2))

    # v' at the Hermite nodes, (..., H, 2); K is lower triangular.
    v0 = mu[..., 0, None] + K[..., 0, 0, None] * z[:, 0]
    v1 = mu[..., 1, None] + K[..., 1, 0, None] * z[:, 0] + K[..., 1, 1, None] * z[:, 1]
    r2 = v0**2 + v1**2
    # Unit direction n of v'; at v' = 0 any n will do (the integrand is 0 there).
    ok = r2 > jnp.finfo(dtype).tiny
    inv_r = jnp.where(ok, 1.0 / jnp.sqrt(jnp.where(ok, r2, 1.0)), 0.0)
    n0, n1 = jnp.where(ok, v0 * inv_r, 1.0), v1 * inv_r
    # 2 a(t) = |Q R_t n|^2 = |cos t Q n + sin t Q J n|^2 with J n = (-n1, n0).
    p0, p1 = Q[..., 0, 0, None] * n0, Q[..., 1, 0, None] * n0 + Q[..., 1, 1, None] * n1
    q0, q1 = -Q[..., 0, 0, None] * n1, -Q[..., 1, 0, None] * n1 + Q[..., 1, 1, None] * n0
    pp, pq, qq = (x[..., None] for x in (p0**2 + p1**2, p0 * q0 + p1 * q1, q0**2 + q1**2))
    a = 0.5 * (cos**2 * pp + 2.0 * cos * sin * pq + sin**2 * qq)  # (..., H, angles)
    # (1 - exp(-a R^2 / 2)) / a with R^2 = |v'|^2 g^2; a >= min eig(A^{-1}) > 0.
    f = -jnp.expm1(-0.5 * g2 * r2[..., None] * a) / a
    det_q = Q[..., 0, 0] * Q[..., 1, 1]  # = 2 |A|^{-1/2}
    prob = det_q / (2.0 * np.pi) * ((f @ w_t) @ w_z)
    return jnp.clip(prob, 0.0, 1.0)


def oddity_prob_semianalytic(
    S0: ArrayLike,
    S1: ArrayLike,
    delta: ArrayLike,
    *,
    num_angles: int = DEFAULT_NUM_ANGLES,
    num_radial: int = DEFAULT_NUM_RADIAL,
    return_incorrect: bool = False,
) -> Array:
    """P(correct) with the ``v'`` expectation in closed form, D = 2.

    Gauss-Legendre in the angle ``t`` and in the radial fraction ``lam`` (module
    docstring); ``num_angles * num_radial`` evaluations per trial. The batch axes
    of the three arguments are broadcast.

    With ``return_incorrect=True``, ``1 - P(correct)`` is computed directly from the
    ``lam in [1, inf)`` half of the integral (module docstring), with full relative
    precision far above threshold. The two halves are separate rules: their sum is 1
    up to the quadrature error (about 1e-6 at the default nodes).

    Args:
        S0: Noise covariance at the reference, ``Sigma(r)``, shape ``(..., 2, 2)``.
        S1: Noise covariance at the comparison, ``Sigma(c)``, shape ``(..., 2, 2)``.
        delta: ``r - c``, shape ``(..., 2)``.
        num_angles: Gauss-Legendre nodes in the angle ``t``.
        num_radial: Gauss-Legendre nodes in ``lam``.
        return_incorrect: If True, return ``1 - P(correct)`` (computed directly).

    Returns:
        P(correct) (or ``1 - P(correct)``), shape ``(...)``, clipped to ``[0, 1]``.

    Raises:
        ValueError: If an argument does not have input dimension 2.
    """
    Q, K, mu = _whiten(S0, S1, delta)
    dtype = mu.dtype
    cos, sin, g2, w_t = (jnp.asarray(a, dtype) for a in _angle_rule(num_angles))
    s, w_s = (jnp.asarray(a, dtype) for a in legendre_rule(num_radial))

    # A^{-1} = Q^T Q / 2 and B = K K^T (Q, K lower triangular); m = mu.
    ai00 = 0.5 * (Q[..., 0, 0] ** 2 + Q[..., 1, 0] ** 2)
    ai01 = 0.5 * Q[..., 1, 0] * Q[..., 1, 1]
    ai11 = 0.5 * Q[..., 1, 1] ** 2
    b00, b01 = K[..., 0, 0] ** 2, K[..., 0, 0] * K[..., 1, 0]
    b11 = K[..., 1, 0] ** 2 + K[..., 1, 1] ** 2
    m0, m1 = mu[..., 0], mu[..., 1]
    tr_b, det_b, tr_ai = b00 + b11, b00 * b11 - b01**2, ai00 + ai11
    det_ai = ai00 * ai11 - ai01**2
    # adj(B) m and m^T adj(B) m.
    y0, y1 = b11 * m0 - b01 * m1, b00 * m1 - b01 * m0
    m_adjb_m = m0 * y0 + m1 * y1

    # N_t = g^2 R_t^T A^{-1} R_t, per (trial, angle); trailing axis = angles.
    e = lambda x: x[..., None]  # noqa: E731
    c2, s2, cs = cos**2, sin**2, cos * sin
    n00 = g2 * (c2 * e(ai00) + 2.0 * cs * e(ai01) + s2 * e(ai11))
    n11 = g2 * (s2 * e(ai00) - 2.0 * cs * e(ai01) + c2 * e(ai11))
    n01 = g2 * (cs * (e(ai11) - e(ai00)) + (c2 - s2) * e(ai01))
    det_n = g2**2 * e(det_ai)
    # With M = I + lam B N (2x2, so adj is linear) and z = adj(N) adj(B) m:
    #   det M = 1 + lam t1 + lam^2 t2,          t1 = tr(BN), t2 = det B det N,
    #   m^T lam N M^{-1} m = lam (q1 + lam q2) / det M,  q1 = m^T N m, q2 = det N m^T adj(B) m,
    #   tr(M^{-1} B) = (tr B + lam h1) / det M,   h1 = det B tr N,
    #   |M^{-1} m|^2 = (|m|^2 + lam (k1 + lam k2)) / det M^2,  k1 = 2 m.z, k2 = |z|^2.
    z0, z1 = n11 * e(y0) - n01 * e(y1), n00 * e(y1) - n01 * e(y0)
    t1 = e(b00) * n00 + 2.0 * e(b01) * n01 + e(b11) * n11
    t2 = e(det_b) * det_n
    q1 = e(m0) ** 2 * n00 + 2.0 * e(m0 * m1) * n01 + e(m1) ** 2 * n11
    q2 = det_n * e(m_adjb_m)
    h1 = e(det_b) * g2 * e(tr_ai)
    k1 = 2.0 * (e(m0) * z0 + e(m1) * z1)
    k2 = z0**2 + z1**2

    if return_incorrect:
        lam, w_lam = _incorrect_lam_rule(t1, t2, q1, q2, s, w_s)
    else:
        # lam = expm1(kappa s) / rate, s in [0, 1], per (trial, angle): nodes spread
        # geometrically over the decay scales 1/t1 (algebraic, ~(1 + lam t1)^{-3/2})
        # and 2/q1 (exponential, ~exp(-lam q1 / 2)); the range stops at lam_max,
        # beyond which the exponent lam q1 / (2 (1 + lam t1)) exceeds _EXP_CUT.
        beta = 0.5 * q1
        lam_max = _EXP_CUT / jnp.maximum(_EXP_CUT, beta - _EXP_CUT * t1)
        rate = t1 + _RATE_Q * beta
        kappa = jnp.log1p(rate * lam_max)
        grow = jnp.expm1(kappa[..., None] * s)  # (..., angles, radial)
        lam = grow / rate[..., None]
        w_lam = (kappa / rate)[..., None] * (1.0 + grow) * w_s
    t1, t2, q1, q2, h1, k1, k2 = (x[..., None] for x in (t1, t2, q1, q2, h1, k1, k2))
    m2 = m0**2 + m1**2

    inv_d = 1.0 / (1.0 + lam * (t1 + lam * t2))
    quad = lam * (q1 + lam * q2) * inv_d
    tr_c = (e(e(tr_b)) + lam * h1) * inv_d
    mm = (e(e(m2)) + lam * (k1 + lam * k2)) * inv_d**2
    val = jnp.exp(-0.5 * quad) * jnp.sqrt(inv_d) * (tr_c + mm)  # (..., angles, radial)
    inner = jnp.sum(val * w_lam, axis=-1)  # (..., angles)
    det_q = Q[..., 0, 0] * Q[..., 1, 1]  # = 2 |A|^{-1/2}
    prob = det_q / (4.0 * np.pi) * (inner @ (g2 * w_t))
    return jnp.clip(prob, 0.0, 1.0)


def _incorrect_lam_rule(
    t1: Array, t2: Array, q1: Array, q2: Array, s: Array, w_s: Array
) -> tuple[Array, Array]:
    """Nodes and weights in ``lam in [1, inf)``, shape ``(..., angles, radial)``.

    ``t1, t2, q1, q2`` (per trial and angle) are the coefficients of
    :func:`oddity_prob_semianalytic`: ``det M = 1 + lam t1 + lam^2 t2`` and the
    exponent ``E(lam) = lam (q1 + lam q2) / det M``; ``s, w_s`` a rule on ``[0, 1]``.

    The node placement is held fixed under differentiation (``stop_gradient``): the
    gradient is that of the integrand on these nodes (differentiation under the
    integral sign), equal to the derivative of the returned value up to the
    quadrature error. Differentiating through the placement made value-and-grad
    about 3x slower on CPU.
    """
    t1, t2, q1, q2 = (jax.lax.stop_gradient(x) for x in (t1, t2, q1, q2))
    # w = (1 + rho) / (1 + rho lam), y = 1 - w: lam = (1 + y / rho) / (1 - y).
    rho = 2.0 * t2 / t1
    # c = -d(E/2)/dw at w = 1 (lam = 1), >= 0 since E increases with lam.
    d1 = 1.0 + t1 + t2
    slope = (q1 * (1.0 - t2) + q2 * (2.0 + t1)) / d1**2  # dE/dlam at lam = 1
    c = jnp.maximum(0.5 * slope * (1.0 + rho) / rho, 0.0)
    y_max = _INC_CUT / jnp.maximum(_INC_CUT, c)
    rate = _INC_RATE_0 + _INC_RATE_Q * c
    kappa = jnp.log1p(rate * y_max)
    grow = jnp.expm1(kappa[..., None] * s)
    y = grow / rate[..., None]
    w = 1.0 - y
    rho = rho[..., None]
    lam = (1.0 + y / rho) / w
    w_lam = (kappa / rate)[..., None] * (1.0 + grow) * w_s * (1.0 + rho) / (rho * w**2)
    return lam, w_lam
