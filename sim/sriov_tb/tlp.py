"""Transaction Layer Packets as bytes, header words and stream beats.

Field positions follow PCI Express Base Specification §2.2 (TLP headers):

* DW0 (every TLP): Fmt[2:0] bits 31:29, Type[4:0] 28:24, T9 23, TC[2:0] 22:20, T8 19,
  Attr[2] 18, LN 17, TH 16, TD 15, EP 14, Attr[1:0] 13:12, AT[1:0] 11:10, Length[9:0] 9:0
  (Length 0 encodes 1024 DW). T9/T8 are Tag bits 9 and 8 (10-bit tags).
* Requests, DW1: Requester ID 31:16, Tag[7:0] 15:8, Last DW BE 7:4, First DW BE 3:0.
  Memory/IO/AtomicOp: 32-bit address in DW2 (Address[31:2], PH 1:0), 64-bit address in
  DW2 (Address[63:32]) and DW3 (Address[31:2], PH). Configuration: DW2 Bus 31:24, Device 23:19,
  Function 18:16 (one 8-bit function number with ARI), Ext Register 11:8, Register 7:2.
* Messages (always 4 DW): DW1 Requester ID, Tag, Message Code 7:0; Type[2:0] is the routing
  r[2:0]; DW2/DW3 an address (routing 001b) or, otherwise, the target ID (bytes 8-9, by-ID
  routing), the Vendor ID (bytes 10-11) and a vendor-defined DW3 (Vendor_Defined messages).
* Completions, DW1: Completer ID 31:16, Status 15:13, BCM 12, Byte Count 11:0 (0 encodes 4096);
  DW2: Requester ID 31:16, Tag[7:0] 15:8, Lower Address 6:0.

`hdr128()` puts DW0 in bits 127:96 down to DW3 in bits 31:0 (a 3 DW header leaves DW3 zero);
`beats()` cuts the payload into stream beats with payload DW i in bits 32i+31:32i of a beat and
each DW's bytes in wire order (byte 0 in bits 7:0), one `strb` bit per payload DW.

The encoder refuses values that cannot be encoded (a field too wide, a payload that does not match
Length) with a ValueError naming the field. Values that encode but break a rule of the
specification (byte enables, a config TLP longer than 1 DW, a 64-bit address below 4 GB...) are
encodable on purpose, so a test can send them; `Tlp.violations()` lists them and `Tlp.check()`
raises on the first. The builder helpers (`cfg_read`, `mem_write`, `completion`...) only build
TLPs that pass `check()`.
"""

import enum
import struct
from dataclasses import dataclass, field, fields, replace

__all__ = [
    "TlpType", "Tlp", "CplStatus", "MsgRouting", "rid", "rid_fields",
    "cfg_read", "cfg_write", "mem_read", "mem_write", "io_read", "io_write", "message",
    "completion", "atomic", "read_byte_count", "read_lower_address",
]


class CplStatus(enum.IntEnum):
    SC = 0b000    # Successful Completion
    UR = 0b001    # Unsupported Request
    CRS = 0b010   # Configuration Request Retry Status (RRS in PCIe 6)
    CA = 0b100    # Completer Abort


RRS = CplStatus.CRS


class MsgRouting(enum.IntEnum):
    """Message routing subfield r[2:0] (the low 3 bits of Type), §2.2.8."""
    TO_RC = 0b000
    BY_ADDRESS = 0b001
    BY_ID = 0b010
    BROADCAST = 0b011
    LOCAL = 0b100
    GATHERED = 0b101


class TlpType(enum.Enum):
    """(Fmt, Type) of each TLP kind; messages carry routing 000b in the Type here."""
    MRD32 = (0b000, 0b00000)
    MRD64 = (0b001, 0b00000)
    MRDLK32 = (0b000, 0b00001)
    MRDLK64 = (0b001, 0b00001)
    MWR32 = (0b010, 0b00000)
    MWR64 = (0b011, 0b00000)
    IORD = (0b000, 0b00010)
    IOWR = (0b010, 0b00010)
    CFGRD0 = (0b000, 0b00100)
    CFGWR0 = (0b010, 0b00100)
    CFGRD1 = (0b000, 0b00101)
    CFGWR1 = (0b010, 0b00101)
    MSG = (0b001, 0b10000)
    MSGD = (0b011, 0b10000)
    CPL = (0b000, 0b01010)
    CPLD = (0b010, 0b01010)
    CPLLK = (0b000, 0b01011)
    CPLDLK = (0b010, 0b01011)
    FETCHADD32 = (0b010, 0b01100)
    FETCHADD64 = (0b011, 0b01100)
    SWAP32 = (0b010, 0b01101)
    SWAP64 = (0b011, 0b01101)
    CAS32 = (0b010, 0b01110)
    CAS64 = (0b011, 0b01110)

    @property
    def fmt(self):
        return self.value[0]

    @property
    def type_field(self):
        return self.value[1]

    @property
    def has_data(self):
        return bool(self.fmt & 0b010)

    @property
    def four_dw(self):
        return bool(self.fmt & 0b001)

    @property
    def header_dw(self):
        return 4 if self.four_dw else 3

    @property
    def is_config(self):
        return self in _CONFIG

    @property
    def is_memory(self):
        return self in _MEMORY

    @property
    def is_io(self):
        return self in (TlpType.IORD, TlpType.IOWR)

    @property
    def is_message(self):
        return self in (TlpType.MSG, TlpType.MSGD)

    @property
    def is_completion(self):
        return self in _COMPLETION

    @property
    def is_atomic(self):
        return self in _ATOMIC

    @property
    def is_request(self):
        return not self.is_completion

    @property
    def is_posted(self):
        return self in (TlpType.MWR32, TlpType.MWR64, TlpType.MSG, TlpType.MSGD)

    @property
    def is_read(self):
        """Non-posted requests whose successful completion carries data."""
        return self in (TlpType.MRD32, TlpType.MRD64, TlpType.MRDLK32, TlpType.MRDLK64,
                        TlpType.IORD, TlpType.CFGRD0, TlpType.CFGRD1) or self.is_atomic

    @property
    def has_address(self):
        return self.is_memory or self.is_io or self.is_atomic

    @classmethod
    def decode(cls, fmt, type_field):
        if type_field >> 3 == 0b10 and fmt in (0b001, 0b011):
            return cls.MSG if fmt == 0b001 else cls.MSGD
        try:
            return cls((fmt, type_field))
        except ValueError:
            raise ValueError(f"fmt/type: Fmt {fmt:03b} Type {type_field:05b} is not a TLP type "
                             f"this codec knows (PCIe Base §2.2.1, TLP prefixes and the "
                             f"deprecated TCfgRd/TCfgWr are not supported)") from None


_CONFIG = frozenset({TlpType.CFGRD0, TlpType.CFGWR0, TlpType.CFGRD1, TlpType.CFGWR1})
_MEMORY = frozenset({TlpType.MRD32, TlpType.MRD64, TlpType.MRDLK32, TlpType.MRDLK64,
                     TlpType.MWR32, TlpType.MWR64})
_COMPLETION = frozenset({TlpType.CPL, TlpType.CPLD, TlpType.CPLLK, TlpType.CPLDLK})
_ATOMIC = frozenset({TlpType.FETCHADD32, TlpType.FETCHADD64, TlpType.SWAP32, TlpType.SWAP64,
                     TlpType.CAS32, TlpType.CAS64})
# Types without a payload whose Length field is Reserved: `length` holds the raw field.
_NO_LENGTH = frozenset({TlpType.CPL, TlpType.CPLLK, TlpType.MSG})
# Types whose header DW1 is Requester ID / Tag / byte enables.
_BE_REQUESTS = _CONFIG | _MEMORY | _ATOMIC | {TlpType.IORD, TlpType.IOWR}


def rid(bus, dev=0, fn=0):
    """Routing ID from bus/device/function (with ARI pass dev=0 and fn=0..255)."""
    if not 0 <= bus < 256:
        raise ValueError(f"bus: {bus} does not fit 8 bits")
    if not 0 <= dev < 32:
        raise ValueError(f"dev: {dev} does not fit 5 bits")
    if not 0 <= fn < (256 if dev == 0 else 8):
        raise ValueError(f"fn: {fn} does not fit the function number")
    return bus << 8 | dev << 3 | fn


def rid_fields(value):
    """(bus, device, function) of a Routing ID."""
    return value >> 8, (value >> 3) & 0x1F, value & 0x7


def rid_str(value):
    bus, dev, fn = rid_fields(value)
    return f"{bus:02x}:{dev:02x}.{fn}"


# Field widths checked by the encoder: name -> bits.
_WIDTHS = {
    "requester_id": 16, "tag": 10, "first_be": 4, "last_be": 4, "target_id": 16,
    "register": 10, "completer_id": 16, "status": 3, "bcm": 1, "lower_address": 7,
    "message_code": 8, "routing": 3, "tc": 3, "attr": 3, "td": 1, "ep": 1, "at": 2, "th": 1,
    "ln": 1, "ph": 2, "vendor_id": 16, "vendor_data": 32, "address": 64,
}


@dataclass
class Tlp:
    """One TLP. `length` is in DW, 1..1024 (0 given is taken as 1024, as in the header).

    Cpl, CplLk and Msg have no payload and a Reserved Length field: for them `length` is the
    raw field value, 0 by default.
    """
    type: TlpType
    requester_id: int = 0
    tag: int = 0
    length: int | None = None
    first_be: int = 0
    last_be: int = 0
    address: int = 0
    target_id: int = 0
    register: int = 0
    completer_id: int = 0
    status: int = 0
    bcm: int = 0
    byte_count: int = 4
    lower_address: int = 0
    message_code: int = 0
    routing: int = 0
    tc: int = 0
    attr: int = 0
    td: int = 0
    ep: int = 0
    at: int = 0
    th: int = 0
    ln: int = 0
    ph: int = 0
    vendor_id: int = 0
    vendor_data: int = 0
    data: bytes = field(default=b"")

    def __post_init__(self):
        if not isinstance(self.type, TlpType):
            raise ValueError(f"type: {self.type!r} is not a TlpType")
        self.data = bytes(self.data)
        if self.length is None:
            if self.type in _NO_LENGTH:
                self.length = 0
            elif self.type.has_data:
                if not self.data:
                    raise ValueError(f"data: a {self.type.name} carries a payload; give data "
                                     f"or length")
                self.length = -(-len(self.data) // 4)
            else:
                self.length = 1
        if self.length == 0 and self.type not in _NO_LENGTH:
            self.length = 1024
        self._check_fields()

    # -- encoding ------------------------------------------------------------------------------

    def _check_fields(self):
        for name, bits in _WIDTHS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < (1 << bits):
                raise ValueError(f"{name}: {value!r} does not fit its {bits}-bit field")
        if self.type in _NO_LENGTH:
            if not isinstance(self.length, int) or not 0 <= self.length < 1024:
                raise ValueError(f"length: {self.length!r} does not fit the 10-bit field")
        elif not isinstance(self.length, int) or not 1 <= self.length <= 1024:
            raise ValueError(f"length: {self.length!r} DW is outside 1..1024 (0 encodes 1024)")
        if not isinstance(self.byte_count, int) or not 0 <= self.byte_count <= 4096:
            raise ValueError(f"byte_count: {self.byte_count!r} is outside 0..4096 "
                             f"(4096 encodes as 0)")
        t = self.type
        if t.has_data:
            if len(self.data) != 4 * self.length:
                raise ValueError(f"data: {len(self.data)} bytes for Length {self.length} DW "
                                 f"(a {t.name} payload is exactly Length x 4 bytes)")
        elif self.data:
            raise ValueError(f"data: a {t.name} carries no payload")
        if t.has_address and not t.four_dw and self.address >> 32:
            raise ValueError(f"address: {self.address:#x} needs a 4 DW header, not {t.name}")
        if t.has_address and self.address & 3:
            raise ValueError(f"address: {self.address:#x} has bits 1:0 set; the header carries "
                             f"Address[63:2] (use first_be for the byte offset)")
        if t.is_io and self.address >> 32:
            raise ValueError(f"address: {self.address:#x}: IO addresses are 32 bits")
        if not t.is_message and self.routing:
            raise ValueError(f"routing: only messages have a routing subfield ({t.name})")

    def header_dwords(self):
        self._check_fields()
        t = self.type
        type_field = t.type_field | (self.routing if t.is_message else 0)
        dw0 = (t.fmt << 29 | type_field << 24 | (self.tag >> 9 & 1) << 23 | self.tc << 20
               | (self.tag >> 8 & 1) << 19 | (self.attr >> 2) << 18 | self.ln << 17
               | self.th << 16 | self.td << 15 | self.ep << 14 | (self.attr & 3) << 12
               | self.at << 10 | (self.length & 0x3FF))
        if t.is_completion:
            dw1 = (self.completer_id << 16 | self.status << 13 | self.bcm << 12
                   | (self.byte_count & 0xFFF))
            dw2 = self.requester_id << 16 | (self.tag & 0xFF) << 8 | self.lower_address
            return [dw0, dw1, dw2]
        if t.is_message:
            dw1 = self.requester_id << 16 | (self.tag & 0xFF) << 8 | self.message_code
            if self.routing == MsgRouting.BY_ADDRESS:
                return [dw0, dw1, self.address >> 32, self.address & 0xFFFFFFFF]
            return [dw0, dw1, self.target_id << 16 | self.vendor_id, self.vendor_data]
        dw1 = self.requester_id << 16 | (self.tag & 0xFF) << 8 | self.last_be << 4 | self.first_be
        if t.is_config:
            return [dw0, dw1, self.target_id << 16 | self.register << 2]
        if t.four_dw:
            return [dw0, dw1, self.address >> 32, (self.address & 0xFFFFFFFC) | self.ph]
        return [dw0, dw1, self.address | self.ph]

    def header_bytes(self):
        return b"".join(struct.pack(">I", dw) for dw in self.header_dwords())

    def to_bytes(self):
        """The TLP as on the wire: header DWs big-endian, then the payload bytes in order."""
        return self.header_bytes() + (self.data if self.type.has_data else b"")

    def hdr128(self):
        value = 0
        for i, dw in enumerate(self.header_dwords()):
            value |= dw << (96 - 32 * i)
        return value

    def beats(self, data_width):
        """Stream beats (dicts with hdr, data, strb, sop, eop) for a payload `data_width` wide."""
        _check_width(data_width)
        per_beat = data_width // 8
        payload = self.data if self.type.has_data else b""
        chunks = [payload[i:i + per_beat] for i in range(0, len(payload), per_beat)] or [b""]
        hdr = self.hdr128()
        out = []
        for i, chunk in enumerate(chunks):
            out.append({
                "hdr": hdr if i == 0 else 0,
                "data": int.from_bytes(chunk, "little"),
                "strb": (1 << (len(chunk) // 4)) - 1,
                "sop": int(i == 0),
                "eop": int(i == len(chunks) - 1),
            })
        return out

    # -- decoding ------------------------------------------------------------------------------

    @classmethod
    def from_dwords(cls, dws, data=b""):
        if len(dws) < 3:
            raise ValueError(f"header: {len(dws)} DW is shorter than any TLP header (3 DW)")
        dw0 = dws[0]
        t = TlpType.decode(dw0 >> 29, dw0 >> 24 & 0x1F)
        if len(dws) < t.header_dw:
            raise ValueError(f"header: a {t.name} header is {t.header_dw} DW, got {len(dws)}")
        length = dw0 & 0x3FF
        if t not in _NO_LENGTH:
            length = length or 1024
        tag_hi = (dw0 >> 23 & 1) << 9 | (dw0 >> 19 & 1) << 8
        kw = dict(
            type=t, length=length, tc=dw0 >> 20 & 7, attr=(dw0 >> 18 & 1) << 2 | (dw0 >> 12 & 3),
            ln=dw0 >> 17 & 1, th=dw0 >> 16 & 1, td=dw0 >> 15 & 1, ep=dw0 >> 14 & 1,
            at=dw0 >> 10 & 3,
        )
        dw1, dw2 = dws[1], dws[2]
        dw3 = dws[3] if t.four_dw else 0
        if t.is_completion:
            kw.update(completer_id=dw1 >> 16, status=dw1 >> 13 & 7, bcm=dw1 >> 12 & 1,
                      byte_count=dw1 & 0xFFF or 4096, requester_id=dw2 >> 16,
                      tag=tag_hi | (dw2 >> 8 & 0xFF), lower_address=dw2 & 0x7F)
        elif t.is_message:
            kw.update(routing=dw0 >> 24 & 7, requester_id=dw1 >> 16,
                      tag=tag_hi | (dw1 >> 8 & 0xFF), message_code=dw1 & 0xFF)
            if kw["routing"] == MsgRouting.BY_ADDRESS:
                kw.update(address=dw2 << 32 | dw3)
            else:
                kw.update(target_id=dw2 >> 16, vendor_id=dw2 & 0xFFFF, vendor_data=dw3)
        else:
            kw.update(requester_id=dw1 >> 16, tag=tag_hi | (dw1 >> 8 & 0xFF),
                      last_be=dw1 >> 4 & 0xF, first_be=dw1 & 0xF)
            if t.is_config:
                kw.update(target_id=dw2 >> 16, register=dw2 >> 2 & 0x3FF)
            elif t.four_dw:
                kw.update(address=dw2 << 32 | (dw3 & 0xFFFFFFFC), ph=dw3 & 3)
            else:
                kw.update(address=dw2 & 0xFFFFFFFC, ph=dw2 & 3)
        if t.has_data:
            if len(data) != 4 * length:
                raise ValueError(f"data: {len(data)} payload bytes for Length {length} DW")
            kw["data"] = bytes(data)
        elif data:
            raise ValueError(f"data: {len(data)} payload bytes after a {t.name} (no payload)")
        return cls(**kw)

    @classmethod
    def from_bytes(cls, raw):
        raw = bytes(raw)
        if len(raw) < 12:
            raise ValueError(f"header: {len(raw)} bytes is shorter than any TLP header (12)")
        dw0 = struct.unpack(">I", raw[:4])[0]
        t = TlpType.decode(dw0 >> 29, dw0 >> 24 & 0x1F)
        n = 4 * t.header_dw
        if len(raw) < n:
            raise ValueError(f"header: a {t.name} header is {n} bytes, got {len(raw)}")
        dws = list(struct.unpack(f">{t.header_dw}I", raw[:n]))
        return cls.from_dwords(dws, raw[n:])

    @classmethod
    def from_hdr128(cls, hdr, data=b""):
        if not 0 <= hdr < 1 << 128:
            raise ValueError("hdr: does not fit 128 bits")
        dws = [hdr >> (96 - 32 * i) & 0xFFFFFFFF for i in range(4)]
        return cls.from_dwords(dws, data)

    @classmethod
    def from_beats(cls, beats):
        """One TLP from its beats (dicts or objects with hdr, data, strb, sop, eop)."""
        beats = [b if isinstance(b, dict) else vars(b) for b in beats]
        if not beats:
            raise ValueError("beats: no beats")
        if not beats[0]["sop"]:
            raise ValueError("sop: the first beat of a TLP must have sop set")
        for i, b in enumerate(beats[1:], 1):
            if b["sop"]:
                raise ValueError(f"sop: beat {i} has sop set inside a TLP")
        for i, b in enumerate(beats[:-1]):
            if b["eop"]:
                raise ValueError(f"eop: beat {i} has eop set before the last beat")
        if not beats[-1]["eop"]:
            raise ValueError("eop: the last beat of a TLP must have eop set")
        payload = bytearray()
        for i, b in enumerate(beats):
            strb = b["strb"]
            if strb & (strb + 1):
                raise ValueError(f"strb: beat {i} strobe {strb:#x} is not a run from DW 0")
            n = bin(strb).count("1")
            payload += (b["data"] & ((1 << (32 * n)) - 1)).to_bytes(4 * n, "little")
        return cls.from_hdr128(beats[0]["hdr"], bytes(payload))

    # -- rules of the specification ------------------------------------------------------------

    @property
    def byte_length(self):
        return 4 * self.length

    def violations(self):
        """Rules of PCIe Base §2.2 this (encodable) TLP breaks, as readable strings."""
        out = []
        t = self.type
        if t in _BE_REQUESTS and not t.is_atomic:
            out += _be_violations(self)
        if t.is_config or t.is_io:
            if self.length != 1:
                out.append(f"length: a {t.name} must have Length 1 (§2.2.7), not {self.length}")
            if self.last_be:
                out.append(f"last_be: a {t.name} must have Last DW BE 0000b (§2.2.7)")
            if self.tc:
                out.append(f"tc: a {t.name} must use TC0 (§2.2.7)")
            if self.attr:
                out.append(f"attr: a {t.name} must have Attr 0 (§2.2.7)")
        if t.is_config and self.th:
            out.append(f"th: a {t.name} must have TH 0")
        if t.has_address and t.four_dw and self.address >> 32 == 0:
            out.append(f"address: {t.name} with an address below 4 GB must use the 32-bit "
                       f"format (§2.2.4.1)")
        if t.is_memory and (self.address & 0xFFF) + self.byte_length > 4096:
            out.append(f"address: a {t.name} of {self.length} DW at {self.address:#x} crosses "
                       f"a 4 KB boundary (§2.2.7)")
        if t.is_atomic:
            allowed = (2, 4, 8) if t in (TlpType.CAS32, TlpType.CAS64) else (1, 2)
            if self.length not in allowed:
                out.append(f"length: a {t.name} has Length {allowed} DW, not {self.length}")
            else:
                operand = 4 * self.length // (2 if t in (TlpType.CAS32, TlpType.CAS64) else 1)
                if self.address % operand:
                    out.append(f"address: {self.address:#x} not aligned to the {operand}-byte "
                               f"operand (§6.15)")
        if t in _NO_LENGTH and self.length:
            out.append(f"length: Length is Reserved (0) in a {t.name} (§2.2.1)")
        if t.is_completion and self.status not in (0, 1, 2, 4):
            out.append(f"status: {self.status:03b} is a reserved Completion Status (§2.2.9)")
        return out

    def check(self):
        problems = self.violations()
        if problems:
            raise ValueError(problems[0])
        return self

    # -- readable form -------------------------------------------------------------------------

    def __str__(self):
        t = self.type
        tag = f" tag {self.tag:#x}"
        extra = ""
        if self.ep:
            extra += " EP"
        if t.is_completion:
            s = (f"{t.name} from {rid_str(self.completer_id)} to {rid_str(self.requester_id)}"
                 f"{tag} status {_status_name(self.status)} bc {self.byte_count} "
                 f"la {self.lower_address:#x}")
        elif t.is_config:
            s = (f"{t.name} {rid_str(self.requester_id)}{tag} -> {rid_str(self.target_id)} "
                 f"reg {self.register * 4:#05x} be {self.first_be:x}")
        elif t.is_message:
            s = (f"{t.name} {rid_str(self.requester_id)} code {self.message_code:#04x} "
                 f"routing {self.routing:03b}")
        else:
            s = (f"{t.name} {rid_str(self.requester_id)}{tag} addr {self.address:#x} "
                 f"len {self.length} be {self.last_be:x}/{self.first_be:x}")
        if t.has_data:
            s += " data " + self.data.hex()
        return s + extra

    def replace(self, **changes):
        return replace(self, **changes)

    def fields_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _status_name(value):
    try:
        return CplStatus(value).name
    except ValueError:
        return f"{value:03b}"


def _check_width(data_width):
    if data_width not in (64, 128, 256, 512):
        raise ValueError(f"data_width: {data_width} is not 64, 128, 256 or 512")


def _contiguous(mask):
    """True if the set bits of `mask` form one run (0 counts as contiguous)."""
    if mask == 0:
        return True
    low = mask & -mask
    return (mask + low) & mask == 0


def _be_violations(t):
    out = []
    if t.length == 1:
        if t.last_be:
            out.append(f"last_be: Length 1 requires Last DW BE 0000b (§2.2.5), "
                       f"not {t.last_be:04b}")
        return out
    if t.first_be == 0:
        out.append("first_be: must not be 0000b when Length > 1 (§2.2.5)")
    if t.last_be == 0:
        out.append("last_be: must not be 0000b when Length > 1 (§2.2.5)")
    qw_pair = t.length == 2 and t.address & 7 == 0 and t.type.is_memory
    if not qw_pair:
        # All enabled bytes contiguous: First DW BE runs up to byte 3, Last DW BE from byte 0.
        if t.first_be and not (_contiguous(t.first_be) and t.first_be & 0b1000):
            out.append(f"first_be: {t.first_be:04b} is not contiguous up to byte 3 (§2.2.5)")
        if t.last_be and not (_contiguous(t.last_be) and t.last_be & 0b0001):
            out.append(f"last_be: {t.last_be:04b} is not contiguous from byte 0 (§2.2.5)")
    return out


# -- byte count and lower address (§2.3.1.1) -----------------------------------------------------

def _first_offset(first_be):
    """Offset of the first enabled byte in the first DW (0 for 0000b)."""
    for i in range(4):
        if first_be >> i & 1:
            return i
    return 0


def read_byte_count(length, first_be, last_be):
    """Byte Count of the first (or only) completion of a memory read, §2.3.1.1."""
    if length == 1:
        if first_be == 0:
            return 1
        hi = max(i for i in range(4) if first_be >> i & 1)
        return hi - _first_offset(first_be) + 1
    last_hi = max((i for i in range(4) if last_be >> i & 1), default=3)
    return 4 * length - _first_offset(first_be) - (3 - last_hi)


def read_lower_address(address, first_be):
    """Lower Address of the first completion of a memory read, §2.2.9."""
    return (address & 0x7C) | _first_offset(first_be)


# -- builders ------------------------------------------------------------------------------------

def _be_for(address, nbytes):
    """Length (DW), First DW BE and Last DW BE for `nbytes` bytes at byte `address`."""
    if nbytes < 0:
        raise ValueError(f"nbytes: {nbytes} is negative")
    if nbytes == 0:
        return 1, 0, 0
    start = address & 3
    end = start + nbytes
    length = -(-end // 4)
    if length == 1:
        return 1, ((1 << nbytes) - 1) << start, 0
    first = (0xF << start) & 0xF
    last_bytes = end - 4 * (length - 1)
    return length, first, (1 << last_bytes) - 1


def _data_bytes(data, width=4):
    if isinstance(data, int):
        if not 0 <= data < 1 << (8 * width):
            raise ValueError(f"data: {data:#x} does not fit {width} bytes")
        return data.to_bytes(width, "little")
    return bytes(data)


def cfg_read(requester_id, tag, target_id, register, *, first_be=0xF, type1=False, **kw):
    """CfgRd0/CfgRd1 of the DW `register` (0..1023) of function `target_id`."""
    t = TlpType.CFGRD1 if type1 else TlpType.CFGRD0
    return Tlp(t, requester_id=requester_id, tag=tag, target_id=target_id, register=register,
               first_be=first_be, length=1, **kw).check()


def cfg_write(requester_id, tag, target_id, register, data, *, first_be=0xF, type1=False, **kw):
    """CfgWr0/CfgWr1; `data` an int (the DW value, byte 0 its low byte) or 4 bytes."""
    t = TlpType.CFGWR1 if type1 else TlpType.CFGWR0
    return Tlp(t, requester_id=requester_id, tag=tag, target_id=target_id, register=register,
               first_be=first_be, length=1, data=_data_bytes(data), **kw).check()


def _mem_type(address, force64, t32, t64):
    if address >> 64:
        raise ValueError(f"address: {address:#x} does not fit 64 bits")
    return t64 if force64 or address >> 32 else t32


def mem_read(requester_id, tag, address, nbytes, *, force64=False, locked=False, **kw):
    """MRd (MRdLk) of `nbytes` bytes at byte `address`; 64-bit format only above 4 GB."""
    length, first, last = _be_for(address, nbytes)
    t = _mem_type(address, force64, TlpType.MRDLK32 if locked else TlpType.MRD32,
                  TlpType.MRDLK64 if locked else TlpType.MRD64)
    tlp = Tlp(t, requester_id=requester_id, tag=tag, address=address & ~3, length=length,
              first_be=first, last_be=last, **kw)
    return tlp if force64 else tlp.check()


def mem_write(requester_id, tag, address, data, *, force64=False, **kw):
    """MWr of the bytes `data` at byte `address`, padded to whole DWs with byte enables."""
    data = bytes(data)
    length, first, last = _be_for(address, len(data))
    start = address & 3
    payload = bytes(start) + data + bytes(4 * length - start - len(data))
    t = _mem_type(address, force64, TlpType.MWR32, TlpType.MWR64)
    tlp = Tlp(t, requester_id=requester_id, tag=tag, address=address & ~3, length=length,
              first_be=first, last_be=last, data=payload, **kw)
    return tlp if force64 else tlp.check()


def io_read(requester_id, tag, address, *, first_be=0xF, **kw):
    return Tlp(TlpType.IORD, requester_id=requester_id, tag=tag, address=address, length=1,
               first_be=first_be, **kw).check()


def io_write(requester_id, tag, address, data, *, first_be=0xF, **kw):
    return Tlp(TlpType.IOWR, requester_id=requester_id, tag=tag, address=address, length=1,
               first_be=first_be, data=_data_bytes(data), **kw).check()


def atomic(kind, requester_id, tag, address, operands, **kw):
    """AtomicOp request: kind 'fetchadd', 'swap' or 'cas'; operands the payload bytes."""
    names = {"fetchadd": ("FETCHADD32", "FETCHADD64"), "swap": ("SWAP32", "SWAP64"),
             "cas": ("CAS32", "CAS64")}
    if kind not in names:
        raise ValueError(f"kind: {kind!r} is not fetchadd, swap or cas")
    t32, t64 = (TlpType[n] for n in names[kind])
    t = t64 if address >> 32 else t32
    return Tlp(t, requester_id=requester_id, tag=tag, address=address, data=bytes(operands),
               **kw).check()


def message(requester_id, code, routing, *, data=None, tag=0, target_id=0, address=0,
            vendor_id=0, vendor_data=0, **kw):
    t = TlpType.MSGD if data else TlpType.MSG
    return Tlp(t, requester_id=requester_id, tag=tag, message_code=code, routing=routing,
               target_id=target_id, address=address, vendor_id=vendor_id,
               vendor_data=vendor_data, data=data or b"", **kw).check()


def completion(request, completer_id, status=CplStatus.SC, data=None, *, byte_count=None,
               lower_address=None, **kw):
    """The completion of a non-posted `request`.

    With status SC and a read, `data` is the bytes returned (for a memory read, starting at
    the first enabled byte; for config/IO reads a DW as int or 4 bytes). Byte Count and Lower
    Address follow §2.2.9/§2.3.1.1 unless given: memory reads their computed values, AtomicOps
    the operand size and 0, every other request 4 and 0.
    """
    t = request.type
    if not t.is_request or t.is_posted:
        raise ValueError(f"request: a {t.name} gets no completion")
    locked = t in (TlpType.MRDLK32, TlpType.MRDLK64)
    if t.is_memory:
        bc = read_byte_count(request.length, request.first_be, request.last_be)
        la = read_lower_address(request.address, request.first_be)
    elif t.is_atomic:
        bc = request.byte_length // (2 if t in (TlpType.CAS32, TlpType.CAS64) else 1)
        la = 0
    else:
        bc, la = 4, 0
    if byte_count is not None:
        bc = byte_count
    if lower_address is not None:
        la = lower_address
    payload = b""
    if status == CplStatus.SC and t.is_read:
        if data is None:
            raise ValueError(f"data: a successful completion of {t.name} carries data")
        if t.is_memory:
            raw = bytes(data)
            start = la & 3
            n = -(-(start + len(raw)) // 4)
            payload = bytes(start) + raw + bytes(4 * n - start - len(raw))
        else:
            payload = _data_bytes(data, bc)
            payload += bytes(-len(payload) % 4)
    elif data:
        raise ValueError(f"data: a completion with status {_status_name(status)} of "
                         f"{t.name} carries no data")
    if payload:
        ctype = TlpType.CPLDLK if locked else TlpType.CPLD
    else:
        ctype = TlpType.CPLLK if locked else TlpType.CPL
    kw.setdefault("tc", request.tc)
    kw.setdefault("attr", request.attr)
    return Tlp(ctype, completer_id=completer_id, requester_id=request.requester_id,
               tag=request.tag, status=int(status), byte_count=bc, lower_address=la & 0x7F,
               data=payload, **kw).check()
