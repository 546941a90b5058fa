"""The public surface: every exported name is documented."""

import inspect

import pytest

import psyphy_pp as pp


@pytest.mark.parametrize("name", pp.__all__)
def test_public_names_have_docstrings(name):
    obj = getattr(pp, name)
    assert inspect.getdoc(obj), f"psyphy_pp.{name} has no docstring"


def test_version():
    assert pp.__version__
