"""``SlicedMemory``: a deep memory built from slices shaped like block RAM, so that synthesis needs
no read multiplexer in LUTs."""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["BANK_DEPTH", "DISTRIBUTED_DEPTH", "slice_width", "SlicedMemory"]

#: Entries of a bank: an ECP5 DP16KD (and a Xilinx RAMB36 half, a RAMB18) one bit wide.
BANK_DEPTH = 16384

#: Depths up to this are left as one memory, for LUT RAM (two ECP5 DPR16X4 deep: one LUT level
#: of read multiplexer). Deeper ones are sliced and marked for block RAM (``ram_style`` =
#: ``"block"``), even where the whole width fits a block RAM's widest mode (512 x 36 on ECP5, a
#: PDPW16KD): that mode has a separate read and write port, and Yosys emulates read-before-write
#: across them with bypass registers and multiplexers; and deeper LUT RAM needs wider read
#: multiplexers. An 18-bit slice of up to 1024 entries uses one DP16KD port.
DISTRIBUTED_DEPTH = 32

#: (depth, width) modes of an ECP5 DP16KD (18 Kbit; the Xilinx RAMB18 has the same ones): the
#: widest slice that fills one block RAM of at least that depth.
_ASPECTS = ((1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def slice_width(depth):
    """Bits per slice for a bank of ``depth`` entries; ``None`` (the whole width, one memory) up
    to :data:`DISTRIBUTED_DEPTH`."""
    if depth <= DISTRIBUTED_DEPTH:
        return None
    for limit, width in _ASPECTS:
        if depth <= limit:
            return width
    raise ValueError(f"depth: a bank holds at most {BANK_DEPTH} entries, not {depth}")


def _or(values):
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result


class SlicedMemory(wiring.Component):
    """A ``shape`` x ``depth`` memory that reads and writes through one address, built so that
    synthesis maps it to block RAM (or LUT RAM) without a read multiplexer in LUTs.

    Yosys maps a wide memory to ECP5 DP16KD in its 512 x 36 mode and selects among the blocks
    with LUT multiplexers; with a depth just above a power of two that costs more LUTs than the
    memory's logic. Here:

    - up to :data:`DISTRIBUTED_DEPTH` (32) entries: one memory (LUT RAM);
    - up to :data:`BANK_DEPTH` (16384): block RAM, in slices of the width that fills one block
      of the depth (:func:`slice_width`: 18 bits up to 1024 entries, 9 up to 2048, 4 up to
      4096, 2 up to 8192, 1 up to 16384), each an :class:`amaranth.lib.memory.Memory` of the
      full depth;
    - deeper: banks of 16384 entries (1-bit slices; the last bank sliced for its own depth),
      the bank chosen by the address bits above bit 13. Each bank's read data is registered as
      zero unless the bank is addressed (decided with the read, from the same address), which
      synthesis maps to the block RAM's synchronous output reset (ECP5 DP16KD ``RESETMODE``
      ``SYNC``); the banks' outputs are then ORed, one LUT level for up to four banks.

    Every memory has one write port and one read port that share the address net (one block
    RAM port), and reads before writing: ``r_data`` is the entry at ``addr`` one cycle earlier,
    as it was before any write in that cycle. Addresses at or above ``depth`` read an unspecified
    value and must not be written.

    Parameters
    ----------
    shape : shape-castable
        One entry (an int, or a layout: ``r_data`` and ``w_data`` are then views).
    depth : int
        Entries, at least 1.

    Members
    -------
    addr : In(max(1, ceil_log2(depth)))
        The entry read, and written when ``w_en``.
    r_data : Out(shape)
        The entry at ``addr`` one cycle earlier, before any write in that cycle.
    w_data : In(shape)
        Written to ``addr`` at the clock edge when ``w_en``.
    w_en : In(1)
    """

    def __init__(self, shape, depth):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth: must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__({
            "addr":   In(max(1, ceil_log2(depth))),
            "r_data": Out(shape),
            "w_data": In(shape),
            "w_en":   In(1),
        })

    @property
    def depth(self):
        return self._depth

    @property
    def width(self):
        return Shape.cast(self._shape).width

    def banks(self):
        """``[(bank depth, slice widths)]``, the memories this builds, bank by bank."""
        depth, width = self._depth, self.width
        result = []
        for b in range(-(-depth // BANK_DEPTH) if depth > BANK_DEPTH else 1):
            bank_depth = min(depth - b * BANK_DEPTH, BANK_DEPTH)
            step = slice_width(bank_depth) or max(1, width)
            result.append((bank_depth, [min(step, width - lo) for lo in range(0, width, step)]))
        return result

    def elaborate(self, platform):
        m = Module()
        banks = self.banks()
        low = max(1, ceil_log2(min(self._depth, BANK_DEPTH)))
        w_bits = Value.cast(self.w_data)

        # One net for each memory's read and write address: one block RAM port.
        local = Signal(low)
        m.d.comb += local.eq(self.addr[:low])

        outputs = []
        for b, (bank_depth, widths) in enumerate(banks):
            in_bank = (self.addr[low:] == b) if len(banks) > 1 else 1
            parts, lo = [], 0
            for s, sw in enumerate(widths):
                block = bank_depth > DISTRIBUTED_DEPTH
                mem = memory.Memory(shape=sw, depth=max(2, bank_depth), init=[],
                                    attrs={"ram_style": "block"} if block else None)
                name = f"bank{b}_slice{s}" if len(banks) > 1 else f"slice{s}"
                m.submodules[name] = mem
                wr = mem.write_port()
                m.d.comb += [wr.addr.eq(local), wr.data.eq(w_bits[lo:lo + sw]),
                             wr.en.eq(self.w_en & in_bank)]
                if len(banks) == 1:
                    rd = mem.read_port()
                    m.d.comb += rd.addr.eq(local)
                    parts.append(rd.data)
                else:
                    # A read register that is zero unless the bank is addressed: synthesis puts
                    # it in the block RAM (its output register, reset synchronously), and the
                    # banks' outputs are ORed. The register samples the entry before a write
                    # at the same edge: read before write.
                    rd = mem.read_port(domain="comb")
                    data = Signal(sw, name=f"{name}_data", reset_less=True)
                    m.d.comb += rd.addr.eq(local)
                    m.d.sync += data.eq(Mux(in_bank, rd.data, 0))
                    parts.append(data)
                lo += sw
            outputs.append(Cat(*parts))

        r_bits = Value.cast(self.r_data)
        m.d.comb += r_bits.eq(_or(outputs))
        return m
