"""Endpoint parameters: one validated object, built in Python or loaded from TOML.

Every rule is checked at construction. A violation raises :class:`ParamError`, whose message
names the field (as it is spelled in the TOML file) and the rule it breaks.
"""

import copy
import datetime
import json
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = [
    "ParamError", "Bar", "PmParams", "MsixParams", "UserCap", "AcsParams", "PfParams",
    "EndpointParams", "ACS_AUTO", "ACS_FUNCTION_BITS",
    "as_pf", "parse_bdf",
    "format_bdf", "load_params", "params_from_dict", "ConfigNote", "IDENTITY_FIELDS",
    "first_unreachable_vf", "MANDATORY_PAGE_SIZES", "MAX_MSIX_VECTORS", "MAX_PFS",
]


#: SR-IOV Supported Page Sizes that every PF must offer: 4K, 8K, 64K, 256K, 1M, 4M.
MANDATORY_PAGE_SIZES = 0x0000_0553

#: The smallest memory BAR: bits 3:0 of a BAR hold its type, so 16 bytes is the minimum.
MIN_MEMORY_BAR_SIZE = 16


class ParamError(ValueError):
    """An endpoint parameter breaks a rule. ``field`` names it as the TOML file spells it."""

    def __init__(self, field, rule, *, source=None):
        self.field  = field
        self.rule   = rule
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {rule}")

    def with_source(self, source):
        return ParamError(self.field, self.rule, source=source)


_BDF_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def parse_bdf(text):
    """Parse ``BB:DD.F`` (lspci notation) into a 16-bit Routing ID.

    The device number may be 0..31 (non-ARI) or, for an ARI function number ``f`` written the way
    lspci writes it, ``f >> 3``; both give ``bus << 8 | device << 3 | function``.
    """
    match = _BDF_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a BDF of the form BB:DD.F (hex bus and device, "
                         f"function 0-7)")
    _domain, bus, dev, fn = match.groups()
    bus, dev, fn = int(bus, 16), int(dev, 16), int(fn)
    if dev > 31:
        raise ValueError(f"{text!r}: device number {dev:#x} is above 0x1f")
    return bus << 8 | dev << 3 | fn


def format_bdf(rid):
    """Format a 16-bit Routing ID as lspci does (``BB:DD.F``)."""
    return f"{rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}"


def _describe(value):
    """A value as a TOML file spells it, with its TOML type: ``a float (64.0)``, ``a boolean
    (true)``, ``a string ("64")``. (Python's ``True`` is an ``int``; TOML's ``true`` is not.)"""
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, str):
        return f"a string ({json.dumps(value)})"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"a date/time ({value})"
    if value is None:
        return "nothing (None)"
    return f"a {type(value).__name__} ({value!r})"


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(name, f"must be an integer, not {_describe(value)}")
    if not lo <= value <= hi:
        raise ParamError(name, f"must be in {lo:#x}..{hi:#x} (got {value:#x})")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ParamError(name, f"must be true or false (a boolean), not {_describe(value)}")


def _check_str(name, value):
    if not isinstance(value, str):
        raise ParamError(name, f"must be a string, not {_describe(value)}")


@dataclass(frozen=True)
class Bar:
    """One memory BAR (a PF header BAR or a VF BAR of the SR-IOV capability).

    Parameters
    ----------
    index : int
        BAR slot, 0..5. A 64-bit BAR also occupies slot ``index + 1``.
    size : int
        Aperture in bytes (for a VF BAR, of one VF): a power of two, at least 16.
    is_64bit : bool
        64-bit BAR (type 10b) rather than 32-bit (type 00b).
    prefetchable : bool
        Prefetchable bit (bit 3).
    """
    index:        int
    size:         int
    is_64bit:     bool = False
    prefetchable: bool = False

    def check(self, name):
        _check_int(f"{name}.index", self.index, 0, 5)
        _check_bool(f"{name}.is_64bit", self.is_64bit)
        _check_bool(f"{name}.prefetchable", self.prefetchable)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ParamError(f"{name}.size", f"must be an integer, not {_describe(self.size)}")
        if self.size < MIN_MEMORY_BAR_SIZE:
            raise ParamError(f"{name}.size",
                             f"a memory BAR is at least {MIN_MEMORY_BAR_SIZE} bytes "
                             f"(got {self.size})")
        if self.size & (self.size - 1):
            raise ParamError(f"{name}.size", f"must be a power of two (got {self.size:#x})")
        if self.is_64bit and self.index == 5:
            raise ParamError(f"{name}.index", "a 64-bit BAR cannot be in slot 5: it needs "
                                              "slot 6 for its upper dword")
        limit = 1 << 63 if self.is_64bit else 1 << 31
        if self.size > limit:
            raise ParamError(f"{name}.size",
                             f"a {'64' if self.is_64bit else '32'}-bit BAR is at most "
                             f"{limit:#x} bytes (got {self.size:#x})")

    @property
    def slots(self):
        """BAR slots this BAR occupies."""
        return (self.index, self.index + 1) if self.is_64bit else (self.index,)

    @property
    def type_bits(self):
        """Bits 3:0 of the BAR's low dword: memory, type, prefetchable."""
        return (0b100 if self.is_64bit else 0) | (0b1000 if self.prefetchable else 0)

    @property
    def size_log2(self):
        return self.size.bit_length() - 1


def _check_bars(name, bars):
    if not isinstance(bars, tuple):
        raise ParamError(name, "must be a tuple of Bar")
    used = {}
    for n, bar in enumerate(bars):
        item = f"{name}[{n}]"
        if not isinstance(bar, Bar):
            raise ParamError(item, f"must be a Bar, not {bar!r}")
        bar.check(item)
        for slot in bar.slots:
            if slot in used:
                raise ParamError(f"{item}.index",
                                 f"BAR slot {slot} is already used by {used[slot]}; a 64-bit BAR "
                                 f"takes two slots and BARs must not overlap")
            used[slot] = item
    if list(bars) != sorted(bars, key=lambda b: b.index):
        raise ParamError(name, "BARs must be listed in ascending slot order")


#: Most MSI-X vectors a function may have here: a function's Pending Bit Array is one QWORD.
MAX_MSIX_VECTORS = 64


@dataclass(frozen=True)
class PmParams:
    """A Power Management capability (PCI Bus Power Management Interface 1.2, version 3).

    Parameters
    ----------
    d1, d2 : bool
        D1 / D2 supported (PowerState then accepts them too).
    no_soft_reset : bool
        No_Soft_Reset: going from D3hot to D0 keeps the function's state. When 0 (the default),
        D3hot to D0 resets the function (for the PF: as a PF FLR).
    offset : int or None
        Fixed offset in configuration space, or ``None`` to place it after the PCI Express
        capability.
    """
    d1:            bool = False
    d2:            bool = False
    no_soft_reset: bool = False
    offset:        int | None = None

    def check(self, name):
        for key in ("d1", "d2", "no_soft_reset"):
            _check_bool(f"{name}.{key}", getattr(self, key))
        if self.offset is not None:
            _check_int(f"{name}.offset", self.offset, 0x40, 0xf8)


#: ACS Capability bits a function of a multi-function device may implement (PCIe Base §6.12.1.2):
#: P2P Request Redirect (2), P2P Completion Redirect (3), Direct Translated P2P (6).
ACS_FUNCTION_BITS = 0x004c


@dataclass(frozen=True)
class AcsParams:
    """An Access Control Services extended capability (PCIe Base §7.7.11), 8 bytes, without an
    Egress Control Vector.

    Parameters
    ----------
    capability : int
        ACS Capability register. Only the bits :data:`ACS_FUNCTION_BITS` are allowed; 0 (the
        default) says the function does no peer-to-peer inside the device, which is what makes
        Linux give each PF an IOMMU group of its own. ACS Control bit i is RW where
        ``capability`` bit i is set and reads 0 elsewhere.
    offset : int or None
        Fixed offset in extended configuration space, or ``None`` to place it automatically.
    """
    capability: int = 0
    offset:     int | None = None

    def check(self, name):
        _check_int(f"{name}.capability", self.capability, 0, 0xffff)
        other = self.capability & ~ACS_FUNCTION_BITS
        if other:
            raise ParamError(f"{name}.capability",
                             f"bits {other:#06x} are not for an endpoint function: only P2P "
                             f"Request Redirect (bit 2), P2P Completion Redirect (3) and "
                             f"Direct Translated P2P (6) are allowed")
        if self.offset is not None:
            _check_int(f"{name}.offset", self.offset, 0x100, 0xff8)


#: ``PfParams.acs`` before the device decides: an ACS capability when it has several PFs.
ACS_AUTO = "auto"


@dataclass(frozen=True)
class MsixParams:
    """An MSI-X capability: vector count and where its table and PBA sit.

    Parameters
    ----------
    vectors : int
        Table Size after reset (the count N; the field reads N-1).
    table_bar, pba_bar : int
        BAR slot (BIR) of the table and of the Pending Bit Array: a PF BAR for the PF's
        capability, a VF BAR for the VFs' (each VF's table sits in its own aperture).
    table_offset, pba_offset : int
        Byte offsets inside that BAR (aperture), QWORD-aligned.
    max_vectors : int or None
        VFs only: the most vectors the per-VF Table Size port may set (space reserved per VF);
        defaults to ``vectors``.
    offset : int or None
        Fixed offset of the capability in configuration space, or ``None``.
    """
    vectors:      int
    table_bar:    int
    table_offset: int
    pba_bar:      int
    pba_offset:   int
    max_vectors:  int | None = None
    offset:       int | None = None

    def __post_init__(self):
        if self.max_vectors is None:
            object.__setattr__(self, "max_vectors", self.vectors)

    @property
    def table_bytes(self):
        """Bytes reserved for the table: 16 per vector, for ``max_vectors`` vectors."""
        return 16 * self.max_vectors

    @property
    def pba_bytes(self):
        """Bytes of the Pending Bit Array: one QWORD per 64 vectors."""
        return 8 * -(-self.max_vectors // 64)

    def check(self, name, bars, *, vf):
        _check_int(f"{name}.vectors", self.vectors, 1, MAX_MSIX_VECTORS)
        _check_int(f"{name}.max_vectors", self.max_vectors, 1, MAX_MSIX_VECTORS)
        if not vf and self.max_vectors != self.vectors:
            raise ParamError(f"{name}.max_vectors", "only the VFs' Table Size can change; the "
                                                    "PF's max_vectors must equal vectors")
        if self.vectors > self.max_vectors:
            raise ParamError(f"{name}.vectors", f"must not exceed max_vectors "
                                                f"({self.max_vectors})")
        if self.offset is not None:
            _check_int(f"{name}.offset", self.offset, 0x40, 0xf4)
        kind = "VF BAR" if vf else "BAR"
        by_slot = {bar.index: bar for bar in bars}
        spans = []
        for what, bar_name, off_name, size in (
                ("table", "table_bar", "table_offset", self.table_bytes),
                ("PBA", "pba_bar", "pba_offset", self.pba_bytes)):
            slot, offset = getattr(self, bar_name), getattr(self, off_name)
            _check_int(f"{name}.{bar_name}", slot, 0, 5)
            _check_int(f"{name}.{off_name}", offset, 0, 0xffff_fff8)
            bar = by_slot.get(slot)
            if bar is None:
                raise ParamError(f"{name}.{bar_name}",
                                 f"no {kind} has its (low) slot at {slot}; the {what} must sit "
                                 f"in an implemented {kind}")
            if offset % 8:
                raise ParamError(f"{name}.{off_name}",
                                 f"must be QWORD-aligned (got {offset:#x})")
            if offset + size > bar.size:
                raise ParamError(f"{name}.{off_name}",
                                 f"the {what} ({size:#x} bytes at {offset:#x}) does not fit in "
                                 f"{kind}{slot} ({bar.size:#x} bytes)")
            spans.append((slot, offset, offset + size))
        (s1, a1, b1), (s2, a2, b2) = spans
        if s1 == s2 and a1 < b2 and a2 < b1:
            raise ParamError(f"{name}.pba_offset",
                             f"the PBA ({a2:#x}..{b2 - 1:#x}) overlaps the table "
                             f"({a1:#x}..{b1 - 1:#x}) in {kind}{s1}")


@dataclass(frozen=True)
class UserCap:
    """Configuration space the user's logic owns (served through ``SriovEndpoint.ucfg``).

    Parameters
    ----------
    name : str
        Its name in register maps and messages (letters, digits, ``_``).
    kind : str
        ``"legacy"`` (a capability in 0x40..0xFF with an 8-bit ID), ``"extended"`` (from 0x100,
        16-bit ID and a version) or ``"range"`` (an unlinked range, fixed ``offset`` required).
        For capabilities the endpoint answers the header itself (ID, version, next pointer) and
        passes everything else, the rest of the first dword of a legacy capability included, to
        the user.
    cap_id : int
        Capability ID.
    version : int
        Capability Version (extended only).
    size : int
        Bytes, a multiple of 4, header included.
    offset : int or None
        Fixed offset, or ``None`` to be placed after the structures before it.
    """
    name:    str
    kind:    str
    size:    int
    cap_id:  int = 0
    version: int = 1
    offset:  int | None = None

    def check(self, name):
        _check_str(f"{name}.name", self.name)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ParamError(f"{name}.name", f"must be a name of letters, digits and _ "
                                             f"(got {self.name!r})")
        _check_str(f"{name}.kind", self.kind)
        if self.kind not in ("legacy", "extended", "range"):
            raise ParamError(f"{name}.kind", f"must be legacy, extended or range "
                                             f"(got {self.kind!r})")
        limit = {"legacy": 0xc0, "extended": 0xf00, "range": 0xfc0}[self.kind]
        _check_int(f"{name}.size", self.size, 4, limit)
        if self.size % 4:
            raise ParamError(f"{name}.size", f"must be a multiple of 4 bytes (got {self.size})")
        # Checked for every kind (a range has no header to put them in, but a value of the
        # wrong type is a mistake wherever it is written).
        _check_int(f"{name}.id", self.cap_id, 0, 0xff if self.kind == "legacy" else 0xffff)
        _check_int(f"{name}.version", self.version, 0, 0xf)
        if self.offset is not None:
            _check_int(f"{name}.offset", self.offset, 0x40, 0xffc)
        elif self.kind == "range":
            raise ParamError(f"{name}.offset", "a range needs a fixed offset")


@dataclass(frozen=True)
class PfParams:
    """Every parameter of one Physical Function: its header, capabilities and SR-IOV capability.

    Field names are those of the TOML file (section ``pf`` or ``sriov``); see
    ``examples/*.toml``. Offsets are byte offsets into the PF's configuration space. The rules
    that involve other PFs (Routing IDs that coincide, the Function Dependency Link) are checked
    by :class:`EndpointParams`, which holds the device's PFs.
    """
    # -- PF identity (Type 0 header) -------------------------------------------------------
    vendor_id:           int = 0x1234
    device_id:           int = 0x0001
    revision_id:         int = 0x00
    class_code:          int = 0x020000
    subsystem_vendor_id: int = 0x0000
    subsystem_id:        int = 0x0000
    #: Routing ID the testbench gives the PF (the hardware captures its own bus/device number).
    pf_rid:              int = 0x0100
    pf_bars:             tuple = ()

    # -- Extended capabilities ------------------------------------------------------------
    ari_cap_offset:      int = 0x100
    sriov_cap_offset:    int = 0x140

    # -- SR-IOV capability ----------------------------------------------------------------
    total_vfs:           int = 8
    initial_vfs:         int | None = None      # defaults to total_vfs
    vf_device_id:        int = 0x0002
    first_vf_offset_ari:     int = 1
    vf_stride_ari:           int = 1
    first_vf_offset_non_ari: int = 0x100
    vf_stride_non_ari:       int = 1
    supported_page_sizes:    int = MANDATORY_PAGE_SIZES
    function_dependency_link: int | None = None  # defaults to the PF's function number
    ari_capable_hierarchy_preserved: bool = False
    vf_10bit_tag_requester_supported: bool = False
    vf_bars:             tuple = ()

    # -- Capabilities composed into the PF's and the VFs' chains ------------------------------
    #: PF Power Management capability (every PCI Express function has one; ``None`` leaves it
    #: out, for comparing with devices that lack it).
    pm:                  PmParams | None = PmParams()
    #: PF MSI-X capability, or ``None``.
    msix:                MsixParams | None = None
    #: Configuration space of the PF that the user's logic owns.
    user_caps:           tuple = ()
    #: VF Power Management capability, or ``None``.
    vf_pm:               PmParams | None = None
    #: VF MSI-X capability (table and PBA in a VF BAR), or ``None``.
    vf_msix:             MsixParams | None = None
    #: Configuration space of every VF that the user's logic owns.
    vf_user_caps:        tuple = ()
    #: PF Access Control Services capability, ``None``, or ``"auto"`` (the default): the
    #: device gives every PF ``AcsParams()`` when it has several PFs, and none when it has one.
    acs:                 AcsParams | None | str = ACS_AUTO

    def __post_init__(self):
        if self.initial_vfs is None:
            object.__setattr__(self, "initial_vfs", self.total_vfs)
        if self.function_dependency_link is None and isinstance(self.pf_rid, int):
            object.__setattr__(self, "function_dependency_link", self.pf_rid & 0xff)
        for name in ("pf_bars", "vf_bars", "user_caps", "vf_user_caps"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self._check()

    def _check(self):
        _check_int("pf.vendor_id", self.vendor_id, 0, 0xfffe)
        if self.vendor_id == 0x0000:
            raise ParamError("pf.vendor_id", "0x0000 is not a valid Vendor ID")
        _check_int("pf.device_id", self.device_id, 0, 0xffff)
        _check_int("pf.revision_id", self.revision_id, 0, 0xff)
        _check_int("pf.class_code", self.class_code, 0, 0xff_ffff)
        _check_int("pf.subsystem_vendor_id", self.subsystem_vendor_id, 0, 0xffff)
        _check_int("pf.subsystem_id", self.subsystem_id, 0, 0xffff)
        _check_int("pf.address", self.pf_rid, 0, 0xffff)
        _check_bars("pf.bar", self.pf_bars)

        for name, offset, length in (("sriov.ari_cap_offset", self.ari_cap_offset, 0x08),
                                     ("sriov.cap_offset", self.sriov_cap_offset, 0x40)):
            _check_int(name, offset, 0, 0xfff)
            if offset % 4:
                raise ParamError(name, f"must be dword-aligned (got {offset:#x})")
            if not 0x100 <= offset <= 0x1000 - length:
                raise ParamError(name, f"must lie in extended configuration space, "
                                       f"0x100..{0x1000 - length:#x} for a {length:#x}-byte "
                                       f"capability (got {offset:#x})")
        a, s = self.ari_cap_offset, self.sriov_cap_offset
        if a < s + 0x40 and s < a + 0x08:
            raise ParamError("sriov.cap_offset",
                             f"the SR-IOV capability ({s:#x}..{s + 0x3f:#x}) overlaps the ARI "
                             f"capability ({a:#x}..{a + 7:#x})")
        if 0x100 not in (a, s):
            raise ParamError("sriov.ari_cap_offset",
                             "one extended capability must sit at 0x100, where the extended "
                             "capability list starts")

        _check_int("sriov.total_vfs", self.total_vfs, 1, 0xffff)
        _check_int("sriov.initial_vfs", self.initial_vfs, 0, 0xffff)
        if self.initial_vfs > self.total_vfs:
            raise ParamError("sriov.initial_vfs",
                             f"InitialVFs ({self.initial_vfs}) must not exceed TotalVFs "
                             f"({self.total_vfs})")
        if self.initial_vfs != self.total_vfs:
            raise ParamError("sriov.initial_vfs",
                             f"without VF Migration Capable, InitialVFs must equal TotalVFs "
                             f"({self.total_vfs}); Linux refuses to enable SR-IOV otherwise")
        _check_int("sriov.vf_device_id", self.vf_device_id, 0, 0xffff)

        for mode in ("ari", "non_ari"):
            off_name, stride_name = f"first_vf_offset_{mode}", f"vf_stride_{mode}"
            offset, stride = getattr(self, off_name), getattr(self, stride_name)
            toml_off = f"sriov.first_vf_offset.{mode}"
            toml_stride = f"sriov.vf_stride.{mode}"
            _check_int(toml_off, offset, 0, 0xffff)
            _check_int(toml_stride, stride, 0, 0xffff)
            if offset == 0:
                raise ParamError(toml_off, "First VF Offset must not be 0 (the PF has that "
                                           "Routing ID)")
            if stride == 0 and self.total_vfs > 1:
                raise ParamError(toml_stride, "VF Stride must not be 0 when TotalVFs > 1")
            last = self.pf_rid + offset + (self.total_vfs - 1) * stride
            if last > 0xffff:
                raise ParamError(toml_off,
                                 f"the last VF's Routing ID, PF {self.pf_rid:#06x} + offset "
                                 f"{offset:#x} + (TotalVFs-1) * stride {stride:#x} = "
                                 f"{last:#x}, does not fit in 16 bits")

        _check_int("sriov.supported_page_sizes", self.supported_page_sizes, 0, 0xffff_ffff)
        missing = MANDATORY_PAGE_SIZES & ~self.supported_page_sizes
        if missing:
            raise ParamError("sriov.supported_page_sizes",
                             f"must include the mandatory page sizes {MANDATORY_PAGE_SIZES:#x} "
                             f"(4K, 8K, 64K, 256K, 1M, 4M); missing {missing:#x}")
        _check_int("sriov.function_dependency_link", self.function_dependency_link, 0, 0xff)
        _check_bool("sriov.ari_capable_hierarchy_preserved", self.ari_capable_hierarchy_preserved)
        _check_bool("sriov.vf_10bit_tag_requester_supported",
                    self.vf_10bit_tag_requester_supported)
        _check_bars("sriov.vf_bar", self.vf_bars)
        for n, bar in enumerate(self.vf_bars):
            span = bar.size * self.total_vfs
            limit = 1 << 64 if bar.is_64bit else 1 << 32
            if span > limit:
                raise ParamError(f"sriov.vf_bar[{n}].size",
                                 f"TotalVFs ({self.total_vfs}) x size ({bar.size:#x}) = "
                                 f"{span:#x} does not fit a {'64' if bar.is_64bit else '32'}-bit "
                                 f"address space")

        self._check_capabilities()

    def _check_capabilities(self):
        for name, value, cls in (("pf.pm", self.pm, PmParams), ("sriov.vf_pm", self.vf_pm,
                                                               PmParams),
                                 ("pf.msix", self.msix, MsixParams),
                                 ("sriov.vf_msix", self.vf_msix, MsixParams)):
            if value is not None and not isinstance(value, cls):
                raise ParamError(name, f"must be a {cls.__name__} or None, not {value!r}")
        if self.pm is not None:
            self.pm.check("pf.pm")
        if self.vf_pm is not None:
            self.vf_pm.check("sriov.vf_pm")
        if self.msix is not None:
            self.msix.check("pf.msix", self.pf_bars, vf=False)
        if self.vf_msix is not None:
            self.vf_msix.check("sriov.vf_msix", self.vf_bars, vf=True)
        if self.acs not in (None, ACS_AUTO):
            if not isinstance(self.acs, AcsParams):
                raise ParamError("pf.acs", f"must be an AcsParams, None or \"auto\", not "
                                           f"{self.acs!r}")
            self.acs.check("pf.acs")
        for attr, toml in (("user_caps", "pf.capability"),
                           ("vf_user_caps", "sriov.vf_capability")):
            caps = getattr(self, attr)
            if not isinstance(caps, tuple):
                raise ParamError(toml, "must be a tuple of UserCap")
            for n, cap in enumerate(caps):
                if not isinstance(cap, UserCap):
                    raise ParamError(f"{toml}[{n}]", f"must be a UserCap, not {cap!r}")
                cap.check(f"{toml}[{n}]")
        # Placement: computed here so that a refused layout is refused at construction.
        from .caps import pf_structures, vf_structures
        from .caps.chain import PlacementError, place
        for which, structures in (("pf", pf_structures(self)), ("vf", vf_structures(self))):
            try:
                place(structures)
            except PlacementError as exc:
                raise ParamError(_structure_field(self, which, exc.name),
                                 f"{exc.name} capability: {exc.rule}") from None

    # -- Derived values -------------------------------------------------------------------
    def first_vf_offset(self, ari):
        return self.first_vf_offset_ari if ari else self.first_vf_offset_non_ari

    def vf_stride(self, ari):
        return self.vf_stride_ari if ari else self.vf_stride_non_ari

    def vf_rid(self, n, ari):
        """Routing ID of VF ``n`` (1-based) with ARI Capable Hierarchy ``ari``, relative to the
        PF at ``pf_rid``."""
        return self.pf_rid + self.first_vf_offset(ari) + (n - 1) * self.vf_stride(ari)

    def vf_bar(self, index):
        """The VF BAR whose low dword is slot ``index``, or ``None``."""
        for bar in self.vf_bars:
            if bar.index == index:
                return bar
        return None

    @property
    def vf_number_width(self):
        """Bits needed for a VF number 1..TotalVFs."""
        return max(1, self.total_vfs.bit_length())

    def replace(self, **changes):
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        # InitialVFs and the Function Dependency Link default to values derived from TotalVFs and
        # the PF's RID: let them follow a change to those unless they are changed too.
        if "initial_vfs" not in changes and self.initial_vfs == self.total_vfs:
            values["initial_vfs"] = None
        if "function_dependency_link" not in changes \
                and self.function_dependency_link == self.pf_rid & 0xff:
            values["function_dependency_link"] = None
        values.update(changes)
        return PfParams(**values)


def as_pf(params):
    """The :class:`PfParams` a per-PF component is built from: ``params`` itself, or the one PF
    of a single-PF :class:`EndpointParams`."""
    if isinstance(params, PfParams):
        return params
    if isinstance(params, EndpointParams):
        if len(params.pfs) == 1:
            return params.pfs[0]
        raise TypeError(f"params: this device has {len(params.pfs)} PFs; pass one of "
                        f"params.pfs")
    raise TypeError(f"params: must be a PfParams or an EndpointParams, not {params!r}")


#: Most PFs in one device: function numbers 0..15 of an ARI device (Versal CPM5 has 16).
MAX_PFS = 16


def _pf_field(field, k):
    """The TOML name, in the ``[[pf]]`` form, of PF ``k``'s field named ``field`` in the
    single-PF form: ``pf.vendor_id`` -> ``pf[k].vendor_id``, ``sriov.x`` -> ``pf[k].sriov.x``.
    Other fields (device keys) are returned unchanged."""
    field = _MSIX_PLACE_RE.sub(r"\1.\2.\3", field)
    if field == "pf" or field.startswith("pf."):
        return f"pf[{k}]{field[2:]}"
    if field == "sriov" or field.startswith("sriov."):
        return f"pf[{k}].{field}"
    return field


#: Keyword arguments of :class:`EndpointParams` that belong to the device, not to a PF.
_DEVICE_KEYS = ("clock_mhz", "user_cfg_timeout")


@dataclass(frozen=True, init=False)
class EndpointParams:
    """Every parameter of one SR-IOV endpoint: its Physical Functions and device-wide settings.

    ``EndpointParams(pfs=(PfParams(...), ...), clock_mhz=..., user_cfg_timeout=...)`` builds a
    device of several PFs; the flat form ``EndpointParams(total_vfs=8, vendor_id=..., ...)``
    builds a device of one PF from :class:`PfParams`' keywords. With one PF, every attribute of
    :class:`PfParams` reads through (``params.total_vfs``); with several it raises
    :class:`AttributeError`, so no multi-PF code reads PF 0 by accident.

    With several PFs the rules between them are checked too (docs/multi-pf.md §2): at most
    :data:`MAX_PFS`, one bus, strictly ascending function numbers starting at 0, Function
    Dependency Links that name a PF, ARI Capable Hierarchy Preserved in PF 0 only, and no two
    functions at one Routing ID for any NumVFs in either layout.
    """
    #: The PFs, in ascending function number; the position in this tuple is the PF index that
    #: every per-PF port and event carries.
    pfs:                 tuple
    #: Clock cycles a user configuration window may take to answer before the endpoint
    #: completes the request itself (reads 0, writes dropped).
    user_cfg_timeout:    int = 1024
    #: Clock frequency the design is constrained for, in MHz.
    clock_mhz:           float = 125.0

    def __init__(self, pfs=None, *, clock_mhz=125.0, user_cfg_timeout=1024, **flat):
        if pfs is None:
            pfs = (PfParams(**flat),)
        elif flat:
            raise TypeError(f"EndpointParams: with pfs=..., PF keywords belong in PfParams "
                            f"(got {', '.join(sorted(flat))})")
        if isinstance(pfs, list):
            pfs = tuple(pfs)
        if isinstance(pfs, tuple) and all(isinstance(pf, PfParams) for pf in pfs):
            acs = AcsParams() if len(pfs) > 1 else None
            resolved = []
            for k, pf in enumerate(pfs):
                try:
                    resolved.append(pf.replace(acs=acs) if pf.acs == ACS_AUTO else pf)
                except ParamError as exc:           # the added ACS capability does not fit
                    raise ParamError(_pf_field(exc.field, k), exc.rule) from None
            pfs = tuple(resolved)
        object.__setattr__(self, "pfs", pfs)
        object.__setattr__(self, "clock_mhz", clock_mhz)
        object.__setattr__(self, "user_cfg_timeout", user_cfg_timeout)
        self._check()

    def _check(self):
        if not isinstance(self.pfs, tuple) or not self.pfs:
            raise ParamError("pf", "a device needs at least one PF (a tuple of PfParams)")
        for k, pf in enumerate(self.pfs):
            if not isinstance(pf, PfParams):
                raise ParamError(f"pf[{k}]", f"must be a PfParams, not {_describe(pf)}")
        if len(self.pfs) > MAX_PFS:
            raise ParamError("pf", f"a device has at most {MAX_PFS} PFs (got {len(self.pfs)})")
        if len(self.pfs) == 1:
            pf = self.pfs[0]
            if pf.function_dependency_link != pf.pf_rid & 0xff:
                raise ParamError("sriov.function_dependency_link",
                                 f"must be the PF's own function number "
                                 f"({pf.pf_rid & 0xff:#x}): a single-PF endpoint has no other "
                                 f"PF to depend on")
        else:
            self._check_addresses()
            self._check_links()
            self._check_routing_ids()
        _check_int("user_cfg_timeout", self.user_cfg_timeout, 1, 1 << 20)
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)):
            raise ParamError("clock_mhz", f"must be a number of MHz in 1..1000, not "
                                          f"{_describe(self.clock_mhz)}")
        if not 1 <= self.clock_mhz <= 1000:
            raise ParamError("clock_mhz", f"must be a number of MHz in 1..1000 "
                                          f"(got {self.clock_mhz!r})")

    # -- Rules between PFs (P > 1) ------------------------------------------------------------
    def _pf_name(self, k):
        """PF ``k`` as messages name it: its BDF and its TOML table."""
        return f"PF {format_bdf(self.pfs[k].pf_rid)} (pf[{k}])"

    def _check_addresses(self):
        """One bus, strictly ascending function numbers, a PF at function 0."""
        pfs = self.pfs
        bus = pfs[0].pf_rid >> 8
        for k in range(1, len(pfs)):
            rid, prev = pfs[k].pf_rid, pfs[k - 1].pf_rid
            if rid >> 8 != bus:
                raise ParamError(f"pf[{k}].address",
                                 f"{format_bdf(rid)} is not on bus {bus:02x} of "
                                 f"{self._pf_name(0)}: all PFs of a device share one bus")
            if rid == prev:
                raise ParamError(f"pf[{k}].address",
                                 f"{format_bdf(rid)} is also the address of pf[{k - 1}]: two "
                                 f"PFs cannot be one function")
            if rid < prev:
                raise ParamError(f"pf[{k}].address",
                                 f"PFs are listed in ascending function number (the order is "
                                 f"the PF index of every port): {format_bdf(rid)} comes after "
                                 f"{self._pf_name(k - 1)}")
        if pfs[0].pf_rid & 0xff:
            raise ParamError("pf[0].address",
                             f"with {len(pfs)} PFs one must be function 0 (the first is "
                             f"{format_bdf(pfs[0].pf_rid)}): a multi-function device "
                             f"implements function 0, and Linux probes function 0 first")

    def _check_links(self):
        """Function Dependency Link names a PF; only PF 0 preserves ARI Capable Hierarchy."""
        functions = [pf.pf_rid & 0xff for pf in self.pfs]
        for k, pf in enumerate(self.pfs):
            link = pf.function_dependency_link
            if link not in functions:
                raise ParamError(f"pf[{k}].sriov.function_dependency_link",
                                 f"{link:#x} in {self._pf_name(k)} is not the function number "
                                 f"of a PF of this device "
                                 f"({', '.join(f'{fn:#x}' for fn in functions)}): Linux "
                                 f"refuses to enable its VFs otherwise")
            if k and pf.ari_capable_hierarchy_preserved:
                raise ParamError(f"pf[{k}].sriov.ari_capable_hierarchy_preserved",
                                 f"only {self._pf_name(0)}, which owns ARI Capable Hierarchy, "
                                 f"may set it; in {self._pf_name(k)} that bit is RsvdP")

    def _check_routing_ids(self):
        """No two functions of the device at one Routing ID, in either layout.

        Exact for every NumVFs tuple because of three facts: (a) First VF Offset and VF Stride
        depend on ARI Capable Hierarchy only, never on NumVFs (``SriovCapability`` and the
        model select between two constants); (b) ARI Capable Hierarchy is one bit for the whole
        device, so all PFs are in the same layout; (c) PF k's VFs at NumVFs = m are the first
        m of its TotalVFs Routing IDs. So two functions coincide at some NumVFs tuple exactly
        when they coincide with NumVFs = TotalVFs in every PF, the one tuple checked here. A
        coincidence does not depend on the bus (all Routing IDs move with it). Should an offset
        or stride ever depend on NumVFs (PCIe Base §9.3.3.9 allows it), (a) fails and this
        check would have to run per NumVFs value.
        """
        pfs = self.pfs
        for ari in (True, False):
            owner = bytearray(0x10000)          # 0 free, k+1 PF k, 0x80|(k+1) a VF of PF k
            for k, pf in enumerate(pfs):
                owner[pf.pf_rid] = k + 1        # distinct: _check_addresses
            for k, pf in enumerate(pfs):
                first, step, n = pf.vf_rid(1, ari), pf.vf_stride(ari) or 1, pf.total_vfs
                span = slice(first, first + (n - 1) * step + 1, step)  # in 16 bits: PfParams
                view = owner[span]
                if view.count(0) != n:
                    i = next(i for i, mark in enumerate(view) if mark)
                    raise self._clash(k, i + 1, first + i * step, view[i], ari)
                owner[span] = bytes((0x80 | (k + 1),)) * n

    def _clash(self, k, n, rid, mark, ari):
        """The error for VF ``n`` of PF ``k`` at ``rid``, which ``mark`` already owns."""
        j = (mark & 0x7f) - 1
        bdf = [format_bdf(pf.pf_rid) for pf in self.pfs]
        if mark & 0x80:
            other = self.pfs[j]
            stride = other.vf_stride(ari)
            m = (rid - other.vf_rid(1, ari)) // stride + 1 if stride else 1
            what = f"VF {m} of PF {bdf[j]}"
            when = f"once NumVFs reaches {n} in pf[{k}] and {m} in pf[{j}]"
        else:
            what = f"PF {bdf[j]}"
            when = f"pf[{j}], once NumVFs reaches {n} in pf[{k}]"
        mode = "set" if ari else "clear"
        return ParamError(f"pf[{k}].sriov.first_vf_offset.{'ari' if ari else 'non_ari'}",
                          f"with ARI Capable Hierarchy {mode}, VF {n} of PF {bdf[k]} "
                          f"({format_bdf(rid)}) is {what} ({when}): two functions must never "
                          f"share a Routing ID (PCIe Base §9.3.3.9-10); change a First VF "
                          f"Offset or VF Stride")

    def __getattr__(self, name):
        # Only reached when normal lookup fails: a PfParams attribute read on the device.
        if name.startswith("__") or name == "pfs":
            raise AttributeError(name)
        pfs = self.__dict__.get("pfs", ())
        if len(pfs) == 1:
            return getattr(pfs[0], name)
        if hasattr(PfParams, name) or name in PfParams.__dataclass_fields__:
            raise AttributeError(f"{name!r} is per PF and this device has {len(pfs)} PFs: use "
                                 f"params.pfs[k].{name}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def num_pfs(self):
        return len(self.pfs)

    @property
    def bus(self):
        """The bus number the testbench gives the device (all PFs share it)."""
        return self.pfs[0].pf_rid >> 8

    @property
    def multi_function(self):
        """Header Type's Multi-Function bit: set in every PF when there are several."""
        return len(self.pfs) > 1

    @property
    def ari_only(self):
        """A PF sits above function 7, so only an ARI hierarchy reaches it."""
        return any(pf.pf_rid & 0xff > 7 for pf in self.pfs)

    def vf_base(self, k):
        """Index of PF ``k``'s VF 1 in the device's per-VF memories: the VFs of PFs 0..k-1."""
        return sum(pf.total_vfs for pf in self.pfs[:k])

    @property
    def vf_entries(self):
        """Entries of the per-VF memories: every PF's TotalVFs."""
        return sum(pf.total_vfs for pf in self.pfs)

    def pf_index(self, rid):
        """The PF index of the PF at Routing ID ``rid``, or ``None``."""
        for k, pf in enumerate(self.pfs):
            if pf.pf_rid == rid:
                return k
        return None

    def replace(self, **changes):
        """A copy with ``changes``: device keywords, ``pfs``, or (one PF only) PF keywords."""
        device = {key: changes.pop(key) for key in _DEVICE_KEYS if key in changes}
        pfs = changes.pop("pfs", self.pfs)
        if changes:
            if len(pfs) != 1:
                raise AttributeError(f"this device has {len(pfs)} PFs: replace "
                                     f"pfs=(...) instead of {', '.join(sorted(changes))}")
            pfs = (pfs[0].replace(**changes),)
        values = {"clock_mhz": self.clock_mhz, "user_cfg_timeout": self.user_cfg_timeout}
        values.update(device)
        return EndpointParams(pfs, **values)


def _structure_field(params, which, name):
    """The TOML field that places structure ``name`` of the PF's or the VFs' chain."""
    fixed = {"pf": {"pcie": "pf", "pm": "pf.pm.offset", "msix": "pf.msix.offset",
                    "ari": "sriov.ari_cap_offset", "sriov": "sriov.cap_offset",
                    "acs": "pf.acs.offset"},
             "vf": {"pcie": "sriov", "pm": "sriov.vf_pm.offset",
                    "msix": "sriov.vf_msix.offset", "ari": "sriov"}}[which]
    if name in fixed:
        return fixed[name]
    caps = params.user_caps if which == "pf" else params.vf_user_caps
    toml = "pf.capability" if which == "pf" else "sriov.vf_capability"
    for n, cap in enumerate(caps):
        if cap.name == name:
            return f"{toml}[{n}]"
    return toml


# -- TOML ---------------------------------------------------------------------------------

_PF_KEYS = {
    "vendor_id": "vendor_id", "device_id": "device_id", "revision_id": "revision_id",
    "class_code": "class_code", "subsystem_vendor_id": "subsystem_vendor_id",
    "subsystem_id": "subsystem_id",
}
_SRIOV_KEYS = {
    "cap_offset": "sriov_cap_offset", "ari_cap_offset": "ari_cap_offset",
    "total_vfs": "total_vfs", "initial_vfs": "initial_vfs", "vf_device_id": "vf_device_id",
    "supported_page_sizes": "supported_page_sizes",
    "function_dependency_link": "function_dependency_link",
    "ari_capable_hierarchy_preserved": "ari_capable_hierarchy_preserved",
    "vf_10bit_tag_requester_supported": "vf_10bit_tag_requester_supported",
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGTPE]?)i?B?\s*$", re.IGNORECASE)


def _parse_size(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            number, unit = match.groups()
            return int(number) << (10 * "_KMGTPE".index(unit.upper() or "_"))
    raise ParamError(name, f"must be a byte count such as 16384 or \"16K\", not "
                           f"{_describe(value)}")


def _parse_bars(name, items):
    if not isinstance(items, list):
        raise ParamError(name, f"must be an array of tables ([[...]]), not {_describe(items)}")
    bars = []
    for n, item in enumerate(items):
        item_name = f"{name}[{n}]"
        if not isinstance(item, dict):
            raise ParamError(item_name, f"must be a table, not {_describe(item)}")
        unknown = set(item) - {"index", "size", "width", "prefetchable"}
        if unknown:
            raise ParamError(f"{item_name}.{sorted(unknown)[0]}",
                             "unknown key (expected index, size, width, prefetchable)")
        for key in ("index", "size"):
            if key not in item:
                raise ParamError(f"{item_name}.{key}", "is required")
        width = item.get("width", 32)
        if isinstance(width, bool) or not isinstance(width, int) or width not in (32, 64):
            raise ParamError(f"{item_name}.width", f"must be 32 or 64 (an integer), not "
                                                   f"{_describe(width)}")
        bars.append(Bar(index=item["index"], size=_parse_size(f"{item_name}.size", item["size"]),
                        is_64bit=width == 64, prefetchable=item.get("prefetchable", False)))
    return tuple(bars)


def _mode_pair(name, value):
    if not isinstance(value, dict) or set(value) != {"ari", "non_ari"}:
        got = f"a table with {', '.join(sorted(value)) or 'no keys'}" \
            if isinstance(value, dict) else _describe(value)
        raise ParamError(name, f"must be a table with exactly the keys ari and non_ari, "
                               f"e.g. {{ ari = 1, non_ari = 0x100 }}, not {got}")
    return value["ari"], value["non_ari"]


def _table(name, value, keys):
    if not isinstance(value, dict):
        raise ParamError(name, f"must be a table, not {_describe(value)}")
    unknown = set(value) - set(keys)
    if unknown:
        raise ParamError(f"{name}.{sorted(unknown)[0]}",
                         f"unknown key (expected {', '.join(keys)})")
    return value


def _parse_pm(name, value):
    if value is False:
        return None
    if value is True:
        return PmParams()
    if not isinstance(value, dict):
        raise ParamError(name, f"must be a table, or true (the default capability) or false "
                               f"(none), not {_describe(value)}")
    value = _table(name, value, ("d1", "d2", "no_soft_reset", "offset"))
    return PmParams(**value)


def _parse_msix(name, value):
    if value is False:
        return None
    if not isinstance(value, dict):
        raise ParamError(name, f"must be a table (or false: no MSI-X), not {_describe(value)}")
    value = _table(name, value, ("vectors", "max_vectors", "table", "pba", "offset"))
    for key in ("vectors", "table", "pba"):
        if key not in value:
            raise ParamError(f"{name}.{key}", "is required")
    kwargs = {"vectors": value["vectors"], "max_vectors": value.get("max_vectors"),
              "offset": value.get("offset")}
    for key in ("table", "pba"):
        where = _table(f"{name}.{key}", value[key], ("bar", "offset"))
        for sub in ("bar", "offset"):
            if sub not in where:
                raise ParamError(f"{name}.{key}.{sub}", "is required, e.g. "
                                                        "{ bar = 3, offset = 0x2000 }")
        kwargs[f"{key}_bar"], kwargs[f"{key}_offset"] = where["bar"], where["offset"]
    return MsixParams(**kwargs)


def _parse_user_caps(name, items):
    if not isinstance(items, list):
        raise ParamError(name, f"must be an array of tables ([[...]]), not {_describe(items)}")
    caps = []
    for n, item in enumerate(items):
        item = _table(f"{name}[{n}]", item, ("name", "kind", "id", "version", "size", "offset"))
        for key in ("name", "kind", "size"):
            if key not in item:
                raise ParamError(f"{name}[{n}].{key}", "is required")
        caps.append(UserCap(name=item["name"], kind=item["kind"],
                            size=_parse_size(f"{name}[{n}].size", item["size"]),
                            cap_id=item.get("id", 0), version=item.get("version", 1),
                            offset=item.get("offset")))
    return tuple(caps)


#: Fields that say which device this is and how big it is, by TOML name: (attribute, what the
#: spec calls it). A file that leaves one out gets the default, and a :class:`ConfigNote` saying
#: so: the defaults are placeholders (vendor 0x1234 is QEMU's test-device ID), right for no
#: real device.
IDENTITY_FIELDS = {
    "pf.vendor_id":       ("vendor_id", "Vendor ID"),
    "pf.device_id":       ("device_id", "Device ID"),
    "sriov.total_vfs":    ("total_vfs", "TotalVFs"),
    "sriov.vf_device_id": ("vf_device_id", "VF Device ID"),
}


@dataclass(frozen=True)
class ConfigNote:
    """Something a configuration file leaves to a default that the user should hear about.

    Not an error and not a Python warning: :func:`load_params` collects these into a list the
    caller passes (the command line prints each as ``sriov-ep: warning: ...`` on stderr), so
    loading a partial file from a program, or under ``-W error``, stays quiet and works.
    ``field`` is the TOML path, as in :class:`ParamError`.
    """
    field:   str
    message: str
    source:  str | None = None

    def __str__(self):
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.field}: {self.message}"

    def with_source(self, source):
        return ConfigNote(self.field, self.message, source)


def _identity_notes(given):
    """Notes for the :data:`IDENTITY_FIELDS` not in ``given`` (the TOML paths the file set)."""
    notes = []
    for toml, (attr, what) in IDENTITY_FIELDS.items():
        if toml in given:
            continue
        default = PfParams.__dataclass_fields__[attr].default
        shown = f"{default:#06x}" if attr.endswith("_id") else str(default)
        notes.append(ConfigNote(toml, f"not set: {what} defaults to the placeholder {shown}; "
                                      f"set it for your device"))
    return notes


#: MsixParams names the table's and the PBA's place ``table_bar``, ``pba_offset``...; a TOML file
#: writes ``table = { bar = 3, offset = 0 }``, so errors from a file say ``table.bar``.
_MSIX_PLACE_RE = re.compile(r"^(pf\.msix|sriov\.vf_msix)\.(table|pba)_(bar|offset)$")


def _parse_acs(name, value):
    if value is False:
        return None
    if value is True:
        return AcsParams()
    if not isinstance(value, dict):
        raise ParamError(name, f"must be a table, or true (the default capability) or false "
                               f"(none), not {_describe(value)}")
    return AcsParams(**_table(name, value, ("capability", "offset")))


def _pf_kwargs(pf, name, kwargs, *, skip=()):
    """Add the keyword arguments of :class:`PfParams` that a ``[pf]`` table (TOML name
    ``name``) sets to ``kwargs``; keys in ``skip`` are the caller's."""
    for key, value in pf.items():
        if key in _PF_KEYS:
            kwargs[_PF_KEYS[key]] = value
        elif key == "address":
            if not isinstance(value, str):
                raise ParamError(f"{name}.address", f"must be a string \"BB:DD.F\", not "
                                                    f"{_describe(value)}")
            try:
                kwargs["pf_rid"] = parse_bdf(value)
            except ValueError as exc:
                raise ParamError(f"{name}.address", str(exc)) from None
        elif key == "bar":
            kwargs["pf_bars"] = _parse_bars(f"{name}.bar", value)
        elif key == "pm":
            kwargs["pm"] = _parse_pm(f"{name}.pm", value)
        elif key == "msix":
            kwargs["msix"] = _parse_msix(f"{name}.msix", value)
        elif key == "capability":
            kwargs["user_caps"] = _parse_user_caps(f"{name}.capability", value)
        elif key == "acs":
            kwargs["acs"] = _parse_acs(f"{name}.acs", value)
        elif key in skip:
            continue
        elif key == "sriov":
            raise ParamError(f"{name}.sriov", "unknown key: with a [pf] table the SR-IOV "
                                              "capability is the top-level [sriov]; [pf.sriov] "
                                              "goes with an array of PFs, [[pf]]")
        else:
            raise ParamError(f"{name}.{key}", "unknown key")


def _sriov_kwargs(sriov, name, kwargs):
    """Add the keyword arguments of :class:`PfParams` that an SR-IOV table (TOML name ``name``:
    ``sriov`` or ``pf[k].sriov``) sets to ``kwargs``."""
    for key, value in sriov.items():
        if key in _SRIOV_KEYS:
            kwargs[_SRIOV_KEYS[key]] = value
        elif key == "first_vf_offset":
            kwargs["first_vf_offset_ari"], kwargs["first_vf_offset_non_ari"] = \
                _mode_pair(f"{name}.first_vf_offset", value)
        elif key == "vf_stride":
            kwargs["vf_stride_ari"], kwargs["vf_stride_non_ari"] = \
                _mode_pair(f"{name}.vf_stride", value)
        elif key == "vf_bar":
            kwargs["vf_bars"] = _parse_bars(f"{name}.vf_bar", value)
        elif key == "vf_pm":
            kwargs["vf_pm"] = _parse_pm(f"{name}.vf_pm", value)
        elif key == "vf_msix":
            kwargs["vf_msix"] = _parse_msix(f"{name}.vf_msix", value)
        elif key == "vf_capability":
            kwargs["vf_user_caps"] = _parse_user_caps(f"{name}.vf_capability", value)
        else:
            raise ParamError(f"{name}.{key}", "unknown key")


def _merged(base, over):
    """``base`` with ``over`` on top: tables merged key by key, anything else (arrays of tables
    included) replaced whole."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_like(items):
    """The ``[[pf]]`` tables with every ``like = K`` replaced by a copy of ``pf[K]`` merged
    with the table's own keys."""
    resolved = []
    for k, item in enumerate(items):
        name = f"pf[{k}]"
        if not isinstance(item, dict):
            raise ParamError(name, f"must be a table, not {_describe(item)}")
        if "like" in item:
            like = item["like"]
            if isinstance(like, bool) or not isinstance(like, int):
                raise ParamError(f"{name}.like", f"must be an integer (the index of an earlier "
                                                 f"PF), not {_describe(like)}")
            if not 0 <= like < k:
                rule = f"must be the index of an earlier PF, 0..{k - 1}" if k else \
                    "pf[0] has no earlier PF to copy"
                raise ParamError(f"{name}.like", f"{rule} (got {like})")
            item = _merged(resolved[like], {key: v for key, v in item.items() if key != "like"})
        resolved.append(item)
    return resolved


def _device_from_array(doc, items, device_kwargs, notes):
    """The ``[[pf]]`` form: one table per PF, each with its own ``[pf.sriov]``."""
    if "sriov" in doc:
        raise ParamError("sriov", "with [[pf]], each PF has its own [pf.sriov]; a top-level "
                                  "[sriov] table goes with a single [pf] table")
    if not items:
        raise ParamError("pf", "a device needs at least one PF (the [[pf]] array is empty)")
    if len(items) > MAX_PFS:
        raise ParamError("pf", f"a device has at most {MAX_PFS} PFs (got {len(items)})")
    tables = _resolve_like(items)
    pfs = []
    for k, table in enumerate(tables):
        name = f"pf[{k}]"
        kwargs = {}
        _pf_kwargs(table, name, kwargs, skip=("sriov",))
        sriov = table.get("sriov")
        if not isinstance(sriov, dict):
            got = "" if sriov is None else f", not {_describe(sriov)}"
            raise ParamError(f"{name}.sriov", f"a [pf.sriov] table is required{got}")
        _sriov_kwargs(sriov, f"{name}.sriov", kwargs)
        try:
            pfs.append(PfParams(**kwargs))
        except ParamError as exc:
            raise ParamError(_pf_field(exc.field, k), exc.rule) from None
    try:
        params = EndpointParams(tuple(pfs), **device_kwargs)
    except ParamError as exc:
        if len(pfs) > 1:
            raise
        raise ParamError(_pf_field(exc.field, 0), exc.rule) from None   # single-PF rules
    if notes is not None:
        for k, table in enumerate(tables):
            given = {f"pf.{key}" for key in table} | \
                {f"sriov.{key}" for key in table["sriov"]}
            notes.extend(ConfigNote(_pf_field(note.field, k), note.message)
                         for note in _identity_notes(given))
            if len(tables) > 1 and table.get("acs") is False:
                notes.append(ConfigNote(
                    f"pf[{k}].acs", "false: this PF has no ACS capability, and Linux puts the "
                                    "PFs of a device that have none in one IOMMU group (with "
                                    "acs = false everywhere, Linux then puts all PFs in one "
                                    "IOMMU group)"))
        high = [k for k, pf in enumerate(params.pfs) if pf.pf_rid & 0xff > 7]
        if high:
            listed = ", ".join(f"{format_bdf(params.pfs[k].pf_rid)} (pf[{k}])" for k in high)
            notes.append(ConfigNote(
                f"pf[{high[0]}].address",
                f"above function 7: {listed}; only an ARI hierarchy reaches them (a Downstream "
                f"Port without ARI Forwarding passes requests to device 0, functions 0..7)"))
    return params


def params_from_dict(doc, *, notes=None):
    """Build :class:`EndpointParams` from a parsed TOML document.

    Two forms: a single ``[pf]`` table with a top-level ``[sriov]`` (one PF; errors name
    ``pf.vendor_id``, ``sriov.vf_bar[0].size``), or an array of tables ``[[pf]]``, each with
    its own ``[pf.sriov]`` and optionally ``like = K`` (start as a copy of ``pf[K]``; errors
    name ``pf[1].sriov.vf_bar[0].size``). Device keys (``clock_mhz``, ``user_cfg_timeout``,
    ``name``, ``description``) are top-level in both.

    Values must have the TOML type the field needs (``64``, not ``64.0``; ``true``, not ``1``;
    a string for names): anything else is a :class:`ParamError` naming the field and the type.
    ``notes``: a list to which a :class:`ConfigNote` is appended for every field of
    :data:`IDENTITY_FIELDS` the document leaves out, and in the ``[[pf]]`` form for ``acs =
    false`` with several PFs and for PFs above function 7 (only when the document is valid).
    """
    kwargs = {}
    if not isinstance(doc, dict):
        raise ParamError("(document)", f"must be a table, not {_describe(doc)}")
    unknown = set(doc) - {"pf", "sriov", "clock_mhz", "name", "description",
                          "user_cfg_timeout"}
    if unknown:
        raise ParamError(sorted(unknown)[0], "unknown top-level key (expected pf, sriov, "
                                             "clock_mhz, user_cfg_timeout, name, description)")
    for key in ("name", "description"):
        if key in doc:
            _check_str(key, doc[key])
    for key in ("clock_mhz", "user_cfg_timeout"):
        if key in doc:
            kwargs[key] = doc[key]
    pf = doc.get("pf", {})
    if isinstance(pf, list):
        return _device_from_array(doc, pf, kwargs, notes)
    if not isinstance(pf, dict):
        raise ParamError("pf", f"must be a table ([pf]) or an array of tables ([[pf]]), not "
                               f"{_describe(pf)}")
    _pf_kwargs(pf, "pf", kwargs)
    sriov = doc.get("sriov")
    if not isinstance(sriov, dict):
        got = "" if sriov is None else f", not {_describe(sriov)}"
        raise ParamError("sriov", f"a [sriov] table is required{got}")
    _sriov_kwargs(sriov, "sriov", kwargs)
    try:
        params = EndpointParams(**kwargs)
    except ParamError as exc:
        field = _MSIX_PLACE_RE.sub(r"\1.\2.\3", exc.field)
        if field == exc.field:
            raise
        raise ParamError(field, exc.rule) from None
    if notes is not None:
        given = {f"pf.{key}" for key in pf} | {f"sriov.{key}" for key in sriov}
        notes.extend(_identity_notes(given))
    return params


def load_params(path, *, notes=None):
    """Load and validate a TOML endpoint configuration.

    Raises :class:`ParamError` whose message starts with the file name (and, for TOML syntax
    errors, the line and column). ``notes``: a list to which a :class:`ConfigNote` (with the
    file name as its ``source``) is appended for every identity field the file leaves to its
    default (:data:`IDENTITY_FIELDS`); the command line prints them as warnings.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParamError("(file)", f"cannot read: {exc.strerror}", source=str(path)) from None
    try:
        text = data.decode("utf-8-sig")         # TOML is UTF-8; a byte order mark is accepted
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ParamError("(file)", f"not UTF-8 text (TOML files are): byte "
                                   f"{data[exc.start]:#04x} on line {line} cannot be decoded",
                         source=str(path)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamError("(syntax)", str(exc), source=str(path)) from None
    found = [] if notes is not None else None
    try:
        params = params_from_dict(doc, notes=found)
    except ParamError as exc:
        raise exc.with_source(str(path)) from None
    if notes is not None:
        notes.extend(note.with_source(str(path)) for note in found)
    return params


# -- Reachability ---------------------------------------------------------------------------

def first_unreachable_vf(params, *, ari=False, pf=0):
    """The first VF (1-based number) of a PF that a Downstream Port could not reach, or ``None``.

    ``params`` is a :class:`PfParams`, or an :class:`EndpointParams` and ``pf`` the PF index
    (default 0, the only PF of a single-PF device).

    With ARI Capable Hierarchy clear (``ari=False``: the non-ARI First VF Offset and VF Stride
    apply) a Downstream Port without ARI Forwarding passes configuration requests for its
    secondary bus, the PF's, to device 0 only, so a VF whose Routing ID lies on the PF's bus
    with a device number other than 0 is never reached (Linux, too, scans only device 0 below a
    Downstream Port); VFs on higher bus numbers are reached by Type 1 requests. With ARI
    (``ari=True``) every function number on the bus is reachable, so the answer is ``None``.
    The simulation's root port does not model this: it reaches such VFs all the same.
    """
    if isinstance(params, EndpointParams):
        params = params.pfs[pf]
    elif not isinstance(params, PfParams):
        raise TypeError(f"params: must be a PfParams or an EndpointParams, not {params!r}")
    elif pf != 0:
        raise ValueError(f"pf={pf}: a PfParams is one PF; pass the device to pick another")
    if ari:
        return None
    bus = params.pf_rid >> 8
    for n in range(1, params.total_vfs + 1):
        rid = params.vf_rid(n, ari=False)
        if rid >> 8 != bus:
            return None         # Routing IDs only grow: every later VF is on a higher bus
        if (rid >> 3) & 0x1f:
            return n
    return None
