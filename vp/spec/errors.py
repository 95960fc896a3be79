"""Errors that cross the host link, shared by the device side and the driver.

``GuestError`` is what hardware would report (the error register and interrupt carry the same
code, address and syndrome); ``RequestError`` is a request the link refuses before it reaches
the board (bad shape, too large). Neither ever means the board is lost: it keeps its state and
keeps serving.
"""

from __future__ import annotations


class GuestError(Exception):
    """The board refused an access the way hardware does.

    Attributes:
        code: ``ErrCode`` value from the register map (``err.ERR_STATUS.CODE``).
        address: faulting byte address (BAR offset or HBM address, see ``code``).
        syndrome: code-specific detail, as latched in ``err.ERR_SYNDROME``.
    """

    def __init__(self, code: int, address: int, syndrome: int, message: str):
        super().__init__(message)
        self.code = int(code)
        self.address = int(address)
        self.syndrome = int(syndrome)
        self.message = message

    def __reduce__(self):  # picklable across process boundaries
        return (type(self), (self.code, self.address, self.syndrome, self.message))


class RequestError(ValueError):
    """A host request that is malformed or too large; refused before it reaches the board."""
