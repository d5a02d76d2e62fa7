"""Liveness."""

from fastapi import APIRouter

from service.schemas import HealthStatus

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness check")
async def health() -> HealthStatus:
    """Answers while the process serves requests; it does not touch the database."""
    return HealthStatus()
