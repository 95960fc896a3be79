"""Run a real ``npuvp serve`` subprocess on loopback for a test.

    from tests.helpers.board_server import running_server

    with running_server() as address:        # "127.0.0.1:PORT"
        transport = GrpcTransport(address)

The server is started exactly as a user would (``python -m vp.cli serve --port 0 --port-file F``),
waited for until it has written its port, and always stopped (SIGTERM, then SIGKILL) on exit.
If it dies or does not come up, the error carries its output. The launcher itself is
``vp.server.server_subprocess`` (shared with the gRPC benchmark).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from vp.server import child_env, serve_command, server_subprocess, stop_process

__all__ = ["running_server", "serve_command", "child_env", "stop_process"]


@contextlib.contextmanager
def running_server(board_path: str | os.PathLike | None = None, *,
                   timeout_s: float = 60.0) -> Iterator[str]:
    """Start a board server subprocess for ``board_path`` (None: the default board); yield its
    ``"host:port"``; stop it on exit."""
    with server_subprocess(board_path, timeout_s=timeout_s) as (address, _proc):
        yield address
