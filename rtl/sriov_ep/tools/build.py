"""Build artefacts for one endpoint configuration: Verilog, timing constraints, a FuseSoC core
and a register map.

:func:`write_build` writes into one folder:

=====================  =============================================================
``sriov_ep_top.v``     the Verilog of :class:`SriovEndpoint` (module ``sriov_ep_top``)
``sriov_ep.sdc``       ``create_clock`` on ``clk`` (SDC: Quartus, OpenSTA, ...)
``sriov_ep.xdc``       ``create_clock`` on ``clk`` (Vivado)
``sriov_ep.lpf``       ``FREQUENCY PORT "clk"`` (ECP5: nextpnr-ecp5, Diamond)
``sriov_ep.core``      a FuseSoC CAPI2 core naming the files above
``regmap.md``          the PF and VF configuration spaces as configured, in Markdown
=====================  =============================================================

The constraint files are filled in from the templates ``constraints/*.in`` of the source tree.
An installed (non-editable) package carries the same templates as the package data of
``sriov_ep.constraints`` (``pyproject.toml`` maps that package to ``constraints/``).
"""

import importlib.metadata
import importlib.resources
from pathlib import Path

from ..caps.config_space import (
    PCIE_CAP_OFFSET,
    VF_ARI_CAP_OFFSET,
    ari_capability_map,
    ext_cap_chain,
    pcie_capability_map,
    type0_header_map,
    vf_header_map,
)
from ..caps.sriov import sriov_capability_map
from ..params import EndpointParams, format_bdf
from ..regs import Access
from .export import TOP_NAME, to_verilog

__all__ = ["BuildError", "write_build", "constraint_template", "render_regmap", "render_core",
           "LINT_WAIVERS", "lint_args", "ARTEFACTS", "CORE_VLNV_PREFIX"]

#: File name of each artefact, by the key :func:`write_build` returns it under.
ARTEFACTS = {
    "verilog": f"{TOP_NAME}.v",
    "sdc":     "sriov_ep.sdc",
    "xdc":     "sriov_ep.xdc",
    "lpf":     "sriov_ep.lpf",
    "core":    "sriov_ep.core",
    "regmap":  "regmap.md",
}

#: Vendor and library of the FuseSoC core's VLNV; the name is the top module's.
CORE_VLNV_PREFIX = "sriov-ep:sriov-ep"

#: Clock and reset ports of the exported module (the ``sync`` domain).
CLOCK_PORT = "clk"
RESET_PORT = "rst"

#: Verilator warnings waived when linting the exported Verilog with ``--lint-only -Wall``, and
#: why. Every one comes from how Amaranth 0.5 and its Yosys backend write Verilog, not from the
#: design; anything else ``-Wall`` reports is a finding.
LINT_WAIVERS = (
    ("WIDTH",
     "Amaranth writes constants at their minimal width (`req[26:17] < 7'h68`, `x == 1'h1`), "
     "tests `x == 0` as `!x` on a vector, and Yosys turns a Mux of two constants into a "
     "shift of a wider constant (`24'h800180 >> sel*16` into a 16-bit wire)"),
    ("UNUSEDSIGNAL",
     "Yosys keeps every named Amaranth signal as an alias wire (`assign rid = req[16:1]`) "
     "while readers use the source net; struct members get per-field view wires "
     "(`cfg_req__payload.be`); arithmetic results are one bit wider than the slice used "
     "(carries, `(reg - base)[:4]`); FSM state decodes nobody reads are left in"),
    ("PROCASSINIT",
     "Amaranth declares each register with its reset value as initialiser "
     "(`reg [1:0] cfg_state = 2'h0;`) and assigns it in an `always` block: the initialiser is "
     "the intended power-on value"),
    ("CASEINCOMPLETE",
     "Amaranth's `casez` statements have no `default`: the `always @*` block assigns the "
     "default value before the `casez`, so no latch is inferred"),
    ("DECLFILENAME",
     "Amaranth writes the submodules into the same file as the top, as modules named "
     "`\\sriov_ep_top.sriov` etc., which cannot match the file name `sriov_ep_top.v`"),
)


class BuildError(Exception):
    """An artefact cannot be written (the message names the folder or file and the OS reason)."""


def lint_args():
    """Verilator arguments that lint the exported Verilog with the documented waivers."""
    return ["--lint-only", "-Wall", *(f"-Wno-{rule}" for rule, _reason in LINT_WAIVERS)]


# -- Constraints ---------------------------------------------------------------------------

_REPO_CONSTRAINTS = Path(__file__).resolve().parents[3] / "constraints"


def constraint_template(kind):
    """Text of the constraint template ``constraints/sriov_ep.<kind>.in`` (sdc, xdc or lpf).

    Read from the source tree when this module runs from it (a checkout or an editable install),
    else from the package data of an installed ``sriov_ep.constraints``.
    """
    name = f"sriov_ep.{kind}.in"
    in_tree = _REPO_CONSTRAINTS / name
    if in_tree.is_file():
        return in_tree.read_text()
    try:
        return importlib.resources.files("sriov_ep.constraints").joinpath(name).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        raise BuildError(f"constraint template {name} not found in {_REPO_CONSTRAINTS} nor in "
                         f"the installed package sriov_ep.constraints; reinstall sriov-ep"
                         ) from None


def _format_mhz(freq_mhz):
    return f"{freq_mhz:.6f}".rstrip("0").rstrip(".")


def _constraint_values(freq_mhz, config_name):
    return {
        "top":        TOP_NAME,
        "config":     _one_line(config_name) if config_name else "(unnamed)",
        "clock_port": CLOCK_PORT,
        "reset_port": RESET_PORT,
        "freq_mhz":   _format_mhz(freq_mhz),
        "period_ns":  f"{1000 / freq_mhz:.3f}",
    }


def _one_line(text):
    return " ".join(str(text).split())


# -- FuseSoC core -----------------------------------------------------------------------------

def _package_version():
    try:
        return importlib.metadata.version("sriov-ep")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def render_core(config_name=None, *, version=None):
    """A FuseSoC CAPI2 core file for the artefacts of :data:`ARTEFACTS`."""
    version = version or _package_version()
    description = "sriov-ep SR-IOV endpoint configuration side"
    if config_name:
        description += f", configuration {_one_line(config_name)}"
    waivers = ", ".join(f"-Wno-{rule}" for rule, _reason in LINT_WAIVERS)
    return f"""\
CAPI=2:
# Generated by sriov-ep (sriov_ep.tools.build); the files it names sit next to it.
name: {CORE_VLNV_PREFIX}:{TOP_NAME}:{version}
description: "{description.replace('"', "'")}"

filesets:
  rtl:
    files:
      - {ARTEFACTS["verilog"]}
    file_type: verilogSource
  constraints_sdc:
    files:
      - {ARTEFACTS["sdc"]}
    file_type: SDC
  constraints_xdc:
    files:
      - {ARTEFACTS["xdc"]}
    file_type: xdc
  constraints_lpf:
    files:
      - {ARTEFACTS["lpf"]}
    file_type: LPF

targets:
  default:
    filesets: [rtl, constraints_sdc, constraints_xdc, constraints_lpf]
    toplevel: {TOP_NAME}
  lint:
    default_tool: verilator
    filesets: [rtl]
    toplevel: {TOP_NAME}
    tools:
      verilator:
        mode: lint-only
        verilator_options: [-Wall, {waivers}]
"""


# -- Register map -----------------------------------------------------------------------------

_COLUMNS = ("offset", "register", "bits", "field", "access", "reset", "notes")


def _cell(text):
    return str(text).replace("|", "\\|")


def _hex(value, width):
    return f"0x{value:0{max(1, (width + 3) // 4)}x}"


def _regmap_table(regmap, base):
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    seen = set()
    for offset, width, reg, f in regmap.rows(base):
        notes = []
        if reg.name not in seen and reg.desc:
            notes.append(reg.desc)
        seen.add(reg.name)
        if f is None:
            row = (f"0x{offset:03x}", reg.name, f"{width - 1}:0", "-", Access.RO.value,
                   _hex(0, width), "; ".join(notes) or "reads 0")
        else:
            if f.desc:
                notes.append(f.desc)
            if f.access in (Access.RSVDP, Access.RSVDZ):
                reset = "0"
            else:
                reset = _hex(f.reset, f.width)
            bits = f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else f"{f.lsb}"
            row = (f"0x{offset:03x}", reg.name, bits, f.name, f.access.value, reset,
                   "; ".join(notes))
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _section(title, regmap, base):
    end = base + regmap.size - 1
    return f"### {title} (0x{base:03x}..0x{end:03x})\n\n{_regmap_table(regmap, base)}\n"


def render_regmap(params, config_name=None):
    """The PF's and the VFs' configuration spaces for ``params``, as Markdown tables.

    One table per structure, from the same register maps the RTL is generated from; offsets are
    absolute (from the start of the function's configuration space).
    """
    p = params
    chain = ext_cap_chain(p)
    pf_ext = sorted([
        (p.ari_cap_offset, "ARI Extended Capability", ari_capability_map(chain["ari"])),
        (p.sriov_cap_offset, "SR-IOV Extended Capability",
         sriov_capability_map(p, chain["sriov"])),
    ], key=lambda item: item[0])
    name = f", configuration `{_one_line(config_name)}`" if config_name else ""
    parts = [
        f"# Register map of {TOP_NAME}{name}\n",
        "Generated by sriov-ep from the register descriptions the RTL is built from. Offsets "
        "are byte offsets into the function's configuration space; bits are within the "
        "register. Access kinds as in PCI Express Base §7.4 (RO, HwInit, RW, RW1C, RsvdP, "
        "RsvdZ). Bits no row names are reserved: they read 0 and ignore writes. Registers "
        "outside these tables read 0.\n",
        f"PF at {format_bdf(p.pf_rid)} (Routing ID 0x{p.pf_rid:04x}) with TotalVFs "
        f"{p.total_vfs}. Reset values are those after reset (ARI Capable Hierarchy 0).\n",
        "## Physical Function\n",
        _section("Type 0 configuration header", type0_header_map(p), 0),
        _section("PCI Express Capability", pcie_capability_map(p), PCIE_CAP_OFFSET),
        *(_section(title, regmap, offset) for offset, title, regmap in pf_ext),
        "## Virtual Functions\n",
        "Every VF has the same layout. Per-VF fields (Bus Master Enable, Relaxed Ordering and "
        "No Snoop enables) are held in a memory of TotalVFs entries; the PF's settings govern "
        "the rest.\n",
        _section("VF Type 0 configuration header", vf_header_map(p), 0),
        _section("VF PCI Express Capability", pcie_capability_map(p, vf=True),
                 PCIE_CAP_OFFSET),
        _section("VF ARI Extended Capability", ari_capability_map(0), VF_ARI_CAP_OFFSET),
    ]
    return "\n".join(parts)


# -- Writing ----------------------------------------------------------------------------------

def _write(path, text):
    try:
        path.write_text(text)
    except OSError as exc:
        raise BuildError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_build(params, out_dir, *, freq_mhz=None, config_name=None):
    """Write every artefact for ``params`` into ``out_dir`` (created if needed).

    Parameters
    ----------
    params : EndpointParams
    out_dir : path-like
    freq_mhz : float, optional
        Clock frequency for the constraints; default ``params.clock_mhz``. Checked as
        ``clock_mhz`` is (a :class:`ParamError` names ``clock_mhz``).
    config_name : str, optional
        Name of the configuration, quoted in the headers of the artefacts.

    Returns
    -------
    dict[str, Path]
        The written files, by the keys of :data:`ARTEFACTS`.

    Raises
    ------
    BuildError
        ``out_dir`` cannot be created or written (the message names it and the OS reason).
    """
    if not isinstance(params, EndpointParams):
        raise TypeError(f"params: must be an EndpointParams, not {params!r}")
    if freq_mhz is not None:
        params = params.replace(clock_mhz=freq_mhz)     # validated as clock_mhz is
    freq = params.clock_mhz

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BuildError(f"cannot write to output folder {out_dir}: it exists and is not a "
                         f"folder") from None
    except OSError as exc:
        raise BuildError(f"cannot create output folder {out_dir}: "
                         f"{exc.strerror or exc}") from None

    values = _constraint_values(freq, config_name)
    texts = {
        "verilog": to_verilog(params),
        **{kind: constraint_template(kind).format_map(values) for kind in ("sdc", "xdc", "lpf")},
        "core":    render_core(config_name),
        "regmap":  render_regmap(params, config_name),
    }
    paths = {}
    for key, name in ARTEFACTS.items():
        paths[key] = out_dir / name
        _write(paths[key], texts[key])
    return paths
