"""The ask/tell experiment loop, its SQLite store and the placement strategies."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp import placement
from psyphy_pp._masked_map import padded_trials, prior_std, structure, whitened_gauss_newton
from psyphy_pp.trial_store import SessionBusyError, SessionFileError

MODEL = pp.WPPM(input_dim=2, basis_degree=1, extra_dims=1)


def _simulated(truth, trials, seed):
    return pp.simulate(MODEL, truth, trials.refs, trials.comparisons,
                       key=jax.random.PRNGKey(seed)).responses


@pytest.fixture(scope="module")
def fitted_session(tmp_path_factory):
    """A session past its start: 40 Sobol trials told, one fit, 10 adaptive ones told."""
    path = tmp_path_factory.mktemp("exp") / "s.db"
    truth = MODEL.sample_prior(jax.random.PRNGKey(5))
    with pp.Experiment(MODEL, path, start_trials=40, refit_every=40, candidates=600,
                       draws=8) as exp:
        first = exp.ask(40)
        exp.tell(first, _simulated(truth, first, 1))
        more = exp.ask(10)
        exp.tell(more, _simulated(truth, more, 2))
    return path, truth


# -- placement -----------------------------------------------------------------------------

@pytest.mark.parametrize("design", placement.START_DESIGNS)
def test_start_designs_stay_inside_the_box_and_continue_one_sequence(design):
    refs, comps = placement.start_trials(MODEL, 300, seed=3, design=design)
    assert refs.shape == comps.shape == (300, 2)
    assert np.all(np.abs(refs) <= 1) and np.all(np.abs(comps) <= 1)
    assert np.all(np.linalg.norm(comps - refs, axis=1) > 0)
    r2, c2 = placement.start_trials(MODEL, 100, seed=3, skip=200, design=design)
    np.testing.assert_array_equal(r2, refs[200:])
    np.testing.assert_array_equal(c2, comps[200:])


def test_candidates_stay_inside_the_box():
    params = MODEL.sample_prior(jax.random.PRNGKey(0))
    refs, comps = placement.candidate_trials(MODEL, params, 2000, jax.random.PRNGKey(1))
    assert np.all(np.abs(refs) <= 1) and np.all(np.abs(comps) <= 1)


def test_place_comparisons_keeps_the_direction_turns_round_and_shortens():
    refs = np.array([[0.0, 0.0], [0.9, 0.0], [0.5, 0.0], [0.99, 0.99]])
    offsets = np.array([[0.3, 0.4], [0.5, 0.0], [3.0, 0.0], [0.5, 0.5]])
    comps = placement.place_comparisons(refs, offsets)
    np.testing.assert_allclose(comps[0], [0.3, 0.4])  # fits: as given
    np.testing.assert_allclose(comps[1], [0.4, 0.0])  # turned round
    np.testing.assert_allclose(comps[2], [0.5 - 0.98 * 1.5, 0.0])  # shortened, turned round
    d = comps[3] - refs[3]
    np.testing.assert_allclose(d / np.linalg.norm(d), -np.array([1, 1]) / np.sqrt(2))
    # random offsets of any length: always inside, always along +-offset
    rng = np.random.default_rng(0)
    refs = rng.uniform(-1, 1, (5000, 3))
    offsets = rng.normal(size=(5000, 3)) * rng.uniform(0, 3, (5000, 1))
    comps = placement.place_comparisons(refs, offsets)
    assert np.all(np.abs(comps) <= 1)
    d = comps - refs
    cos = np.sum(d * offsets, 1) / (np.linalg.norm(d, axis=1) * np.linalg.norm(offsets, axis=1))
    np.testing.assert_allclose(np.abs(cos), 1.0, atol=1e-9)


def test_information_gain_matches_float64_reference():
    p = np.random.default_rng(1).uniform(0.34, 0.999, (16, 50))

    def h(q):
        return -(q * np.log(q) + (1 - q) * np.log(1 - q))

    expected = h(p.mean(0)) - h(p).mean(0)
    np.testing.assert_allclose(placement.information_gain(jnp.asarray(p)), expected,
                               rtol=1e-5, atol=1e-6)
    assert np.all(expected >= 0)


def test_gauss_newton_matches_finite_difference_jacobian(x64):
    """I + J^T diag(p(1-p)) J with J by central differences of the logits (float64).

    With the Gauss-Hermite rule, whose nodes do not depend on W: the default
    semi-analytic rule holds its W-dependent node placement fixed under
    differentiation, so its derivatives differ from finite differences by the
    quadrature error (5.6e-4 relative here), as tests/test_laplace.py explains.
    """
    model = pp.WPPM(input_dim=2, basis_degree=1, extra_dims=1,
                    task=pp.Oddity(method="quadrature", quadrature_rule="gauss-hermite"))
    truth = model.sample_prior(jax.random.PRNGKey(2))
    refs, comps = placement.start_trials(MODEL, 30, seed=0)
    y = np.arange(30) % 2
    dtype = jnp.float64
    std = prior_std(MODEL, dtype)
    arrays = padded_trials([refs, comps, y], np.ones(30, bool), 32, dtype)
    W = jnp.asarray(truth["W"], dtype)
    G = whitened_gauss_newton(structure(model), W, std, arrays)

    logits_of = jax.jit(lambda W: model.logits({"W": W}, refs, comps, devices=None))

    def logits(z):
        return np.asarray(logits_of(jnp.asarray(z.reshape(std.shape) * np.asarray(std))))

    z0 = np.asarray(W / std).reshape(-1)
    eps = 1e-6
    J = np.stack([(logits(z0 + eps * e) - logits(z0 - eps * e)) / (2 * eps)
                  for e in np.eye(z0.size)])
    p = 1 / (1 + np.exp(-logits(z0)))
    expected = np.eye(z0.size) + (J * (p * (1 - p))) @ J.T
    np.testing.assert_allclose(G, expected, rtol=1e-6, atol=1e-7)


def test_select_batch_keeps_references_apart():
    rng = np.random.default_rng(0)
    refs = rng.uniform(-1, 1, (500, 2))
    scores = -np.linalg.norm(refs, axis=1)  # the best all near the origin
    idx = placement.select_batch(refs, scores, 10)
    assert len(set(idx.tolist())) == 10
    chosen = refs[idx]
    gaps = np.linalg.norm(chosen[:, None] - chosen[None], axis=-1) + 9 * np.eye(10)
    assert gaps.min() >= 0.5 * (4 / 10) ** 0.5


# -- the session ------------------------------------------------------------------------

def test_a_session_fits_after_its_start_and_then_places_by_thresholds(fitted_session):
    path, _ = fitted_session
    with pp.Experiment(path=path) as exp:
        assert exp.num_told == 50 and exp.num_asked == 50
        assert exp.fit is not None and exp.fit.num_trials == 40
        log = exp.ask_log()
        assert log["strategy"].tolist() == ["sobol", "thresholds"]
        assert exp.data.metadata["source"].tolist() == ["sobol"] * 40 + ["thresholds"] * 10
        assert np.all(np.abs(exp.data.comparisons) <= 1)
        assert "told=50" in repr(exp)


def test_a_reopened_session_gives_the_identical_next_ask(fitted_session, tmp_path):
    path, _ = fitted_session
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with pp.Experiment(path=copy) as exp:
        a = exp.ask(5)
    shutil.copy(path, copy)
    with pp.Experiment(path=copy) as exp:
        b = exp.ask(5)
    assert a.sources.tolist() == ["thresholds"] * 5
    np.testing.assert_array_equal(a.refs, b.refs)
    np.testing.assert_array_equal(a.comparisons, b.comparisons)
    np.testing.assert_array_equal(a.ids, b.ids)


def _with_settings(path, copy, **changes):
    """A copy of a session with some stored settings changed (as if made with them)."""
    shutil.copy(path, copy)
    with pp.Experiment(path=copy) as exp:
        settings = dict(exp.settings, **changes)
    _execute(copy, "UPDATE meta SET value = ? WHERE key = 'settings'", json.dumps(settings))
    return copy


def _execute(path, sql, *args):
    """One SQL statement on a file, committed (a foreign program editing it)."""
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def test_the_information_strategy_places_inside_the_box_reproducibly(fitted_session, tmp_path):
    path, _ = fitted_session
    copy = tmp_path / "copy.db"
    runs = []
    for _ in range(2):
        with pp.Experiment(path=_with_settings(path, copy, strategy="information")) as exp:
            runs.append(exp.ask(6))
    assert runs[0].sources.tolist() == ["information"] * 6
    assert np.all(np.abs(runs[0].comparisons) <= 1)
    np.testing.assert_array_equal(runs[0].comparisons, runs[1].comparisons)


def test_the_time_budget_cuts_scoring_short(fitted_session, tmp_path):
    path, _ = fitted_session
    with pp.Experiment(path=_with_settings(path, tmp_path / "c.db", time_budget=1e-9)) as exp:
        exp.ask(3)  # the first ask of a fit in a process prepares (compiles): no budget
        exp.ask(3)
        assert bool(exp.ask_log()["fallback"][-1])


def test_tell_checks_ids_and_responses_and_is_idempotent(tmp_path):
    with pp.Experiment(MODEL, tmp_path / "s.db", strategy="sobol") as exp:
        t = exp.ask(3)
        with pytest.raises(ValueError, match="responses must be 0 or 1, got 2"):
            exp.tell(t, [1, 2, 0])
        with pytest.raises(ValueError, match=r"responses must have shape \(3,\)"):
            exp.tell(t, [1, 0])
        with pytest.raises(ValueError, match="trial id 99 was never asked"):
            exp.tell([99], [1])
        with pytest.raises(ValueError, match="twice"):
            exp.tell([t.ids[0], t.ids[0]], [1, 1])
        assert exp.num_told == 0  # nothing recorded by a refused tell
        assert exp.tell(t, [1, 0, 1]) == 3
        assert exp.tell(t, [1, 0, 1]) == 0  # the same again: accepted, not counted
        with pytest.raises(ValueError, match="already told with response 0, got 1"):
            exp.tell(t.ids[1:2], [1])
        with pytest.raises(ValueError, match="n must be"):
            exp.ask(0)


def test_settings_and_model_of_a_session_cannot_change(tmp_path):
    path = tmp_path / "s.db"
    pp.Experiment(MODEL, path, seed=3, strategy="grid").close()
    with pp.Experiment(path=path) as exp:
        assert exp.settings["seed"] == 3 and exp.model == MODEL
    with pytest.raises(ValueError, match="seed=4 differs from the session's seed=3"):
        pp.Experiment(MODEL, path, seed=4)
    with pytest.raises(ValueError, match="model differs"):
        pp.Experiment(pp.WPPM(basis_degree=2), path)
    with pytest.raises(FileNotFoundError, match="pass a model"):
        pp.Experiment(path=tmp_path / "missing.db")
    with pytest.raises(ValueError, match="strategy must be one of"):
        pp.Experiment(MODEL, tmp_path / "x.db", strategy="random")
    with pytest.raises(ValueError, match="fixed lapse rate"):
        pp.Experiment(pp.WPPM(task=pp.Oddity(lapse_rate="learn")), tmp_path / "y.db")


def test_export_round_trips_in_user_units(tmp_path):
    norm = pp.Normalization([0, 0], [255, 255])
    with pp.Experiment(MODEL, tmp_path / "s.db", strategy="sobol", normalization=norm) as exp:
        t = exp.ask(6)
        assert np.all((t.user_refs >= 0) & (t.user_refs <= 255))
        with pytest.raises(ValueError, match="nothing to export"):
            exp.export(tmp_path / "none.csv")
        exp.tell(t, [1, 1, 0, 1, 0, 0])
        data = exp.export(tmp_path / "out.csv")
    back = pp.TrialData.from_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(back.refs, data.refs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.responses, [1, 1, 0, 1, 0, 0])
    assert back.normalization == norm
    assert back.metadata["trial_id"].tolist() == [str(i) for i in t.ids]


# -- the file ---------------------------------------------------------------------------

def test_foreign_corrupt_and_newer_files_are_named(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("this is not a database, just text " * 100)
    with pytest.raises(SessionFileError, match="notes.db.*not a psyphy_pp experiment session"):
        pp.Experiment(path=text)
    other = tmp_path / "other.db"
    _execute(other, "CREATE TABLE things (x INTEGER)")
    with pytest.raises(SessionFileError, match="other.db.*no meta table"):
        pp.Experiment(path=other)
    newer = tmp_path / "newer.db"
    pp.Experiment(MODEL, newer).close()
    _execute(newer, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SessionFileError, match="schema version 99"):
        pp.Experiment(path=newer)


def test_a_second_writer_waits_then_is_refused(tmp_path):
    path = tmp_path / "s.db"
    pp.Experiment(MODEL, path, strategy="sobol").close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of an ask
    try:
        with pp.Experiment(path=path, timeout=0.2) as exp:
            t0 = time.perf_counter()
            with pytest.raises(SessionBusyError, match="locked for more than timeout=0.2"):
                exp.ask(1)
            assert time.perf_counter() - t0 >= 0.15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with pp.Experiment(path=path) as exp:  # free again
        assert len(exp.ask(1)) == 1


def test_kill_9_during_tells_loses_no_committed_trial(tmp_path):
    """A child asks and tells one trial at a time, printing each id after its
    tell returned; killed with SIGKILL mid-loop, every printed trial is there."""
    path = tmp_path / "s.db"
    script = textwrap.dedent(f"""
        import sys
        import psyphy_pp as pp
        exp = pp.Experiment(pp.WPPM(basis_degree=1), {str(path)!r}, strategy="sobol")
        while True:
            t = exp.ask(1)
            exp.tell(t, [1])
            print(int(t.ids[0]), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    told = []
    try:
        while len(told) < 40:
            line = proc.stdout.readline()
            assert line, "the child stopped early"
            told.append(int(line))
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=30)
    with pp.Experiment(path=path) as exp:
        data = exp.data
        ids = set(int(i) for i in data.metadata["trial_id"])
    assert set(told) <= ids
    assert len(ids) >= 40


# -- the command line -------------------------------------------------------------------

def test_cli_drives_a_session_through_files(tmp_path, monkeypatch, capsys):
    from psyphy_pp.cli import main

    monkeypatch.setenv("PSYPHY_PP_CACHE_DIR", "")  # no on-disk cache from a test
    db, asked, resp = tmp_path / "s.db", tmp_path / "next.csv", tmp_path / "resp.csv"
    assert main(["experiment", "ask", str(db), "-n", "4", "--out", str(asked), "--strategy",
                 "sobol", "--basis-degree", "1", "--low", "0", "0", "--high", "255",
                 "255"]) == 0
    assert "created" in capsys.readouterr().err
    lines = [ln for ln in asked.read_text().splitlines() if not ln.startswith("#")]
    assert lines[0] == "trial_id,ref_0,ref_1,comp_0,comp_1"
    rows = [ln.split(",") for ln in lines[1:]]
    # the stimulus program answers: the asked columns plus a response
    resp.write_text(lines[0] + ",response\n"
                    + "".join(",".join(r) + f",{i % 2}\n" for i, r in enumerate(rows)))
    assert main(["experiment", "tell", str(db), str(resp)]) == 0
    assert "told 4 new trial(s)" in capsys.readouterr().out
    # a response file whose stimuli do not match the asked ones is refused
    bad = tmp_path / "bad.csv"
    bad.write_text(f"trial_id,ref_0,response\n{rows[0][0]},1.5,1\n")
    assert main(["experiment", "tell", str(db), str(bad)]) == 1
    assert "does not match the session's trials" in capsys.readouterr().err
    assert main(["experiment", "ask", str(db), "-n", "2"]) == 0  # to standard output
    assert capsys.readouterr().out.count("\n") == 4  # normalization line, header, 2 trials
    assert main(["experiment", "ask", str(db), "--basis-degree", "3"]) == 1
    assert "--basis-degree 3 differs from the session's 1" in capsys.readouterr().err
    out = tmp_path / "trials.csv"
    assert main(["experiment", "export", str(db), str(out)]) == 0
    data = pp.TrialData.from_csv(out)
    assert data.num_trials == 4 and data.responses.tolist() == [0, 1, 0, 1]
    assert main(["experiment", "status", str(db)]) == 0
    assert "pending (asked, not told): 2" in capsys.readouterr().out
    assert main(["experiment", "status", str(tmp_path / "none.db")]) == 1
    assert "no experiment session" in capsys.readouterr().err
    missing = tmp_path / "missing.csv"
    missing.write_text("id,answer\n1,1\n")
    assert main(["experiment", "tell", str(db), str(missing)]) == 1
    assert "missing column(s) trial_id, response" in capsys.readouterr().err
    assert main(["experiment"]) == 2  # no action: a usage error
    assert "required: ACTION" in capsys.readouterr().err
