"""Deployment files: the Dockerfile, docker-compose.yml and .env.example agree with the service.

No Docker engine is needed: the files are parsed and checked against `Settings`.
"""

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(compose, dict)
    return compose


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


def _api_environment() -> dict[str, str]:
    """The api service's environment, from either the mapping or the `KEY=VALUE` list form."""
    environment = _service("api").get("environment", {})
    if isinstance(environment, list):
        pairs = (str(item).partition("=") for item in environment)
        return {key: value for key, _, value in pairs}
    assert isinstance(environment, dict)
    return {str(key): "" if value is None else str(value) for key, value in environment.items()}


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    """The instructions of the Dockerfile's last stage, from its FROM on."""
    instructions = _dockerfile()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _arguments(keyword: str) -> list[str]:
    return [arguments for found, arguments in _final_stage() if found == keyword]


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in _compose()


def test_api_environment_holds_only_known_settings() -> None:
    assert set(_api_environment()) - SETTING_NAMES == set()


def test_api_waits_for_healthy_mongo() -> None:
    assert _service("api")["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_mongo_runs_as_replica_set_rs0() -> None:
    command = _service("mongo")["command"]
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    assert "--replSet" in words
    assert words[words.index("--replSet") + 1] == "rs0"


def test_mongo_healthcheck_initiates_replica_set() -> None:
    test = _service("mongo")["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(str(part) for part in test)
    assert "mongosh" in text
    assert "rs.initiate" in text


def test_mongo_port_is_published_on_loopback_only() -> None:
    for port in _service("mongo").get("ports", []):
        assert str(port).startswith("127.0.0.1:")


def test_api_connects_to_replica_set_rs0() -> None:
    query = parse_qs(urlsplit(_api_environment()["MONGODB_URL"]).query)
    assert query["replicaSet"] == ["rs0"]


def test_api_runs_in_production() -> None:
    assert _api_environment()["ENVIRONMENT"] == "production"


def test_api_requires_secret_key_from_environment() -> None:
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", _api_environment()["SECRET_KEY"])


def test_dockerfile_base_image_is_slim_python_3_11_or_later() -> None:
    image = _arguments("FROM")[0].split()[0]
    match = re.fullmatch(
        r"python:3\.(\d+)(?:\.\d+)?-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?", image
    )
    assert match, image
    assert int(match.group(1)) >= 11


def test_dockerfile_runs_cmd_as_non_root_user() -> None:
    stage = _final_stage()
    cmd_at = max(i for i, (keyword, _) in enumerate(stage) if keyword == "CMD")
    users = [arguments for keyword, arguments in stage[:cmd_at] if keyword == "USER"]
    assert users, "no USER before CMD"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_healthcheck_probes_api_health() -> None:
    (healthcheck,) = _arguments("HEALTHCHECK")
    assert "/api/health" in healthcheck


def test_dockerfile_cmd_serves_on_all_interfaces() -> None:
    # Inside the container, all interfaces is the point: Docker publishes the port.
    command = ["todo-service", "serve", "--host", "0.0.0.0"]  # noqa: S104
    assert json.loads(_arguments("CMD")[-1]) == command


def test_dockerfile_installs_without_embedded_extra() -> None:
    installs = [arguments for arguments in _arguments("RUN") if "pip install" in arguments]
    assert installs
    assert not any("embedded" in arguments for arguments in installs)


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?[ \t]*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert SETTING_NAMES - listed == set()


def test_compose_api_healthcheck_probes_readiness() -> None:
    test = _service("api")["healthcheck"]["test"]
    text = test if isinstance(test, str) else " ".join(str(part) for part in test)
    assert "/api/ready" in text


def test_compose_stop_grace_outlasts_the_shutdown_grace() -> None:
    grace = _service("api")["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", str(grace))
    assert match, grace
    configured = _api_environment().get("SHUTDOWN_GRACE_SECONDS")
    shutdown_grace = (
        int(configured) if configured else Settings.model_fields["shutdown_grace_seconds"].default
    )
    assert int(match.group(1)) > shutdown_grace
