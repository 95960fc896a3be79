"""The ``npuvp`` command line.

The command line is an application above both sides of the wire: each subcommand imports what
it needs when it runs (device side for ``serve`` and ``bench``, host side for ``info`` and
``demo``), so ``npuvp info --device grpc://...`` never loads a device model.
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
           "layer": "vp.bench.layer_bench", "hbm": "vp.bench.hbm_bench"}


def _cmd_bench(args) -> int:
    import importlib
    from vp.bench import print_figures
    print_figures(importlib.import_module(BENCHES[args.what]).run(), as_json=args.json)
    return 0


def _cmd_validate(args) -> int:
    from vp.validate import main as validate
    return validate(json=args.json)


def _cmd_demo(args) -> int:
    from drivers.example import run
    result = run(args.device)
    return 0 if result["bytes_equal"] else 1


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

    s = sub.add_parser("demo", help="end-to-end driver example on a board (default: embedded)")
    s.add_argument("--device", default="embedded://", help="device URL (default: embedded://)")
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
    return (GuestError, RequestError, TransportError, BoardConfigError, DeviceTimeout,
            IncompatibleDeviceError, UnknownDeviceUrl, OSError)


if __name__ == "__main__":
    sys.exit(main())
