"""The house has one direction: no import cycle in src/domainft, and docs/architecture.md shows the graph the
code has (regenerate with `python scripts/architecture.py --write`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("architecture", ROOT / "scripts" / "architecture.py")
architecture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(architecture)


def test_no_import_cycle_between_modules_or_packages():
    runtime, _ = architecture.graph()
    assert architecture.cycles(runtime) == []
    assert architecture.cycles(architecture.package_edges(runtime)) == []


def test_no_import_cycle_even_through_type_checking_imports():
    """The imports made only for annotations (`if TYPE_CHECKING:`) are reported apart on the page, and they close no
    cycle either: a module that names a type from another stands above it."""
    runtime, typing_only = architecture.graph()
    both = {module: runtime[module] | typing_only.get(module, set()) for module in runtime}
    assert architecture.cycles(both) == []
    assert architecture.cycles(architecture.package_edges(both)) == []


def test_the_architecture_page_shows_the_imports_the_code_has():
    doc = architecture.DOC.read_text(encoding="utf-8")
    shown = doc.partition(architecture.BEGIN)[2].partition(architecture.END)[0]
    assert shown.strip() == architecture.section().strip(), "run: python scripts/architecture.py --write"


def test_a_lazy_import_that_closes_a_cycle_is_found(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert architecture.cycles(edges) == [["a", "b", "c"]]
