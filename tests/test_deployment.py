"""Deployment files: the Dockerfile, docker-compose.yml, the proxy's config and .env.example
agree with the service.

No Docker engine is needed: the compose file is parsed and rendered here, its variables
interpolated as the Compose specification says, and the api's environment is fed to `Settings`.
Where docker exists, `docker compose config` renders it too and must agree.
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic import SecretStr

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# Settings the compose file fixes for the container rather than passing through from .env.
FIXED_IN_COMPOSE = {"ENVIRONMENT", "HOST", "PORT", "DATA_DIR"}
# Settings holding secrets: SecretStr fields.
SECRET_NAMES = {
    name.upper()
    for name, field in Settings.model_fields.items()
    if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
}
KEY = "k" * 48  # a SECRET_KEY for rendering; never in a file
TMP = "/tmp"  # noqa: S108 - the containers' tmpfs, not a file this test writes
NGINX_CONF = ROOT / "deploy" / "nginx.conf"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# ${NAME+alt} (the default/alternative may nest another ${...}), $NAME, and $$ (a literal $).
_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}")
_BARE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(Exception):
    """A `${NAME:?error}` whose variable is unset (or empty): compose refuses to start."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """`text` with its variables substituted as the Compose specification's Interpolation says."""
    parts = text.split("$$")
    return "$".join(_interpolate_part(part, env) for part in parts)


def _interpolate_part(text: str, env: Mapping[str, str]) -> str:
    def braced(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        value = env.get(name)
        is_set = value is not None
        usable = bool(value) if operator and operator.startswith(":") else is_set
        if operator in {":-", "-"}:
            return value if usable and value is not None else interpolate(argument, env)
        if operator in {":?", "?"}:
            if not usable or value is None:
                raise MissingVariable(f"{name}: {argument}")
            return value
        if operator in {":+", "+"}:
            return interpolate(argument, env) if usable else ""
        return value or ""

    return _BARE.sub(lambda match: env.get(match.group(1), ""), _BRACED.sub(braced, text))


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, env) for key, value in node.items()}
    return node


def _compose() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(compose, dict)
    return compose


def render(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as compose sees it with `env` as the shell and .env: interpolated."""
    rendered = _interpolated(_compose(), env)
    assert isinstance(rendered, dict)
    return rendered


def _service(name: str, compose: dict[str, Any] | None = None) -> dict[str, Any]:
    service = (compose or _compose())["services"][name]
    assert isinstance(service, dict)
    return service


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, mapping or `KEY=VALUE` list form; None: a name without a value."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        pairs = (str(item).partition("=") for item in environment)
        return {key: value if sep else None for key, sep, value in pairs}
    assert isinstance(environment, dict)
    return {str(key): None if value is None else str(value) for key, value in environment.items()}


def _api_environment() -> dict[str, str | None]:
    return _environment(_service("api"))


def container_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What the api container's process gets: a name without a value is taken from `env`, and
    left out when `env` doesn't set it."""
    declared = _environment(_service("api", render(env)))
    resolved = {name: env.get(name) if value is None else value for name, value in declared.items()}
    return {name: value for name, value in resolved.items() if value is not None}


def settings_from(environment: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process with exactly `environment` builds (no .env file, nothing else)."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def _env_example() -> dict[str, str]:
    """.env.example's active `NAME=value` lines, as a .env copied from it holds them."""
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${SET}", "value"),
        ("${UNSET}", ""),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("$SET/$$SET", "value/$SET"),
        ("mongodb://h/?a=${SET}&b=1", "mongodb://h/?a=value&b=1"),
    ],
)
def test_interpolation_follows_the_compose_specification(text: str, expected: str) -> None:
    assert interpolate(text, {"SET": "value", "EMPTY": ""}) == expected


def test_compose_file_has_no_obsolete_version_key() -> None:
    assert "version" not in _compose()


def test_api_environment_holds_only_known_settings() -> None:
    assert set(_api_environment()) - SETTING_NAMES == set()


def test_api_environment_names_every_setting() -> None:
    # A setting added to Settings must be added to docker-compose.yml too, or .env can't set it.
    assert SETTING_NAMES - set(_api_environment()) == set()


def test_api_passes_settings_through_from_env_file() -> None:
    for name, value in _api_environment().items():
        if name in FIXED_IN_COMPOSE:
            continue
        # Either a bare name (its value comes from the shell or .env) or the same name
        # interpolated, with a default or required.
        assert value is None or re.fullmatch(rf"\$\{{{name}(?::?[-?][^}}]*)?\}}", value), name


def test_a_value_set_in_env_reaches_the_container_and_an_unset_one_stays_unset() -> None:
    environment = container_environment(
        {"SECRET_KEY": KEY, "DOCS_ENABLED": "true", "LOG_LEVEL": "DEBUG"}
    )
    assert environment["DOCS_ENABLED"] == "true"
    assert environment["LOG_LEVEL"] == "DEBUG"
    assert "METRICS_ENABLED" not in environment  # the service's default, not an empty string
    assert "CORS_ORIGINS" not in environment


def test_the_rendered_environment_is_a_valid_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(
        container_environment({"SECRET_KEY": KEY, "DOCS_ENABLED": "true"}), monkeypatch
    )
    assert settings.environment == "production"
    assert settings.docs_enabled is True
    assert settings.port == 8000
    assert settings.signing_key() == KEY


def test_a_env_file_copied_from_env_example_works_with_compose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env_example() | {"SECRET_KEY": KEY}
    settings = settings_from(container_environment(env), monkeypatch)
    # The compose file wins where the container needs it (.env.example is for `make run`).
    assert settings.environment == "production"
    assert settings.host == "0.0.0.0"  # noqa: S104 - inside the container
    assert settings.mongodb_url == "mongodb://mongo:27017/?replicaSet=rs0"
    # TRUSTED_PROXIES= (empty) in .env falls back to the proxy's address (`:-`).
    assert settings.trusted_proxies == _service("proxy")["networks"]["default"]["ipv4_address"]


def test_a_managed_cluster_url_in_env_replaces_the_bundled_mongo() -> None:
    url = "mongodb+srv://cluster0.example.net/?retryWrites=true&w=majority"
    assert container_environment({"SECRET_KEY": KEY, "MONGODB_URL": url})["MONGODB_URL"] == url


def test_compose_refuses_to_render_without_a_secret_key() -> None:
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        render({})
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        render({"SECRET_KEY": ""})


def test_no_secret_is_baked_into_the_compose_file() -> None:
    assert {"SECRET_KEY"} == SECRET_NAMES
    for service_name in _compose()["services"]:
        for name, value in _environment(_service(service_name)).items():
            if name in SECRET_NAMES or re.search(r"PASSWORD|SECRET|CREDENTIAL", name):
                # Required from the shell or .env, with no default to fall back on.
                assert value is None or re.fullmatch(rf"\$\{{{name}:?\?[^}}]*\}}", value), name
    # No credentials in a default connection string, no long random-looking literal anywhere.
    rendered = json.dumps(render({"SECRET_KEY": "${SECRET_KEY}"}))
    assert not re.search(r"mongodb(?:\+srv)?://[^/\s\"]*@", rendered)
    literals = re.sub(r"\$\{[^}]*\}", "", (ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert not re.search(r"[A-Za-z0-9_+/=-]{32,}", literals)


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword in ("ENV", "ARG"):
        for arguments in _arguments(keyword):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|MONGODB_URL", arguments), arguments
    # .dockerignore is an allow-list: .env never enters the build context.
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    assert not any(pattern.startswith("!") and ".env" in pattern for pattern in patterns)


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
    query = parse_qs(urlsplit(container_environment({"SECRET_KEY": KEY})["MONGODB_URL"]).query)
    assert query["replicaSet"] == ["rs0"]


def test_api_runs_in_production() -> None:
    assert _api_environment()["ENVIRONMENT"] == "production"


def test_api_requires_secret_key_from_environment() -> None:
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", _api_environment()["SECRET_KEY"] or "")


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
    configured = container_environment({"SECRET_KEY": KEY}).get("SHUTDOWN_GRACE_SECONDS")
    shutdown_grace = (
        int(configured) if configured else Settings.model_fields["shutdown_grace_seconds"].default
    )
    assert int(match.group(1)) > shutdown_grace


def test_compose_runs_mongo_the_api_and_a_proxy() -> None:
    assert set(_compose()["services"]) == {"mongo", "api", "proxy"}


def test_every_service_restarts_unless_stopped() -> None:
    for name in _compose()["services"]:
        assert _service(name)["restart"] == "unless-stopped", name


@pytest.mark.parametrize("name", ["api", "proxy"])
def test_service_runs_on_a_read_only_root_with_a_tmpfs_tmp(name: str) -> None:
    service = _service(name)
    assert service["read_only"] is True
    assert [str(mount).split(":")[0] for mount in service["tmpfs"]] == [TMP]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]


@pytest.mark.parametrize("name", ["api", "proxy"])
def test_service_runs_as_a_numeric_non_root_user(name: str) -> None:
    uid, _, gid = str(_service(name)["user"]).partition(":")
    assert uid.isdigit(), uid
    assert gid.isdigit(), gid
    assert int(uid) != 0
    assert int(gid) != 0


def test_api_user_is_the_images_user() -> None:
    assert str(_service("api")["user"]) == _arguments("USER")[-1]


def test_api_can_be_scaled() -> None:
    # `--scale api=3` fails on a fixed container name or a fixed host port.
    api = _service("api")
    assert "container_name" not in api
    assert "ports" not in api
    assert api["expose"] == ["8000"]


def test_every_published_port_is_on_loopback_only() -> None:
    for name in _compose()["services"]:
        for port in _service(name).get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_proxy_publishes_the_documented_address_and_waits_for_a_ready_api() -> None:
    proxy = _service("proxy")
    assert proxy["ports"] == ["127.0.0.1:8000:8080"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]


def _nginx_directives() -> list[list[str]]:
    """deploy/nginx.conf's simple directives as word lists, comments dropped."""
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text(encoding="utf-8"))
    return [statement.split() for statement in re.split(r"[;{}]", text) if statement.strip()]


def _nginx(name: str) -> list[list[str]]:
    return [words[1:] for words in _nginx_directives() if words[0] == name]


def test_proxy_spreads_requests_over_every_api_replica() -> None:
    # Re-resolving the service name finds replicas added by `--scale` without a reload.
    (server,) = [words for words in _nginx("server") if words]  # `server {` blocks have none
    assert server[:2] == ["api:8000", "resolve"]
    assert _nginx("resolver")[0][0] == "127.0.0.11"
    assert _nginx("proxy_pass") == [["http://api"]]
    assert _environment(_service("api", render({"SECRET_KEY": KEY})))["PORT"] == "8000"


def test_proxy_listens_on_the_published_port_and_writes_only_under_tmp() -> None:
    assert ["8080"] in _nginx("listen")
    assert _nginx("pid") == [[f"{TMP}/nginx.pid"]]
    temp_paths = [words for name, *words in _nginx_directives() if name.endswith("_temp_path")]
    assert len(temp_paths) == 5
    assert all(words[0].startswith(f"{TMP}/") for words in temp_paths)


def test_proxy_is_the_only_trusted_proxy_and_sets_the_client_address() -> None:
    address = _service("proxy")["networks"]["default"]["ipv4_address"]
    trusted = container_environment({"SECRET_KEY": KEY})["TRUSTED_PROXIES"]
    assert trusted == address
    (pool,) = _compose()["networks"]["default"]["ipam"]["config"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])
    # Docker hands the other containers addresses from ip_range, never the proxy's.
    assert ipaddress.ip_address(address) not in ipaddress.ip_network(pool["ip_range"])
    # Replaced, not appended to what the client sent: the client can't choose its address.
    assert ["X-Forwarded-For", "$remote_addr"] in _nginx("proxy_set_header")


def test_proxy_lets_the_service_apply_its_own_limits() -> None:
    largest_body = max(
        meta.le
        for name in ("max_body_bytes", "import_max_bytes")
        for meta in Settings.model_fields[name].metadata
        if hasattr(meta, "le")
    )
    assert _nginx("client_max_body_size") == [[f"{largest_body // (1024 * 1024)}m"]]
    assert _nginx("large_client_header_buffers") == [["4", "16k"]]
    assert _nginx("proxy_request_buffering") == [["off"]]


def test_proxy_healthcheck_probes_its_own_liveness_port() -> None:
    test = " ".join(str(part) for part in _service("proxy")["healthcheck"]["test"])
    assert "http://127.0.0.1:8081/healthz" in test
    assert ["127.0.0.1:8081"] in _nginx("listen")


def _docker_compose() -> list[str] | None:
    """The `docker compose` command, if docker and its compose plugin are installed."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, check=False, timeout=30
    )
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_agrees_with_this_rendering(tmp_path: Path) -> None:
    env = {"SECRET_KEY": KEY, "DOCS_ENABLED": "true"}
    ours = render(env)
    command = _docker_compose()
    if command is None:
        # No docker here: this file's own rendering is what the other tests check.
        assert set(ours["services"]) == {"mongo", "api", "proxy"}
        return
    # An empty env file, so that a developer's ./.env can't change what is compared.
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")
    options = ["-f", str(ROOT / "docker-compose.yml"), "--env-file", str(empty_env_file)]
    result = subprocess.run(
        [*command, *options, "config", "--format", "json"],
        capture_output=True,
        check=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
        cwd=ROOT,
    )
    theirs = json.loads(result.stdout)
    assert set(theirs["services"]) == set(ours["services"])
    # compose keeps a name without a value as null: unset in the container.
    environment = theirs["services"]["api"]["environment"]
    assert {k: v for k, v in environment.items() if v is not None} == container_environment(env)
    for name in ("api", "proxy"):
        assert theirs["services"][name]["read_only"] is True
        assert theirs["services"][name]["user"] == ours["services"][name]["user"]
