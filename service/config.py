"""Settings: every environment variable the service reads lives here."""

import logging
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

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
