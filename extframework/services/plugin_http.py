"""Bounded calls from the core to a plugin outside the proxy: health probes, migration handlers.

Each call uses its own session that never goes through an environment proxy, follows no
redirect, reads at most ``max_body`` bytes, and gives up when the whole answer, connect to
last byte, has not arrived within ``timeout_s`` (a ``deadlines.Deadline``: the socket is shut
at the deadline, however slowly the plugin trickles its status line, headers or body).
Whatever goes wrong comes back as one sentence naming the URL.
"""

import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import LocationValueError

from extframework.services import deadlines


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer at all
    status: str  # "HTTP 200 OK"; empty without an answer
    body: bytes
    latency_ms: float
    failure: str | None  # why there is no complete answer; None when there is one


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

    session = requests.Session()
    session.trust_env = False  # plugins are reached directly, never through an env proxy
    adapter = deadlines.DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    status_code = None
    try:
        with deadlines.Deadline(timeout_s) as deadline:
            try:
                with session.request(
                    method,
                    url,
                    headers=headers,
                    json=json,
                    timeout=(min(connect_timeout_s or timeout_s, timeout_s), timeout_s),
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    status_code = response.status_code
                    body = b""
                    for chunk in response.iter_content(8192):
                        body += chunk
                        if len(body) > max_body:
                            break
                    if deadline.finish():
                        return failed(incomplete(url, timeout_s), status_code)
                    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
                    return Answer(status_code, status, body[:max_body], _ms(started), None)
            except requests.RequestException:
                if not deadline.finish():
                    raise
                if status_code is None:
                    return failed(f"{url} gave no answer within {timeout_s:g} s")
                return failed(incomplete(url, timeout_s), status_code)
    except requests.Timeout:
        return failed(f"{url} gave no answer within {timeout_s:g} s")
    except requests.ConnectionError as exc:
        if "timed out" in str(exc).lower():  # a read timeout while streaming the body
            return failed(incomplete(url, timeout_s))
        return failed(f"could not connect to {url}: {_reason(exc)}")
    except requests.RequestException as exc:
        return failed(f"{url} failed: {_reason(exc)}")
    except LocationValueError as exc:  # a host the IDNA codec refuses (a label over 63 chars)
        return failed(f"{url} is not a URL the core can connect to: {exc}")
    finally:
        session.close()


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
