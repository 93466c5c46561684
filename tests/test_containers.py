"""The Dockerfile and compose.yaml agree with the CLI, the settings and each other.

No Docker engine is needed: both files are parsed, their commands are parsed by
`queue-service`'s own parser, and their health checks are run against live servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from queue_service.cli.main import build_parser
from queue_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ROLES = {"api": "api", "worker": "worker", "mock-upstream": "mock-upstream"}
"""compose service -> the `queue-service` subcommand it runs."""


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def instruction(name: str) -> list[str]:
    return [rest for keyword, rest in dockerfile() if keyword == name]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    """A `queue-service ...` command line, parsed by the real CLI (fails on unknown flags)."""
    assert argv[0] == "queue-service"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"queue-service rejects {argv}") from exc


def image_command() -> list[str]:
    (cmd,) = instruction("CMD")
    command: list[str] = json.loads(cmd)  # exec form: signals reach the process
    return command


def command_of(name: str) -> list[str]:
    command: list[str] = service(name).get("command", image_command())
    return command


def defaults(subcommand: str) -> argparse.Namespace:
    return build_parser().parse_args([subcommand])


def health_url(test: list[str]) -> str:
    """The URL a `python -c` health check opens."""
    (url,) = re.findall(r"urlopen\('([^']+)'", test[-1])
    return str(url)


def test_the_image_is_slim_python_311_running_as_a_non_root_user() -> None:
    assert instruction("FROM") == ["python:3.11-slim"]
    users = instruction("USER")
    assert users, "the image must switch to a user of its own"
    assert users[-1] not in ("root", "0", "0:0")
    (run,) = instruction("RUN")
    assert "pip install ." in run
    assert re.search(rf"useradd [^&]*\b{users[-1]}$", run.split("&&")[-1].strip())
    keywords = [keyword for keyword, _ in dockerfile()]
    assert keywords.index("USER") > keywords.index("RUN")


def test_the_image_copies_what_pip_install_needs_and_dockerignore_keeps_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {
        pattern.rstrip("*")
        for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {source for copy in instruction("COPY") for source in copy.split()[:-1]}
    assert needed <= copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not (needed & ignored)
    assert {".venv", ".git", "tests"} <= ignored
    assert project["project"]["scripts"]["queue-service"] == "queue_service.cli.main:main"


def test_the_default_command_is_the_api_on_its_default_port_on_every_interface() -> None:
    args = parse(image_command())
    assert (args.command, args.host, args.port) == ("api", "0.0.0.0", defaults("api").port)
    assert instruction("EXPOSE") == [str(args.port)]


async def test_the_image_health_check_passes_against_the_api(api: httpx.AsyncClient) -> None:
    (healthcheck,) = instruction("HEALTHCHECK")
    options, _, cmd = healthcheck.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    test = json.loads(cmd)
    url = health_url(test)
    assert urlsplit(url).port == parse(image_command()).port
    live = url.replace(f":{urlsplit(url).port}/", f":{api.base_url.port}/")
    assert test[0] == "python"
    assert await run_python(test[-1].replace(url, live)) == 0
    assert await run_python(test[-1].replace(url, f"{api.base_url}nowhere")) != 0  # it can fail


async def run_python(code: str) -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    return await process.wait()


def test_compose_has_redis_the_api_workers_and_the_mock() -> None:
    assert set(compose()["services"]) == {"redis", *ROLES}


def test_redis_persists_with_append_only_file_on_a_named_volume() -> None:
    redis = service("redis")
    assert redis["image"] == "redis:7"
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    (volume,) = redis["volumes"]
    name, target = volume.split(":")
    assert target == "/data"
    assert name in compose()["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


@pytest.mark.parametrize(("name", "subcommand"), ROLES.items())
def test_each_service_runs_the_image_with_a_command_the_cli_accepts(
    name: str, subcommand: str
) -> None:
    assert service(name)["build"] == "."
    assert parse(command_of(name)).command == subcommand


def test_api_port_mapping_matches_the_port_it_listens_on() -> None:
    port = parse(command_of("api")).port
    assert service("api")["ports"] == [f"{port}:{port}"]


def test_the_default_upstream_is_the_mock_service_on_the_port_it_listens_on() -> None:
    mock_args = parse(command_of("mock-upstream"))
    assert (mock_args.host, mock_args.port) == ("0.0.0.0", defaults("mock-upstream").port)
    for name in ("api", "worker"):
        value = service(name)["environment"]["QUEUE_UPSTREAM_URL"]
        match = re.fullmatch(r"\$\{QUEUE_UPSTREAM_URL:-(.+)\}", value)
        assert match, f"{name}: QUEUE_UPSTREAM_URL must be overridable, got {value!r}"
        upstream = urlsplit(match.group(1))
        assert (upstream.hostname, upstream.port) == ("mock-upstream", mock_args.port)


async def test_the_mock_health_check_passes_against_the_mock(
    mock_upstream: tuple[str, Any],
) -> None:
    test = service("mock-upstream")["healthcheck"]["test"]
    url = health_url(test)
    assert urlsplit(url).port == parse(command_of("mock-upstream")).port
    live = url.replace(f"http://{urlsplit(url).netloc}", mock_upstream[0])
    assert test[:2] == ["CMD", "python"]
    assert await run_python(test[-1].replace(url, live)) == 0


def test_every_queue_variable_is_a_setting_and_redis_is_the_redis_service() -> None:
    for name in ("api", "worker", "mock-upstream"):
        environment = service(name).get("environment", {})
        assert isinstance(environment, dict)
        for variable in environment:
            assert variable.startswith("QUEUE_")
            assert variable.removeprefix("QUEUE_").lower() in Settings.model_fields, variable
    for name in ("api", "worker"):
        redis_url = urlsplit(service(name)["environment"]["QUEUE_REDIS_URL"])
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy"


def test_workers_are_replicated_and_the_mock_only_runs_in_its_profile() -> None:
    assert service("worker")["deploy"]["replicas"] == 2
    check = service("worker")["healthcheck"]["test"]
    assert check[1:] == ["queue-service", "worker", "--check"]
    assert build_parser().parse_args(check[2:]).check
    assert service("mock-upstream")["profiles"] == ["mock"]
    assert "profiles" not in service("api")
    assert "profiles" not in service("worker")
