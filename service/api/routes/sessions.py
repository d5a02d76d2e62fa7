"""Your sessions (one per login): list them, end one."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from service import crud
from service.api.deps import ClockDep, CurrentAuth
from service.exceptions import NotFound, Unauthorized, error_responses
from service.models import id_of
from service.schemas import SessionPublic
from service.security import SESSION_ID_PATTERN

router = APIRouter(tags=["sessions"], responses=error_responses(Unauthorized))


@router.get("/sessions", summary="List your sessions")
async def list_sessions(
    auth: CurrentAuth, clock: ClockDep, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> list[SessionPublic]:
    """Your active sessions, newest first; `current` marks the one of the token you sent."""
    sessions = await crud.sessions.list_active_sessions(
        user_id=id_of(auth.user), now=clock(), limit=limit
    )
    return [
        SessionPublic.from_document(session, current=session.id == auth.session_id)
        for session in sessions
    ]


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End a session",
    responses=error_responses(NotFound),
)
async def revoke_session(
    session_id: Annotated[
        str,
        Path(pattern=SESSION_ID_PATTERN, description="The session's id (from GET /api/sessions)."),
    ],
    auth: CurrentAuth,
    clock: ClockDep,
) -> None:
    """Revoke one of your sessions (its tokens stop working at once); 404 if it isn't yours."""
    if not await crud.sessions.revoke_session(
        user_id=id_of(auth.user), session_id=session_id, now=clock()
    ):
        raise NotFound("Session not found")
