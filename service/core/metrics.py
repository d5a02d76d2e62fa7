"""Prometheus metrics: request count and latency by route template and status.

With several worker processes (`serve --workers N`), `serve` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before the workers start, and /metrics aggregates every worker's samples
(prometheus-client's multiprocess mode).
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

REQUESTS = Counter(
    "todo_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "todo_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DB_UNAVAILABLE = Counter(
    "todo_db_unavailable",
    "Requests answered 503 because the database was unreachable or too slow.",
)


# (method, route, status) -> its counter and histogram children: `labels()` checks and locks
# on every call. The same children prometheus-client keeps; bounded in case of odd methods.
_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
MAX_CACHED_CHILDREN = 4096


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request."""
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        if len(_children) >= MAX_CACHED_CHILDREN:
            _children.clear()
        status_text = str(status)
        children = (
            REQUESTS.labels(method, route, status_text),
            LATENCY.labels(method, route, status_text),
        )
        _children[key] = children
    children[0].inc()
    children[1].observe(seconds)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped
    return registry


async def metrics_endpoint(_: Request) -> Response:
    """The metrics in Prometheus' text format."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
