"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from service.core import metrics
from service.core.deps import SettingsDep
from service.errors import DatabaseUnavailable
from service.health import store
from service.health.schemas import HealthStatus, NotReadyStatus, ReadyStatus

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness check")
async def health() -> HealthStatus:
    """Answers while the process serves requests; it does not touch the database."""
    return HealthStatus()


@router.get(
    "/ready",
    summary="Readiness check",
    response_model=ReadyStatus,
    responses={
        DatabaseUnavailable.status_code: {
            "model": NotReadyStatus,
            "description": "The database did not answer in time.",
        }
    },
)
async def ready(settings: SettingsDep) -> ReadyStatus | JSONResponse:
    """Pings the database with a short timeout: route traffic here only while this is 200."""
    try:
        await store.ping(seconds=settings.ready_timeout_ms / 1000)
    except PyMongoError:
        metrics.DB_UNAVAILABLE.inc()
        unavailable = NotReadyStatus(detail=DatabaseUnavailable.detail)
        return JSONResponse(
            unavailable.model_dump(),
            DatabaseUnavailable.status_code,
            headers=DatabaseUnavailable.headers,
        )
    return ReadyStatus()
