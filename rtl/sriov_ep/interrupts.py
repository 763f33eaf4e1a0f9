"""``MsixEngine``: MSI-X tables, Pending Bit Arrays and message delivery for the PF and its VFs.

MSI-X capability: PCI Express Base, §7.7.2; its rules (masking, pending bits, delivery on
unmasking): §6.1.4.5. The VF side follows the SR-IOV specification: every VF has its own table
and PBA in its slice of a VF BAR, and its own Message Control.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .ram import SlicedMemory

__all__ = ["MAX_VECTORS", "MSG_LATENCY", "TABLE_LATENCY", "MsixEntry", "MsixState",
           "IrqRequest", "MsixMessage", "MsixControl", "TableSizeUpdate", "FunctionReset",
           "TableRequest", "TableResponse", "MsixEngine"]

#: Most vectors a function may have here: the PBA of a function is one QWORD.
MAX_VECTORS = 64

#: Clock edges from the one that accepts an ``irq`` request for a deliverable vector to the
#: earliest one that can transfer its message on ``msg`` (``valid`` rises one cycle before).
MSG_LATENCY = 6

#: Clock edges from the one that accepts a ``tbl_req`` to the earliest one that can transfer its
#: response on ``tbl_res`` (``valid`` rises one cycle before). The engine can accept its next
#: request at the edge after the response is taken (after a write to the QWORD holding Vector
#: Control, once the scan it starts has finished).
TABLE_LATENCY = 7


#: One MSI-X table entry as stored: Message Address bits 31:2 (bits 1:0 always read 0), Message
#: Upper Address, Message Data. Vector Control (its Mask bit) is kept in :func:`MsixState`.
MsixEntry = data.StructLayout({
    "addr_lo": 30,
    "addr_hi": 32,
    "data":    32,
})


def MsixState(vectors):
    """Layout of a function's state (the PF's register, a VF's entry in the VF state memory); all
    zeros is the reset state.

    ``unmasked``: inverted Mask bits (Vector Control bit 0) of each vector. ``pending``: the PBA.
    ``enable``, ``function_mask``, ``bme``: MSI-X Enable, Function Mask, Bus Master Enable.
    ``not_d0``: the function is not in D0. ``table_size_x``: the Table Size field value XOR its
    reset value (``pf_vectors - 1`` for the PF, ``vf_default_vectors - 1`` for a VF).
    """
    return data.StructLayout({
        "unmasked":      vectors,
        "pending":       vectors,
        "enable":        1,
        "function_mask": 1,
        "bme":           1,
        "not_d0":        1,
        "table_size_x":  11,
    })


def _function(total_vfs):
    return range(total_vfs + 1)


def IrqRequest(total_vfs):
    """Layout of an interrupt request: function (0 = PF, n = VF n) and vector."""
    return data.StructLayout({"function": _function(total_vfs), "vector": 11})


def MsixMessage(total_vfs):
    """Layout of an MSI-X message, the posted Memory Write that ``function`` sends.

    ``addr``: Message Upper Address << 32 | Message Address (bits 1:0 zero). ``data``: Message
    Data, the payload (one DWORD).
    """
    return data.StructLayout({"function": _function(total_vfs), "addr": 64, "data": 32})


def MsixControl(total_vfs):
    """Layout of a control update: the state of ``function``'s Message Control and Command
    registers and its power state."""
    return data.StructLayout({"function": _function(total_vfs), "enable": 1, "function_mask": 1,
                              "bme": 1, "d0": 1})


def TableSizeUpdate(total_vfs):
    """Layout of a VF Table Size update: ``size`` is the field value (vectors - 1)."""
    return data.StructLayout({"vf": _function(total_vfs), "size": 11})


def FunctionReset(total_vfs):
    """Layout of a Function Level Reset of one function."""
    return data.StructLayout({"function": _function(total_vfs)})


def TableRequest(total_vfs):
    """Layout of an access to a function's MSI-X table (``pba`` = 0) or PBA (``pba`` = 1).

    ``offset``: byte offset in the table or PBA; the access is to the naturally aligned QWORD
    containing it. ``be``: byte enables of that QWORD; ``data``: its bytes, byte i at bits
    8i+7:8i.
    """
    return data.StructLayout({"function": _function(total_vfs), "pba": 1, "offset": 16,
                              "write": 1, "data": 64, "be": 8})


#: Layout of a response to a :func:`TableRequest`: the QWORD read (0 for a write).
TableResponse = data.StructLayout({"data": 64})


class _Op(enum.Enum, shape=3):
    RESET_FN   = 0
    CTRL       = 1
    TABLE_SIZE = 2
    TABLE      = 3
    IRQ        = 4


def _lowest_set(bits):
    """Index of the lowest set bit of ``bits`` (0 if none): a tree of log2(len) multiplexers."""
    width = max(1, ceil_log2(len(bits)))
    padded = Cat(bits, Const(0, (1 << width) - len(bits)))

    def tree(lo, n):
        if n == 1:
            return padded[lo], []
        any_lo, idx_lo = tree(lo, n // 2)
        any_hi, idx_hi = tree(lo + n // 2, n // 2)
        use_hi = ~any_lo
        index = [Mux(use_hi, h, low) for low, h in zip(idx_lo, idx_hi, strict=True)]
        return any_lo | any_hi, index + [use_hi]

    return Cat(*tree(0, 1 << width)[1])


class MsixEngine(wiring.Component):
    """MSI-X for the PF and every VF: tables, Pending Bit Arrays, masking and message delivery.

    Functions are numbered f = 0 (the PF) and f = n (VF n, 1..TotalVFs). Every VF has room for
    ``vf_vectors`` vectors (its maximum Table Size); the PF has ``pf_vectors``.

    Storage is a register and four memories (:class:`amaranth.lib.memory.Memory`, through
    :class:`~sriov_ep.ram.SlicedMemory`), so the flip-flop and LUT count does not grow with
    TotalVFs; only memory bits do. The PF is kept apart from the VFs, so that the VF memories
    have depths that fill block RAM (not one entry past a power of two):

    - the **table memories**, one :data:`MsixEntry` (94 bits) per vector: the PF's
      (``pf_vectors`` entries, at most 64: LUT RAM), PF vector v at index v; the VFs'
      (``TotalVFs * vf_vectors`` entries), VF n's vector v at ``i * vf_vectors + v``, i = n
      mod TotalVFs (below).
      They are not reset: Message Address, Upper Address and Data keep their contents through
      ``reset_fn``, ``reset_all`` and the design's reset (Linux programs an entry before it
      unmasks it);
    - the **state**, one :func:`MsixState` entry per function (``2V + 15`` bits, V =
      max(pf_vectors, vf_vectors)): the PF's in a register, VF n's at index i = n mod TotalVFs
      of the **VF state memory** (TotalVFs entries: i = n below TotalVFs, 0 for VF TotalVFs, so
      that with TotalVFs a power of two the index is the low bits of n, with no subtraction).
      Mask bits (stored inverted), pending bits, MSI-X Enable, Function Mask, Bus Master
      Enable, D0 (stored inverted) and Table Size (stored XOR its default), so that an all-zeros
      word is the reset state: every vector masked, nothing pending, Enable, Function Mask and
      BME 0, in D0, default Table Size. The engine clears it
      with a sweep of one entry per cycle after the design's reset and after ``reset_all``, so
      no memory needs an initialisation file.

    The VF memories are built by :class:`~sriov_ep.ram.SlicedMemory`: up to 32 entries one
    memory (LUT RAM); deeper, block RAM in slices of 18, 9, 4, 2 or 1 bits (the aspect that
    fits the depth: up to 1024, 2048, 4096, 8192, 16384 entries), and above 16384 entries banks
    of 16384 whose outputs are zero unless addressed, ORed. Synthesis then needs no LUT read
    multiplexer: with pf_vectors = vf_vectors = 4 the VF table takes 94 ECP5 DP16KD (1 bit x
    16384 each) for 4096 VFs, 376 for 16384. The PF's table is read asynchronously (LUT RAM
    without a read register of its own).

    Storage bits: ``94 * (pf_vectors + TotalVFs * vf_vectors) + (TotalVFs + 1) * (2V + 15)``
    (:attr:`memory_bits`; ``2V + 15`` of them are the PF's state register). With pf_vectors = 4
    and vf_vectors = 3: 2,839 bits for 8 VFs, 78,479 for 256, 19,988,574 (about 20 Mbit, more
    block RAM than any ECP5 has) for 65535.

    A function is *deliverable* when MSI-X Enable = 1, Function Mask = 0, Bus Master Enable = 1
    and it is in D0; a vector v is deliverable when its function is, its Mask bit is 0 and v is
    at most the Table Size field value. An interrupt on a vector that is not deliverable sets its
    pending bit (once: one message later, §6.1.4.5); it is held, not dropped, while BME = 0.

    The engine does one operation at a time. From ``IDLE`` it accepts one request, by priority:
    the ``reset_all`` sweep, ``reset_fn``, ``ctrl``, ``table_size``, ``tbl_req``, ``irq``.
    Each request is latched, the function's state entry and the addressed table entry are read
    (each VF memory's output goes straight into a register of its own, then through the PF/VF
    choice into the register that holds it), and the request is executed. After a
    ``ctrl`` update and after a write to an entry's second QWORD (Message Data, Vector Control),
    a scan delivers every pending unmasked vector of the function if it is deliverable, lowest
    first, one per ``msg`` handshake, before the next request is accepted. Memories are
    addressed only from registers (the VF index, set with the function number; the table
    index), and each reads and writes through one address. The PF's and the VFs' read data are
    chosen by a registered is-PF flag before the register that holds them. Writes are decided a
    cycle ahead: every memory's write enable and data come from registers (the entry as it will
    be written), and a write lands in the cycle after the state that decides it.

    Latencies, in clock edges from the edge that accepts a request to the earliest edge that
    can transfer its result: :data:`MSG_LATENCY` (6) for the message of a deliverable ``irq``,
    :data:`TABLE_LATENCY` (7) for a ``tbl_req`` response, 11 for the first message of a scan
    after ``ctrl``, 13 after an unmasking table write (6 after its response is taken), and 6
    from one scanned message's handshake to the next. The next request can be accepted 6 edges
    after a ``reset_fn``, ``table_size``, or an ``irq`` that is held pending or dropped, 8 after
    a ``ctrl`` that delivers nothing, and the edge after a message or response is taken when no
    scan follows. ``irq_dropped`` is high in the cycle after the 5th edge.

    Limits and choices:

    - At most :data:`MAX_VECTORS` (64) vectors per function: a function's PBA is one QWORD.
    - Table accesses are to a naturally aligned QWORD; reads return the whole QWORD (the
      requester keeps the DWORD it asked for); writes honour byte enables byte by byte. Vectors
      beyond the function's Table Size and offsets past the table or PBA read 0 and ignore
      writes, as do functions that have no MSI-X (the PF with ``pf_vectors`` = 0, VFs with
      ``vf_vectors`` = 0) and function numbers above TotalVFs. Vector Control bits other than
      Mask read 0 and ignore writes; the PBA ignores writes.
    - Only ``irq`` checks that a VF exists (``vf_enable`` and n <= ``num_vfs``); the other
      requests come from the configuration side and the BAR decoder, which only address existing
      functions.
    - A Table Size update also returns the vectors past the new size to their reset state
      (masked, not pending), so that growing the table again shows no stale vectors. The PF's
      Table Size is fixed: an update for f = 0 is ignored.
    - ``reset_all`` is remembered: ``busy`` rises the next cycle, the operation in progress
      (with its scan) finishes, then the sweep runs (TotalVFs + 1 cycles).

    Parameters
    ----------
    total_vfs : int
        TotalVFs, 1..65535.
    pf_vectors : int
        PF table size in vectors, 0..64 (0: the PF has no MSI-X).
    vf_vectors : int
        Vectors reserved per VF (its largest Table Size), 0..64 (0: VFs have no MSI-X).
    vf_default_vectors : int, optional
        A VF's Table Size after reset, in vectors (default ``vf_vectors``).

    Members
    -------
    irq : In(stream.Signature(IrqRequest(total_vfs)))
        Interrupt requests. One whose function does not exist, has no MSI-X or whose vector is
        above that function's Table Size is dropped (``irq_dropped``).
    msg : Out(stream.Signature(MsixMessage(total_vfs)))
        MSI-X messages to send, held until ``ready``.
    ctrl : In(stream.Signature(MsixControl(total_vfs)))
        The function's MSI-X Enable, Function Mask, Bus Master Enable and D0, after every
        configuration write to it (also when nothing changed).
    table_size : In(stream.Signature(TableSizeUpdate(total_vfs)))
        Set VF ``vf``'s Table Size field to ``size`` (at most ``vf_vectors - 1``, with the VF's
        MSI-X disabled: the caller guarantees both).
    reset_fn : In(stream.Signature(FunctionReset(total_vfs)))
        Function Level Reset of one function: its state entry returns to the reset state.
    reset_all : In(1)
        One-cycle pulse: every VF's state entry returns to the reset state (a sweep). The PF's
        entry is swept only after the design's reset; a PF reset uses ``reset_fn``.
    busy : Out(1)
        The sweep is waiting or running; no stream is accepted. High after the design's reset.
    tbl_req : In(stream.Signature(TableRequest(total_vfs)))
        Reads and writes of a function's MSI-X table or PBA, one QWORD each.
    tbl_res : Out(stream.Signature(TableResponse))
        One response per ``tbl_req``, in order: the QWORD read, 0 for a write.
    num_vfs : In(16)
        NumVFs.
    vf_enable : In(1)
        VF Enable.
    irq_dropped : Out(1)
        One-cycle pulse for each dropped ``irq`` request.
    """

    def __init__(self, *, total_vfs, pf_vectors, vf_vectors, vf_default_vectors=None):
        for name, value, low, high in (("total_vfs", total_vfs, 1, 65535),
                                       ("pf_vectors", pf_vectors, 0, MAX_VECTORS),
                                       ("vf_vectors", vf_vectors, 0, MAX_VECTORS)):
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"{name}: must be an integer in {low}..{high}, not {value!r}")
        if pf_vectors == 0 and vf_vectors == 0:
            raise ValueError("pf_vectors, vf_vectors: at least one must be nonzero "
                             "(an engine without vectors)")
        self._total_vfs  = total_vfs
        self._pf_vectors = pf_vectors
        self._vf_vectors = vf_vectors
        self._vf_default = vf_vectors if vf_default_vectors is None else vf_default_vectors
        super().__init__({
            "irq":         In(stream.Signature(IrqRequest(total_vfs))),
            "msg":         Out(stream.Signature(MsixMessage(total_vfs))),
            "ctrl":        In(stream.Signature(MsixControl(total_vfs))),
            "table_size":  In(stream.Signature(TableSizeUpdate(total_vfs))),
            "reset_fn":    In(stream.Signature(FunctionReset(total_vfs))),
            "reset_all":   In(1),
            "busy":        Out(1),
            "tbl_req":     In(stream.Signature(TableRequest(total_vfs))),
            "tbl_res":     Out(stream.Signature(TableResponse)),
            "num_vfs":     In(16),
            "vf_enable":   In(1),
            "irq_dropped": Out(1),
        })

    @property
    def total_vfs(self):
        return self._total_vfs

    @property
    def pf_vectors(self):
        return self._pf_vectors

    @property
    def vf_vectors(self):
        return self._vf_vectors

    @property
    def vectors(self):
        """V, the vectors kept in each function's state: max(pf_vectors, vf_vectors)."""
        return max(self._pf_vectors, self._vf_vectors)

    @property
    def table_entries(self):
        """Entries of the table memories, the PF's and the VFs': ``pf_vectors + total_vfs *
        vf_vectors``."""
        return self._pf_vectors + self._total_vfs * self._vf_vectors

    @property
    def memory_bits(self):
        """Bits of storage: 94 per table entry, ``2V + 15`` per function (the memories, and the
        PF's state register)."""
        return (MsixEntry.size * self.table_entries
                + (self._total_vfs + 1) * MsixState(self.vectors).size)

    def elaborate(self, platform):
        m = Module()
        T, P, Q = self._total_vfs, self._pf_vectors, self._vf_vectors
        V = self.vectors
        vbits = max(1, ceil_log2(V))
        state_layout = MsixState(V)

        # The PF apart from the VFs: its state entry in a register, its table in a memory of
        # its own (LUT RAM); VF n's state at index i = n mod T of the VF state memory, its vector
        # v at i * Q + v of the VF table memory. Both VF memories are sliced for block RAM.
        pf_st = Signal(state_layout)
        m.submodules.vf_state = vf_st = SlicedMemory(state_layout, T)
        if P:
            # Read asynchronously, so that LUT RAM needs no read register of its own: tbl_idx
            # holds still, and nothing is written, from the cycle after it is set to the one
            # that uses the entry (the one where a synchronous read's data would come).
            m.submodules.pf_table = pf_tbl = memory.Memory(shape=MsixEntry, depth=max(2, P),
                                                           init=[])
            pf_tbl_wr, pf_tbl_rd = pf_tbl.write_port(), pf_tbl.read_port(domain="comb")
        if Q:
            m.submodules.vf_table = vf_tbl = SlicedMemory(MsixEntry, T * Q)
        tbl_bits = max(1, ceil_log2(max(P, T * Q)))
        # Writes are decided a cycle ahead, so that every memory's write enable and data come
        # straight from registers: when ``st_we`` is high, the state entry at ``vf_idx`` (or the
        # PF's register) takes ``st_r`` at the end of that cycle; when ``tbl_we`` is high, the
        # table entry at ``tbl_idx`` takes ``tb_r``. Where it goes follows ``is_pf``. A write
        # lands in the cycle after the state that decides it (IDLE, RESPOND, SCAN_FIND, or the
        # next SWEEP cycle), where the address has not moved yet and nothing reads it.
        st_we      = Signal()
        tbl_we     = Signal()

        # The request being executed. ``op_f`` also counts the sweep; ``vf_idx`` (op_f mod T) and
        # ``is_pf`` (op_f = 0) are set with it: ``vf_idx`` is the VF state memory's one address,
        # ``tbl_idx`` the table memories'.
        op         = Signal(_Op)
        op_f       = Signal(range(T + 1))
        vf_idx     = Signal(max(1, ceil_log2(T)))
        is_pf      = Signal()
        op_v       = Signal(12)           # irq vector, or table entry (offset bits 15:4)
        op_half    = Signal()             # offset bit 3: QWORD 1 of the entry
        op_pba_ok  = Signal()             # PBA offset inside QWORD 0
        op_write   = Signal()
        op_data    = Signal(64)
        op_be      = Signal(8)
        op_pba     = Signal()
        op_ctrl    = Signal(MsixControl(T))
        op_size    = Signal(11)
        tbl_idx    = Signal(tbl_bits)
        st_r       = Signal(state_layout) # the function's state entry, as it will be written
        tb_r       = Signal(MsixEntry)    # the table entry read, then as it will be written
        m.d.comb += [vf_st.addr.eq(vf_idx), vf_st.w_data.eq(st_r),
                     vf_st.w_en.eq(st_we & ~is_pf)]
        with m.If(st_we & is_pf):
            m.d.sync += pf_st.eq(st_r)
        # Block RAM read data (ECP5 DP16KD: over 5 ns from the clock to its output) goes straight
        # into a register of its own, sampled every cycle, with no logic on the way: st_raw and
        # tb_raw hold what the VF memories read one edge earlier.
        st_raw = Signal(state_layout)
        m.d.sync += st_raw.eq(vf_st.r_data)
        tbl_rdata = Signal(MsixEntry)     # the table entry read, from the function's memory
        rdata = []
        if P:
            m.d.comb += [pf_tbl_wr.addr.eq(tbl_idx), pf_tbl_rd.addr.eq(tbl_idx),
                         pf_tbl_wr.data.eq(tb_r), pf_tbl_wr.en.eq(tbl_we & is_pf)]
            rdata.append(pf_tbl_rd.data)
        if Q:
            tb_raw = Signal(MsixEntry)
            m.d.comb += [vf_tbl.addr.eq(tbl_idx), vf_tbl.w_data.eq(tb_r),
                         vf_tbl.w_en.eq(tbl_we & ~is_pf)]
            m.d.sync += tb_raw.eq(vf_tbl.r_data)
            rdata.append(tb_raw)
        m.d.comb += tbl_rdata.eq(Mux(is_pf, *rdata) if P and Q else rdata[0])

        # Set with op_f from IDLE.
        new_f      = Signal(range(T + 1))
        new_idx    = Signal.like(vf_idx)
        new_pf     = Signal()
        load_f     = Signal()
        with m.If(load_f):
            m.d.sync += [op_f.eq(new_f), vf_idx.eq(new_idx), is_pf.eq(new_pf)]

        def vf_index(function):
            """VF n's index in the VF memories: n mod TotalVFs (n itself below TotalVFs, 0 for
            VF TotalVFs). With TotalVFs a power of two that is the low bits of n, with no logic
            (no subtraction on the path from the requesters' payloads)."""
            if T == 1:
                return Const(0, 1)
            if T & (T - 1) == 0:
                return function[:len(vf_idx)]
            return Mux(function == T, 0, function[:len(vf_idx)])

        def take(function):
            """Load ``function`` as the operation's function. Its index and is-PF flag are
            computed from each source before the priority multiplexer, not after it."""
            return [new_f.eq(function), new_idx.eq(vf_index(function)),
                    new_pf.eq(function == 0)]

        # Registered in LOOKUP, from op_f and the inputs.
        f_valid    = Signal()             # op_f <= TotalVFs: it has a state entry
        f_ok       = Signal()             # ... and its kind of function has MSI-X
        exists     = Signal()             # ... and it exists now (PF, or VF n <= NumVFs)
        base       = Signal(tbl_bits)
        ts_default = Signal(11)
        v_limit    = Signal(7)            # vectors reserved for op_f
        therm      = Signal(V)            # bit v: v <= op_size
        # Registered in FETCH and CHECK.
        v_ok       = Signal()             # op_v < v_limit
        in_range   = Signal()             # f_ok, and op_v is inside the function's table
        irq_ok     = Signal()             # exists and in_range: the irq is not dropped
        v_unmasked = Signal()
        v_deliv    = Signal()             # vector op_v unmasked and its function deliverable
        v_onehot   = Signal(V)
        resp       = Signal(64)
        # Scan.
        cand       = Signal(V)
        scan_bit   = Signal(V)
        scanning   = Signal()             # SEND returns to the scan

        sweep_req = Signal(init=1)        # also after the design's reset
        # The sweep after the design's reset covers the PF's entry too; one asked for by
        # ``reset_all`` only the VFs' (VF Enable clearing must not touch the PF's MSI-X).
        sweep_all = Signal(init=1)

        def deliverable(enable, function_mask, bme, d0):
            return enable & ~function_mask & bme & d0

        st_deliverable = deliverable(st_r.enable, st_r.function_mask, st_r.bme, ~st_r.not_d0)

        m.d.sync += [self.irq_dropped.eq(0), st_we.eq(0), tbl_we.eq(0)]


        with m.FSM() as fsm:
            with m.State("IDLE"):
                # The operands, op and the function are loaded in every IDLE cycle, from
                # whichever request offers them (an operation reads only its own; op and the
                # function by priority, IRQ and 0 when nothing is offered), so that no clock
                # enable waits for the priority decision.
                req = self.tbl_req.payload
                m.d.comb += load_f.eq(1)
                m.d.sync += op.eq(Mux(self.reset_fn.valid, _Op.RESET_FN,
                                  Mux(self.ctrl.valid, _Op.CTRL,
                                  Mux(self.table_size.valid, _Op.TABLE_SIZE,
                                  Mux(self.tbl_req.valid, _Op.TABLE, _Op.IRQ)))))
                m.d.sync += [op_ctrl.eq(self.ctrl.payload),
                             op_size.eq(self.table_size.payload.size),
                             op_v.eq(Mux(self.tbl_req.valid, req.offset[4:],
                                         self.irq.payload.vector)),
                             op_half.eq(req.offset[3]), op_pba_ok.eq(req.offset[3:] == 0),
                             op_write.eq(req.write), op_data.eq(req.data),
                             op_be.eq(req.be), op_pba.eq(req.pba)]
                with m.If(sweep_req):
                    m.d.sync += [sweep_req.eq(0), sweep_all.eq(0), st_r.eq(0), st_we.eq(1)]
                    # The sweep writes index op_f - 1 for VF op_f: every index once.
                    m.d.comb += [*take(Mux(sweep_all, 0, 1)), new_idx.eq(0)]
                    m.next = "SWEEP"
                with m.Elif(self.reset_fn.valid):
                    m.d.comb += self.reset_fn.ready.eq(1)
                    m.d.comb += take(self.reset_fn.payload.function)
                    m.next = "LOOKUP"
                with m.Elif(self.ctrl.valid):
                    m.d.comb += self.ctrl.ready.eq(1)
                    m.d.comb += take(self.ctrl.payload.function)
                    m.next = "LOOKUP"
                with m.Elif(self.table_size.valid):
                    m.d.comb += self.table_size.ready.eq(1)
                    m.d.comb += take(self.table_size.payload.vf)
                    m.next = "LOOKUP"
                with m.Elif(self.tbl_req.valid):
                    m.d.comb += self.tbl_req.ready.eq(1)
                    m.d.comb += take(req.function)
                    m.next = "LOOKUP"
                with m.Elif(self.irq.valid):
                    m.d.comb += self.irq.ready.eq(1)
                    m.d.comb += take(self.irq.payload.function)
                    m.next = "LOOKUP"

            with m.State("SWEEP"):
                # st_we is high and st_r zero in every SWEEP cycle: one entry cleared per cycle.
                m.d.sync += [op_f.eq(op_f + 1), vf_idx.eq(op_f), is_pf.eq(0)]
                with m.If(op_f == T):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += st_we.eq(1)

            with m.State("LOOKUP"):
                # The VF state memory reads vf_idx in this cycle.
                pf = is_pf
                # Always true when T + 1 is a power of two: leave the comparison out then
                # (Verilator -Wall: CMPCONST).
                valid = op_f <= T if (T + 1) & T else Const(1, 1)
                kind_ok = Mux(pf, int(P > 0), int(Q > 0))
                m.d.sync += [
                    f_valid.eq(valid),
                    f_ok.eq(valid & kind_ok),
                    exists.eq(valid & kind_ok & (pf | (self.vf_enable & (op_f <= self.num_vfs)))),
                    base.eq(Mux(pf, 0, vf_idx * Q)),
                    ts_default.eq(Mux(pf, max(P - 1, 0), max(self._vf_default - 1, 0))),
                    v_limit.eq(Mux(pf, P, Q)),
                    # (``op_size >= 0`` always holds: a constant, Verilator -Wall: UNSIGNED)
                    therm.eq(Cat(*(op_size >= v if v else Const(1, 1) for v in range(V)))),
                ]
                m.next = "ALIGN"

            with m.State("ALIGN"):
                # st_raw takes the VF state entry read.
                m.d.sync += [tbl_idx.eq(base + op_v[:vbits]),
                             v_ok.eq(f_ok & (op_v < v_limit)),
                             v_onehot.eq(Const(1, V) << op_v[:vbits])]
                m.next = "FETCH"

            with m.State("FETCH"):
                # The table memories read tbl_idx in this cycle.
                m.d.sync += st_r.eq(Mux(is_pf, pf_st, st_raw))
                m.next = "CHECK"

            with m.State("CHECK"):
                # tb_raw takes the VF table entry read. With v_ok, op_v is below
                # v_limit <= 2 ** vbits: its low bits alone compare with the Table Size.
                cur_ts = st_r.table_size_x ^ ts_default
                inside = v_ok & (op_v[:vbits] <= cur_ts)
                unmasked = st_r.unmasked.bit_select(op_v[:vbits], 1)
                m.d.sync += [
                    in_range.eq(inside),
                    irq_ok.eq(exists & inside),
                    v_unmasked.eq(unmasked),
                    v_deliv.eq(st_deliverable & unmasked),
                ]
                m.next = "EXEC"

            with m.State("EXEC"):
                m.d.sync += tb_r.eq(tbl_rdata)
                # st_r takes the new state entry whether or not it is written: it is read again
                # only by a scan that follows the write.
                with m.Switch(op):
                    with m.Case(_Op.RESET_FN):
                        m.d.sync += [st_r.eq(0), st_we.eq(f_valid)]
                        m.next = "IDLE"
                    with m.Case(_Op.TABLE_SIZE):
                        m.d.sync += [
                            st_r.table_size_x.eq(op_size ^ ts_default),
                            st_r.pending.eq(st_r.pending & therm),
                            st_r.unmasked.eq(st_r.unmasked & therm),
                            st_we.eq(f_valid & ~is_pf),
                        ]
                        m.next = "IDLE"
                    with m.Case(_Op.CTRL):
                        m.d.sync += [
                            st_r.enable.eq(op_ctrl.enable),
                            st_r.function_mask.eq(op_ctrl.function_mask),
                            st_r.bme.eq(op_ctrl.bme),
                            st_r.not_d0.eq(~op_ctrl.d0),
                            st_we.eq(f_valid),
                        ]
                        with m.If(f_valid):
                            m.next = "SCAN_FIND"
                        with m.Else():
                            m.next = "IDLE"
                    with m.Case(_Op.IRQ):
                        m.d.sync += [st_r.pending.eq(st_r.pending | v_onehot),
                                     st_we.eq(irq_ok & ~v_deliv)]
                        with m.If(~irq_ok):
                            m.d.sync += self.irq_dropped.eq(1)
                            m.next = "IDLE"
                        with m.Elif(v_deliv):
                            m.d.sync += scanning.eq(0)
                            m.next = "SEND"
                        with m.Else():
                            m.next = "IDLE"
                    with m.Case(_Op.TABLE):
                        m.next = "TABLE"

            with m.State("TABLE"):
                # tb_r holds the entry; QWORD 0 is the address, QWORD 1 data and Vector Control.
                old = Mux(op_half, Cat(tb_r.data, ~v_unmasked, Const(0, 31)),
                          Cat(Const(0, 2), tb_r.addr_lo, tb_r.addr_hi))
                merged = Cat(*(Mux(op_be[i], op_data.word_select(i, 8), old.word_select(i, 8))
                               for i in range(8)))
                # tb_r and st_r take the entries as written (in RESPOND, by tbl_we and st_we).
                with m.If(op_half):
                    m.d.sync += [
                        tb_r.data.eq(merged[:32]),
                        st_r.unmasked.eq(Mux(merged[32], st_r.unmasked & ~v_onehot,
                                             st_r.unmasked | v_onehot)),
                    ]
                with m.Else():
                    m.d.sync += [tb_r.addr_lo.eq(merged[2:32]), tb_r.addr_hi.eq(merged[32:])]
                write = op_write & ~op_pba & in_range
                m.d.sync += [tbl_we.eq(write), st_we.eq(write & op_half)]
                with m.If(op_write):
                    m.d.sync += resp.eq(0)
                with m.Elif(op_pba):
                    m.d.sync += resp.eq(Mux(f_ok & op_pba_ok, st_r.pending, 0))
                with m.Else():
                    m.d.sync += resp.eq(Mux(in_range, old, 0))
                m.next = "RESPOND"

            with m.State("RESPOND"):
                m.d.comb += [self.tbl_res.valid.eq(1), self.tbl_res.payload.data.eq(resp)]
                with m.If(self.tbl_res.ready):
                    # An unmasking write may make a pending vector deliverable.
                    m.next = "IDLE"
                    with m.If(op_write & ~op_pba & in_range & op_half):
                        m.next = "SCAN_FIND"

            # The scan: every pending, unmasked vector of a deliverable function, lowest first.
            with m.State("SCAN_FIND"):
                m.d.sync += cand.eq(st_r.pending & st_r.unmasked & st_deliverable.replicate(V))
                m.next = "SCAN_PICK"

            with m.State("SCAN_PICK"):
                m.d.sync += [tbl_idx.eq(base + _lowest_set(cand)),
                             scan_bit.eq(cand & (~cand + 1)[:V])]
                with m.If(cand == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SCAN_READ"

            with m.State("SCAN_READ"):
                # The table memories read tbl_idx in this cycle.
                m.next = "SCAN_RAW"

            with m.State("SCAN_RAW"):
                # tb_raw takes the VF table entry read.
                m.next = "SCAN_LOAD"

            with m.State("SCAN_LOAD"):
                m.d.sync += [tb_r.eq(tbl_rdata), scanning.eq(1)]
                m.next = "SEND"

            with m.State("SEND"):
                m.d.comb += [
                    self.msg.valid.eq(1),
                    self.msg.payload.function.eq(op_f),
                    self.msg.payload.addr.eq(Cat(Const(0, 2), tb_r.addr_lo, tb_r.addr_hi)),
                    self.msg.payload.data.eq(tb_r.data),
                ]
                with m.If(self.msg.ready):
                    with m.If(scanning):
                        m.d.sync += [st_r.pending.eq(st_r.pending & ~scan_bit), st_we.eq(1)]
                        m.next = "SCAN_FIND"
                    with m.Else():
                        m.next = "IDLE"


        # busy is sweep_req | (in SWEEP), kept in a register of its own (the signal is used by the
        # configuration side): high after the design's reset and after reset_all, low from the
        # edge that ends the sweep.
        busy = Signal(init=1)
        m.d.comb += self.busy.eq(busy)
        with m.If(fsm.ongoing("SWEEP") & (op_f == T)):
            m.d.sync += busy.eq(0)
        with m.If(self.reset_all):
            m.d.sync += [sweep_req.eq(1), busy.eq(1)]

        return m
