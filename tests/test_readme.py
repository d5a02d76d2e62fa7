"""The README's shell examples run top to bottom, as written, against a freshly started server.

Every ```bash/```sh/```shell block of README.md that calls the API is taken in order (blocks
that run `make` or `docker` set the service up rather than call it, and are left out). The
documented address (127.0.0.1:8000 or localhost:8000) is rewritten to a live server's; commands
whose comment starts with `second terminal` (they follow the live feed until Ctrl-C) are
dropped; the rest runs in one `bash -euo pipefail`, as a newcomer would paste it.

The comment after a command says what it prints, and what can be checked of it is: a leading
HTTP status (the command must print it, with `-i` or `-w '%{http_code}'`), `Header: value`
pairs (with `-i`), and a JSON value, where `...` matches anything, `"abc..."` any string that
starts with `abc`, a trailing `...` member or element allows more, and other members are
compared exactly. The comment may go on over the comment lines right below the command.
"""

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.config import Settings
from tests.live_server import live_server

README = Path(__file__).resolve().parent.parent / "README.md"
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SETUP_COMMAND = re.compile(r"^\s*(?:\w+=\S*\s+)*(?:make|docker)\b", re.MULTILINE)
DOCUMENTED_ADDRESS = re.compile(r"(?:https?://)?(?:127\.0\.0\.1|localhost):8000\b")
SECOND_TERMINAL = "second terminal"
STEP_MARK = "@@readme-step@@"
ANY = "\u2026any\u2026"  # what a bare `...` in a comment's JSON becomes
STATUS = re.compile(r"^(\d{3})\b")
HEADER = re.compile(r"\b([A-Z][A-Za-z]+(?:-[A-Z][A-Za-z]+)*): (\"[^\"]*\"|[\w./-]+)")
SCRIPT_TIMEOUT = 180  # seconds; a dozen Argon2 logins and signups on a busy machine


@dataclass
class Step:
    """One command of a README block and what its comment promises."""

    code: str
    line: int
    promise: str = ""
    checks: list[str] = field(default_factory=list)

    @property
    def in_second_terminal(self) -> bool:
        return self.promise.startswith(SECOND_TERMINAL)


def split_comment(text: str) -> tuple[str, str, bool]:
    """(code, trailing comment, whether a quote is still open at the end) of shell text."""
    quote: str | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if quote == "'":
            if char == "'":
                quote = None
        elif char == "\\":
            i += 1
        elif quote == '"':
            if char == '"':
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t\n"):
            return text[:i].rstrip(), text[i + 1 :].strip(), False
        i += 1
    return text.rstrip(), "", quote is not None


def steps_of(block: str, first_line: int) -> list[Step]:
    """The commands of a block (continuation lines and open quotes joined) with their comments."""
    lines = block.splitlines()
    steps: list[Step] = []
    attached: Step | None = None  # the command that comment lines right below it belong to
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped:
            attached = None
        elif stripped.startswith("#"):
            if attached is not None:
                attached.promise = f"{attached.promise} {stripped[1:].strip()}".strip()
        else:
            text, start = lines[i], i
            code, comment, open_quote = split_comment(text)
            while open_quote or (not comment and code.endswith("\\")):
                i += 1
                assert i < len(lines), f"README line {first_line + start}: unfinished command"
                text += "\n" + lines[i]
                code, comment, open_quote = split_comment(text)
            attached = Step(code, first_line + start, comment)
            steps.append(attached)
        i += 1
    return steps


def readme_steps(readme: str, base_url: str) -> list[Step]:
    """Every API example command of the README, in order, aimed at `base_url`."""
    steps: list[Step] = []
    for match in SHELL_BLOCK.finditer(readme):
        block = match.group(1)
        if SETUP_COMMAND.search(block):
            continue
        first_line = readme.count("\n", 0, match.start(1)) + 1
        steps += steps_of(DOCUMENTED_ADDRESS.sub(base_url, block), first_line)
    return steps


def parse_output(text: str) -> tuple[int | None, dict[str, str], str]:
    """(status, headers, body) of what a command printed: `-i` headers or a `-w` status line."""
    text = text.replace("\r\n", "\n").strip("\n")
    if text.startswith("HTTP/"):
        head, _, body = text.partition("\n\n")
        status_line, *header_lines = head.split("\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers, body
    *rest, last = text.split("\n")
    if re.fullmatch(r"\d{3}", last.strip()):
        return int(last), {}, "\n".join(rest)
    return None, {}, text


def json_pattern(text: str) -> Any:
    """The JSON value at the start of `text`, with bare `...` made into wildcards."""
    converted: list[str] = []
    in_string = False
    i = 0
    while i < len(text):
        char = text[i]
        if in_string:
            converted.append(char)
            if char == "\\":
                converted.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif text.startswith("...", i):
            converted.append(json.dumps(ANY))
            i += 2
        else:
            in_string = char == '"'
            converted.append(char)
        i += 1
    # `..., ` as the last member of an object: more members may follow.
    source = re.sub(r",\s*" + re.escape(json.dumps(ANY)) + r"\s*(?=\})", "", "".join(converted))
    value, _ = json.JSONDecoder().raw_decode(source)
    return value


def matches(pattern: Any, actual: Any) -> bool:
    if pattern == ANY:
        return True
    if isinstance(pattern, str) and pattern.endswith("..."):
        return isinstance(actual, str) and actual.startswith(pattern[:-3])
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            return False
        more = bool(pattern) and pattern[-1] == ANY
        items = pattern[:-1] if more else pattern
        if len(actual) < len(items) or (not more and len(actual) != len(items)):
            return False
        return all(matches(p, a) for p, a in zip(items, actual, strict=False))
    return type(pattern) is type(actual) and bool(pattern == actual)


def broken_promises(promise: str, output: str) -> tuple[list[str], list[str]]:
    """(what the output contradicts, what was checked) of a comment against a command's output."""
    status, headers, body = parse_output(output)
    problems: list[str] = []
    checked: list[str] = []
    if found := STATUS.match(promise):
        checked.append(f"status {found[1]}")
        if status is None:
            problems.append(f"promises {found[1]} but doesn't print its status (-i or -w)")
        elif status != int(found[1]):
            problems.append(f"promises {found[1]}, got {status}")
    starts = [i for i in (promise.find("{"), promise.find("[")) if i >= 0]
    json_start = 0 if promise.startswith('"') else min(starts, default=None)
    prose = promise if json_start is None else promise[:json_start]
    for name, value in HEADER.findall(prose):
        checked.append(f"{name}: {value}")
        if headers.get(name.lower()) != value:
            problems.append(f"promises {name}: {value}, got {headers.get(name.lower())!r}")
    if json_start is not None:
        checked.append("JSON")
        try:
            pattern = json_pattern(promise[json_start:])
        except (json.JSONDecodeError, IndexError) as error:
            return [*problems, f"the comment's JSON can't be read ({error})"], checked
        try:
            actual = json.loads(body)
        except json.JSONDecodeError:
            return [*problems, f"promises JSON, printed {body!r}"], checked
        if not matches(pattern, actual):
            problems.append(f"printed {json.dumps(actual)}")
    return problems, checked


def script_of(steps: list[Step]) -> str:
    lines = []
    for number, step in enumerate(steps):
        lines += [f"printf '\\n{STEP_MARK}{number}\\n'", step.code]
    lines.append(f"printf '\\n{STEP_MARK}end\\n'")
    return "\n".join(lines) + "\n"


async def run_bash(script: Path, cwd: Path) -> tuple[int, str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        str(script),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def test_the_readme_examples_call_where_make_run_serves() -> None:
    host, port = Settings.model_fields["host"].default, Settings.model_fields["port"].default
    assert f"API=http://{host}:{port}/api\n" in README.read_text(encoding="utf-8")


def test_every_readme_request_fails_loudly_or_states_its_status() -> None:
    """A 4xx is never silently accepted: curl fails on it, or the comment names the status."""
    steps = [s for s in readme_steps(README.read_text(encoding="utf-8"), "") if "curl " in s.code]
    assert len(steps) > 20
    quiet = [
        f"README line {step.line}: {step.code}"
        for step in steps
        if not step.in_second_terminal
        and "--fail-with-body" not in step.code
        and not STATUS.match(step.promise)
    ]
    assert not quiet, "\n".join(quiet)


@pytest.mark.parametrize(
    ("promise", "output"),
    [
        ("204", "401"),
        ('201 {"id": "..."}', '{"id": "1"}'),
        ('200, ETag: "3"', 'HTTP/1.1 200 OK\r\netag: "2"\r\n\r\n{}'),
        ('{"version": 2, ...}', '{"version": 3, "text": "x"}'),
        ('{"next_cursor": "..."}', '{"next_cursor": null}'),
        ('[{"text": "a", ...}]', '[{"text": "a"}, {"text": "b"}]'),
        ('{"completed": true}', '{"completed": 1}'),
        ('"2"', '"3"'),
        ('{"a": 1', '{"a": 1}'),
    ],
)
def test_a_comment_the_output_contradicts_is_reported(promise: str, output: str) -> None:
    problems, _ = broken_promises(promise, output)
    assert problems


def test_a_comment_the_output_keeps_passes() -> None:
    output = 'HTTP/1.1 200 OK\r\netag: "3"\r\n\r\n{"text": "buy oat", "tags": ["a", "b"], "x": 1}'
    problems, checked = broken_promises(
        '200, ETag: "3" {"text": "buy...", "tags": ["a", ...], "x": ...}', output
    )
    assert (problems, checked) == ([], ["status 200", 'ETag: "3"', "JSON"])


@pytest.mark.wire_only
async def test_the_readme_examples_run_in_order_and_print_what_they_say(
    wire_url: str, tmp_path: Path
) -> None:
    readme = README.read_text(encoding="utf-8")
    async with live_server(wire_url, tmp_path, ENVIRONMENT="development") as server:
        steps = [s for s in readme_steps(readme, server.url) if not s.in_second_terminal]
        script = tmp_path / "readme.sh"
        script.write_text(script_of(steps), encoding="utf-8")
        code, stdout, stderr = await run_bash(script, tmp_path)

    parts = re.split(rf"\n{re.escape(STEP_MARK)}(\w+)\n", "\n" + stdout)
    outputs = dict(zip(parts[1::2], parts[2::2], strict=True))
    ran = [key for key in outputs if key != "end"]
    if code != 0 or "end" not in outputs:
        step = steps[int(ran[-1])] if ran else None
        where = f"README line {step.line}: {step.code}" if step else "before the first step"
        raise AssertionError(
            f"bash exited {code} at {where}\n"
            f"output: {outputs.get(ran[-1], '') if ran else stdout}\nstderr: {stderr}"
        )
    problems = []
    checked = 0
    for number, step in enumerate(steps):
        broken, checks = broken_promises(step.promise, outputs[str(number)])
        checked += len(checks)
        problems += [f"README line {step.line}: # {step.promise}\n  {p}" for p in broken]
    assert not problems, "\n".join(problems)
    assert checked > 30
