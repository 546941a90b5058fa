"""benchmarks/coverage.py: the observers are reproducible and a tiny run gives a sane table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import coverage


def test_halton_points_fill_the_unit_square():
    pts = coverage.halton_points(256, seed=3)
    assert pts.shape == (256, 2)
    assert np.all((pts >= 0) & (pts < 1))
    # every cell of a 4 x 4 partition holds 256 / 16 = 16 points, give or take a few
    counts = np.histogram2d(pts[:, 0], pts[:, 1], bins=4, range=[[0, 1], [0, 1]])[0]
    assert counts.min() >= 12 and counts.max() <= 20
    np.testing.assert_array_equal(pts, coverage.halton_points(256, seed=3))
    assert not np.array_equal(pts, coverage.halton_points(256, seed=4))


@pytest.mark.slow  # about 10 s: compiles the simulation
@pytest.mark.parametrize("design", coverage.DESIGNS)
def test_observer_is_reproducible_from_its_seed(design):
    kw = dict(trials=50, grid_size=5, basis_degree=1)
    _, truth, data, _ = coverage.make_observer(7, design, **kw)
    _, truth2, data2, _ = coverage.make_observer(7, design, **kw)
    np.testing.assert_array_equal(np.asarray(truth["W"]), np.asarray(truth2["W"]))
    np.testing.assert_array_equal(data.comparisons, data2.comparisons)
    np.testing.assert_array_equal(data.responses, data2.responses)
    assert data.num_trials == 50
    assert np.all(np.abs(data.refs) <= 1) and np.all(np.abs(data.comparisons) <= 1)
    _, _, other, _ = coverage.make_observer(8, design, **kw)
    assert not np.array_equal(other.comparisons, data.comparisons)


# 33 s on 2 cores (--durations, 1-min load 1.3), 58 s in a fresh-clone `make test`: a
# degree-1 fit_laplace and three threshold solves. A study: `make test` was over 15 minutes.
@pytest.mark.study
def test_tiny_run_prints_the_coverage_table(tmp_path, capsys):
    out_json, out_png = tmp_path / "coverage.json", tmp_path / "coverage.png"
    rc = coverage.main(["--quick", "--observers", "1", "--trials", "200", "--basis-degree", "1",
                        "--draws", "20", "--readout-grid", "3", "--num-directions", "8",
                        "--nuts", "--nuts-warmup", "20", "--nuts-samples", "20",
                        "--bootstrap", "1", "--json", str(out_json), "--figure", str(out_png)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("| " + " | ".join(coverage.TABLE_COLUMNS) + " |")
    rows = [line.strip("|").split(" | ") for line in lines[start + 2:] if line.startswith("|")]
    methods = ["laplace", "nuts", "bootstrap"]  # one design
    assert [r[0].strip() for r in rows] == [m for m in methods for _ in coverage.PROBS]
    col = coverage.TABLE_COLUMNS.index("coverage")
    nominal = [float(r[coverage.TABLE_COLUMNS.index("nominal")]) for r in rows]
    assert nominal == list(coverage.PROBS) * len(methods)
    assert all(0.0 <= float(r[col]) <= 1.0 for r in rows)

    record = json.loads(out_json.read_text())
    assert record["versions"]["jax"] and len(record["load_start"]) == 3
    (obs,) = record["observers"]
    assert obs["seed"] == 0 and obs["design"] == "grid" and obs["laplace"]["error"] is None
    assert obs["laplace"]["used"] + obs["dropped"] == 9 * 8
    assert obs["nuts"]["error"] is None and obs["nuts"]["max_rhat"] >= 1.0
    assert obs["nuts"]["min_ess_bulk"] > 0 and obs["nuts"]["used"] == obs["laplace"]["used"]
    assert obs["bootstrap"]["error"] is None and obs["bootstrap"]["refits"] >= 2
    for s in record["summary"]:
        assert 0.0 <= s["coverage"] <= 1.0 and 0.0 <= s["obs_min"] <= s["obs_max"] <= 1.0
    for m in methods:
        covered = [s["coverage"] for s in record["summary"] if s["method"] == m]
        assert covered == sorted(covered), m  # nested bands: wider bands cover at least as much
    assert out_png.stat().st_size > 0
