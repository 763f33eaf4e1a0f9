"""Describing the PF's and the VFs' chains for people: what ``regmap.md`` (:mod:`.build`) and
``sriov-ep regmap`` print.

A device of several PFs is described one PF at a time: :func:`structures` and
:func:`per_vf_fields` take the PF index ``k`` (required then; headings start ``PF k``).

Everything here is read from the chains of :mod:`sriov_ep.caps` (:func:`~sriov_ep.caps.pf_chain`,
:func:`~sriov_ep.caps.vf_chain`) and their register maps, the same descriptions the RTL is built
from; nothing about a structure is written out by hand.
"""

from dataclasses import dataclass

from ..caps import pf_chain, vf_chain
from ..caps.chain import Kind
from ..params import EndpointParams
from ..regs import Access, ResetScope

__all__ = ["FUNCTIONS", "StructureView", "num_pfs", "structures", "user_span", "link_text",
           "field_notes", "format_bits", "format_reset", "per_vf_fields"]

#: The two chains: key, prefix of a structure's heading, and a name for the function.
FUNCTIONS = (
    ("pf", "PF", "Physical Function"),
    ("vf", "VF", "Virtual Functions"),
)


def user_span(entry):
    """``(first, last)``: the bytes of user-owned chain entry ``entry`` that user logic serves
    (over ``SriovEndpoint.ucfg_req``/``ucfg_res``), or ``None`` for an entry the endpoint serves.

    The endpoint answers a user capability's header itself: all of dword 0 of an extended
    capability, bits 15:0 (ID and next pointer) of a legacy one; a range has no header.
    """
    if entry.owner != "user":
        return None
    header = {"extended": 4, "legacy": 2, "range": 0}[entry.user.kind]
    return entry.offset + header, entry.offset + entry.size - 1


def link_text(entry, chain):
    """How ``entry`` is linked into its chain, e.g. ``next 0x07c`` or ``Capabilities Pointer
    0x40``."""
    kind = entry.placed.kind
    nxt = entry.placed.next_offset
    if kind == Kind.HEADER:
        legacy = [e.offset for e in chain if e.placed.kind == Kind.LEGACY]
        pointer = legacy[0] if legacy else 0
        return f"Capabilities Pointer 0x{pointer:02x}" + ("" if legacy else " (no capabilities)")
    if kind == Kind.LEGACY:
        return f"next 0x{nxt:02x}" + ("" if nxt else " (last capability)")
    if kind == Kind.EXTENDED:
        return f"next 0x{nxt:03x}" + ("" if nxt else " (last extended capability)")
    return "not linked (a range)"


@dataclass(frozen=True)
class StructureView:
    """One structure of one function's chain, as the register maps show it."""
    function: str           # "pf" or "vf"
    entry:    object        # the ChainEntry
    heading:  str           # "PF Power Management Capability", ...
    link:     str           # link_text()
    span:     tuple | None  # user_span()

    @property
    def first(self):
        return self.entry.offset

    @property
    def last(self):
        return self.entry.offset + self.entry.size - 1

    @property
    def served_by(self):
        if self.entry.owner == "user":
            return f"user logic (window {self.entry.user_index})"
        return "endpoint"


def num_pfs(params):
    """How many PFs ``params`` describes (1 for a :class:`~sriov_ep.params.PfParams`)."""
    return params.num_pfs if isinstance(params, EndpointParams) else 1


def _pf_index(params, k):
    """``k`` checked against ``params``; ``None`` (a single PF) is only allowed with one PF."""
    if k is None and num_pfs(params) > 1:
        raise ValueError(f"this device has {num_pfs(params)} PFs: pass a PF index "
                         f"0..{num_pfs(params) - 1}")
    return k


def structures(params, function=None, k=None):
    """:class:`StructureView` of every structure of the PF's chain, then of the VFs' chain (or
    of one of them: ``function`` ``"pf"`` or ``"vf"``), each in ascending offset order.

    ``k`` is the PF index (required when ``params`` has several PFs). With several PFs the
    headings name the PF: ``PF 1 ACS Extended Capability``, ``PF 1 VF ARI Extended
    Capability``.
    """
    k = _pf_index(params, k)
    chains = {"pf": pf_chain(params, k), "vf": vf_chain(params, k)}
    several = num_pfs(params) > 1
    views = []
    for key, prefix, _name in FUNCTIONS:
        if function not in (None, key):
            continue
        if several:
            prefix = f"PF {k}" if key == "pf" else f"PF {k} {prefix}"
        chain = chains[key]
        for entry in chain:
            views.append(StructureView(key, entry, f"{prefix} {entry.title}",
                                       link_text(entry, chain), user_span(entry)))
    return views


def format_bits(f):
    """``15:0`` or ``4``: the bits of field ``f`` within its register."""
    return f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else f"{f.lsb}"


def format_reset(f):
    """The reset value of field ``f`` in hex digits of its width (``0`` for reserved bits)."""
    if f.access in (Access.RSVDP, Access.RSVDZ):
        return "0"
    return f"0x{f.reset:0{max(1, (f.width + 3) // 4)}x}"


def field_notes(reg, f, *, first):
    """Notes for the row of field ``f`` (``None`` for a register without fields) of ``reg``:
    the register's description on its ``first`` row, the field's, ``per VF`` for a field
    held per VF in the VF state memory (:attr:`~sriov_ep.regs.Field.per_vf`), and ``kept by
    FLR`` for a Link setting (:attr:`~sriov_ep.regs.ResetScope.LINK`)."""
    notes = []
    if first and reg.desc:
        notes.append(reg.desc)
    if f is not None:
        if f.desc:
            notes.append(f.desc)
        if f.per_vf and not any("per VF" in note for note in notes):
            notes.append("per VF")
        if f.access.stored and f.scope is ResetScope.LINK:
            notes.append("kept by FLR")
    return notes


def per_vf_fields(params, k=None):
    """``register.field (structure)`` of every per-VF field of the VF chain (of PF ``k``)."""
    return [f"{reg.name}.{f.name} ({e.name})" for e in vf_chain(params, _pf_index(params, k))
            for reg in e.regmap.registers for f in reg.fields if f.per_vf]
