"""A Verilog wrapper with one named port per field, and a header with every field's position.

Amaranth exports each ``lib.data`` layout and each stream payload of :class:`SriovEndpoint` as
one packed vector (``cfg_req__payload[63:0]``, ``vf_bars[419:0]``, ...), whose field positions
move with TotalVFs. This module walks the component's signature and the layouts of its ports
(nothing is listed by hand) and writes:

- :func:`render_wrapper`: module ``sriov_ep`` (file ``sriov_ep.v``), which instantiates
  ``sriov_ep_top`` and has one port per leaf of each layout: ``cfg_req_rid``, ``mem_res_vf``,
  ``vf_bar0_base``, ``cfg_req_valid``, ...;
- :func:`render_header`: ``sriov_ep_fields.vh``, ``localparam`` constants with the position
  (``_LSB``) and width (``_WIDTH``) of every field in its packed port, the width of every packed
  port and of every wrapper port, and the values of enumerated fields; to be included inside a
  module.

Names (:func:`port_fields`): the member path joined with ``_``, without the ``payload`` of a
stream (``cfg_req.payload.rid`` is ``cfg_req_rid``, ``cfg_req.valid`` is ``cfg_req_valid``); an
array element is the array's name without its plural ``s`` followed by the index
(``vf_bars[0].base`` is ``vf_bar0_base``). Ports without a layout keep their names (``bus``,
``vf_bme_query``). Header names are ``SRIOV_EP_`` and the wrapper port's name in capitals; a
packed port's width is ``SRIOV_EP_<PACKED PORT>_WIDTH`` with the packed port's double
underscore (``SRIOV_EP_MEM_RES__PAYLOAD_WIDTH``).
"""

import enum
from dataclasses import dataclass

from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.lib.wiring import In

from .export import TIMESCALE, TOP_NAME

__all__ = ["WRAPPER_NAME", "HEADER_NAME", "HEADER_PREFIX", "PortField",
           "WrapperError", "port_fields", "render_wrapper", "render_header"]

#: Module (and file stem) of the wrapper.
WRAPPER_NAME = "sriov_ep"
#: File name of the field header.
HEADER_NAME = "sriov_ep_fields.vh"
#: Prefix of every ``localparam`` of the header.
HEADER_PREFIX = "SRIOV_EP_"

#: Ports the ``sync`` domain adds to the export; passed through under the same names.
_DOMAIN_PORTS = ("clk", "rst")


class WrapperError(Exception):
    """The signature cannot be given one port per field (names collide, fields overlap...)."""


@dataclass(frozen=True)
class PortField:
    """One port of the wrapper: a leaf of a layout (or a whole port that has none).

    ``name``: the wrapper's port; ``port``: the packed port of the exported module it is part
    of; ``path``: member names and layout keys from the component down to the leaf (``("vf_bars",
    0, "base")``); ``direction``: ``"input"`` or ``"output"``; ``offset``/``width``: its bits in
    ``port``, whose width is ``port_width``; ``shape``: the leaf's shape (an enum for enumerated
    fields); ``packed``: ``port`` has a layout, so the wrapper slices it (else the leaf is the
    whole port, under its own name: ``bus``, ``cfg_req_valid``).
    """
    name:       str
    port:       str
    path:       tuple
    direction:  str
    offset:     int
    width:      int
    port_width: int
    shape:      object
    packed:     bool


def _layout(shape):
    """``shape`` as a :class:`data.Layout`, or ``None`` when it is none (int, range, enum...)."""
    if shape is None:
        return None
    try:
        return data.Layout.cast(shape)
    except TypeError:
        return None


def _singular(name):
    return name[:-1] if name.endswith("s") and len(name) > 1 else name


def _leaf_name(path):
    parts = []
    for key in path:
        if isinstance(key, int):
            if not parts:
                raise WrapperError(f"cannot name an array element at {path!r}")
            parts[-1] = f"{_singular(parts[-1])}{key}"
        elif key != "payload":
            parts.append(key)
    return "_".join(parts)


def _leaves(shape, path, offset):
    """``(path, offset, width, shape)`` of every leaf of ``shape``, LSB first."""
    layout = _layout(shape)
    if layout is None:
        width = Shape.cast(shape).width
        if width == 0:
            raise WrapperError(f"{'.'.join(map(str, path))} has no bits: a Verilog port needs "
                               f"at least one")
        yield path, offset, width, shape
        return
    fields = sorted(layout, key=lambda item: item[1].offset)
    end = 0
    for key, field in fields:
        if field.offset < end:
            raise WrapperError(f"field {'.'.join(map(str, (*path, key)))} overlaps the field "
                               f"before it: one port per field needs disjoint fields")
        end = field.offset + field.width
        yield from _leaves(field.shape, (*path, key), offset + field.offset)


def port_fields(component):
    """Every port of the wrapper of ``component`` (a :class:`amaranth.lib.wiring.Component`),
    in signature order, as :class:`PortField`. Ports that the ``sync`` domain adds (``clk``,
    ``rst``) are not listed. Raises :class:`WrapperError` on colliding names or overlapping
    fields."""
    out, names = [], {}
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        port = "__".join(map(str, path))
        direction = "input" if member.flow == In else "output"
        port_width = Shape.cast(member.shape).width
        packed = _layout(member.shape) is not None
        for leaf_path, offset, width, shape in _leaves(member.shape, tuple(path), 0):
            name = _leaf_name(leaf_path)
            other = names.get(name) or (f"the sync domain's {name}" if name in _DOMAIN_PORTS
                                         else None)
            if other is not None:
                raise WrapperError(f"wrapper port {name} would stand for both "
                                   f"{'.'.join(map(str, leaf_path))} and {other}")
            names[name] = ".".join(map(str, leaf_path))
            out.append(PortField(name, port, leaf_path, direction, offset, width, port_width,
                                 shape, packed))
    return out


def _range(width):
    return f"[{width - 1}:0] " if width > 1 else ""


def _slice(field):
    if field.width == 1:
        return f"[{field.offset}]"
    return f"[{field.offset + field.width - 1}:{field.offset}]"


def _by_port(fields):
    ports = {}
    for field in fields:
        ports.setdefault(field.port, []).append(field)
    return ports


def _by_member(fields):
    """Wrapper ports by the component's member they come from, a stream's ``valid`` and
    ``ready`` before its payload's fields."""
    members = {}
    for field in fields:
        members.setdefault(field.path[0], []).append(field)
    return {member: sorted(group, key=lambda f: f.packed) for member, group in members.items()}


def render_wrapper(component, *, core=None, name=WRAPPER_NAME, description=""):
    """Verilog of module ``name``: ``core`` (the exported top of ``component``, default
    :data:`~sriov_ep.tools.export.TOP_NAME`) behind one port per field (:func:`port_fields`).

    Each packed port becomes a wire of the same name inside the wrapper; every field of an input
    is assigned to its slice, every field of an output is assigned from it, so the positions are
    written once per field (``assign cfg_req__payload[16:1] = cfg_req_rid;``). Bits of an input
    that no field covers are driven with 0.
    """
    core = core or TOP_NAME
    fields = port_fields(component)
    groups = _by_port(fields)
    width = max(len(_range(f.width)) for f in fields)
    lines = [f"`timescale {TIMESCALE}",
             f"// {name}: {core} with one port per field. Generated by sriov-ep "
             "(sriov_ep.tools.wrapper); do not edit.",
             ]
    if description:
        lines.append(f"// {description}")
    lines += [f"// Field positions in {core}'s packed ports: {HEADER_NAME}.",
              f"module {name} (",
              f"    input  wire {'':{width}}clk,",
              f"    input  wire {'':{width}}rst,"]
    ports = []
    for member, members in _by_member(fields).items():
        ports.append(f"    // {member}")
        for f in members:
            ports.append(f"    {f.direction:<6} wire {_range(f.width):{width}}{f.name},")
    ports[-1] = ports[-1].rstrip(",")
    lines += ports + [");"]

    body, conns = [], ["        .clk(clk)", "        .rst(rst)"]
    for port, group in groups.items():
        if not group[0].packed:
            conns.append(f"        .{port}({group[0].name})")
            continue
        port_width = group[0].port_width
        body.append(f"    wire [{port_width - 1}:0] {port};")
        covered = 0
        for f in group:
            if f.direction == "input":
                if f.offset > covered:
                    gap = f.offset - covered
                    body.append(f"    assign {port}[{f.offset - 1}:{covered}] = {gap}'d0;"
                                if gap > 1 else f"    assign {port}[{covered}] = 1'b0;")
                body.append(f"    assign {port}{_slice(f)} = {f.name};")
            else:
                if f.offset > covered:
                    raise WrapperError(f"bits {covered}..{f.offset - 1} of output {port} "
                                       f"belong to no field")
                body.append(f"    assign {f.name} = {port}{_slice(f)};")
            covered = f.offset + f.width
        if covered < port_width:
            if group[0].direction == "output":
                raise WrapperError(f"bits {covered}..{port_width - 1} of output {port} "
                                   f"belong to no field")
            body.append(f"    assign {port}[{port_width - 1}:{covered}] = "
                        f"{port_width - covered}'d0;")
        conns.append(f"        .{port}({port})")
    lines += body
    lines += ["", f"    {core} core (", ",\n".join(conns), "    );", "", "endmodule", ""]
    return "\n".join(lines)


def _param(name, suffix=""):
    return f"{HEADER_PREFIX}{name.upper()}{suffix}"


def render_header(component, *, core=None, description=""):
    """Text of the field header (:data:`HEADER_NAME`): for every packed port of the exported
    module its width, for every wrapper port its width and, when it is part of a packed port, its
    lowest bit there; for enumerated fields the value of each member. To be included inside a
    module body (a ``localparam`` belongs to a module), once per module."""
    core = core or TOP_NAME
    fields = port_fields(component)
    rows = []

    def row(name, value, comment=""):
        rows.append((name, value, comment))

    for port, group in _by_port(fields).items():
        packed = group[0].packed
        if packed:
            row(_param(port, "_WIDTH"), group[0].port_width,
                f"{port} ({group[0].direction})")
        for f in group:
            where = f"{port}{_slice(f)}" if packed else f"{port} ({f.direction})"
            if packed:
                row(_param(f.name, "_LSB"), f.offset, f"{f.name}: {where}")
            row(_param(f.name, "_WIDTH"), f.width, "" if packed else where)
            if isinstance(f.shape, type) and issubclass(f.shape, enum.Enum):
                for member in f.shape:
                    row(_param(f"{f.name}_{member.name}"), f"{f.width}'d{member.value}",
                        f"{f.shape.__name__}.{member.name}")
    seen = set()
    for name, _value, _comment in rows:
        if name in seen:
            raise WrapperError(f"header name {name} is used twice")
        seen.add(name)
    width = max(len(name) for name, _v, _c in rows)
    lines = [f"// {HEADER_NAME}: bit positions of the fields of {core}'s packed ports. "
             "Generated by sriov-ep",
             "// (sriov_ep.tools.wrapper) from the same layouts as the Verilog; do not edit."]
    if description:
        lines.append(f"// {description}")
    lines += [
        "// A field NAME of a packed port P sits at P[NAME_LSB +: NAME_WIDTH]; wrapper port",
        f"// names ({WRAPPER_NAME}.v) are the names here without {HEADER_PREFIX} and the "
        "suffix, in lower case.",
        "// Include inside a module body, once per module: `include \"sriov_ep_fields.vh\"",
        "// A module uses a few of these: Verilator's UNUSEDPARAM is off for this file only.",
        "/* verilator lint_save */",
        "/* verilator lint_off UNUSEDPARAM */",
    ]
    for name, value, comment in rows:
        text = f"localparam {name:<{width}} = {value};"
        lines.append(f"{text}  // {comment}" if comment else text)
    lines += ["/* verilator lint_restore */", ""]
    return "\n".join(lines)
