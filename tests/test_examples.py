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
         "--num-steps", "20", "--no-progress", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "agreement: max relative loss difference" in out.stdout
    assert (tmp_path / "ellipses.png").exists() and (tmp_path / "losses.png").exists()
