import os

import pytest

from extframework import create_app, db
from extframework.models import Tenant
from extframework.services import accounts

pytest_plugins = [
    "tests.support.browser",
    "tests.support.registry_fixtures",
    "tests.support.storage_fixtures",
    "tests.support.shell_fixtures",
    "tests.support.migration_fixtures",
]

PASSWORD = "correct horse battery"

# A health monitor thread started in this process would outlive its app and sweep whichever
# database a later test opens: apps built from the environment here never start one.
os.environ["EXTFW_HEALTH_MONITOR"] = "false"

# One PBKDF2 round instead of scrypt (~0.15 s per hash and per check) for users made in this
# process; cores started as processes (gunicorn, the CLI) keep the real default.
accounts.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1"


ENGINES = ("sqlite", "postgresql")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "both_engines: run the module's app tests on SQLite and on PostgreSQL (a throwaway "
        "cluster, tests/support/postgres.py)",
    )
    config.addinivalue_line("markers", "postgres: the test runs on PostgreSQL")


def pytest_generate_tests(metafunc):
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("engine", ENGINES, indirect=True)


# The files that take longest, longest first (the sum of each file's durations from a quiet
# `pytest --durations=0` run, 2026-12-02: 120 s for the first, 12 s for the last). With
# `--dist loadfile --no-loadscope-reorder` (the Makefile) xdist hands out files in collection
# order, each to the worker that runs short of work: the long ones start first and the
# workers finish together instead of one running the last long file alone.
LONGEST_FILES = [
    "test_responsive.py",
    "test_run_script.py",
    "test_fuzz_api.py",
    "test_isolation.py",
    "test_browser.py",
    "test_plugin_deadlines.py",
    "test_confirm_browser.py",
    "test_contract_check.py",
    "test_key_rollover.py",
    "test_write_lock.py",
    "test_two_hosts.py",
    "test_concurrency.py",
    "test_query.py",
    "test_author_feedback_process.py",
    "test_migration.py",
    "test_registry_api.py",
    "test_chunked_restore.py",
    "test_browser_hostile.py",
    "test_native_browser.py",
    "test_takeover.py",
    "test_contract_check_bounds.py",
    "test_hostile_plugin.py",
    "test_health.py",
    "test_login_throttle.py",
    "test_storage.py",
    "test_batch.py",
    "test_demo_serving.py",
    "test_menu_notice_place.py",
    "test_live_browser.py",
    "test_lifecycle.py",
    "test_service_imports.py",
    "test_browser_prg.py",
]


def file_rank(item) -> int:
    name = item.path.name
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("engine") == "postgresql":
            item.add_marker("postgres")
    items.sort(key=file_rank)  # stable: a file's own tests keep their order


@pytest.fixture
def engine(request):
    """The engine the test's app stores into: SQLite unless the module runs on both."""
    return getattr(request, "param", "sqlite")


def _postgres_database(empty: bool):
    from tests.support import postgres

    cluster = postgres.cluster()
    url = cluster.create_database() if empty else cluster.create_database(cluster.core_template())
    yield url
    if db.database.obj is not None and db.database.obj.database == url:
        db.database.obj.close_all()
    cluster.drop_database(url)


@pytest.fixture
def database_url(engine):
    """For a PostgreSQL test, a fresh database's URL, at the core's schema (a copy of one
    ``db.upgrade()`` built); else None."""
    if engine != "postgresql":
        yield None
        return
    yield from _postgres_database(empty=False)


@pytest.fixture
def empty_database_url():
    """A fresh, empty PostgreSQL database's URL."""
    yield from _postgres_database(empty=True)


@pytest.fixture
def app(tmp_path, database_url):
    app = create_app(
        {
            "TESTING": True,
            "DATABASE": str(tmp_path / "core.sqlite3"),
            "DATABASE_URL": database_url,
            # PostgreSQL needs a configured secret (several hosts); SQLite generates its own.
            "SECRET_KEY": "a secret shared by every host" if database_url else None,
            "BASE_URL": "http://core.test",
            "HEALTH_MONITOR": False,
            "WTF_CSRF_ENABLED": False,
        },
        instance_path=str(tmp_path / "instance"),
    )
    with app.app_context():
        db.upgrade()
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Create a user through the accounts service."""

    def make(
        email="user@example.com",
        *,
        role="member",
        operator=False,
        tenant="default",
        password=PASSWORD,
    ):
        with app.app_context(), db.database.connection_context():
            if tenant != accounts.DEFAULT_TENANT and not Tenant.get_or_none(slug=tenant):
                accounts.create_tenant(tenant)
            return accounts.create_user(
                email, password, role=role, operator=operator, tenant=tenant
            )

    return make


@pytest.fixture
def login(client):
    """Log the test client in through the login form."""

    def do(email, password=PASSWORD):
        return client.post("/login", data={"email": email, "password": password})

    return do


@pytest.fixture
def user_token(client):
    """Get a user JWT from POST /api/auth/token."""

    def get(email, password=PASSWORD):
        response = client.post("/api/auth/token", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["access_token"]

    return get
