"""Request heads are bounded: 431 past 16 KiB, dropped past HEADER_TIMEOUT_SECONDS, and
memory stays flat under connections that abuse either (against the real server process)."""

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn

from service.core.http_limits import MAX_HEAD_BYTES, PROTOCOL, BoundedHttpToolsProtocol
from service.embedded import free_port
from tests.live_server import LiveServer, live_server, serve_options, server_environment
from tests.utils import wait_until_serving

CHUNK = 64 * 1024
OVERSIZED_BYTES = 4 * 1024 * 1024  # what each abusive connection tries to send as headers
CONNECTIONS = 50
MAX_RSS_GROWTH = 20 * 1024 * 1024


def head(padding: int) -> bytes:
    """A GET /api/health whose head is `padding` bytes longer than without padding."""
    return b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * padding + b"\r\n\r\n"


def port_of(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; what came back before the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_head_up_to_16_kib_is_served_and_a_larger_one_is_431(
    wire_url: str, tmp_path: Path
) -> None:
    async with live_server(wire_url, tmp_path) as server:
        port = port_of(server)
        fits = head(MAX_HEAD_BYTES - len(head(0)))
        assert len(fits) == MAX_HEAD_BYTES
        assert (await exchange(port, fits)).startswith(b"HTTP/1.1 200")
        too_large = await exchange(port, head(MAX_HEAD_BYTES))
        assert too_large.startswith(b"HTTP/1.1 431"), too_large[:100]
        assert too_large.endswith(b'{"detail": "Request header fields too large"}')
        # A body after a small head is not counted as head.
        post = (
            b"POST /api/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60000\r\nConnection: close\r\n\r\n" + b" " * 60000
        )
        assert (await exchange(port, post)).startswith(b"HTTP/1.1 422")


async def test_a_head_that_does_not_arrive_in_time_is_dropped(
    wire_url: str, tmp_path: Path
) -> None:
    async with live_server(wire_url, tmp_path, HEADER_TIMEOUT_SECONDS="1") as server:
        port = port_of(server)
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")

        async def dribble() -> None:
            for _ in range(100):  # 10 s, a byte every 0.1 s
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)

        dribbling = asyncio.create_task(dribble())
        try:
            # Closed (EOF, nothing answered) well before the dribble would end.
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert await asyncio.wait_for(silent_reader.read(), 5) == b""
        finally:
            dribbling.cancel()
            await asyncio.gather(dribbling, return_exceptions=True)
            writer.close()
            silent.close()
        assert "HEADER_TIMEOUT_SECONDS=1" in server.log_text()
        # A keep-alive connection's next request is timed too, from its first byte.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head(0))
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET /api/health HTTP/1.1\r\n")
        await asyncio.wait_for(reader.read(), 5)  # whatever is left of the 200's body, then EOF
        assert reader.at_eof()
        writer.close()


async def test_a_keep_alive_connection_busy_for_longer_than_the_timeout_is_kept(
    wire_url: str, tmp_path: Path
) -> None:
    """Each head is timed on its own: a connection whose requests keep coming for 3 timeouts
    stays open (the one timer per connection re-arms for the head being read)."""
    async with live_server(wire_url, tmp_path, HEADER_TIMEOUT_SECONDS="1") as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
        try:
            loop = asyncio.get_running_loop()
            started, answered = loop.time(), 0
            while loop.time() - started < 3:
                writer.write(head(0))
                answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert answer.startswith(b"HTTP/1.1 200"), answer
                length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                answered += 1
                await asyncio.sleep(0.3)  # idle between requests: not a head being read
            assert answered >= 8
            assert not reader.at_eof()
        finally:
            writer.close()


async def _oversized(port: int) -> bytes:
    """Keep sending one endless header until the server stops listening; what it answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        for _ in range(OVERSIZED_BYTES // CHUNK):
            writer.write(b"a" * CHUNK)
            await writer.drain()
    except ConnectionError:
        pass
    try:
        return await asyncio.wait_for(reader.read(100), 0.5)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


async def _dribbling(port: int, stop: asyncio.Event) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        while not stop.is_set():
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_memory_stays_flat_under_50_abusive_connections(
    wire_url: str, tmp_path: Path
) -> None:
    async with live_server(wire_url, tmp_path) as server:
        port = port_of(server)
        pid = server.process.pid
        assert (await exchange(port, head(0))).startswith(b"HTTP/1.1 200")
        baseline = rss_bytes(pid)
        peak = baseline
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_bytes(pid))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        dribblers = [asyncio.create_task(_dribbling(port, stop)) for _ in range(CONNECTIONS // 2)]
        answers = await asyncio.gather(*(_oversized(port) for _ in range(CONNECTIONS // 2)))
        await asyncio.sleep(0.5)  # the dribblers keep going
        stop.set()
        await asyncio.gather(sampler, *dribblers)
        # Still serving, and every oversized head got a 431 or a closed connection.
        assert (await exchange(port, head(0))).startswith(b"HTTP/1.1 200")
    assert all(answer in (b"",) or answer.startswith(b"HTTP/1.1 431") for answer in answers)
    growth = peak - baseline
    assert growth < MAX_RSS_GROWTH, f"RSS grew by {growth / 2**20:.1f} MiB"


@pytest.mark.parametrize("workers", ["2"])
def test_every_worker_bounds_request_heads(tmp_path: Path, wire_url: str, workers: str) -> None:
    port = free_port()
    env = server_environment(wire_url, tmp_path, LOG_LEVEL="WARNING")
    with subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", workers],
        env=env,
        cwd=tmp_path,
    ) as process:
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", process)
            # New connections, which the kernel spreads over the workers.
            for _ in range(8):
                answer = asyncio.run(exchange(port, head(MAX_HEAD_BYTES)))
                assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


@pytest.mark.parametrize("workers", [1, 4])
def test_serve_runs_the_bounded_protocol_without_uvicorns_access_log(
    monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    kwargs = serve_options(monkeypatch, workers)
    assert kwargs["http"] == PROTOCOL
    assert uvicorn.importer.import_from_string(PROTOCOL) is BoundedHttpToolsProtocol
    assert kwargs["access_log"] is False
