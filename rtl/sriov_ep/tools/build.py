"""Build artefacts for one endpoint configuration: Verilog, timing constraints, a FuseSoC core
and a register map.

:func:`write_build` writes into one folder:

=======================  ===========================================================
``sriov_ep_top.v``       the Verilog of :class:`SriovEndpoint` (module ``sriov_ep_top``,
                         one packed vector per layout or stream payload)
``sriov_ep.v``           module ``sriov_ep``: ``sriov_ep_top`` with one port per field
                         (:func:`sriov_ep.tools.wrapper.render_wrapper`)
``sriov_ep_fields.vh``   ``localparam`` constants: position and width of every field in the
                         packed vectors (:func:`sriov_ep.tools.wrapper.render_header`)
``sriov_ep_lint.vlt``    Verilator waivers (:data:`LINT_WAIVERS`) for ``sriov_ep_top.v`` only
``sriov_ep.sdc``         ``create_clock`` on ``clk``, I/O delays (SDC: Quartus)
``sriov_ep.xdc``         the same for Vivado
``sriov_ep.lpf``         ``FREQUENCY PORT "clk"`` (ECP5: nextpnr-ecp5, Diamond)
``sriov_ep.core``        a FuseSoC CAPI2 core naming the files above, a target per tool
``regmap.md``            the PF and VF configuration spaces as configured, in Markdown
=======================  ===========================================================

``regmap.md`` walks the PF's and the VFs' capability chains (:func:`sriov_ep.caps.pf_chain`,
:func:`sriov_ep.caps.vf_chain`): per function a table of its structures (offset, title, next
pointer, who serves it), then every register and field of each structure; with several PFs,
PF 0 and its VFs, then PF 1 and its VFs, and so on. Windows owned by user
logic show the header the endpoint answers and the byte range served through ``ucfg_req`` /
``ucfg_res``; fields held per VF (:attr:`sriov_ep.regs.Field.per_vf`) are marked ``per VF``.

The constraint files are filled in from the templates ``constraints/*.in`` of the source tree.
An installed (non-editable) package carries the same templates as the package data of
``sriov_ep.constraints`` (``pyproject.toml`` maps that package to ``constraints/``).
"""

import importlib.metadata
import importlib.resources
from pathlib import Path

from ..endpoint import SriovEndpoint
from ..params import EndpointParams, format_bdf
from ..regs import Access
from .export import TOP_NAME, to_verilog
from .regmap import FUNCTIONS, field_notes, format_bits, format_reset, per_vf_fields, structures
from .wrapper import HEADER_NAME, WRAPPER_NAME, render_header, render_wrapper

__all__ = ["BuildError", "write_build", "constraint_template", "render_regmap", "render_core",
           "render_lint_config", "LINT_WAIVERS", "lint_args", "ARTEFACTS", "CORE_VLNV_PREFIX",
           "CORE_TARGETS"]

#: File name of each artefact, by the key :func:`write_build` returns it under.
ARTEFACTS = {
    "verilog": f"{TOP_NAME}.v",
    "wrapper": f"{WRAPPER_NAME}.v",
    "fields":  HEADER_NAME,
    "waivers": "sriov_ep_lint.vlt",
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


def render_lint_config():
    """A Verilator configuration file (``sriov_ep_lint.vlt``) that waives :data:`LINT_WAIVERS`
    in ``sriov_ep_top.v`` alone: given to Verilator with ``-Wall`` next to the sources, every
    other file (the wrapper, the field header, the user's own) is linted without waivers."""
    lines = ["`verilator_config",
             "// Generated by sriov-ep (sriov_ep.tools.build.LINT_WAIVERS): Verilator -Wall "
             "waivers for",
             f"// {TOP_NAME}.v only, all about how Amaranth and its Yosys backend write "
             "Verilog, none",
             "// about the design. Other files are linted with every warning on."]
    for rule, reason in LINT_WAIVERS:
        words, line = reason.split(), "//"
        lines.append(f"// {rule}:")
        for word in words:
            if len(line) + 1 + len(word) > 96:
                lines.append(line)
                line = "//"
            line += " " + word
        lines += [line, f'lint_off -rule {rule} -file "*{TOP_NAME}.v"']
    return "\n".join(lines) + "\n"


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
        "wrapper":    WRAPPER_NAME,
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


#: Targets of the FuseSoC core: name -> (default tool, constraint filesets, description). Each
#: target has the sources (``rtl``: the export, the wrapper and the field header) and only the
#: constraints its tool reads, so no tool sees another's file (Vivado would take the SDC's
#: ``create_clock`` as a second clock on ``clk``; Quartus warns about XDC and LPF). The top is
#: the wrapper, :data:`~sriov_ep.tools.wrapper.WRAPPER_NAME`.
CORE_TARGETS = {
    "default": (None, [], "the sources only, no constraints: use a tool's target below, or "
                          "add your own constraints"),
    "vivado":  ("vivado", ["constraints_xdc"], "Vivado with sriov_ep.xdc (set the part: "
                                                "--part on the command line after the core)"),
    "quartus": ("quartus", ["constraints_sdc"], "Quartus with sriov_ep.sdc (set --family and "
                                                 "--device after the core)"),
    "trellis": ("trellis", ["constraints_lpf"], "ECP5 with Yosys and nextpnr-ecp5, "
                                                 "sriov_ep.lpf (set the device with "
                                                 "--nextpnr_options after the core)"),
    "lint":    ("verilator", ["lint_waivers"], "Verilator --lint-only -Wall; the waivers in "
                                                "sriov_ep_lint.vlt apply to sriov_ep_top.v alone"),
}


def render_core(config_name=None, *, version=None):
    """A FuseSoC CAPI2 core file for the artefacts of :data:`ARTEFACTS`, with the targets of
    :data:`CORE_TARGETS`."""
    version = version or _package_version()
    description = "sriov-ep SR-IOV endpoint configuration side"
    if config_name:
        description += f", configuration {_one_line(config_name)}"
    targets = []
    for name, (tool, filesets, about) in CORE_TARGETS.items():
        targets += [f"  {name}:", f'    description: "{about}"']
        if tool:
            targets.append(f"    default_tool: {tool}")
        targets += [f"    filesets: [{', '.join(['rtl', *filesets])}]",
                    f"    toplevel: {WRAPPER_NAME}"]
        if tool == "verilator":
            targets += ["    tools:", "      verilator:", "        mode: lint-only",
                        "        verilator_options: [-Wall]"]
    targets = "\n".join(targets)
    return f"""\
CAPI=2:
# Generated by sriov-ep (sriov_ep.tools.build); the files it names sit next to it.
name: {CORE_VLNV_PREFIX}:{TOP_NAME}:{version}
description: "{description.replace('"', "'")}"

filesets:
  rtl:
    files:
      - {ARTEFACTS["verilog"]}
      - {ARTEFACTS["wrapper"]}
      - {ARTEFACTS["fields"]}: {{is_include_file: true}}
    file_type: verilogSource
  lint_waivers:
    files:
      - {ARTEFACTS["waivers"]}
    file_type: vlt
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

# Every target has the sources and the constraints of its own tool only.
targets:
{targets}
"""


# -- Register map -----------------------------------------------------------------------------

_COLUMNS = ("offset", "register", "bits", "field", "access", "reset", "notes")
_CHAIN_COLUMNS = ("offset", "structure", "title", "link", "served by")


def _cell(text):
    return str(text).replace("|", "\\|")


def _row(cells):
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _table(columns, rows):
    return "\n".join([_row(columns), "|" + "---|" * len(columns), *(_row(r) for r in rows)])


def _hex(value, width):
    return f"0x{value:0{max(1, (width + 3) // 4)}x}"


def _span(first, last):
    return f"0x{first:03x}..0x{last:03x}"


def _regmap_rows(view):
    """Rows of a structure's table: every field and reserved gap (:meth:`RegisterMap.rows`),
    then, for a user-owned window, one row for the bytes user logic serves."""
    rows, seen = [], set()
    for offset, width, reg, f in view.entry.regmap.rows(view.first):
        notes = field_notes(reg, f, first=reg.name not in seen)
        seen.add(reg.name)
        if f is None:
            rows.append((f"0x{offset:03x}", reg.name, f"{width - 1}:0", "-", Access.RO.value,
                         _hex(0, width), "; ".join(notes) or "reads 0"))
        else:
            rows.append((f"0x{offset:03x}", reg.name, format_bits(f), f.name, f.access.value,
                         format_reset(f), "; ".join(notes)))
    if view.span is not None:
        first, last = view.span
        rows.append((_span(first, last), "-", "-", "-", "-", "-",
                     f"served by user logic (ucfg_req window {view.entry.user_index})"))
    return rows


def _structure_section(view):
    lines = [f"### {view.heading} ({_span(view.first, view.last)})", "",
             f"`{view.entry.name}`, {view.link}."]
    if view.span is not None:
        first, last = view.span
        lines[-1] += (f" Bytes {_span(first, last)} are served by user logic (SriovEndpoint "
                      f"`ucfg_req`/`ucfg_res`, window {view.entry.user_index})")
        lines[-1] += "; the endpoint answers the header." if first > view.first else "."
    lines += ["", _table(_COLUMNS, _regmap_rows(view)), ""]
    return "\n".join(lines)


def _chain_table(views):
    return _table(_CHAIN_COLUMNS, [(_span(v.first, v.last), v.entry.name, v.entry.title,
                                    v.link, v.served_by) for v in views]) + "\n"


def render_regmap(params, config_name=None):
    """The PF's and the VFs' configuration spaces for ``params``, as Markdown.

    For each function, its chain (:func:`sriov_ep.caps.pf_chain`, :func:`~sriov_ep.caps.vf_chain`)
    as a table of structures (offsets, titles, next pointers, who serves them), then one table per
    structure with every register and field of its register map, from the same descriptions the
    RTL is generated from. Offsets are absolute (from the start of the function's configuration
    space). User-owned windows show the header the endpoint answers and the byte range served by
    user logic; fields held per VF are marked ``per VF``. With several PFs, the PF and its VFs
    of each PF in turn (PF 0 first), under headings that name the PF.
    """
    name = f", configuration `{_one_line(config_name)}`" if config_name else ""
    parts = [
        f"# Register map of {TOP_NAME}{name}\n",
        "Generated by sriov-ep from the capability chains and register descriptions the RTL is "
        "built from. Offsets are byte offsets into the function's configuration space; bits are "
        "within the register. Access kinds as in PCI Express Base §7.4 (RO, HwInit, RW, RW1C, "
        "RsvdP, RsvdZ). Bits no row names are reserved: they read 0 and ignore writes. "
        "Configuration space outside these structures reads 0.\n",
    ]
    if params.num_pfs == 1:
        p = params
        parts.append(f"PF at {format_bdf(p.pf_rid)} (Routing ID 0x{p.pf_rid:04x}) with TotalVFs "
                     f"{p.total_vfs}. Reset values are those after reset (ARI Capable Hierarchy "
                     f"0).\n")
        parts += _regmap_functions(params, None)
        return "\n".join(parts)
    pfs = ", ".join(f"PF {k} at {format_bdf(pf.pf_rid)} (Routing ID 0x{pf.pf_rid:04x}, TotalVFs "
                    f"{pf.total_vfs})" for k, pf in enumerate(params.pfs))
    parts.append(f"{params.num_pfs} PFs: {pfs}. Each PF has its own configuration space and "
                 f"SR-IOV capability; PF k is `pfs[k]` in the ports. Reset values are those "
                 f"after reset (ARI Capable Hierarchy 0).\n")
    for k in range(params.num_pfs):
        parts += _regmap_functions(params, k)
    return "\n".join(parts)


def _regmap_functions(params, k):
    """Sections of the PF (``k``: its index, ``None`` for the only PF) and of its VFs."""
    parts = []
    for key, _prefix, title in FUNCTIONS:
        views = structures(params, key, k)
        if k is None:
            parts.append(f"## {title}\n")
        else:
            parts.append(f"## PF {k} ({format_bdf(params.pfs[k].pf_rid)}): {title}\n")
        if key == "vf":
            fields = ", ".join(f"`{name}`" for name in per_vf_fields(params, k))
            if k is None:
                parts.append(f"Every VF has the same layout. Fields marked per VF ({fields}) "
                             f"are held for each VF in a memory of TotalVFs entries; the PF's "
                             f"settings govern the rest.\n")
            else:
                first = params.vf_base(k)
                last = first + params.pfs[k].total_vfs - 1
                parts.append(f"Every VF of PF {k} has the same layout. Fields marked per VF "
                             f"({fields}) are held for each VF in the VF state memory the PFs "
                             f"share, PF {k}'s VF n at entry {first} + n - 1 (entries "
                             f"{first}..{last}); PF {k}'s settings govern the rest.\n")
        parts.append(_chain_table(views))
        parts += [_structure_section(v) for v in views]
    return parts


def _total_vfs_text(params):
    """``TotalVFs 8``, or with several PFs ``2 PFs, TotalVFs 8+8``."""
    if params.num_pfs == 1:
        return f"TotalVFs {params.total_vfs}"
    return (f"{params.num_pfs} PFs, TotalVFs "
            + "+".join(str(pf.total_vfs) for pf in params.pfs))


# -- Writing ----------------------------------------------------------------------------------

def _write(path, text):
    try:
        path.write_text(text)
    except OSError as exc:
        raise BuildError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_build(params, out_dir, *, freq_mhz=None, config_name=None, tlp_data_width=None):
    """Write every artefact for ``params`` into ``out_dir`` (created if needed).

    With ``tlp_data_width`` (64, 128 or 256) the exported top is the TLP wrapper
    :class:`~sriov_ep.tlp.SriovTlpEndpoint` with that payload width instead of
    :class:`SriovEndpoint`: same file names, module names and constraints, its own ports.

    Parameters
    ----------
    params : EndpointParams
    out_dir : path-like
    freq_mhz : float, optional
        Clock frequency for the constraints; default ``params.clock_mhz``. Checked as
        ``clock_mhz`` is (a :class:`ParamError` names ``clock_mhz``).
    config_name : str, optional
        Name of the configuration, quoted in the headers of the artefacts.
    tlp_data_width : int, optional
        Export the TLP wrapper with this payload width (64, 128 or 256; another value raises
        ``ValueError`` naming ``data_width``).

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
    if tlp_data_width is None:
        top = SriovEndpoint(params)
        what = ""
    else:
        from ..tlp import SriovTlpEndpoint
        top = SriovTlpEndpoint(params, data_width=tlp_data_width)
        what = f"; the TLP wrapper, {tlp_data_width}-bit payload"
    about = (f"Configuration {_one_line(config_name) if config_name else '(unnamed)'}, "
             f"{_total_vfs_text(params)}{what}: field positions depend on it.")
    texts = {
        "verilog": to_verilog(params, top=top),
        "wrapper": render_wrapper(top, description=about),
        "fields":  render_header(top, description=about),
        "waivers": render_lint_config(),
        **{kind: constraint_template(kind).format_map(values) for kind in ("sdc", "xdc", "lpf")},
        "core":    render_core(config_name),
        "regmap":  render_regmap(params, config_name),
    }
    paths = {}
    for key, name in ARTEFACTS.items():
        paths[key] = out_dir / name
        _write(paths[key], texts[key])
    return paths
