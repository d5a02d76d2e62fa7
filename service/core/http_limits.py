"""uvicorn's HTTP protocol with a bounded request head: at most MAX_HEAD_BYTES, in time.

uvicorn's httptools protocol feeds every byte to the parser, and httptools keeps a header that
hasn't ended in memory however long it grows (100 MiB per connection was accepted), with no
deadline for a head that never ends: the keep-alive timeout only runs between requests and is
cancelled by the first byte. This subclass counts the bytes of each request head (request line
and headers) as they arrive, answers 431 and closes past MAX_HEAD_BYTES, and closes a connection
whose head hasn't ended within HEADER_TIMEOUT_SECONDS of its first byte (or of the connection).
Bodies are bounded elsewhere (BodyLimitMiddleware); `serve` always runs this protocol.
"""

import asyncio
import json
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.config import get_settings

logger = logging.getLogger(__name__)

# Request line and headers together, as Node.js's default limit.
MAX_HEAD_BYTES = 16 * 1024
# What uvicorn.Config(http=...) takes: workers import it by name.
PROTOCOL = "service.core.http_limits:BoundedHttpToolsProtocol"

_TOO_LARGE = json.dumps({"detail": "Request header fields too large"}).encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose request heads are bounded in size and time."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.head_timeout = get_settings().header_timeout_seconds
        self._reading_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._heads_completed = 0
        # When the head being read got its first byte (or the connection opened); None between
        # requests. One timer per connection checks it: re-arming a timer for every request
        # cost ~10 % of a request's CPU at the floor (bench/floor.py).
        self._head_started: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's own signature
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._reading_head:
            super().data_received(data)
            return
        if self._head_started is None:
            self._arm_head_timer()
        room = self.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what may still be head: if it ends in there, the rest is body (or the
        # next request); if not, the head is too large and nothing more is read.
        completed = self._heads_completed
        self._head_bytes = self.max_head_bytes
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._heads_completed == completed:
            self._refuse_head()
            return
        super().data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_completed += 1
        self._head_started = None  # the timer, if armed, finds nothing to time
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever comes next is the next request's head (timed from its first byte; idle
        # keep-alive connections are uvicorn's timeout_keep_alive's business).
        self._reading_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        """Time the head starting now; a timer already armed fires before its deadline (it was
        armed for an earlier head) and re-arms for this one."""
        self._head_started = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_started is None or not self._reading_head:
            return  # between requests: armed again by the next head's first byte
        deadline = self._head_started + self.head_timeout
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._head_timed_out)
            return
        if not self.transport.is_closing():
            logger.warning(
                "request head not complete within HEADER_TIMEOUT_SECONDS=%s: connection closed",
                self.head_timeout,
            )
            self.transport.close()

    def _refuse_head(self) -> None:
        logger.warning("request head over %d bytes: 431, connection closed", self.max_head_bytes)
        self._cancel_head_timer()
        head = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(_TOO_LARGE)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            _TOO_LARGE,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()
