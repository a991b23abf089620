"""Where bankdw writes: nothing on a real server that the user did not name, no demo defaults for
a server warehouse, the `.env` of the repository root, and the target said before writing."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.pgurl import parse_url
from flows.settings import get_settings, reset_settings
from flows.simulate import simulate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


SETTINGS = (
    "WAREHOUSE_URL",
    "SOURCE_URL",
    "WAREHOUSE_DIR",
    "LANDING_DIR",
    "S3_BUCKET",
    "PROJECT_ROOT",
)


@pytest.fixture
def pointed(monkeypatch, tmp_path):
    """Set exactly these settings, the others unset; the repository root is a stand-in in a
    temporary folder (its local state too) unless PROJECT_ROOT is None (found from the cwd)."""

    def point(**env: str | None) -> Path:
        for name in SETTINGS:
            monkeypatch.delenv(name, raising=False)
        project = fake_project(tmp_path / "project")
        env.setdefault("PROJECT_ROOT", str(project))
        for name, value in env.items():
            if value is not None:
                monkeypatch.setenv(name, value)
        reset_settings()
        return project

    yield point
    reset_settings()


def fake_project(root: Path) -> Path:
    """A folder that find_project_root() takes for the repository (config.yaml, flows/)."""
    (root / "flows").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "config.yaml").write_text("# a stand-in\n")
    return root


def database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url) as conn:
        return bool(
            conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        )


def tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [
            name
            for (name,) in conn.execute(
                "select schemaname || '.' || tablename from pg_tables "
                "where schemaname not in ('pg_catalog', 'information_schema') order by 1"
            )
        ]


def test_a_server_warehouse_without_a_source_stops_and_creates_nothing(
    pointed, new_database, pg_server
):
    """Point 1: the demo bank used to be simulated into a `corebank` database on the user's
    server. Now run, extract and simulate stop at once, saying what to set."""
    warehouse = new_database("wh_nosrc")
    demo_name = f"corebank_never_{os.getpid()}"
    pointed(WAREHOUSE_URL=warehouse, SOURCE_DATABASE=demo_name)

    for command in (["run"], ["extract"], ["simulate", "--days", "1"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert "SOURCE_URL" in result.output or "--source-url" in result.output, result.output
        assert "Traceback" not in result.output
    assert "set SOURCE_URL to the core bank's database" in runner.invoke(app, ["run"]).output
    assert not database_exists(pg_server.url(), demo_name)
    assert tables(warehouse) == []


def test_the_simulator_leaves_a_database_it_did_not_make_untouched(pointed, new_database):
    """Point 1: a real `customers` table made the simulator fail half-way, leaving its other
    tables beside it. Now it refuses such a database before creating anything."""
    foreign = new_database("someones")
    with psycopg.connect(foreign) as conn:
        conn.execute("create table customers (id int primary key, name text)")
    pointed(WAREHOUSE_URL=new_database("wh_foreign"))

    result = runner.invoke(app, ["simulate", "--days", "1", "--source-url", foreign])
    assert result.exit_code == 1, result.output
    assert "not made by the simulator" in result.output and "customers" in result.output
    assert tables(foreign) == ["public.customers"]


def test_a_server_warehouse_gets_no_demo_landing_folder_nor_the_demo_state(
    pointed, new_database, tmp_path
):
    """Point 2: with WAREHOUSE_URL set, the demo's feed files in .warehouse/landing were loaded
    into the real warehouse, and Prefect's and GX's state were the demo's. Now feeds are off
    without LANDING_DIR (the summary says so), and local state has a folder per warehouse."""
    source = new_database("src_nolanding")
    with psycopg.connect(source) as conn:
        conn.execute((PROJECT_ROOT / "sql" / "source" / "corebank.sql").read_text())
    warehouse = new_database("wh_nolanding")
    project = pointed(WAREHOUSE_URL=warehouse, SOURCE_URL=source)
    demo_landing = project / ".warehouse" / "landing" / "orders"
    demo_landing.mkdir(parents=True)
    (demo_landing / "orders_2026-01-01.csv").write_text(
        "order_id,customer_id,product_id,channel,status,amount,ordered_at,updated_at\n"
        "1,1,CUR-STD,web,placed,10.00,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z\n"
    )

    settings = get_settings()
    assert settings.landing_path is None
    params = parse_url(warehouse)
    assert settings.data_dir.parent == project / ".warehouse" / "servers"
    assert params.database in settings.data_dir.name and str(params.port) in settings.data_dir.name

    result = runner.invoke(app, ["extract"])
    assert result.exit_code == 0, result.output
    assert "feeds off" in result.output and "LANDING_DIR" in result.output
    assert f"warehouse: {params.describe()}" in result.output
    assert "raw.orders" not in tables(warehouse)
    assert sorted(p.name for p in (project / ".warehouse").iterdir()) == ["landing", "servers"]


def test_env_is_read_from_the_repository_root_from_any_folder(pointed, new_database, monkeypatch):
    """Point 3: from models/, .env was not read and the embedded demo was targeted (and
    started). Now the root's .env counts, and a writing command says which warehouse it uses
    (host and database, never the password)."""
    url = new_database("wh_dotenv")
    params = parse_url(url)
    if not params.password:  # the embedded test server trusts its socket: any password does
        params = dataclasses.replace(params, password="pw-never-shown")
    project = pointed(PROJECT_ROOT=None)  # the root is found from the current folder
    (project / ".env").write_text(f"WAREHOUSE_URL={params.url()}\n")
    monkeypatch.chdir(project / "models")

    result = runner.invoke(app, ["sql", "select current_database() as db"])
    assert result.exit_code == 0, result.output
    assert params.database in result.stdout
    assert f"warehouse: {params.describe()}" in result.stderr
    assert params.password not in result.output
    assert not (project / ".warehouse" / "pgdata").exists(), "the embedded demo was started"


def test_simulate_writes_the_feed_files_a_run_writes_for_the_same_days(
    pointed, new_database, tmp_path
):
    """Point 4: `bankdw simulate --days N` wrote no feed files, leaving gaps for those days.
    Now it writes the same files, byte for byte, as the run's simulate step."""
    landing = tmp_path / "landing"
    pointed(WAREHOUSE_URL=new_database("wh_simfeeds"), LANDING_DIR=str(landing))
    result = runner.invoke(
        app, ["simulate", "--days", "2", "--scale", "20", "--source-url", new_database("src_cli")]
    )
    assert result.exit_code == 0, result.output
    assert f"feed files: {landing}" in result.output

    # What the run's simulate step has always written for the same days.
    settings = get_settings()
    reference = tmp_path / "reference"
    simulate(
        new_database("src_ref"),
        2,
        scale=20,
        seed=settings.sim_seed,
        bad_rate=settings.sim_bad_rate,
        start_date=settings.sim_start_date,
        landing_dir=reference,
    )

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.*"))}

    assert len(files(landing)) == 6  # three feeds, two days
    assert files(landing) == files(reference)
