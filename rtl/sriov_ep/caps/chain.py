"""Placing capability structures in a function's configuration space, and linking them.

A function's configuration space is a list of structures: the Type 0 header at 0x00, legacy
capabilities in 0x40..0xFF linked from the Capabilities Pointer (0x34) by their 8-bit next
pointers, extended capabilities from 0x100 linked by their 12-bit Next Capability Offsets, and
unlinked ranges (configuration space the user owns without a capability header).

Placement rule, the same for the PF's chain and the VFs': structures keep the order they are
listed in. One with a fixed ``offset`` sits there; every other one goes to the lowest
dword-aligned offset at or after the end of the structure listed before it (of the same kind)
that overlaps no fixed structure. Each list is linked in ascending offset order; the last next
pointer is 0. The extended list must start at 0x100 (PCI Express Base §7.6.3: the first extended
capability header is at 0x100). Anything that does not fit, is misaligned or overlaps is refused
with :class:`PlacementError` naming the structure.

This module knows nothing of parameters or hardware; :mod:`sriov_ep.caps` builds the chains.
"""

from dataclasses import dataclass

__all__ = ["Kind", "Structure", "Placed", "PlacementError", "place"]


class Kind:
    """What kind of structure, and so where it may sit and how it is linked."""
    HEADER   = "header"      # the Type 0 header, 0x00..0x3F
    LEGACY   = "legacy"      # a capability in 0x40..0xFF, 8-bit ID and next pointer
    EXTENDED = "extended"    # an extended capability in 0x100..0xFFF, 16-bit ID, 12-bit next
    RANGE    = "range"       # configuration space without a capability header, not linked

    ALL = (HEADER, LEGACY, EXTENDED, RANGE)


#: Where each kind may lie: ``(first byte, end)``.
_SPACE = {
    Kind.HEADER:   (0x000, 0x040),
    Kind.LEGACY:   (0x040, 0x100),
    Kind.EXTENDED: (0x100, 0x1000),
    Kind.RANGE:    (0x040, 0x1000),
}


class PlacementError(ValueError):
    """A structure cannot be placed. ``name`` is the structure, ``rule`` what it breaks."""

    def __init__(self, name, rule):
        self.name = name
        self.rule = rule
        super().__init__(f"{name}: {rule}")


@dataclass(frozen=True)
class Structure:
    """One structure to place.

    Parameters
    ----------
    name : str
        Name in messages and register maps (``pcie``, ``pm``, ``msix``, ``ari``, ``sriov``, or a
        user capability's name).
    kind : str
        One of :class:`Kind`.
    size : int
        Bytes, a multiple of 4.
    offset : int or None
        Fixed byte offset, or ``None`` to be placed by the rule above.
    cap_id : int or None
        Capability ID (8 bits legacy, 16 bits extended); ``None`` for the header and ranges.
    version : int
        Capability Version of an extended capability (4 bits).
    """
    name:    str
    kind:    str
    size:    int
    offset:  int | None = None
    cap_id:  int | None = None
    version: int = 1


@dataclass(frozen=True)
class Placed:
    """A placed structure: its ``offset`` and the ``next_offset`` its header links to."""
    structure:   Structure
    offset:      int
    next_offset: int = 0

    @property
    def name(self):
        return self.structure.name

    @property
    def kind(self):
        return self.structure.kind

    @property
    def size(self):
        return self.structure.size

    @property
    def end(self):
        return self.offset + self.structure.size

    @property
    def dword(self):
        return self.offset // 4

    @property
    def dwords(self):
        return self.structure.size // 4


def _check(s):
    if s.kind not in Kind.ALL:
        raise PlacementError(s.name, f"unknown kind {s.kind!r}")
    if not isinstance(s.size, int) or s.size <= 0 or s.size % 4:
        raise PlacementError(s.name, f"size must be a positive multiple of 4 bytes "
                                     f"(got {s.size!r})")
    lo, hi = _SPACE[s.kind]
    if s.size > hi - lo:
        raise PlacementError(s.name, f"{s.size:#x} bytes do not fit in {lo:#x}..{hi - 1:#x}")
    if s.offset is not None:
        if not isinstance(s.offset, int) or s.offset % 4:
            raise PlacementError(s.name, f"offset must be dword-aligned (got {s.offset!r})")
        if not (lo <= s.offset and s.offset + s.size <= hi):
            raise PlacementError(s.name, f"a {s.kind} structure of {s.size:#x} bytes must lie "
                                         f"in {lo:#x}..{hi - 1:#x} (at {s.offset:#x} it "
                                         f"ends at {s.offset + s.size - 1:#x})")
    if s.kind == Kind.HEADER and s.offset not in (None, 0):
        raise PlacementError(s.name, "the header is at 0x00")


def place(structures):
    """Place and link ``structures`` (an iterable of :class:`Structure`).

    Returns the :class:`Placed` structures in ascending offset order.
    """
    structures = list(structures)
    names = set()
    for s in structures:
        _check(s)
        if s.name in names:
            raise PlacementError(s.name, "two structures have this name")
        names.add(s.name)

    fixed = [(s.offset if s.kind != Kind.HEADER else 0, s) for s in structures
             if s.offset is not None or s.kind == Kind.HEADER]
    taken = []     # (start, end, name)

    def overlap(start, end, skip=None):
        for a, b, name in taken:
            if name != skip and start < b and a < end:
                return name
        return None

    for offset, s in fixed:
        other = overlap(offset, offset + s.size)
        if other is not None:
            raise PlacementError(s.name, f"{offset:#x}..{offset + s.size - 1:#x} overlaps "
                                         f"{other}")
        taken.append((offset, offset + s.size, s.name))

    placed = {}
    cursor = {kind: _SPACE[kind][0] for kind in Kind.ALL}
    for s in structures:
        if s.kind == Kind.HEADER:
            offset = 0
        elif s.offset is not None:
            offset = s.offset
        else:
            lo, hi = _SPACE[s.kind]
            offset = cursor[s.kind]
            while True:
                if offset + s.size > hi:
                    raise PlacementError(s.name, f"no room for {s.size:#x} bytes in "
                                                 f"{lo:#x}..{hi - 1:#x} after the structures "
                                                 f"before it")
                other = overlap(offset, offset + s.size)
                if other is None:
                    break
                offset = next(b for a, b, name in taken if name == other)
            taken.append((offset, offset + s.size, s.name))
        placed[s.name] = offset
        cursor[s.kind] = offset + s.size

    result = []
    for kind in (Kind.HEADER, Kind.LEGACY, Kind.EXTENDED, Kind.RANGE):
        members = sorted((placed[s.name], s) for s in structures if s.kind == kind)
        if kind == Kind.EXTENDED and members and members[0][0] != 0x100:
            raise PlacementError(members[0][1].name,
                                 f"the extended capability list starts at 0x100, and the "
                                 f"lowest extended capability is at {members[0][0]:#x}")
        linked = kind in (Kind.LEGACY, Kind.EXTENDED)
        for n, (offset, s) in enumerate(members):
            nxt = members[n + 1][0] if linked and n + 1 < len(members) else 0
            result.append(Placed(s, offset, nxt))
    return sorted(result, key=lambda p: p.offset)
