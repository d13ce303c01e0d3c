"""The documentation site covers the public API and every user-guide page.

These checks need no Sphinx: they read ``docs/api_reference.py`` (which
writes the API reference from the modules' ``__all__``) and the toctrees.
The Sphinx build itself (``python -m sphinx -W``, run by CI) fails on any
warning, including a broken cross-reference.
"""

import importlib
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
pytest.importorskip("numpydoc", reason="numpydoc is in the docs extra")
api_reference = pytest.importorskip("api_reference")


def exported_names():
    for module_name in api_reference.public_modules():
        for name in api_reference.exported(module_name):
            yield module_name, name


@pytest.mark.parametrize("module_name, name", list(exported_names()))
def test_every_exported_name_has_an_api_page(module_name, name):
    pages = {f"{module}.{page}" for module, entries in api_reference.sections() for page, _ in entries}
    canonical = api_reference.aliases()[f"{module_name}.{name}"]
    assert canonical in pages
    # The page documents the very object the module exports.
    page_module, page_name = canonical.rsplit(".", 1)
    assert getattr(importlib.import_module(page_module), page_name) is getattr(
        importlib.import_module(module_name), name
    )
    assert f"generated/{canonical}\n" in api_reference.render()
    assert f"   {page_name}\n" in api_reference.render_stubs()


def test_public_packages_are_found():
    modules = set(api_reference.public_modules())
    assert {"skmeta", "skmeta.metric", "skmeta.optimization", "skmeta.tasks", "skmeta.model_selection"} <= modules
    assert not any(part.startswith("_") for name in modules for part in name.split("."))


def test_each_object_has_exactly_one_page():
    entries = [f"{module}.{name}" for module, pages in api_reference.sections() for name, _ in pages]
    assert len(entries) == len(set(entries))
    objects = [id(getattr(importlib.import_module(name.rsplit(".", 1)[0]), name.rsplit(".", 1)[1]))
               for name in entries]
    assert len(objects) == len(set(objects))


def test_reexports_are_documented_under_their_submodule():
    aliases = api_reference.aliases()
    assert aliases["skmeta.ProtoNetClassifier"] == "skmeta.metric.ProtoNetClassifier"
    assert aliases["skmeta.EpisodeSampler"] == "skmeta.tasks.EpisodeSampler"


def toctree_entries(path):
    """Documents named in the toctrees of an .rst file (globs expanded)."""
    entries = set()
    text = path.read_text(encoding="utf-8")
    for block in re.findall(r"\.\. toctree::\n((?:[ \t]+.*\n|\n)+)", text):
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith(":"):
                continue
            matches = sorted(DOCS.glob(line + ".md")) + sorted(DOCS.glob(line + ".rst"))
            entries |= {str(match.relative_to(DOCS).with_suffix("")) for match in matches} or {line}
    return entries


def test_every_markdown_page_is_in_the_user_guide():
    # A page outside every toctree is a Sphinx warning; this says which one
    # before the (slower) build does.
    listed = toctree_entries(DOCS / "user_guide.rst")
    pages = {str(path.relative_to(DOCS).with_suffix("")) for path in DOCS.rglob("*.md")
             if "_build" not in path.parts}
    assert pages - listed == set(), "add these pages to a toctree in docs/user_guide.rst"
