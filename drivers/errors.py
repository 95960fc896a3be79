"""Driver exceptions. Every board-reported error carries code, address and syndrome."""

from __future__ import annotations

from vp.spec.errors import GuestError, RequestError
from vp.spec.regmap import ErrCode
from vp.spec.transport import TransportError

__all__ = ["DeviceError", "IncompatibleDeviceError", "DeviceTimeout", "RequestError",
           "TransportError", "UnknownDeviceUrl"]


class DeviceError(GuestError):
    """The board refused an access, as hardware reports it (``err`` block + interrupt).

    Attributes: ``code`` (:class:`ErrCode`), ``address``, ``syndrome``, and ``register``
    (dotted register name, or None for memory accesses).
    """

    def __init__(self, code: int, address: int, syndrome: int, message: str,
                 register: str | None = None):
        super().__init__(code, address, syndrome, message)
        self.code = _err_code(code)
        self.register = register

    def __reduce__(self):
        return (type(self), (self.code, self.address, self.syndrome, self.message, self.register))

    @classmethod
    def from_guest_error(cls, exc: GuestError) -> "DeviceError":
        return cls(exc.code, exc.address, exc.syndrome, exc.message)


def _err_code(code: int) -> ErrCode | int:
    try:
        return ErrCode(code)
    except ValueError:  # a newer board may report a code this driver does not know
        return code


class IncompatibleDeviceError(RuntimeError):
    """The board's identification or register-map version is not one this driver supports."""


class DeviceTimeout(TimeoutError):
    """An interrupt wait ran out of simulated time."""


class UnknownDeviceUrl(ValueError):
    """A device URL this driver cannot open."""
