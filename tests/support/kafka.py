"""Types and helpers for tests that talk to the real broker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: The `new_topic` fixture: `await new_topic(prefix, partitions, **config)` → name.
NewTopicFactory = Callable[..., Awaitable[str]]
