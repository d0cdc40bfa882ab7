"""Table `consumer_offsets`: exactly-once delivery's progress, in SQL.

One row per (group, topic, partition): the fencing `epoch`, the `position`
(next offset below which every record is done) and `done`, the offsets done
above it as `[start, stop)` bounds (`consumer.engine.progress.Progress`).

Fencing: a member taking a partition over claims it (`claim_partitions`: an
upsert that raises the epoch by one and returns what is stored), and every
write transaction, last thing before its commit, locks the rows of its
partitions (`read_partitions(lock=True)`, `FOR UPDATE`, in one fixed order
so two writes never deadlock on them), compares the epochs with the ones its
member claimed, and stores the merged progress (`store_progress`). A write
whose epoch is lower than the row's — a member that lost the partition while
frozen or slow — rolls back whole. Writes of the owner run two at a time:
the row lock orders their ends, and each merges what it finds, so none loses
the other's offsets; locked only at the end, they overlap everything else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from consumer.engine.progress import Progress
from consumer.types import TP, Claim

if TYPE_CHECKING:
    import asyncpg

OFFSETS_MIGRATION = """
CREATE TABLE IF NOT EXISTS consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    epoch       bigint NOT NULL DEFAULT 1,
    position    bigint,
    done        bigint[] NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
"""

# Rows are inserted (and so locked) in the order of the SELECT: the same
# order as `_LOCK`'s, so a claim and a write never wait on each other in a cycle.
_CLAIM = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition)
SELECT $1, t, p FROM unnest($2::text[], $3::integer[]) AS x(t, p) ORDER BY t, p
ON CONFLICT (group_id, topic, partition)
DO UPDATE SET epoch = o.epoch + 1, updated_at = now()
RETURNING topic, partition, epoch, position, done
"""

_READ = """
SELECT topic, partition, epoch, position, done FROM consumer_offsets
WHERE group_id = $1
  AND (topic, partition) IN (SELECT * FROM unnest($2::text[], $3::integer[]))
ORDER BY topic, partition
"""
# The sort runs below the row locks, so rows are locked in this order.
_LOCK = _READ + "FOR UPDATE\n"

_STORE = """
UPDATE consumer_offsets AS o SET position = x.position, done = x.done::bigint[],
    updated_at = now()
FROM unnest($2::text[], $3::integer[], $4::bigint[], $5::text[])
    AS x(topic, partition, position, done)
WHERE o.group_id = $1 AND o.topic = x.topic AND o.partition = x.partition
"""


def _columns(tps: Iterable[TP]) -> tuple[list[str], list[int]]:
    tps = list(tps)
    return [tp.topic for tp in tps], [tp.partition for tp in tps]


def _stored(record: Any) -> tuple[TP, int, Progress]:
    return (TP(record["topic"], record["partition"]), record["epoch"],
            Progress.from_array(record["position"], record["done"]))


async def claim_partitions(conn: asyncpg.Connection[Any] | Any, group: str,
                tps: Collection[TP]) -> dict[TP, Claim]:
    """Raise the epoch of each partition (a new row starts at 1); return the
    new epochs with the stored progress. Commits on return (one statement)."""
    topics, partitions = _columns(tps)
    out: dict[TP, Claim] = {}
    for record in await conn.fetch(_CLAIM, group, topics, partitions):
        tp, epoch, progress = _stored(record)
        out[tp] = Claim(epoch, progress)
    return out


async def read_partitions(conn: asyncpg.Connection[Any] | Any, group: str,
                          tps: Collection[TP], *, lock: bool = False,
                          ) -> dict[TP, tuple[int, Progress]]:
    """The partitions' (epoch, progress); with `lock`, inside a transaction,
    their rows stay locked until it ends. A partition never claimed has no
    row (and no entry)."""
    topics, partitions = _columns(tps)
    return {tp: (epoch, progress) for tp, epoch, progress in
            map(_stored, await conn.fetch(_LOCK if lock else _READ, group, topics,
                                          partitions))}


async def store_progress(conn: asyncpg.Connection[Any] | Any, group: str,
                progress: dict[TP, Progress]) -> None:
    """Inside the transaction that locked them: write the partitions' progress."""
    topics, partitions = _columns(progress)
    # An array of arrays cannot be unnested row by row: each `done` travels
    # as its text form and is cast back on the server.
    done = ["{" + ",".join(map(str, p.to_array())) + "}" for p in progress.values()]
    await conn.execute(_STORE, group, topics, partitions,
                       [p.position for p in progress.values()], done)
