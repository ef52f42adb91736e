"""Schemathesis hooks for tests/test_fuzz_api.py.

Loaded by the Schemathesis CLI from this file's path (config ``hooks``), never imported by
pytest.

``before_call`` keeps the core on loopback: a generated manifest's ``base_url`` (which the
core probes at registration and update) gets its scheme and authority replaced by the core's
own (``EXTFW_FUZZ_LOOPBACK``), whose ``…/health`` is a 404, so the probe fails without the
core ever resolving or connecting to a generated host. Only strings the meta-schema's
``base_url`` pattern could accept are rewritten; any other is refused before any probe.

``credential_refused`` (enabled only in the runs with a wrong credential) fails any answer
that is not a refusal: a call carrying exactly one of the run's wrong credentials
(``EXTFW_FUZZ_WRONG``, a JSON list) must get one of ``EXTFW_FUZZ_REFUSED`` (SPEC §4: a token
where another belongs is ``401``, a person without the role ``403``); a call whose credential
Schemathesis replaced or dropped (negative data in the ``Authorization`` header) must get
``401``. Nothing may succeed, and nothing may fail another way either (a ``400`` tells a
stranger what the body should have been).
"""

import json
import os
import re

import schemathesis
from schemathesis.core.parameters import ParameterLocation

# Scheme and authority, as far as the meta-schema's base_url pattern (^https?://[^\s/?#]+…) reaches
AUTHORITY = re.compile(r"^https?://[^/?#]+")


@schemathesis.hook
def before_call(context, case, kwargs):
    """Point a generated manifest's base_url at the core itself, on loopback."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("base_url"), str):
        loopback = os.environ["EXTFW_FUZZ_LOOPBACK"]
        body["base_url"] = AUTHORITY.sub(lambda _: loopback, body["base_url"], count=1)


@schemathesis.check
def credential_refused(ctx, response, case):
    """Every call made with a wrong credential is refused with the status this run expects."""
    if case.method.upper() != case.operation.method.upper():
        return None  # a method the document does not declare: 405 before any credential check
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
        return None  # a path the router matches to no operation: 404 before any credential
    headers = response.request.headers
    wrong = {f"Bearer {token}" for token in json.loads(os.environ["EXTFW_FUZZ_WRONG"])}
    expected = {401}
    if headers.get("Authorization") in wrong:
        refused = {int(code) for code in os.environ["EXTFW_FUZZ_REFUSED"].split(",")}
        # A generated session cookie is a second, made-up credential: either refusal fits.
        expected = refused | expected if "Cookie" in headers else refused
    if response.status_code not in expected:
        raise AssertionError(
            f"{case.method} {case.formatted_path} with a wrong credential answered "
            f"{response.status_code}, not {' or '.join(map(str, sorted(expected)))}"
        )
    return None
