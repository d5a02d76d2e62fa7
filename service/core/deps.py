"""Dependencies every feature uses: settings, clock, client IP."""

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.core.client_ip import resolve_client_ip
from service.core.clock import Clock

# Dependencies are `async def` even when they don't await: FastAPI runs a plain `def` dependency
# in the thread pool, a thread hop per request (measured: ~13% of GET /api/me's CPU; bench/).


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.state.clock
    return clock


ClockDep = Annotated[Clock, Depends(get_clock)]


async def get_client_ip(request: Request) -> str:
    """The caller's IP: the TCP peer, or X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return resolve_client_ip(peer, forwarded, request.state.trusted_proxies)


ClientIP = Annotated[str, Depends(get_client_ip)]
