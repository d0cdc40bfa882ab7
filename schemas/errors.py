"""The root of the errors `schemas` raises.

`schemas` stands alone (it imports nothing of `consumer`), so its errors have
a root of their own. They speak of the data, and the same bytes always give
the same answer: none is worth another attempt. `retriable` is the flag the
service's retry policy reads (`consumer.gates.retry.RetryPolicy.retriable`),
the same one every `consumer.errors.ConsumerError` carries.
"""

from __future__ import annotations


class SchemaError(Exception):
    """Root of the schema errors. Never retriable: the bytes won't change."""

    retriable: bool = False
