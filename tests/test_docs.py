"""/docs, /redoc and their assets come from the service: no CDN, no fonts, no validator."""

from collections.abc import AsyncIterator
from html.parser import HTMLParser

import pytest
from httpx import ASGITransport, AsyncClient

from service.app import create_app
from service.config import Settings
from service.docs import CONTENT_SECURITY_POLICY
from tests.conftest import TEST_SECRET_KEY

pytestmark = pytest.mark.mock_only


class AssetUrls(HTMLParser):
    """Every URL a page loads: scripts, stylesheets, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")


def asset_urls(html: str) -> list[str]:
    parser = AssetUrls()
    parser.feed(html)
    return parser.urls


async def docs_client(*, enabled: bool) -> AsyncIterator[AsyncClient]:
    settings = Settings(_env_file=None, secret_key=TEST_SECRET_KEY, docs_enabled=enabled)  # type: ignore[arg-type]  # str → SecretStr
    # The pages need no database: no lifespan.
    transport = ASGITransport(create_app(settings))
    async with AsyncClient(transport=transport, base_url="http://docs.test") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    async for opened in docs_client(enabled=True):
        yield opened


@pytest.fixture
async def docs_off() -> AsyncIterator[AsyncClient]:
    async for opened in docs_client(enabled=False):
        yield opened


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_every_asset_from_the_service(client: AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    urls = asset_urls(response.text)
    assert urls
    for url in urls:
        assert url.startswith("/docs/static/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert asset.content


async def test_redoc_asks_no_font_service(client: AsyncClient) -> None:
    response = await client.get("/redoc")
    assert "fonts.googleapis.com" not in response.text


async def test_swagger_ui_asks_no_online_validator(client: AsyncClient) -> None:
    response = await client.get("/docs")
    assert '"validatorUrl": null' in response.text


async def test_swagger_ui_redirects_oauth2_to_its_own_page(client: AsyncClient) -> None:
    docs = await client.get("/docs")
    assert "'/docs/oauth2-redirect'" in docs.text
    redirect = await client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_forbid_other_hosts_to_the_browser(client: AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    for directive in CONTENT_SECURITY_POLICY.split("; "):
        # Only the service itself, inline code and data:/blob: URLs: never another host.
        for source in directive.split()[1:]:
            assert source in {"'self'", "'unsafe-inline'", "'none'", "data:", "blob:"}, directive


async def test_assets_have_their_content_types(client: AsyncClient) -> None:
    for name, content_type in [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.png", "image/png"),
    ]:
        response = await client.get(f"/docs/static/{name}")
        assert response.headers["content-type"].startswith(content_type), name


async def test_assets_are_cached_for_a_day_and_revalidated(client: AsyncClient) -> None:
    first = await client.get("/docs/static/swagger-ui.css")
    assert first.headers["cache-control"] == "public, max-age=86400"
    again = await client.get(
        "/docs/static/swagger-ui.css", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    # The pages themselves are not cached: they carry the CSP and the OpenAPI URL.
    assert (await client.get("/docs")).headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_answer_head_as_get(client: AsyncClient, path: str) -> None:
    # As /openapi.json and the assets do: link checkers and monitors send HEAD.
    response = await client.head(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == b""
    options = await client.options(path)
    assert options.status_code == 405
    assert options.headers["allow"] == "GET, HEAD"


async def test_an_unknown_asset_is_a_json_404(client: AsyncClient) -> None:
    response = await client.get("/docs/static/nope.js")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize(
    "path", ["/docs", "/redoc", "/docs/oauth2-redirect", "/docs/static/swagger-ui.css"]
)
async def test_docs_off_serves_no_page_and_no_asset(docs_off: AsyncClient, path: str) -> None:
    response = await docs_off.get(path)
    assert response.status_code == 404
