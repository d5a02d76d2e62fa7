"""The change feed's use cases: opening a stream (a stream slot, the session check with the
user's memberships, then the catch-up), and what account deletion asks of the feed."""

from dataclasses import dataclass
from datetime import datetime

from beanie import PydanticObjectId

from service.core.clock import Clock
from service.errors import BadRequest, Gone, ServiceUnavailable, TooManyRequests, Unauthorized
from service.events import store
from service.events.feed import (
    CatchUp,
    ChangeFeed,
    InvalidResumeTokenError,
    ResumeTokenTooOldError,
    Subscription,
    UserStreamsFullError,
    WorkerStreamsFullError,
)
from service.lists.deps import MEMBERSHIPS
from service.lists.service import readable_lists

NO_CHANGE_STREAMS = (
    "The live change feed needs change streams, which this database server doesn't support "
    "(a replica set is required); use delta sync (GET /api/todos?updated_since=...) instead"
)
# When to try again after a 429 (too many streams of yours) or 503 (this worker is full).
STREAM_RETRY_AFTER_SECONDS = 10


@dataclass(frozen=True, slots=True)
class StreamAccess:
    """Who may read a change feed stream, on which session, and until when (their access
    token's expiry). Whether the session is still active is checked when the stream opens."""

    user_id: PydanticObjectId
    session_id: str
    until: datetime


@dataclass(frozen=True, slots=True)
class OpenStream:
    """A stream ready to send: its subscription (holding a stream slot), the catch-up after
    Last-Event-ID if any, the id of its `ready` event, the lists it carries as it opens, and
    when it ends at the latest."""

    subscription: Subscription
    catch_up: CatchUp | None
    ready_id: str
    until: datetime
    lists: frozenset[PydanticObjectId]


async def open_stream(
    feed: ChangeFeed, access: StreamAccess, *, last_event_id: str | None, clock: Clock
) -> OpenStream:
    """Subscribe `access`'s user to the changes of every list they can read, from
    `last_event_id` on if given.

    503 without change streams or when this worker is full, 429 when the user has
    MAX_STREAMS_PER_USER streams open, 401 when the session has ended, 400 for a malformed
    `last_event_id` and 410 for one too old to resume from. On any of these (or any other
    failure), the subscription and its slot are released again.
    """
    if not feed.available:
        raise ServiceUnavailable(NO_CHANGE_STREAMS)
    # Subscribe before catching up, so nothing between the two is lost.
    try:
        subscription = await feed.open(access.user_id, access.session_id)
    except WorkerStreamsFullError as exc:
        raise ServiceUnavailable(
            "This server has as many live feed streams open as it serves: try again shortly",
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        ) from exc
    except UserStreamsFullError as exc:
        raise TooManyRequests(
            f"You already have {feed.max_streams_per_user} live feed streams open: close one first",
            retry_after=STREAM_RETRY_AFTER_SECONDS,
        ) from exc
    catch_up: CatchUp | None = None
    try:
        # Checked after subscribing: a session that ends before this is refused here, one
        # that ends after it reaches the subscription through the feed's session watch. The
        # same goes for the user's memberships, read with it (one round trip): a change
        # before this read is in it, one after it reaches the subscription through the feed.
        session = await store.active_session(
            session_id=access.session_id, user_id=access.user_id, now=clock(), join=MEMBERSHIPS
        )
        if session is None:
            raise Unauthorized("The session has ended: log in again")
        lists = feed.load(subscription, readable_lists(session.joined))
        if last_event_id is not None:
            catch_up = await feed.catch_up(subscription, last_event_id)
    except InvalidResumeTokenError as exc:
        feed.unsubscribe(subscription)
        raise BadRequest("Last-Event-ID is not an event id of this feed") from exc
    except ResumeTokenTooOldError as exc:
        feed.unsubscribe(subscription)
        raise Gone(
            "Last-Event-ID is too old to resume from: catch up with delta sync "
            "(GET /api/todos?updated_since=...) and open a new stream"
        ) from exc
    except BaseException:
        feed.unsubscribe(subscription)
        raise
    return OpenStream(
        subscription,
        catch_up,
        ready_id=last_event_id or subscription.token or "",
        until=min(access.until, session.expires_at),
        lists=lists,
    )


# Called by accounts: account deletion (accounts/service.delete_everything_of) removes the
# owner's tickets in its transaction.
delete_tickets_of = store.delete_tickets_of
