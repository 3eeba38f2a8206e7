"""Where a research function meets its caller: a wrong argument is reported as raised at the caller's call.

The research functions check every argument before they start anything (``api._request``,
``batch._request``). Those checks raise TypeError or ValueError with a message that says what to fix; the
library's frames below the call (provider, sources, depths) would add nothing to it, so the traceback a
script or a notebook shows ends at the checking function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def raised_at_the_call(check: Callable[P, R]) -> Callable[P, R]:
    """``check`` (a function that checks a caller's arguments) with its TypeError and ValueError raised without
    the frames below it."""

    @functools.wraps(check)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return check(*args, **kwargs)
        except (TypeError, ValueError) as wrong:
            raise wrong.with_traceback(None) from None

    return checked
