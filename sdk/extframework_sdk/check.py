"""Check a plugin against the core's contract from any CI: ``extframework-check``.

    extframework-check MANIFEST.json --core https://core.example --token-file plugin.token
    python -m extframework_sdk.check MANIFEST.json --core URL --token T [--json]

The core runs the probes (only it can sign request JWTs): ``POST …/{id}/manifest-check``, the
dry run of an update, and ``POST …/{id}/contract-check``, which probes ``/health``, every
declared view with six bad request JWTs and a valid one, and the fragment. The token is the
plugin's own (then the manifest's ``base_url`` must be the registered one) or an operator's
user JWT. Prints one ``PASS|WARN|FAIL check [route]: detail`` line per check (the dry run's
changes indented under ``core``), or the checks as JSON; exits 1 when a check fails, 2 when
the core cannot be asked.
"""

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

import requests

TIMEOUT_S = 600.0  # the core bounds a whole check (CONTRACT_CHECK_TIMEOUT_S, 30 s by default)


class CheckError(Exception):
    """The core could not be asked, or refused to run the checks."""


def _post(core_url: str, plugin_id: str, what: str, manifest: object, token: str) -> dict:
    url = f"{core_url.rstrip('/')}/api/registry/plugins/{quote(plugin_id, safe='')}/{what}"
    try:
        response = requests.post(
            url, json=manifest, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_S
        )
    except requests.RequestException as exc:
        raise CheckError(f"could not reach {url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        detail = body.get("detail") if isinstance(body, dict) else None
        raise CheckError(f"{url} answered {response.status_code}: {detail or response.text[:200]}")
    return body


def run(core_url: str, manifest: object, token: str) -> tuple[dict, list[dict]]:
    """Ask the core for the dry run's verdict and the checks; return both."""
    plugin_id = manifest.get("plugin_id") if isinstance(manifest, dict) else None
    if not isinstance(plugin_id, str) or not plugin_id:
        raise CheckError("the manifest names no plugin_id")
    verdict = _post(core_url, plugin_id, "manifest-check", manifest, token)
    checks = _post(core_url, plugin_id, "contract-check", manifest, token).get("checks")
    if not isinstance(checks, list):
        raise CheckError(f"{core_url} answered no checks: is it an extframework core?")
    return verdict, checks


def lines(verdict: dict, checks: list[dict]) -> list[str]:
    """One line per check; the dry run's changes and migration indented under ``core``."""
    out = []
    for result in checks:
        route = f" {result['route']}" if result.get("route") else ""
        out.append(f"{result['level'].upper()} {result['check']}{route}: {result['detail']}")
        if result["check"] == "core":
            for change in verdict.get("diff", []):
                kind = "breaking" if change.get("breaking") else "compatible"
                out.append(
                    f"    {kind} change in {change.get('collection')} "
                    f"{change.get('path') or '/'}: {change.get('kind')}"
                )
            handler = (verdict.get("migration") or {}).get("handler")
            if handler:
                out.append(f"    migration handler: POST {handler['url']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="extframework-check", description="Check a plugin against the core's contract."
    )
    parser.add_argument("manifest", type=Path, help="the plugin's manifest (JSON)")
    parser.add_argument("--core", required=True, help="the core's URL")
    tokens = parser.add_mutually_exclusive_group(required=True)
    tokens.add_argument("--token", help="the plugin token, or an operator's user JWT")
    tokens.add_argument("--token-file", type=Path, help="a file holding the token")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    try:
        manifest = json.loads(args.manifest.read_text())
        token = args.token or args.token_file.read_text().strip()
        verdict, checks = run(args.core, manifest, token)
    except (OSError, ValueError, CheckError) as exc:
        print(f"extframework-check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(checks, indent=2))
    else:
        print("\n".join(lines(verdict, checks)))
    return 0 if all(result["ok"] for result in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
