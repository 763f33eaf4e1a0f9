"""The ``sriov-ep`` command line."""

import argparse
import sys

from sriov_ep.params import ParamError, load_params
from sriov_ep.regs import Access
from sriov_ep.sriov_cap import sriov_capability_map

__all__ = ["main"]


def _format_reset(f):
    if f.access in (Access.RSVDP, Access.RSVDZ):
        return "0"
    digits = max(1, (f.width + 3) // 4)
    return f"0x{f.reset:0{digits}x}"


def cmd_regmap(args):
    params = load_params(args.config)
    regmap = sriov_capability_map(params)
    base = params.sriov_cap_offset
    print(f"# SR-IOV Extended Capability at {base:#05x} ({args.config})")
    print(f"{'offset':<7} {'register':<34} {'bits':<6} {'field':<40} {'access':<7} {'reset':<11}"
          f" notes")
    for offset, _width, reg, f in regmap.rows(base):
        if f is None:
            print(f"{offset:#05x}   {reg.name:<34} {'31:0':<6} {'-':<40} {'RO':<7} "
                  f"{'0x00000000':<11} {reg.desc}".rstrip())
            continue
        bits = f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else f"{f.lsb}"
        print(f"{offset:#05x}   {reg.name:<34} {bits:<6} {f.name:<40} {f.access.value:<7} "
              f"{_format_reset(f):<11} {f.desc}".rstrip())
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sriov-ep", description="SR-IOV endpoint logic: register maps, simulation, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regmap", help="print the configured SR-IOV capability register map")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.set_defaults(func=cmd_regmap)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParamError as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
