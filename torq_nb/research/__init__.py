"""A research run: sources, polite fetching, extraction, synthesis and the results table.

The package is callable: ``torq_nb.research("topic", depth=..., source=...)`` is
``torq_nb.research.provider.research``.
"""

from torq_nb._callable import make_callable

make_callable(__name__, "torq_nb.research.provider:research")
