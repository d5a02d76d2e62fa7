"""Every database query the service makes, one module per resource.

Routes call `crud.<resource>.<function>(...)` with keyword arguments; nothing else builds queries.
"""

from service.crud import (
    database,
    idempotency,
    sessions,
    streams,
    throttle,
    tickets,
    todos,
    users,
)

__all__ = [
    "database",
    "idempotency",
    "sessions",
    "streams",
    "throttle",
    "tickets",
    "todos",
    "users",
]
