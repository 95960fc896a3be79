"""The ``npuvp`` command line.

The command line is an application above both sides of the wire: each subcommand imports what
it needs when it runs (device side for ``serve`` and ``bench``; host side, the driver and the
SDK, for ``info``, ``generate``, ``embed``, ``compile``, ``demo`` and ``experiment``), so
``npuvp generate --device grpc://...`` never loads a device model. The SDK commands live in
:mod:`sdk.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_serve(args) -> int:
    from vp.server import serve
    return serve(args.board, host=args.host, port=args.port, port_file=args.port_file) or 0


def _cmd_info(args) -> int:
    import drivers
    from vp.spec.units import format_size, format_time
    with drivers.open_device(args.device) as dev:
        info = dev.info
        data = {"url": args.device, "board": info.board_name, "device_id": info.device_id,
                "version": ".".join(map(str, info.version)), "features": info.features,
                "bar_size": info.bar_size, "hbm_base": info.hbm_base, "hbm_size": info.hbm_size,
                "link_latency_ps": info.link_latency_ps,
                "link_bytes_per_s": info.link_bytes_per_s, "now_ps": dev.now_ps}
    if args.json:
        print(json.dumps(data))
        return 0
    print(f"board        {data['board']} ({data['url']})")
    print(f"device id    0x{info.device_id:08x}, register map v{data['version']}, "
          f"features 0x{info.features:x}")
    print(f"BAR0         {format_size(info.bar_size)}")
    print(f"HBM          {format_size(info.hbm_size)} at 0x{info.hbm_base:x}")
    print(f"host link    {format_time(info.link_latency_ps)} per access, "
          f"{info.link_bytes_per_s / 1e9:g} GB/s bulk")
    print(f"board time   {format_time(data['now_ps'])}")
    return 0


def _cmd_regs(args) -> int:
    from vp.spec import regmap_views
    print(regmap_views.render(args.format), end="")
    return 0


#: Benchmarks by name: module with a ``run() -> dict`` of named figures.
BENCHES = {"kernel": "vp.bench.kernel_bench", "grpc": "vp.bench.grpc_bench",
           "layer": "vp.bench.layer_bench", "hbm": "vp.bench.hbm_bench",
           "e2e": "sdk.bench_e2e", "e2e-split": "vp.bench.e2e_split"}


def _cmd_bench(args) -> int:
    import importlib
    from vp.bench import print_figures
    print_figures(importlib.import_module(BENCHES[args.what]).run(), as_json=args.json)
    return 0


def _cmd_validate(args) -> int:
    from vp.validate import main as validate
    return validate(json=args.json)


def _cmd_generate(args) -> int:
    from sdk.cli import generate
    return generate(args)


def _cmd_embed(args) -> int:
    from sdk.cli import embed
    return embed(args)


def _cmd_compile(args) -> int:
    from sdk.cli import compile_model
    return compile_model(args)


def _cmd_experiment(args) -> int:
    from sdk.experiment import main as experiment
    return experiment(args.rest)


def _cmd_demo(args) -> int:
    from sdk.cli import demo
    return demo(args)


def _prompt_ids(text: str) -> list[int]:
    from sdk.cli import parse_ids
    try:
        return parse_ids(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _board_option(s, what: str = "run the model on an embedded board of it") -> None:
    s.add_argument("--board", help=f"board file or shipped board name (afd, unified): {what}")


def _compile_options(s) -> None:
    s.add_argument("--placement", default="afd",
                   help="afd: attention on CA cores, the rest on CF cores (default); "
                        "unified: every core does both")
    s.add_argument("--dtype", default="fp32",
                   help="weight dtype: fp32 (bit-exact, default), bf16 or int8 (weight-only)")
    s.add_argument("--max-context", type=int, metavar="N",
                   help="positions per sequence (default: the model's maximum)")


def _session_options(s) -> None:
    s.add_argument("--model", required=True, metavar="DIR",
                   help="Hugging Face model directory (config.json, *.safetensors, "
                        "tokenizer.json)")
    s.add_argument("--device", help="device URL (default: embedded://)")
    _board_option(s)
    _compile_options(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off with --json or without a terminal)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="npuvp", description="npuvp virtual NPU board")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve a board over gRPC")
    s.add_argument("--board", help="board YAML file (default: the built-in default board)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    s.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one)")
    s.add_argument("--port-file", help="write the bound port to this file")
    s.set_defaults(func=_cmd_serve)

    s = sub.add_parser("info", help="identify a board")
    s.add_argument("--device", default="embedded://", help="device URL (default: embedded://)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("regs", help="print the register map")
    s.add_argument("--format", choices=("md", "c", "json"), default="md")
    s.set_defaults(func=_cmd_regs)

    s = sub.add_parser("bench", help="run a benchmark and print its figures")
    s.add_argument("what", choices=tuple(BENCHES))
    s.add_argument("--json", action="store_true", help="print one JSON object of figures")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("validate", help="check the timing models against their formulas")
    s.add_argument("--json", action="store_true",
                   help="print a list of {check, expected, measured, error, passed}")
    s.set_defaults(func=_cmd_validate)

    s = sub.add_parser("experiment", help="architecture experiments; afd: disaggregated vs "
                                          "unified board, decode in performance mode")
    s.add_argument("which", choices=("afd",))
    s.add_argument("rest", nargs=argparse.REMAINDER,
                   help="options of the experiment (npuvp experiment afd --help)")
    s.set_defaults(func=_cmd_experiment)

    s = sub.add_parser("generate", help="generate tokens with a model on a board")
    _session_options(s)
    s.add_argument("--prompt", action="append", dest="prompts", metavar="TEXT",
                   help="a text prompt (repeat for a batch)")
    s.add_argument("--prompt-ids", action="append", dest="prompts", type=_prompt_ids,
                   metavar="1,2,3", help="a prompt of token ids (repeat for a batch)")
    s.add_argument("--max-new-tokens", type=int, default=16, metavar="N",
                   help="tokens to generate per prompt (default: 16)")
    s.add_argument("--temperature", type=float, default=0.0,
                   help="0: greedy (default); else sample from softmax(logits / T)")
    s.add_argument("--top-k", type=int, default=0, metavar="K",
                   help="sample among the K most likely tokens (0: all)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    s.set_defaults(func=_cmd_generate)

    s = sub.add_parser("embed", help="sentence embeddings with an encoder (BERT) on a board")
    _session_options(s)
    s.add_argument("texts", nargs="+", metavar="TEXT")
    s.set_defaults(func=_cmd_embed)

    s = sub.add_parser("compile", help="compile a model for a board file (no device): "
                                       "memory map, schedule, core programs, packets")
    s.add_argument("--model", required=True, metavar="DIR", help="Hugging Face model directory")
    s.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory")
    _board_option(s, "compile for it (default: the default board)")
    _compile_options(s)
    s.add_argument("--prompt-tokens", type=int, default=8, metavar="N",
                   help="prompt length of the compiled prefill step (default: 8)")
    s.add_argument("--batch", type=int, default=1, metavar="B",
                   help="sequences per step (default: 1)")
    s.add_argument("--page-tokens", type=int, default=64, metavar="N",
                   help="positions per KV-cache block (default: 64)")
    s.set_defaults(func=_cmd_compile)

    s = sub.add_parser("demo", help="a tiny random model end to end on a board (default: "
                                    "embedded), checked against the numpy reference")
    s.add_argument("--driver", action="store_true",
                   help="run the driver example instead (DMA, command queue, a GEMM, errors)")
    s.add_argument("--device", help="device URL (default: embedded://)")
    _board_option(s)
    _compile_options(s)
    s.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2",
                   help="tiny model architecture (default: gpt2)")
    s.add_argument("--model-dir", metavar="DIR",
                   help="write the tiny model here and keep it (default: a temporary directory)")
    s.add_argument("--max-new-tokens", type=int, default=16, metavar="N")
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # user-facing errors get one clear line; model bugs a traceback
        if isinstance(exc, _user_errors()):
            print(f"npuvp {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def _user_errors() -> tuple[type[BaseException], ...]:
    from drivers.errors import DeviceTimeout, IncompatibleDeviceError, UnknownDeviceUrl
    from vp.spec.board_config import BoardConfigError
    from vp.spec.errors import GuestError, RequestError
    from vp.spec.transport import TransportError
    from sdk.checkpoint import CheckpointError
    from sdk.cli import UsageError
    from sdk.compiler import CompileError
    from sdk.model_config import UnsupportedModelError
    return (GuestError, RequestError, TransportError, BoardConfigError, DeviceTimeout,
            IncompatibleDeviceError, UnknownDeviceUrl, OSError, CheckpointError,
            UnsupportedModelError, CompileError, UsageError)


if __name__ == "__main__":
    sys.exit(main())
