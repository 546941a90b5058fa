"""Writing files: no silent overwrite, no half-written file (psyphy_pp._files, _csv)."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest

from psyphy_pp._csv import write_columns
from psyphy_pp._files import atomic_path


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("cannot format this value")


def test_write_columns_refuses_an_existing_file_unless_overwrite(tmp_path):
    path = tmp_path / "t.csv"
    write_columns(path, {"x": np.array([0.5, 1.0])})
    with pytest.raises(FileExistsError, match=rf"^{re.escape(str(path))} already exists; "
                                              r"pass overwrite=True to replace it$"):
        write_columns(path, {"x": np.array([2.0])})
    assert path.read_text() == "x\n0.5\n1.0\n"
    write_columns(path, {"x": np.array([2.0])}, "# note\n", overwrite=True)
    assert path.read_text() == "# note\nx\n2.0\n"
    assert os.listdir(tmp_path) == ["t.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_partial_file(tmp_path):
    path = tmp_path / "t.csv"
    write_columns(path, {"x": np.array([0.5])})
    cols = {"x": np.array([1, 2, 3]), "label": np.array(["a", "b", Unprintable()], dtype=object)}
    with pytest.raises(RuntimeError, match="cannot format"):  # fails on the third row
        write_columns(path, cols, overwrite=True)
    with pytest.raises(RuntimeError, match="cannot format"):
        write_columns(tmp_path / "new.csv", cols)
    assert path.read_text() == "x\n0.5\n"
    assert os.listdir(tmp_path) == ["t.csv"]


def test_an_interrupted_write_is_cleaned_up(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as part:
        with open(part, "w") as f:
            f.write("half")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_path_names_the_users_file_in_its_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "no" / "out.txt"))):
        with atomic_path(tmp_path / "no" / "out.txt"):
            pass
    with pytest.raises(IsADirectoryError, match="is a directory"):
        with atomic_path(tmp_path, overwrite=True):
            pass


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(FileExistsError), atomic_path(path) as part:
        with open(part, "w") as f:
            f.write("mine")
        path.write_text("theirs")
    assert path.read_text() == "theirs" and os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_files_get_the_usual_permissions(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    with atomic_path(tmp_path / "atomic.txt") as part:
        with open(part, "w") as f:
            f.write("x")
    mode = stat.S_IMODE
    assert mode(os.stat(tmp_path / "atomic.txt").st_mode) == mode(os.stat(tmp_path / "plain.txt").st_mode)
