"""The psyphy-pp command line, called through ``main([...])``."""

from __future__ import annotations

import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.cli import main

SMALL_MODEL = ["--basis-degree", "1"]


@pytest.mark.parametrize("command", [[], ["simulate"], ["fit"], ["thresholds"], ["plot"]])
def test_help_for_each_command(command, capsys):
    assert main(command + ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: psyphy-pp")


def test_version_and_no_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"psyphy-pp {pp.__version__}"
    assert main([]) == 2


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """``psyphy-pp simulate`` in RGB-like units, then ``psyphy-pp fit`` (MAP)."""
    d = tmp_path_factory.mktemp("cli")
    csv = d / "trials.csv"
    assert main(["simulate", str(csv), *SMALL_MODEL, "--grid-size", "3", "--trials-per-ref", "20",
                 "--low", "0", "0", "--high", "255", "255", "--names", "R", "G", "--seed", "1"]) == 0
    # The default path: quadrature likelihood, L-BFGS, stop once converged (exit 0).
    assert main(["fit", str(csv), "--out", str(d / "fit"), *SMALL_MODEL, "--no-progress"]) == 0
    return d


@pytest.mark.slow  # shares the simulate + fit fixture (~15-45 s)
def test_simulate_writes_csv_and_truth(simulated):
    data = pp.TrialData.from_csv(simulated / "trials.csv")
    assert data.num_trials == 9 * 20
    assert data.normalization == pp.Normalization([0, 0], [255, 255], names=["R", "G"])
    truth = pp.load_fit(simulated / "trials_truth.npz")
    assert truth.method == "truth" and truth.model.diag_term == 1e-9


@pytest.mark.slow  # shares the simulate + fit fixture (~15-45 s)
def test_fit_writes_fit_params_summary(simulated, capsys):
    out = simulated / "fit"
    fit = pp.load_fit(out / "fit.npz")
    assert fit.kind == "point" and fit.losses.shape == (fit.settings["num_steps_run"],)
    assert fit.settings["converged"] is True
    assert fit.normalization.low == (0.0, 0.0) and fit.data.num_trials == 180
    with np.load(out / "params.npz") as f:
        np.testing.assert_array_equal(f["W"], fit.params["W"])
    summary = (out / "summary.txt").read_text()
    assert "180 trials" in summary and "box low=[0.0, 0.0] high=[255.0, 255.0]" in summary
    # It names what actually ran, how many steps, and whether the fit converged.
    assert "optimizer lbfgs(), tol 1e-05" in summary
    assert f"{fit.settings['num_steps_run']} of at most 1000 steps" in summary
    assert ", converged" in summary and "MAP convergence: converged at step" in summary
    assert "fit quality: negative log-likelihood" in summary and "constant observer" in summary
    assert "goodness of fit: deviance" in summary and "(parametric bootstrap, 1000" in summary
    if hasattr(pp, "to_arviz") and (out / "inference.nc").exists():
        import arviz as az

        assert "posterior" in az.from_netcdf(out / "inference.nc").groups()


@pytest.mark.slow  # shares the simulate + fit fixture (~15-45 s)
def test_thresholds_command_writes_user_unit_ellipses(simulated, capsys):
    fit_path = simulated / "fit" / "fit.npz"
    assert main(["thresholds", str(fit_path), "--num-directions", "8", "--no-progress",
                 "--points", str(simulated / "points.csv")]) == 0
    assert "9 references x 8 directions" in capsys.readouterr().out
    lines = (simulated / "fit" / "thresholds.csv").read_text().splitlines()
    assert lines[0].startswith("ref_0,ref_1,centre_0,centre_1,axis_0,axis_1,angle_deg")
    assert len(lines) == 1 + 9
    refs = np.array([[float(v) for v in line.split(",")[:2]] for line in lines[1:]])
    assert refs.min() == 0.0 and refs.max() == 255.0  # the data's units
    assert len((simulated / "points.csv").read_text().splitlines()) == 1 + 9 * 8


@pytest.mark.slow  # shares the simulate + fit fixture (~15-45 s)
def test_plot_command_writes_pngs(simulated, capsys):
    out = simulated / "plots"
    assert main(["plot", str(simulated / "fit" / "fit.npz"), "--truth",
                 str(simulated / "trials_truth.npz"), "--out", str(out), "--num-directions", "8",
                 "--no-progress", "--dpi", "50"]) == 0
    for name in ("thresholds.png", "psychometric.png", "losses.png", "calibration.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "csv_text, extra, message",
    [
        ("ref_0,ref_1,comp_0,response\n0,0,0,1\n", [], "missing column(s) comp_1"),
        ("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,x,1\n", [], "line 2 (trial 0), column comp_1: expected a number"),
        ("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,3\n", [], "column response: expected 0 or 1"),
        ("ref_0,ref_1,comp_0,comp_1,response\n100,0,0.1,0,1\n", [], "column ref_0: value 100.0 lies outside [-1, 1]"),
        ("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n", ["--low", "0", "0"], "--low and --high must be given together"),
        ("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n", ["--basis-degree", "-1"], "basis_degree must be a non-negative integer"),
    ],
    ids=["missing-columns", "non-numeric", "bad-response", "out-of-range", "half-box", "bad-setting"],
)
def test_fit_bad_input_exits_with_one_line_reason(tmp_path, capsys, csv_text, extra, message):
    path = tmp_path / "bad.csv"
    path.write_text(csv_text)
    assert main(["fit", str(path), "--no-progress", *extra]) == 1
    err = one_line_error(capsys)
    assert err.startswith("psyphy-pp fit: error: ") and message in err


def test_missing_files_and_usage_errors(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nope.csv")]) == 1
    assert "No such file or directory" in one_line_error(capsys)
    assert main(["thresholds", str(tmp_path / "nope.npz")]) == 1
    assert "nope.npz" in one_line_error(capsys)
    (tmp_path / "junk.npz").write_text("junk")
    assert main(["plot", str(tmp_path / "junk.npz")]) == 1
    assert "is not a psyphy_pp fit file" in one_line_error(capsys)
    assert main(["fit", "x.csv", "--method", "vi"]) == 2
    assert "invalid choice: 'vi'" in one_line_error(capsys)
    assert main(["frobnicate"]) == 2
    one_line_error(capsys)


@pytest.mark.slow  # ~40 s on 2 cores: a MAP, a Hessian, thresholds and a plot
@pytest.mark.study  # 80 s in a fresh-clone CI run; make test ran 15.7 minutes with it
def test_fit_laplace_writes_posterior_and_bands(simulated, capsys):
    out = simulated / "laplace"
    assert main(["fit", str(simulated / "trials.csv"), "--out", str(out), *SMALL_MODEL,
                 "--method", "laplace", "--num-draws", "30", "--no-progress"]) == 0
    fit = pp.load_fit(out / "fit.npz")
    assert fit.kind == "posterior" and fit.method == "laplace" and fit.sample_shape == (1, 30)
    summary = (out / "summary.txt").read_text()
    assert "Laplace: 30 independent draws of a Gaussian at the MAP" in summary
    assert "3 rotation-gauge directions with zero width" in summary
    assert "ellipse half-axes with their 90% credible bands (9 references x 16" in summary
    assert summary.count("\n  ref (") == 9  # one line per reference, in the data's units
    assert (out / "inference.nc").exists()
    assert main(["thresholds", str(out / "fit.npz"), "--num-directions", "6",
                 "--no-progress"]) == 0
    header = (out / "thresholds.csv").read_text().splitlines()[0].split(",")
    assert {"axis_0_lower", "axis_0_upper", "axis_1_lower", "axis_1_upper"} <= set(header)
    assert main(["plot", str(out / "fit.npz"), "--num-directions", "6", "--no-progress",
                 "--dpi", "50", "--scale", "1"]) == 0
    assert (out / "thresholds.png").exists()
    assert main(["plot", str(out / "fit.npz"), "--scale", "-2", "--force"]) == 1
    assert "--scale must be 'auto' or a positive number, got '-2'" in capsys.readouterr().err


def test_fit_checks_sampler_options_before_fitting(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n")
    assert main(["fit", str(csv), "--method", "laplace", "--num-draws", "0"]) == 1
    assert "--num-draws must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "t_fit").exists()


@pytest.mark.slow  # 25-45 s on 2 cores, mostly compiling the MAP and NUTS
def test_fit_nuts_that_does_not_converge_exits_5_and_is_saved(tmp_path, capsys):
    # Degree 0, 12 trials, 1 chain x 10 draws: quick, and far short of 400 effective draws.
    csv = tmp_path / "t.csv"
    rows = [f"0,0,{0.05 * (1 + i % 3)},0,{int(i % 4 != 0)}" for i in range(12)]
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response\n" + "\n".join(rows) + "\n")
    out = tmp_path / "nuts"
    code = main(["fit", str(csv), "--out", str(out), "--basis-degree", "0", "--extra-dims", "0",
                 "--method", "nuts", "--num-warmup", "10", "--num-draws", "10", "--num-chains",
                 "1", "--max-tree-depth", "3", "--mass", "diagonal", "--gauge", "fixed",
                 "--no-progress"])
    assert code == 5
    err = capsys.readouterr().err
    assert "NUTS did not converge (Sigma at the references: max r_hat" in err
    assert "r_hat needs at least 2 chains: --num-chains 2 or more" in err  # not "more draws"
    assert "exit status 5" in err
    fit = pp.load_fit(out / "fit.npz")
    assert fit.kind == "posterior" and fit.sample_shape == (1, 10)
    assert fit.settings["dense_mass"] is False and list(fit.settings["max_tree_depth"]) == [3, 3]
    assert fit.settings["gauge"] == "fixed"
    W0 = fit.weight_draws()[0, :, 0, 0]  # the constant block, in the gauge: [L | 0]
    assert np.all(W0[:, 0, 1] == 0) and np.all(W0[:, [0, 1], [0, 1]] > 0)
    summary = (out / "summary.txt").read_text()
    assert ("(warmup 10, target acceptance 0.8, tree depth at most 3, diagonal mass, fixed "
            "gauge)") in summary
    assert "NOT converged (wanted r_hat < 1.01 and ess_bulk >= 400" in summary


@pytest.mark.study  # 60-100 s on 2 cores: make test-studies
def test_fit_nuts_writes_posterior_and_bands(simulated, capsys):
    if not hasattr(pp, "fit_nuts"):
        pytest.skip("psyphy_pp.fit_nuts is not available")
    out = simulated / "nuts"
    assert main(["fit", str(simulated / "trials.csv"), "--out", str(out), *SMALL_MODEL,
                 "--method", "nuts", "--num-steps", "20", "--likelihood", "mc",
                 "--num-warmup", "30", "--num-draws", "20", "--num-chains", "1",
                 "--max-tree-depth", "4", "--target-accept", "0.9",
                 "--no-progress"]) == 5  # 20 draws: not converged
    fit = pp.load_fit(out / "fit.npz")
    assert fit.kind == "posterior" and fit.sample_shape == (1, 20)
    summary = (out / "summary.txt").read_text()
    assert ("NUTS: 1 chains x 20 draws (warmup 30, target acceptance 0.9, tree depth at most 4, "
            "dense mass, free gauge)") in summary
    assert list(fit.settings["max_tree_depth"]) == [4, 4] and fit.settings["target_accept_prob"] == 0.9
    # 20 draws cannot reach 400 effective draws: the summary says so.
    assert "NUTS convergence (Sigma at the references): max r_hat" in summary
    assert "NOT converged (wanted r_hat < 1.01 and ess_bulk >= 400" in summary
    assert main(["thresholds", str(out / "fit.npz"), "--num-directions", "6",
                 "--no-progress"]) == 0
    header = (out / "thresholds.csv").read_text().splitlines()[0].split(",")
    assert {"axis_0_lower", "axis_0_upper", "axis_1_lower", "axis_1_upper"} <= set(header)
    assert main(["plot", str(out / "fit.npz"), "--num-directions", "6", "--no-progress",
                 "--dpi", "50"]) == 0
    assert (out / "thresholds.png").exists()


@pytest.mark.slow
def test_fit_that_does_not_converge_exits_3_and_is_saved(simulated, capsys):
    out = simulated / "short"
    code = main(["fit", str(simulated / "trials.csv"), "--out", str(out), *SMALL_MODEL,
                 "--num-steps", "3", "--no-progress"])
    assert code == 3
    err = capsys.readouterr().err
    assert "did not converge in num_steps=3" in err and "exit status 3" in err
    fit = pp.load_fit(out / "fit.npz")
    assert fit.settings["converged"] is False
    assert "NOT converged" in (out / "summary.txt").read_text()


@pytest.mark.slow
def test_fit_that_diverges_exits_4_and_is_saved(simulated, capsys):
    out = simulated / "diverged"
    code = main(["fit", str(simulated / "trials.csv"), "--out", str(out), *SMALL_MODEL,
                 "--optimizer", "sgd", "--learning-rate", "1e30", "--num-steps", "50",
                 "--no-progress"])
    assert code == 4
    assert "the MAP diverged" in capsys.readouterr().err
    fit = pp.load_fit(out / "fit.npz")
    assert np.all(np.isfinite(fit.params["W"]))


@pytest.mark.parametrize("extra, message", [
    (["--momentum", "0.5"], "momentum applies to optimizer='sgd' only"),
    (["--optimizer", "lbfgs", "--learning-rate", "1e-3"], "learning_rate applies"),
    (["--tol", "-1"], "tol must be"),
    (["--num-chains", "4"], "--num-chains 4: only for --method nuts, got --method map"),
    (["--num-draws", "9", "--mass", "diagonal"],
     "--mass diagonal, --num-draws 9: only for --method nuts, got --method map"),
    (["--method", "laplace", "--num-draws", "9", "--gauge", "fixed"],
     "--gauge fixed: only for --method nuts, got --method laplace"),
    (["--target-accept", "0.9"], "--target-accept 0.9: only for --method nuts, got --method map"),
    (["--method", "laplace", "--max-tree-depth", "6,8"],
     "--max-tree-depth 6,8: only for --method nuts, got --method laplace"),
    (["--method", "nuts", "--target-accept", "1.5"],
     "--target-accept must be between 0 and 1 (exclusive), got 1.5"),
])
def test_fit_rejects_settings_that_would_be_ignored(tmp_path, capsys, extra, message):
    csv = tmp_path / "t.csv"
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n0,0,0,0.1,0\n")
    assert main(["fit", str(csv), *SMALL_MODEL, "--no-progress", *extra]) == 1
    assert message in capsys.readouterr().err


def test_summary_states_both_tree_depths_when_they_differ():
    from psyphy_pp.cli import _depth_text

    assert _depth_text((6, 7)) == "7 (6 in warmup)" and _depth_text((3, 3)) == "3"


@pytest.mark.parametrize("depth", ["0", "6,x", "6,7,8", "6,0", ""])
def test_fit_refuses_a_bad_tree_depth_before_reading_data(tmp_path, capsys, depth):
    assert main(["fit", str(tmp_path / "missing.csv"), "--method", "nuts",
                 "--max-tree-depth", depth]) == 2
    assert "expected a depth of at least 1 or a pair WARMUP,SAMPLING" in capsys.readouterr().err


# -- nothing lost, nothing misreported (issue 13) -----------------------------------------
@pytest.mark.slow  # shares the simulate + fit fixture
def test_existing_outputs_are_refused_unless_forced(simulated, capsys):
    csv, fit_dir = simulated / "trials.csv", simulated / "fit"
    assert main(["simulate", str(csv), *SMALL_MODEL]) == 1
    assert "trials.csv already exists; pass --force" in one_line_error(capsys)
    assert main(["fit", str(csv), "--out", str(fit_dir), *SMALL_MODEL, "--no-progress"]) == 1
    err = one_line_error(capsys)
    assert "already exists; pass --force to replace it as a whole, or --resume" in err
    th = simulated / "refused.csv"
    th.write_text("keep me")
    assert main(["thresholds", str(fit_dir / "fit.npz"), "--out", str(th), "--no-progress"]) == 1
    assert "refused.csv already exists; pass --force" in one_line_error(capsys)
    assert th.read_text() == "keep me"


@pytest.mark.slow  # shares the simulate + fit fixture
def test_fit_force_replaces_the_directory_as_a_whole(simulated, capsys):
    import shutil

    out = simulated / "forced"
    shutil.copytree(simulated / "fit", out)
    (out / "thresholds.csv").write_text("from an older fit")
    args = ["fit", str(simulated / "trials.csv"), "--out", str(out), *SMALL_MODEL, "--no-progress"]
    assert main(args + ["--force"]) == 0
    assert not (out / "thresholds.csv").exists()  # the old fit's files went with it
    assert (out / "fit.npz").exists() and "warnings: none" in (out / "summary.txt").read_text()
    assert not [p for p in simulated.iterdir() if p.name.startswith(".forced")]  # no leftovers


@pytest.mark.parametrize("command, extra, message", [
    ("thresholds", ["--grid-size", "0"], "--grid-size must be at least 1, got 0"),
    ("thresholds", ["--prob", "1.5"], "--prob must be between 0 and 1"),
    ("thresholds", ["--target", "0.2"], "--target must be between chance"),
    ("plot", ["--dpi", "0"], "--dpi must be at least 1, got 0"),
])
def test_bad_options_fail_before_any_computation(tmp_path, capsys, command, extra, message):
    # The fit file does not even exist: the options are checked first.
    assert main([command, str(tmp_path / "fit.npz"), *extra]) == 1
    assert message in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written, no empty directory


def test_unwritable_output_is_found_before_the_fit(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,1\n0,0,0,0.1,0\n")
    (tmp_path / "afile").write_text("")
    assert main(["fit", str(csv), "--out", str(tmp_path / "afile" / "fit")]) == 1
    assert "afile is a file, not a directory" in one_line_error(capsys)
    assert main(["fit", str(csv), "--out", str(tmp_path / "afile")]) == 1
    assert "is a file, not a directory" in one_line_error(capsys)


def test_data_warnings_reach_summary_and_stderr(tmp_path, capsys):
    csv = tmp_path / "zeros.csv"
    csv.write_text("ref_0,ref_1,comp_0,comp_1,response\n0,0,0.1,0,0\n0,0,0,0.1,0\n")
    code = main(["fit", str(csv), "--out", str(tmp_path / "fit"), *SMALL_MODEL, "--no-progress",
                 "--num-steps", "2"])
    assert code in (0, 3, 4)
    err = capsys.readouterr().err
    assert "warning: every response is 0" in err and "below chance (1/3)" in err
    summary = (tmp_path / "fit" / "summary.txt").read_text()
    assert "warnings: every response is 0" in summary and "2 trials for 24 weights" in summary


@pytest.mark.slow  # two fits in subprocesses and one here, ~30-60 s on 2 cores
def test_sigint_saves_a_checkpoint_and_resume_ends_where_an_uninterrupted_fit_does(tmp_path):
    """Ctrl-C in the middle of a fit: exit 130, the fit so far and checkpoint.npz are
    written; --resume continues to the same W as a fit that was never interrupted."""
    import re
    import signal
    import subprocess
    import sys

    csv = tmp_path / "t.csv"
    assert main(["simulate", str(csv), *SMALL_MODEL, "--grid-size", "2",
                 "--trials-per-ref", "20"]) == 0
    fit = [*SMALL_MODEL, "--optimizer", "adam", "--tol", "0", "--num-steps", "1000"]
    proc = subprocess.Popen([sys.executable, "-m", "psyphy_pp.cli", "fit", str(csv), "--out",
                             str(tmp_path / "part"), *fit],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    while proc.poll() is None:  # wait until the progress bar shows some steps
        seen += proc.stderr.read1(256) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
        steps = [int(m) for m in re.findall(rb"\| *(\d+)/1000", seen)]
        if steps and steps[-1] >= 50:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=300)
    assert proc.returncode == 130, (seen + rest).decode()[-2000:]
    assert b"continue with: psyphy-pp fit" in rest
    part = pp.load_fit(tmp_path / "part" / "fit.npz")
    assert 50 <= part.settings["num_steps_run"] < 1000
    assert (tmp_path / "part" / "checkpoint.npz").exists()
    assert "INTERRUPTED" in (tmp_path / "part" / "summary.txt").read_text()

    # tol 0: both runs take all 1000 steps, so both end "not converged" (exit 3).
    assert main(["fit", str(csv), "--resume", str(tmp_path / "part"), *fit, "--no-progress"]) == 3
    assert main(["fit", str(csv), "--out", str(tmp_path / "whole"), *fit, "--no-progress"]) == 3
    W_resumed = np.asarray(pp.load_fit(tmp_path / "part" / "fit.npz").params["W"])
    W_whole = np.asarray(pp.load_fit(tmp_path / "whole" / "fit.npz").params["W"])
    assert np.max(np.abs(W_resumed - W_whole)) <= 1e-6 * np.max(np.abs(W_whole))


@pytest.mark.slow  # shares the simulate + fit fixture (~15-45 s)
def test_validate_command_compares_a_fit_with_probe_trials(simulated, capsys):
    import dataclasses

    import jax

    truth = pp.load_fit(simulated / "trials_truth.npz")
    refs = pp.designs.grid_points(2, 2, -0.3, 0.3)
    r, c = pp.designs.probe_design(refs, [[1.0, 0.0], [0.0, 1.0]], np.linspace(0.05, 0.6, 6),
                                   repeats=10)
    probes = pp.simulate(truth.model, truth.params, r, c, key=jax.random.PRNGKey(5))
    probes = dataclasses.replace(probes, normalization=truth.normalization)
    probes.to_csv(simulated / "probes.csv")
    capsys.readouterr()
    assert main(["validate", str(simulated / "fit" / "fit.npz"), str(simulated / "probes.csv")]) == 0
    printed = capsys.readouterr().out
    assert "validation on 8 probes (480 trials)" in printed and "held-out log-likelihood" in printed
    table = (simulated / "fit" / "validation.csv").read_text().splitlines()
    assert table[0].startswith("ref_0,ref_1,direction_0,direction_1,num_trials,measured")
    assert len(table) == 1 + 8
    # refs in the user's units (0..255): the probe at (-0.3, -0.3) is at 255 * 0.35
    assert float(table[1].split(",")[0]) == pytest.approx(255 * 0.35)
    # an existing output is refused without --force
    assert main(["validate", str(simulated / "fit" / "fit.npz"), str(simulated / "probes.csv")]) == 1
