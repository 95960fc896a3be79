"""The transport interface the driver talks to; defined in the host/board contract
(:mod:`vp.spec.transport`) so the embedded board can implement it without importing the driver."""

from vp.spec.transport import Transport, TransportError

__all__ = ["Transport", "TransportError"]
