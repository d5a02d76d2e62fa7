"""All API routes, mounted under /api by the app factory."""

from fastapi import APIRouter

from service.api.routes import auth, events, health, sessions, todos, users

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(users.router)
# Before todos: /todos/events would otherwise match /todos/{todo_id}.
api_router.include_router(events.router)
api_router.include_router(todos.router)
api_router.include_router(sessions.router)
