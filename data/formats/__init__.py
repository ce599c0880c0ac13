"""Dataset formats: exporters and importers registered by name (`robot-stack dataset export/import`).

Each format module registers itself with `@register_format("name")` on a class with
`export(store, out, *, episodes=None, features=None, fps=None, progress=None) -> Path` and, where
the format can be imported, `import_(src, store, *, progress=None) -> list[int]` (new episode indices).
`format_class(name)` raises a clear error listing the known formats. Importing this package loads
every format module listed in `MODULES`.
"""

from __future__ import annotations

import importlib

from data.store import StoreError
from robot_stack.registry import Registry

MODULES = ("data.formats.lerobot", "data.formats.rosbag", "data.formats.zarr_buffer")
def _load() -> None:
    for module in MODULES:
        importlib.import_module(module)


FORMATS: Registry[object] = Registry("dataset format", StoreError, loader=_load)
register_format = FORMATS.register
available_formats = FORMATS.names
format_class = FORMATS.get
