"""Per-VF state: the layout derived from the VF chain, and the memory that holds it."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .caps import vf_chain

__all__ = ["vf_state_fields", "vf_state_layout", "VfStateMemory"]


def vf_state_fields(params):
    """Every field of the VF chain declared ``per_vf``: ``[(key, entry, register, field)]``.

    ``key`` (``structure_register_field``) names the field in :func:`vf_state_layout`.
    """
    fields = []
    for entry in vf_chain(params):
        for reg in entry.regmap.registers:
            for f in reg.fields:
                if f.per_vf:
                    fields.append((f"{entry.name}_{reg.name}_{f.name}", entry, reg, f))
    return fields


def vf_state_layout(params):
    """Layout of one VF's entry in the VF state memory.

    Each per-VF field is stored XOR its reset value, so an all-zeros entry is a VF in its reset
    state and clearing the memory resets every VF.
    """
    return data.StructLayout({key: f.width for key, _e, _r, f in vf_state_fields(params)})


class VfStateMemory(wiring.Component):
    """Per-VF state: banks of block-RAM depth, a read/write port and query ports.

    Reads take two cycles: each bank's output is registered before the banks are multiplexed,
    so a block RAM's output goes straight to a flip-flop. The depth of a bank, 16384, is that of
    an ECP5 DP16KD (and of a Xilinx RAMB36) one bit wide.

    No memory here has two ports with different addresses. A read and a write through different
    ports of a block RAM may collide, and synthesis (Yosys, for one) then emulates
    read-before-write with bypass logic between the RAM's output and its first flip-flop, the
    slowest path in the design. So:

    - ``rw`` reads and writes through one address: one port of a block RAM, with that port's own
      read-before-write behaviour.
    - The fields a query port reads are kept twice more, in memories X and Y that each read and
      write through one (multiplexed) address. A write goes to X, and to Y one cycle later; a
      query uses whichever of the two is not being written. Writes come one per cycle only while
      the state is being cleared (when the endpoint ignores the answers), so one of the two is
      always free, and the answer is the same as from one memory read before the write.
    - Up to :attr:`DISTRIBUTED_DEPTH` entries the memories fit in LUT RAM, whose reads are
      asynchronous and cannot collide with a write; there a query's fields are kept once more,
      in one memory with a read port of its own.

    Parameters
    ----------
    depth : int
        Entries (TotalVFs).
    layout : data.StructLayout
        One entry (:func:`vf_state_layout`).
    queries : dict
        Query port name -> tuple of field names of ``layout`` it reads.

    Members
    -------
    rw : In(read/write port signature)
        ``addr``, ``w_data``, ``w_en``: written at the clock edge; ``r_data``: the entry at
        ``addr`` two cycles earlier (before any write in that cycle).
    <query name> : In(query port signature), one per query
        ``addr`` in, ``data`` (the query's fields of that entry, concatenated in the order given,
        before any write in the cycle after ``addr``) out two cycles after ``addr``.
    """

    BANK_DEPTH = 16384
    #: Depths up to this are expected in distributed (LUT) RAM.
    DISTRIBUTED_DEPTH = 512

    def __init__(self, depth, layout, queries):
        self._depth = depth
        self._layout = layout
        self._queries = {name: tuple(fields) for name, fields in queries.items()}
        for name, fields in self._queries.items():
            for f in fields:
                if f not in {n for n, _ in self._layout}:
                    raise ValueError(f"query {name}: {f} is not a field of the layout")
        rw = wiring.Signature({"addr": Out(range(depth)), "r_data": In(self._layout),
                               "w_data": Out(self._layout), "w_en": Out(1)})
        members = {"rw": In(rw)}
        for name, fields in self._queries.items():
            width = sum(self._layout[f].width for f in fields)
            members[name] = In(wiring.Signature({"addr": Out(range(depth)),
                                                 "data": In(width)}))
        super().__init__(members)

    @property
    def layout(self):
        return self._layout

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        banks = -(-depth // self.BANK_DEPTH)
        bank_depth = min(depth, self.BANK_DEPTH)
        low = max(1, (bank_depth - 1).bit_length())

        def bank_memories(name, shape, addr, w_addr, w_data, w_en, r_addr=None):
            """One memory per bank, each reading and writing through ``addr`` (the index within
            a bank; or reading through ``r_addr``); returns each bank's registered read data."""
            shared = Signal(low, name=f"{name}_addr")     # one net: one RAM port for both
            m.d.comb += shared.eq(addr)
            outputs = []
            for b in range(banks):
                mem = memory.Memory(shape=shape, init=[],
                                    depth=max(2, min(bank_depth, depth - b * self.BANK_DEPTH)))
                m.submodules[f"{name}_bank{b}"] = mem
                wr, rd = mem.write_port(), mem.read_port()
                in_bank = (w_addr >> low) == b if banks > 1 else 1
                m.d.comb += [wr.addr.eq(shared), wr.data.eq(w_data), wr.en.eq(w_en & in_bank),
                             rd.addr.eq(shared if r_addr is None else r_addr[:low])]
                out = Signal(shape, name=f"{name}_bank{b}_data")
                m.d.sync += out.eq(rd.data)
                outputs.append(out)
            return outputs

        def select_bank(name, addr, outputs, out):
            if banks == 1:
                m.d.comb += out.eq(outputs[0])
                return
            bank_r = Signal(range(banks), name=f"{name}_bank_r")
            bank_r2 = Signal(range(banks), name=f"{name}_bank_r2")
            m.d.sync += [bank_r.eq(addr >> low), bank_r2.eq(bank_r)]
            with m.Switch(bank_r2):
                for b, value in enumerate(outputs):
                    with m.Case(b):
                        m.d.comb += out.eq(value)

        rw = self.rw
        rw_out = bank_memories("rw", self._layout, rw.addr[:low], rw.addr, rw.w_data, rw.w_en)
        select_bank("rw", rw.addr, rw_out, rw.r_data)

        for name, fields in self._queries.items():
            port = getattr(self, name)
            q_addr = port.addr
            w_bits = Cat(*(getattr(rw.w_data, f) for f in fields))
            width = len(w_bits)
            if depth <= self.DISTRIBUTED_DEPTH:
                out = bank_memories(name, width, rw.addr[:low], rw.addr, w_bits, rw.w_en,
                                    r_addr=q_addr)
                select_bank(name, q_addr, out, port.data)
                continue
            # X is written with the write, Y a cycle later from registers.
            y_en, y_addr = Signal(name=f"{name}_y_en"), Signal(range(depth), name=f"{name}_y_a")
            y_bits = Signal(width, name=f"{name}_y_bits")
            m.d.sync += [y_en.eq(rw.w_en), y_addr.eq(rw.addr), y_bits.eq(w_bits)]
            x_out = bank_memories(f"{name}_x", width, Mux(rw.w_en, rw.addr[:low], q_addr[:low]),
                                  rw.addr, w_bits, rw.w_en)
            y_out = bank_memories(f"{name}_y", width, Mux(y_en, y_addr[:low], q_addr[:low]),
                                  y_addr, y_bits, y_en)
            # Y answers when X is being written; the choice follows the read through its
            # registers.
            use_y, use_y_r = Signal(name=f"{name}_use_y"), Signal(name=f"{name}_use_y_r")
            m.d.sync += [use_y.eq(rw.w_en), use_y_r.eq(use_y)]
            x_data = Signal(width, name=f"{name}_x_data")
            y_data = Signal(width, name=f"{name}_y_data")
            select_bank(f"{name}_x", q_addr, x_out, x_data)
            select_bank(f"{name}_y", q_addr, y_out, y_data)
            m.d.comb += port.data.eq(Mux(use_y_r, y_data, x_data))
        return m
