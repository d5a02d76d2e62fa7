"""Every database query the service makes, one module per resource.

Routes call `crud.<resource>.<function>(...)` with keyword arguments; nothing else builds queries.
"""

from service.crud import idempotency, tickets, todos, users

__all__ = ["idempotency", "tickets", "todos", "users"]
