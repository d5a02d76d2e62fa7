"""/docs (Swagger UI) and /redoc (ReDoc) served from the service itself.

FastAPI's own pages load their JavaScript and CSS from cdn.jsdelivr.net and ReDoc's fonts from
Google Fonts: blank on a machine without internet, and every docs visit tells a third party.
The assets come from the `fastapi-offline` package (MIT; it ships Swagger UI 5.32.6, Apache-2.0,
and ReDoc 2.5.3, MIT, with their licence headers): a maintained wheel pinned in pyproject.toml,
so upgrading the docs UI is a dependency bump rather than files copied into this repository.
Only its static files are used; the pages are FastAPI's own `get_swagger_ui_html` and
`get_redoc_html` pointed at local URLs, so they follow FastAPI's defaults.
"""

import os
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
STATIC_URL = "/docs/static"
# The browser enforces "nothing from another host" on the docs pages: ReDoc's sidebar loads
# its maker's logo from cdn.redoc.ly unconditionally (no option turns it off), and any asset
# added later would be refused the same way. Inline scripts and styles are FastAPI's page
# templates and ReDoc's styled-components; blob: workers are ReDoc's search.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    )
)
# Swagger UI asks validator.swagger.io to check the spec on any host but localhost: off.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
# The assets are 2.7 MB; every other answer of the service is `no-store` (core/middleware.py).
# A day, then a revalidation by ETag (a 304): the URLs carry no version, so an upgraded
# package reaches browsers within a day.
ASSETS_CACHE_CONTROL = "public, max-age=86400"
# The package's static folder, inside the installed wheel (a plain directory: pip unpacks it).
ASSETS = files("fastapi_offline") / "static"


def install_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Add the two docs pages, Swagger UI's OAuth2 redirect page and their assets to `app`,
    which must have been built with `docs_url=None, redoc_url=None`."""
    app.mount(STATIC_URL, CachedStaticFiles(directory=str(ASSETS)), name="docs-static")

    @app.api_route(DOCS_URL, methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # root_path: behind a proxy that strips a prefix, the browser needs the full path.
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            swagger_ui_parameters={**SWAGGER_UI_PARAMETERS, **(app.swagger_ui_parameters or {})},
        )
        return _confined(page)

    @app.api_route(OAUTH2_REDIRECT_URL, methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _confined(get_swagger_ui_oauth2_redirect_html())

    @app.api_route(REDOC_URL, methods=["GET", "HEAD"], include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            # The system font stack instead of a request to fonts.googleapis.com.
            with_google_fonts=False,
        )
        return _confined(page)


class CachedStaticFiles(StaticFiles):
    """Starlette's static files (ETag, Last-Modified, 304s) with a Cache-Control of their own."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSETS_CACHE_CONTROL
        return response


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
