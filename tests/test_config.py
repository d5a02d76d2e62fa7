from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import Environment, Settings, _development_key

LONG_KEY = "k" * 32


def make_settings(**values: object) -> Settings:
    return Settings.model_validate(values)


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read only what each test passes (no .env, no stray variables)."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_production_is_the_default_environment() -> None:
    assert make_settings(secret_key=LONG_KEY).environment is Environment.PRODUCTION


def test_production_refuses_a_missing_secret_key() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings()


def test_production_refuses_a_secret_key_under_32_bytes() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(secret_key="k" * 31)


def test_production_accepts_a_32_byte_secret_key() -> None:
    assert make_settings(secret_key=LONG_KEY).signing_key() == LONG_KEY


def test_development_refuses_a_short_secret_key_too() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        make_settings(environment="development", secret_key="short")


def test_development_generates_a_key_that_survives_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    first = make_settings(environment="development", data_dir=data_dir).signing_key()
    assert len(first.encode()) >= 32
    assert (data_dir / "dev-secret-key").stat().st_mode & 0o077 == 0
    assert "SECRET_KEY is not set" in caplog.text
    _development_key.cache_clear()  # a new process would read the file afresh
    again = make_settings(environment="development", data_dir=data_dir).signing_key()
    assert again == first


def test_settings_come_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", LONG_KEY)
    monkeypatch.setenv("MONGODB_DB", "elsewhere")
    monkeypatch.setenv("ACCESS_TOKEN_EXPIRE_MINUTES", "5")
    settings = Settings()
    assert (settings.mongodb_db, settings.access_token_expire_minutes) == ("elsewhere", 5)


def test_settings_come_from_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"SECRET_KEY={LONG_KEY}\nJWT_ISSUER=from-dotenv\n")
    assert Settings().jwt_issuer == "from-dotenv"
