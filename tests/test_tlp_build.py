"""``sriov-ep build --tlp``: the TLP wrapper exported with the same artefacts as the endpoint.

The port names and widths expected here are the interface of docs/tlp.md written out by hand
(the generic TLP stream of verilog-pcie: a 128-bit header, ``data_width`` bits of payload, one
strobe bit per payload dword), not read from the component; the lint is Verilator ``-Wall``
with the generated waiver file, which waives rules in ``sriov_ep_top.v`` only, so the
one-port-per-field wrapper is linted with every warning on.
"""

import re
import subprocess
import sys

import pytest

from sriov_ep.tools.build import write_build
from sriov_tb.cli import load_config

CONFIG = "examples/igb-82576.toml"


def _ports(text):
    """``{name: (direction, width)}`` of a Verilog module's ANSI port list."""
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+wire\s+(?:\[(\d+):0\]\s+)?(\w+)", text, re.M):
        ports[m.group(3)] = (m.group(1), int(m.group(2) or 0) + 1)
    return ports


@pytest.fixture(scope="module")
def root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("width", [64, 256])
def test_tlp_build_ports(tmp_path, root, width):
    params = load_config(str(root / CONFIG))
    paths = write_build(params, tmp_path, config_name="igb-82576.toml", tlp_data_width=width)
    wrapper = paths["wrapper"].read_text()
    assert f"the TLP wrapper, {width}-bit payload" in wrapper
    ports = _ports(wrapper)
    beat = {"hdr": 128, "data": width, "strb": width // 32, "sop": 1, "eop": 1}
    for stream, direction in (("rx", "input"), ("tx", "output"), ("req", "output"),
                              ("rx_cpl", "output"), ("cpl", "input"), ("dma_wr", "input"),
                              ("dma_rd", "input")):
        back = "output" if direction == "input" else "input"
        assert ports[f"{stream}_valid"] == (direction, 1)
        assert ports[f"{stream}_ready"] == (back, 1)
        for field, bits in beat.items():
            assert ports[f"{stream}_{field}"] == (direction, bits), (stream, field)
    # Requests handed to the user: BAR, function (PF index, VF number) and offset sidebands.
    assert ports["req_bar_id"] == ("output", 3)
    assert ports["req_func_pf"] == ("output", 4)
    assert ports["req_func_vf"] == ("output", 16)
    assert ports["req_offset"] == ("output", 64)
    # What goes out from user logic names its function; the wrapper stamps the Routing ID.
    for stream in ("cpl", "dma_wr", "dma_rd"):
        assert ports[f"{stream}_func_pf"] == ("input", 4)
        assert ports[f"{stream}_func_vf"] == ("input", 16)
    # The decoded config and memory ports stay inside.
    assert not any(name.startswith(("cfg_req", "mem_req", "mem_res")) for name in ports)


def test_tlp_build_lints_clean(tmp_path, root, verilator):
    argv, env = verilator
    params = load_config(str(root / CONFIG))
    write_build(params, tmp_path, config_name="igb-82576.toml", tlp_data_width=64)
    result = subprocess.run(
        [*argv, "--lint-only", "-Wall", "--top-module", "sriov_ep", "sriov_ep_lint.vlt",
         "sriov_ep_top.v", "sriov_ep.v"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("%")]
    assert result.returncode == 0 and not warnings, "\n".join(warnings[:40])


def test_tlp_build_cli(tmp_path, root):
    out = tmp_path / "out"
    ok = subprocess.run([sys.executable, "-m", "sriov_tb.cli", "build", str(root / CONFIG),
                         "--tlp", "--data-width", "128", "-o", str(out)],
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert _ports((out / "sriov_ep.v").read_text())["rx_data"] == ("input", 128)
    bad = subprocess.run([sys.executable, "-m", "sriov_tb.cli", "build", str(root / CONFIG),
                          "--tlp", "--data-width", "32", "-o", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2
    assert "--data-width" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
