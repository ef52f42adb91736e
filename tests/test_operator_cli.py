"""Every console action has a CLI command (issue 13): users, tenants, plugin availability."""

from extframework.db import database
from extframework.models import AuditEvent, User
from extframework.services import accounts


def run(runner, *args):
    result = runner.invoke(args=list(args))
    return result.exit_code, result.output


def test_users_list_set_role_deactivate_and_reactivate(app, runner, make_user):
    make_user("ann@example.com", role="member")
    make_user("ops@example.com", role="admin", operator=True)
    code, out = run(runner, "users", "list")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["ann@example.com", "member"],
        ["ops@example.com", "admin"],
    ]
    assert "(operator)" in out.splitlines()[1]

    code, out = run(runner, "users", "set-role", "ANN@example.com", "--role", "admin", "--operator")
    assert code == 0 and "admin, operator" in out
    code, out = run(runner, "users", "deactivate", "ann@example.com")
    assert code == 0
    assert "(operator, inactive)" in run(runner, "users", "list")[1].splitlines()[0]
    with app.app_context(), database.connection_context():
        ann = User.get(User.email == "ann@example.com")
        assert (ann.role, ann.is_operator, ann.is_active) == ("admin", True, False)
        assert ann.session_generation >= 2  # both changes ended her sessions
        actions = [e.action for e in AuditEvent.select().where(AuditEvent.actor == "cli")]
    assert "user.set_role" in actions and "user.deactivate" in actions
    assert run(runner, "users", "reactivate", "ann@example.com")[0] == 0


def test_user_commands_name_an_unknown_email(runner):
    code, out = run(runner, "users", "deactivate", "nobody@example.com")
    assert code != 0 and "No user with email 'nobody@example.com'" in out


def test_tenants_list(app, runner):
    with app.app_context(), database.connection_context():
        accounts.create_tenant("acme", "Acme Inc")
    code, out = run(runner, "tenants", "list")
    assert code == 0
    assert [line.split(None, 1) for line in out.splitlines()] == [
        ["acme", "Acme Inc"],
        ["default", "Default"],
    ]


def test_plugins_tenants_restricts_and_opens_a_plugin(app, runner, make_storage_plugin):
    make_storage_plugin("acme-notes")
    with app.app_context(), database.connection_context():
        accounts.create_tenant("acme")
    assert run(runner, "plugins", "tenants", "acme-notes") == (0, "every tenant\n")
    assert run(runner, "plugins", "tenants", "acme-notes", "acme") == (0, "acme\n")
    code, out = run(runner, "plugins", "tenants", "acme-notes", "ghost")
    assert code != 0 and "ghost" in out
    assert run(runner, "plugins", "tenants", "acme-notes") == (0, "acme\n")
    assert run(runner, "plugins", "tenants", "acme-notes", "--all") == (0, "every tenant\n")
