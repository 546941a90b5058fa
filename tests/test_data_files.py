"""Trials in CSV files and DataFrames, and the normalisation from the user's units."""

from __future__ import annotations

import numpy as np
import pytest

import psyphy_pp as pp

HEADER = "ref_0,ref_1,comp_0,comp_1,response"


def write(path, *lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_trials(a: pp.TrialData, b: pp.TrialData) -> None:
    np.testing.assert_array_equal(a.refs, b.refs)
    np.testing.assert_array_equal(a.comparisons, b.comparisons)
    np.testing.assert_array_equal(a.responses, b.responses)
    assert a.normalization == b.normalization
    assert list(a.metadata) == list(b.metadata)
    for key in a.metadata:
        np.testing.assert_array_equal(a.metadata[key], b.metadata[key])


def test_csv_round_trip_is_lossless(p_small, tmp_path, rng):
    data = p_small.data
    n = data.num_trials
    data = pp.TrialData(data.refs, data.comparisons, data.responses,
                        metadata={"subject": np.array(["S01", "S02"] * (n // 2) + ["S01"] * (n % 2)),
                                  "session": np.arange(n) % 3})
    data.to_csv(tmp_path / "a.csv")
    back = pp.TrialData.from_csv(tmp_path / "a.csv")
    np.testing.assert_array_equal(back.refs, data.refs)  # bit for bit
    np.testing.assert_array_equal(back.comparisons, data.comparisons)
    np.testing.assert_array_equal(back.responses, data.responses)
    assert back.metadata["subject"].tolist() == data.metadata["subject"].tolist()
    assert back.metadata["session"].tolist() == [str(v) for v in data.metadata["session"]]
    back.to_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_csv_round_trip_in_user_units_is_lossless(tmp_path, rng):
    norm = pp.Normalization([0.0, -3.0], [255.0, 7.0], names=["R", "G"])
    user = np.stack([rng.uniform(0, 255, 200), rng.uniform(-3, 7, 200)], axis=1)
    user[0] = [0.0, -3.0]
    user[1] = [255.0, 7.0]  # the box edges map to -1 and 1 exactly
    data = pp.TrialData.from_user_units(user, user[::-1], rng.integers(0, 2, 200), norm)
    assert data.refs.min() == -1.0 and data.refs.max() == 1.0
    data.to_csv(tmp_path / "a.csv")
    first = (tmp_path / "a.csv").read_text().splitlines()[0]
    assert first.startswith("# psyphy_pp normalization:")
    back = pp.TrialData.from_csv(tmp_path / "a.csv")
    assert_same_trials(back, data)
    np.testing.assert_allclose(back.user_refs, user, rtol=1e-15, atol=1e-13)
    back.to_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_csv_in_user_units_with_box_given_by_the_caller(tmp_path):
    path = write(tmp_path / "t.csv", HEADER + ",subject", "128,128,140,128,1,A", "0,255,10,250,0,B")
    with pytest.raises(ValueError, match=r"line 2 \(trial 0\), column ref_0: value 128.0 lies outside \[-1, 1\]"):
        pp.TrialData.from_csv(path)
    norm = pp.Normalization([0, 0], [255, 255])
    data = pp.TrialData.from_csv(path, normalization=norm)
    np.testing.assert_allclose(data.refs, [[128 / 127.5 - 1] * 2, [-1.0, 1.0]])
    assert data.normalization == norm and data.metadata["subject"].tolist() == ["A", "B"]
    np.testing.assert_allclose(data.user_comparisons, [[140, 128], [10, 250]])


def test_csv_comments_and_blank_lines(tmp_path):
    path = write(tmp_path / "t.csv", "# my experiment", HEADER, "0,0,0.1,0,1", "", "0,0,0,0.1,0", "")
    data = pp.TrialData.from_csv(path)
    assert data.num_trials == 2 and data.responses.tolist() == [1, 0]


def test_csv_3d_columns(tmp_path):
    path = write(tmp_path / "t.csv", "ref_0,ref_1,ref_2,comp_0,comp_1,comp_2,response",
                 "0,0,0,0.1,0,0,1")
    assert pp.TrialData.from_csv(path).input_dim == 3


@pytest.mark.parametrize(
    "lines, message",
    [
        (["ref_0,comp_1,response,subject", "0,0,1,A"],
         r"missing column\(s\) ref_1, comp_0 \(expected ref_0, ref_1, comp_0, comp_1, response"),
        (["a,b,c", "1,2,3"], r"missing column\(s\) ref_0, ref_1, comp_0, comp_1, response"),
        ([HEADER, "0,0,0.1,0,1", "0,abc,0.1,0,1"],
         r"line 3 \(trial 1\), column ref_1: expected a number, got 'abc'"),
        ([HEADER, "0,0,,0,1"], r"line 2 \(trial 0\), column comp_0: expected a number, got an empty cell"),
        ([HEADER, "0,0,nan,0,1"], r"line 2 \(trial 0\), column comp_0: expected a number, got 'nan'"),
        ([HEADER, "0,0,0.1,0,1", "0,0,0.1,0,2"],
         r"line 3 \(trial 1\), column response: expected 0 or 1, got '2' \(1 bad response"),
        ([HEADER, "0,0,0.1,0,yes"], r"line 2 \(trial 0\), column response: expected 0 or 1, got 'yes'"),
        ([HEADER, "0,0,0.1,0,0.5"], r"column response: expected 0 or 1, got '0.5'"),
        ([HEADER, "0,0,0.1,0,1", "0,0,1.5,0,1", "0,0,-2,0,1"],
         r"line 3 \(trial 1\), column comp_0: value 1.5 lies outside \[-1, 1\] \(2 value\(s\) out of range"),
        ([HEADER, "0,0,0.1,0,1", "0,0,0.1,1"], r"line 3 \(trial 1\): expected 5 fields as in the header, got 4"),
        ([HEADER], "no trials after the header"),
        ([], "no header row"),
        (["ref_0,ref_1,ref_1,comp_0,comp_1,response"], r"duplicate columns \['ref_1'\]"),
        (["ref_0,ref_1,ref_2,comp_0,comp_1,response", "0,0,0,0,0,1"],
         r"missing column\(s\) comp_2"),
        (['# psyphy_pp normalization: {"low": [0, 0]}', HEADER, "0,0,0,0,1"],
         r"line 1: cannot read the normalization line"),
    ],
    ids=["missing-some", "missing-all", "text", "empty", "nan", "response-2", "response-text",
         "response-half", "out-of-range", "field-count", "no-rows", "empty-file", "duplicate",
         "missing-3d", "bad-normalization"],
)
def test_malformed_csv_errors_name_row_and_column(tmp_path, lines, message):
    path = write(tmp_path / "bad.csv", *lines)
    with pytest.raises(ValueError, match=message):
        pp.TrialData.from_csv(path)


def test_csv_out_of_normalization_box_names_the_box(tmp_path):
    path = write(tmp_path / "t.csv", HEADER, "10,10,300,10,1")
    with pytest.raises(ValueError, match=r"column comp_0: value 300.0 lies outside the "
                       r"normalization box \[0.0, 255.0\] of dimension 0"):
        pp.TrialData.from_csv(path, normalization=pp.Normalization([0, 0], [255, 255]))


def test_csv_normalization_in_file_and_argument_must_agree(tmp_path):
    data = pp.TrialData.from_user_units([[1.0, 1.0]], [[2.0, 1.0]], [1],
                                        pp.Normalization([0, 0], [10, 10]))
    data.to_csv(tmp_path / "t.csv")
    same = pp.TrialData.from_csv(tmp_path / "t.csv", normalization=pp.Normalization([0, 0], [10, 10]))
    assert_same_trials(same, data)
    with pytest.raises(ValueError, match="records the normalization box"):
        pp.TrialData.from_csv(tmp_path / "t.csv", normalization=pp.Normalization([0, 0], [20, 10]))


def test_csv_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        pp.TrialData.from_csv(tmp_path / "nope.csv")


def test_dataframe_round_trip_and_errors(p_small):
    pd = pytest.importorskip("pandas")
    data = p_small.data
    norm = pp.Normalization([0, 0], [1, 1], names=["L", "M"])
    user = pp.TrialData.from_user_units(norm.to_user_exact(data.refs),
                                        norm.to_user_exact(data.comparisons), data.responses, norm,
                                        metadata={"subject": ["S1"] * data.num_trials})
    df = user.to_dataframe()
    assert list(df.columns) == ["ref_0", "ref_1", "comp_0", "comp_1", "response", "subject"]
    assert df.attrs["normalization"]["names"] == ["L", "M"]
    assert_same_trials(pp.TrialData.from_dataframe(df), user)
    bad = df.copy()
    bad.index = [f"t{i}" for i in range(len(bad))]
    bad.loc["t3", "response"] = 7
    with pytest.raises(ValueError, match=r"DataFrame row 't3' \(trial 3\), column response: expected 0 or 1"):
        pp.TrialData.from_dataframe(bad)
    with pytest.raises(ValueError, match=r"missing column\(s\) comp_1"):
        pp.TrialData.from_dataframe(df.drop(columns=["comp_1"]))
    text = df.astype({"ref_0": object})
    text.loc[2, "ref_0"] = "x"
    with pytest.raises(ValueError, match=r"DataFrame row 2 \(trial 2\), column ref_0: expected a number, got 'x'"):
        pp.TrialData.from_dataframe(text)
    assert isinstance(df, pd.DataFrame)


def test_npz_keeps_normalization_and_metadata_and_reads_old_files(tmp_path):
    norm = pp.Normalization([0, 0], [10, 10], names=["a", "b"])
    data = pp.TrialData.from_user_units([[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [3.0, 5.0]], [1, 0],
                                        norm, metadata={"subject": ["x", "y"]})
    data.save(tmp_path / "d.npz")
    assert_same_trials(pp.TrialData.load(tmp_path / "d.npz"), data)
    np.savez(tmp_path / "old.npz", refs=data.refs, comparisons=data.comparisons,
             responses=data.responses)
    old = pp.TrialData.load(tmp_path / "old.npz")
    assert old.normalization is None and old.metadata == {}


def test_normalization_maps_and_checks():
    norm = pp.Normalization([0, -1], [255, 1])
    z = np.array([[-1.0, 0.3], [0.25, 1.0]])
    np.testing.assert_allclose(norm.to_model(norm.to_user(z)), z, atol=1e-15)
    # Every model-unit value that came from a user-unit value has an exact preimage.
    zs = norm.to_model(np.random.default_rng(1).uniform([0, -1], [255, 1], (1000, 2)))
    assert np.array_equal(norm.to_model(norm.to_user_exact(zs)), zs)
    np.testing.assert_allclose(norm.scale, [127.5, 1.0])
    assert pp.Normalization.identity(2).is_identity and not norm.is_identity
    assert pp.Normalization.from_dict(norm.to_dict()) == norm
    M = np.eye(2)
    np.testing.assert_allclose(norm.covariance_to_user(M), np.diag([127.5**2, 1.0]))
    with pytest.raises(ValueError, match="high must be greater than low in every dimension"):
        pp.Normalization([0, 1], [1, 1])
    with pytest.raises(ValueError, match="low and high must have the same length, got 2 and 3"):
        pp.Normalization([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="names must have length 2, got 1"):
        pp.Normalization([0, 0], [1, 1], names=["a"])
    with pytest.raises(ValueError, match="low must be finite"):
        pp.Normalization([0, np.nan], [1, 1])
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        norm.to_model([1.0, 2.0, 3.0])


def test_trial_data_checks_normalization_and_metadata():
    with pytest.raises(ValueError, match="normalization must have input_dim 2"):
        pp.TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1], normalization=pp.Normalization([0], [1]))
    with pytest.raises(ValueError, match=r"metadata\['subject'\] must have shape \(1,\)"):
        pp.TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1], metadata={"subject": ["a", "b"]})
    with pytest.raises(ValueError, match="metadata keys must be non-empty strings"):
        pp.TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1], metadata={"response": [1]})
    with pytest.raises(ValueError, match=r"row 0, column comp_1: value 11.0 lies outside"):
        pp.TrialData.from_user_units([[1.0, 1.0]], [[1.0, 11.0]], [1], pp.Normalization([0, 0], [10, 10]))
