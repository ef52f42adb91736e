"""The core's tables. Services own every query against them."""

from datetime import UTC, datetime

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from extframework.db import BaseModel
from extframework.dialect import AutoIncrementField, ByteOrderCharField, JSONField

ROLES = ("viewer", "member", "admin")
PLUGIN_STATES = ("registered", "active", "degraded", "disabled", "migrating", "deregistered")
UNINSTALL_POLICIES = ("retain", "archive", "purge")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """Format a stored (naive UTC) time for JSON: ISO 8601 with a ``Z``."""
    return value.isoformat() + "Z" if value else None


# --- identity -----------------------------------------------------------------


class Tenant(BaseModel):
    slug = CharField(unique=True)
    name = CharField()
    created_at = DateTimeField(default=utcnow)


class User(BaseModel):
    email = CharField(unique=True)  # stored lower-cased
    name = CharField(default="")
    password_hash = CharField()
    role = CharField(default="member")
    is_operator = BooleanField(default=False)
    tenant = ForeignKeyField(Tenant, backref="users", on_delete="RESTRICT")
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    # Bumped when the person's sessions and user JWTs must end (logout, password, role,
    # deactivation); both carry the value they were issued at (schema step 5).
    session_generation = IntegerField(default=0)


class LoginThrottle(BaseModel):
    """Failed logins per key (email, client address) inside a sliding window."""

    key = CharField(unique=True)
    failures = IntegerField(default=0)
    window_start = DateTimeField(default=utcnow)


class AuditEvent(BaseModel):
    at = DateTimeField(default=utcnow, index=True)
    actor = CharField()
    action = CharField()
    target = CharField(default="")
    detail = JSONField(default=dict)


# --- registry -----------------------------------------------------------------


class EnrolmentKey(BaseModel):
    key_hash = CharField(unique=True)
    label = CharField(default="")
    uses_left = IntegerField(null=True)  # None: unlimited
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    created_by = CharField()
    created_at = DateTimeField(default=utcnow)
    plugin_id = CharField(null=True)  # None: any plugin_id; else only this one (schema v3)


class Plugin(BaseModel):
    plugin_id = CharField(unique=True)
    name = CharField()
    version = CharField()
    base_url = CharField()
    state = CharField(default="registered", index=True)
    manifest = JSONField()
    token_rotated_at = DateTimeField(default=utcnow)  # when the current token was issued
    restricted = BooleanField(default=False)  # True: only tenants with an Installation
    consecutive_failures = IntegerField(default=0)
    last_health_at = DateTimeField(null=True)
    last_health_ok = BooleanField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


class PluginToken(BaseModel):
    """One plugin token, by its hash (SPEC §4); a rotation keeps the old one live for a grace.

    The current token has no ``expires_at``; a rotated-out one expires after the grace, or is
    revoked at once. ``last_used_at`` is updated at most once a minute (plugin_tokens).
    """

    plugin = ForeignKeyField(Plugin, backref="tokens", on_delete="CASCADE")
    token_hash = CharField(unique=True)
    created_by = CharField(default="")
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    last_used_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)


class ManifestVersion(BaseModel):
    plugin = ForeignKeyField(Plugin, backref="manifest_versions", on_delete="CASCADE")
    version = CharField()
    manifest = JSONField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("plugin", "version"), True),)


class Route(BaseModel):
    """A view or an action the manifest declares; the proxy serves nothing else."""

    plugin = ForeignKeyField(Plugin, backref="routes", on_delete="CASCADE")
    menu_id = CharField()
    action_id = CharField(null=True)  # None: the menu item's view
    label = CharField(default="")
    method = CharField()
    path = CharField()
    role = CharField()
    mode = CharField(default="inline")  # inline | iframe (views only)
    position = IntegerField(default=0)


class Collection(BaseModel):
    plugin = ForeignKeyField(Plugin, backref="collections", on_delete="CASCADE")
    name = CharField()
    schema = JSONField()
    indexes = JSONField(default=list)  # [{"fields": [...]}, ...]
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("plugin", "name"), True),)


class PendingUpdate(BaseModel):
    """A plugin's update that moves ``base_url`` to another origin, awaiting an operator.

    At most one per plugin: a newer update from the plugin replaces it (with a new id, so an
    approval names exactly what the operator reviewed).
    """

    # AUTOINCREMENT: SQLite would otherwise give a replacement the id of the row it replaced.
    id = AutoIncrementField()
    plugin = ForeignKeyField(Plugin, backref="pending_updates", on_delete="CASCADE", unique=True)
    version = CharField()
    base_url = CharField()
    previous_version = CharField()
    previous_base_url = CharField()
    manifest = JSONField()
    changes = JSONField(default=list)  # the schema diff against the installed version
    requested_by = CharField()
    requested_at = DateTimeField(default=utcnow)


class Transition(BaseModel):
    plugin = ForeignKeyField(Plugin, backref="transitions", on_delete="CASCADE")
    from_state = CharField(null=True)
    to_state = CharField()
    cause = CharField()
    actor = CharField()
    at = DateTimeField(default=utcnow)


class HealthCheck(BaseModel):
    plugin = ForeignKeyField(Plugin, backref="health_checks", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    ok = BooleanField()
    status_code = IntegerField(null=True)
    latency_ms = FloatField(null=True)
    detail = CharField(default="")


class Installation(BaseModel):
    """A plugin in a tenant; carries that tenant's uninstall policy.

    ``available`` matters only while the plugin is restricted: False keeps the row (and the
    policy) of a tenant the plugin was taken away from. ``installed`` is the tenant's own
    choice among the plugins available to it (its admin's install/uninstall, schema step 9):
    False takes the plugin out of that tenant whatever the operator made available.
    """

    plugin = ForeignKeyField(Plugin, backref="installations", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, backref="installations", on_delete="CASCADE")
    uninstall_policy = CharField(default="retain")
    available = BooleanField(default=True)
    installed = BooleanField(default=True)
    installed_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("plugin", "tenant"), True),)


class MigrationRun(BaseModel):
    """One breaking update being migrated (SPEC §7): its attempts, outcome and credential."""

    plugin = ForeignKeyField(Plugin, backref="migration_runs", on_delete="CASCADE")
    from_version = CharField()
    to_version = CharField()
    manifest = JSONField()  # the target version's manifest, recorded on success
    diff = JSONField(default=list)  # the breaking changes that made it a migration
    state = CharField(default="running", index=True)  # running | failed | succeeded
    attempts = IntegerField(default=1)
    last_error = TextField(default="")
    report = JSONField(default=dict)
    credential_hash = CharField(null=True, unique=True)  # sha256 of the efmc_ credential
    credential_expires_at = DateTimeField(null=True)
    owner = CharField(default="")  # host:pid:nonce of the process running the attempt
    lease_expires_at = DateTimeField(null=True)
    created_by = CharField(default="")
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)


class Archive(BaseModel):
    """A compressed copy of one tenant's data of one plugin, written at deregistration."""

    plugin_id = CharField(index=True)
    tenant = CharField()
    path = CharField(unique=True)  # relative to <instance>/archives
    sha256 = CharField()
    documents = IntegerField()
    size_bytes = IntegerField()
    created_by = CharField()
    created_at = DateTimeField(default=utcnow)
    restored_by = CharField(null=True)
    restored_at = DateTimeField(null=True)


class Lease(BaseModel):
    """A named lock with an expiry, so one process at a time runs a periodic job."""

    name = CharField(unique=True)
    holder = CharField()
    expires_at = FloatField()  # unix time


# --- storage ------------------------------------------------------------------


class Document(BaseModel):
    """One JSON document; (tenant, plugin_id, collection) is its namespace."""

    pk = AutoField()
    # Byte order on both engines: exports and archives list namespaces in it.
    tenant = ByteOrderCharField()
    plugin_id = ByteOrderCharField()
    collection = ByteOrderCharField()
    doc_id = ByteOrderCharField()
    version = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    data = JSONField()

    class Meta:
        # The second index serves every namespace-scoped scan in key order: SQLite ends each
        # index with the rowid (``pk``), so it is (plugin_id, tenant, collection, pk) — see
        # docs/storage.md (schema step 6 adds it to older databases).
        indexes = (
            (("tenant", "plugin_id", "collection", "doc_id"), True),
            (("plugin_id", "tenant", "collection"), False),
        )


class SigningKeyRow(BaseModel):
    """A JWT signing key (services/signing_keys.py); the private key sealed under SECRET_KEY."""

    generation = IntegerField(unique=True)  # 1, 2, …: two hosts cannot both add the same one
    kid = CharField(unique=True)
    alg = CharField()
    created_at = FloatField()  # Unix times, as the JWTs' own
    sign_from = FloatField()
    withdrawn_at = FloatField(null=True)
    withdrawn_why = CharField(null=True)
    private_key = TextField(null=True)  # None once withdrawn

    class Meta:
        table_name = "signing_key"


ALL_MODELS = [
    Tenant,
    User,
    LoginThrottle,
    AuditEvent,
    EnrolmentKey,
    Plugin,
    PluginToken,
    ManifestVersion,
    Route,
    Collection,
    Transition,
    HealthCheck,
    Installation,
    Lease,
    Document,
    MigrationRun,
    Archive,
    PendingUpdate,
    SigningKeyRow,
]
