"""Dataset specs: one module per source dataset, each defining ``SPEC`` (a :class:`DatasetSpec`).

Adding a dataset is adding a module here (found automatically) and a fixture test in
``tests/test_collect_datasets.py``. Modules starting with ``_`` hold shared tables.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from alarm.corpus.collection import DatasetSpec, SpecError


@cache
def all_specs() -> dict[str, DatasetSpec]:
    """Every registered spec by name, in name order."""
    specs: dict[str, DatasetSpec] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        spec = importlib.import_module(f"{__name__}.{module.name}").SPEC
        if not isinstance(spec, DatasetSpec):
            raise SpecError(f"{__name__}.{module.name}.SPEC is not a DatasetSpec")
        if spec.name in specs:
            raise SpecError(f"two collectors are named {spec.name!r}")
        specs[spec.name] = spec
    return dict(sorted(specs.items()))


def get_spec(name: str) -> DatasetSpec:
    """The spec called ``name``; the error lists the known names."""
    specs = all_specs()
    if name not in specs:
        raise KeyError(f"no collector named {name!r}; known: {', '.join(specs)}")
    return specs[name]
