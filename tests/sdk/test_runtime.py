"""The SDK runtime end to end: tiny checkpoints run on a virtual board through the real driver.

* Functional mode equals the numpy reference (``sdk.reference``) bit for bit in fp32: the
  logits of the prefill and of 16 decode steps (compared as uint32 bit patterns) and the
  greedy tokens of GPT-2 and LLaMA, and BERT's mean-pooled embeddings; on both placements
  (``afd`` on the AFD board, ``unified`` on the unified board, and ``unified`` on the AFD
  board) and over both transports (``embedded://`` in process, and ``grpc://`` to a real
  ``npuvp serve`` subprocess on loopback, one per board, shared by the module).
* The batch mixes sequences of equal and unequal lengths, one longer than a KV-cache page
  (``page_tokens`` 8, so decoding crosses pages); batch 1, ``max_batch`` larger than the batch,
  a second call on the same session (KV blocks released and reused), sampled generation
  (seeded, checked against a numpy re-implementation of the sampling on the reference logits),
  ``eos_token_id`` and the per-call report.
* The same work gives the same report (simulated time, traffic, energy) over both transports
  (DESIGN.md §3: deterministic time over every transport).
* Against Hugging Face ``transformers`` (torch CPU): the board's greedy tokens equal HF's and
  its logits / embeddings are within the tolerance of ``test_reference.py`` (1e-5 of the
  largest |value|).

The gRPC boards are shared by the module: sessions follow one another on them, as clients of
one ``npuvp serve`` do (a new session must not take an earlier one's fences or results for its
own: ``test_a_second_session_on_a_used_board``, ``test_two_clients_in_a_row_on_one_server``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import drivers
from sdk.runtime import Session
from tests.helpers.board_server import running_server
from vp.spec.board_config import shipped_board_path

NEW_TOKENS = 16
PAGE = 8                                   # positions per KV block: prompts and decode cross pages
REL_TOL = 1e-5                             # against transformers, as in test_reference.py
BOARD_OF = {"afd": "afd", "unified": "unified"}   # placement -> shipped board it runs on
KINDS = {"afd-8ca-8cf": {"ca", "cf"}, "unified-16": {"unified"}}   # board -> core kinds
PARITY = [(arch, placement, transport) for arch in ("gpt2", "llama")
          for placement in ("afd", "unified") for transport in ("embedded", "grpc")]


# ------------------------------------------------------------------------------- helpers

def assert_bits_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """fp32 arrays identical bit for bit (NaNs included), with a readable failure."""
    assert got.dtype == np.float32 and want.dtype == np.float32, what
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = got.view(np.uint32) != want.view(np.uint32)
    if diff.any():
        rows = sorted({int(r) for r in np.argwhere(diff)[:, 0]}) if got.ndim > 1 else []
        raise AssertionError(
            f"{what}: {int(diff.sum())} of {diff.size} values differ (rows {rows}); "
            f"max |diff| {float(np.nanmax(np.abs(got.astype(np.float64) - want))):.3g}, "
            f"NaNs on the board: {int(np.isnan(got).sum())}")


def reference_steps(model, ids, tokens) -> list[np.ndarray]:
    """The reference's (B, V) logits of the prefill and of each decode step fed with
    ``tokens`` (per sequence, one per step; the last token is not fed)."""
    steps = [model.prefill(ids)]
    for step in range(len(tokens[0]) - 1):
        steps.append(model.decode_step([t[step] for t in tokens]))
    return steps


def batch_prompts(model) -> tuple[list, list[list[int]]]:
    """The test batch (text and id prompts mixed) and its token ids: sequences 0 and 1 have
    equal lengths (one micro-batch on afd), 2 and 3 unequal ones; 2 is longer than a page."""
    short, long_, mid = "hello", "The virtual board models a chip.", "A mesh network on chip"
    twin = [(t * 7 + 11) % model.config.vocab_size for t in model.tokenizer.encode(short)]
    prompts = [short, twin, long_, mid]
    ids = [model.tokenizer.encode(p) if isinstance(p, str) else p for p in prompts]
    assert len(ids[0]) == len(ids[1]) != len(ids[2]) != len(ids[3])
    assert len(ids[2]) > PAGE
    return prompts, ids


def check_report(r, *, placement, dtype="fp32", batch, prompt_tokens, steps, new_tokens):
    """The report's fields are consistent with the call and physically sane."""
    assert (r.placement, r.dtype, r.batch, r.prompt_tokens, r.steps, r.new_tokens) == \
        (placement, dtype, batch, prompt_tokens, steps, new_tokens)
    assert len(r.step_ps) == steps and all(0 < ps < 10 ** 12 for ps in r.step_ps), r.step_ps
    assert r.ttft_ps == r.step_ps[0] > 0
    assert r.total_ps == sum(r.step_ps)
    if steps > 1:
        assert r.decode_ps_per_token == pytest.approx(sum(r.step_ps[1:]) / (steps - 1))
    produced = new_tokens or prompt_tokens
    assert r.tokens_per_s == pytest.approx(produced * 1e12 / r.total_ps) and r.tokens_per_s > 0
    assert set(r.utilisation) == KINDS[r.board], r.utilisation
    assert all(0.0 <= u <= 1.0 for u in r.utilisation.values()), r.utilisation
    assert any(u > 0 for u in r.utilisation.values()), r.utilisation
    assert r.hbm_bytes > 0 and r.noc_bytes > 0 and r.instructions > 0
    assert r.energy_j > 0 and r.energy_per_token_j == pytest.approx(r.energy_j / produced)
    assert r.to_dict()["step_ps"] == r.step_ps
    assert f"board {r.board} ({placement}, {dtype}), batch {batch}" in str(r)


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def server():
    """server(board) -> "host:port" of a real ``npuvp serve`` of that shipped board, started
    on first use and stopped at the end of the module."""
    stack = contextlib.ExitStack()
    addresses: dict[str, str] = {}

    def get(board: str) -> str:
        if board not in addresses:
            path = None if board == "afd" else shipped_board_path(board)
            addresses[board] = stack.enter_context(running_server(path))
        return addresses[board]

    with stack:
        yield get


@contextlib.contextmanager
def board(server, board_name: str, transport: str):
    """A Device on ``board_name``: a fresh in-process board, or a connection to the module's
    gRPC server of that board (which earlier tests may have used)."""
    if transport == "embedded":
        dev = drivers.open_device(f"embedded://{board_name}")
    else:
        dev = drivers.open_device(f"grpc://{server(board_name)}")
    try:
        yield dev
    finally:
        dev.close()


@pytest.fixture(scope="module")
def runs(server, tiny_dir, tiny_model):
    """runs(arch, placement, transport, board=None) -> (Generation, prompt ids), computed once
    per module: the test batch, greedy, NEW_TOKENS, with logits."""
    done = {}

    def get(arch, placement, transport, board_name=None):
        board_name = board_name or BOARD_OF[placement]
        key = (arch, placement, transport, board_name)
        if key not in done:
            model = tiny_model(arch)
            prompts, ids = batch_prompts(model)
            with board(server, board_name, transport) as dev, \
                    Session.load(tiny_dir(arch), device=dev, placement=placement,
                                 page_tokens=PAGE) as s:
                assert s.plan.micro_batches == (2 if placement == "afd" else 1)
                done[key] = s.generate(prompts, NEW_TOKENS, return_logits=True), ids
        return done[key]

    return get


# ------------------------------------------------------------------- bit-exact decoders

@pytest.mark.parametrize("arch, placement, transport", PARITY)
def test_generate_equals_reference_bit_for_bit(runs, tiny_model, arch, placement, transport):
    out, ids = runs(arch, placement, transport)
    model = tiny_model(arch)
    assert out.tokens == model.generate_greedy(ids, NEW_TOKENS)
    assert out.text == [model.tokenizer.decode(t) for t in out.tokens]
    assert len(out.logits) == NEW_TOKENS
    for step, (got, want) in enumerate(zip(out.logits, reference_steps(model, ids, out.tokens))):
        assert_bits_equal(got, want, f"{arch} {placement} {transport}: logits of step {step}")
    check_report(out.report, placement=placement, batch=4, prompt_tokens=sum(map(len, ids)),
                 steps=NEW_TOKENS, new_tokens=4 * NEW_TOKENS)
    assert out.report.board == ("afd-8ca-8cf" if placement == "afd" else "unified-16")


def test_unified_placement_on_the_afd_board(tiny_dir, tiny_model, prompts):
    """Every core of the AFD board (CA and CF) does both kinds of work: the reference's bits."""
    model = tiny_model("gpt2")
    ids = [model.tokenizer.encode(p) for p in prompts]
    with Session.load(tiny_dir("gpt2"), device="embedded://afd", placement="unified",
                      page_tokens=PAGE) as s:
        assert s.plan.micro_batches == 1
        out = s.generate(prompts, 4, return_logits=True)
    assert out.tokens == model.generate_greedy(ids, 4)
    for step, (got, want) in enumerate(zip(out.logits, reference_steps(model, ids, out.tokens))):
        assert_bits_equal(got, want, f"unified placement on the afd board: step {step}")
    assert set(out.report.utilisation) == {"ca", "cf"}
    assert all(u > 0 for u in out.report.utilisation.values()), "both kinds do work"


@pytest.mark.parametrize("placement", ["afd", "unified"])
@pytest.mark.parametrize("transport", ["embedded", "grpc"])
def test_bert_embeddings_equal_reference_bit_for_bit(server, tiny_dir, tiny_model, placement,
                                                     transport):
    model = tiny_model("bert")
    texts = ["hello", "world", "The virtual board models a chip.", "A mesh network on chip"]
    ids = [model.tokenizer.encode(t) for t in texts]
    # sequence 1: as long as sequence 0, other words ([CLS] ... [SEP]; ids 0-4 are special)
    ids[1] = [ids[0][0]] + [5 + (t * 5 + 3) % 295 for t in ids[0][1:-1]] + [ids[0][-1]]
    batch = [texts[0], ids[1], texts[2], texts[3]]
    with board(server, BOARD_OF[placement], transport) as dev, \
            Session.load(tiny_dir("bert"), device=dev, placement=placement,
                         page_tokens=PAGE) as s:
        out = s.embed(batch)
    want = model.embed(ids)
    assert out.embeddings.shape == (4, model.config.d_model)
    assert_bits_equal(out.embeddings, want, f"bert {placement} {transport}: embeddings")
    check_report(out.report, placement=placement, batch=4, prompt_tokens=sum(map(len, ids)),
                 steps=1, new_tokens=0)


# --------------------------------------------------------------------- batch shapes, reuse

@pytest.mark.parametrize("arch, max_batch, n", [("gpt2", 1, 1), ("llama", 4, 1),
                                                 ("gpt2", 8, 3)])
def test_batch_smaller_than_or_equal_to_max_batch(tiny_dir, tiny_model, prompts, arch,
                                                  max_batch, n):
    """Batch 1 with max_batch 1 (one micro-batch) and with max_batch 4 (one of two micro-batches
    used) on afd; max_batch 8 with 3 sequences. Default 64-position pages."""
    model = tiny_model(arch)
    batch = prompts[:n]
    ids = [model.tokenizer.encode(p) for p in batch]
    with Session.load(tiny_dir(arch), device="embedded://afd", max_batch=max_batch) as s:
        assert s.plan.micro_batches == (1 if max_batch == 1 else 2)
        out = s.generate(batch, 6, return_logits=True)
    assert out.tokens == model.generate_greedy(ids, 6)
    for step, (got, want) in enumerate(zip(out.logits, reference_steps(model, ids, out.tokens))):
        assert_bits_equal(got, want, f"{arch} batch {n} of {max_batch}: step {step}")
    check_report(out.report, placement="afd", batch=n, prompt_tokens=sum(map(len, ids)),
                 steps=6, new_tokens=6 * n)


def test_one_micro_batch_on_afd(tiny_dir, tiny_model, prompts):
    """micro_batches=1 on afd (no ping-pong): a batch of 3 in one micro-batch, same bits."""
    model = tiny_model("llama")
    ids = [model.tokenizer.encode(p) for p in prompts[:3]]
    with Session.load(tiny_dir("llama"), device="embedded://afd", max_batch=4,
                      micro_batches=1) as s:
        assert s.plan.micro_batches == 1
        out = s.generate(prompts[:3], 4, return_logits=True)
    assert out.tokens == model.generate_greedy(ids, 4)
    for step, (got, want) in enumerate(zip(out.logits, reference_steps(model, ids, out.tokens))):
        assert_bits_equal(got, want, f"one micro-batch: step {step}")


def test_one_session_serves_consecutive_calls(tiny_dir, tiny_model, prompts):
    """KV blocks are released after each call and reused by the next: the same call twice gives
    the same bits, a different batch in between does not disturb it (5-position pages)."""
    model = tiny_model("llama")
    first = [model.tokenizer.encode(p) for p in prompts]
    other = [[1, 5, 9, 200, 7, 7, 7, 31, 64, 2, 99], [1, 17]]
    with Session.load(tiny_dir("llama"), device="embedded://", page_tokens=5) as s:
        free = s.kv.free_blocks
        a = s.generate(first, 4, return_logits=True)
        assert s.kv.free_blocks == free
        b = s.generate(other, 5, return_logits=True)
        assert s.kv.free_blocks == free
        c = s.generate(first, 4, return_logits=True)
        assert s.kv.free_blocks == free
    assert a.tokens == c.tokens == model.generate_greedy(first, 4)
    for step, (x, y) in enumerate(zip(a.logits, c.logits)):
        assert_bits_equal(x, y, f"first call vs third call, step {step}")
    assert b.tokens == model.generate_greedy(other, 5)
    for step, (got, want) in enumerate(zip(b.logits, reference_steps(model, other, b.tokens))):
        assert_bits_equal(got, want, f"second call, step {step}")


# ------------------------------------------------------------------------------ sampling

def sample_like_the_runtime(model, ids, n, temperature, top_k, seed) -> list[list[int]]:
    """Independent numpy sampling on the reference logits: softmax(logits / T) over the top_k
    largest logits (all when 0), one ``default_rng(seed).choice`` per sequence per step, in
    sequence order."""
    rng = np.random.default_rng(seed)
    tokens = [[] for _ in ids]
    logits = model.prefill(ids)
    for step in range(n):
        for b, row in enumerate(logits):
            z = row.astype(np.float64) / temperature
            if top_k:
                z[z < np.sort(z)[-top_k]] = -np.inf
            p = np.exp(z - z.max())
            tokens[b].append(int(rng.choice(len(z), p=p / p.sum())))
        if step + 1 < n:
            logits = model.decode_step([t[-1] for t in tokens])
    return tokens


def test_sampled_generation(tiny_dir, tiny_model, prompts):
    model = tiny_model("gpt2")
    prompts = prompts[:2]
    ids = [model.tokenizer.encode(p) for p in prompts]
    kw = dict(temperature=0.8, top_k=5)
    with Session.load(tiny_dir("gpt2"), device="embedded://") as s:
        a = s.generate(prompts, 6, seed=1, return_logits=True, **kw)
        again = s.generate(prompts, 6, seed=1, **kw)
        other = s.generate(prompts, 6, seed=2, **kw)
        full = s.generate(prompts, 6, seed=3, temperature=0.8)          # top_k 0: all
    assert a.tokens == again.tokens, "the same seed gives the same tokens"
    assert a.tokens != other.tokens, "another seed gives other tokens"
    assert a.tokens == sample_like_the_runtime(model, ids, 6, 0.8, 5, 1)
    assert other.tokens == sample_like_the_runtime(model, ids, 6, 0.8, 5, 2)
    assert full.tokens == sample_like_the_runtime(model, ids, 6, 0.8, 0, 3)
    for step, logits in enumerate(a.logits):
        for b, row in enumerate(logits):
            assert a.tokens[b][step] in np.argsort(row)[-5:], "top_k 5 keeps the 5 best"
    assert a.tokens != model.generate_greedy(ids, 6), "sampling is not greedy"


def test_eos_cuts_after_the_first_eos(tiny_dir, tiny_model, prompts):
    model = tiny_model("gpt2")
    ids = [model.tokenizer.encode(p) for p in prompts]
    greedy = model.generate_greedy(ids, 6)
    eos = greedy[0][3]                                  # a token sequence 0 produces
    want = [t[:t.index(eos) + 1] if eos in t else t for t in greedy]
    assert len(want[0]) <= 4 < 6
    with Session.load(tiny_dir("gpt2"), device="embedded://") as s:
        out = s.generate(ids, 6, eos_token_id=eos)
        plain = s.generate(ids, 6)
    assert out.tokens == want
    assert plain.tokens == greedy
    assert out.text == [model.tokenizer.decode(t) for t in want]
    check_report(out.report, placement="afd", batch=3, prompt_tokens=sum(map(len, ids)),
                 steps=6, new_tokens=sum(map(len, want)))


# ---------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("placement", ["afd", "unified"])
def test_same_report_over_both_transports(tiny_dir, prompts, placement):
    """The same work on a fresh in-process board and a fresh served board: the same tokens,
    logits and report (simulated time, traffic, energy, utilisation)."""
    name = BOARD_OF[placement]
    with Session.load(tiny_dir("gpt2"), device=f"embedded://{name}", placement=placement,
                      page_tokens=PAGE) as s:
        local = s.generate(prompts, 3, return_logits=True)
    with running_server(None if name == "afd" else shipped_board_path(name)) as address, \
            Session.load(tiny_dir("gpt2"), device=f"grpc://{address}", placement=placement,
                         page_tokens=PAGE) as s:
        remote = s.generate(prompts, 3, return_logits=True)
    assert remote.tokens == local.tokens
    for step, (a, b) in enumerate(zip(remote.logits, local.logits)):
        assert_bits_equal(a, b, f"step {step}: grpc vs embedded")
    assert remote.report.to_dict() == local.report.to_dict()


def test_a_second_session_on_a_used_board(tiny_dir, tiny_model, prompts):
    """A session on a board another session already ran steps on (the same Device, as a
    long-lived host process or a shared ``npuvp serve`` has) must compute its own results."""
    model = tiny_model("llama")
    ids = [model.tokenizer.encode(p) for p in prompts]
    want = model.generate_greedy(ids, 3)
    with drivers.open_device("embedded://") as dev:
        with Session.load(tiny_dir("gpt2"), device=dev) as first:
            first.generate(prompts, 3)
        with Session.load(tiny_dir("llama"), device=dev) as second:
            out = second.generate(prompts, 3, return_logits=True)
    assert_bits_equal(out.logits[0], model.prefill(ids), "prefill logits of the second session")
    assert out.tokens == want
    assert all(0 < ps < 10 ** 12 for ps in out.report.step_ps), out.report.step_ps


def test_two_clients_in_a_row_on_one_server(server, tiny_dir, tiny_model, prompts):
    """Two programs using one ``npuvp serve`` one after the other (URL sessions)."""
    model = tiny_model("gpt2")
    ids = [model.tokenizer.encode(p) for p in prompts]
    want = model.generate_greedy(ids, 3)
    url = f"grpc://{server('afd')}"
    for client in range(2):
        with Session.load(tiny_dir("gpt2"), device=url) as s:
            out = s.generate(prompts, 3)
        assert out.tokens == want, f"client {client}"
        assert all(0 < ps < 10 ** 12 for ps in out.report.step_ps), \
            f"client {client}: step times {out.report.step_ps}"


# ------------------------------------------------------------------------ vs transformers

@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch", reason="torch is in the test extra (parity tests)")
    transformers = pytest.importorskip("transformers", reason="transformers is in the test extra")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tiny models: threads only add overhead on a shared host
    yield torch, transformers
    torch.set_num_threads(threads)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_on_the_board_matches_transformers(hf, runs, tiny_dir, arch):
    torch, transformers = hf
    out, ids = runs(arch, "afd", "embedded")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_dir(arch), dtype=torch.float32, attn_implementation="eager").eval()
    T, pad = max(map(len, ids)), 0
    input_ids = torch.tensor([[pad] * (T - len(s)) + s for s in ids])     # left padding
    mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in ids])
    theirs.generation_config.eos_token_id = None
    with torch.no_grad():
        hf_out = theirs.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=NEW_TOKENS, pad_token_id=pad)
    assert hf_out[:, T:].tolist() == out.tokens
    for b, (prompt, gen) in enumerate(zip(ids, out.tokens)):
        with torch.no_grad():
            want = theirs(torch.tensor([prompt + gen])).logits[0].numpy()  # (T, V)
        want = want[len(prompt) - 1:len(prompt) - 1 + NEW_TOKENS]
        got = np.stack([step[b] for step in out.logits])
        scale, diff = float(np.abs(want).max()), float(np.abs(got - want).max())
        assert diff <= REL_TOL * scale, f"{arch} sequence {b}: max |diff| {diff:.3g}, " \
                                        f"scale {scale:.3g}"


def test_bert_on_the_board_matches_transformers(hf, tiny_dir, prompts):
    torch, transformers = hf
    path = tiny_dir("bert")
    theirs = transformers.AutoModel.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    enc = transformers.AutoTokenizer.from_pretrained(path)(prompts, padding=True,
                                                           return_tensors="pt")
    with torch.no_grad():
        hidden = theirs(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    want = ((hidden * m).sum(1) / m.sum(1)).numpy()
    with Session.load(path, device="embedded://") as s:
        got = s.embed(prompts).embeddings
    diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert diff <= REL_TOL * scale, f"max |diff| {diff:.3g}, scale {scale:.3g}"
