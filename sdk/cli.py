"""The SDK on the command line: ``npuvp generate | embed | compile | demo`` (host side).

``vp/cli.py`` parses the arguments and calls these functions; each takes the parsed
``argparse.Namespace`` and returns the exit status. Output goes to stdout (one JSON object
with ``--json``), progress bars to stderr (only when stderr is a terminal). A request the SDK
refuses (a missing or corrupt model directory, an unsupported model, a model or placement the
board cannot run, a prompt longer than the context, a bad device URL) raises an error that
``vp/cli.py`` reports as one line ``npuvp <cmd>: error: ...`` with exit status 2:
:class:`UsageError` for what this module checks itself, the SDK's own error classes
(``CheckpointError``, ``UnsupportedModelError``, ``CompileError``) for the rest.

Host-side code: imports only the SDK, the driver and ``vp.spec`` (lazily, per command).
"""

from __future__ import annotations

import json
import os
import sys

#: The demo's prompts (text from the tiny tokenizers' corpus, so they tokenize into words).
DEMO_PROMPTS = ("The virtual board models a chip", "Attention needs the whole context")


class UsageError(ValueError):
    """A command line the SDK cannot act on (the message names the option and the problem)."""


# -- arguments --------------------------------------------------------------------------------
def parse_ids(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (the ``--prompt-ids`` argument type)."""
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of token ids") from None
    if not ids:
        raise ValueError("an empty list of token ids")
    return ids


def device_url(device: str | None, board: str | None) -> str:
    """The device URL of ``--device``/``--board``: ``--board`` (a board file or a shipped
    board's name) is an embedded board of that file, and only combines with an embedded
    ``--device`` given without a board of its own."""
    if board is None:
        return device or "embedded://"
    if device not in (None, "embedded://"):
        raise UsageError(f"--board {board} runs an embedded board of that file; it cannot be "
                         f"combined with --device {device} (a served board uses the board "
                         f"file given to 'npuvp serve --board')")
    return f"embedded://{board}"


def _model_dir(path: str) -> str:
    if not os.path.exists(path):
        raise UsageError(f"--model {path}: no such model directory")
    if not os.path.isdir(path):
        raise UsageError(f"--model {path}: not a directory (expected a Hugging Face model "
                         f"directory with config.json, *.safetensors and tokenizer.json)")
    return path


def _progress(args) -> bool:
    return not (getattr(args, "json", False) or args.no_progress) and sys.stderr.isatty()


def _checked(call, *args, **kw):
    """Run a :class:`~sdk.runtime.Session` call. Its own argument checks (a ValueError or
    TypeError whose innermost Python frame is in ``sdk/runtime.py``: empty or too long prompts,
    ids outside the vocabulary, too many prompts) become :class:`UsageError`; errors raised
    deeper down (compiler internals, numpy, the driver) keep their traceback, because they are
    bugs, not bad input. (The SDK's own error classes are reported as they are.)"""
    from sdk import runtime
    try:
        return call(*args, **kw)
    except (ValueError, TypeError) as exc:
        tb = exc.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == os.path.realpath(runtime.__file__):
            raise UsageError(str(exc)) from None
        raise


def _open_session(args, model_dir: str, batch: int):
    from sdk.runtime import Session
    return Session.load(model_dir, device=device_url(args.device, args.board),
                        placement=args.placement, dtype=args.dtype, max_batch=max(1, batch),
                        max_context=args.max_context, progress=_progress(args))


# -- generate / embed -------------------------------------------------------------------------
def generate(args) -> int:
    """``npuvp generate``: new tokens for each prompt, then the report."""
    prompts = args.prompts or []
    if not prompts:
        raise UsageError("give at least one prompt: --prompt TEXT or --prompt-ids 1,2,3")
    with _open_session(args, _model_dir(args.model), len(prompts)) as session:
        out = _checked(session.generate, prompts, args.max_new_tokens,
                       temperature=args.temperature, top_k=args.top_k, seed=args.seed)
        performance = session.target.performance
    if args.json:
        print(json.dumps({"tokens": out.tokens, "text": out.text,
                          "report": out.report.to_dict()}))
        return 0
    for i, (prompt, tokens) in enumerate(zip(prompts, out.tokens)):
        print(f"prompt {i}: {prompt!r}")
        if out.text is not None:
            print(f"  text: {out.text[i]!r}")
        print(f"  ids:  {tokens}")
    if performance:
        print("(the board is in performance mode: no data, the tokens are placeholders)")
    print(out.report)
    return 0


def embed(args) -> int:
    """``npuvp embed``: a mean-pooled embedding per text (an encoder such as BERT)."""
    with _open_session(args, _model_dir(args.model), len(args.texts)) as session:
        out = _checked(session.embed, list(args.texts))
    if args.json:
        # float32 -> Python float is exact, and JSON prints the shortest repr that round-trips
        print(json.dumps({"embeddings": out.embeddings.tolist(),
                          "report": out.report.to_dict()}))
        return 0
    for i, (text, e) in enumerate(zip(args.texts, out.embeddings)):
        head = ", ".join(f"{x:.4f}" for x in e[:4])
        norm = float((e.astype("f8") ** 2).sum()) ** 0.5
        print(f"text {i}: {text!r}\n  {e.size} dims, norm {norm:.4f}: [{head}, ...]")
    print(out.report)
    return 0


# -- demo -------------------------------------------------------------------------------------
def demo(args) -> int:
    """``npuvp demo``: a tiny random model written locally, run end to end on a board and
    checked token for token against the numpy reference (exit 1 if they differ).
    ``--driver`` runs the driver example (:mod:`drivers.example`) instead."""
    if args.driver:
        from drivers.example import run
        return 0 if run(device_url(args.device, args.board))["bytes_equal"] else 1
    import tempfile
    if args.model_dir:
        return _demo(args, args.model_dir)
    with tempfile.TemporaryDirectory(prefix="npuvp-demo-") as tmp:
        return _demo(args, os.path.join(tmp, f"tiny-{args.arch}"))


def _demo(args, model_dir: str) -> int:
    from sdk.model_config import load_config
    from sdk.reference import ReferenceModel
    from sdk.tiny import write_tiny_checkpoint
    write_tiny_checkpoint(model_dir, args.arch, seed=args.seed)
    c = load_config(model_dir)
    print(f"wrote a tiny random {c.arch} model to {model_dir}: {c.n_layers} layers, d_model "
          f"{c.d_model}, {c.n_heads} heads, vocabulary {c.vocab_size} (random weights: the "
          f"text means nothing, the tokens must match the reference's)")
    prompts = list(DEMO_PROMPTS)
    with _open_session(args, model_dir, len(prompts)) as session:
        print(f"loaded onto board {session.target.board_name!r} "
              f"({device_url(args.device, args.board)}), placement {session.target.placement}, "
              f"{session.plan.dtype}")
        out = _checked(session.generate, prompts, args.max_new_tokens)
        performance = session.target.performance
    for prompt, text, tokens in zip(prompts, out.text, out.tokens):
        print(f"{prompt!r} -> {text!r}\n  ids {tokens}")
    print(out.report)
    if performance:
        print("the board is in performance mode (no data): tokens are placeholders, "
              "nothing to compare")
        return 0
    if args.dtype != "fp32":
        print(f"{args.dtype} weights are not bit-exact with the fp32 reference by design: "
              f"nothing to compare")
        return 0
    same = out.tokens == ReferenceModel.from_pretrained(model_dir).generate_greedy(
        prompts, args.max_new_tokens)
    print(f"bit-exact with the numpy reference: {'yes' if same else 'NO'}")
    return 0 if same else 1


# -- compile ----------------------------------------------------------------------------------
def compile_model(args) -> int:
    """``npuvp compile``: compile a prefill and a decode step (an encoder pass for BERT)
    without a device and write the memory map, the schedule, each core's program (binary and
    disassembly), the command packets and ``plan.json`` into ``args.out``."""
    from sdk.compiler import Plan, StepCompiler, Target
    from sdk.model_config import load_config
    from vp.spec.board_config import load_board
    config = load_config(_model_dir(args.model))
    board = load_board(args.board)
    if args.prompt_tokens < 1 or args.batch < 1:
        raise UsageError("--prompt-tokens and --batch must be at least 1")
    plan = Plan(config, Target.from_board(board, args.placement), dtype=args.dtype,
                max_batch=args.batch, max_context=args.max_context,
                page_tokens=args.page_tokens)
    need = args.prompt_tokens + (1 if config.causal else 0)
    if need > plan.max_context:
        raise UsageError(f"--prompt-tokens {args.prompt_tokens}: the steps need {need} "
                         f"positions, the context is {plan.max_context}")
    compiler = StepCompiler(plan)
    steps = {}
    for name, segments in _steps(plan, args.batch, args.prompt_tokens):
        steps[name] = compiler.compile(segments)
    files = _write_compiled(args, plan, board, steps)
    c = config
    print(f"compiled {c.arch} ({c.n_layers} layers, d_model {c.d_model}, {plan.params:,} "
          f"parameters) for board {board.name!r} ({plan.target.placement}, {plan.dtype}), "
          f"batch {args.batch} x {args.prompt_tokens} prompt tokens")
    for name, step in steps.items():
        print(f"  {name}: {step.instructions:,} instructions on {len(step.programs)} cores, "
              f"{len(step.packets)} command packets")
    print(f"wrote {len(files)} files to {args.out}/")
    return 0


def _steps(plan, batch: int, prompt_tokens: int):
    """(name, micro-batches of segments): ``batch`` sequences of ``prompt_tokens`` ids
    (0, 1, ... mod the vocabulary), split into micro-batches as the runtime splits them
    (contiguous, as even as possible); then one decode step (decoders only)."""
    import numpy as np
    from sdk.compiler import Segment
    c = plan.config
    per_seq = -(-(prompt_tokens + 1) // plan.page_tokens)          # KV blocks per sequence
    blocks = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(batch)]
    groups = plan.split_batch(batch)

    def step(make):
        return [[make(i) for i in g] for g in groups]

    ids = np.arange(prompt_tokens) % c.vocab_size
    if not c.causal:
        yield "encode", step(lambda i: Segment(ids, 0, blocks[i],
                                               types=np.zeros(prompt_tokens, np.int64)))
        return
    yield "prefill", step(lambda i: Segment(ids, 0, blocks[i]))
    yield "decode", step(lambda i: Segment(np.array([prompt_tokens % c.vocab_size]),
                                           prompt_tokens, blocks[i]))


def _cores(ids) -> str:
    """Core ids as ranges: ``0-3,8``."""
    ids, out = sorted(ids), []
    for i in ids:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


def _members(mask: int) -> list[int]:
    """Core ids of a core mask, ascending."""
    return [c for c in range(mask.bit_length()) if mask >> c & 1]


def _schedule_text(plan, steps) -> str:
    """A readable summary per step: barriers by group, then per core its role, instruction
    count, program size and most frequent opcodes."""
    from collections import Counter
    t = plan.target
    role = {cid: ("dense+attention" if cid in t.dense and cid in t.attention else
                  "dense" if cid in t.dense else "attention") for cid in t.active}
    lines = [f"{plan.config.arch} on {t.board_name} ({t.placement}, {plan.dtype}): "
             f"{plan.micro_batches} micro-batch(es) of up to {plan.mb_batch} sequences; "
             f"dense cores {_cores(t.dense)}, attention cores {_cores(t.attention)}"]
    for name, step in steps.items():
        ops = {cid: Counter(d.op for d in p) for cid, p in step.programs.items()}
        barriers = Counter()                     # mask -> count, seen on its lowest core
        for cid, p in step.programs.items():
            for d in p:
                if d.op == "BARRIER" and cid == _members(d.core_mask)[0]:
                    barriers[d.core_mask] += 1
        lines += ["", f"{name}: {step.instructions:,} instructions, {len(step.packets)} "
                      f"command packets, inputs "
                      f"{sum(a.nbytes for _, a in step.inputs):,} bytes"]
        for mask, n in sorted(barriers.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:6,} barriers of cores {_cores(_members(mask))}")
        for cid, p in sorted(step.programs.items()):
            top = ", ".join(f"{op} {n}" for op, n in ops[cid].most_common(6))
            lines.append(f"  core {cid:2} {t.core(cid).kind:7} {role[cid]:15} {len(p):7,} "
                         f"instructions {p.nbytes:9,} B at 0x{step.addresses[cid]:x}: {top}")
    return "\n".join(lines) + "\n"


def _plan_doc(args, plan, board, steps) -> dict:
    from dataclasses import asdict
    c, t = plan.config, plan.target
    model = {k: v for k, v in asdict(c).items() if k != "raw"}
    model["params"] = plan.params
    return {
        "model": model, "board": board.name, "board_file": args.board, "mode": board.mode,
        "placement": t.placement, "dtype": plan.dtype,
        "cores": {"dense": list(t.dense), "attention": list(t.attention)},
        "max_batch": plan.max_batch, "max_context": plan.max_context,
        "micro_batches": plan.micro_batches, "max_step_tokens": plan.max_step_tokens,
        "page_tokens": plan.page_tokens, "kv_blocks": plan.n_blocks,
        "kv_block_bytes": plan.block_bytes,
        "hbm": {"base": t.hbm_base, "size": t.hbm_size, "used_bytes": plan.total_bytes,
                "weights_bytes": plan.weights_bytes,
                "kv_cache_bytes": plan.n_blocks * plan.block_bytes,
                "ring": plan.ring, "timestamps": plan.timestamps,
                "programs": {str(cid): a for cid, a in plan.programs.items()}},
        "steps": {name: {"batch": args.batch,
                         "instructions": s.instructions,
                         "packets": len(s.packets),
                         "program_bytes": {str(cid): p.nbytes for cid, p in s.programs.items()}}
                  for name, s in steps.items()},
    }


def _write_compiled(args, plan, board, steps) -> list[str]:
    """Write the compiler's output into ``args.out``; returns the paths written."""
    from vp.spec import isa
    written = []

    def write(rel: str, data) -> None:
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        written.append(path)

    write("memory_map.txt", plan.summary() + "\n")
    write("schedule.txt", _schedule_text(plan, steps))
    write("plan.json", json.dumps(_plan_doc(args, plan, board, steps), indent=1) + "\n")
    for name, step in steps.items():
        for cid, prog in step.programs.items():
            write(f"{name}/core{cid}.bin", prog.to_bytes())
            write(f"{name}/core{cid}.s", prog.disassemble(base=step.addresses[cid]))
        packets = b"".join(step.packets)
        write(f"{name}/packets.bin", packets)
        write(f"{name}/packets.s", isa.disassemble(isa.PACKETS, packets))
    return written
