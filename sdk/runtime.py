"""The SDK runtime: load a model onto a board through the driver, run it, report.

Everything goes through the host driver (``drivers``): weights are written with the bulk
path, steps are submitted to a command queue, completion is a fence interrupt, results are
read back from HBM. The same code runs on ``embedded://`` and ``grpc://`` boards (and later
silicon)::

    from sdk.runtime import Session
    s = Session.load("path/to/model", device="embedded://", placement="afd")
    out = s.generate(["Hello"], max_new_tokens=16)       # out.tokens, out.text, out.report
    s.close()

A board in performance mode has no data: :meth:`Session.from_config` compiles for it without
weights and ``generate`` returns timing reports (tokens are placeholders: id 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
import numpy as np

import drivers
from drivers.queue import CommandQueue
from sdk.compiler import CompileError, Plan, Segment, StepCompiler, Target
from sdk.compiler.plan import RING_BYTES
from sdk.kvcache import PagedKVCache
from sdk.model_config import ModelConfig, load_config
from sdk.reference import ReferenceModel
from sdk.report import Report
from sdk.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer
from vp.spec import isa

#: Simulated time one step may take before the driver gives up (ps): 1000 s.
STEP_TIMEOUT_PS = 10 ** 15


@dataclass
class Generation:
    """Result of :meth:`Session.generate`: new token ids per prompt, their text (with a
    tokenizer), and the :class:`Report`."""

    tokens: list[list[int]]
    text: list[str] | None
    report: Report
    logits: list[np.ndarray] | None = None      # with return_logits: (B, V) per step


@dataclass
class Embedding:
    """Result of :meth:`Session.embed`: (B, d_model) fp32 mean-pooled embeddings + report."""

    embeddings: np.ndarray
    report: Report


def _progress(enabled: bool, total: int, desc: str, unit: str = "it"):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False)


class Session:
    """A model compiled for and loaded onto one board.

    ``placement``: ``afd`` or ``unified``; ``dtype``: ``fp32``, ``bf16`` or ``int8``
    (weight-only); ``max_batch`` sequences of up to ``max_context`` positions;
    ``page_tokens`` positions per KV-cache block; ``progress`` shows bars on stderr;
    ``resident_weights``: the dense cores keep the weight tiles that fit in SRAM from one
    step of a call to the next (the first step of each ``generate``/``embed`` call loads
    them; see :meth:`sdk.compiler.plan.Plan._plan_resident`); ``micro_batches``: 1 or 2
    (ping-pong, ``afd`` only; default: 2 on ``afd`` when ``max_batch >= 2``).
    """

    def __init__(self, config: ModelConfig, device, *, model: ReferenceModel | None = None,
                 tokenizer: Tokenizer | None = None, placement: str = "afd",
                 dtype: str = "fp32", max_batch: int = 4, max_context: int | None = None,
                 page_tokens: int = 64, progress: bool = False,
                 resident_weights: bool = True, micro_batches: int | None = None):
        self.config, self.model, self.tokenizer = config, model, tokenizer
        self.progress = progress
        self._own_device = isinstance(device, str)
        self.dev = drivers.open_device(device) if isinstance(device, str) else device
        try:
            self.target = Target.from_board(self.dev.board, placement)
            self.plan = Plan(config, self.target, dtype=dtype, max_batch=max_batch,
                             max_context=max_context, page_tokens=page_tokens,
                             resident_weights=resident_weights, micro_batches=micro_batches)
            # True while the cores' SRAM holds the resident tiles as this session's last
            # step left them (reset at every call: the board may have run anything between)
            self._resident_loaded = False
            if model is None and not self.target.performance:
                raise CompileError(f"board {self.target.board_name!r} is in functional mode: "
                                   f"it needs the model's weights (load a checkpoint)")
            self.compiler = StepCompiler(self.plan)
            self.kv = PagedKVCache(self.plan.n_blocks, page_tokens)
            self.queue = CommandQueue(self.dev, 0, self.plan.ring, RING_BYTES)
            if not self.target.performance:
                self._upload()
        except BaseException:
            self.close()
            raise

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | os.PathLike, device="embedded://", **kw) -> "Session":
        """Load ``config.json``, the safetensors weights and ``tokenizer.json`` (if present)
        from ``model_dir`` and upload them (checked completely before anything is written)."""
        config = load_config(model_dir)
        has_tok = os.path.isfile(os.path.join(model_dir, TOKENIZER_FILE))
        model = ReferenceModel.from_pretrained(model_dir)
        return cls(config, device, model=model,
                   tokenizer=load_tokenizer(model_dir) if has_tok else model.tokenizer, **kw)

    @classmethod
    def from_config(cls, config: ModelConfig, device, **kw) -> "Session":
        """A session without weights, for a board in performance mode."""
        return cls(config, device, **kw)

    def _upload(self) -> None:
        images = list(self.plan.weight_images(self.model))
        bar = _progress(self.progress, sum(a.nbytes for _, a in images), "upload", "B")
        for address, array in images:
            self.dev.write_mem(address, np.ascontiguousarray(array))
            if bar:
                bar.update(array.nbytes)
        if bar:
            bar.close()

    def close(self) -> None:
        if getattr(self, "_own_device", False) and getattr(self, "dev", None) is not None:
            self.dev.close()
            self.dev = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs -------------------------------------------------------------------------------
    def _ids(self, prompts) -> list[np.ndarray]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)):
            raise TypeError("expected a list of prompts (strings or lists of token ids)")
        if not prompts:
            raise ValueError("no prompts")
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                if self.tokenizer is None:
                    raise ValueError("text prompts need a tokenizer (the model directory has "
                                     "no tokenizer.json); pass token ids")
                p = self.tokenizer.encode(p)
            a = np.asarray(p)
            if a.size == 0:
                raise ValueError(f"prompt {i} is empty")
            if not np.issubdtype(a.dtype, np.integer):
                raise TypeError(f"prompt {i}: token ids must be integers, got {a.dtype}")
            a = a.astype(np.int64).reshape(-1)
            bad = (a < 0) | (a >= self.config.vocab_size)
            if bad.any():
                raise ValueError(f"prompt {i}: token id {int(a[bad][0])} is outside the "
                                 f"vocabulary [0, {self.config.vocab_size})")
            out.append(a)
        if len(out) > self.plan.max_batch:
            raise ValueError(f"{len(out)} prompts exceed the session's max_batch of "
                             f"{self.plan.max_batch}")
        return out

    # -- running a step -----------------------------------------------------------------------
    def _run(self, groups: list[list[int]], segments: dict[int, Segment]) -> tuple[np.ndarray, int, int]:
        """Compile, load and run one step; returns (outputs by sequence, step ps, instructions)."""
        step = self.compiler.compile([[segments[i] for i in g] for g in groups],
                                     resident_loaded=self._resident_loaded)
        self._resident_loaded = False
        for address, image in step.images():
            self.dev.write_mem(address, np.ascontiguousarray(image))
        self.queue.submit(*step.packets)
        self.queue.sync(STEP_TIMEOUT_PS)
        self._resident_loaded = True
        # TIMESTAMP packets write real bytes in both modes (only core data is timing-only)
        t0, t1 = (int(t) for t in self.dev.read_mem(step.timestamps, 16).view("<u8"))
        step_ps = (t1 - t0) * isa.TIMESTAMP_UNIT_PS
        width = self.config.vocab_size if self.config.causal else self.config.d_model
        out = np.zeros((sum(len(g) for g in groups), width), np.float32)
        if not self.target.performance:
            for mb, rows, address in step.outputs:
                data = self.dev.read_mem(address, rows * width * 4).view(np.float32)
                out[groups[mb]] = data.reshape(rows, width)
        return out, step_ps, step.instructions

    # -- public calls -------------------------------------------------------------------------
    def generate(self, prompts, max_new_tokens: int = 16, *, temperature: float = 0.0,
                 top_k: int = 0, seed: int = 0, eos_token_id: int | None = None,
                 return_logits: bool = False) -> Generation:
        """Generate ``max_new_tokens`` per prompt (greedy when ``temperature`` is 0, else
        sampled from softmax(logits / temperature) over the ``top_k`` best (0 = all), seeded).
        With ``eos_token_id`` each sequence's tokens are cut after its first EOS;
        ``return_logits`` keeps each step's fp32 logits (B, V)."""
        if not self.config.causal:
            raise ValueError(f"generate needs a decoder (gpt2, llama); this model is "
                             f"{self.config.arch} (use embed)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0 or top_k < 0:
            raise ValueError("temperature and top_k must be >= 0")
        seqs = self._ids(prompts)
        for i, s in enumerate(seqs):
            if len(s) + max_new_tokens - 1 > self.plan.max_context:
                raise ValueError(f"prompt {i}: {len(s)} tokens + {max_new_tokens} new tokens "
                                 f"exceed the context of {self.plan.max_context} positions")
        rng = np.random.default_rng(seed)
        groups = self.plan.split_batch(len(seqs))
        self._resident_loaded = False
        before = self.dev.stats()
        tokens: list[list[int]] = [[] for _ in seqs]
        steps, instructions, all_logits = [], 0, []
        bar = _progress(self.progress, max_new_tokens, "generate", "tok")
        try:
            for i, s in enumerate(seqs):
                self.kv.reserve(i, len(s) + max_new_tokens - 1)
            segs = {i: Segment(s, 0, self.kv.tables[i]) for i, s in enumerate(seqs)}
            for step in range(max_new_tokens):
                logits, ps, n = self._run(groups, segs)
                steps.append(ps)
                instructions += n
                if return_logits:
                    all_logits.append(logits)
                for i in range(len(seqs)):
                    tokens[i].append(self._choose(logits[i], temperature, top_k, rng))
                segs = {i: Segment(np.array([tokens[i][-1]]), len(seqs[i]) + step,
                                   self.kv.tables[i]) for i in range(len(seqs))}
                if bar:
                    bar.update(1)
        finally:
            self.kv.release_all()
            if bar:
                bar.close()
        if eos_token_id is not None:
            tokens = [t[:t.index(eos_token_id) + 1] if eos_token_id in t else t for t in tokens]
        report = Report.build(placement=self.target.placement, dtype=self.plan.dtype,
                              board=self.target.board_name, batch=len(seqs),
                              prompt_tokens=sum(len(s) for s in seqs),
                              new_tokens=sum(len(t) for t in tokens), step_ps=steps,
                              before=before, after=self.dev.stats(), instructions=instructions)
        text = [self.tokenizer.decode(t) for t in tokens] if self.tokenizer else None
        return Generation(tokens, text, report, all_logits if return_logits else None)

    def embed(self, texts) -> Embedding:
        """Mean-pooled sentence embeddings of an encoder (BERT) for each text or id list."""
        if self.config.causal:
            raise ValueError(f"embed needs an encoder (bert); this model is {self.config.arch}")
        seqs = self._ids(texts)
        for i, s in enumerate(seqs):
            if len(s) > self.plan.max_context:
                raise ValueError(f"input {i}: {len(s)} tokens exceed the context of "
                                 f"{self.plan.max_context} positions")
        groups = self.plan.split_batch(len(seqs))
        self._resident_loaded = False
        before = self.dev.stats()
        try:
            segs = {i: Segment(s, 0, self.kv.reserve(i, len(s)),
                               types=np.zeros(len(s), np.int64)) for i, s in enumerate(seqs)}
            out, ps, n = self._run(groups, segs)
        finally:
            self.kv.release_all()
        report = Report.build(placement=self.target.placement, dtype=self.plan.dtype,
                              board=self.target.board_name, batch=len(seqs),
                              prompt_tokens=sum(len(s) for s in seqs), new_tokens=0,
                              step_ps=[ps], before=before, after=self.dev.stats(),
                              instructions=n)
        return Embedding(out, report)

    @staticmethod
    def _choose(logits: np.ndarray, temperature: float, top_k: int, rng) -> int:
        if temperature == 0:
            return int(np.argmax(logits))                      # lowest id on ties
        z = logits.astype(np.float64) / temperature
        if top_k and top_k < len(z):
            cut = np.partition(z, -top_k)[-top_k]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z - z.max())
        return int(rng.choice(len(z), p=p / p.sum()))


__all__ = ["Session", "Generation", "Embedding", "Report"]
