"""Health and readiness answers."""

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)


class HealthStatus(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


class NotReadyStatus(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    detail: str = Field(description="Why the service is not ready.")
