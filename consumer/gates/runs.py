"""Deprecated: `batch_handler` and `RunContext` are in `consumer.pipeline`
(and `consumer.gates.context`). Kept so handlers written against the old
name still load; importing it warns."""

from __future__ import annotations

import warnings

from consumer.gates.context import RunContext, batch_handler

warnings.warn("consumer.gates.runs is deprecated: import batch_handler and RunContext "
              "from consumer.pipeline", DeprecationWarning, stacklevel=2)

__all__ = ["RunContext", "batch_handler"]
