"""A plugin-like writer: create documents until stopped, logging each acknowledged id.

Usage: python tests/support/writer.py <core url> <plugin token> <acked file>

Each id is appended to the acked file only after its 201 arrived, one line per id, with
the line written to the kernel before the next request; a SIGKILL can lose only the id
of a request whose answer had not been logged, never a logged one.
"""

import os
import sys

import requests


def main(url: str, token: str, acked_path: str) -> None:
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    fd = os.open(acked_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n = 0
    while True:
        n += 1
        try:
            response = session.post(
                f"{url}/api/storage/notes",
                json={"title": f"doc {n}", "count": n},
                headers=headers,
                timeout=10,
            )
        except requests.RequestException:
            sys.exit(3)  # the core went away
        if response.status_code != 201:
            sys.exit(f"unexpected {response.status_code}: {response.text}")
        os.write(fd, f"{response.json()['id']} {n}\n".encode())


if __name__ == "__main__":
    main(*sys.argv[1:4])
