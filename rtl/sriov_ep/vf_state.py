"""Per-VF state: the layout derived from the VF chain, and the memory that holds it."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .caps import vf_chain
from .params import EndpointParams

__all__ = ["vf_state_fields", "vf_state_layout", "vf_state_ranges", "VfStateMemory"]


def vf_state_fields(params):
    """Every field of the VF chain declared ``per_vf``: ``[(key, entry, register, field)]``.

    ``key`` (``structure_register_field``) names the field in :func:`vf_state_layout`. For a
    device of several PFs, the union over every PF's VF chain: each key once, as the first PF
    with it declares it (PFs whose VF chains are equal give one PF's list). A key must have the
    same width in every PF.
    """
    if isinstance(params, EndpointParams) and params.num_pfs > 1:
        chains = [vf_chain(params, k) for k in range(params.num_pfs)]
    else:
        chains = [vf_chain(params)]
    fields = []
    width = {}
    for k, chain in enumerate(chains):
        for entry in chain:
            for reg in entry.regmap.registers:
                for f in reg.fields:
                    if not f.per_vf:
                        continue
                    key = f"{entry.name}_{reg.name}_{f.name}"
                    if key in width:
                        if width[key] != f.width:
                            raise AssertionError(f"per-VF field {key}: {f.width} bits in PF {k}, "
                                                 f"{width[key]} in an earlier PF")
                        continue
                    width[key] = f.width
                    fields.append((key, entry, reg, f))
    return fields


def vf_state_layout(params):
    """Layout of one VF's entry in the VF state memory.

    Each per-VF field is stored XOR its reset value (in the VF's own PF, when PFs differ), so an
    all-zeros entry is a VF in its reset state and clearing the memory resets every VF.
    """
    return data.StructLayout({key: f.width for key, _e, _r, f in vf_state_fields(params)})


def vf_state_ranges(params):
    """Each PF's entries in the VF state memory, ``((vf_base(k), TotalVFs of PF k), ...)``:
    the ``pf_ranges`` of :class:`VfStateMemory` for a device of several PFs."""
    return tuple((params.vf_base(k), pf.total_vfs) for k, pf in enumerate(params.pfs))


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

    With one PF the user of ``rw`` clears the memory itself (the endpoint sweeps ``addr`` over
    every entry, writing 0 each cycle, while no VF exists). With several PFs (``pf_ranges``)
    one PF's VFs are cleared while other PFs' VFs are in use, so the memory clears itself:

    - A P-bit pending mask: all bits set by the conventional reset, bit k by ``clear[k]`` (a
      reset of PF k, or VF Enable clearing on PF k). When no range is being swept, the lowest
      pending PF's range ``[base, base + count)`` is taken (its bit cleared) and swept, writing
      0 to each entry; a PF asked for again while its range is swept is swept again after.
      ``busy[k]``: PF k's bit is pending or its range is being swept.
    - The sweep uses the port only in cycles where ``rw.hold`` is low, so requests to other PFs'
      VFs are served during a clear, and never writes in the cycle after a write (its own or
      ``rw``'s): a PF's range takes 2 cycles per entry when the port is free, longer as requests
      hold it (the sweep waits for as long as ``hold`` stays high). The request side must not
      use PF k's entries while ``busy[k]`` (no VF of PF k exists then).
    - Why the query copies stay right: a query in cycle t reads X, or Y when X is written in
      cycle t; Y is written in cycle t only for a write in cycle t - 1. With no two writes in
      consecutive cycles, the copy read is never the one being written, and holds every write
      before cycle t (Y lags X by one cycle, and there was no write in cycle t - 1 when Y is
      read). With one PF the endpoint's sweep writes every cycle, which breaks this, but only
      while no VF exists and the endpoint ignores the answers; with several PFs other PFs' VFs
      live during a clear, hence the every-other-cycle sweep. ``rw``'s own writes follow a held
      cycle (below), in which the sweep does not write, so they never follow a sweep write.
      (With LUT RAM the query has a read port of its own and needs none of this.)

    Parameters
    ----------
    depth : int
        Entries (TotalVFs; with several PFs their sum, ``vf_entries``).
    layout : data.StructLayout
        One entry (:func:`vf_state_layout`).
    queries : dict
        Query port name -> tuple of field names of ``layout`` it reads.
    pf_ranges : sequence of (int, int), or None
        With two or more PFs: each PF's ``(first entry, entries)``, in PF order
        (:func:`vf_state_ranges`), and the memory clears them itself. ``None`` (one PF): no
        sweep logic and no ``hold``, ``clear``, ``busy``, ``done`` ports.

    Members
    -------
    rw : In(read/write port signature)
        ``addr``, ``w_data``, ``w_en``: written at the clock edge; ``r_data``: the entry at
        ``addr`` two cycles earlier (before any write in that cycle).
        With ``pf_ranges``, also ``hold`` (in): the request side uses the port in this cycle
        (the sweep then leaves it alone). It must be high in each cycle whose ``addr`` a read
        is taken for, in each cycle with ``w_en``, and in the cycle before each ``w_en``; writes
        through ``rw`` come at most every other cycle. It selects the memories' address, so
        drive it from a flip-flop.
    <query name> : In(query port signature), one per query
        ``addr`` in, ``data`` (the query's fields of that entry, concatenated in the order given,
        before any write in the cycle after ``addr``) out two cycles after ``addr``.
    clear : In(P), with ``pf_ranges``
        Bit k high for a cycle: clear PF k's range (its VFs' entries return to reset).
    busy : Out(P), with ``pf_ranges``
        Bit k: PF k's range is pending or being swept; from the cycle after ``clear[k]`` (set
        from reset) until it is clear. Only then do PF k's entries read as reset.
    done : Out(P), with ``pf_ranges``
        Bit k pulses for one cycle, the first with ``busy[k]`` low, when PF k's range is clear.
    """

    BANK_DEPTH = 16384
    #: Depths up to this are expected in distributed (LUT) RAM.
    DISTRIBUTED_DEPTH = 512

    def __init__(self, depth, layout, queries, *, pf_ranges=None):
        self._depth = depth
        self._layout = layout
        self._queries = {name: tuple(fields) for name, fields in queries.items()}
        for name, fields in self._queries.items():
            for f in fields:
                if f not in {n for n, _ in self._layout}:
                    raise ValueError(f"query {name}: {f} is not a field of the layout")
        if pf_ranges is not None:
            pf_ranges = tuple((int(base), int(count)) for base, count in pf_ranges)
            if len(pf_ranges) < 2:
                raise ValueError("pf_ranges: give two or more PFs' ranges (None for one PF, "
                                 "whose user clears the memory)")
            for k, (base, count) in enumerate(pf_ranges):
                if count < 1 or base < 0 or base + count > depth:
                    raise ValueError(f"pf_ranges[{k}]: ({base}, {count}) is not a range of "
                                     f"1 or more of the {depth} entries")
        self._ranges = pf_ranges
        rw_members = {"addr": Out(range(depth)), "r_data": In(self._layout),
                      "w_data": Out(self._layout), "w_en": Out(1)}
        if pf_ranges is not None:
            rw_members["hold"] = Out(1)
        members = {"rw": In(wiring.Signature(rw_members))}
        for name, fields in self._queries.items():
            width = sum(self._layout[f].width for f in fields)
            members[name] = In(wiring.Signature({"addr": Out(range(depth)),
                                                 "data": In(width)}))
        if pf_ranges is not None:
            pfs = len(pf_ranges)
            members.update({"clear": In(pfs), "busy": Out(pfs), "done": Out(pfs)})
        super().__init__(members)

    @property
    def pf_ranges(self):
        return self._ranges

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
        # The port as the memories see it: ``rw``, or with several PFs the sweep's writes.
        addr, w_data, w_en = rw.addr, rw.w_data, rw.w_en
        if self._ranges is not None:
            addr, w_data, w_en = self._sweep(m)
        rw_out = bank_memories("rw", self._layout, addr[:low], addr, w_data, w_en)
        select_bank("rw", addr, rw_out, rw.r_data)

        for name, fields in self._queries.items():
            port = getattr(self, name)
            q_addr = port.addr
            w_bits = Cat(*(getattr(w_data, f) for f in fields))
            width = len(w_bits)
            if depth <= self.DISTRIBUTED_DEPTH:
                out = bank_memories(name, width, addr[:low], addr, w_bits, w_en,
                                    r_addr=q_addr)
                select_bank(name, q_addr, out, port.data)
                continue
            # X is written with the write, Y a cycle later from registers.
            y_en, y_addr = Signal(name=f"{name}_y_en"), Signal(range(depth), name=f"{name}_y_a")
            y_bits = Signal(width, name=f"{name}_y_bits")
            m.d.sync += [y_en.eq(w_en), y_addr.eq(addr), y_bits.eq(w_bits)]
            x_out = bank_memories(f"{name}_x", width, Mux(w_en, addr[:low], q_addr[:low]),
                                  addr, w_bits, w_en)
            y_out = bank_memories(f"{name}_y", width, Mux(y_en, y_addr[:low], q_addr[:low]),
                                  y_addr, y_bits, y_en)
            # Y answers when X is being written; the choice follows the read through its
            # registers.
            use_y, use_y_r = Signal(name=f"{name}_use_y"), Signal(name=f"{name}_use_y_r")
            m.d.sync += [use_y.eq(w_en), use_y_r.eq(use_y)]
            x_data = Signal(width, name=f"{name}_x_data")
            y_data = Signal(width, name=f"{name}_y_data")
            select_bank(f"{name}_x", q_addr, x_out, x_data)
            select_bank(f"{name}_y", q_addr, y_out, y_data)
            m.d.comb += port.data.eq(Mux(use_y_r, y_data, x_data))
        return m

    def _sweep(self, m):
        """The range sweeps (several PFs): returns the address, write data and write enable
        the memories see."""
        ranges = self._ranges
        pfs = len(ranges)
        rw = self.rw
        pending = Signal(pfs, init=(1 << pfs) - 1)     # the conventional reset clears all
        active = Signal()                               # a range is being swept
        current = Signal(range(pfs))
        s_addr = Signal(range(self._depth))
        s_last = Signal(range(self._depth))
        wrote = Signal()                                # the memories were written last cycle
        s_write = Signal()
        m.d.comb += s_write.eq(active & ~rw.hold & ~wrote)
        addr = Signal(range(self._depth), name="mem_addr")
        w_data = Signal(self._layout, name="mem_w_data")
        w_en = Signal(name="mem_w_en")
        m.d.comb += [addr.eq(Mux(s_write, s_addr, rw.addr)),
                     w_data.eq(Mux(s_write, 0, rw.w_data)),
                     w_en.eq(s_write | rw.w_en)]
        m.d.sync += wrote.eq(w_en)

        # The lowest pending PF, and its range (later assignments win).
        pick = Signal()
        pick_pf = Signal(range(pfs))
        pick_bit = Signal(pfs)
        pick_base = Signal(range(self._depth))
        pick_last = Signal(range(self._depth))
        for k in reversed(range(pfs)):
            base, count = ranges[k]
            with m.If(pending[k]):
                m.d.comb += [pick_pf.eq(k), pick_bit.eq(1 << k), pick_base.eq(base),
                             pick_last.eq(base + count - 1)]
        last_write = s_write & (s_addr == s_last)
        m.d.comb += pick.eq(pending.any() & (~active | last_write))
        m.d.sync += pending.eq((pending & ~Mux(pick, pick_bit, 0)) | self.clear)
        with m.If(pick):
            m.d.sync += [active.eq(1), current.eq(pick_pf), s_addr.eq(pick_base),
                         s_last.eq(pick_last)]
        with m.Elif(last_write):
            m.d.sync += active.eq(0)
        with m.Elif(s_write):
            m.d.sync += s_addr.eq(s_addr + 1)

        busy_r = Signal(pfs, init=(1 << pfs) - 1)
        for k in range(pfs):
            m.d.comb += self.busy[k].eq(pending[k] | (active & (current == k)))
        m.d.sync += busy_r.eq(self.busy)
        m.d.comb += self.done.eq(busy_r & ~self.busy)
        return addr, w_data, w_en
