"""A register layer for PCI configuration space structures.

Registers and their fields are described once, as data, with explicit bit positions and the
access kinds of the PCI Express specification. From that description:

* :class:`RegisterMap` derives reset values, write masks and RW1C masks per dword, and a
  printable register map;
* :class:`RegisterBank` builds the hardware: storage for the writable fields, a combinational
  read multiplexer, and a byte-enabled write port that applies each write byte by byte.

Fields whose writes have side conditions (e.g. NumVFs, ignored while VF Enable is set) are marked
``custom``: the bank computes their merged write value and strobe, and the owning component
decides whether to take it.
"""

import enum
from dataclasses import dataclass, field

from amaranth.hdl import Cat, Const, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Access", "ResetScope", "Field", "Register", "RegisterMap", "RegisterBank",
           "RegisterPort"]


class Access(enum.Enum):
    """Access kinds of configuration-space fields (PCI Express Base, §7.4)."""
    #: Read-only; the value is fixed by the design or driven by hardware.
    RO     = "RO"
    #: Hardware-initialised: read-only to software, set from the endpoint parameters.
    HWINIT = "HwInit"
    #: Read-write.
    RW     = "RW"
    #: Read, write 1 to clear; written zeros have no effect.
    RW1C   = "RW1C"
    #: Reserved and preserved: reads 0 here, writes ignored.
    RSVDP  = "RsvdP"
    #: Reserved and zero: reads 0, writes ignored.
    RSVDZ  = "RsvdZ"

    @property
    def stored(self):
        """Whether a field of this kind needs storage."""
        return self in (Access.RW, Access.RW1C)


class ResetScope(enum.Enum):
    """Which resets return a stored field to its reset value (PCI Express Base §6.6).

    A conventional reset returns every field to its reset value. The function-level resets (an
    FLR, a D3hot to D0 transition with No_Soft_Reset 0, and for a VF, VF Enable clearing) return
    the ``FUNCTION`` fields only. ``docs/resets.md`` lists every field with its scope.
    """
    #: Function state: every reset of the function.
    FUNCTION = "function"
    #: A setting of the Link rather than of the Function (§6.6.2: an FLR must not modify
    #: "Function-specific register settings that control Link operation", e.g. Max_Payload_Size
    #: and ASPM Control): only a conventional reset returns it to its reset value.
    LINK     = "link"


@dataclass(frozen=True)
class Field:
    """A field of a register.

    Parameters
    ----------
    name : str
        Spec name in snake_case.
    lsb : int
        Bit position of its least significant bit within the register.
    width : int
        Width in bits.
    access : Access
        Access kind.
    reset : int
        Reset value (for RO/HwInit fields, their constant value).
    custom : bool
        The owner of the bank applies writes to this field itself.
    desc : str
        One line for the register map.
    per_vf : bool
        In a VF's structure: the field is state of each VF, held in the VF state memory (the
        endpoint packs every such field of the VF chain into one memory entry per VF) rather
        than in the bank.
    values : tuple or None
        The values a write may set; a write of any other value leaves the field unchanged
        (e.g. PowerState, which ignores unsupported states).
    scope : ResetScope
        Which resets return the field to its reset value (stored fields only).
    """
    name:   str
    lsb:    int
    width:  int
    access: Access
    reset:  int = 0
    custom: bool = False
    desc:   str = ""
    per_vf: bool = False
    values: tuple | None = None
    scope:  ResetScope = ResetScope.FUNCTION

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """A register of 8, 16 or 32 bits at a byte offset within its structure.

    Bits not covered by a field are reserved (RsvdP): they read 0 and ignore writes.
    """
    name:   str
    offset: int
    width:  int
    fields: tuple = ()
    desc:   str = ""

    def __post_init__(self):
        if self.width not in (8, 16, 32):
            raise ValueError(f"register {self.name}: width must be 8, 16 or 32")
        if self.offset % (self.width // 8):
            raise ValueError(f"register {self.name}: offset {self.offset:#x} is not aligned to "
                             f"its width")
        taken = 0
        for f in self.fields:
            if f.lsb < 0 or f.lsb + f.width > self.width:
                raise ValueError(f"register {self.name}: field {f.name} exceeds the register")
            if taken & f.mask:
                raise ValueError(f"register {self.name}: field {f.name} overlaps another field")
            if not 0 <= f.reset < (1 << f.width):
                raise ValueError(f"register {self.name}: field {f.name} reset value does not "
                                 f"fit")
            taken |= f.mask

    @property
    def dword(self):
        return self.offset // 4

    @property
    def shift(self):
        """Bit position of the register within its dword."""
        return (self.offset % 4) * 8

    @property
    def reset(self):
        return sum(f.reset << f.lsb for f in self.fields)

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name}")


@dataclass
class RegisterMap:
    """The registers of one configuration-space structure, ``size`` bytes long."""
    name:      str
    size:      int
    registers: list = field(default_factory=list)

    def __post_init__(self):
        if self.size % 4:
            raise ValueError(f"{self.name}: size must be a whole number of dwords")
        seen = {}
        for reg in self.registers:
            if reg.offset + reg.width // 8 > self.size:
                raise ValueError(f"{self.name}: register {reg.name} lies outside the structure")
            for byte in range(reg.offset, reg.offset + reg.width // 8):
                if byte in seen:
                    raise ValueError(f"{self.name}: register {reg.name} overlaps {seen[byte]}")
                seen[byte] = reg.name
            if reg.name in {r.name for r in self.registers if r is not reg}:
                raise ValueError(f"{self.name}: register name {reg.name} is used twice")

    @property
    def dwords(self):
        return self.size // 4

    def register(self, name):
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"{self.name} has no register {name}")

    def in_dword(self, dword):
        return [reg for reg in self.registers if reg.dword == dword]

    def _fold(self, dword, pick):
        value = 0
        for reg in self.in_dword(dword):
            for f in reg.fields:
                value |= pick(f) << (reg.shift + f.lsb)
        return value

    def reset_value(self, dword):
        """Value of ``dword`` after reset."""
        return self._fold(dword, lambda f: f.reset)

    def write_mask(self, dword):
        """Bits of ``dword`` that are read-write (as the description declares them)."""
        return self._fold(dword, lambda f: (1 << f.width) - 1 if f.access is Access.RW else 0)

    def rw1c_mask(self, dword):
        """Bits of ``dword`` that are write-1-to-clear."""
        return self._fold(dword, lambda f: (1 << f.width) - 1 if f.access is Access.RW1C else 0)

    def rows(self, base=0):
        """Yield ``(offset, width, register, field)`` for every field and reserved gap.

        ``field`` is ``None`` for a register without fields. Gaps are reported as RsvdP fields
        named ``reserved``.
        """
        for reg in sorted(self.registers, key=lambda r: r.offset):
            if not reg.fields:
                yield base + reg.offset, reg.width, reg, None
                continue
            bit = 0
            for f in sorted(reg.fields, key=lambda f: f.lsb):
                if f.lsb > bit:
                    yield (base + reg.offset, reg.width, reg,
                           Field("reserved", bit, f.lsb - bit, Access.RSVDP))
                yield base + reg.offset, reg.width, reg, f
                bit = f.lsb + f.width
            if bit < reg.width:
                yield (base + reg.offset, reg.width, reg,
                       Field("reserved", bit, reg.width - bit, Access.RSVDP))


class RegisterBank:
    """Hardware for a :class:`RegisterMap`: storage, a read multiplexer and a write port.

    Create it inside ``elaborate``, then call :meth:`read` and :meth:`write` once each. Fields are
    named ``"register.field"``.

    * Stored fields (RW, RW1C) get a :class:`Signal` with the field's reset value, reachable as
      ``bank["reg.field"]``.
    * Read-only fields read their constant unless the owner gives a live value with
      :meth:`drive` (e.g. First VF Offset, which follows ARI Capable Hierarchy).
    * Writes are applied per byte: only bits in enabled bytes change.
    """

    def __init__(self, regmap, *, name=None, external=()):
        self.regmap   = regmap
        self._name    = name or regmap.name
        self._storage = {}
        self._live    = {}
        self._writes  = {}
        # Per-VF fields are held by the owner (in the VF state memory) like external ones.
        self._external = set(external) | {f"{reg.name}.{f.name}" for reg in regmap.registers
                                          for f in reg.fields if f.per_vf and f.access.stored}
        for path in self._external:
            reg, f = self._field(path)
            if not (f.access.stored and (f.custom or f.per_vf)):
                raise ValueError(f"{path}: only custom RW/RW1C fields can be held externally")
        for reg in regmap.registers:
            for f in reg.fields:
                path = f"{reg.name}.{f.name}"
                if f.access.stored and path not in self._external:
                    self._storage[path] = Signal(
                        f.width, init=f.reset, name=f"{self._name}_{reg.name}_{f.name}")

    def __getitem__(self, path):
        return self._storage[path]

    def _field(self, path):
        reg_name, field_name = path.split(".")
        reg = self.regmap.register(reg_name)
        return reg, reg.field(field_name)

    def drive(self, path, value):
        """Make field ``path`` read ``value`` (a :class:`Value`).

        For a read-only field this replaces its constant (e.g. First VF Offset, which follows ARI
        Capable Hierarchy). For an ``external`` field it is the current value held by the owner
        (e.g. in a memory); call it before :meth:`write`, whose merge starts from it.
        """
        reg, f = self._field(path)
        if f.access.stored and path not in self._external:
            raise ValueError(f"{path} is stored in the bank; drive() is for read-only and "
                             f"external fields")
        self._live[path] = Value.cast(value)

    def _value(self, reg, f):
        path = f"{reg.name}.{f.name}"
        if path in self._storage:
            return self._storage[path]
        if path in self._live:
            return self._live[path][:f.width]
        if f.access in (Access.RSVDP, Access.RSVDZ):
            return Const(0, f.width)
        return Const(f.reset, f.width)

    def read_dword(self, dword):
        """The value software reads from ``dword`` (combinational)."""
        parts, bit = [], 0
        placed = sorted(((reg.shift + f.lsb, reg, f)
                         for reg in self.regmap.in_dword(dword) for f in reg.fields),
                        key=lambda t: t[0])
        for pos, reg, f in placed:
            if pos > bit:
                parts.append(Const(0, pos - bit))
            parts.append(self._value(reg, f))
            bit = pos + f.width
        if bit < 32:
            parts.append(Const(0, 32 - bit))
        return Cat(*parts)

    def read(self, m, addr, data):
        """Drive ``data`` with the dword at index ``addr`` (combinational); 0 elsewhere."""
        with m.Switch(addr):
            for dword in range(self.regmap.dwords):
                if self.regmap.in_dword(dword):
                    with m.Case(dword):
                        m.d.comb += data.eq(self.read_dword(dword))
            with m.Default():
                m.d.comb += data.eq(0)

    def write(self, m, addr, en, be, data):
        """Apply a write of ``data`` to dword ``addr`` with byte enables ``be`` when ``en``.

        RW fields take the written bits of enabled bytes, RW1C fields clear the bits written as 1
        in enabled bytes; read-only and reserved fields ignore the write. Custom fields are left
        to the owner: see :meth:`write_of`.
        """
        for reg in self.regmap.registers:
            for f in reg.fields:
                path = f"{reg.name}.{f.name}"
                if not f.access.stored:
                    continue
                old = self._value(reg, f)
                hit, merged = self._decode_write(m, reg, f, en, addr, be, data, "")
                self._writes[path] = hit, merged
                if not f.custom and path in self._storage:
                    with m.If(hit):
                        m.d.sync += old.eq(merged)

    def _decode_write(self, m, reg, f, en, addr, be, data, suffix):
        """``(strobe, value)`` of a write with strobe ``en`` to field ``f`` of ``reg``: the
        strobe when the write enables any byte of the field (and, for a field with a list of
        values, the merged value is one of them), the value after the byte merge."""
        prefix = f"{self._name}_{reg.name}_{f.name}{suffix}"
        pos  = reg.shift + f.lsb
        mask = Cat(*(be[(pos + i) // 8] for i in range(f.width)))
        new  = data[pos:pos + f.width]
        old  = self._value(reg, f)
        hit  = Signal(name=f"{prefix}_w")
        m.d.comb += hit.eq(en & (addr == reg.dword) &
                           Cat(*(be[b] for b in {(pos + i) // 8
                                                 for i in range(f.width)})).any())
        if f.access is Access.RW:
            merged = (old & ~mask) | (new & mask)
        else:
            merged = old & ~(new & mask)
        if f.values is not None:
            merged_sig = Signal(f.width, name=f"{prefix}_new")
            m.d.comb += merged_sig.eq(merged)
            allowed = Signal(name=f"{prefix}_allowed")
            m.d.comb += allowed.eq(_any_equal(merged_sig, f.values))
            hit_all = Signal(name=f"{prefix}_wv")
            m.d.comb += hit_all.eq(hit & allowed)
            hit, merged = hit_all, merged_sig
        return hit, merged

    def write_ahead(self, m, path, en, addr, be, data):
        """``(strobe, value)`` as :meth:`write_of` gives them, for a write presented with strobe
        ``en`` (a cycle before the bank's own write strobe, say, with ``addr``, ``be`` and
        ``data`` already what they will be): lets a consequence of the write (a reset) be
        registered and land in the cycle of the write itself. Nothing is written."""
        reg, f = self._field(path)
        return self._decode_write(m, reg, f, en, addr, be, data, "_ahead")

    def write_of(self, path):
        """``(strobe, value)`` of a write reaching field ``path``: ``strobe`` is high when a write
        enables any byte of the field, ``value`` is the field after the byte merge."""
        return self._writes[path]

    def set_bits(self, m, path, bits):
        """Set RW1C field ``path`` bits from hardware; a set wins over a clear in the same cycle.

        Call after :meth:`write`.
        """
        reg, f = self._field(path)
        if f.access is not Access.RW1C:
            raise ValueError(f"{path} is not RW1C")
        hit, merged = self._writes[path]
        old = self._storage[path]
        with m.If(bits.any()):
            m.d.sync += old.eq(Mux(hit, merged, old) | bits)

    def reset(self, m, cond):
        """Apply a function-level reset when ``cond``: return every stored field of
        :attr:`ResetScope.FUNCTION` to its reset value; ``LINK`` fields keep theirs (a
        conventional reset, the domain's reset, returns all of them). Call last."""
        with m.If(cond):
            for reg in self.regmap.registers:
                for f in reg.fields:
                    path = f"{reg.name}.{f.name}"
                    if path in self._storage and f.scope is ResetScope.FUNCTION:
                        m.d.sync += self._storage[path].eq(f.reset)



def _any_equal(value, constants):
    result = Const(0, 1)
    for c in constants:
        result = result | (value == c)
    return result


class RegisterPort(wiring.Signature):
    """Dword access port of a configuration-space structure, from the requester's side.

    Members
    -------
    addr : Out(addr_width)
        Dword index within the structure.
    w_en : Out(1)
        Write strobe: ``w_data`` is written to ``addr`` under ``w_be`` at the next clock edge.
    w_be : Out(4)
        Byte enables of the write; bit ``i`` enables bits ``8i+7:8i``.
    w_data : Out(32)
        Write data.
    r_data : In(32)
        The dword at ``addr``, combinational. Reads have no side effects.
    """

    def __init__(self, addr_width):
        self._addr_width = addr_width
        super().__init__({
            "addr":   Out(addr_width),
            "w_en":   Out(1),
            "w_be":   Out(4),
            "w_data": Out(32),
            "r_data": In(32),
        })

    @property
    def addr_width(self):
        return self._addr_width

    def __eq__(self, other):
        return isinstance(other, RegisterPort) and self.addr_width == other.addr_width

    def __repr__(self):
        return f"RegisterPort(addr_width={self.addr_width})"
