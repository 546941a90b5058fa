"""Every example runs end to end (with small sizes) as a user would run it."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_full_wppm_fit_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "full_wppm_fit_example.py"), "--trials-per-ref", "10",
         "--no-progress", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    # The default path: both loops converge, to the same MAP (issue 12's 1e-4 bound).
    assert out.stdout.count("converged True") == 2, out.stdout
    assert "AGREE within 1e-4" in out.stdout, out.stdout
    assert (tmp_path / "ellipses.png").exists() and (tmp_path / "losses.png").exists()


@pytest.mark.study  # ~2-8 min on 2 cores: make test-studies
def test_nuts_example_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "nuts_example.py"), "--grid-size", "2",
         "--trials-per-ref", "10", "--basis-degree", "1",
         "--num-warmup", "30", "--num-samples", "30", "--no-progress",
         "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    for text in ("NUTS: 2 chains x 30 draws", "r_hat", "elpd_loo", "credible interval",
                 "FitComparison(svi vs scratch): AGREE"):
        assert text in out.stdout, (text, out.stdout)
    for name in ("posterior_ellipses.png", "trace_sigma.png", "trace_W.png", "rank_W.png",
                 "compare_svi_scratch.png"):
        assert (tmp_path / name).exists(), name


@pytest.mark.study  # 47 s in CI (two subprocesses); test_experiment.py covers resuming
def test_experiment_loop_example_runs_and_resumes(tmp_path):
    cmd = [sys.executable, str(EXAMPLES / "experiment_loop.py"), "--trials", "30",
           "--start-trials", "40", "--block", "10", "--session", str(tmp_path / "s.db"),
           "--export", str(tmp_path / "t.csv")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "0 trials already told" in first.stdout and "wrote 30 trials" in first.stdout
    again = subprocess.run(cmd[:3] + ["40"] + cmd[4:], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert "30 trials already told" in again.stdout and "wrote 40 trials" in again.stdout
