"""A client for the core's storage API (Contract B, SPEC §5), authenticated by the plugin token."""

import json
import os
from collections.abc import Iterator
from urllib.parse import quote

import requests

from extframework_sdk.enrol import read_token
from extframework_sdk.problems import ProblemError, problem_of


class StorageError(ProblemError):
    """The storage API refused a call: ``status``, the problem+json body, and its ``kind``

    (``validation-failed``, ``stale-if-match``, ``namespace-frozen``... docs/errors.md).
    """

    def __init__(self, status: int, problem: dict) -> None:
        detail = problem.get("detail") or problem.get("title") or problem
        super().__init__(f"{status}: {detail}", status, problem)

    @property
    def index(self) -> int | None:
        """In a refused batch: the index of the operation that failed (nothing was applied)."""
        return self.problem.get("index")


class StorageClient:
    """CRUD and queries on this plugin's own collections, one tenant per call.

    The token comes from ``token``, from ``token_source()`` (called for every request), or
    from ``token_file``: read once, and read again when the core answers 401, so a token an
    operator rotated and delivered as a new file reaches a running plugin without a restart.
    """

    def __init__(
        self,
        core_url: str,
        token: str | None = None,
        *,
        token_source=None,
        token_file: str | os.PathLike | None = None,
        timeout_s: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base = core_url.rstrip("/") + "/api/storage"
        self._token = token
        self._token_source = token_source  # a callable, for a token that arrives later
        self._token_file = token_file
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def _current_token(self) -> str | None:
        if self._token is None and self._token_file is not None:
            self._token = read_token(self._token_file)
        return self._token or (self._token_source() if self._token_source else None)

    def _headers(self, token: str | None, tenant: str, extra: dict | None = None) -> dict:
        if not token:
            raise StorageError(401, {"detail": "the plugin has no token yet (not registered)"})
        return {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant, **(extra or {})}

    def _call(self, method: str, path: str, tenant: str, **kwargs) -> requests.Response:
        extra = kwargs.pop("headers", None)
        token = self._current_token()
        response = self._send(method, path, self._headers(token, tenant, extra), kwargs)
        if response.status_code == 401 and self._token_file is not None:
            fresh = read_token(self._token_file)
            if fresh and fresh != token:  # rotated: the file holds a newer token
                self._token = fresh
                response = self._send(method, path, self._headers(fresh, tenant, extra), kwargs)
        if response.status_code >= 400:
            raise StorageError(response.status_code, problem_of(response))
        return response

    def _send(self, method: str, path: str, headers: dict, kwargs: dict) -> requests.Response:
        return self.session.request(
            method, self.base + path, headers=headers, timeout=self.timeout_s, **kwargs
        )

    @staticmethod
    def _path(collection: str, doc_id: str | None = None) -> str:
        path = "/" + quote(collection, safe="")
        return path + "/" + quote(doc_id, safe="") if doc_id is not None else path

    def create(self, collection: str, data: dict, *, tenant: str) -> dict:
        return self._call("POST", self._path(collection), tenant, json=data).json()

    def get(self, collection: str, doc_id: str, *, tenant: str) -> dict:
        return self._call("GET", self._path(collection, doc_id), tenant).json()

    def query(self, collection: str, *, tenant: str, **params) -> dict:
        """Return ``{"items": [...], "next_cursor": ...}``; params are SPEC §5 filters."""
        return self._call("GET", self._path(collection), tenant, params=params).json()

    def pages(self, collection: str, *, tenant: str, **params) -> Iterator[list[dict]]:
        """Yield the query's pages one at a time, following ``next_cursor``; lazily, so a
        caller that stops early never asks for the next page."""
        cursor = None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            page = self.query(collection, tenant=tenant, **params, **extra)
            yield page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def iterate(self, collection: str, *, tenant: str, **params) -> Iterator[dict]:
        """Yield every matching document, page after page (``limit`` sets the page size)."""
        for page in self.pages(collection, tenant=tenant, **params):
            yield from page

    def all(self, collection: str, *, tenant: str, **params) -> list[dict]:
        """Follow the cursor to the end and return every matching document."""
        return list(self.iterate(collection, tenant=tenant, **params))

    def patch(
        self,
        collection: str,
        doc_id: str,
        changes: dict,
        *,
        tenant: str,
        if_match: str | None = None,
    ) -> dict:
        headers = {"Content-Type": "application/merge-patch+json"}
        if if_match is not None:
            headers["If-Match"] = if_match
        return self._call(
            "PATCH",
            self._path(collection, doc_id),
            tenant,
            data=json.dumps(changes),
            headers=headers,
        ).json()

    def delete(self, collection: str, doc_id: str, *, tenant: str) -> None:
        self._call("DELETE", self._path(collection, doc_id), tenant)

    def batch(self, collection: str, operations: list[dict], *, tenant: str) -> list[dict]:
        """Apply up to 1000 operations in order, all or nothing; return one result each.

        Operations are ``{"op": "create", "data": {...}}``, ``{"op": "patch", "id": ...,
        "data": {...}, "if_match": "3"}`` (``if_match`` optional) and ``{"op": "delete",
        "id": ...}``; results are ``{"id", "version"}`` or ``{"deleted": id}``. A failure
        raises StorageError (404, 412, 422; 413 past 1000) whose ``index`` names the operation.
        """
        body = {"operations": list(operations)}
        path = self._path(collection) + "/_batch"
        return self._call("POST", path, tenant, json=body).json()["results"]
