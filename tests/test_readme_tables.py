"""The README's endpoint and settings tables list exactly what the app serves and reads.

The endpoint table (section "Endpoints") must name every route of the app built by
`create_app`, as `METHOD /path` with the app's own path template, and nothing else; the
settings table (section "Settings") every field of `Settings` by its variable name, with its
default where it gives one in backticks.
"""

import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from service.app import create_app
from service.config import Settings
from service.core.routes_table import iter_routes

README = Path(__file__).resolve().parent.parent / "README.md"
ENDPOINT = re.compile(r"^\|\s*`([A-Z]+) (/[^`\s]*)`\s*\|", re.MULTILINE)
TABLE_ROW = re.compile(r"^\|(.*)\|$", re.MULTILINE)
CODE = re.compile(r"`([^`]+)`")
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    readme = README.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert found, f"README has no '## {title}' section"
    return found.group(1)


def documented_routes() -> set[tuple[str, str]]:
    rows = ENDPOINT.findall(section("Endpoints"))
    assert len(rows) == len(set(rows)), "a route is listed twice"
    return set(rows)


def served_routes() -> set[tuple[str, str]]:
    """Every (method, path) of the app with /metrics on and the API docs off."""
    settings = Settings(
        _env_file=None,
        secret_key="k" * 32,  # type: ignore[arg-type]  # str → SecretStr
        metrics_enabled=True,
        docs_enabled=False,
    )
    routes = set()
    for route, path in iter_routes(create_app(settings)):
        # Starlette adds HEAD to plain GET routes (/metrics); it is not an endpoint of its own.
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}:
            routes.add((method, path))
    return routes


def settings_rows() -> list[tuple[list[str], list[str]]]:
    """(variable names, backticked defaults) of each row of the settings table."""
    rows = []
    for row in TABLE_ROW.findall(section("Settings")):
        cells = [cell.strip() for cell in row.split("|")]
        names = CODE.findall(cells[0])
        if names and all(SETTING_NAME.fullmatch(name) for name in names):
            rows.append((names, CODE.findall(cells[1])))
    return rows


def test_the_endpoint_table_lists_every_route_and_only_those() -> None:
    documented, served = documented_routes(), served_routes()
    assert not served - documented, f"served but not in the README: {sorted(served - documented)}"
    assert not documented - served, f"in the README but not served: {sorted(documented - served)}"


def test_the_settings_table_lists_every_setting_and_only_those() -> None:
    listed = [name for names, _ in settings_rows() for name in names]
    assert len(listed) == len(set(listed)), "a setting is listed twice"
    fields = {name.upper() for name in Settings.model_fields}
    assert not fields - set(listed), f"not in the README: {sorted(fields - set(listed))}"
    assert not set(listed) - fields, f"not a setting: {sorted(set(listed) - fields)}"


@pytest.mark.parametrize(
    ("names", "defaults"),
    [pytest.param(names, defaults, id=",".join(names)) for names, defaults in settings_rows()],
)
def test_a_default_in_the_settings_table_is_the_settings_default(
    names: list[str], defaults: list[str]
) -> None:
    if not defaults:
        return  # "unset", "empty", ...: said in words
    if len(defaults) == 1:
        defaults = defaults * len(names)
    assert len(defaults) == len(names)
    for name, default in zip(names, defaults, strict=True):
        field = Settings.model_fields[name.lower()]
        assert field.annotation is not None
        assert TypeAdapter(field.annotation).validate_python(default) == field.default, name


def mapped_files() -> set[str]:
    """The service modules the README's map of the code names (`a.py, b.py` rows too)."""
    block = section("Map of the code").split("```")[1]
    files: set[str] = set()
    package = ""
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        if indent not in (2, 4) or line.strip() == "":
            continue  # the root, other trees, and continued descriptions
        names = line.strip().split("  ")[0]
        if names.endswith("/"):
            package = names if indent == 2 else package
            continue
        prefix = package if indent == 4 else ""
        files.update(prefix + name.strip() for name in names.split(","))
    return files


def test_the_map_of_the_code_names_every_module_and_only_those() -> None:
    service = README.parent / "service"
    modules = {
        str(path.relative_to(service))
        for path in service.rglob("*.py")
        if path.name != "__init__.py"
    }
    mapped = mapped_files()
    assert modules - mapped == set(), "modules missing from the README's map"
    assert mapped - modules == set(), "the README's map names modules that don't exist"
