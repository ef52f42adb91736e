"""Bounded calls from the core to a plugin outside the proxy: health probes, migration handlers.

Each call uses its own urllib3 pool that never goes through an environment proxy, follows no
redirect, reads at most ``max_body`` bytes, and gives up when the whole answer, connect to
last byte, has not arrived within ``timeout_s`` (a ``deadlines.Deadline``: the socket is shut
at the deadline, however slowly the plugin trickles its status line, headers or body).
Whatever goes wrong comes back as one sentence naming the URL.
"""

import json as jsonlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationValueError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import TimeoutError as HTTPTimeout

from extframework.services import deadlines


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer at all
    status: str  # "HTTP 200 OK"; empty without an answer
    body: bytes
    latency_ms: float
    failure: str | None  # why there is no complete answer; None when there is one
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive when answered


def call(
    method: str,
    url: str,
    *,
    timeout_s: float,
    max_body: int,
    connect_timeout_s: float | None = None,
    headers: dict[str, str] | None = None,
    json: object = None,
) -> Answer:
    """Make one request to a plugin and read its answer within the time limit."""
    started = time.monotonic()

    def failed(reason: str, status_code: int | None = None) -> Answer:
        return Answer(status_code, "", b"", _ms(started), reason)

    headers = dict(headers or {})
    body = None
    if json is not None:
        body = jsonlib.dumps(json).encode()
        headers["Content-Type"] = "application/json"
    # Its own pool, emptied after the call: probes and handlers are rare, and a connection
    # that outlived a call could only carry a cut answer into the next one.
    pools = deadlines.pool_manager(num_pools=1, maxsize=1)
    timeout = urllib3.Timeout(
        connect=min(connect_timeout_s or timeout_s, timeout_s), read=timeout_s
    )
    status_code = None
    try:
        with deadlines.Deadline(timeout_s) as deadline:
            try:
                response = pools.urlopen(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    timeout=timeout,
                    preload_content=False,
                )
                try:
                    status_code = response.status
                    content = b""
                    for chunk in response.stream(8192):
                        content += chunk
                        if len(content) > max_body:
                            break
                    if deadline.finish():
                        return failed(incomplete(url, timeout_s), status_code)
                    status = f"HTTP {response.status} {response.reason or ''}".strip()
                    return Answer(
                        status_code,
                        status,
                        content[:max_body],
                        _ms(started),
                        None,
                        response.headers.copy(),
                    )
                finally:
                    response.close()
                    response.release_conn()
            except HTTPError:
                if not deadline.finish():
                    raise
                if status_code is None:
                    return failed(f"{url} gave no answer within {timeout_s:g} s")
                return failed(incomplete(url, timeout_s), status_code)
    except LocationValueError as exc:  # a host the IDNA codec refuses (a label over 63 chars)
        return failed(f"{url} is not a URL the core can connect to: {exc}")
    except NewConnectionError as exc:  # before HTTPTimeout: urllib3 makes it a subclass
        return failed(f"could not connect to {url}: {_reason(exc)}")
    except HTTPTimeout:
        if status_code is None:
            return failed(f"{url} gave no answer within {timeout_s:g} s")
        return failed(incomplete(url, timeout_s), status_code)  # while streaming the body
    except ProtocolError as exc:
        if status_code is None:  # the connection broke before any answer
            return failed(f"could not connect to {url}: {_reason(exc)}")
        return failed(f"{url} failed: {_reason(exc)}")
    except HTTPError as exc:
        return failed(f"{url} failed: {_reason(exc)}")
    finally:
        pools.clear()


def incomplete(url: str, timeout_s: float) -> str:
    return f"{url} gave no complete answer within {timeout_s:g} s"


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _reason(exc: Exception) -> str:
    """Name the innermost cause (connection refused, name not resolved) without the noise."""
    cause: BaseException = exc
    while cause.__context__ is not None and cause.__context__ is not cause:
        cause = cause.__context__
    text = str(cause) or type(cause).__name__
    if "Connection refused" in text:
        return "connection refused"
    return text
