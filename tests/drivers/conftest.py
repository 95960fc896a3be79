"""Driver fixtures: every driver test runs over each transport.

The embedded board is built fresh per test (one simulation per process: the fixture always
closes it). The gRPC board is a real ``npuvp serve`` subprocess on loopback, shared by the
session and power-on reset before each test.
"""

from __future__ import annotations

import pytest

import drivers
from tests.helpers.board_server import running_server

TRANSPORTS = ["embedded", "grpc"]


@pytest.fixture(scope="session")
def grpc_address():
    with running_server() as address:
        yield address


def open_on(transport: str, request) -> drivers.Device:
    if transport == "embedded":
        return drivers.open_device("embedded://")
    dev = drivers.open_device(f"grpc://{request.getfixturevalue('grpc_address')}")
    dev.reset()
    return dev


@pytest.fixture(params=TRANSPORTS)
def device(request):
    dev = open_on(request.param, request)
    try:
        yield dev
    finally:
        dev.close()
