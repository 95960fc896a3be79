"""Per-call reports: simulated latency, throughput, utilisation, traffic and energy.

A :class:`Report` is built from the simulated duration of each step (the TIMESTAMP packets
that bracket it: device time only, host link excluded) and the difference of the board's
statistics (``Device.stats()``) before and after the call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PS_PER_S = 10 ** 12


@dataclass
class Report:
    """What one ``generate``/``embed`` call cost on the simulated chip.

    Times in ps unless the name says otherwise; bytes; energy in joules (``energy_j``) and
    joules per generated token (``energy_per_token_j``); utilisation in [0, 1] per core kind
    (busy time / (cores × elapsed), over the call).
    """

    placement: str
    dtype: str
    board: str
    batch: int
    prompt_tokens: int
    new_tokens: int
    steps: int
    step_ps: list[int] = field(default_factory=list)
    ttft_ps: int = 0
    decode_ps_per_token: float = 0.0
    total_ps: int = 0
    tokens_per_s: float = 0.0
    utilisation: dict[str, float] = field(default_factory=dict)
    hbm_bytes: int = 0
    noc_bytes: int = 0
    energy_j: float = 0.0
    energy_per_token_j: float = 0.0
    instructions: int = 0

    @classmethod
    def build(cls, *, placement: str, dtype: str, board: str, batch: int, prompt_tokens: int,
              new_tokens: int, step_ps: list[int], before: dict, after: dict,
              instructions: int) -> "Report":
        total = sum(step_ps)
        decode = step_ps[1:]
        elapsed = max(1, after["elapsed_ps"] - before["elapsed_ps"])
        util = {}
        for kind, k in after["kinds"].items():
            busy = k["busy_ps"] - before["kinds"][kind]["busy_ps"]
            util[kind] = round(busy / (k["cores"] * elapsed), 4) if k["cores"] else 0.0
        hbm = after["units"]["hbm"]
        hbm0 = before["units"]["hbm"]
        energy = (after["energy_pj"]["total"] - before["energy_pj"]["total"]) * 1e-12
        produced = new_tokens if new_tokens else prompt_tokens
        return cls(placement, dtype, board, batch, prompt_tokens, new_tokens, len(step_ps),
                   step_ps, step_ps[0] if step_ps else 0,
                   (sum(decode) / len(decode)) if decode else 0.0, total,
                   (produced * PS_PER_S / total) if total else 0.0, util,
                   hbm["bytes_read"] + hbm["bytes_written"] - hbm0["bytes_read"]
                   - hbm0["bytes_written"],
                   after["units"]["noc"]["bytes"] - before["units"]["noc"]["bytes"],
                   energy, energy / produced if produced else 0.0, instructions)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        util = ", ".join(f"{k.upper()} {v:.1%}" for k, v in self.utilisation.items())
        if not self.new_tokens:                 # an encoder pass (embed)
            return "\n".join([
                f"board {self.board} ({self.placement}, {self.dtype}), batch {self.batch}: "
                f"{self.prompt_tokens} tokens encoded in {self.total_ps / 1e6:.3f} us "
                f"({self.tokens_per_s:,.0f} tokens/s at the chip clock)",
                f"  utilisation {util}; HBM {self.hbm_bytes:,} B, NoC {self.noc_bytes:,} B",
                f"  energy {self.energy_j * 1e3:.4f} mJ, "
                f"{self.energy_per_token_j * 1e6:.3f} uJ/token"])
        lines = [
            f"board {self.board} ({self.placement}, {self.dtype}), batch {self.batch}: "
            f"{self.prompt_tokens} prompt tokens, {self.new_tokens} new tokens in "
            f"{self.steps} steps",
            f"  time to first token {self.ttft_ps / 1e6:.3f} us, decode "
            f"{self.decode_ps_per_token / 1e6:.3f} us/step, {self.tokens_per_s:,.0f} tokens/s "
            f"at the chip clock",
            f"  utilisation {util}; HBM {self.hbm_bytes:,} B, NoC {self.noc_bytes:,} B",
            f"  energy {self.energy_j * 1e3:.4f} mJ, {self.energy_per_token_j * 1e6:.3f} uJ/token",
        ]
        return "\n".join(lines)
