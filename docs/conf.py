"""Sphinx configuration of skmeta's documentation site.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the gallery's examples (what CI does);
the pages then show each example's code without its output.
"""

import concurrent.futures
import os
import sys
import time
import urllib.request
from pathlib import Path

from sphinx.util import logging

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import skmeta  # noqa: E402
from api_reference import aliases, write_api_rst  # noqa: E402

logger = logging.getLogger(__name__)

project = "skmeta"
copyright = "skmeta developers"
version = release = skmeta.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "sphinx_design",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_api_pages.rst", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5"]

# Broken references inside skmeta fail the -W build.
nitpicky = True

# -- API reference -----------------------------------------------------------
# api.rst is written from the public modules' __all__ (api_reference.py).
write_api_rst(HERE)
autosummary_generate = ["_api_pages.rst"]
autodoc_typehints = "none"
# Defaults as written in the source (module=MLP, not <class ...>).
autodoc_preserve_defaults = True
toc_object_entries_show_parents = "hide"
autodoc_default_options = {"members": True, "inherited-members": True, "member-order": "groupwise"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- Markdown user guide -------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# -- Intersphinx -------------------------------------------------------------
# Inventories are fetched once and kept under _build/inventories for a week.
# A machine that cannot reach a project's site builds without links to it:
# the project is left out of intersphinx_mapping (an unreachable inventory
# is a Sphinx warning, which -W would turn into a failure) and references
# to its objects are rendered as plain text instead of being reported as
# broken. SKMETA_DOCS_INVENTORIES may name a folder of <name>.inv files
# downloaded elsewhere, for offline machines that should still link.
INTERSPHINX = {
    "python": ("https://docs.python.org/3/", ["builtins", "collections", "typing"]),
    "numpy": ("https://numpy.org/doc/stable/", ["numpy", "np"]),
    "sklearn": ("https://scikit-learn.org/stable/", ["sklearn"]),
    "skorch": ("https://skorch.readthedocs.io/en/stable/", ["skorch"]),
    "torch": ("https://docs.pytorch.org/docs/stable/", ["torch"]),
}
INVENTORY_CACHE = HERE / "_build" / "inventories"
INVENTORY_MAX_AGE = 7 * 24 * 3600


def _inventory(name, url):
    """A local path to ``name``'s objects.inv, or None when unavailable."""
    offline = os.environ.get("SKMETA_DOCS_INVENTORIES")
    if offline:
        path = Path(offline) / f"{name}.inv"
        return str(path) if path.is_file() else None
    path = INVENTORY_CACHE / f"{name}.inv"
    if path.is_file() and path.stat().st_mtime > time.time() - INVENTORY_MAX_AGE:
        return str(path)
    try:
        with urllib.request.urlopen(url + "objects.inv", timeout=10) as response:
            data = response.read()
    except OSError as error:
        logger.info("intersphinx: no inventory for %s (%s); its references stay unlinked", name, error)
        return str(path) if path.is_file() else None
    INVENTORY_CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


# Fetched side by side: an unreachable site costs one timeout, not five.
with concurrent.futures.ThreadPoolExecutor() as _pool:
    _paths = dict(zip(INTERSPHINX, _pool.map(_inventory, INTERSPHINX, [url for url, _ in INTERSPHINX.values()])))
intersphinx_mapping = {}
nitpick_ignore_regex = []
for _name, (_url, _prefixes) in INTERSPHINX.items():
    _path = _paths[_name]
    if _path is not None:
        intersphinx_mapping[_name] = (_url, _path)
    else:
        nitpick_ignore_regex += [(r"py:.*", rf"{prefix}(\..*)?") for prefix in _prefixes]
if "sklearn" not in intersphinx_mapping:
    nitpick_ignore_regex.append((r"std:term", r".*"))  # scikit-learn's glossary
if "python" not in intersphinx_mapping:
    # Builtin names (int, str, callable, ...) carry no module prefix.
    nitpick_ignore_regex.append((r"py:.*", r"[a-z_]+"))

# -- Gallery -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"/_",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "doc_module": ("skmeta",),
    "reference_url": {"skmeta": None},
    "backreferences_dir": "generated/backreferences",
    # Run every example and report all failures at the end (the build fails).
    "abort_on_example_error": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "download_all_examples": False,
}



def skip_foreign_member(app, what, name, obj, skip, options):
    """Document the members skmeta writes, own or inherited from skmeta's
    bases, and no other: what skorch's NeuralNet, scikit-learn's mixins and
    torch's Module provide is documented by those projects, and an
    undocumented override (``forward``) would otherwise show their text."""
    function = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    module = getattr(function, "__module__", None) or ""
    if what == "class" and callable(function) and not module.startswith("skmeta"):
        return True
    if what == "class" and callable(function) and function.__doc__ is None:
        return True
    return skip


ALIASES = aliases()


def resolve_alias(app, env, node, contnode):
    """Resolve ``skmeta.ProtoNetClassifier`` (a re-export), or a bare name
    unique among the documented ones, to the page of the object."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    canonical = ALIASES.get(target) or ALIASES.get(f"{node.get('py:module')}.{target}")
    if canonical is None or canonical == target:
        return None
    domain = env.domains["py"]
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)


def setup(app):
    app.connect("autodoc-skip-member", skip_foreign_member)
    app.connect("missing-reference", resolve_alias)


# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skmeta {release}"
html_static_path = ["_static"]
html_css_files = ["skmeta.css"]
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False
