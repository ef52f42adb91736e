"""Tell whether EXTFW_ADMIN_PASSWORD opens an existing account, so `make run` prints a true login.

Usage: python -m scripts.admin_login EMAIL (from the repository's root). Exit 0 when the account
exists, is active and has that password; 3 when not (1, a traceback, is a failure to check).
It reads the password hash only: no login attempt, no throttle, no audit event.
"""

import os
import sys

# Only a check: this process must not start the background health sweeps.
os.environ["EXTFW_HEALTH_MONITOR"] = "false"

from werkzeug.security import check_password_hash  # noqa: E402

from extframework import create_app, db  # noqa: E402
from extframework.models import User  # noqa: E402


def password_opens(email: str, password: str) -> bool:
    """Return whether ``password`` logs ``email`` in, by its stored hash."""
    with create_app().app_context(), db.database.connection_context():
        user = User.get_or_none(User.email == email.strip().lower())
        return bool(user and user.is_active and check_password_hash(user.password_hash, password))


if __name__ == "__main__":
    sys.exit(0 if password_opens(sys.argv[1], os.environ.get("EXTFW_ADMIN_PASSWORD", "")) else 3)
