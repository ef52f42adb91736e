"""Every setting of the core, one row each: its type, default, allowed range and meaning.

This table drives parsing (``EXTFW_<NAME>`` strings and ``instance/config.py`` values), the
check at start (a wrong type or range stops the start, naming the setting), ``flask --app app
config show|check`` and the README's configuration table (``flask --app app config table``
prints it; a test keeps the README in step).
"""

import difflib
import math
import os
from dataclasses import dataclass

ENV_PREFIX = "EXTFW_"
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
REDACTED = "<redacted>"

# Read by the CLI, the demo scripts or plugin processes, not settings of the core.
OTHER_ENVIRONMENT = frozenset(
    {"INSTANCE_PATH", "PASSWORD", "ADMIN_EMAIL", "ADMIN_PASSWORD", "CORE_URL", "ENROLMENT_KEY"}
)


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: object
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed (the default is then worked out at start)
    secret: bool = False
    default_text: str = ""  # the README's default where the value is worked out at start

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type is bool:
            return "true/false (also 1/0, yes/no, on/off)"
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        kind = {int: "an integer", float: "a number", str: "text"}[self.type]
        return kind + (" " + " and ".join(bounds) if bounds else "")


def _s(name, type_, default, help_, **kw) -> Setting:
    return Setting(name, type_, default, help_, **kw)


# The Cache-Control max-age of GET /.well-known/jwks.json: how long a verifier may keep a copy.
JWKS_MAX_AGE_S = 60

SETTINGS: tuple[Setting, ...] = (
    _s("BASE_URL", str, "http://127.0.0.1:5000",
       "where the core is reached; the `iss` of every JWT it mints"),
    _s("PROXY_FIX", int, 0,
       "how many reverse proxies in front of the core to trust for `X-Forwarded-For/-Proto/"
       "-Host/-Port` (werkzeug's ProxyFix); `0`: those headers are ignored (docs/deploy.md)",
       minimum=0, maximum=5),
    _s("DATABASE", str, None, "the SQLite file (WAL, foreign keys, busy timeout)",
       optional=True, default_text="<instance>/extframework.sqlite3"),
    _s("ARCHIVE_PATH", str, None,
       "the folder of deregistered plugins' data archives; with several app hosts, one folder "
       "they all mount (docs/scaling.md)",
       optional=True, default_text="<instance>/archives"),
    _s("SQLITE_BUSY_TIMEOUT_MS", int, 5000, "how long a writer waits for the lock",
       minimum=0),
    _s("DATABASE_URL", str, None,
       "`postgresql://user:password@host/dbname` (or `?host=/socket/folder`): store everything "
       "in PostgreSQL instead of the SQLite file `DATABASE` (docs/scaling.md)",
       optional=True, secret=True, default_text="none: SQLite"),
    _s("DATABASE_POOL_SIZE", int, 8,
       "PostgreSQL connections one server process may hold; hosts x workers x this must stay "
       "below the server's `max_connections` (docs/scaling.md); SQLite ignores it",
       minimum=1, maximum=1000),
    _s("SECRET_KEY", str, None,
       "signs sessions, CSRF tokens and storage cursors, and seals the JWT signing keys in the "
       "database; every app host must have the same one (docs/identity.md)",
       optional=True, secret=True, default_text="generated into <instance>/secret_key"),
    _s("SECRET_KEY_FALLBACKS", str, None,
       "earlier secret keys, separated by spaces: sessions and cursors signed with them are "
       "still accepted and signing keys sealed with them still open (then are sealed again) "
       "while the secret is rotated (docs/identity.md)",
       optional=True, secret=True, default_text="none"),
    _s("MAX_BODY_BYTES", int, 1024 * 1024, "larger request bodies get `413`", minimum=1024),
    _s("SESSION_COOKIE_SECURE", bool, None,
       "cookies only over HTTPS; unset: `true` when `BASE_URL` is `https://`",
       optional=True, default_text="true when BASE_URL is https"),
    _s("SESSION_COOKIE_SAMESITE", str, "Lax", "the session cookie's SameSite",
       choices=("Lax", "Strict")),
    _s("JWT_ALGORITHM", str, "ES256",
       "the algorithm of newly generated keys (an existing key keeps its algorithm until "
       "rotated)", choices=("ES256", "RS256")),
    # A rotated-in key signs only once every cached JWKS copy has expired (docs/identity.md):
    # the JWKS max-age plus a 30 s margin (a copy handed on late by another cache).
    _s("KEY_PUBLISH_DELAY_S", float, JWKS_MAX_AGE_S + 30,
       "after `keys rotate`, how long the new key is only published before it signs: the "
       "JWKS `max-age` (60 s) plus a 30 s margin, so no plugin's cached JWKS lacks it "
       "(docs/identity.md)", minimum=0),
    _s("REQUEST_JWT_TTL_S", int, 60,
       "lifetime of the JWT sent to a plugin with each request", minimum=1, maximum=3600),
    _s("USER_JWT_TTL_S", int, 3600, "lifetime of a user JWT from `POST /api/auth/token`",
       minimum=1, maximum=30 * 86400),
    _s("TOKEN_GRACE_S", float, 3600,
       "how long a plugin token replaced by a rotation keeps working (unless revoked now)",
       minimum=0),
    _s("LOGIN_MAX_FAILURES", int, 10,
       "failed logins on one account from one address before that pair gets `429`", minimum=1),
    _s("LOGIN_ACCOUNT_MAX_FAILURES", int, 30,
       "failed logins on one account from all addresses before `429` (not for an address it "
       "logged in from lately)", minimum=1),
    _s("LOGIN_WINDOW_S", float, 300, "the window those failures are counted in", minimum=1),
    _s("LOGIN_KNOWN_ADDRESS_DAYS", float, 30,
       "how long an address the account logged in from is spared the account-wide `429`",
       minimum=0),
    _s("LOGIN_ADDRESS_SLOW_AFTER", int, 30,
       "failed logins from one address (any accounts) after which its failed attempts are "
       "slowed", minimum=1),
    _s("LOGIN_ADDRESS_DELAY_S", float, 1.0,
       "how long such a failed attempt waits for its `429`; `0` answers at once (sync "
       "workers)", minimum=0, maximum=30),
    _s("HEALTH_MONITOR", bool, True, "run the background health sweeps"),
    _s("HEALTH_INTERVAL_S", float, 10.0, "seconds between sweeps", minimum=0.01),
    _s("HEALTH_TIMEOUT_S", float, 2.0, "a probe slower than this fails", minimum=0.01),
    _s("HEALTH_FAILURES", int, 3, "consecutive failures before `active` becomes `degraded`",
       minimum=1),
    _s("HEALTH_HISTORY", int, 100, "health checks kept per plugin", minimum=1),
    _s("LIVE_POLL_S", float, 5.0,
       "how often an open page asks for plugin states, health and menu notices "
       "(`static/live.js`)", minimum=0.2, maximum=3600),
    _s("PROXY_TIMEOUT_S", float, 5.0,
       "a proxied call's whole answer, connect to last byte, must arrive within this",
       minimum=0.01),
    _s("CONTRACT_CHECK_TIMEOUT_S", float, 30.0,
       "a contract check's whole run (every probe of every view) ends within this; a call "
       "it could not make in time fails", minimum=0.01),
    _s("PROXY_MAX_CONCURRENT_PER_PLUGIN", int, 2,
       "calls to one plugin at once per server process; keep it below gunicorn's `--threads` "
       "(see docs/shell.md)", minimum=1),
    _s("MIGRATION_TIMEOUT_S", float, 300, "default timeout of a migration handler",
       minimum=0.01),
    # What one plugin may declare, and what one schema validation may cost (schema_limits).
    _s("PLUGIN_MAX_INDEXES", int, 64,
       "indexes one plugin may declare over all its collections (each collection: at most "
       "16, and at most 100 collections, by the manifest schema)", minimum=0),
    _s("MANIFEST_MAX_BYTES", int, 256 * 1024,
       "largest manifest, as compact JSON, that registration or an update accepts",
       minimum=1024),
    _s("SCHEMA_MAX_BYTES", int, 64 * 1024, "largest collection schema, as compact JSON",
       minimum=64),
    _s("SCHEMA_MAX_NODES", int, 10_000,
       "subschemas in a collection schema with every `$ref` inlined (counted, never "
       "expanded)", minimum=1),
    _s("SCHEMA_MAX_REFS", int, 256, "`$ref`s in one collection schema", minimum=0),
    _s("SCHEMA_MAX_DEPTH", int, 64, "nesting of a collection schema with every `$ref` inlined",
       minimum=1),
    _s("VALIDATION_MAX_STEPS", int, 100_000,
       "schema keywords one document's validation may evaluate before `422`", minimum=1),
    _s("VALIDATION_MAX_MS", float, 500,
       "wall-clock time one document's validation may take before `422`", minimum=1),
    _s("LOG_FORMAT", str, "text",
       "`json`: one JSON object per log line, with the request id", choices=("text", "json")),
    _s("METRICS_TOKEN", str, None,
       "a bearer token that may read `GET /metrics` from other hosts than loopback",
       optional=True, secret=True, default_text="none: loopback only"),
    _s("LOG_LEVEL", str, "INFO", "the root logger's level",
       choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    _s("BENCH_ROUTES", bool, False,
       "adds `POST /api/bench/noop` for `bench/storage.py`; never in production"),
)  # fmt: skip

BY_NAME = {setting.name: setting for setting in SETTINGS}
DEFAULTS: dict[str, object] = {setting.name: setting.default for setting in SETTINGS}


class SettingsError(ValueError):
    """One or more settings are wrong; the message names each, its value and what it takes."""


def parse_environment(environ: os._Environ | dict) -> tuple[dict[str, str], list[str]]:
    """The raw ``EXTFW_*`` settings, and a warning for each unknown name (with a suggestion)."""
    values, unknown = {}, []
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :]
        if name in BY_NAME:
            values[name] = raw
        elif name not in OTHER_ENVIRONMENT:
            near = difflib.get_close_matches(name, BY_NAME, n=1)
            hint = f"; did you mean {ENV_PREFIX}{near[0]}?" if near else ""
            unknown.append(f"{key} is not a setting of the core{hint}")
    return values, unknown


def coerce(setting: Setting, value: object, source: str) -> object:
    """The value as the setting's type, or SettingsError naming setting, value and range.

    Text is parsed only from the environment; a config file's value must have the right type.
    """
    given = value

    def wrong() -> SettingsError:
        return SettingsError(
            f"{setting.name} = {_shown(setting, given)} (from {source}) is wrong: it takes "
            f"{setting.describe_range()}."
        )

    if value is None:
        if setting.optional:
            return None
        raise wrong()
    if isinstance(value, str) and setting.type is not str and source.startswith(ENV_PREFIX):
        text = value.strip()
        if setting.optional and text == "":
            return None
        if setting.type is bool:
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise wrong()
        try:
            value = setting.type(text)
        except ValueError:
            raise wrong() from None
    if setting.type is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if setting.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong()
        if setting.type is int and not float(value).is_integer():
            raise wrong()
        if not math.isfinite(value):
            raise wrong()
        value = setting.type(value)
        if setting.minimum is not None and value < setting.minimum:
            raise wrong()
        if setting.maximum is not None and value > setting.maximum:
            raise wrong()
        return value
    if not isinstance(value, str):
        raise wrong()
    if setting.choices and value not in setting.choices:
        raise wrong()
    return value


def check(values: dict[str, object], sources: dict[str, str]) -> dict[str, object]:
    """Coerce every known setting in ``values``; raise one SettingsError listing every wrong one."""
    checked, problems = {}, []
    for name, value in values.items():
        setting = BY_NAME.get(name)
        if setting is None:
            checked[name] = value
            continue
        try:
            checked[name] = coerce(setting, value, sources.get(name, "the defaults"))
        except SettingsError as exc:
            problems.append(str(exc))
    url = checked.get("DATABASE_URL")
    if isinstance(url, str) and not url.startswith(("postgresql://", "postgres://")):
        problems.append(
            "DATABASE_URL is wrong: it takes a postgresql:// URL (leave it unset for SQLite)."
        )
    base_url = checked.get("BASE_URL")
    if isinstance(base_url, str) and not base_url.startswith(("http://", "https://")):
        problems.append(f"BASE_URL = {base_url!r} is wrong: it takes an http:// or https:// URL.")
    if problems:
        raise SettingsError("Settings are wrong:\n  " + "\n  ".join(problems))
    return checked


def _shown(setting: Setting, value: object) -> str:
    return REDACTED if setting.secret and value else repr(value)


def shown(name: str, value: object) -> str:
    """A value as ``config show`` prints it: secrets redacted."""
    setting = BY_NAME.get(name)
    return _shown(setting, value) if setting else repr(value)


def markdown_table() -> str:
    rows = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        if s.default_text:
            default = s.default_text
        elif isinstance(s.default, bool):
            default = str(s.default).lower()
        else:
            default = f"{s.default:g}" if isinstance(s.default, float) else str(s.default)
        allowed = "true/false" if s.type is bool else s.describe_range()
        rows.append(f"| `{s.name}` | `{default}` | {allowed} | {s.help} |")
    return "\n".join(rows)
