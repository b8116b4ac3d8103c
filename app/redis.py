"""The Redis pool and the names of every key Taskline writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import Settings

# A single Redis, or a Redis Cluster (REDIS_CLUSTER=true): both answer the
# commands Taskline sends; in a cluster each must touch one hash slot (Keys).
RedisClient: TypeAlias = Redis | RedisCluster


def create_redis(
    settings: Settings, *, max_connections: int = 50, read_timeout_s: float | None = None
) -> RedisClient:
    """One pool per process (in a cluster: per node); ids and small values only,
    so responses are decoded. A pool for blocking reads names a `read_timeout_s`
    longer than its longest block."""
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "socket_timeout": read_timeout_s,
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        # After a Redis restart a pooled connection is dead: retry on a new one
        # before calling Redis down. Safe: a doorbell rung twice is harmless.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if settings.redis_cluster:
        return _cluster(settings, options)
    return Redis.from_pool(_pool(settings, options))  # the client owns the pool


def _pool(settings: Settings, options: dict[str, Any]) -> ConnectionPool:
    """A pool whose connections pack commands in C (see _HiredisPacking); the URL
    chose the connection class (TCP, a Unix socket, TLS)."""
    pool = ConnectionPool.from_url(settings.cache_url, **options)
    base = pool.connection_class
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return pool


# Called through Any: redis 8.2 gave its __init__ parameters without types.
_SERIALIZER: HiredisRespSerializer = cast(Any, HiredisRespSerializer)()


def pack_command(*args: Any) -> list[bytes]:
    """A command's bytes as a pool's connection sends them (see _HiredisPacking)."""
    packed: list[bytes] = _SERIALIZER.pack(*args)
    return packed


class _HiredisPacking(AbstractConnection):
    """redis-py's asyncio connections pack each command in Python, argument by
    argument; its sync client packs with hiredis (a dependency, redis[hiredis])
    in C, to the same bytes. A doorbell of 1,000 ids packs in 0.7 ms instead of
    2.5 ms. A Redis Cluster client (REDIS_CLUSTER) makes its own connections and
    keeps redis-py's packing."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return pack_command(*args)


def create_reader_redis(settings: Settings, *, read_timeout_s: float) -> RedisClient:
    """A client for one long blocking reader: a single connection (per node) that
    is never retried behind the reader's back, so a lost connection (a Redis
    restart) is seen by the reader, which then knows it may have missed
    something. Its read timeout must be longer than the reader's blocking reads."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5,
        "socket_timeout": read_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 1,
    }
    if settings.redis_cluster:
        return _cluster(settings, options)
    return Redis.from_pool(_pool(settings, options))


async def ping(redis: RedisClient) -> None:
    """Raises unless Redis answers; in a cluster, unless every master does."""
    if isinstance(redis, RedisCluster):
        await redis.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await redis.ping()


async def open_pubsub(redis: RedisClient) -> PubSub:
    """A pub/sub connection that hears subscribe confirmations silently. In a
    cluster a PUBLISH reaches the subscribers of every node, so it listens on
    the node that serves the channel's slot, which the client must know first
    (its cluster pub/sub does not look it up by itself)."""
    if isinstance(redis, RedisCluster):
        await redis.initialize()  # at once when it knows the cluster already
    return redis.pubsub(ignore_subscribe_messages=True)


def _cluster(settings: Settings, options: dict[str, Any]) -> RedisCluster:
    """REDIS_URL names one node; the client finds the others and which slots
    each one serves, and follows them as they move (MOVED, a node back from a
    restart). Nothing connects until the first command."""
    return RedisCluster.from_url(settings.cache_url, **options)


@dataclass(frozen=True)
class Keys:
    """Every key lives under one namespace (`REDIS_QUEUE_NAME`).

    The part of a name in braces is its hash tag: in a Redis Cluster
    (REDIS_CLUSTER=true) keys with the same tag share a slot, so that a script
    or multi-key command can touch them together: `{q:<queue>}` a queue's ready and scheduled sets,
    `{k:<kind>}` a kind's parked set, `{a}` admission (rate-limit buckets,
    fairness windows), `{g}` the fleet-wide rest (event stream and counters,
    the queue list, locks, worker reports).
    """

    namespace: str

    def ready(self, queue: str) -> str:
        """Sorted set of a queue's ready task ids, scored by rank, then time."""
        head, tail = self.ready_affixes
        return f"{head}{queue}{tail}"

    @property
    def ready_affixes(self) -> tuple[str, str]:
        """What comes before and after the queue's name in `ready(queue)`, for
        a script that builds it."""
        return f"{self.namespace}:{{q:", "}:ready"

    def scheduled(self, queue: str) -> str:
        """Sorted set of a queue's ids not due yet (delay, retry backoff), scored by
        due time; members are `rank:id`, so promotion knows where to put them."""
        return f"{self.namespace}:{{q:{queue}}}:scheduled"

    def parked(self, kind: str) -> str:
        """Sorted set of ids of a KIND_CONCURRENCY kind that found no free slot;
        members are `queue:id`, scored as in the ready set."""
        return f"{self.namespace}:{{k:{kind}}}:parked"

    def bucket(self, client: str) -> str:
        """Hash of a client's rate-limit token bucket (RATE_LIMIT)."""
        return f"{self.namespace}:{{a}}:bucket:{client}"

    def owner_window(self, owner: str) -> str:
        """Sorted set of one owner's recent submissions (FAIRNESS=levels)."""
        return f"{self.namespace}:{{a}}:owner:{owner}"

    @property
    def queues(self) -> str:
        """Set of the queue names that have had tasks, for the promoter."""
        return f"{self.namespace}:{{g}}:queues"

    @property
    def reconcile_lock(self) -> str:
        return f"{self.namespace}:{{g}}:lock:reconcile"

    @property
    def workflow_lock(self) -> str:
        """Held by the worker running the workflow sweep this interval."""
        return f"{self.namespace}:{{g}}:lock:workflows"

    @property
    def sweep_cursor(self) -> str:
        """Where the reconcile's walk over the pending tasks stopped; losing it
        only starts the walk over."""
        return f"{self.namespace}:{{g}}:reconcile:cursor"

    @property
    def events(self) -> str:
        """Stream of task events (state changes), one entry per batch, capped."""
        return f"{self.namespace}:{{g}}:events"

    @property
    def cancel_channel(self) -> str:
        return f"{self.namespace}:{{g}}:cancel"

    @property
    def keys_channel(self) -> str:
        """Pub/sub channel of API key ids whose cached lookups every API process
        must drop (a key revoked or created)."""
        return f"{self.namespace}:{{g}}:auth:keys"

    @property
    def tally(self) -> str:
        """Hash of counters every process adds to (tasks/tally.py)."""
        return f"{self.namespace}:{{g}}:tally"

    def tally_minute(self, minute: int) -> str:
        """Hash of one minute's event counts per queue, kept two hours."""
        return f"{self.namespace}:{{g}}:tally:minute:{minute}"

    @property
    def consumers_polled(self) -> str:
        """Sorted set of HTTP consumers (`<queue> <consumer>`) scored by when a
        lease of theirs last answered (Unix seconds), trimmed by topics/presence.py."""
        return f"{self.namespace}:{{g}}:consumers:polled"

    @property
    def consumers_leased(self) -> str:
        """The same, scored by when a lease of theirs last took messages."""
        return f"{self.namespace}:{{g}}:consumers:leased"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids scored by their last heartbeat (Unix seconds)."""
        return f"{self.namespace}:{{g}}:workers"

    def worker(self, worker_id: str) -> str:
        """A worker's last report (JSON), expiring unless renewed."""
        return f"{self.namespace}:{{g}}:worker:{worker_id}"
