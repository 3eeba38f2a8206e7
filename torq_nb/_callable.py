"""Packages that are also their main function: ``torq_nb.research("topic")`` beside ``torq_nb.research.provider``.

The public API promises both ``torq_nb.research(...)``/``torq_nb.export(...)`` and the packages of the same
names; a plain function would shadow the package attribute (breaking ``import torq_nb.research.x``), so the
package module itself becomes callable and imports its function only when called.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call runs ``self.__call_target__`` ("module.path:function")."""

    __call_target__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, function = self.__call_target__.partition(":")
        return getattr(importlib.import_module(module), function)(*args, **kwargs)


def make_callable(module_name: str, target: str) -> None:
    """Make the already-imported module ``module_name`` callable as ``target`` ("module.path:function")."""
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module.__call_target__ = target  # type: ignore[attr-defined]
