# amaranth: UnusedElaboratable=no
"""Tests of the register layer (``sriov_ep.regs``) on its own, and of the byte-to-dword access
translation of ``sriov_tb.cfg`` (``split_access``, ``ConfigSpace``).

The register map used here is made up for the test: it has one field of every access kind,
fields that straddle byte lanes, a custom field, a driven read-only field, a register without
fields and a dword without registers. Every expected value is a literal number worked out by hand
from the map below, never computed with the layer's own functions.
"""

import asyncio
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sriov_ep.regs import Access, Field, Register, RegisterBank, RegisterMap, RegisterPort
from sriov_tb.cfg import Chunk, ConfigSpace, RegisterPortDriver, split_access
from sriov_tb.sim import simulate

# -- The test register map -----------------------------------------------------------------------
#
#  dword 0 (0x00)  id      31:16 device HwInit 0xABCD | 15:0 vendor RO 0x1234
#  dword 1 (0x04)  ctrl    15:12 level RW 0x9 | 11:6 span RW 0x2A (straddles bytes 0 and 1)
#                          5:4 RsvdP | 3:1 mode RW 0b101 | 0 enable RW 0
#                  status  (0x06) 15:4 RsvdZ | 3:0 events RW1C 0 (hardware sets them)
#  dword 2 (0x08)  count   (0x08) 7:0 custom RW 0: the owner takes writes below 100 only
#                  fixed   (0x09) 7:0 RO 0x77
#                  wide    (0x0A) 15:12 hi RW1C 0xF | 11:4 not covered (reserved) | 3:0 lo RW 0x3
#  dword 3 (0x0C)  data    31:0 RW 0xDEADBEEF
#  dword 4 (0x10)  live    (0x10) 15:0 RO, driven from an input
#                  empty   (0x12) a 16-bit register without fields
#  dword 5 (0x14)  nothing
#  (the port has 3 address bits: dwords 6 and 7 lie beyond the map)

TEST_MAP = RegisterMap("test", 0x18, [
    Register("id", 0x00, 32, (
        Field("vendor", 0, 16, Access.RO, 0x1234),
        Field("device", 16, 16, Access.HWINIT, 0xABCD),
    )),
    Register("ctrl", 0x04, 16, (
        Field("enable", 0, 1, Access.RW),
        Field("mode", 1, 3, Access.RW, 0b101),
        Field("resv", 4, 2, Access.RSVDP),
        Field("span", 6, 6, Access.RW, 0x2A),
        Field("level", 12, 4, Access.RW, 0x9),
    )),
    Register("status", 0x06, 16, (
        Field("events", 0, 4, Access.RW1C),
        Field("resz", 4, 12, Access.RSVDZ),
    )),
    Register("count", 0x08, 8, (Field("count", 0, 8, Access.RW, custom=True),)),
    Register("fixed", 0x09, 8, (Field("fixed", 0, 8, Access.RO, 0x77),)),
    Register("wide", 0x0a, 16, (
        Field("lo", 0, 4, Access.RW, 0x3),
        Field("hi", 12, 4, Access.RW1C, 0xF),
    )),
    Register("data", 0x0c, 32, (Field("data", 0, 32, Access.RW, 0xDEADBEEF),)),
    Register("live", 0x10, 16, (Field("value", 0, 16, Access.RO, 0x0000),)),
    Register("empty", 0x12, 16, ()),
])

#: Every dword after reset (``live`` input held at 0), worked out by hand.
RESET_DWORDS = [
    0xABCD_1234,
    0x0000_9A8A,    # level 9 << 12 | span 0x2A << 6 | mode 5 << 1 | enable 0; status 0
    0xF003_7700,    # wide 0xF003 | fixed 0x77 | count 0
    0xDEAD_BEEF,
    0x0000_0000,
    0x0000_0000,
    0x0000_0000,    # beyond the map
    0x0000_0000,
]


class BankUnderTest(wiring.Component):
    """A RegisterBank over TEST_MAP, with every hook of the layer wired to a port.

    ``count`` takes writes below 100 only; ``count_writes`` counts the strobes of ``count``
    writes (whether taken or not), so the strobe itself can be checked.
    """
    cfg:          In(RegisterPort(3))
    reset:        In(1)
    hw_set:       In(4)
    live:         In(16)
    count:        Out(8)
    count_writes: Out(8)

    def elaborate(self, platform):
        m = Module()
        bank = RegisterBank(TEST_MAP)
        bank.drive("live.value", self.live)
        bank.read(m, self.cfg.addr, self.cfg.r_data)
        bank.write(m, self.cfg.addr, self.cfg.w_en, self.cfg.w_be, self.cfg.w_data)

        strobe, value = bank.write_of("count.count")
        with m.If(strobe):
            m.d.sync += self.count_writes.eq(self.count_writes + 1)
            with m.If(value < 100):
                m.d.sync += bank["count.count"].eq(value)
        m.d.comb += self.count.eq(bank["count.count"])

        bank.set_bits(m, "status.events", self.hw_set)
        bank.reset(m, self.reset)
        return m


def run_bank(name, body):
    """Simulate a fresh BankUnderTest with ``body(ctx, dut, port)`` as the testbench."""
    dut = BankUnderTest()

    def make_testbench():
        async def testbench(ctx):
            await body(ctx, dut, RegisterPortDriver(ctx, dut.cfg))
        return testbench

    simulate(dut, make_testbench, name=f"test_regs_{name}")


async def read_all(port):
    return [await port.read_dword(d) for d in range(8)]


# -- Derived masks, against literal numbers --------------------------------------------------------


def test_map_reset_value():
    assert [TEST_MAP.reset_value(d) for d in range(6)] == RESET_DWORDS[:6]


def test_map_write_mask():
    assert TEST_MAP.write_mask(0) == 0x0000_0000
    assert TEST_MAP.write_mask(1) == 0x0000_FFCF   # level, span, mode, enable; not bits 5:4
    assert TEST_MAP.write_mask(2) == 0x000F_00FF   # wide.lo and the custom count (declared RW)
    assert TEST_MAP.write_mask(3) == 0xFFFF_FFFF
    assert TEST_MAP.write_mask(4) == 0x0000_0000
    assert TEST_MAP.write_mask(5) == 0x0000_0000


def test_map_rw1c_mask():
    assert TEST_MAP.rw1c_mask(0) == 0x0000_0000
    assert TEST_MAP.rw1c_mask(1) == 0x000F_0000    # status.events
    assert TEST_MAP.rw1c_mask(2) == 0xF000_0000    # wide.hi
    assert TEST_MAP.rw1c_mask(3) == 0x0000_0000


def test_map_lookup():
    assert TEST_MAP.dwords == 6
    assert TEST_MAP.register("wide").offset == 0x0a
    assert TEST_MAP.register("wide").dword == 2
    assert TEST_MAP.register("wide").shift == 16
    assert TEST_MAP.register("ctrl").reset == 0x9A8A
    assert TEST_MAP.register("ctrl").field("span").mask == 0x0FC0
    assert [r.name for r in TEST_MAP.in_dword(2)] == ["count", "fixed", "wide"]
    assert TEST_MAP.in_dword(5) == []
    with pytest.raises(KeyError, match="no register nope"):
        TEST_MAP.register("nope")
    with pytest.raises(KeyError, match="no field nope"):
        TEST_MAP.register("ctrl").field("nope")


def test_map_rows_report_gaps_as_reserved():
    rows = [(off, reg.name, f.name if f else None, f.lsb if f else None,
             f.width if f else None, f.access if f else None)
            for off, _w, reg, f in TEST_MAP.rows(base=0x100)]
    assert (0x10a, "wide", "lo", 0, 4, Access.RW) in rows
    assert (0x10a, "wide", "reserved", 4, 8, Access.RSVDP) in rows
    assert (0x10a, "wide", "hi", 12, 4, Access.RW1C) in rows
    assert (0x112, "empty", None, None, None, None) in rows
    assert rows[0] == (0x100, "id", "vendor", 0, 16, Access.RO)


def test_access_stored():
    assert [a for a in Access if a.stored] == [Access.RW, Access.RW1C]


# -- Validation errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: Register("r", 0x00, 24), "width must be 8, 16 or 32"),
    (lambda: Register("r", 0x02, 32), "not aligned"),
    (lambda: Register("r", 0x01, 16), "not aligned"),
    (lambda: Register("r", 0x06, 32), "not aligned"),
    (lambda: Register("r", 0x00, 32, (Field("f", 30, 4, Access.RW),)), "exceeds the register"),
    (lambda: Register("r", 0x00, 8, (Field("f", 0, 9, Access.RW),)), "exceeds the register"),
    (lambda: Register("r", 0x00, 16, (Field("f", -1, 2, Access.RW),)), "exceeds the register"),
    (lambda: Register("r", 0x00, 32, (Field("a", 0, 8, Access.RW),
                                      Field("b", 7, 2, Access.RO))), "overlaps another field"),
    (lambda: Register("r", 0x00, 16, (Field("f", 0, 4, Access.RW, 0x10),)), "does not fit"),
    (lambda: Register("r", 0x00, 16, (Field("f", 0, 4, Access.RW, -1),)), "does not fit"),
])
def test_register_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_map_validation_size():
    with pytest.raises(ValueError, match="whole number of dwords"):
        RegisterMap("m", 0x06, [])
    # A register that ends exactly at the end of the structure is fine.
    assert RegisterMap("m", 0x08, [Register("a", 0x06, 16)]).dwords == 2


def test_map_validation_overlap():
    with pytest.raises(ValueError, match="register b overlaps a"):
        RegisterMap("m", 0x08, [Register("a", 0x00, 32), Register("b", 0x02, 8)])
    with pytest.raises(ValueError, match="register b overlaps a"):
        RegisterMap("m", 0x08, [Register("a", 0x02, 16), Register("b", 0x00, 32)])
    # Adjacent registers are fine.
    RegisterMap("m", 0x08, [Register("a", 0x02, 16), Register("b", 0x00, 16),
                            Register("c", 0x04, 8), Register("d", 0x05, 8)])


def test_map_validation_outside():
    with pytest.raises(ValueError, match="lies outside the structure"):
        RegisterMap("m", 0x08, [Register("a", 0x08, 8)])
    with pytest.raises(ValueError, match="lies outside the structure"):
        RegisterMap("m", 0x04, [Register("a", 0x04, 16)])


def test_map_validation_duplicate_name():
    with pytest.raises(ValueError, match="name a is used twice"):
        RegisterMap("m", 0x08, [Register("a", 0x00, 16), Register("a", 0x04, 16)])


def test_bank_drive_and_set_bits_checked():
    bank = RegisterBank(TEST_MAP)
    with pytest.raises(ValueError, match="is stored"):
        bank.drive("data.data", Signal(32))
    with pytest.raises(ValueError, match="not RW1C"):
        bank.set_bits(Module(), "ctrl.enable", Signal(1))
    with pytest.raises(KeyError):
        bank["fixed.fixed"]                      # read-only fields have no storage
    assert len(bank["ctrl.span"]) == 6
    assert bank["ctrl.span"].init == 0x2A


# -- Hardware --------------------------------------------------------------------------------------


def test_bank_reset_values():
    async def body(ctx, dut, port):
        assert await read_all(port) == RESET_DWORDS
        assert ctx.get(dut.count) == 0
        ctx.set(dut.live, 0x1357)
        assert await port.read_dword(4) == 0x0000_1357     # driven RO field reads its input

    run_bank("reset_values", body)


def test_bank_all_ones_then_zeros():
    async def body(ctx, dut, port):
        for dword in range(8):
            await port.write_dword(dword, 0xFFFF_FFFF, 0xF)
        got = await read_all(port)
        assert got[0] == 0xABCD_1234
        assert got[1] == 0x0000_FFCF
        # wide: lo RW = 0xF, hi RW1C cleared by the ones, bits 11:4 reserved; count 0xFF is above
        # 100 so the owner refused it; fixed RO.
        assert got[2] == 0x000F_7700
        assert got[3] == 0xFFFF_FFFF
        assert got[4:] == [0, 0, 0, 0]
        for dword in range(8):
            await port.write_dword(dword, 0x0000_0000, 0xF)
        got = await read_all(port)
        assert got == [0xABCD_1234, 0x0000_0000, 0x0000_7700, 0x0000_0000, 0, 0, 0, 0]

    run_bank("all_ones", body)


def test_bank_byte_enables():
    async def body(ctx, dut, port):
        # Byte 0 only: enable, mode, and the two low bits of span (dword bits 7:6).
        await port.write_dword(1, 0xFFFF_FFFF, 0b0001)
        assert await port.read_dword(1) == 0x0000_9ACF   # span 0x2A -> 0x2B, level kept
        # Byte 1 only, zeros: span bits 5:2 (dword bits 11:8) and level clear; byte 0 kept.
        await port.write_dword(1, 0x0000_0000, 0b0010)
        assert await port.read_dword(1) == 0x0000_00CF   # span 0x03, level 0
        # No byte enabled: nothing changes anywhere.
        before = await read_all(port)
        for dword in range(8):
            await port.write_dword(dword, 0x0000_0000, 0b0000)
            await port.write_dword(dword, 0xFFFF_FFFF, 0b0000)
        assert await read_all(port) == before
        # A write to byte 2 of data touches bits 23:16 only.
        await port.write_dword(3, 0x1122_3344, 0b0100)
        assert await port.read_dword(3) == 0xDE22_BEEF
        await port.write_dword(3, 0x1122_3344, 0b1001)
        assert await port.read_dword(3) == 0x1122_BE44
        # wide.lo (byte 2 of dword 2) without touching count (byte 0) or wide.hi (byte 3).
        await port.write_dword(2, 0xFFFF_FF05, 0b0100)
        assert await port.read_dword(2) == 0xF00F_7700
        await port.write_dword(2, 0x0000_0000, 0b0100)
        assert await port.read_dword(2) == 0xF000_7700

    run_bank("byte_enables", body)


def test_bank_rw1c():
    async def body(ctx, dut, port):
        # Hardware sets events 0 and 2.
        ctx.set(dut.hw_set, 0b0101)
        await ctx.tick()
        ctx.set(dut.hw_set, 0)
        assert await port.read_dword(1) == 0x0005_9A8A
        # Writing 0 has no effect, neither does a 1 in a byte that is not enabled.
        await port.write_dword(1, 0x0000_0000, 0xF)
        assert await port.read_dword(1) == 0x0005_0000
        await port.write_dword(1, 0x000F_0000, 0b1011)
        assert await port.read_dword(1) == 0x0005_0000
        # A 1 clears exactly that bit.
        await port.write_dword(1, 0x0001_0000, 0b0100)
        assert await port.read_dword(1) == 0x0004_0000
        # Set wins over clear of the same bit in the same cycle.
        ctx.set(dut.hw_set, 0b0100)
        await port.write_dword(1, 0x0004_0000, 0xF)
        ctx.set(dut.hw_set, 0)
        assert await port.read_dword(1) == 0x0004_0000
        # Set of one bit and clear of another in the same cycle: both happen.
        ctx.set(dut.hw_set, 0b0010)
        await port.write_dword(1, 0x0004_0000, 0xF)
        ctx.set(dut.hw_set, 0)
        assert await port.read_dword(1) == 0x0002_0000
        # A write with no hardware set, clearing everything.
        await port.write_dword(1, 0xFFFF_0000, 0b1100)
        assert await port.read_dword(1) == 0x0000_0000
        # wide.hi resets to 0xF and clears per bit, with bytes that hold no RW1C bit ignored.
        await port.write_dword(2, 0x5000_0000, 0b1000)
        assert await port.read_dword(2) == 0xA003_7700
        await port.write_dword(2, 0xF000_0000, 0b0111)    # bytes 0-2 enabled: lo and count = 0
        assert await port.read_dword(2) == 0xA000_7700

    run_bank("rw1c", body)


def test_bank_custom_field():
    async def body(ctx, dut, port):
        await port.write_dword(2, 0x0000_0032, 0b0001)
        assert ctx.get(dut.count) == 50
        assert ctx.get(dut.count_writes) == 1
        assert await port.read_dword(2) & 0xFF == 50
        # 150 is refused by the owner, but the strobe still fires.
        await port.write_dword(2, 0x0000_0096, 0xF)
        assert ctx.get(dut.count) == 50
        assert ctx.get(dut.count_writes) == 2
        # No strobe when the field's byte is not enabled, or on another dword, or without w_en.
        await port.write_dword(2, 0xFFFF_FF01, 0b1110)
        await port.write_dword(3, 0x0000_0001, 0xF)
        ctx.set(dut.cfg.addr, 2)
        ctx.set(dut.cfg.w_be, 0xF)
        ctx.set(dut.cfg.w_data, 1)
        await ctx.tick()
        assert ctx.get(dut.count) == 50
        assert ctx.get(dut.count_writes) == 2

    run_bank("custom", body)


def test_bank_reset_input():
    async def body(ctx, dut, port):
        for dword in range(8):
            await port.write_dword(dword, 0x1234_5678 ^ (dword * 0x0101_0101), 0xF)
        ctx.set(dut.hw_set, 0b1111)
        await ctx.tick()
        ctx.set(dut.hw_set, 0)
        assert await read_all(port) != RESET_DWORDS
        ctx.set(dut.reset, 1)
        await ctx.tick()
        ctx.set(dut.reset, 0)
        assert await read_all(port) == RESET_DWORDS
        # Reset wins over a write and a hardware set in the same cycle.
        ctx.set(dut.reset, 1)
        ctx.set(dut.hw_set, 0b1111)
        await port.write_dword(3, 0, 0xF)
        ctx.set(dut.reset, 0)
        ctx.set(dut.hw_set, 0)
        assert await read_all(port) == RESET_DWORDS

    run_bank("reset_input", body)


# -- split_access and ConfigSpace ----------------------------------------------------------------


def test_split_access_literal():
    assert split_access(0x00, 4) == [Chunk(0, 0b1111, 0, 4, 0)]
    assert split_access(0x10, 2) == [Chunk(4, 0b0011, 0, 2, 0)]
    assert split_access(0x12, 2) == [Chunk(4, 0b1100, 2, 2, 0)]
    assert split_access(0x13, 1) == [Chunk(4, 0b1000, 3, 1, 0)]
    assert split_access(0x09, 1) == [Chunk(2, 0b0010, 1, 1, 0)]
    assert split_access(0x03, 2) == [Chunk(0, 0b1000, 3, 1, 0), Chunk(1, 0b0001, 0, 1, 1)]
    assert split_access(0x01, 4) == [Chunk(0, 0b1110, 1, 3, 0), Chunk(1, 0b0001, 0, 1, 3)]
    assert split_access(0x06, 4) == [Chunk(1, 0b1100, 2, 2, 0), Chunk(2, 0b0011, 0, 2, 2)]
    assert split_access(0x0b, 4) == [Chunk(2, 0b1000, 3, 1, 0), Chunk(3, 0b0111, 0, 3, 1)]


@pytest.mark.parametrize("offset, size", [(0, 3), (0, 8), (0, 0), (-1, 1)])
def test_split_access_errors(offset, size):
    with pytest.raises(ValueError):
        split_access(offset, size)


@pytest.mark.parametrize("offset", range(16))
@pytest.mark.parametrize("size", [1, 2, 4])
def test_split_access_covers_bytes(offset, size):
    covered = []
    for c in split_access(offset, size):
        lanes = [lane for lane in range(4) if c.byte_en >> lane & 1]
        assert lanes == list(range(c.lane, c.lane + c.nbytes))
        covered += [4 * c.dword + lane for lane in lanes]
        assert 4 * c.dword + c.lane == offset + c.first
    assert covered == list(range(offset, offset + size))


class BytearrayPort:
    """A dword port over a plain bytearray (little-endian), recording every access."""

    def __init__(self, size):
        self.mem = bytearray(size)
        self.log = []

    async def read_dword(self, dword):
        self.log.append(("rd", dword))
        return int.from_bytes(self.mem[4 * dword:4 * dword + 4], "little")

    async def write_dword(self, dword, data, byte_en):
        self.log.append(("wr", dword, data, byte_en))
        for lane in range(4):
            if byte_en >> lane & 1:
                self.mem[4 * dword + lane] = (data >> (8 * lane)) & 0xFF
            else:
                assert (data >> (8 * lane)) & 0xFF == 0, "data outside the enabled bytes"


@pytest.mark.parametrize("size", [1, 2, 4])
def test_config_space_every_offset(size):
    rng = random.Random(size)

    async def body():
        port = BytearrayPort(0x20)
        cfg = ConfigSpace(port, base=0x160)
        ref = bytearray(rng.randbytes(0x20))
        port.mem[:] = ref
        for offset in range(0x20 - size + 1):
            value = rng.getrandbits(8 * size)
            port.log.clear()
            await cfg.write(0x160 + offset, size, value)
            crosses = offset // 4 != (offset + size - 1) // 4
            assert len(port.log) == (2 if crosses else 1)
            ref[offset:offset + size] = value.to_bytes(size, "little")
            assert port.mem == ref, f"write of {size} bytes at {offset:#x}"
            # Read back at every offset and size.
            for at in range(0x20 - size + 1):
                port.log.clear()
                got = await cfg.read(0x160 + at, size)
                assert got == int.from_bytes(ref[at:at + size], "little")
                assert all(op == "rd" for op, *_ in port.log)

    asyncio.run(body())


def test_config_space_shorthands_and_errors():
    async def body():
        port = BytearrayPort(0x10)
        cfg = ConfigSpace(port)
        await cfg.write32(0x4, 0x1122_3344)
        await cfg.write16(0x7, 0xAABB)            # crosses into dword 2
        await cfg.write8(0xF, 0x5A)
        assert port.mem == bytes.fromhex("00000000 443322bb aa000000 0000005a".replace(" ", ""))
        assert await cfg.read32(0x4) == 0xBB22_3344
        assert await cfg.read16(0x7) == 0xAABB
        assert await cfg.read8(0xF) == 0x5A
        assert await cfg.read32(0x6) == 0x00AA_BB22
        assert port.log[1] == ("wr", 1, 0xBB00_0000, 0b1000)
        assert port.log[2] == ("wr", 2, 0x0000_00AA, 0b0001)
        with pytest.raises(ValueError, match="does not fit"):
            await cfg.write(0x0, 2, 0x1_0000)
        with pytest.raises(ValueError, match="does not fit"):
            await cfg.write(0x0, 1, -1)
        with pytest.raises(ValueError):
            await cfg.read(0x0, 3)

    asyncio.run(body())


def test_config_space_on_register_port():
    """ConfigSpace over the RTL bank: 1/2/4-byte accesses at every offset of the data dword."""
    async def body(ctx, dut, port):
        cfg = ConfigSpace(port, base=0x200)
        assert await cfg.read16(0x20e) == 0xDEAD
        assert await cfg.read8(0x209) == 0x77
        assert await cfg.read32(0x20b) == 0xADBE_EFF0      # crosses dwords 2 and 3
        await cfg.write16(0x20d, 0x1234)                   # bytes 0x0d, 0x0e of data
        assert await cfg.read32(0x20c) == 0xDE12_34EF
        await cfg.write32(0x20a, 0xFFFF_FFFF)              # wide (RW1C hi clears) and data low
        assert await cfg.read32(0x208) == 0x000F_7700
        assert await cfg.read32(0x20c) == 0xDE12_FFFF

    run_bank("config_space", body)


# -- write_ahead: a write's field decode with another strobe -------------------------------------


class AheadUnderTest(wiring.Component):
    """A bank whose writes land from ``cfg``, with ``write_ahead`` of ``ctrl.mode`` and
    ``count.count`` decoded from a separate strobe and inputs (nothing written by them)."""
    cfg:     In(RegisterPort(3))
    en:      In(1)
    addr:    In(3)
    be:      In(4)
    data:    In(32)
    mode_w:  Out(1)
    mode_v:  Out(3)
    count_w: Out(1)
    count_v: Out(8)

    def elaborate(self, platform):
        m = Module()
        bank = RegisterBank(TEST_MAP)
        bank.read(m, self.cfg.addr, self.cfg.r_data)
        bank.write(m, self.cfg.addr, self.cfg.w_en, self.cfg.w_be, self.cfg.w_data)
        for name, w, v in (("ctrl.mode", self.mode_w, self.mode_v),
                           ("count.count", self.count_w, self.count_v)):
            strobe, value = bank.write_ahead(m, name, self.en, self.addr, self.be, self.data)
            m.d.comb += [w.eq(strobe), v.eq(value)]
        return m


def test_write_ahead_decodes_like_a_write_and_writes_nothing():
    """ctrl.mode is bits 3:1 of dword 1 (byte 0), reset 0b101; count.count is byte 0 of dword 2,
    reset 0. The strobe needs ``en``, the dword and a byte of the field; the value is the
    field after the byte merge (old bits where the byte is not enabled; the value means
    something only with the strobe)."""
    dut = AheadUnderTest()

    def make_testbench():
        async def testbench(ctx):
            port = RegisterPortDriver(ctx, dut.cfg)

            def drive(en, addr, be, data):
                for sig, value in ((dut.en, en), (dut.addr, addr), (dut.be, be),
                                   (dut.data, data)):
                    ctx.set(sig, value)

            def got():
                return (ctx.get(dut.mode_w), ctx.get(dut.mode_v), ctx.get(dut.count_w),
                        ctx.get(dut.count_v))

            drive(1, 1, 0b0001, 0b0110)             # mode <- 0b011
            assert got()[:2] == (1, 0b011)
            drive(1, 1, 0b0010, 0xFFFF)             # byte 1 only: mode not reached, kept
            assert got()[:2] == (0, 0b101)
            drive(0, 1, 0b0001, 0b0110)             # no strobe
            assert got()[:2] == (0, 0b011)
            drive(1, 2, 0b0001, 0x42)               # count <- 0x42 (dword 2), not mode
            assert (got()[0], got()[2:]) == (0, (1, 0x42))
            await ctx.tick().repeat(2)
            # Nothing was written: the bank still reads its reset values.
            assert await port.read_dword(1) == RESET_DWORDS[1]
            assert await port.read_dword(2) == RESET_DWORDS[2]
            drive(0, 0, 0, 0)
            # A real write to mode: write_ahead's kept bits follow the stored value.
            await port.write_dword(1, 0b1110, 0b0001)   # mode <- 0b111 (enable 0)
            drive(1, 1, 0b0010, 0)
            assert got()[:2] == (0, 0b111)
        return testbench

    simulate(dut, make_testbench, name="test_regs_write_ahead")
