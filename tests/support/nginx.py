"""Debian's nginx on loopback, running deploy/nginx/extframework.conf as an operator would."""

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from tests.support.processes import ROOT, free_port

SITE = ROOT / "deploy" / "nginx" / "extframework.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and localhost), its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def render_site(upstream_port: int, http_port: int, https_port: int, cert: Path, key: Path) -> str:
    """The shipped site with only host names, ports and certificate paths changed."""
    text = SITE.read_text()
    swaps = [
        ("/etc/letsencrypt/live/core.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/core.example.com/privkey.pem", str(key)),
        ("server_name core.example.com;", "server_name 127.0.0.1;"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ("listen [::]:80;\n", ""),
        ("listen [::]:443 ssl;\n", ""),
    ]
    for old, new in swaps:
        assert old in text, f"deploy/nginx/extframework.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@dataclass
class Nginx:
    process: subprocess.Popen
    url: str
    http_url: str
    cert: Path | None  # None: a plain-HTTP balancer
    folder: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def access_log(self) -> str:
        path = self.folder / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_access(self, line: str, timeout_s: float = 5.0) -> str:
        """Return the access log once it holds ``line``: nginx writes it after the response."""
        deadline = time.monotonic() + timeout_s
        while line not in (log := self.access_log()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return log

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def main_config(folder: Path, site: Path) -> Path:
    temp = folder / "temp"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers may then read the tmp folder
    config = folder / "nginx.conf"
    config.write_text(
        f"{user}worker_processes 1;\npid {folder}/nginx.pid;\nerror_log {folder}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "  log_format with_id '$request_id $request $status';\n"
        f"  access_log {folder}/access.log with_id;\n"
        + "".join(
            f"  {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  include {site};\n}}\n"
    )
    return config


def check_config(config: Path, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NGINX, "-t", "-p", str(folder), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def start_nginx(folder: Path, upstream_port: int) -> Nginx:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(folder)
    http_port, https_port = free_port(), free_port()
    site = folder / "extframework.conf"
    site.write_text(render_site(upstream_port, http_port, https_port, cert, key))
    process = _run(folder, site)
    nginx = Nginx(
        process, f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", cert, folder
    )
    return _listening(nginx, https_port)


def _run(folder: Path, site: Path) -> subprocess.Popen:
    """nginx in the foreground with ``site`` as its only server, once ``nginx -t`` passes."""
    config = main_config(folder, site)
    checked = check_config(config, folder)
    assert checked.returncode == 0, checked.stderr
    return subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _listening(nginx: Nginx, port: int) -> Nginx:
    deadline = time.monotonic() + 20
    while True:
        assert nginx.process.poll() is None, f"nginx exited: {nginx.error_log()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx
        except OSError:
            assert time.monotonic() < deadline, "nginx did not listen"
            time.sleep(0.05)


def start_balancer(folder: Path, port: int, upstream_ports: list[int]) -> Nginx:
    """nginx as the load balancer in front of several app hosts (docs/scaling.md).

    Round robin with no stickiness; a host that refuses connections is skipped for the next
    (``proxy_next_upstream error``), as a balancer's passive health check does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    servers = "".join(
        f"    server 127.0.0.1:{upstream} max_fails=1 fail_timeout=2s;\n"
        for upstream in upstream_ports
    )
    site = folder / "balancer.conf"
    site.write_text(
        f"upstream app_hosts {{\n{servers}}}\n"
        f"server {{\n  listen 127.0.0.1:{port};\n  location / {{\n"
        "    proxy_pass http://app_hosts;\n    proxy_set_header Host $http_host;\n"
        "    proxy_next_upstream error timeout;\n  }\n}\n"
    )
    process = _run(folder, site)
    url = f"http://127.0.0.1:{port}"
    return _listening(Nginx(process, url, url, None, folder), port)


class FromAddress(HTTPAdapter):
    """Connect from a given loopback address: a second client, as far as nginx can tell."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def client(address: str, cert: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (requests#3829)
    session.verify = str(cert)
    session.mount("https://", FromAddress(address))
    session.mount("http://", FromAddress(address))
    return session
