"""Trials in CSV files and DataFrames, and the normalisation from the user's units."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# -- variants of the CSV format: read, or refused with the file and line named -----------------

def test_csv_spaces_after_commas_are_read(tmp_path):
    path = write(tmp_path / "spaces.csv", "ref_0, ref_1, comp_0, comp_1, response, subject",
                 "0, 0, 0.1, 0, 1, S01", "  0 ,0 , 0 ,0.1 , 0 ,  S02 ")
    data = pp.TrialData.from_csv(path)
    assert data.responses.tolist() == [1, 0]
    np.testing.assert_array_equal(data.comparisons, [[0.1, 0.0], [0.0, 0.1]])
    assert data.metadata["subject"].tolist() == ["S01", "S02"]


def test_csv_trailing_comma_on_every_line_is_read(tmp_path):
    path = write(tmp_path / "trailing.csv", HEADER + ",", "0,0,0.1,0,1,", "0,0,0,0.1,0,")
    data = pp.TrialData.from_csv(path)
    assert data.num_trials == 2 and data.metadata == {}
    # Unnamed empty columns anywhere, and empty cells past the header, are ignored too.
    path = write(tmp_path / "gaps.csv", "ref_0,,ref_1,comp_0,comp_1,response", "0,,0,0.1,0,1,,")
    assert pp.TrialData.from_csv(path).refs.tolist() == [[0.0, 0.0]]


def test_csv_unnamed_column_with_a_value_is_refused(tmp_path):
    path = write(tmp_path / "unnamed.csv", HEADER + ",", "0,0,0.1,0,1,", "0,0,0,0.1,0,x")
    with pytest.raises(ValueError) as err:
        pp.TrialData.from_csv(path)
    assert str(err.value) == (
        f"{path}, line 3 (trial 1): column 6 has no name in the header (line 1) but holds 'x'; "
        "name the column in the header, or delete it")
    path = write(tmp_path / "extra.csv", HEADER, "0,0,0.1,0,1,7")
    with pytest.raises(ValueError, match=r"extra.csv, line 2 \(trial 0\): expected 5 fields as in "
                       r"the header, got 6 \(field 6 holds '7'\)"):
        pp.TrialData.from_csv(path)


@pytest.mark.parametrize("sep, name", [(";", r"semicolons \(';'\)"), ("\t", "tabs")])
def test_csv_other_delimiters_are_refused_naming_them(tmp_path, sep, name):
    path = write(tmp_path / "other.csv", "# exported", HEADER.replace(",", sep),
                 sep.join(["0", "0", "0,1", "0", "1"]))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'other.csv'}, line 2: the header is "
                       rf"separated by {name}, but psyphy_pp reads comma-separated files"):
        pp.TrialData.from_csv(path)


def test_csv_not_utf8_names_line_and_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + ",subject\n0,0,0.1,0,1,Ana\n0,0,0,0.1,0,José\n").encode("latin-1"))
    with pytest.raises(ValueError) as err:
        pp.TrialData.from_csv(path)
    assert str(err.value) == (
        f"{path}, line 3, character 16: byte 0xe9 is not UTF-8 (the file may be Latin-1 or "
        "Windows-1252 text); save the file as UTF-8 (e.g. 'CSV UTF-8' in Excel) and read it again")
    path.write_bytes("\ufeff".encode("utf-16") + (HEADER + "\n").encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"latin1.csv: the file is UTF-16 text"):
        pp.TrialData.from_csv(path)
    path.write_bytes((HEADER + "\n0,0,0.1,0\x00,1\n").encode())
    with pytest.raises(ValueError, match=r"latin1.csv, line 2, character 10: a NUL character"):
        pp.TrialData.from_csv(path)


def test_csv_utf8_with_byte_order_mark_and_crlf_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + HEADER + ",subject\r\n0,0,0.1,0,1,José\r\n").encode("utf-8"))
    data = pp.TrialData.from_csv(path)
    assert data.metadata["subject"].tolist() == ["José"]


def test_csv_unclosed_quote_is_refused_not_swallowed(tmp_path):
    path = write(tmp_path / "quote.csv", HEADER + ",note", '0,0,0.1,0,1,"fine, quoted',
                 "0,0,0,0.1,0,x", "0,0,0,0.1,1,y")
    with pytest.raises(ValueError, match=r"quote.csv, line 2: a quote \(\"\) opened in this line "
                       r"is never closed"):
        pp.TrialData.from_csv(path)
    path = write(tmp_path / "ok.csv", HEADER + ",note", '0,0,0.1,0,1,"two\nlines, quoted"',
                 "0,0,0,0.1,0,x")
    data = pp.TrialData.from_csv(path)
    assert data.metadata["note"].tolist() == ["two\nlines, quoted", "x"]


def test_csv_errors_name_the_file_line_and_stay_on_one_line(tmp_path):
    path = write(tmp_path / "bad.csv", HEADER, "0,0,0.1,0,1", "0,0," + "x" * 500 + ",0,1")
    with pytest.raises(ValueError) as err:
        pp.TrialData.from_csv(path)
    message = str(err.value)
    assert message.startswith(f"{path}, line 3 (trial 1), column comp_0: expected a number, got 'xxx")
    assert "(500 characters)" in message and len(message) < 250 and "\n" not in message
    path = write(tmp_path / "huge.csv", "ref_0,comp_0,ref_99999999999,response", "0,0,0,1")
    with pytest.raises(ValueError, match=r"huge.csv: column ref_99999999999 implies input_dim "
                       r"100000000000"):
        pp.TrialData.from_csv(path)
    path = write(tmp_path / "case.csv", "ref_0,ref_1,comp_0,comp_1,Response", "0,0,0,0,1")
    with pytest.raises(ValueError, match=r"missing column\(s\) response .*names are case-sensitive: "
                       r"found 'Response' for response"):
        pp.TrialData.from_csv(path)


def test_csv_duplicate_psyphy_lines_are_refused(tmp_path):
    norm = '# psyphy_pp normalization: {"low": [0, 0], "high": [1, 1]}'
    path = write(tmp_path / "twice.csv", norm, "# note", norm, HEADER, "0,0,0,0,1")
    with pytest.raises(ValueError, match=r"twice.csv, line 3: a second '# psyphy_pp normalization:' "
                       r"line \(the first is line 1\)"):
        pp.TrialData.from_csv(path)
    path = write(tmp_path / "empty.csv", "# psyphy_pp synthetic:  ", HEADER, "0,0,0,0,1")
    with pytest.raises(ValueError, match=r"empty.csv, line 1: the line '# psyphy_pp synthetic:' "
                       r"gives no description"):
        pp.TrialData.from_csv(path)


def test_csv_all_zero_responses_and_one_row_are_read(tmp_path):
    zeros = pp.TrialData.from_csv(write(tmp_path / "z.csv", HEADER, "0,0,0.1,0,0", "0,0,0,0.1,0"))
    assert zeros.responses.tolist() == [0, 0]
    one = pp.TrialData.from_csv(write(tmp_path / "one.csv", HEADER, "0,0,0.1,0,1"))
    assert one.num_trials == 1


# -- synthetic data say so ---------------------------------------------------------------------

def test_simulated_data_are_marked_and_the_mark_round_trips(p_small, tmp_path):
    data = p_small.data
    assert data.synthetic == "simulated by psyphy_pp.simulate"
    data.to_csv(tmp_path / "sim.csv")
    lines = (tmp_path / "sim.csv").read_text().splitlines()
    assert lines[0] == "# psyphy_pp synthetic: simulated by psyphy_pp.simulate"
    back = pp.TrialData.from_csv(tmp_path / "sim.csv")
    assert back.synthetic == data.synthetic
    np.testing.assert_array_equal(back.refs, data.refs)
    data.save(tmp_path / "sim.npz")
    assert pp.TrialData.load(tmp_path / "sim.npz").synthetic == data.synthetic
    norm = pp.Normalization([0, 0], [10, 10])
    user = pp.TrialData.from_user_units([[1.0, 1.0]], [[2.0, 1.0]], [1], norm,
                                        synthetic=" my simulation ")
    assert user.synthetic == "my simulation"
    user.to_csv(tmp_path / "user.csv")
    first, second = (tmp_path / "user.csv").read_text().splitlines()[:2]
    assert first.startswith("# psyphy_pp normalization:")
    assert second == "# psyphy_pp synthetic: my simulation"
    assert_same_trials(back := pp.TrialData.from_csv(tmp_path / "user.csv"), user)
    assert back.synthetic == "my simulation"


def test_real_data_are_not_synthetic(tmp_path):
    path = write(tmp_path / "real.csv", "# psyphy_pp synthetic is not this", HEADER, "0,0,0.1,0,1")
    data = pp.TrialData.from_csv(path)
    assert data.synthetic is None
    data.save(tmp_path / "real.npz")
    assert pp.TrialData.load(tmp_path / "real.npz").synthetic is None
    for bad in ("", "  ", "two\nlines", 3):
        with pytest.raises(ValueError, match="synthetic must be None .* or a non-empty one-line"):
            pp.TrialData([[0.0]], [[0.1]], [1], synthetic=bad)


def test_dataframe_keeps_the_synthetic_mark(p_small):
    pytest.importorskip("pandas")
    df = p_small.data.to_dataframe()
    assert df.attrs["synthetic"] == "simulated by psyphy_pp.simulate"
    assert pp.TrialData.from_dataframe(df).synthetic == "simulated by psyphy_pp.simulate"
    del df.attrs["synthetic"]
    assert pp.TrialData.from_dataframe(df).synthetic is None


def test_to_csv_refuses_an_existing_file_unless_overwrite(tmp_path):
    data = pp.TrialData([[0.0, 0.0]], [[0.1, 0.0]], [1])
    path = tmp_path / "t.csv"
    data.to_csv(path)
    other = pp.TrialData([[0.0, 0.0]], [[0.0, 0.2]], [0])
    with pytest.raises(FileExistsError, match="t.csv already exists; pass overwrite=True"):
        other.to_csv(path)
    assert pp.TrialData.from_csv(path).responses.tolist() == [1]
    other.to_csv(path, overwrite=True)
    assert pp.TrialData.from_csv(path).responses.tolist() == [0]


def test_repr_is_short(rng):
    data = pp.TrialData(rng.uniform(-1, 1, (6000, 2)), rng.uniform(-1, 1, (6000, 2)),
                        np.arange(6000) % 2, metadata={"subject": ["S1"] * 6000},
                        synthetic="simulated")
    assert repr(data) == ("TrialData(6000 trials, input_dim=2, 3000 correct (50.0%), "
                          "normalization=None, metadata=['subject'], synthetic='simulated')")


# -- whatever the bytes, a TrialData or a ValueError that names the file ------------------------

NAMES = ["ref_0", "ref_1", "comp_0", "comp_1", "response", "subject", "", " ref_0", "Response",
         "ref_2", "comp_01"]


def good(name: str) -> st.SearchStrategy[str]:
    """Cells that fit the column ``name``."""
    if name == "response":
        return st.sampled_from(["0", "1", " 1", "0.0 "])
    if name.startswith(("ref_", "comp_")):
        return st.floats(-1, 1).map(repr)
    return st.just("") if not name else st.text(max_size=6)


ODD_CELLS = st.one_of(
    st.sampled_from(["0.5", "-1", "1.5", "", " ", "nan", "1e999", "x", '"', '"a,b"', "#", "0,1"]),
    st.text(max_size=8),
)


@st.composite
def csv_files(draw) -> bytes:
    """A file: random bytes, or a header and rows of cells (mostly well formed, some odd)."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    header = draw(st.lists(st.sampled_from(NAMES), max_size=8))
    if draw(st.integers(0, 3)) > 0:
        header = ["ref_0", "ref_1", "comp_0", "comp_1", "response"]
        header += draw(st.lists(st.sampled_from(["subject", "", "session", "comp_2", ""]), max_size=2,
                                unique=True))
    odd = draw(st.sampled_from([0.0, 0.0, 0.05, 0.3]))  # the share of odd cells
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        width = len(header) if draw(st.integers(0, 9)) else draw(st.integers(0, 9))
        names = header + [""] * width
        rows.append([draw(ODD_CELLS if draw(st.floats(0, 1)) < odd else good(names[k]))
                     for k in range(width)])
    sep = draw(st.sampled_from([","] * 6 + [", ", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    pre = draw(st.sampled_from(["", "", "", "", "# comment" + end, "# psyphy_pp synthetic: sim" + end,
                                '# psyphy_pp normalization: {"low": [-1, -2], "high": [1, 2]}' + end,
                                "# psyphy_pp normalization: [" + end]))
    lines = [sep.join(cells) for cells in [header, *rows]]
    text = pre + end.join(lines) + draw(st.sampled_from(["", end]))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=csv_files())
def test_any_file_gives_trials_or_a_value_error_naming_it(tmp_path, content):
    path = tmp_path / "any.csv"
    path.write_bytes(content)
    try:
        data = pp.TrialData.from_csv(path)
    except ValueError as err:
        message = str(err)
        assert message.startswith(str(path)), message
        assert "\n" not in message and "\r" not in message, message
    else:
        assert isinstance(data, pp.TrialData) and data.num_trials >= 1
        assert np.all(np.abs(data.refs) <= 1) and set(data.responses.tolist()) <= {0, 1}
        # Nothing dropped: one trial for each line after the header that has a cell.
        text = content.decode("utf-8-sig")
        lines = io.StringIO(text, newline="").readlines()  # line breaks as the reader sees them
        body = [ln for ln in lines if ln.strip().strip(",").strip()]
        header_at = next(k for k, ln in enumerate(body) if not ln.strip().startswith("#"))
        if '"' not in text:
            assert data.num_trials == len(body) - header_at - 1
