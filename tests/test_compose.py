"""docker-compose.yml and the Dockerfile, checked without Docker (none on these machines).

Every service command must be a command that really exists with options that really parse, and
every fishopt variable the file sets must be one the code reads (``config.ENV_*``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from fishopt import config, dashboard
from fishopt.cli import app

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
CODE_ENV = {v for k, v in vars(config).items() if k.startswith("ENV_")}
LIBPQ_ENV = {"PGPASSWORD"}  # read by libpq (psycopg), masked by config.secrets


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} with nothing set, and $$ escapes."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", value)
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", "required-value", value)
    assert "${" not in value, f"unhandled interpolation in {value!r}"
    return value.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _fishopt_command(args: list[str]) -> Any:
    """Parse ``fishopt ARGS`` exactly as the CLI would (unknown options raise)."""
    command: Any = typer.main.get_command(app)  # Typer's own (vendored) click objects
    rest = list(args)
    while hasattr(command, "commands"):
        name, rest = rest[0], rest[1:]
        assert name in command.commands, f"fishopt has no command {name!r}"
        command = command.commands[name]
    assert CliRunner().invoke(app, [*args[: len(args) - len(rest)], "--help"]).exit_code == 0
    return command.make_context("fishopt", rest)


def _commands(service: dict) -> list[list[str]]:
    """A service's command(s): a list, or `sh -c "a && exec b"` split into its parts."""
    cmd = [interpolate(str(c)) for c in service["command"]]
    if cmd[:2] == ["sh", "-c"]:
        return [shlex.split(part.strip().removeprefix("exec ")) for part in cmd[2].split("&&")]
    return [cmd]


def test_services_and_topology(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "worker", "dashboard"} <= set(services)
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:15")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(v.split(":")[0] in compose["volumes"] for v in pg["volumes"])  # named volume
    # PostgreSQL is published on 127.0.0.1 unless the user opts into a LAN address.
    assert [interpolate(p) for p in pg["ports"]] == ["127.0.0.1:5432:5432"]
    worker = services["worker"]
    # Scalable with --scale worker=N: no fixed name and no published host port.
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    # PgBouncer pools transactions in front of postgres, with postgres' password.
    bouncer = services["pgbouncer"]
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = bouncer["environment"]
    assert env["POOL_MODE"] == "transaction" and env["DB_HOST"] == "postgres"
    assert env["DB_PASSWORD"] == pg["environment"]["POSTGRES_PASSWORD"]
    assert int(env["MAX_DB_CONNECTIONS"]) < int(pg["command"][-1].split("=")[1])
    assert [interpolate(p) for p in bouncer["ports"]] == [f"127.0.0.1:{env['LISTEN_PORT']}:6432"]
    dashboard = services["dashboard"]
    assert [interpolate(p) for p in dashboard["ports"]] == ["127.0.0.1:8080:8080"]
    # Workers and dashboard share the artifact store and the data cache.
    for name in ("worker", "dashboard"):
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts["/artifacts"] == "artifacts" and mounts["/cache"] == "cache"
        env = services[name]["environment"]
        assert env[config.ENV_ARTIFACTS] == "/artifacts" and env[config.ENV_CACHE] == "/cache"
        assert env[config.ENV_STORAGE].startswith("postgresql+psycopg://")
        assert "@pgbouncer:6432/" in env[config.ENV_STORAGE]
        # The password comes from PGPASSWORD, never inside the URL.
        assert config.secrets(env[config.ENV_STORAGE], env={}) == ()
    assert worker["build"] == "." and (REPO / "Dockerfile").is_file()


def test_every_fishopt_command_parses(compose: dict) -> None:
    seen = 0
    for name, service in compose["services"].items():
        if "command" not in service or name == "postgres":
            continue
        for args in _commands(service):
            if args[0] == "fishopt":
                _fishopt_command(args[1:])
                seen += 1
    assert seen >= 3  # prepare, worker, dashboard
    worker = _fishopt_command(_commands(compose["services"]["worker"])[0][1:])
    assert worker.params["threads"] == 1 and worker.params["name_or_spec"] == "optimizers"


def test_dashboard_is_fishopts_behind_a_login(compose: dict) -> None:
    service = compose["services"]["dashboard"]
    (dash,) = _commands(service)
    params = _fishopt_command(dash[1:]).params
    assert params["host"] == "0.0.0.0" and params["allow_remote"]  # published on lo only
    assert params["port"] == 8080 and params["storage"] is None  # the workers' FISHOPT_STORAGE
    # The password comes from the host's environment and is required, like PostgreSQL's.
    raw = service["environment"][config.ENV_DASHBOARD_PASSWORD]
    assert raw.startswith(f"${{{config.ENV_DASHBOARD_PASSWORD}:?")
    env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
    login = config.resolve_dashboard_login(env=env)
    assert login is not None and dashboard.check_host("0.0.0.0", True, login)
    # Everything else is the workers' environment, and only the dashboard gets its password.
    worker_env = compose["services"]["worker"]["environment"]
    assert {k: v for k, v in service["environment"].items() if k in worker_env} == worker_env
    assert config.ENV_DASHBOARD_PASSWORD not in worker_env


def test_environment_variables_are_the_ones_the_code_reads(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name in ("postgres", "pgbouncer"):  # their images' own variables
            continue
        names = set(service.get("environment", {}))
        assert names <= CODE_ENV | LIBPQ_ENV, names - CODE_ENV - LIBPQ_ENV
        assert {config.ENV_STORAGE, config.ENV_HEARTBEAT_INTERVAL} <= names
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        config.resolve_heartbeat(env=env)  # the values parse and are consistent
        assert env["PGPASSWORD"] in config.secrets(env[config.ENV_STORAGE], env=env)


def test_dockerfile_installs_a_cpu_torch_and_fishopt() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    torch_line = next(line for line in text.splitlines() if "torch==" in line)
    assert "download.pytorch.org/whl/cpu" in torch_line
    pinned = re.search(r"torch==(\S+)", (REPO / "Makefile").read_text())
    assert pinned and f"torch=={pinned.group(1)}" in torch_line  # the same pin as `make setup`
    assert "COPY studies" in text and "pip install ." in text
    assert "USER " in text  # not root
