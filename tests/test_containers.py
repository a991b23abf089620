"""Containers: the Dockerfile, docker-compose.yml, .env.example and the server's roles.

Docker does not run on this machine, so the image and compose are checked as files, for what
would go wrong silently: a variable the settings do not read (ignored: the worker would run on
defaults), a port published on every interface, a password with a default that works, an image
installed differently from `make`, a worker serving another pool than prefect.yaml's. The roles
compose creates (sql/roles/server_init.sql) are checked for real, on a PostgreSQL of their own,
run the way the postgres image's entrypoint runs its init scripts (psql -f, as the superuser).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pydantic import AliasChoices

from flows.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SERVER_INIT = ROOT / "sql" / "roles" / "server_init.sql"
ANALYST = ROOT / "sql" / "roles" / "analyst.sql"

# ${VAR}, ${VAR:-default}, ${VAR:?message} (and the forms without the colon); `$${...}` is a
# literal dollar for the container's shell, not compose's interpolation.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """These tests run no flow: they need none of conftest's Prefect test server (which takes
    longer to start than all of them take to run)."""
    yield


# --- reading the files ----------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, as Docker reads them line by line: comment lines
    dropped (inside a continuation too), `\\` continuations joined, whitespace collapsed."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, arguments = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        current = ""
    assert not current, "Dockerfile: a `\\` continuation runs past the end of the file"
    return instructions


def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def dockerfile_env() -> dict[str, str]:
    """Every ENV the Dockerfile sets (the `KEY=value` form only: the legacy `ENV KEY value` is
    ambiguous with several keys, and refused here)."""
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                key, sep, value = pair.partition("=")
                assert sep, f"Dockerfile: write ENV as KEY=value, not {arguments!r}"
                env[key] = value
    return env


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def environment(name: str) -> dict[str, str]:
    """A service's environment, whichever of compose's two forms it is written in."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML document, keys and values (compose interpolates both; comments
    it does not read)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def interpolations(document: Any) -> list[tuple[str, str, str]]:
    """(variable, operator, default or message) for every `${...}` compose replaces."""
    return [
        (m.group(1), m.group(2) or "", m.group(3) or "")
        for text in strings(document)
        for m in INTERPOLATION.finditer(text)
    ]


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def settings_variables() -> set[str]:
    """The environment variables bankdw's settings read: each field's name (pydantic-settings,
    case-insensitive, after the prefix), or its aliases where it has them."""
    prefix = Settings.model_config.get("env_prefix") or ""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def is_prefect_setting(name: str) -> bool:
    """A setting Prefect 3 reads (its settings module answers every valid name, aliases too)."""
    import prefect.settings

    return name.startswith("PREFECT_") and hasattr(prefect.settings, name)


def make_recipe(target: str) -> list[str]:
    """The recipe lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (its patterns as Docker reads
    them: relative to the context, `**/` at any depth, a folder taking what is inside it; the
    `!` exceptions are not used here)."""
    assert not any(p.startswith("!") for p in patterns), "teach dockerignored() about `!`"
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.strip("/")
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch(prefix.split("/")[-1], bare)
            ):
                return True
    return False


# --- the image ------------------------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_from_python_3_11_slim() -> None:
    instructions = dockerfile()
    known = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "CMD", "ENTRYPOINT", "ARG", "LABEL"}
    assert {keyword for keyword, _ in instructions} <= known
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]
    assert instructions[0][0] in {"FROM", "ARG"}
    users = [
        (i, arguments) for i, (keyword, arguments) in enumerate(instructions) if keyword == "USER"
    ]
    assert users, "the image must not run as root"
    last_user_at, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    # The user exists in the image: created by a RUN before it takes over.
    assert any(
        "useradd" in arguments and re.search(rf"\b{re.escape(user)}\b", arguments)
        for keyword, arguments in instructions[:last_user_at]
        if keyword == "RUN"
    )
    # Every RUN after the last USER runs as that user; the install must come before it (root).
    install_at = next(i for i, (k, a) in enumerate(instructions) if "scripts/install" in a)
    assert install_at < last_user_at


def test_image_installs_the_project_with_the_command_make_uses() -> None:
    instructions = dockerfile()
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    installs = [run for run in runs if "scripts/install" in run]
    assert len(installs) == 1, installs
    # No other way into the image: nothing pip-installs beside the shared script.
    assert not [run for run in runs if re.search(r"\bpip3?\b", run)], runs

    make_installs = [
        line
        for target in ("$(VENV)/.installed", "$(VENV)/.installed-dev")
        for line in make_recipe(target)
        if "install" in line
    ]
    assert make_installs == ["scripts/install $(BIN)/python", "scripts/install $(BIN)/python dev"]
    makefile = (ROOT / "Makefile").read_text()
    # The Makefile's only other pip command upgrades pip itself in a new venv.
    assert [
        line.strip() for line in makefile.splitlines() if re.search(r"pip3?\b.*install", line)
    ] == ["$(BIN)/pip install --quiet --upgrade pip"]

    image_argv = shlex.split(installs[0])
    make_argv = shlex.split(make_installs[0])
    # The same script and arguments as `make run`'s install (not the dev extras), with the base
    # image's Python where make has the venv's.
    assert image_argv[0] == make_argv[0] == "scripts/install"
    assert image_argv[2:] == make_argv[2:] == []
    assert image_argv[1] == "python"

    # The checkout (with the script and pyproject.toml) is in the image before the install runs.
    install_at = next(i for i, (k, a) in enumerate(instructions) if "scripts/install" in a)
    copies = [shlex.split(a)[:-1] for k, a in instructions[:install_at] if k == "COPY"]
    assert any("." in sources or "scripts/install" in sources for sources in copies), copies

    # What the script runs, for real, with `echo` standing in for the interpreter.
    script = ROOT / "scripts" / "install"
    assert os.access(script, os.X_OK)
    printed = subprocess.run([script, "echo"], capture_output=True, text=True, check=True)
    assert printed.stdout.split() == ["-m", "pip", "install", "--quiet", "-e", "."]
    dev = subprocess.run([script, "echo", "dev"], capture_output=True, text=True, check=True)
    assert dev.stdout.split()[-1] == ".[dev]"


def test_image_settings_point_at_its_checkout_and_a_state_folder_of_its_own() -> None:
    env = dockerfile_env()
    settings_env = {key: value for key, value in env.items() if key.upper() in settings_variables()}
    # Python's and pip's own variables, and bankdw's settings: nothing else is set in the image.
    assert set(env) - set(settings_env) <= {
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_CACHE_DIR",
        "PIP_ROOT_USER_ACTION",
    }
    workdirs = [arguments for keyword, arguments in dockerfile() if keyword == "WORKDIR"]
    assert settings_env["PROJECT_ROOT"] == workdirs[-1]
    # Local state outside the checkout, on the volume compose mounts for the worker.
    state = settings_env["WAREHOUSE_DIR"]
    assert not state.startswith(settings_env["PROJECT_ROOT"])
    worker_volumes = [str(v) for v in service("worker").get("volumes") or []]
    assert any(volume.split(":")[1] == state for volume in worker_volumes), worker_volumes


def test_dockerignore_keeps_secrets_local_state_and_history_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".env", ".venv/bin/python", ".warehouse/pgdata/PG_VERSION", ".git/HEAD"):
        assert dockerignored(path, patterns), path
    for path in ("logs/bankdw.log", "flows/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(path, patterns), path
    # ...and what the image runs stays in.
    needed = [
        "pyproject.toml",
        "scripts/install",
        "flows/cli.py",
        "flows/logs.py",
        "config.yaml",
        "prefect.yaml",
        "models/gold/dim_customer.sql",
        "macros/hashing.py",
        "sql/warehouse/ops.sql",
        ".env.example",
    ]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not dockerignored(path, patterns), path


# --- compose --------------------------------------------------------------------------------


def test_compose_runs_postgres_prefect_a_worker_and_minio() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "prefect-server", "worker", "minio", "create-bucket"}
    worker = services["worker"]
    # The image, built from this checkout: nothing installed at start, no checkout mounted.
    assert worker["build"] in (".", {"context": "."})
    assert "pip" not in " ".join(map(str, worker["command"]))
    for volume in worker.get("volumes") or []:
        assert not str(volume).startswith((".", "/")), f"worker mounts a host path: {volume}"
    depends = set(worker["depends_on"])
    assert depends == {"postgres", "prefect-server", "create-bucket"}


def test_worker_serves_the_pool_prefect_yaml_deploys_to() -> None:
    command = service("worker")["command"]
    assert isinstance(command, list), "the worker's command as a list: no shell in between"
    assert command[:3] == ["prefect", "worker", "start"]
    pool = command[command.index("--pool") + 1]
    assert command[command.index("--type") + 1] == "process"
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in deployments["deployments"]}
    assert pools == {pool} == {"bankdw"}


def test_every_variable_compose_gives_bankdw_is_one_it_reads() -> None:
    settings = settings_variables()
    # Not vacuous: the settings' names are what the README's table lists.
    assert {"WAREHOUSE_URL", "SOURCE_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID"} <= settings
    for name in ("worker", "prefect-server"):
        unread = [
            key for key in environment(name) if key not in settings and not is_prefect_setting(key)
        ]
        assert not unread, f"{name}: no bankdw or Prefect setting reads {unread}"
    worker = environment("worker")
    # The worker's connections, feeds and API all come from the compose file.
    assert {"WAREHOUSE_URL", "SOURCE_URL", "S3_BUCKET", "S3_ENDPOINT_URL"} <= set(worker)
    assert worker["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert not is_prefect_setting("PREFECT_NO_SUCH_SETTING")


def test_every_published_port_binds_127_0_0_1() -> None:
    published = 0
    for name, definition in compose()["services"].items():
        for port in definition.get("ports") or []:
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                host_ip, _, rest = str(port).partition(":")
                assert host_ip == "127.0.0.1" and rest.count(":") == 1, f"{name}: {port}"
    assert published == 4  # Postgres, Prefect's UI/API, MinIO's API and console


def test_passwords_are_required_from_env_and_never_defaulted() -> None:
    found = interpolations(compose())
    secrets = {name for name, _, _ in found if SECRET_NAME.search(name)}
    assert secrets >= {"POSTGRES_PASSWORD", "PG_PIPELINE_PASSWORD", "MINIO_ROOT_PASSWORD"}
    for name, operator, message in found:
        if name in secrets:
            assert operator == ":?" and message, f"${{{name}}} must be `:?` with a message"
    # Every value that carries a credential is a required variable, never a literal.
    for service_name in compose()["services"]:
        for key, value in environment(service_name).items():
            if SECRET_NAME.search(key) or key.endswith("AUTH_STRING"):
                assert re.search(r"\$\{[A-Z_]+:\?", value), f"{service_name}: {key}={value}"
        for key, value in environment(service_name).items():
            credentials = re.match(r"^\w+://[^:/@]+:([^@]*)@", value)
            if credentials:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", credentials.group(1)), key

    example = env_example()
    # .env.example lists every variable compose reads, and only those; passwords empty.
    assert set(example) == {name for name, _, _ in found}
    for name in secrets:
        assert example[name] == "", f".env.example: {name} must be empty"
    # Defaults compose does give are names, not secrets, and match the example.
    for name, operator, default in found:
        if operator == ":-":
            assert example[name] == default, name


def test_env_file_changes_nothing_for_a_local_bankdw() -> None:
    # The compose `.env` is the repository root's `.env`, which bankdw's settings, Prefect's and
    # SQLMesh (into os.environ) read on this machine: none of its names may be theirs.
    settings = settings_variables()
    for name in env_example():
        assert name not in settings, name
        assert not name.startswith(("PREFECT_", "AWS_", "BANKDW_", "GX_")), name
        assert not re.match(r"PG[A-Z]", name), f"{name}: libpq reads PG* variables"


def test_pipeline_logs_in_as_its_own_role_not_the_superuser() -> None:
    worker = environment("worker")
    superuser = re.search(r"\$\{POSTGRES_USER:-(\w+)\}", environment("postgres")["POSTGRES_USER"])
    assert superuser
    for key, database in (("WAREHOUSE_URL", "warehouse"), ("SOURCE_URL", "corebank")):
        url = re.match(r"postgresql://(\w+):.*@postgres:5432/(\w+)$", worker[key])
        assert url, f"{key}: {worker[key]}"
        assert url.group(1) == "bankdw_pipeline" != superuser.group(1)
        assert url.group(2) == database
    init = SERVER_INIT.read_text()
    assert re.search(r"create database warehouse owner bankdw_pipeline;", init)
    prefect = environment("prefect-server")
    assert prefect["PREFECT_SERVER_DATABASE_USER"] == "prefect"
    assert re.search(r"create database prefect owner prefect;", init)

    # The init scripts are mounted in the order they must run, and every password the SQL reads
    # is one compose gives the postgres service.
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in service("postgres")["volumes"]}
    init_scripts = sorted(t for t in mounts if t.startswith("/docker-entrypoint-initdb.d/"))
    assert [mounts[t] for t in init_scripts] == [
        "./sql/roles/analyst.sql",
        "./sql/roles/server_init.sql",
    ]
    wanted = set(re.findall(r"^\\getenv \w+ (\w+)$", init, flags=re.M))
    assert wanted == {"PG_PIPELINE_PASSWORD", "PG_COREBANK_PASSWORD", "PG_PREFECT_PASSWORD"}
    assert wanted <= set(environment("postgres"))


# --- the roles, on a real PostgreSQL --------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL of its own (the init script creates server-wide roles and databases, which
    must not land on the session's shared server); yields its socket folder."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("compose-pg"), cleanup_mode="stop")
    yield str(server.get_postmaster_info().socket_dir)
    server.cleanup()


def run_init_script(
    socket_dir: str, script: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    """As the postgres image's entrypoint runs an init `.sql` file: psql -f, as the superuser."""
    from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "psql"), "-v", "ON_ERROR_STOP=1", "--no-password"]
    command += [
        "--no-psqlrc",
        "-h",
        socket_dir,
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-f",
        str(script),
    ]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(command, env=clean | env, capture_output=True, text=True)


def connect(socket_dir: str, user: str, database: str) -> psycopg.Connection:
    # The throwaway server trusts local connections: the roles' rights are what is tested here.
    return psycopg.connect(host=socket_dir, user=user, dbname=database, autocommit=True)


PASSWORDS = {
    "PG_PIPELINE_PASSWORD": "pipeline0secret",
    "PG_COREBANK_PASSWORD": "corebank0secret",
    "PG_PREFECT_PASSWORD": "prefect0secret",
}


def test_server_init_creates_nothing_without_every_password(fresh_server: str) -> None:
    assert run_init_script(fresh_server, ANALYST, {}).returncode == 0
    missing = run_init_script(fresh_server, SERVER_INIT, PASSWORDS | {"PG_PREFECT_PASSWORD": ""})
    assert missing.returncode != 0
    assert "must all be set" in missing.stderr
    assert "pipeline0secret" not in missing.stdout + missing.stderr
    with connect(fresh_server, "postgres", "postgres") as conn:
        roles = conn.execute(
            "select count(*) from pg_roles"
            " where rolname in ('bankdw_pipeline', 'corebank', 'prefect')"
        ).fetchone()[0]
        assert roles == 0


def test_server_init_gives_each_service_only_what_it_writes(fresh_server: str) -> None:
    from flows.roles import grant_gold_to_analyst

    # As the entrypoint does: analyst.sql first (idempotent), then the server's roles.
    assert run_init_script(fresh_server, ANALYST, {}).returncode == 0
    done = run_init_script(fresh_server, SERVER_INIT, PASSWORDS)
    assert done.returncode == 0, done.stderr
    assert "secret" not in done.stdout + done.stderr

    with connect(fresh_server, "postgres", "postgres") as admin:
        roles = dict(
            (name, flags)
            for name, *flags in admin.execute(
                "select rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin,"
                " rolpassword like 'SCRAM-SHA-256$%' from pg_authid"
                " where rolname in ('bankdw_pipeline', 'corebank', 'prefect', 'analyst')"
            ).fetchall()
        )
        owners = dict(
            admin.execute(
                "select datname, pg_get_userbyid(datdba) from pg_database"
                " where datname in ('warehouse', 'corebank', 'prefect')"
            ).fetchall()
        )
        admin.execute("create role alice login in role analyst")
    for login in ("bankdw_pipeline", "corebank", "prefect"):
        assert roles[login] == [False, False, False, True, True], login  # a password, no powers
    assert roles["analyst"][:4] == [False, False, False, False]  # a group: no login
    assert owners == {"warehouse": "bankdw_pipeline", "corebank": "corebank", "prefect": "prefect"}

    # The core bank's role writes its tables; the pipeline reads them and cannot write there.
    with connect(fresh_server, "corebank", "corebank") as source:
        source.execute("create table customers (id int primary key, name text)")
        source.execute("insert into customers values (1, 'Ada')")
    with connect(fresh_server, "bankdw_pipeline", "corebank") as reader:
        assert reader.execute("select name from customers").fetchall() == [("Ada",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("insert into customers values (2, 'Eve')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("create table stray (id int)")

    # The pipeline builds the warehouse (schemas, tables, views) and grants the analyst gold.
    with connect(fresh_server, "bankdw_pipeline", "warehouse") as warehouse:
        warehouse.execute("create schema raw")
        warehouse.execute("create table raw.customers as select 1 as id, 'Ada' as name")
        warehouse.execute("create schema gold")
        warehouse.execute("create view gold.dim_customer as select id from raw.customers")
        assert grant_gold_to_analyst(warehouse)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            warehouse.execute("create database another")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            warehouse.execute("create role someone")

    # An analyst reads prod's gold and nothing else, and reaches no other database.
    with connect(fresh_server, "alice", "warehouse") as analyst:
        assert analyst.execute("select id from gold.dim_customer").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("select * from raw.customers")
    for role, database in (
        ("alice", "corebank"),
        ("corebank", "warehouse"),
        ("prefect", "corebank"),
    ):
        with pytest.raises(psycopg.OperationalError, match="permission denied"):
            connect(fresh_server, role, database)
