"""Configuration accesses as software issues them, turned into dword accesses with byte enables.

Linux reads and writes configuration space 1, 2 or 4 bytes at a time. A function's config port
takes dword accesses with byte enables (a PCIe configuration request carries a dword register
number and First DW Byte Enables). :func:`split_access` does the translation; an access that
crosses a dword boundary becomes two dword accesses. :class:`ConfigSpace` wraps any pair of async
dword accessors (RTL port, model, or both compared) in byte-level ``read``/``write`` methods.
"""

from dataclasses import dataclass

__all__ = ["Chunk", "split_access", "ConfigSpace", "RegisterPortDriver", "ModelPort",
           "CheckedPort", "Mismatch"]


@dataclass(frozen=True)
class Chunk:
    """One dword access of a byte-level access."""
    #: Dword index (byte offset // 4).
    dword:   int
    #: Byte enables, bit ``i`` for byte ``i`` of the dword.
    byte_en: int
    #: Byte lane of the first byte in the dword.
    lane:    int
    #: Bytes in this chunk.
    nbytes:  int
    #: Index of this chunk's first byte within the access value.
    first:   int


def split_access(offset, size):
    """Split an access of ``size`` bytes (1, 2 or 4) at byte ``offset`` into dword chunks."""
    if size not in (1, 2, 4):
        raise ValueError(f"size must be 1, 2 or 4 bytes (got {size})")
    if offset < 0:
        raise ValueError(f"offset must not be negative (got {offset})")
    chunks, done = [], 0
    while done < size:
        lane = (offset + done) % 4
        nbytes = min(4 - lane, size - done)
        chunks.append(Chunk(dword=(offset + done) // 4,
                            byte_en=((1 << nbytes) - 1) << lane,
                            lane=lane, nbytes=nbytes, first=done))
        done += nbytes
    return chunks


class ConfigSpace:
    """Byte-addressed configuration accesses over a dword port.

    ``port`` has ``async read_dword(dword) -> int`` and
    ``async write_dword(dword, data, byte_en)``. ``base`` is subtracted from every offset, so a
    port covering one capability can be addressed with absolute config-space offsets.
    """

    def __init__(self, port, *, base=0):
        self.port = port
        self.base = base

    async def read(self, offset, size):
        value = 0
        for c in split_access(offset - self.base, size):
            dword = await self.port.read_dword(c.dword)
            value |= ((dword >> (8 * c.lane)) & ((1 << (8 * c.nbytes)) - 1)) << (8 * c.first)
        return value

    async def write(self, offset, size, value):
        if not 0 <= value < 1 << (8 * size):
            raise ValueError(f"value {value:#x} does not fit in {size} bytes")
        for c in split_access(offset - self.base, size):
            part = (value >> (8 * c.first)) & ((1 << (8 * c.nbytes)) - 1)
            await self.port.write_dword(c.dword, part << (8 * c.lane), c.byte_en)

    # Linux-style shorthands.
    async def read8(self, offset):
        return await self.read(offset, 1)

    async def read16(self, offset):
        return await self.read(offset, 2)

    async def read32(self, offset):
        return await self.read(offset, 4)

    async def write8(self, offset, value):
        await self.write(offset, 1, value)

    async def write16(self, offset, value):
        await self.write(offset, 2, value)

    async def write32(self, offset, value):
        await self.write(offset, 4, value)


class RegisterPortDriver:
    """Dword accesses on a :class:`sriov_ep.regs.RegisterPort` in an Amaranth testbench."""

    def __init__(self, ctx, port):
        self.ctx  = ctx
        self.port = port

    async def read_dword(self, dword):
        self.ctx.set(self.port.addr, dword)
        return self.ctx.get(self.port.r_data)

    async def write_dword(self, dword, data, byte_en):
        self.ctx.set(self.port.addr, dword)
        self.ctx.set(self.port.w_data, data)
        self.ctx.set(self.port.w_be, byte_en)
        self.ctx.set(self.port.w_en, 1)
        await self.ctx.tick()
        self.ctx.set(self.port.w_en, 0)


class ModelPort:
    """Dword accesses on a reference model with ``read(dword)``/``write(dword, data, mask)``."""

    def __init__(self, model):
        self.model = model

    async def read_dword(self, dword):
        return self.model.read(dword)

    async def write_dword(self, dword, data, byte_en):
        self.model.write(dword, data, byte_en)


class Mismatch(AssertionError):
    """The design under test and the reference model disagree."""


class CheckedPort:
    """Apply every dword access to the design and to the model; reads must agree.

    ``log`` (a list), if given, collects ``(op, dword, data, byte_en)`` tuples for failure reports.
    """

    def __init__(self, dut, model, *, what="", log=None):
        self.dut   = dut
        self.model = model
        self.what  = what
        self.log   = log if log is not None else []
        self.reads = 0

    async def read_dword(self, dword):
        got = await self.dut.read_dword(dword)
        expected = await self.model.read_dword(dword)
        self.log.append(("rd", dword, got, 0xf))
        self.reads += 1
        if got != expected:
            history = "\n".join(f"  {op} dword {dw:#x} data {d:#010x} be {be:#x}"
                                for op, dw, d, be in self.log[-12:])
            raise Mismatch(f"{self.what}read of dword {dword:#x} (byte {4 * dword:#x}): design "
                           f"{got:#010x}, model {expected:#010x}; last accesses:\n{history}")
        return got

    async def write_dword(self, dword, data, byte_en):
        self.log.append(("wr", dword, data, byte_en))
        await self.dut.write_dword(dword, data, byte_en)
        await self.model.write_dword(dword, data, byte_en)
