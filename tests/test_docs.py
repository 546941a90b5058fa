"""The documentation stays tied to the code.

* every ``--8<--`` include in ``docs/`` names a file and a section that exist, and
  the section is not empty (a renamed section breaks these tests, not the site);
* every figure a page shows is in ``docs/figures/``;
* the API reference has one page per public module, each listing exactly the
  module's ``__all__``, so every name in ``psyphy_pp.__all__`` is documented;
* the code blocks marked ``<!-- doc-test -->`` run, the figure script runs, and
  (when the ``docs`` extra is installed) ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import psyphy_pp as pp

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

INCLUDE = re.compile(r"""^\s*-{1,}8<-{1,}\s+(["'])(?P<target>[^"']+)\1\s*$""")
SECTION_NAME = re.compile(r"^[a-z][-_0-9a-z]*$", re.IGNORECASE)
IMAGE = re.compile(r"!\[[^\]]*\]\((?P<src>[^)\s]+)")
DIRECTIVE = re.compile(r"^:::\s+(?P<path>[\w.]+)\s*$")
DOC_TEST = re.compile(r"<!-- doc-test(?P<study> study)? -->")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _includes() -> list[tuple[str, str, str | None]]:
    """``(page, file, section)`` for every snippet include in the docs."""
    found = []
    for page in PAGES:
        for line in page.read_text().splitlines():
            m = INCLUDE.match(line)
            if not m:
                continue
            target = m["target"].strip()
            path, sep, rest = target.rpartition(":")
            if sep and SECTION_NAME.match(rest):
                found.append((_rel(page), path, rest))
            elif sep and re.fullmatch(r"[-0-9:,]+", rest):
                found.append((_rel(page), path, None))  # a line range
            else:
                found.append((_rel(page), target, None))
    return found


def _section_lines(path: Path, section: str) -> list[str] | None:
    """Lines between the section's start and end markers, or None if it is absent."""
    start = re.compile(rf"-{{1,}}8<-{{1,}}\s+\[\s*start\s*:\s*{re.escape(section)}\s*\]")
    end = re.compile(rf"-{{1,}}8<-{{1,}}\s+\[\s*end\s*:\s*{re.escape(section)}\s*\]")
    lines = path.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if start.search(line)]
    if not starts:
        return None
    ends = [i for i, line in enumerate(lines) if end.search(line) and i > starts[0]]
    if not ends:
        return None
    return [line for line in lines[starts[0] + 1: ends[0]] if "8<-" not in line]


def _api_blocks() -> dict[str, tuple[str, list[str] | None]]:
    """``{module path: (page, members or None)}`` for every ``:::`` block in docs/api."""
    blocks = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = DIRECTIVE.match(line)
            if not m:
                continue
            members = None
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                if lines[j].strip() == "members:":
                    members = []
                elif members is not None:
                    item = re.match(r"^\s+-\s+(\w+)\s*$", lines[j])
                    if item:
                        members.append(item[1])
                    elif lines[j].strip():
                        break
                j += 1
            blocks[m["path"]] = (_rel(page), members)
    return blocks


def _public_modules() -> list[str]:
    package = ROOT / "psyphy_pp"
    names = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in package.rglob("*.py")]
    names = [n.removesuffix(".__init__") for n in names]
    return sorted(n for n in names if n != "psyphy_pp" and not n.split(".")[-1].startswith("_"))


def test_docs_have_includes():
    pages = {page for page, _, _ in _includes()}
    assert "docs/build_your_own_optimizer.md" in pages


@pytest.mark.parametrize("page,target,section", _includes(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_snippet_include_resolves(page, target, section):
    path = ROOT / target
    assert path.is_file(), f"{page} includes {target!r}, which does not exist"
    if section is None:
        return
    lines = _section_lines(path, section)
    assert lines is not None, (
        f"{page} includes section {section!r} of {target}, but the file has no "
        f"'--8<-- [start:{section}]' ... '--8<-- [end:{section}]' pair"
    )
    assert any(line.strip() for line in lines), f"section {section!r} of {target} is empty"


def test_optimizer_page_shows_both_fits():
    text = (DOCS / "build_your_own_optimizer.md").read_text()
    for target in ["examples/full_wppm_fit_example.py:truth_model",
                   "examples/full_wppm_fit_example.py:simulate_data",
                   "examples/full_wppm_fit_example.py:build_model",
                   "examples/full_wppm_fit_example.py:fit_map",
                   "examples/full_wppm_fit_example.py:fit_map_scratch",
                   "psyphy_pp/scratch.py:loss", "psyphy_pp/scratch.py:step",
                   "psyphy_pp/scratch.py:loop"]:
        assert f'"{target}"' in text, f"the optimizer page does not include {target}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_page_images_exist(page):
    for m in IMAGE.finditer(page.read_text()):
        src = m["src"]
        if "://" in src:
            continue
        assert (page.parent / src).is_file(), f"{_rel(page)} shows {src}, which does not exist"


def test_every_public_module_has_an_api_page():
    blocks = _api_blocks()
    missing = [m for m in _public_modules() if m not in blocks]
    assert not missing, f"no '::: module' block in docs/api/ for {missing}"
    nav = (ROOT / "mkdocs.yml").read_text()
    for module, (page, _) in blocks.items():
        assert page.removeprefix("docs/") in nav, f"{page} ({module}) is not in the mkdocs.yml nav"


@pytest.mark.parametrize("module", sorted(_api_blocks()))
def test_api_page_lists_the_modules_all(module):
    page, members = _api_blocks()[module]
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", None)
    if exported is None:
        return
    assert members is not None, f"{page}: give '::: {module}' the members of its __all__"
    assert sorted(members) == sorted(exported), (
        f"{page} documents {sorted(members)} but {module}.__all__ is {sorted(exported)}"
    )


@pytest.mark.parametrize("name", pp.__all__)
def test_public_name_in_api_reference(name):
    obj = getattr(pp, name)
    blocks = _api_blocks()
    if isinstance(obj, types.ModuleType):
        assert obj.__name__ in blocks, f"psyphy_pp.{name} has no API page"
        return
    for module, (_, members) in blocks.items():
        mod = importlib.import_module(module)
        if members and name in members and getattr(mod, name, None) is obj:
            return
    pytest.fail(f"psyphy_pp.{name} is not documented in any page of docs/api/")


def _doc_tests() -> list:
    """Blocks marked ``<!-- doc-test -->``; ``<!-- doc-test study -->`` blocks are
    left to ``make test-studies`` (marker ``study``)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(DOC_TEST.pattern + r"\s*\n```python[^\n]*\n(?P<code>.*?)\n```",
                             text, re.DOTALL):
            marks = [pytest.mark.study] if m["study"] else []
            found.append(pytest.param(_rel(page), m["code"], marks=marks))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("page,code", _doc_tests(), ids=lambda v: v if v.endswith(".md") else "")
def test_doc_code_block_runs(page, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"a doc-test block of {page} failed:\n{out.stderr}"


@pytest.mark.study  # about 2 min on 2 cores: make test-studies (make figures runs it)
def test_figure_script_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, str(DOCS / "scripts" / "loop_agreement.py"), "--grid-size", "2",
         "--trials-per-ref", "5", "--num-steps", "5", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "loop_agreement.png").exists()
    assert "FitComparison(svi vs scratch)" in out.stdout


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (make docs installs it)")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_api_overview_lists_every_top_level_name():
    text = (DOCS / "api" / "index.md").read_text()
    missing = [name for name in pp.__all__ if f"`pp.{name}`" not in text]
    assert not missing, f"docs/api/index.md does not list {missing}"
