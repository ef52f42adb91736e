"""Deployment (issue 13): the shipped nginx site and systemd units, run and checked for real."""

import json
import re
import sqlite3
import subprocess

import pytest

from tests.support.nginx import client, start_nginx
from tests.support.processes import ROOT, flask_cli, start_core

PASSWORD = "correct horse battery"
UNITS = ["extframework.service", "extframework-backup.service", "extframework-backup.timer"]


def _audited(instance, action: str) -> list[str]:
    with sqlite3.connect(instance / "extframework.sqlite3") as db:
        rows = db.execute(
            "SELECT detail FROM audit_event WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    return [json.loads(row[0]) for row in rows]


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    """gunicorn on loopback behind Debian's nginx with TLS, as docs/deploy.md sets it up."""
    tmp = tmp_path_factory.mktemp("deploy")
    from tests.support.processes import free_port

    https_port_holder = {}
    core_port = free_port()
    nginx = start_nginx(tmp / "nginx", core_port)
    https_port_holder["url"] = nginx.url
    core = start_core(
        tmp,
        workers=2,
        threads=2,
        port=core_port,
        BASE_URL=nginx.url,
        PROXY_FIX=1,
        LOGIN_MAX_FAILURES=3,
        LOGIN_ADDRESS_DELAY_S=0,
    )
    for email in ("alice@example.com", "bob@example.com"):
        made = flask_cli(
            tmp / "instance", "users", "create", email, env={"EXTFW_PASSWORD": PASSWORD}
        )
        assert made.returncode == 0, made.stderr
    yield nginx, core, tmp / "instance"
    core.stop()
    nginx.stop()


def test_login_over_https_sets_secure_cookies_and_audits_the_real_client(proxied):
    nginx, _, instance = proxied
    browser = client("127.0.0.2", nginx.cert)
    redirect = browser.get(nginx.http_url + "/login", allow_redirects=False)
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://")
    page = browser.get(nginx.url + "/login")
    assert page.headers["Strict-Transport-Security"]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    answer = browser.post(
        nginx.url + "/login",
        data={"csrf_token": csrf, "email": "alice@example.com", "password": PASSWORD},
        headers={
            "Referer": nginx.url + "/login"
        },  # Flask-WTF checks it over HTTPS, as browsers send it
        allow_redirects=False,
    )
    assert answer.status_code == 302
    cookies = answer.raw.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies), cookies
    home = browser.get(nginx.url + "/")
    assert home.status_code == 200
    # The id the core answers with is nginx's own $request_id: one id in both logs.
    line = f"{home.headers['X-Request-ID']} GET / HTTP/1.1 200"
    assert line in nginx.wait_for_access(line)
    assert _audited(instance, "auth.login")[-1]["address"] == "127.0.0.2"


def test_one_clients_failures_through_the_proxy_do_not_lock_out_another(proxied):
    nginx, _, instance = proxied
    attacker, colleague = client("127.0.0.2", nginx.cert), client("127.0.0.3", nginx.cert)
    url = nginx.url + "/api/auth/token"
    statuses = []
    for n in range(5):
        # A forged X-Forwarded-For naming the colleague's address (or any other) is ignored:
        # nginx appends the real one, and the core trusts exactly that one hop.
        forged = "127.0.0.3" if n % 2 else f"198.51.100.{n}"
        statuses.append(
            attacker.post(
                url,
                json={"email": "bob@example.com", "password": "wrong"},
                headers={"X-Forwarded-For": forged},
            ).status_code
        )
    assert statuses == [401, 401, 401, 429, 429]
    answer = colleague.post(url, json={"email": "bob@example.com", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    failed = _audited(instance, "auth.login_failed")
    assert failed and {d["address"] for d in failed} == {"127.0.0.2"}, failed


def test_without_proxy_fix_forwarded_headers_are_ignored(client, make_user, app):
    make_user("carol@example.com", password=PASSWORD)
    client.post(
        "/api/auth/token",
        json={"email": "carol@example.com", "password": "wrong"},
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "127.0.0.5"},
    )
    assert [d["address"] for d in _audited_in_app(app, "auth.login_failed")] == ["127.0.0.5"]


def _audited_in_app(app, action):
    from extframework import db
    from extframework.models import AuditEvent

    with app.app_context(), db.database.connection_context():
        return [e.detail for e in AuditEvent.select().where(AuditEvent.action == action)]


def test_the_nginx_site_passes_nginx_t(tmp_path):
    from tests.support.nginx import check_config, main_config, render_site, self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)
    site = tmp_path / "site.conf"
    site.write_text(render_site(8000, 8080, 8443, cert, key))
    checked = check_config(main_config(tmp_path, site), tmp_path)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_the_systemd_units_load(tmp_path, unit):
    """``systemd-analyze verify`` with the install path pointed at this checkout."""
    for name in UNITS:
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/extframework", str(ROOT)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
