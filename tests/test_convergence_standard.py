"""benchmarks/convergence_standard.py: a small run of the study."""

from benchmarks.convergence_standard import pass_rates


def test_independent_draws_have_full_ess_and_correlated_ones_less():
    free = pass_rates(0.0, entries=4, draws=200, reps=3)
    sticky = pass_rates(0.6, entries=4, draws=200, reps=3)
    # 2 x 200 independent draws: ess_bulk near 400 (ArviZ's estimate, +-25%).
    assert 300 < free["median_ess"] < 500
    # AR(1) with rho = 0.6: ess about (1 - rho) / (1 + rho) = 0.25 of the draws.
    assert 50 < sticky["median_ess"] < 160
    assert sticky["p_both"] == 0.0  # 400 draws in all cannot give 400 effective ones
    assert all(0.0 <= free[k] <= 1.0 for k in ("p_rhat", "p_ess", "p_both"))
