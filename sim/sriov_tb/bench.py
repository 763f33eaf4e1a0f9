"""Benchmarks: area from Yosys synthesis and Fmax from nextpnr-ecp5 at several TotalVFs, and
simulation speed."""

import time

from sriov_ep.decode.bar import VfBarDecoder
from sriov_ep.decode.routing import RoutingIdDecoder
from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import Bar, EndpointParams, MsixParams, PfParams, PmParams
from sriov_ep.tools.synth import synthesize

__all__ = ["AREA_SIZES", "FMAX_SIZES", "MSIX_MAX_VFS", "PF_COUNTS", "bench_params",
           "area_rows", "fmax_rows", "sim_rows"]

AREA_SIZES = (8, 256, 2048, 65535)

COMPONENTS = {
    "RoutingIdDecoder": RoutingIdDecoder,
    "VfBarDecoder":     VfBarDecoder,
    "VfBarDecoder/2":   lambda params: VfBarDecoder(params, latency=2),
    "SriovEndpoint":    SriovEndpoint,
}


#: Most TotalVFs at which :func:`bench_params` has MSI-X. The VF MSI-X table is a memory of
#: 94 bits (Message Address, Upper Address, Data) x vectors x TotalVFs: with BENCH_VF_VECTORS = 4
#: that is 1.5 Mbit at 4096 VFs, within the 1.9 Mbit of block RAM of an LFE5UM-45F (108 DP16KD
#: of 18 Kbit), but 24.6 Mbit at 65535 VFs, more than any ECP5 has (LFE5UM-85F: 208 DP16KD, 3.7
#: Mbit; even 8192 VFs would need 3.1 Mbit of table plus the state memory). Above this the
#: figures are of the configuration space, PM and decoding without MSI-X.
MSIX_MAX_VFS = 4096

#: MSI-X vectors of the PF and of each VF in :func:`bench_params`.
BENCH_PF_VECTORS = 4
BENCH_VF_VECTORS = 4


def bench_params(total_vfs, pfs=1):
    """The configuration every size is measured with: ``pfs`` PFs at 00:00.0 .. 00:00.(pfs-1)
    sharing ``total_vfs`` VFs (``total_vfs // pfs`` each; 256 VFs over 16 PFs is 16 each), their
    VFs packed after the PFs in PF order (First VF Offset ``pfs - k + k * T``, VF Stride 1: with
    one PF, offset 1, the only values that fit 65535 VFs), the same in both layouts; one 64-bit
    and one 32-bit VF BAR; PF PM (the default) and a VF PM capability; and, up to
    :data:`MSIX_MAX_VFS` VFs in all, MSI-X for each PF (table and PBA in BAR0) and the VFs (in VF
    BAR2), 4 vectors each."""
    if total_vfs < pfs:
        raise ValueError(f"total_vfs: {total_vfs} VFs cannot be shared by {pfs} PFs")
    msix = vf_msix = None
    if total_vfs <= MSIX_MAX_VFS:
        msix = MsixParams(vectors=BENCH_PF_VECTORS, table_bar=0, table_offset=0x2000,
                          pba_bar=0, pba_offset=0x3000)
        vf_msix = MsixParams(vectors=BENCH_VF_VECTORS, table_bar=2, table_offset=0x000,
                             pba_bar=2, pba_offset=0x800)
    each = total_vfs // pfs
    functions = []
    for k in range(pfs):
        offset = pfs - k + k * each
        functions.append(PfParams(
            pf_rid=k, total_vfs=each,
            first_vf_offset_ari=offset, vf_stride_ari=1,
            first_vf_offset_non_ari=offset, vf_stride_non_ari=1,
            pf_bars=(Bar(0, 0x4000, is_64bit=True),),
            vf_bars=(Bar(0, 0x4000, is_64bit=True, prefetchable=True), Bar(2, 0x1000)),
            vf_pm=PmParams(), msix=msix, vf_msix=vf_msix))
    return EndpointParams(tuple(functions))


#: Numbers of PFs ``sriov-ep bench area --pfs`` measures by default, at a fixed 256 VFs in all.
PF_COUNTS = (1, 2, 4, 8, 16)


def _configurations(sizes, params, pfs=1):
    """``bench_params`` at each size, or just ``params`` (a user's configuration) if given."""
    return [params] if params is not None else [bench_params(n, pfs) for n in sizes]


def area_rows(sizes=AREA_SIZES, components=tuple(COMPONENTS), family="ecp5", params=None,
              pfs=1):
    """Yield one dict per (component, size): luts, ffs, brams and the synthesis time.
    With ``params``, that configuration alone instead of ``bench_params`` at ``sizes`` with
    ``pfs`` PFs. The decoders are per PF: with several PFs they are measured on PF 0."""
    configurations = _configurations(sizes, params, pfs)
    for name in components:
        for config in configurations:
            total_vfs = config.vf_entries
            start = time.monotonic()
            part = config if name == "SriovEndpoint" else config.pfs[0]
            stats = synthesize(COMPONENTS[name](part), family=family)
            yield {"component": name, "total_vfs": total_vfs, "pfs": config.num_pfs,
                   "family": family,
                   "luts": stats["luts"], "ffs": stats["ffs"], "brams": stats["brams"],
                   "seconds": round(time.monotonic() - start, 1)}


FMAX_SIZES = (256, 65535)


def fmax_rows(sizes=FMAX_SIZES, device="LFE5UM-45F", freq_mhz=200.0, mem_latency=2,
              seeds=(1, 2, 3), params=None, pfs=1):
    """Yield one dict per size: post-route Fmax (median, min and max over placement seeds) and
    utilisation of the endpoint, I/O registered. nextpnr's result moves by several percent from
    seed to seed, so one seed is not a figure. With ``params``, that configuration alone.
    ``fmax_by_seed`` lists each seed's figure; ``critical_path`` is the slowest seed's
    (``critical_seed``) last critical path report."""
    import statistics

    from sriov_ep.tools.fmax import place_and_route
    for config in _configurations(sizes, params, pfs):
        total_vfs = config.vf_entries
        start = time.monotonic()
        runs = [place_and_route(SriovEndpoint(config, mem_latency=mem_latency),
                                device=device, freq_mhz=freq_mhz, seed=seed) for seed in seeds]
        fmax = [run["fmax_mhz"] for run in runs]
        slowest = min(range(len(runs)), key=lambda i: fmax[i])
        yield {"component": "SriovEndpoint", "total_vfs": total_vfs, "pfs": config.num_pfs,
               "device": device,
               "mem_latency": mem_latency, "fmax_mhz": statistics.median(fmax),
               "fmax_min_mhz": min(fmax), "fmax_max_mhz": max(fmax), "seeds": list(seeds),
               "fmax_by_seed": fmax,
               "luts": runs[0]["luts"], "ffs": runs[0]["ffs"], "brams": runs[0]["brams"],
               "critical_seed": seeds[slowest],
               "critical_path": runs[slowest].get("critical_path", []),
               "seconds": round(time.monotonic() - start, 1)}


def sim_rows(params, *, config_name="", backends=("amaranth", "verilator", "native")):
    """Time the built-in scenario on each backend, one after the other in this process.

    The Verilator and native rows exclude the one-off Verilog build (done first, untimed); the
    Verilator row includes cocotb's start-up, since every run pays it.
    """
    from .cosim import build as build_verilator
    from .runner import builtin_scenario, run_ops
    ops = builtin_scenario(params)
    rows = []
    for backend in backends:
        if backend == "verilator":
            from .cosim import run_ops_verilator as run
            build_verilator(params)
        elif backend == "native":
            from .native import build_native
            from .native import run_ops_native as run
            build_native(params)
        else:
            run = run_ops
        start = time.monotonic()
        result = run(params, ops)
        seconds = time.monotonic() - start
        count = len(result.transactions)
        rows.append({"backend": backend, "config": config_name, "transactions": count,
                     "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)})
    return rows
