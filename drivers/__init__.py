"""npuvp host driver: open a board, access its registers and memory, wait for interrupts.

    import drivers
    with drivers.open_device("embedded://") as dev:
        dev.write_reg("id.SCRATCH", 0x1234)

The driver imports only the host/board contract (``vp.spec``, ``vp.proto``); it runs unchanged
over every transport.
"""

from drivers.device import Device, RegisterBatch, open_device
from drivers.errors import (DeviceError, DeviceTimeout, IncompatibleDeviceError, RequestError,
                            TransportError, UnknownDeviceUrl)

__all__ = ["open_device", "Device", "RegisterBatch", "DeviceError", "DeviceTimeout",
           "IncompatibleDeviceError", "RequestError", "TransportError", "UnknownDeviceUrl"]
