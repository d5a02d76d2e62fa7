"""/docs and /redoc in a real browser: headless Chromium (the system's, never a downloaded one)
driven by Playwright, against the service served on the wire tier.

Swagger UI: sign up through "Try it out", "Authorize" with the OAuth2 password flow, create a
list and a todo in it, list both, and read the rendered responses. ReDoc: the API's title and
an operation render. Any request to a host other than the service fails the test (and is
blocked, so a docs page can't reach a CDN even while failing). On failure the page is saved as
a screenshot under $TMPDIR, its path in the failure message.
"""

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    async_playwright,
)
from playwright.async_api import expect as playwright_expect

from tests.live_server import LiveServer, live_server

# Debian's package installs /usr/bin/chromium; other systems name it differently.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No sandbox: CI runs as root in a container, where Chromium's sandbox can't start. The rest
# keep the browser from calling home (updates, field trials) during the test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# Swagger UI renders the spec, then each operation on demand: generous for a loaded CI box.
TIMEOUT_MS = 30_000
# Set to a path to keep a screenshot of the finished Swagger flow's last step
# (docs/swagger-ui-flow.png was made this way).
SCREENSHOT_ENV = "DOCS_E2E_SCREENSHOT"
PASSWORD = "correct horse battery staple"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# expect()'s own default is 5 s, far shorter than the actions' own.
playwright_expect.set_options(timeout=TIMEOUT_MS)

pytestmark = pytest.mark.timeout(180)


def chromium_binary() -> str | None:
    """CHROMIUM_PATH if set, else the first Chromium on PATH."""
    if path := os.environ.get("CHROMIUM_PATH"):
        return path
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def screenshot_dir() -> Path:
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir())


@pytest.fixture
async def server(wire_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(wire_url, tmp_path, DOCS_ENABLED="true") as running:
        yield running


class OffsiteRequests:
    """Every request the pages made to a host other than the service (each one blocked), and
    every one the page's Content-Security-Policy refused before it was made, but one: ReDoc's
    sidebar always asks cdn.redoc.ly for its logo, which the policy exists to refuse."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.seen: list[str] = []
        self.refused: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text and REDOC_LOGO not in text:
            self.refused.append(text)

    async def route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        # data: and blob: URLs are the page's own (Swagger UI builds its download links so).
        if parts.scheme in {"data", "blob"} or f"{parts.scheme}://{parts.netloc}" == self.origin:
            await route.continue_()
            return
        self.seen.append(url)
        await route.abort()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_binary()
    if executable is None:
        pytest.skip(
            "no Chromium binary found (PATH: " + ", ".join(CHROMIUM_NAMES) + "; or set "
            "CHROMIUM_PATH): install Debian's `chromium`, as .ci/run does"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, server: LiveServer) -> AsyncIterator[tuple[Page, OffsiteRequests]]:
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 1600})
    context.set_default_timeout(TIMEOUT_MS)
    offsite = OffsiteRequests(server.url)
    await context.route("**/*", offsite.route)
    opened = await context.new_page()
    opened.on("console", offsite.console)
    try:
        yield opened, offsite
    finally:
        await context.close()


async def on_failure_screenshot(
    page: Page, name: str, steps: Callable[[], Awaitable[None]]
) -> None:
    """Run `steps`; if they fail, save the page under $TMPDIR and say where."""
    try:
        await steps()
    except BaseException as error:
        path = screenshot_dir() / f"{name}-{uuid.uuid4().hex[:8]}.png"
        await page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{name} failed; screenshot: {path}") from error


def operation(page: Page, tag: str, operation_id: str) -> Locator:
    """An operation's block in Swagger UI (its DOM id is operations-<tag>-<operationId>)."""
    return page.locator(f"#operations-{tag}-{operation_id}")


async def try_it_out(
    page: Page,
    tag: str,
    operation_id: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    status: int,
) -> Any:
    """Open an operation, press "Try it out", fill its body and parameters, press "Execute",
    and return the JSON body Swagger UI rendered, after checking the rendered status."""
    block = operation(page, tag, operation_id)
    await block.locator(".opblock-summary").first.click()
    await block.get_by_role("button", name="Try it out").click()
    if body is not None:
        await block.locator("textarea.body-param__text").fill(json.dumps(body))
    for name, value in (params or {}).items():
        await block.locator(f'tr[data-param-name="{name}"] input').fill(value)
    await block.get_by_role("button", name="Execute").click()
    # The table of the response received (its header row has a "Code" cell of the same class).
    live = block.locator(".live-responses-table tbody")
    await playwright_expect(live.locator(".response-col_status").first).to_have_text(str(status))
    rendered = await live.locator(
        ".response-col_description .highlight-code pre"
    ).first.inner_text()
    return json.loads(rendered)


async def test_swagger_ui_signs_up_authorizes_and_manages_a_list_offline(
    page: tuple[Page, OffsiteRequests], server: LiveServer
) -> None:
    tab, offsite = page
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"

    async def steps() -> None:
        await tab.goto(f"{server.url}/docs")
        await playwright_expect(tab.locator(".swagger-ui .info .title")).to_contain_text(
            "todo-service"
        )

        user = await try_it_out(
            tab,
            "users",
            "create_user_api_users_post",
            body={"email": email, "fname": "Ada", "lname": "Lovelace", "password": PASSWORD},
            status=201,
        )
        assert user["email"] == email

        # Authorize: the OAuth2 password flow against /api/token, from Swagger UI's dialog.
        await tab.locator(".auth-wrapper .authorize").click()
        dialog = tab.locator(".modal-ux")
        await dialog.locator("#oauth_username").fill(email)
        await dialog.locator("#oauth_password").fill(PASSWORD)
        # The dialog's buttons carry aria-labels ("Apply credentials", ...): found by text.
        await dialog.locator(".auth-btn-wrapper button", has_text="Authorize").click()
        # Once a token is held, the dialog offers "Logout" in place of "Authorize".
        await playwright_expect(
            dialog.locator(".auth-btn-wrapper button", has_text="Logout")
        ).to_be_visible()
        await dialog.locator(".auth-btn-wrapper button", has_text="Close").click()

        todo_list = await try_it_out(
            tab, "lists", "create_list_api_lists_post", body={"name": "Groceries"}, status=201
        )
        assert todo_list["name"] == "Groceries"
        todo = await try_it_out(
            tab,
            "todos",
            "create_todo_api_todos_post",
            body={"list_id": todo_list["id"], "text": "Buy oat milk"},
            status=201,
        )
        assert todo["text"] == "Buy oat milk"

        lists = await try_it_out(tab, "lists", "list_lists_api_lists_get", status=200)
        assert "Groceries" in json.dumps(lists)
        todos = await try_it_out(
            tab,
            "todos",
            "list_todos_api_todos_get",
            params={"list_id": todo_list["id"]},
            status=200,
        )
        assert [item["text"] for item in todos["items"]] == ["Buy oat milk"]

        if keep := os.environ.get(SCREENSHOT_ENV):
            # The last request sent, with the bearer token "Authorize" got, and the response
            # Swagger UI rendered (the whole page is 9 000 pixels tall).
            last = operation(tab, "todos", "list_todos_api_todos_get")
            await last.locator(".responses-inner > div").first.screenshot(path=keep)

    await on_failure_screenshot(tab, "swagger-ui", steps)
    assert offsite.seen == [], f"/docs asked other hosts: {offsite.seen}"
    assert offsite.refused == [], f"/docs tried other hosts: {offsite.refused}"


async def test_redoc_renders_the_api_offline(
    page: tuple[Page, OffsiteRequests], server: LiveServer
) -> None:
    tab, offsite = page

    async def steps() -> None:
        await tab.goto(f"{server.url}/redoc")
        await playwright_expect(tab.locator("h1").first).to_contain_text("todo-service")
        await playwright_expect(tab.locator("h2", has_text="Create a list").first).to_be_attached()

    await on_failure_screenshot(tab, "redoc", steps)
    assert offsite.seen == [], f"/redoc asked other hosts: {offsite.seen}"
    assert offsite.refused == [], f"/redoc tried other hosts: {offsite.refused}"
