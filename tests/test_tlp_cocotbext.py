"""An outside host: cocotbext-pcie's RootComplex enumerates the exported Verilog of the TLP
wrapper (Verilator, cocotb) through a Device that only passes TLPs, then brings SR-IOV up as
Linux does, reads every VF's configuration space (checked against the reference model) and does
MMIO to several VFs' BARs (sriov_tb.tlp_cocotb.run_bringup; docs/tlp-host.md)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import unavailable

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def toolchain():
    try:
        import cocotbext.pcie.core  # noqa: F401
    except ImportError as exc:
        unavailable(f"cocotbext-pcie not installed ({exc}): pip install cocotbext-pcie")
    from sriov_tb.cosim import ToolMissing, find_toolchain
    try:
        return find_toolchain()
    except ToolMissing as exc:
        unavailable(f"co-simulation tools not installed: {exc}")


def several_buses(tmp_path):
    """igb-82576 with 16 VFs from First VF Offset 0xF0 (ARI): VF1-8 at 01:1e.0-01:1f.6, VF9-16
    on bus 2 (02:00.0-02:01.6)."""
    text = (EXAMPLES / "igb-82576.toml").read_text()
    for old, new in (("total_vfs = 8", "total_vfs = 16"), ("initial_vfs = 8", "initial_vfs = 16"),
                     ("first_vf_offset = { ari = 0x80", "first_vf_offset = { ari = 0xF0")):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "igb-16vf-two-buses.toml"
    path.write_text(text)
    return path


def _run(toolchain, config, num_vfs, tmp_path, data_width):
    from cocotb_tools.runner import get_runner

    from sriov_ep.params import load_params
    from sriov_ep.tlp import SriovTlpEndpoint
    from sriov_ep.tools.export import TOP_NAME, to_verilog
    from sriov_tb import cosim
    from sriov_tb.tlp_cocotb import JOB_ENV

    params = load_params(config)
    verilog = to_verilog(params, top=SriovTlpEndpoint(params, data_width=data_width))
    folder = cosim.build(params, verilog=verilog, build_dir=cosim.default_build_dir(),
                         tools=toolchain)
    job = tmp_path / "job.json"
    report = tmp_path / "report.json"
    job.write_text(json.dumps({"config": str(config), "num_vfs": num_vfs,
                               "data_width": data_width, "report": str(report)}))
    results = tmp_path / "results.xml"
    log = tmp_path / "sim.log"
    with cosim._tool_environment(toolchain, {JOB_ENV: str(job)}):
        try:
            get_runner("verilator").test(
                test_module="sriov_tb.tlp_cocotb", hdl_toplevel=TOP_NAME,
                hdl_toplevel_lang="verilog", build_dir=folder, test_dir=tmp_path,
                testcase="run_bringup", results_xml=str(results),
                timescale=cosim.TIMESCALE, log_file=log)
        except (SystemExit, RuntimeError):     # (a failed cocotb test): say what failed
            text = log.read_text(errors="replace") if log.is_file() else "(no log)"
            lines = [ln.strip() for ln in text.splitlines() if "Error" in ln or "assert" in ln]
            pytest.fail(f"the cocotb test failed: {lines[-3:]}; log: {log}")
    failures = [f.get("message") or f.text
                for f in ET.parse(results).iter() if f.tag in ("failure", "error")]
    assert not failures, f"{failures}; log: {tmp_path / 'sim.log'}"
    assert report.is_file(), f"no report; log: {tmp_path / 'sim.log'}"
    return params, json.loads(report.read_text())


def test_igb_bringup(toolchain, tmp_path):
    """igb-82576 (one PF, 8 VFs on the PF's bus), 5 VFs enabled, 64-bit payload."""
    params, report = _run(toolchain, EXAMPLES / "igb-82576.toml", 5, tmp_path, 64)
    assert report["vf_rids"] == [0x0180 + 2 * n for n in range(5)]
    assert report["chosen"] == [1, 2, 5]
    # A write and a read back per VF chosen, one read of an unwritten VF: nothing else (the
    # UR reads past NumVFs and with VF MSE clear never reach the user logic).
    assert report["user_requests"] == 2 * 3 + 1


def test_vfs_on_two_buses(toolchain, tmp_path):
    """16 VFs from 01:1e.0, 12 enabled: VF9-12 on bus 2 are reached with Type 1 requests the
    root port passes on; 128-bit payload."""
    config = several_buses(tmp_path)
    params, report = _run(toolchain, config, 12, tmp_path, 128)
    rids = report["vf_rids"]
    assert rids[0] == 0x01F0 and rids[8] == 0x0200 and rids[-1] == 0x0206
    assert {r >> 8 for r in rids} == {1, 2}
    assert report["chosen"] == [1, 2, 6, 12]
    assert report["user_requests"] == 2 * 4 + 1
