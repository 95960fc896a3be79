"""Board assembly: builds the device models of a board description and wires them.

::

    host link ─► hostif ─BAR0─► id/rst (sysctl) · irq · err · db · dma · cp · perf registers
                   └─memory─► bus ─► hbm ◄─ bus ◄─ register DMA
    cp ─► LAUNCH ─► core0 … coreN-1 (CA / CF / unified)
    cp, dma_engines, cores ─► noc (2-D mesh) ─► hbm (at its stack nodes), core SRAM apertures,
                                                host-memory window (at the CP's node)
    irq ◄─ dma, err, cp, cores

One board owns one :class:`~vp.kernel.Simulator`, so one board lives in one process.
"""

from __future__ import annotations

from models.core import Core
from models.core_sync import Cluster
from models.core_timing import CoreParams
from models.cp import CommandProcessor
from models.dma import Dma
from models.dma_engine import DmaEngines
from models.error_unit import ErrorUnit
from models.hbm import Hbm
from models.hostif import HostInterface
from models.irq import InterruptController
from models.noc import Noc
from models.perf import PerfCounters
from models.stats import board_stats
from models.regblock import RegisterBlock
from models.sysctl import SystemControl
from vp.kernel import MemoryTarget, Module, Router, Simulator
from vp.kernel.time import cycles_to_ps
from vp.spec.board_config import BoardConfig, load_board
from vp.spec.memory_map import HOST_BASE, sram_base, sram_owner
from vp.spec.regmap import REGMAP


class Board:
    """A built virtual board. ``sim`` is its simulator, ``top`` the root module ``board``."""

    def __init__(self, config: BoardConfig):
        self.config = config
        self.sim = Simulator(f"board {config.name}")
        try:
            self._build(config)
        except BaseException:
            self.sim.close()
            raise

    @classmethod
    def from_file(cls, path: str | None = None) -> "Board":
        """Build the board described by the YAML file at ``path`` (None: the default board)."""
        return cls(load_board(path))

    def _build(self, cfg: BoardConfig) -> None:
        top = self.top = Module(self.sim, "board")
        timing_only = cfg.mode == "performance"
        self.irq = InterruptController(top, "irq")
        self.errors = ErrorUnit(top, "err", self.irq)
        self.hbm = Hbm.from_config(top, "hbm", cfg.hbm)
        # The host link and the register DMA reach HBM over the bus; cores, the command
        # processor and its DMA engines reach HBM and each other's SRAM over the mesh.
        # Pinned host buffers, seen across the host link (latency + bytes / link bandwidth).
        self.host_mem = MemoryTarget("board.host_mem", cfg.host_link.window,
                                     cfg.host_link.latency_ps, cfg.host_link.bandwidth)
        self.bus = Router(top, "bus")
        self.bus.map(cfg.hbm.base, cfg.hbm.size, self.hbm.target_socket, "hbm")
        self.bus.map(HOST_BASE, cfg.host_link.window, self.host_mem.target_socket, "host")
        self.noc = Noc.from_config(top, "noc", cfg.noc, cfg.chip.clock)
        self.noc.map(cfg.hbm.base, cfg.hbm.size, self.hbm.target_socket,
                     list(cfg.noc.hbm_nodes), "hbm", interleave_bytes=cfg.hbm.interleave_bytes)
        self.noc.map(HOST_BASE, cfg.host_link.window, self.host_mem.target_socket,
                     cfg.noc.cp_node, "host")
        self.dma = Dma(top, "dma", cfg.dma.latency_ps, cfg.dma.bandwidth,
                       cfg.hbm.base, cfg.hbm.size, self.irq, self.errors)
        self.dma.socket.bind(self.bus.target_socket)
        self.sysctl = SystemControl(top, "sysctl", cfg.hbm.size, self.soft_reset)
        self.doorbells = RegisterBlock(REGMAP.block("db"))
        self.dma_engines = DmaEngines(top, "dma_engines", count=cfg.dma.engines,
                                      latency_ps=cfg.dma.latency_ps, bandwidth=cfg.dma.bandwidth,
                                      valid_range=self.valid_range, timing_only=timing_only)
        self.dma_engines.socket.bind(self.noc.port(cfg.noc.cp_node, "dma_engines"))
        self.cp = CommandProcessor(top, "cp", irq=self.irq, errors=self.errors,
                                   doorbells=self.doorbells, mem_base=cfg.hbm.base,
                                   mem_size=cfg.hbm.size,
                                   packet_ps=cycles_to_ps(cfg.cp.packet_cycles, cfg.chip.clock),
                                   watchdog_ps=cfg.cp.watchdog)
        self.cp.socket.bind(self.noc.port(cfg.noc.cp_node, "cp"))
        self.cores = self._build_cores(cfg, timing_only)
        self.cp.attach(self.cores, self.dma_engines)
        self.perf = PerfCounters(top, "perf", self.stats)
        self.hostif = HostInterface(top, "hostif", cfg.host_link.latency_ps,
                                    cfg.host_link.bandwidth,
                                    [(cfg.hbm.base, cfg.hbm.size),
                                     (HOST_BASE, cfg.host_link.window)], self.errors)
        self.hostif.mem_socket.bind(self.bus.target_socket)
        for name, target in (("id", self.sysctl.id_regs), ("irq", self.irq.regs),
                             ("err", self.errors.regs), ("rst", self.sysctl.rst_regs),
                             ("db", self.doorbells), ("dma", self.dma.regs),
                             ("cp", self.cp.regs), ("perf", self.perf.regs)):
            self.hostif.map_block(name, target)
        self._epoch_ps = 0
        self.sim.settle()  # start the processes

    def _build_cores(self, cfg: BoardConfig, timing_only: bool) -> list[Core]:
        """The cores, in core-id order, each at its mesh node with its SRAM aperture mapped."""
        self.cluster = Cluster(cp=self.cp, errors=self.errors, irq=self.irq,
                               hbm_base=cfg.hbm.base, hbm_size=cfg.hbm.size)
        kinds = cfg.cores.kinds()
        cores = []
        for core_id, (kind, node) in enumerate(zip(kinds, cfg.noc.core_nodes(kinds))):
            k = getattr(cfg.cores, kind)
            params = CoreParams(kind=kind, matrix_rows=k.matrix_rows, matrix_cols=k.matrix_cols,
                                vector_lanes=k.vector_lanes, sram_bytes=k.sram,
                                sram_bytes_per_cycle=k.sram_bytes_per_cycle,
                                gemm_mode=k.gemm_mode, clock_hz=cfg.chip.clock)
            core = Core(self.top, f"core{core_id}", core_id=core_id, params=params,
                        cluster=self.cluster, timing_only=timing_only)
            self.noc.map(sram_base(core_id), k.sram, core.sram_socket, node, f"sram{core_id}")
            core.socket.bind(self.noc.port(node, f"core{core_id}"))
            cores.append(core)
        return cores

    def valid_range(self, address: int, nbytes: int) -> bool:
        """True when ``[address, address+nbytes)`` lies inside HBM, the host-memory window or
        one core's SRAM (what the DMA engines may reach)."""
        hbm, window = self.config.hbm, self.config.host_link.window
        if hbm.base <= address and address + nbytes <= hbm.base + hbm.size:
            return True
        if HOST_BASE <= address and address + nbytes <= HOST_BASE + window:
            return True
        owner = sram_owner(address)
        return owner is not None and owner[0] < len(self.cores) and \
            owner[1] + nbytes <= self.cores[owner[0]].params.sram_bytes

    def stats(self) -> dict:
        """Counters, utilisation and energy since the last reset (see models.stats)."""
        units = {"hbm": self.hbm.counters, "noc": self.noc.counters,
                 "dma_engines": self.dma_engines.counters, "cp": self.cp.counters,
                 "hostif": self.hostif.counters,
                 **{f"core{i}": core.counters for i, core in enumerate(self.cores)}}
        return board_stats(units, self.config.cores.kinds(), self.config.energy,
                           self.sim.now - self._epoch_ps)

    def soft_reset(self) -> None:
        """Every block to its reset values; HBM contents and simulated time are kept."""
        self.doorbells.reset()
        self.top.reset()
        self._epoch_ps = self.sim.now

    def power_on_reset(self) -> None:
        """Back to the power-on state: a soft reset that also forgets HBM contents."""
        self.soft_reset()
        self.hbm.power_on()

    def close(self) -> None:
        """End the simulation; another board may then be built in this process."""
        self.sim.close()
