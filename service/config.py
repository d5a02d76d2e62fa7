"""Settings: every environment variable the service reads lives here."""

import logging
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.client_ip import IPNetwork, parse_networks

logger = logging.getLogger(__name__)

MIN_SECRET_KEY_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """The service's configuration, from environment variables and `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Environment = Environment.PRODUCTION
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    mongodb_url: str | None = None
    mongodb_db: Annotated[str, Field(min_length=1, max_length=63)] = "todo"
    mongodb_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 5000
    secret_key: SecretStr | None = None
    access_token_expire_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 30
    jwt_issuer: str = "todo-service"
    jwt_audience: str = "todo-service"
    data_dir: Path = Path("./data")
    log_level: str = "INFO"
    # Argon2id holds 64 MiB and a core per hash: this bounds memory and keeps hashing from
    # starving the event loop and the thread pool. 1 suits 2 cores (bench/REPORT.md); raise it
    # with the number of cores.
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 1
    # At most this many requests wait for a hashing slot; one more gets 503 + Retry-After at
    # once rather than delaying every login behind a burst (16 waits ~2 s at 1 slot).
    password_hash_queue: Annotated[int, Field(ge=0, le=10_000)] = 16
    # Sessions and refresh tokens: a session lives this long from login, refreshes included.
    refresh_token_expire_days: Annotated[int, Field(ge=1, le=365)] = 30
    # The token a refresh just replaced, presented again within this many seconds (two tabs
    # refreshing at once), gets 401 without revoking the session; 0 treats it as theft too.
    refresh_reuse_grace_seconds: Annotated[int, Field(ge=0, le=300)] = 10
    # A login past this many active sessions ends the user's oldest ones.
    max_sessions_per_user: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Login throttling, counted in MongoDB so that every worker and replica shares it.
    login_max_failures: Annotated[int, Field(ge=1, le=100_000)] = 5
    login_max_failures_per_ip: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    login_window_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 900
    # Failed token refreshes per client IP within LOGIN_WINDOW_SECONDS before 429.
    refresh_max_failures_per_ip: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    signup_max_per_ip: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    signup_window_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 3600
    # Email changes (PATCH /api/me with `email`) per user: every attempt counts, so a taken
    # address's 409 can't be used to test many addresses.
    email_change_max_per_user: Annotated[int, Field(ge=1, le=100_000)] = 10
    email_change_window_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 24 * 3600
    # Comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: Annotated[str, Field(max_length=10_000)] = ""
    # Deleted todos stay as tombstones this long, for delta sync (a TTL index removes them).
    tombstone_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    # Delta sync answers are complete up to the server's clock minus this lag: it covers
    # writes still in flight and clock differences between instances.
    sync_lag_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000
    # Authentication from memory (service/accounts/cache.py): a worker answers a request's
    # session check from its cache only while its change stream has caught up within this
    # many milliseconds; a revocation made on another worker is refused here within that.
    # 0 turns the cache off (every request reads its session from the database).
    auth_cache_max_staleness_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000
    # Seconds of silence after which an open change feed stream gets a comment heartbeat.
    feed_heartbeat_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    # At most this many changes are replayed when a stream resumes from Last-Event-ID; the
    # stream then ends and the client resumes from the last one it got, so no backlog is
    # replayed in one unbounded go.
    feed_catch_up_limit: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    # Open change feed streams: per user across every worker (429 past it), and per worker
    # process (503 past it; each stream costs a queue and a connection, not a database call).
    max_streams_per_user: Annotated[int, Field(ge=1, le=1000)] = 5
    max_streams_per_worker: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Resilience: no request waits on a dead database for more than about 3 s in all.
    mongodb_connect_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 2000
    mongodb_socket_timeout_ms: Annotated[int, Field(ge=100, le=300_000)] = 10_000
    # One budget for all the database calls of a request. Server selection wakes in 0.5 s
    # steps, so a budget above 2 s can overshoot the 3 s promised to clients.
    request_db_budget_ms: Annotated[int, Field(ge=100, le=60_000)] = 2000
    # Each batch an export reads (GET /api/export: a stream of many reads, after the response
    # has started). On SecantusDB the first batch of a list runs the list's whole find, about
    # 1 s per 10 000 todos on an idle machine and several under load (bench/export_memory.py).
    export_batch_db_budget_ms: Annotated[int, Field(ge=100, le=300_000)] = 10_000
    # Exports running at once, counted per worker process (transfer/limits.py says why):
    # per user (429 past it) and in all (503 past it). Each holds a cursor and a batch for
    # as long as its client takes to read it.
    exports_per_user: Annotated[int, Field(ge=1, le=100)] = 2
    exports_per_worker: Annotated[int, Field(ge=1, le=1000)] = 8
    ready_timeout_ms: Annotated[int, Field(ge=100, le=10_000)] = 1000
    mongodb_startup_timeout: Annotated[float, Field(ge=0, le=3600)] = 30.0
    mongodb_write_concern: Annotated[str, Field(pattern=r"^(majority|[0-9]{1,2})$")] = "majority"
    mongodb_journal: bool = True
    # Limits (OWASP API4).
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    max_todos_per_list: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    # Todos one POST /api/import may carry (422 above): it is validated whole before writing.
    import_max_todos: Annotated[int, Field(ge=1, le=100_000)] = 5000
    # The largest POST /api/import body (413 above), in place of MAX_BODY_BYTES for it alone:
    # an exported todo takes ~330 bytes besides its text, notes and tags, so 16 MiB holds
    # 5000 of them at ~3.3 KB each (a full 1000-character text and 2000 of notes every one).
    # At most 64 MiB, what the compose proxy lets through (deploy/nginx.conf).
    import_max_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 16 * 1024 * 1024
    # Lists and sharing: lists a user owns (the default list included), members of a list (its
    # owner included), pending invitations of a list, invitations a user sends in any 24 h
    # (429 past it), and how long an invitation stays acceptable.
    max_lists_per_user: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_list_members: Annotated[int, Field(ge=2, le=10_000)] = 50
    max_pending_invitations: Annotated[int, Field(ge=1, le=10_000)] = 50
    # At most 10 000: the rolling window keeps the instant of each invitation it counts, in
    # one document (accounts/counters.reserve_rolling).
    max_invitations_per_day: Annotated[int, Field(ge=1, le=10_000)] = 100
    invitation_ttl_days: Annotated[int, Field(ge=1, le=365)] = 7
    # HTTP hygiene and observability.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    docs_enabled: bool | None = None
    metrics_enabled: bool | None = None
    shutdown_grace_seconds: Annotated[int, Field(ge=0, le=3600)] = 10
    # A connection whose request line and headers haven't all arrived this many seconds after
    # their first byte (or after the connection opened) is closed (service/http_limits.py).
    header_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)  # raises ValueError naming the bad entry
        return value

    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """TRUSTED_PROXIES as networks (a single IP is a /32 or /128)."""
        return parse_networks(self.trusted_proxies)

    @property
    def docs_on(self) -> bool:
        """/docs, /redoc and /openapi.json: on in development unless DOCS_ENABLED says."""
        return self.is_development if self.docs_enabled is None else self.docs_enabled

    @property
    def metrics_on(self) -> bool:
        """/metrics: on in development unless METRICS_ENABLED says."""
        return self.is_development if self.metrics_enabled is None else self.metrics_enabled

    @property
    def write_concern(self) -> str | int:
        """MONGODB_WRITE_CONCERN as pymongo's `w`: "majority" or a number of nodes."""
        w = self.mongodb_write_concern
        return w if w == "majority" else int(w)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # A comma-separated list in the environment: CORS_ORIGINS=https://a.example,https://b.example
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _check_secret_key(self) -> Self:
        if self.secret_key is None and self.is_development:
            return self
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if len(key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"SECRET_KEY must be set to at least {MIN_SECRET_KEY_BYTES} bytes "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    def signing_key(self) -> str:
        """The JWT signing key; in development without SECRET_KEY, one kept in DATA_DIR."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _development_key(self.data_dir)


@lru_cache
def _development_key(data_dir: Path) -> str:
    path = data_dir / "dev-secret-key"
    logger.warning(
        "SECRET_KEY is not set: signing tokens with the development key kept in %s. "
        "Never run production like this.",
        path,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # "x" so that two workers starting at once can't both write a different key.
        with path.open("x", encoding="ascii") as file:
            path.chmod(0o600)
            file.write(secrets.token_urlsafe(48))
    except FileExistsError:
        pass
    return path.read_text(encoding="ascii").strip()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
