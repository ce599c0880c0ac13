"""Dataset formats: exporters and importers registered by name (`robot-stack dataset export/import`).

Each format module registers itself with `@register_format("name")` on a class with
`export(store, out, *, episodes=None, features=None, fps=None, progress=None) -> Path` and, where
the format can be imported, `import_(src, store, *, progress=None) -> list[int]` (new episode indices).
`format_class(name)` raises a clear error listing the known formats. Importing this package loads
every format module listed in `MODULES`.
"""

from __future__ import annotations

import difflib
import importlib

from data.store import StoreError

MODULES = ("data.formats.lerobot", "data.formats.rosbag", "data.formats.zarr_buffer")
_FORMATS: dict[str, type] = {}


def register_format(name: str):
    def deco(cls: type) -> type:
        cls.name = name
        _FORMATS[name] = cls
        return cls

    return deco


def _load() -> None:
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:      # a format module not written yet / optional dependency
            if exc.name is None or not exc.name.startswith("data.formats"):
                raise


def available_formats() -> list[str]:
    _load()
    return sorted(_FORMATS)


def format_class(name: str) -> type:
    _load()
    if name not in _FORMATS:
        close = difflib.get_close_matches(name, list(_FORMATS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise StoreError(f"unknown dataset format '{name}'; available: {', '.join(sorted(_FORMATS))}{hint}")
    return _FORMATS[name]
