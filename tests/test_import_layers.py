"""Imports run one way: no module under ``src/alarm`` imports a higher layer.

The layers, lowest first (docs/architecture.md, "Layers", shows the same table):

    0  alarm (the package root: the version), alarm.io, alarm.wer
    1  alarm.audio, alarm.packaged
    2  alarm.encoders
    3  alarm.modeling
    4  alarm.chat | alarm.presets | alarm.official_texts
    5  alarm.generation (+ alarm.generation_vllm, the same job on another engine)
    6  alarm.corpus
    7  alarm.training | alarm.evaluation | alarm.serving
    8  alarm.demo | alarm.ask
    9  alarm.cli

A module may import its own unit and any unit of a lower layer; units that share a layer
(``|``) may not import each other. Every ``import`` counts, including those inside
functions (a lazy import is still a dependency). The check reads the source with ``ast``,
so it imports nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# (layer, unit, module prefixes). A prefix matches the module itself and its submodules;
# the root package ``alarm`` matches only itself (it would otherwise match everything).
UNITS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "base", ("alarm", "alarm.io", "alarm.wer")),
    (1, "audio", ("alarm.audio",)),
    (1, "packaged", ("alarm.packaged",)),
    (2, "encoders", ("alarm.encoders",)),
    (3, "modeling", ("alarm.modeling",)),
    (4, "chat", ("alarm.chat",)),
    (4, "presets", ("alarm.presets",)),
    (4, "official_texts", ("alarm.official_texts",)),
    (5, "generation", ("alarm.generation", "alarm.generation_vllm")),
    (6, "corpus", ("alarm.corpus",)),
    (7, "training", ("alarm.training",)),
    (7, "evaluation", ("alarm.evaluation",)),
    (7, "serving", ("alarm.serving",)),
    (8, "demo", ("alarm.demo",)),
    (8, "ask", ("alarm.ask",)),
    (9, "cli", ("alarm.cli",)),
]

# Imports allowed against the table, each with the reason. Empty: keep it that way.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def unit_of(module: str) -> tuple[int, str]:
    best: tuple[int, tuple[int, str]] | None = None
    for layer, unit, prefixes in UNITS:
        for prefix in prefixes:
            matches = module == prefix or (prefix != "alarm" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), (layer, unit))
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to UNITS here and to docs/architecture.md")
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, text: str, *, is_package: bool = False) -> set[str]:
    """Every ``alarm`` module that ``text`` (the source of ``module``) imports, at any depth."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(text, filename=module)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package[: len(package) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name == "alarm" or name.startswith("alarm.")}


SOURCES = sorted((SRC / "alarm").rglob("*.py"))


def test_every_module_has_a_layer():
    for path in SOURCES:
        unit_of(module_name(path))


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in SOURCES:
        source = module_name(path)
        layer, unit = unit_of(source)
        text = path.read_text(encoding="utf-8")
        for target in sorted(imported_modules(source, text, is_package=path.name == "__init__.py")):
            target_layer, target_unit = unit_of(target)
            if target_unit == unit or target_layer < layer or (source, target) in EXCEPTIONS:
                continue
            wrong.append(f"{source} (layer {layer}, {unit}) imports {target} (layer {target_layer}, {target_unit})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from alarm.chat import AudioSlot\n", {"alarm.chat"}),
        ("def f():\n    import alarm.generation as g\n", {"alarm.generation"}),
        ("from . import schema\n", {"alarm.corpus"}),
        ("from ..modeling.model import x\n", {"alarm.modeling.model"}),
        ("import numpy\nfrom typing import Any\n", set()),
    ],
)
def test_the_check_sees_every_import_form(text, expected):
    """Function-level and relative imports are found; other packages are ignored."""
    assert imported_modules("alarm.corpus.probe", text) == expected


def test_units_resolve_by_longest_prefix():
    assert unit_of("alarm.modeling.model") == (3, "modeling")
    assert unit_of("alarm.chat") == (4, "chat")
    assert unit_of("alarm.generation_vllm") == (5, "generation")
    assert unit_of("alarm") == (0, "base")
    with pytest.raises(LookupError, match="in no layer"):
        unit_of("alarm.newthing")
