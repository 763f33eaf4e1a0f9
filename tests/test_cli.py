"""The ``sriov-ep`` command line: ``regmap``, ``sim``, ``lspci`` and ``cache``, run in-process
through ``sriov_tb.cli.main`` (and as the installed console script, on a pseudo-terminal for the
progress bars). Files are written only under ``tmp_path`` (bad input: ``test_cli_errors.py``).

Expected values are literal numbers from ``examples/*.toml`` and
``examples/scripts/igb-walk.script``
(whose comments give them) and from sriov-spec.md §6 (the ``lspci -xxxx`` format).
"""

import fcntl
import io
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from sriov_ep.params import load_params
from sriov_tb import cli as cli_module
from sriov_tb import cosim
from sriov_tb.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IGB = str(EXAMPLES / "igb-82576.toml")
NVME = str(EXAMPLES / "nvme.toml")
WALK = str(EXAMPLES / "scripts" / "igb-walk.script")

SUMMARY_RE = re.compile(r"^# (\d+) transactions, (\d+) completions checked against the reference "
                        r"model: all match$")
TXN_RE = re.compile(r"^(cfgrd|cfgwr) ([0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) 0x([0-9a-f]{3}) ([124]) "
                    r"(SC|UR) 0x([0-9a-f]+) (\d+) cycles(  \[(.*)\])?$")

#: Cycles from request to completion in examples/igb-82576.toml: CONFIG_LATENCY (7), reads and
#: writes alike (the MSI-X engine takes a write's new control state with the completion).
IGB_CYCLES = {"cfgrd": 7, "cfgwr": 7}


def cli(capsys, *argv):
    """Run ``sriov-ep ARGV`` in-process; return (exit code, stdout lines, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# -- regmap -------------------------------------------------------------------------------------


def regmap_sections(lines):
    """``{heading: rows}`` of ``sriov-ep regmap`` output: each section is a ``# ...`` heading, the
    column header and its rows; rows are ``{(offset, field): (register, bits, access, reset,
    notes)}``."""
    assert lines[0].startswith("# Register map of ")
    sections, rows = {}, None
    for line in lines[1:]:
        if not line:
            rows = None
        elif re.match(r"# [PV]F chain: ", line):
            continue
        elif line.startswith("# ") and rows is None:
            rows = sections[line[2:]] = {}
        elif line.split()[:6] == ["offset", "register", "bits", "field", "access", "reset"]:
            continue
        elif rows is not None:
            words = line.split(None, 6)
            offset, register, bits, field, access, reset = words[:6]
            rows[(int(offset, 16), field)] = (register, bits, access, reset,
                                             words[6] if len(words) > 6 else "")
    return sections


def regmap_rows(lines):
    """The rows of the one section of ``sriov-ep regmap --structure ...`` output, as
    ``{(offset, field): (register, bits, access, reset)}``."""
    (rows,) = regmap_sections(lines).values()
    return {key: value[:4] for key, value in rows.items()}


REGMAP_EXPECTED = {
    "igb-82576": (0x160, {
        (0x160, "cap_id"): ("header", "15:0", "RO", "0x0010"),
        (0x160, "cap_version"): ("header", "19:16", "RO", "0x1"),
        (0x160, "next_offset"): ("header", "31:20", "RO", "0x000"),
        (0x168, "vf_enable"): ("control", "0", "RW", "0x0"),
        (0x168, "vf_mse"): ("control", "3", "RW", "0x0"),
        (0x168, "ari_capable_hierarchy"): ("control", "4", "RW", "0x0"),
        (0x16a, "vf_migration_status"): ("status", "0", "RW1C", "0x0"),
        (0x16c, "initial_vfs"): ("initial_vfs", "15:0", "HwInit", "0x0008"),
        (0x16e, "total_vfs"): ("total_vfs", "15:0", "HwInit", "0x0008"),
        (0x170, "num_vfs"): ("num_vfs", "15:0", "RW", "0x0000"),
        (0x172, "function_dependency_link"): ("function_dependency_link", "7:0", "RO", "0x00"),
        (0x174, "first_vf_offset"): ("first_vf_offset", "15:0", "RO", "0x0180"),
        (0x176, "vf_stride"): ("vf_stride", "15:0", "RO", "0x0002"),
        (0x17a, "vf_device_id"): ("vf_device_id", "15:0", "HwInit", "0x10ca"),
        (0x17c, "supported_page_sizes"): ("supported_page_sizes", "31:0", "RO", "0x00000553"),
        (0x180, "system_page_size"): ("system_page_size", "31:0", "RW", "0x00000001"),
        (0x184, "type"): ("vf_bar0", "3:0", "RO", "0xc"),
        (0x188, "address_hi"): ("vf_bar1", "31:0", "RW", "0x00000000"),
        (0x190, "type"): ("vf_bar3", "3:0", "RO", "0xc"),
        (0x19c, "vf_migration_state_bir"): ("vf_migration_state_array_offset", "2:0", "RO",
                                            "0x0"),
    }),
    "many-vfs": (0x140, {
        (0x140, "cap_id"): ("header", "15:0", "RO", "0x0010"),
        (0x144, "vf_10bit_tag_requester_supported"): ("capabilities", "2", "RO", "0x1"),
        (0x148, "vf_10bit_tag_requester_enable"): ("control", "5", "RW", "0x0"),
        (0x14e, "total_vfs"): ("total_vfs", "15:0", "HwInit", "0x0fa0"),
        (0x154, "first_vf_offset"): ("first_vf_offset", "15:0", "RO", "0x0100"),
        (0x156, "vf_stride"): ("vf_stride", "15:0", "RO", "0x0001"),
        (0x15a, "vf_device_id"): ("vf_device_id", "15:0", "HwInit", "0x4001"),
        (0x15c, "supported_page_sizes"): ("supported_page_sizes", "31:0", "RO", "0x000007ff"),
        (0x164, "type"): ("vf_bar0", "3:0", "RO", "0xc"),
        (0x16c, "type"): ("vf_bar2", "3:0", "RO", "0x0"),
    }),
    "nvme": (0x120, {
        (0x120, "cap_id"): ("header", "15:0", "RO", "0x0010"),
        (0x120, "next_offset"): ("header", "31:20", "RO", "0x000"),
        (0x12e, "total_vfs"): ("total_vfs", "15:0", "HwInit", "0x007f"),
        (0x134, "first_vf_offset"): ("first_vf_offset", "15:0", "RO", "0x0001"),
        (0x136, "vf_stride"): ("vf_stride", "15:0", "RO", "0x0001"),
        (0x13a, "vf_device_id"): ("vf_device_id", "15:0", "HwInit", "0x0010"),
        (0x144, "type"): ("vf_bar0", "3:0", "RO", "0x4"),
    }),
}


@pytest.mark.parametrize("name", sorted(REGMAP_EXPECTED))
def test_regmap_sriov(capsys, name):
    """``--function pf --structure sriov``: the SR-IOV capability alone, every dword of it."""
    config = EXAMPLES / f"{name}.toml"
    base, expected = REGMAP_EXPECTED[name]
    code, lines, err = cli(capsys, "regmap", config, "--function", "pf", "--structure", "sriov")
    assert (code, err) == (0, "")
    assert lines[0].startswith(f"# Register map of {config}: PF ")
    assert lines[1].startswith("# PF chain: header 0x000, pcie 0x040")
    assert not any(line.startswith("# VF chain") for line in lines)
    heading = lines[3]
    assert heading.startswith(f"# PF SR-IOV Extended Capability at {base:#05x}.."
                              f"{base + 0x3f:#05x}, next 0x")
    assert lines[4].split()[:6] == ["offset", "register", "bits", "field", "access", "reset"]
    rows = regmap_rows(lines)
    for key, value in expected.items():
        assert rows.get(key) == value, key
    # Every dword of the 0x40-byte capability appears, and nothing outside it.
    offsets = {offset for offset, _ in rows}
    assert {o & ~3 for o in offsets} == set(range(base, base + 0x40, 4))


#: IGB_LIKE and FULL of tests/test_build.py as TOML: the 82576-like PF (IDs, BARs, offsets
#: from examples/igb-82576.toml) with default PM; FULL adds PF and VF MSI-X, VF PM and user
#: windows.
IGB_LIKE_TOML = """\
[pf]
address = "01:00.0"
vendor_id = 0x8086
device_id = 0x10C9
revision_id = 0x01
bar = [{ index = 0, size = "128K" }, { index = 1, size = "128K" }, { index = 3, size = "16K" }]

[sriov]
ari_cap_offset = 0x100
cap_offset = 0x160
total_vfs = 8
vf_device_id = 0x10CA
first_vf_offset = { ari = 0x80, non_ari = 0x180 }
vf_stride = { ari = 2, non_ari = 2 }
vf_bar = [{ index = 0, size = "16K", width = 64, prefetchable = true },
          { index = 3, size = "16K", width = 64, prefetchable = true }]
"""

FULL_TOML = IGB_LIKE_TOML.replace("[sriov]\n", """\
msix = { vectors = 10, table = { bar = 3, offset = 0 }, pba = { bar = 3, offset = 0x2000 } }
capability = [
  { name = "vsec", kind = "extended", id = 0x000B, version = 1, size = 0x20 },
  { name = "vndr", kind = "legacy", id = 0x09, size = 0x10 },
  { name = "scratch", kind = "range", size = 0x40, offset = 0x400 },
]

[sriov]
vf_pm = true
vf_capability = [{ name = "vf_vsec", kind = "extended", id = 0x0023, size = 0x10 }]
""") + """
[sriov.vf_msix]
vectors = 3
max_vectors = 8
table = { bar = 3, offset = 0 }
pba = { bar = 3, offset = 0x2000 }
"""


def test_regmap_every_structure(capsys, tmp_path):
    """Without options: every structure of the PF's chain, then of the VFs' chain, each with
    its offsets and link; PM (the default) after the PCI Express capability at 0x7c."""
    config = write(tmp_path, "igb-like.toml", IGB_LIKE_TOML)
    code, lines, err = cli(capsys, "regmap", config)
    assert (code, err) == (0, "")
    assert lines[:3] == [
        f"# Register map of {config}: PF 01:00.0, TotalVFs 8",
        "# PF chain: header 0x000, pcie 0x040, pm 0x07c, ari 0x100, sriov 0x160",
        "# VF chain: header 0x000, pcie 0x040, ari 0x100",
    ]
    sections = regmap_sections(lines)
    assert list(sections) == [
        "PF Type 0 Configuration Space Header at 0x000..0x03f, Capabilities Pointer 0x40",
        "PF PCI Express Capability at 0x040..0x07b, next 0x7c",
        "PF Power Management Capability at 0x07c..0x083, next 0x00 (last capability)",
        "PF ARI Extended Capability at 0x100..0x107, next 0x160",
        "PF SR-IOV Extended Capability at 0x160..0x19f, next 0x000 (last extended capability)",
        "VF Type 0 Configuration Space Header at 0x000..0x03f, Capabilities Pointer 0x40",
        "VF PCI Express Capability at 0x040..0x07b, next 0x00 (last capability)",
        "VF ARI Extended Capability at 0x100..0x107, next 0x000 (last extended capability)",
    ]
    pm = sections["PF Power Management Capability at 0x07c..0x083, next 0x00 (last capability)"]
    assert pm[(0x07c, "cap_id")] == ("cap_header", "7:0", "RO", "0x01",
                                     "Power Management capability header")
    assert pm[(0x07e, "version")][:4] == ("pmc", "2:0", "RO", "0x3")
    assert pm[(0x080, "power_state")][:4] == ("pmcsr", "1:0", "RW", "0x0")
    assert pm[(0x082, "-")][:4] == ("pmcsr_bse", "7:0", "RO", "0x00")
    pcie = sections["PF PCI Express Capability at 0x040..0x07b, next 0x7c"]
    assert pcie[(0x040, "next_pointer")][:4] == ("cap_header", "15:8", "RO", "0x7c")
    vf_header = sections["VF Type 0 Configuration Space Header at 0x000..0x03f, "
                         "Capabilities Pointer 0x40"]
    assert vf_header[(0x004, "bus_master_enable")] == ("command", "2", "RW", "0x0", "per VF")


def test_regmap_full(capsys, tmp_path):
    """PF and VF MSI-X, VF PM, user windows: every structure listed, the bytes user logic
    serves shown as one row, per-VF fields marked."""
    config = write(tmp_path, "full.toml", FULL_TOML)
    code, lines, err = cli(capsys, "regmap", config)
    assert (code, err) == (0, "")
    assert lines[1:3] == [
        "# PF chain: header 0x000, pcie 0x040, pm 0x07c, msix 0x084, vndr 0x090, ari 0x100, "
        "sriov 0x160, vsec 0x1a0, scratch 0x400",
        "# VF chain: header 0x000, pcie 0x040, pm 0x07c, msix 0x084, ari 0x100, vf_vsec 0x108",
    ]
    sections = regmap_sections(lines)
    assert list(sections) == [
        "PF Type 0 Configuration Space Header at 0x000..0x03f, Capabilities Pointer 0x40",
        "PF PCI Express Capability at 0x040..0x07b, next 0x7c",
        "PF Power Management Capability at 0x07c..0x083, next 0x84",
        "PF MSI-X Capability at 0x084..0x08f, next 0x90",
        "PF user capability 'vndr' (served by user logic) at 0x090..0x09f, next 0x00 (last "
        "capability), served by user logic (window 1)",
        "PF ARI Extended Capability at 0x100..0x107, next 0x160",
        "PF SR-IOV Extended Capability at 0x160..0x19f, next 0x1a0",
        "PF user extended capability 'vsec' (served by user logic) at 0x1a0..0x1bf, next 0x000 "
        "(last extended capability), served by user logic (window 0)",
        "PF user range 'scratch' (served by user logic) at 0x400..0x43f, not linked (a range), "
        "served by user logic (window 2)",
        "VF Type 0 Configuration Space Header at 0x000..0x03f, Capabilities Pointer 0x40",
        "VF PCI Express Capability at 0x040..0x07b, next 0x7c",
        "VF Power Management Capability at 0x07c..0x083, next 0x84",
        "VF MSI-X Capability at 0x084..0x08f, next 0x00 (last capability)",
        "VF ARI Extended Capability at 0x100..0x107, next 0x108",
        "VF user extended capability 'vf_vsec' (served by user logic) at 0x108..0x117, next 0x000 "
        "(last extended capability), served by user logic (window 0)",
    ]
    by_name = {heading.split(" at ")[0]: rows for heading, rows in sections.items()}
    msix = by_name["PF MSI-X Capability"]
    assert msix[(0x084, "cap_id")][:4] == ("cap_header", "7:0", "RO", "0x11")
    assert msix[(0x086, "table_size")] == ("message_control", "10:0", "HwInit", "0x009",
                                           "Message Control; 10 vectors")
    assert msix[(0x088, "table_bir")][:4] == ("table", "2:0", "RO", "0x3")
    assert msix[(0x08c, "pba_offset")][:4] == ("pba", "31:3", "RO", "0x00000400")
    assert by_name["PF user capability 'vndr' (served by user logic)"] == {
        (0x090, "cap_id"): ("cap_header", "7:0", "RO", "0x09",
                            "capability header (answered by the endpoint)"),
        (0x090, "next_pointer"): ("cap_header", "15:8", "RO", "0x00", ""),
        (0x092, "-"): ("-", "-", "-", "-",
                       "served by user logic: 0x092..0x09f (ucfg_req window 1)"),
    }
    assert by_name["PF user extended capability 'vsec' (served by user logic)"][
        (0x1a4, "-")][4] == "served by user logic: 0x1a4..0x1bf (ucfg_req window 0)"
    assert by_name["PF user range 'scratch' (served by user logic)"] == {
        (0x400, "-"): ("-", "-", "-", "-",
                       "served by user logic: 0x400..0x43f (ucfg_req window 2)")}
    assert by_name["PF SR-IOV Extended Capability"][(0x160, "next_offset")][:4] == \
        ("header", "31:20", "RO", "0x1a0")
    vf_pm = by_name["VF Power Management Capability"]
    assert vf_pm[(0x080, "power_state")] == (
        "pmcsr", "1:0", "RW", "0x0",
        "Power Management Control/Status; D0 or D3hot; other values ignored; per VF")
    vf_msix = by_name["VF MSI-X Capability"]
    assert vf_msix[(0x086, "table_size")] == (
        "message_control", "10:0", "HwInit", "0x002",
        "Message Control; 3 vectors; per VF, set by user logic up to 8")
    assert vf_msix[(0x086, "function_mask")] == ("message_control", "14", "RW", "0x0", "per VF")
    assert vf_msix[(0x086, "msix_enable")] == ("message_control", "15", "RW", "0x0", "per VF")
    assert vf_msix[(0x088, "table_bir")][4] == "Table Offset/Table BIR; VF BAR3"
    vsec = by_name["VF user extended capability 'vf_vsec' (served by user logic)"]
    assert vsec[(0x108, "cap_id")][:4] == ("header", "15:0", "RO", "0x0023")
    assert vsec[(0x10c, "-")][4] == "served by user logic: 0x10c..0x117 (ucfg_req window 0)"
    # Nothing the PF holds is per VF.
    assert not any("per VF" in row[4] for heading, rows in sections.items()
                   if heading.startswith("PF ") for row in rows.values())


@pytest.mark.parametrize("options, headings", [
    (["--function", "vf"], ["VF Type 0", "VF PCI Express", "VF Power Management", "VF MSI-X",
                            "VF ARI", "VF user extended capability 'vf_vsec'"]),
    (["--structure", "msix"], ["PF MSI-X", "VF MSI-X"]),
    (["--structure", "pm", "--function", "pf"], ["PF Power Management"]),
    (["--structure", "scratch"], ["PF user range 'scratch'"]),
])
def test_regmap_options(capsys, tmp_path, options, headings):
    config = write(tmp_path, "full.toml", FULL_TOML)
    code, lines, err = cli(capsys, "regmap", config, *options)
    assert (code, err) == (0, "")
    got = list(regmap_sections(lines))
    assert len(got) == len(headings)
    for heading, prefix in zip(got, headings, strict=True):
        assert heading.startswith(prefix), (heading, prefix)
    function = options[options.index("--function") + 1] if "--function" in options else None
    chains = [line[2:4] for line in lines if re.match(r"# [PV]F chain: ", line)]
    assert chains == {"pf": ["PF"], "vf": ["VF"], None: ["PF", "VF"]}[function]


def test_regmap_unknown_structure(capsys, tmp_path):
    config = write(tmp_path, "igb-like.toml", IGB_LIKE_TOML)
    code, lines, err = cli(capsys, "regmap", config, "--function", "vf", "--structure", "sriov")
    assert (code, lines) == (2, [])
    assert err == (f"sriov-ep: error: {config}: no structure 'sriov' in the VF chain (it has "
                   f"ari, header, pcie)\n")


# -- sim ----------------------------------------------------------------------------------------


def test_sim_builtin_scenario(capsys):
    """Enumerate, enable InitialVFs (8), walk every VF: exit 0, one line per transaction, each
    7 cycles, VF1 01:10.0 .. VF8 01:11.6 walked, and a final line saying
    all match."""
    code, lines, err = cli(capsys, "sim", IGB)
    assert (code, err) == (0, "")
    match = SUMMARY_RE.match(lines[-1])
    assert match, lines[-1]
    count, compared = int(match[1]), int(match[2])
    assert count == compared == len(lines) - 1
    txns = [TXN_RE.match(line) for line in lines[:-1]]
    assert all(txns), [line for line, m in zip(lines, txns, strict=False) if not m][:3]
    walked = {m[2] for m in txns if m[9] and m[9].startswith("walk")}
    assert walked == {f"01:1{d}.{f}" for d in (0, 1) for f in (0, 2, 4, 6)}
    assert {m[5] for m in txns} == {"SC"}
    assert {(m[1], int(m[7])) for m in txns} == set(IGB_CYCLES.items())


def test_sim_igb_walk_script(capsys):
    """examples/scripts/igb-walk.script: every expectation holds; the script's own accesses
    are tagged with their line numbers."""
    code, lines, err = cli(capsys, "sim", IGB, WALK)
    assert (code, err) == (0, "")
    assert SUMMARY_RE.match(lines[-1])
    tagged = [line for line in lines if "[line " in line]
    assert tagged == [
        "cfgrd 01:00.0 0x000 4 SC 0x10c98086 7 cycles  [line 8]",
        "cfgrd 01:10.0 0x000 4 SC 0xffffffff 7 cycles  [line 12]",
        "cfgrd 01:10.2 0x004 2 SC 0x0000 7 cycles  [line 14]",
        "cfgwr 01:10.2 0x004 2 SC 0x0004 7 cycles  [line 15]",
        "cfgrd 01:10.2 0x004 2 SC 0x0004 7 cycles  [line 16]",
        "cfgrd 01:10.2 0x004 2 SC 0x0000 7 cycles  [line 19]",
        "cfgrd 01:11.0 0x000 4 UR 0xffffffff 7 cycles  [line 21]",
    ]
    # The VF FLR (line 18) wrote Initiate FLR to VF2's Device Control, in 7 cycles too.
    flr = [m for m in map(TXN_RE.match, lines) if m and m[9] == "flr 01:10.2" and m[1] == "cfgwr"]
    assert [(m[2], m[3], m[4], m[5], int(m[6], 16) >> 15, int(m[7])) for m in flr] == \
        [("01:10.2", "048", "2", "SC", 1, 7)]


def test_sim_json(capsys):
    """--json: every line is a JSON object; transactions carry op, bdf, offset, size, status,
    value, cycles; the last line is the summary."""
    code, lines, err = cli(capsys, "sim", IGB, WALK, "--json")
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in lines]
    summary = records.pop()
    assert summary == {"op": "summary", "transactions": len(records),
                       "compared": len(records), "status": "pass"}
    for r in records:
        assert {"op", "bdf", "offset", "size", "status", "value", "cycles"} <= set(r)
        assert r["op"] in ("cfgrd", "cfgwr")
        assert re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", r["bdf"])
        assert r["size"] in (1, 2, 4) and 0 <= r["offset"] <= 0xFFF
        assert r["status"] in ("SC", "UR")
        assert r["cycles"] == IGB_CYCLES[r["op"]], r
        assert 0 <= r["value"] < 1 << (8 * r["size"])
    assert records[0] == {"op": "cfgrd", "bdf": "01:00.0", "offset": 0, "size": 4,
                          "status": "SC", "value": 0x10C98086, "cycles": 7, "step": "line 8",
                          "line": 8}
    ur = [r for r in records if r["status"] == "UR"]
    assert [(r["bdf"], r["value"], r["line"]) for r in ur] == [("01:11.0", 0xFFFF_FFFF, 21)]


def test_sim_vcd(capsys, tmp_path):
    """--vcd writes the VCD and a GTKWave save file with the signal groups config_request,
    completion, decoder and sriov_state."""
    vcd = tmp_path / "waves" / "x.vcd"
    code, lines, err = cli(capsys, "sim", IGB, WALK, "--vcd", vcd)
    assert (code, err) == (0, "")
    assert lines[-1] == f"# waveform: {vcd} (GTKWave: {vcd.with_suffix('.gtkw')})"
    text = vcd.read_text()
    assert "$timescale" in text and "$enddefinitions" in text and "cfg_req" in text
    gtkw = vcd.with_suffix(".gtkw").read_text()
    groups = set(re.findall(r"^-(\w+)$", gtkw, re.MULTILINE))
    assert {"config_request", "completion", "decoder", "sriov_state"} <= groups
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["waves", "x.gtkw", "x.vcd"]


def test_sim_no_ari(capsys):
    """--no-ari: Linux leaves ARI Capable Hierarchy at 0, so the VFs are 02:10.0 .. 02:11.6."""
    code, lines, err = cli(capsys, "sim", IGB, "--no-ari")
    assert (code, err) == (0, "")
    assert SUMMARY_RE.match(lines[-1])
    bdfs = {TXN_RE.match(line)[2] for line in lines[:-1]}
    assert bdfs == {"01:00.0"} | {f"02:1{d}.{f}" for d in (0, 1) for f in (0, 2, 4, 6)}
    assert "cfgwr 01:00.0 0x168 2 SC 0x0009 7 cycles  [enable 8]" in lines   # VFE|MSE, no ARI


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sim_failed_expectation(capsys, tmp_path):
    script = write(tmp_path, "check.script", "# the PF is an 82576\n"
                                             "cfgrd 01:00.0 0 4 == 0x12345678\n")
    code, lines, err = cli(capsys, "sim", IGB, script)
    assert code == 1
    assert err == (f"sriov-ep: error: {script}:2: cfgrd 01:00.0 0 4 == 0x12345678: "
                   f"read 0x10c98086, expected 0x12345678\n")
    assert not any(SUMMARY_RE.match(line) for line in lines)


def test_sim_host_refuses(capsys, tmp_path):
    """An enable Linux would refuse (9 > TotalVFs) fails with file:line and Linux's errno."""
    script = write(tmp_path, "nine.script", "enable 01:00.0 9\n")
    code, _, err = cli(capsys, "sim", IGB, script)
    assert code == 1
    assert err.startswith(f"sriov-ep: error: {script}:1: enable 01:00.0 9: EINVAL")


@pytest.mark.parametrize("text,line,problem", [
    ("idle 1\ncfgrd 01:00.0 0x3 4\n", 2, "OFFSET 0x3 with SIZE 4 is not naturally aligned"),
    ("# a comment\n\ncfgread 01:00.0 0 4\n", 3, "did you mean 'cfgrd'?"),
    ("cfgwr 01:00.0 0x04 2\n", 1, "cfgwr takes BDF OFFSET SIZE VALUE, got 3 arguments"),
    ("cfgrd 01:20.0 0 4\n", 1, "device 0x20 is above 0x1f"),
    ("idle 1\nidle 2\nmemrd 0x100000ffe 4\n", 3, "crosses a 4 KiB boundary"),
])
def test_sim_malformed_script(capsys, tmp_path, text, line, problem):
    script = write(tmp_path, "bad.script", text)
    code, lines, err = cli(capsys, "sim", IGB, script)
    assert code == 1
    assert err.startswith(f"sriov-ep: error: {script}:{line}: ")
    assert problem in err
    assert lines == []


def test_sim_missing_script(capsys, tmp_path):
    code, _, err = cli(capsys, "sim", IGB, tmp_path / "none.script")
    assert code == 1
    assert err.startswith(f"sriov-ep: error: {tmp_path / 'none.script'}:0: cannot read")


@pytest.mark.parametrize("command", [["regmap"], ["sim"], ["lspci", "--enable", "1"]])
@pytest.mark.parametrize("edit,field", [
    (("total_vfs = 8", "total_vfs = 0"), "sriov.total_vfs"),
    (("vf_device_id = 0x10CA", "vf_device_id = 0x10CA\nbogus = 1"), "sriov.bogus"),
    (("function_dependency_link = 0x00", "function_dependency_link = 0x01"),
     "sriov.function_dependency_link"),
    (('address = "01:00.0"', 'address = "01:00.8"'), "pf.address"),
], ids=["total_vfs", "unknown_key", "fdl", "address"])
def test_bad_config(capsys, tmp_path, command, edit, field):
    """A configuration that breaks a rule: exit 2, the message names the file and the field."""
    text = Path(IGB).read_text()
    assert edit[0] in text
    config = write(tmp_path, "bad.toml", text.replace(edit[0], edit[1]))
    code, lines, err = cli(capsys, command[0], config, *command[1:])
    assert code == 2
    assert err.startswith(f"sriov-ep: error: {config}: {field}: ")
    assert lines == []


def test_missing_config(capsys, tmp_path):
    code, _, err = cli(capsys, "sim", tmp_path / "none.toml")
    assert code == 2
    assert err.startswith(f"sriov-ep: error: {tmp_path / 'none.toml'}: (file): cannot read")


# -- lspci --------------------------------------------------------------------------------------


def dump_blocks(lines):
    """Split lspci output into blocks at blank lines."""
    blocks, block = [], []
    for line in lines:
        if line == "":
            if block:
                blocks.append(block)
            block = []
        else:
            block.append(line)
    if block:
        blocks.append(block)
    return blocks


def test_lspci_format(capsys, native):
    """`lspci --enable 2`: the PF and VFs 1, 2, each as a `BB:DD.F ` header line (with the
    trailing space lspci -F needs) and 256 lines of 16 bytes: `00:` .. `f0:`, `100:` .. `ff0:`
    (sriov-spec.md §6). On the native backend (with the Amaranth simulator the test took 52 s
    in a CI run, 0.4 s now): tests/test_native.py's test_lspci_dumps_match shows that it prints
    the Amaranth backend's dumps."""
    code, lines, err = cli(capsys, "lspci", IGB, "--enable", "2", "--backend", "native")
    assert (code, err) == (0, "")
    blocks = dump_blocks(lines)
    assert [b[0] for b in blocks] == [
        f"01:00.0 SR-IOV PF (sriov-ep, {IGB}) ",
        f"01:10.0 SR-IOV VF 1 (sriov-ep, {IGB}) ",
        f"01:10.2 SR-IOV VF 2 (sriov-ep, {IGB}) ",
    ]
    for block in blocks:
        data = block[1:]
        assert len(data) == 256
        for n, line in enumerate(data):
            prefix = f"{16 * n:02x}: " if n < 16 else f"{16 * n:03x}: "
            assert line.startswith(prefix), line
            assert re.fullmatch(r"(?: [0-9a-f]{2}){16}", line[len(prefix) - 1:]), line
        assert data[0x10][:4] == "100:" and data[-1][:4] == "ff0:"
    pf, vf1 = blocks[0][1:], blocks[1][1:]
    assert pf[0].startswith("00: 86 80 c9 10 06 00 10 00 01 00 00 02")
    assert pf[0x10].startswith("100: 0e 00 01 16 00 00 00 00")     # ARI at 0x100, next 0x160
    assert pf[0x16].startswith("160: 10 00 01 00 00 00 00 00 19 00 00 00 08 00 08 00")
    assert pf[0x17].startswith("170: 02 00 00 00 80 00 02 00 00 00 ca 10 53 05 00 00")
    assert vf1[0].startswith("00: ff ff ff ff 00 00 11 00 01 00 00 02")
    assert vf1[0x10].startswith("100: 0e 00 01 00 00 00 00 00")


def test_lspci_script(capsys, tmp_path):
    """`lspci --script`: the script runs first; it ends with `disable`, so only the PF is
    dumped, with VF Enable clear and NumVFs 0."""
    code, lines, err = cli(capsys, "lspci", IGB, "--script", WALK)
    assert (code, err) == (0, "")
    blocks = dump_blocks(lines)
    assert [b[0][:8] for b in blocks] == ["01:00.0 "]
    assert blocks[0][0x17].startswith("160: 10 00 01 00 00 00 00 00 10 00 00 00 08 00 08 00")


def console_script():
    path = Path(sys.executable).parent / "sriov-ep"
    return str(path) if path.exists() else shutil.which("sriov-ep")


def test_console_script_installed(tmp_path):
    """The `sriov-ep` entry point of pyproject.toml is installed and runs."""
    exe = console_script()
    assert exe, "the sriov-ep console script is not installed (pip install -e .)"
    done = subprocess.run([exe, "regmap", IGB], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"# Register map of {IGB}: PF 01:00.0, TotalVFs 8\n")
    assert "\n# PF SR-IOV Extended Capability at 0x160..0x19f, next 0x000 (last extended " \
        "capability)\n" in done.stdout
    bad = subprocess.run([exe, "sim", str(tmp_path / "none.toml")], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and "(file): cannot read" in bad.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("what", ["area", "fmax"])
def test_bench_config_and_sizes_are_exclusive(capsys, what):
    """``bench area|fmax --config`` measures that configuration at its own TotalVFs: asking for
    sizes as well is refused before any tool runs (so this needs no Yosys)."""
    code, out, err = cli(capsys, "bench", what, "--config", EXAMPLES / "nvme.toml",
                         "--sizes", "8")
    assert code == 2 and out == []
    assert f"bench {what}: --config" in err and "--sizes" in err


def test_bench_config_errors_name_the_file(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("total_vfs = 0\n")
    code, out, err = cli(capsys, "bench", "area", "--config", bad)
    assert code == 2 and "bad.toml" in err


def test_closed_pipe_is_not_an_error(tmp_path):
    """``sriov-ep regmap ... | head -1``: the reader leaves early; no traceback, status 0."""
    exe = console_script()
    assert exe, "the sriov-ep console script is not installed (pip install -e .)"
    proc = subprocess.Popen([exe, "regmap", IGB], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()             # as `head -1` does after its line
    _, err = proc.communicate(timeout=120)
    assert first.startswith(b"# Register map of")
    assert (proc.returncode, err) == (0, b"")


# -- Output as it comes, progress on a terminal ---------------------------------------------------


def test_lspci_writes_each_dump_as_it_is_read(capsys, monkeypatch, native):
    """`lspci` writes a function's dump before it reads the next function (with 65535 VFs the
    first dump comes out at once, not after hours). On the native backend (the command's code
    is the same for every backend; with the Amaranth simulator the test took 14 s on the loaded
    machine, 0.2 s now)."""
    import sriov_tb.native as runner
    real_run_ops = runner.run_ops_native
    events = []

    def run_ops(params, ops, **options):
        write_dump = options.pop("on_dump")

        def on_dump(rid, image):
            write_dump(rid, image)
            events.append(("written", rid, capsys.readouterr().out))

        def on_transaction(txn):
            if txn.step == "dump" and (not events or events[-1][:2] != ("read", txn.rid)):
                events.append(("read", txn.rid, ""))
        return real_run_ops(params, ops, on_dump=on_dump, on_transaction=on_transaction,
                            **options)
    monkeypatch.setattr(runner, "run_ops_native", run_ops)
    assert main(["lspci", IGB, "--enable", "1", "--backend", "native"]) == 0
    assert capsys.readouterr() == ("", "")          # everything was out by the last dump
    rids = [0x0100, 0x0180]
    assert [e[:2] for e in events] == [(kind, rid) for rid in rids
                                       for kind in ("read", "written")]
    written = [e[2] for e in events if e[0] == "written"]
    assert [dump.splitlines()[0][:8] for dump in written] == ["01:00.0 ", "01:10.0 "]
    assert all(len(dump.splitlines()) == 258 and dump.endswith("\n\n") for dump in written)


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


def test_progress_when_stderr_is_a_terminal(capsys, monkeypatch, tmp_path):
    """With stderr a terminal, `sim` draws its progress there (Linux's steps, then the VFs
    walked, a bar to 8/8) and its output is what it is without; with --json, no progress."""
    code, plain, err = cli(capsys, "sim", IGB)
    assert (code, err) == (0, "")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(cli_module.Progress, "MININTERVAL", 0)     # draw every step
    code, lines, _ = cli(capsys, "sim", IGB)
    assert code == 0 and lines == plain
    drawn = terminal.getvalue()
    for step in ("building the simulation", "enumerate: ", "sriov_init: ", "assign VF BARs: ",
                 "enable 8: ", "walk VFs: "):
        assert step in drawn, step
    assert re.search(r"walk VFs: +100%\|.*\| 8/8 VFs", drawn), drawn[-300:]
    assert re.search(r"sriov_init: \d+ transactions \[", drawn)
    terminal.truncate(0)
    script = write(tmp_path, "one.script", "cfgrd 01:00.0 0 4\n")
    code, lines, _ = cli(capsys, "sim", IGB, script, "--json")
    assert code == 0 and len(lines) == 2 and terminal.getvalue() == ""


def run_on_terminal(argv, cwd):
    """Run ``argv`` with stderr on a pseudo-terminal 100 columns wide and stdout to a pipe;
    return (exit status, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, cwd=cwd)
    os.close(slave)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    received = b""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:             # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            received += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=600)
    reader.join()
    proc.stdout.close()
    os.close(master)
    return proc.returncode, out[0].decode(), received.decode()


def test_progress_on_a_real_terminal(capsys, tmp_path):
    """The console script on a pseudo-terminal: `lspci` counts the functions dumped (2 of 2) and
    clears its bar at the end; stdout is byte for byte what it is without a terminal."""
    exe = console_script()
    assert exe, "the sriov-ep console script is not installed (pip install -e .)"
    argv = [exe, "lspci", IGB, "--enable", "1"]
    without = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=tmp_path)
    code, out, drawn = run_on_terminal(argv, tmp_path)
    plain, err = without.communicate(timeout=600)
    assert (without.returncode, err) == (0, "")
    assert (code, out) == (0, plain)
    assert "sriov_init: " in drawn and "dump:" in drawn
    assert re.search(r"dump: +100%\|.*\| 2/2 functions", drawn), drawn[-300:]
    assert drawn.endswith("\r"), drawn[-100:]          # the bar is gone: a blank line, \r
    assert drawn.rsplit("\r", 2)[-2].strip() == ""


# -- The Verilator build cache -------------------------------------------------------------------


def test_cache_folder(monkeypatch, tmp_path):
    """$SRIOV_EP_CACHE, else $XDG_CACHE_HOME/sriov-ep (if absolute), else ~/.cache/sriov-ep;
    the Verilator builds go to its `cosim` folder. Asking creates nothing."""
    monkeypatch.setenv("SRIOV_EP_CACHE", str(tmp_path / "mine"))
    assert cosim.cache_dir() == tmp_path / "mine"
    assert cosim.default_build_dir() == tmp_path / "mine" / "cosim"
    monkeypatch.delenv("SRIOV_EP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cosim.cache_dir() == tmp_path / "xdg" / "sriov-ep"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")       # the XDG spec: ignore it
    assert cosim.cache_dir() == tmp_path / "home" / ".cache" / "sriov-ep"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cosim.default_build_dir() == tmp_path / "home" / ".cache" / "sriov-ep" / "cosim"
    assert list(tmp_path.iterdir()) == []


def test_tests_build_under_build_folder():
    """conftest.py: what the tests build by default goes under build/, never into the user's
    cache; subprocesses inherit it."""
    assert cosim.default_build_dir() == ROOT / "build" / "cache" / "cosim"


def test_build_goes_to_the_cache_folder(monkeypatch, tmp_path):
    """`cosim.build` without a build_dir builds in the cache folder's `cosim`, once per Verilog
    text. (Verilator is stubbed: this is about where, test_cosim.py about how.)"""
    runner = pytest.importorskip("cocotb_tools.runner")
    monkeypatch.setenv("SRIOV_EP_CACHE", str(tmp_path))
    built = []

    class Runner:
        def build(self, *, hdl_toplevel, build_dir, **options):
            built.append(Path(build_dir))
            (Path(build_dir) / hdl_toplevel).write_text("a Verilator model\n")
    monkeypatch.setattr(runner, "get_runner", lambda simulator: Runner())
    tools = cosim.Toolchain(str(tmp_path / "verilator"), str(tmp_path), "5.48", "2.1.0")
    params = load_params(IGB)
    verilog = "module sriov_ep_top; endmodule\n"
    folder = cosim.build(params, tools=tools, verilog=verilog)
    assert folder.parent == tmp_path / "cosim" and built == [folder]
    assert cosim.build(params, tools=tools, verilog=verilog) == folder and len(built) == 1
    assert cosim.cache_info()["builds"] == 1
    with cosim._built(params, build_dir=None, tools=tools, verilog=verilog) as used:
        assert used == folder                   # a run holds its build: --clear leaves it
        assert cosim.clear_cache()["in_use"] == [str(folder)]
    assert cosim.clear_cache() == {"folder": str(folder.parent), "removed": 1,
                                   "bytes": len("a Verilator model\n") + len(verilog)
                                   + len(f"{tools.key()}\n"), "in_use": []}
    assert not folder.parent.exists() and len(built) == 1


def test_cache_info_and_clear(capsys, monkeypatch, tmp_path):
    """`sriov-ep cache` says where the builds are and their size; `--clear` removes what
    cosim.build made there (builds, runtime objects), not a build a run holds, not other files;
    the folder goes when it is empty."""
    monkeypatch.setenv("SRIOV_EP_CACHE", str(tmp_path))
    root = tmp_path / "cosim"
    builds = [root / "0123456789abcdef", root / "fedcba9876543210"]
    for build in builds:
        build.mkdir(parents=True)
        (build / ".lock").touch()
        (build / "build.ok").write_text("x\n")
        (build / "Vsriov_ep_top.o").write_bytes(bytes(1000))
    (root / "runtime-00112233aabbccdd").mkdir()
    (root / "runtime-00112233aabbccdd" / "verilated.o").write_bytes(bytes(500))
    (root / ".runtime-k2j4l1").mkdir()
    others = ["notes.txt", "mine", "0123"]              # not the cache's
    (root / "notes.txt").write_text("mine\n")
    (root / "mine").mkdir()
    (root / "0123").mkdir()

    code, lines, err = cli(capsys, "cache")
    assert (code, err) == (0, "")
    where = ("($SRIOV_EP_CACHE, else $XDG_CACHE_HOME/sriov-ep, else ~/.cache/sriov-ep; clear "
             "it with sriov-ep cache --clear)")
    assert lines == [f"{root}: 2 Verilator (cocotb) builds, 0.0 MB {where}",
                     f"{tmp_path / 'native'}: 0 native builds, 0.0 MB {where}"]
    code, lines, err = cli(capsys, "cache", "--info", "--json")
    assert json.loads(lines[0]) == {"folder": str(root), "builds": 2, "bytes": 2 * 1002 + 500}

    with cosim._locked(builds[1], shared=True):         # as a run holds its build
        code, lines, err = cli(capsys, "cache", "--clear")
    assert (code, err) == (0, "")
    assert lines == [f"removed 3 folders (0.0 MB) from {root}",
                     f"left {builds[1]}: a run is using it",
                     f"removed 0 folders (0.0 MB) from {tmp_path / 'native'}"]
    assert sorted(p.name for p in root.iterdir()) == sorted([builds[1].name, *others])

    code, lines, err = cli(capsys, "cache", "--clear", "--json")
    assert json.loads(lines[0]) == {"folder": str(root), "removed": 1, "bytes": 1002,
                                    "in_use": []}
    assert sorted(p.name for p in root.iterdir()) == sorted(others)
    for name in others:
        path = root / name
        path.rmdir() if path.is_dir() else path.unlink()
    code, lines, err = cli(capsys, "cache", "--clear")
    assert lines == [f"removed 0 folders (0.0 MB) from {root}",
                     f"removed 0 folders (0.0 MB) from {tmp_path / 'native'}"]
    assert not root.exists() and tmp_path.is_dir()
