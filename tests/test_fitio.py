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
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(chains, draws, 2, 2, 2, 3\) "
                                         r"for kind='posterior' and this model \(input_dim=2, basis_degree=1"):
        pp.SavedFit(model, {"W": W}, kind="posterior")
    with pytest.raises(ValueError, match=r"must have shape \(2, 2, 2, 3\) .*, got \(2, 2, 3\)"):
        pp.SavedFit(model, {"W": W[0]})
    with pytest.raises(ValueError, match="kind must be one of"):
        pp.SavedFit(model, {"W": W}, kind="map")
    with pytest.raises(ValueError, match="result must be a MapResult"):
        pp.save_fit("unused.npz", object())


# --- files that are not (or no longer) fit files -----------------------------------------

@pytest.fixture(scope="module")
def fit_bytes(tiny_fit, tmp_path_factory):
    """The bytes of a good fit file, written once for the module."""
    path = tmp_path_factory.mktemp("fit") / "fit.npz"
    pp.save_fit(path, tiny_fit)
    return path.read_bytes()


def _flip_in_header(raw: bytes) -> bytes:
    """Flip one byte inside the stored JSON header (numpy stores it as UTF-32)."""
    at = raw.index("psyphy_pp.fit".encode("utf-32-le")) + 8
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:]


DAMAGED = {
    "truncated": (lambda raw: raw[: len(raw) // 2], "truncated or damaged", "write it again"),
    "empty": (lambda raw: b"", r"it is empty: 0 bytes", "write it again"),
    "bit-flipped": (_flip_in_header, "truncated or damaged", "write it again"),
    "csv": (lambda raw: b"ref_0,ref_1,comp_0,comp_1,response\n0.1,0.2,0.3,0.4,1\n",
            "it is a text file, not an .npz archive; it begins 'ref_0,ref_1", "fit files are written by"),
    "random bytes": (lambda raw: np.random.default_rng(0).bytes(600), r"not an \.npz archive",
                     "fit files are written by"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_load_names_damaged_and_foreign_files(fit_bytes, tmp_path, case):
    make, reason, hint = DAMAGED[case]
    path = tmp_path / "fit.npz"
    path.write_bytes(make(fit_bytes))
    with pytest.raises(ValueError) as info:
        pp.load_fit(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a psyphy_pp fit file (")
    assert re.search(reason, message) and hint in message and "psyphy-pp fit or pp.save_fit" in message
    assert "pickle" not in message and "\n" not in message


def test_load_names_other_numpy_files(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"w\.npy is not a psyphy_pp fit file \(it is a single \.npy array"):
        pp.load_fit(tmp_path / "w.npy")
    np.savez(tmp_path / "objects.npz", header=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="holds pickled Python objects, which fit files never do") as info:
        pp.load_fit(tmp_path / "objects.npz")
    assert "allow_pickle" not in str(info.value)


def test_load_names_a_fit_whose_weights_do_not_fit_its_model(tiny_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["W"] = arrays["W"][..., :2]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"fit.npz is not a psyphy_pp fit file \(damaged: params\['W'\] must "
                                         r"have shape \(2, 2, 2, 3\) for kind='point' and this model "
                                         r"\(input_dim=2, basis_degree=1, extra_dims=1\), got \(2, 2, 2, 2\)\)"):
        pp.load_fit(path)
    del arrays["W"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"damaged: it has no 'W' entry\); write it again"):
        pp.load_fit(path)


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
    assert pp.load_fit(tmp_path / "fit.result").path == str(tmp_path / "fit.result")


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


# --- repr ----------------------------------------------------------------------------------

def test_saved_fit_repr_is_a_short_summary(tiny_fit, tmp_path):
    path = tmp_path / "fit.npz"
    pp.save_fit(path, tiny_fit)
    text = repr(pp.load_fit(path))
    assert len(text) < 800 and len(text.splitlines()) <= 5
    assert text.startswith(f"SavedFit(point estimate, method='svi', from {str(path)!r}")
    assert "12 trials" in text and "names=('R', 'G')" in text and "basis_degree=1" in text
    W = np.stack([np.stack([tiny_fit.params["W"]] * 3)] * 2)
    draws = repr(pp.SavedFit(tiny_fit.model, {"W": W}, kind="posterior", method="nuts"))
    assert draws.startswith("SavedFit(posterior draws (2, 3), method='nuts'\n") and "no trials, model units" in draws
