"""Device URLs: which board to open and over which transport.

* ``embedded://`` — the default board, in this process;
* ``embedded:///path/board.yaml`` or ``embedded://path/board.yaml`` — that board file, in process;
* ``grpc://host:port`` — a board served by ``npuvp serve`` (bulk memory through a shared-memory
  window when the host is a loopback address; ``grpc://host:port?shm=0`` always streams).
"""

from __future__ import annotations

import importlib

from drivers.errors import UnknownDeviceUrl
from vp.spec.transport import Transport

DEFAULT_URL = "embedded://"
#: The embedded transport lives on the device side; it is loaded by name, never imported.
EMBEDDED_MODULE = "vp.embedded"


def open_transport(url: str) -> Transport:
    """The transport for ``url`` (see module doc); :class:`UnknownDeviceUrl` if unsupported."""
    if not isinstance(url, str) or "://" not in url:
        raise UnknownDeviceUrl(f"device URL {url!r} is not of the form SCHEME://...; "
                               "expected embedded://[board.yaml] or grpc://host:port")
    scheme, rest = url.split("://", 1)
    if scheme == "embedded":
        return importlib.import_module(EMBEDDED_MODULE).open_transport(rest or None)
    if scheme == "grpc":
        rest, _, query = rest.partition("?")
        options = dict(item.partition("=")[::2] for item in query.split("&") if item)
        if set(options) - {"shm"} or options.get("shm", "1") not in ("0", "1"):
            raise UnknownDeviceUrl(f"device URL {url!r}: the only option is shm=0|1")
        host, sep, port = rest.rstrip("/").rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UnknownDeviceUrl(f"device URL {url!r}: expected grpc://host:port with a port "
                                   "number between 1 and 65535")
        from drivers.transport_grpc import GrpcTransport
        shm = None if "shm" not in options else options["shm"] == "1"
        return GrpcTransport(f"{host}:{port}", shm=shm)
    raise UnknownDeviceUrl(f"device URL {url!r}: unknown scheme {scheme!r}; "
                           "expected 'embedded' or 'grpc'")
