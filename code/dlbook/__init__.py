"""dlbook: the shared code of *From Backprop to GPT*.

``import dlbook`` is cheap: it brings in the runtime helpers (:func:`setup`, :func:`device`,
:func:`seed_everything`, :func:`budget`, :func:`by_budget`, :func:`smoke`); every other module
(``dlbook.data``, ``dlbook.train``, ``dlbook.plot``, ``dlbook.widgets``, ``dlbook.exercises``, and
one per chapter) is imported on first use, e.g. ``dlbook.data.load_digits()``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from dlbook.runtime import Runtime, budget, by_budget, device, seed_everything, setup, smoke

__version__ = "0.1.0"

__all__ = [
    "Runtime",
    "__version__",
    "budget",
    "by_budget",
    "device",
    "seed_everything",
    "setup",
    "smoke",
]

_SUBMODULES = {"data", "exercises", "plot", "runtime", "train", "widgets"}


def __getattr__(name: str) -> Any:
    """Import submodules on first attribute access (PEP 562): ``dlbook.data`` just works."""
    if name.startswith("_"):
        raise AttributeError(f"module 'dlbook' has no attribute {name!r}")
    if name in _SUBMODULES or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'dlbook' has no attribute {name!r}")
