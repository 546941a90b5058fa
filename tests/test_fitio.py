"""Saving and loading fits."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import jax
import numpy as np
import pytest

import psyphy_pp as pp
from psyphy_pp.fitio import FIT_FORMAT_VERSION


@pytest.fixture(scope="module")
def tiny_fit():
    """A MapResult as fit_map returns it (built directly: no compilation needed)."""
    model = pp.WPPM(basis_degree=1, task=pp.Oddity(method="mc", num_samples=20))
    rng = np.random.default_rng(0)
    refs = rng.uniform(-0.5, 0.5, (12, 2))
    norm = pp.Normalization([0, 0], [255, 255], names=["R", "G"])
    data = pp.TrialData(refs, refs + 0.1, rng.integers(0, 2, 12), normalization=norm,
                        metadata={"subject": ["S1"] * 12})
    params = model.sample_prior(jax.random.PRNGKey(1))
    return pp.MapResult(params=params, losses=np.array([0.9, 0.8, 0.7]),
                        init_params=model.sample_prior(jax.random.PRNGKey(0)), model=model,
                        data=data, method="svi",
                        settings=dict(num_steps=3, learning_rate=1e-4, seed=0, task=model.task))


def test_map_fit_round_trip(tiny_fit, tmp_path):
    pp.save_fit(tmp_path / "fit.npz", tiny_fit)
    back = pp.load_fit(tmp_path / "fit.npz")
    assert back.kind == "point" and back.method == "svi" and back.sample_shape == ()
    assert back.model == tiny_fit.model
    np.testing.assert_array_equal(back.params["W"], tiny_fit.params["W"])
    np.testing.assert_array_equal(back.losses, tiny_fit.losses)
    assert back.normalization == tiny_fit.data.normalization
    np.testing.assert_array_equal(back.data.refs, tiny_fit.data.refs)
    assert back.data.metadata["subject"].tolist() == ["S1"] * tiny_fit.data.num_trials
    assert back.library_version == pp.__version__
    assert back.settings["num_steps"] == 3 and back.settings["task"]["Oddity"]["method"] == "mc"
    refs = [[0.0, 0.0]]
    a = pp.thresholds(tiny_fit.model, tiny_fit.params, refs, num_directions=4)
    b = pp.thresholds(back.model, back.params, refs, num_directions=4)
    np.testing.assert_array_equal(a.distances, b.distances)


def test_posterior_draws_round_trip(tiny_fit, tmp_path):
    W = np.stack([np.stack([tiny_fit.params["W"]] * 3)] * 2)  # (chains=2, draws=3, ...)
    nuts_like = SimpleNamespace(samples={"W": W}, model=tiny_fit.model, data=tiny_fit.data,
                                settings={"num_warmup": 5}, method="nuts")
    pp.save_fit(tmp_path / "post.npz", nuts_like, include_data=False)
    back = pp.load_fit(tmp_path / "post.npz")
    assert back.kind == "posterior" and back.sample_shape == (2, 3) and back.data is None
    assert back.normalization == tiny_fit.data.normalization  # taken from the data
    np.testing.assert_array_equal(back.params["W"], W)


def rewrite_header(path, **changes):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays["header"]))
    for key, value in changes.items():
        target = header
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    arrays["header"] = np.asarray(json.dumps(header))
    np.savez(path, **arrays)


def test_load_refuses_an_incompatible_version(tiny_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    rewrite_header(path, format_version=FIT_FORMAT_VERSION + 1, saved_by="9.0.0")
    with pytest.raises(pp.IncompatibleFitError,
                       match=rf"written by psyphy_pp 9.0.0 in fit format version {FIT_FORMAT_VERSION + 1}; "
                             rf"this psyphy_pp {pp.__version__} reads fit format version "
                             rf"{FIT_FORMAT_VERSION} only; upgrade psyphy_pp"):
        pp.load_fit(path)


def test_load_refuses_unknown_model_settings(tiny_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    rewrite_header(path, **{"model.task.warp_factor": 3})
    with pytest.raises(pp.IncompatibleFitError, match=r"model settings .* does not know \(warp_factor\)"):
        pp.load_fit(path)


def test_load_rejects_files_that_are_not_fits(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not a psyphy_pp fit file"):
        pp.load_fit(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    with pytest.raises(ValueError, match="is not a psyphy_pp fit file .it has no header"):
        pp.load_fit(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError):
        pp.load_fit(tmp_path / "missing.npz")


def test_saved_fit_checks_its_parts():
    model = pp.WPPM(basis_degree=1)
    W = np.zeros(model.weights_shape)
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(chains, draws, 2, 2, 2, 3\)"):
        pp.SavedFit(model, {"W": W}, kind="posterior")
    with pytest.raises(ValueError, match="kind must be one of"):
        pp.SavedFit(model, {"W": W}, kind="map")
    with pytest.raises(ValueError, match="result must be a MapResult"):
        pp.save_fit("unused.npz", object())


# --- writing: no silent overwrite, no half-written file -----------------------------------

def test_save_refuses_an_existing_file_unless_overwrite(tiny_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=rf"^{re.escape(str(path))} already exists; "
                                              r"pass overwrite=True to replace it$"):
        pp.save_fit(path, tiny_fit, include_data=False)
    assert path.read_bytes() == before
    pp.save_fit(path, tiny_fit, include_data=False, overwrite=True)
    assert pp.load_fit(path).data is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.npz"]


def test_save_keeps_the_name_it_is_given(tiny_fit, tmp_path):
    pp.save_fit(tmp_path / "fit.result", tiny_fit)  # np.savez alone would add .npz
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.result"]
    assert pp.load_fit(tmp_path / "fit.result").model == tiny_fit.model


def test_a_failed_save_leaves_the_old_file_and_no_partial_file(tiny_fit, tmp_path, monkeypatch):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        pp.save_fit(path, tiny_fit, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        pp.save_fit(tmp_path / "new.npz", tiny_fit)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.npz"]
