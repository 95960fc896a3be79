"""The host driver's device: typed register access, memory, interrupts, reset.

``Device`` talks only to a :class:`~vp.spec.transport.Transport`, so it runs unchanged on the
embedded board, a gRPC board and (later) silicon. Registers are named as in the register map,
``"block.REGISTER"``; fields as ``("block.REGISTER", "FIELD")``. Board-reported errors raise
:class:`~drivers.errors.DeviceError` naming the register, the error code and the syndrome.
Times are simulated picoseconds.
"""

from __future__ import annotations



import json

import numpy as np

from drivers.errors import DeviceError, DeviceTimeout, IncompatibleDeviceError
from drivers.url import DEFAULT_URL, open_transport
from vp.spec.board_config import BoardConfig, parse_board
from vp.spec.errors import GuestError
from vp.spec.host import DeviceInfo, RegOp
from vp.spec.perf_layout import index_of
from vp.spec.regdefs import Register
from vp.spec.regmap import DEVICE_ID, REGMAP, VERSION_MAJOR, VERSION_MINOR, ErrCode
from vp.spec.transport import Transport

_U32 = 0xFFFF_FFFF


class RegisterBatch:
    """Register operations queued and sent as one request (one link round trip per batch on
    a network transport; simulated link time is still charged per access)."""

    def __init__(self, device: "Device"):
        self._device = device
        self._ops: list[RegOp] = []
        self._regs: list[Register] = []

    def read(self, name: str) -> int:
        """Queue a read of ``name``; returns its index in :meth:`execute`'s result."""
        reg = self._device.register(name)
        self._ops.append(RegOp(False, reg.address))
        self._regs.append(reg)
        return len(self._ops) - 1

    def write(self, name: str, value: int) -> int:
        """Queue a write of ``value`` to ``name``; returns its index."""
        reg = self._device.register(name)
        self._ops.append(RegOp(True, reg.address, _check_u32(value, reg.full_name)))
        self._regs.append(reg)
        return len(self._ops) - 1

    def execute(self) -> list[int]:
        """Send the batch; returns one value per op (read data; 0 for writes)."""
        ops, regs = self._ops, self._regs
        self._ops, self._regs = [], []
        return self._device._run_ops(ops, [r.full_name for r in regs])


def _check_u32(value: int, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= _U32:
        raise ValueError(f"{what}: value {value!r} does not fit a 32-bit register")
    return int(value)


class Device:
    """An open board. Use :func:`drivers.open_device`; close it (or use ``with``)."""

    def __init__(self, transport: Transport, url: str = "?"):
        self.url = url
        self._transport = transport
        self.now_ps = 0
        self._board: BoardConfig | None = None
        try:
            self.info: DeviceInfo = self._call(transport.info)
            self.now_ps = self.info.now_ps
            self._check_identity()
        except BaseException:
            transport.close()
            raise

    # -- identity ------------------------------------------------------------------------------
    def _check_identity(self) -> None:
        # Read identification through the register map, as a driver on silicon must.
        device_id, version = self._run_ops(
            [RegOp(False, REGMAP.reg("id.ID").address), RegOp(False, REGMAP.reg("id.VERSION").address)],
            ["id.ID", "id.VERSION"])
        vreg = REGMAP.reg("id.VERSION")
        major, minor = vreg.field("MAJOR").extract(version), vreg.field("MINOR").extract(version)
        if device_id != DEVICE_ID:
            raise IncompatibleDeviceError(
                f"{self.url}: id.ID reads 0x{device_id:08x}, not an npuvp board (expected "
                f"0x{DEVICE_ID:08x}); refusing to drive it")
        if major != VERSION_MAJOR:
            raise IncompatibleDeviceError(
                f"{self.url}: register map version {major}.{minor} is incompatible with this "
                f"driver (built for {VERSION_MAJOR}.{VERSION_MINOR}); update the driver or board")

    @property
    def board(self) -> BoardConfig:
        """The board's description (cores, SRAM sizes, clock, HBM, mode), as the board reports
        it at open (``DeviceInfo.extra["board"]``), parsed with the board-file schema."""
        if self._board is None:
            doc = self.info.extra.get("board")
            if doc is None:
                raise IncompatibleDeviceError(f"{self.url}: the board does not describe itself "
                                              f"(no 'board' in its device info)")
            self._board = parse_board(json.loads(doc), f"{self.url} (board description)")
        return self._board

    # -- registers -----------------------------------------------------------------------------
    @staticmethod
    def register(name: str) -> Register:
        """The register map entry for dotted ``name`` (KeyError suggests close names)."""
        return REGMAP.reg(name)

    def read_reg(self, name: str) -> int:
        """Read the 32-bit register ``name`` (e.g. ``"dma.STATUS"``)."""
        reg = self.register(name)
        return self._run_ops([RegOp(False, reg.address)], [reg.full_name])[0]

    def write_reg(self, name: str, value: int) -> None:
        """Write ``value`` to the 32-bit register ``name``."""
        reg = self.register(name)
        self._run_ops([RegOp(True, reg.address, _check_u32(value, reg.full_name))], [reg.full_name])

    def read_field(self, name: str, field: str) -> int:
        """Read field ``field`` of register ``name``."""
        return self.register(name).field(field).extract(self.read_reg(name))

    def write_fields(self, name: str, **fields: int) -> None:
        """Read-modify-write: set the named fields of ``name``, keep the others.

        Write-1-to-clear and single-pulse fields not named are written as 0 so the write
        has no side effect on them."""
        reg = self.register(name)
        value = 0
        if reg.readable:
            value = self.read_reg(name)
            for f in reg.fields:
                if f.onwrite or f.singlepulse:
                    value = f.insert(value, 0)
        for fname, fvalue in fields.items():
            value = reg.field(fname).insert(value, fvalue)
        self.write_reg(name, value)

    def batch(self) -> RegisterBatch:
        """A batch of register operations sent as one request."""
        return RegisterBatch(self)

    def read_reg_at(self, address: int) -> int:
        """Read the 32-bit register at BAR0 byte ``address`` (bring-up and error tests)."""
        return self._run_ops([RegOp(False, address)], [None])[0]

    def write_reg_at(self, address: int, value: int) -> None:
        """Write the 32-bit register at BAR0 byte ``address``."""
        self._run_ops([RegOp(True, address, _check_u32(value, f"0x{address:x}"))], [None])

    def _run_ops(self, ops: list[RegOp], names: list[str | None]) -> list[int]:
        reply = self._call(self._transport.reg_batch, ops)
        self.now_ps = reply.now_ps
        values = [r.value for r in reply.results]
        last = reply.results[-1] if reply.results else None
        if last is not None and last.status:
            i = len(reply.results) - 1
            raise self._reg_error(ops[i], names[i], last.status, last.value)
        if len(values) != len(ops):
            raise RuntimeError(f"{self.url}: batch of {len(ops)} ops answered {len(values)}")
        return values

    @staticmethod
    def _reg_error(op: RegOp, name: str | None, status: int, syndrome: int) -> DeviceError:
        try:
            code = ErrCode(status)
            why = f"{code.name}: {code.desc}" if getattr(code, "desc", "") else code.name
        except ValueError:
            why = f"error code {status}"
        reg = REGMAP.at(op.address)
        where = name or (reg.full_name if reg else None)
        target = f"{where} (0x{op.address:x})" if where else f"BAR0 offset 0x{op.address:x}"
        kind = f"write of 0x{op.value:08x} to" if op.write else "read of"
        return DeviceError(status, op.address, syndrome,
                           f"{kind} {target} refused: {why} (syndrome 0x{syndrome:x})", where)

    # -- memory --------------------------------------------------------------------------------
    def write_mem(self, address: int, array: np.ndarray | bytes) -> None:
        """Write the bytes of ``array`` (any dtype, C order) to HBM at ``address``."""
        data = np.ascontiguousarray(np.frombuffer(array, np.uint8) if isinstance(array, (bytes, bytearray)) else array)
        self.now_ps = self._call(self._transport.write_mem, int(address), data.reshape(-1).view(np.uint8))

    def read_mem(self, address: int, nbytes: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read ``nbytes`` of HBM from ``address`` as a uint8 array: ``out`` when given (a
        writable contiguous uint8 array of ``nbytes``, reused like a pinned host buffer, which
        spares the page faults of a fresh allocation on large reads), else a new array."""
        data, self.now_ps = self._call(self._transport.read_mem, int(address), int(nbytes), out)
        return data

    # -- interrupts ----------------------------------------------------------------------------
    @staticmethod
    def irq_mask(*sources: str) -> int:
        """Mask of interrupt sources by name, e.g. ``irq_mask("DMA_DONE", "DMA_ERROR")``."""
        status = REGMAP.reg("irq.INT_STATUS")
        return sum(status.field(s).mask for s in sources)

    def wait_irq(self, mask: int, timeout_ps: int) -> int:
        """Run the board until an unmasked interrupt in ``mask`` is pending; returns the
        pending bits of ``mask``. Raises :class:`DeviceTimeout` after ``timeout_ps``."""
        start = self.now_ps
        pending, self.now_ps = self._call(self._transport.wait_irq, mask, timeout_ps)
        if not pending:
            raise DeviceTimeout(f"{self.url}: no interrupt in mask 0x{mask:x} within "
                                f"{timeout_ps} ps of simulated time (waited from {start} ps "
                                f"to {self.now_ps} ps)")
        return pending

    def ack_irq(self, mask: int) -> None:
        """Clear the pending interrupt bits of ``mask`` (write 1 to clear)."""
        self.write_reg("irq.INT_STATUS", mask)

    # -- errors, reset, lifetime ---------------------------------------------------------------
    def last_error(self) -> dict | None:
        """The board's latched first-error record, or None if none is latched."""
        b = self.batch()
        for reg in ("err.ERR_STATUS", "err.ERR_ADDR_LO", "err.ERR_ADDR_HI", "err.ERR_SYNDROME"):
            b.read(reg)
        status, lo, hi, syndrome = b.execute()
        reg = REGMAP.reg("err.ERR_STATUS")
        if not reg.field("VALID").extract(status):
            return None
        return {"code": _code(reg.field("CODE").extract(status)),
                "source": reg.field("SOURCE").extract(status),
                "overflow": bool(reg.field("OVERFLOW").extract(status)),
                "address": lo | hi << 32, "syndrome": syndrome}

    def clear_error(self) -> None:
        """Clear the latched error record (and with it the GUEST_ERROR interrupt level)."""
        self.write_fields("err.ERR_STATUS", VALID=1, OVERFLOW=1)
        self.ack_irq(self.irq_mask("GUEST_ERROR"))

    def stats(self) -> dict:
        """Counters, utilisation per core kind and energy (pJ) since the last reset."""
        stats = self._call(self._transport.stats)
        self.now_ps = stats["now_ps"]
        return stats

    def read_perf_counter(self, unit: str, counter: str) -> int:
        """One counter read through the ``perf`` register window (e.g. ``("core3",
        "macs_bf16")`` or ``("board", "energy_total_pj")``), as firmware without the stats
        call would read it. Indices come from the shared layout of ``vp.spec.perf_layout``."""
        u, c = index_of(self.stats(), unit, counter)
        sel = self.register("perf.PERF_SEL")
        b = self.batch()
        b.write("perf.PERF_SEL", sel.field("COUNTER").insert(sel.field("UNIT").insert(0, u), c))
        lo, hi = b.read("perf.PERF_LO"), b.read("perf.PERF_HI")
        values = b.execute()
        return values[lo] | values[hi] << 32

    def reset(self) -> None:
        """Power-on reset of the board (registers, DMA, interrupts, HBM contents)."""
        self.now_ps = self._call(self._transport.reset)

    def close(self) -> None:
        """Close the link (an embedded board is torn down)."""
        self._transport.close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except DeviceError:
            raise
        except GuestError as exc:
            raise DeviceError.from_guest_error(exc) from None

    def __repr__(self) -> str:
        return f"Device({self.url!r}, board={self.info.board_name!r}, now={self.now_ps} ps)"


def _code(value: int):
    try:
        return ErrCode(value)
    except ValueError:
        return value


def open_device(url: str = DEFAULT_URL) -> Device:
    """Open the board at ``url`` (``embedded://``, ``embedded://board.yaml``,
    ``grpc://host:port``) and check it is an npuvp board this driver supports."""
    return Device(open_transport(url), url)
