"""Ports for test processes: free, never handed out twice, one slice per pytest-xdist worker."""

import itertools
import socket
from pathlib import Path

from tests.support.processes import _port_slice, free_port


def test_workers_hand_out_ports_from_disjoint_slices_below_the_ephemeral_range(monkeypatch):
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    slices = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(set(_port_slice()))
    assert all(len(ports) > 1000 for ports in slices)
    assert all(not a & b for a, b in itertools.combinations(slices, 2))
    assert max(max(ports) for ports in slices) < ephemeral_low


def test_a_free_port_can_be_bound_and_is_not_handed_out_again():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
