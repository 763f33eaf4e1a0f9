"""``MsixEngine``: MSI-X tables, Pending Bit Arrays and message delivery for the PF and its VFs.

MSI-X capability: PCI Express Base, §7.7.2; its rules (masking, pending bits, delivery on
unmasking): §6.1.4.5. The VF side follows the SR-IOV specification: every VF has its own table
and PBA in its slice of a VF BAR, and its own Message Control.
"""

from typing import NamedTuple

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .ram import SlicedMemory

__all__ = ["MAX_VECTORS", "MSG_LATENCY", "TABLE_LATENCY", "MsixEntry", "MsixState", "MsixPf",
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


def _multi(num_pfs, vf_entries, fields, *, index=True, name="function"):
    """``fields`` (today's layout, led by the function) for one PF; for several, led by ``pf``
    and followed by the global VF ``index`` when the requester supplies it."""
    if num_pfs == 1:
        return data.StructLayout(fields)
    head = {"pf": range(num_pfs), name: fields.pop(name)}
    if index:
        head["index"] = range(vf_entries)
    return data.StructLayout(head | fields)


def IrqRequest(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of an interrupt request: function (0 = PF, n = VF n) and vector.

    With ``num_pfs`` > 1 (``total_vfs`` then the largest TotalVFs): led by ``pf``, the PF index;
    ``function`` is 0 for PF ``pf`` itself, n for its VF n. This and the other layouts below
    take ``vf_entries`` (the sum of the PFs' TotalVFs) when ``num_pfs`` > 1.
    """
    return _multi(num_pfs, vf_entries, {"function": _function(total_vfs), "vector": 11},
                  index=False)


def MsixMessage(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of an MSI-X message, the posted Memory Write that ``function`` sends.

    ``addr``: Message Upper Address << 32 | Message Address (bits 1:0 zero). ``data``: Message
    Data, the payload (one DWORD). With several PFs, ``pf`` names the PF of ``function``.
    """
    return _multi(num_pfs, vf_entries,
                  {"function": _function(total_vfs), "addr": 64, "data": 32}, index=False)


def MsixControl(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of a control update: the state of ``function``'s Message Control and Command
    registers and its power state. With several PFs, ``pf`` and ``index`` (see
    :class:`MsixEngine`) lead."""
    return _multi(num_pfs, vf_entries, {"function": _function(total_vfs), "enable": 1,
                                        "function_mask": 1, "bme": 1, "d0": 1})


def TableSizeUpdate(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of a VF Table Size update: ``size`` is the field value (vectors - 1)."""
    return _multi(num_pfs, vf_entries, {"vf": _function(total_vfs), "size": 11}, name="vf")


def FunctionReset(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of a Function Level Reset of one function."""
    return _multi(num_pfs, vf_entries, {"function": _function(total_vfs)})


def TableRequest(total_vfs, num_pfs=1, vf_entries=None):
    """Layout of an access to a function's MSI-X table (``pba`` = 0) or PBA (``pba`` = 1).

    ``offset``: byte offset in the table or PBA; the access is to the naturally aligned QWORD
    containing it. ``be``: byte enables of that QWORD; ``data``: its bytes, byte i at bits
    8i+7:8i.
    """
    return _multi(num_pfs, vf_entries, {"function": _function(total_vfs), "pba": 1,
                                        "offset": 16, "write": 1, "data": 64, "be": 8})


class MsixPf(NamedTuple):
    """One PF's MSI-X sizes for :class:`MsixEngine`: see its parameters of the same names."""
    total_vfs: int
    pf_vectors: int
    vf_vectors: int
    vf_default_vectors: int | None = None


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

    **Several PFs** (``pfs=``, docs/multi-pf.md §8). With one PF (the flat sizes, or ``pfs``
    of one entry) the engine, its ports and latencies are as above; everything below is built
    only with P > 1 PFs. PF k's function n (0 = the PF itself, n = its VF n) is stored at:

    - PF table (LUT RAM, every PF's ``pf_vectors``): ``pf_table_base(k) + v``;
    - PF state (LUT RAM, P entries, read asynchronously like the one PF's register): ``k``;
    - VF table (``vf_entries * Qmax``, Qmax = :attr:`vf_stride`, the largest ``vf_vectors``):
      ``(vf_base(k) + n - 1) * Qmax + v``;
    - VF state (``vf_entries`` entries): ``vf_base(k) + n - 1``, the VF's *global index*.

    Per-PF constants (TotalVFs, Table Size defaults, vector counts, whether the PF and its VFs
    have MSI-X) are chosen by the operation's PF. Every stream carries ``pf``; ``msg`` carries
    ``pf`` and ``function``. ``ctrl``, ``table_size``, ``reset_fn`` and ``tbl_req`` also carry
    ``index``, the global index of a VF (ignored for function 0), which the requester computes
    from registers: the configuration side has it as its VF state memory address, the memory
    router computes it in its register stage. ``irq`` carries no index: the engine computes it
    in a registered input stage, which it loads when it would take the irq at once (IDLE,
    nothing else offered) and empties in the next cycle before anything else, so requests are
    still executed in the order they are accepted; :attr:`msg_latency` is
    :data:`MSG_LATENCY` + 1. ``tbl_req`` keeps :data:`TABLE_LATENCY`. An index past the PFs
    (``pf`` >= P), or a function above its PF's TotalVFs, is no function: its irq is dropped,
    its table reads 0, its writes are ignored.

    ``reset_all`` and the one ``busy`` bit become per-PF: ``reset_vfs`` bit k (VF Enable
    clearing) returns PF k's VFs' state entries to reset, ``reset_pf`` bit k (a PF reset) PF
    k's own entry as well; both pulses set bit k of a pending mask, and ``busy`` bit k is high
    while PF k's clear is pending or running (all bits after the design's reset, which clears
    every PF's entries). One PF's range is swept at a time, lowest pending PF first: a cycle to
    start, one for the PF's own entry (if asked), one per VF (2 + TotalVFs for the design's
    reset). The sweep runs in IDLE cycles and is interruptible: requests of PFs that are not
    busy are taken meanwhile (those of a busy PF wait, other PFs' requests are not held behind
    them), and after each request taken the sweep has the next IDLE cycle, so an interrupt of
    another PF waits at most one cycle for it and the sweep ends however many requests come.
    ``busy`` is a register (bit k high from the cycle after the pulse), and each stream's
    ``ready`` depends only on registers and on the ``valid`` and ``pf`` of the streams offered
    (the sweep's turn is decided from registers, not from the other requests).

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
    pfs : sequence of :class:`MsixPf`, optional
        Instead of the four sizes above: one ``MsixPf(total_vfs, pf_vectors, vf_vectors,
        vf_default_vectors=None)`` per PF, by PF index (their TotalVFs summing to at most
        65535).

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

    With several PFs the streams' layouts gain ``pf`` (and ``index``, above), and
    ``reset_all``, ``busy``, ``num_vfs``, ``vf_enable`` are replaced by:

    reset_pf : In(P)
        Bit k: a one-cycle pulse, PF k's entry and its VFs' entries return to reset.
    reset_vfs : In(P)
        Bit k: a one-cycle pulse, PF k's VFs' entries return to reset (not the PF's).
    busy : Out(P)
        Bit k: PF k's clear is pending or running; no request of PF k is accepted.
    num_vfs : In(ArrayLayout(16, P))
        NumVFs of each PF.
    vf_enable : In(P)
        VF Enable of each PF.
    """

    def __init__(self, *, total_vfs=None, pf_vectors=None, vf_vectors=None,
                 vf_default_vectors=None, pfs=None):
        if pfs is None:
            pfs = (MsixPf(total_vfs, pf_vectors, vf_vectors, vf_default_vectors),)
            names = [""]
        elif (total_vfs, pf_vectors, vf_vectors, vf_default_vectors) != (None,) * 4:
            raise TypeError("MsixEngine: give pfs=... or the flat sizes, not both")
        else:
            pfs = tuple(MsixPf(*pf) for pf in pfs)
            if not pfs:
                raise ValueError("pfs: at least one PF")
            names = [""] if len(pfs) == 1 else [f"pfs[{k}]." for k in range(len(pfs))]
        for pf, prefix in zip(pfs, names, strict=True):
            for name, value, low, high in (("total_vfs", pf.total_vfs, 1, 65535),
                                           ("pf_vectors", pf.pf_vectors, 0, MAX_VECTORS),
                                           ("vf_vectors", pf.vf_vectors, 0, MAX_VECTORS)):
                if (not isinstance(value, int) or isinstance(value, bool)
                        or not low <= value <= high):
                    raise ValueError(f"{prefix}{name}: must be an integer in {low}..{high}, "
                                     f"not {value!r}")
        if all(pf.pf_vectors == 0 and pf.vf_vectors == 0 for pf in pfs):
            raise ValueError("pf_vectors, vf_vectors: at least one must be nonzero "
                             "(an engine without vectors)")
        if len(pfs) > 1 and sum(pf.total_vfs for pf in pfs) > 65535:
            raise ValueError("pfs: the PFs' TotalVFs must sum to at most 65535")
        pfs = tuple(pf._replace(vf_default_vectors=pf.vf_vectors) if pf.vf_default_vectors
                    is None else pf for pf in pfs)
        self._pfs = pfs
        self._total_vfs  = pfs[0].total_vfs
        self._pf_vectors = pfs[0].pf_vectors
        self._vf_vectors = pfs[0].vf_vectors
        self._vf_default = pfs[0].vf_default_vectors
        P = len(pfs)
        if P == 1:
            t = self._total_vfs
            super().__init__({
                "irq":         In(stream.Signature(IrqRequest(t))),
                "msg":         Out(stream.Signature(MsixMessage(t))),
                "ctrl":        In(stream.Signature(MsixControl(t))),
                "table_size":  In(stream.Signature(TableSizeUpdate(t))),
                "reset_fn":    In(stream.Signature(FunctionReset(t))),
                "reset_all":   In(1),
                "busy":        Out(1),
                "tbl_req":     In(stream.Signature(TableRequest(t))),
                "tbl_res":     Out(stream.Signature(TableResponse)),
                "num_vfs":     In(16),
                "vf_enable":   In(1),
                "irq_dropped": Out(1),
            })
            return
        args = (max(pf.total_vfs for pf in pfs), P, self.vf_entries)
        super().__init__({
            "irq":         In(stream.Signature(IrqRequest(*args))),
            "msg":         Out(stream.Signature(MsixMessage(*args))),
            "ctrl":        In(stream.Signature(MsixControl(*args))),
            "table_size":  In(stream.Signature(TableSizeUpdate(*args))),
            "reset_fn":    In(stream.Signature(FunctionReset(*args))),
            "reset_pf":    In(P),
            "reset_vfs":   In(P),
            "busy":        Out(P),
            "tbl_req":     In(stream.Signature(TableRequest(*args))),
            "tbl_res":     Out(stream.Signature(TableResponse)),
            "num_vfs":     In(data.ArrayLayout(16, P)),
            "vf_enable":   In(P),
            "irq_dropped": Out(1),
        })

    def _one_pf(self, name):
        if len(self._pfs) > 1:
            raise AttributeError(f"{name!r} is per PF and this engine has {len(self._pfs)} "
                                 f"PFs: use pfs[k].{name}")

    @property
    def pfs(self):
        """The PFs' sizes, a tuple of :class:`MsixPf` (``vf_default_vectors`` filled in)."""
        return self._pfs

    @property
    def num_pfs(self):
        return len(self._pfs)

    @property
    def total_vfs(self):
        self._one_pf("total_vfs")
        return self._total_vfs

    @property
    def pf_vectors(self):
        self._one_pf("pf_vectors")
        return self._pf_vectors

    @property
    def vf_vectors(self):
        self._one_pf("vf_vectors")
        return self._vf_vectors

    @property
    def vectors(self):
        """V, the vectors kept in each function's state: the largest ``pf_vectors`` or
        ``vf_vectors`` of any PF."""
        return max(max(pf.pf_vectors, pf.vf_vectors) for pf in self._pfs)

    @property
    def vf_stride(self):
        """Qmax, table entries per VF: the largest ``vf_vectors`` of any PF."""
        return max(pf.vf_vectors for pf in self._pfs)

    def vf_base(self, k):
        """Global index of PF ``k``'s VF 1: the TotalVFs of PFs 0..k-1."""
        return sum(pf.total_vfs for pf in self._pfs[:k])

    @property
    def vf_entries(self):
        """Entries of the VF state memory: every PF's TotalVFs."""
        return sum(pf.total_vfs for pf in self._pfs)

    def pf_table_base(self, k):
        """Index of PF ``k``'s vector 0 in the PF table memory: the vectors of PFs 0..k-1."""
        return sum(pf.pf_vectors for pf in self._pfs[:k])

    @property
    def msg_latency(self):
        """:data:`MSG_LATENCY`, plus one with several PFs (the ``irq`` input stage)."""
        return MSG_LATENCY + (len(self._pfs) > 1)

    @property
    def table_latency(self):
        """:data:`TABLE_LATENCY`, with any number of PFs."""
        return TABLE_LATENCY

    @property
    def table_entries(self):
        """Entries of the table memories, the PFs' and the VFs': ``pf_vectors + total_vfs *
        vf_vectors`` (several PFs: every PF's vectors, plus ``vf_entries`` times Qmax)."""
        return self.pf_table_base(len(self._pfs)) + self.vf_entries * self.vf_stride

    @property
    def memory_bits(self):
        """Bits of storage: 94 per table entry, ``2V + 15`` per function (the memories, and the
        PFs' state)."""
        return (MsixEntry.size * self.table_entries
                + (self.vf_entries + len(self._pfs)) * MsixState(self.vectors).size)

    def elaborate(self, platform):
        m = Module()
        NP = len(self._pfs)
        multi = NP > 1
        if multi:
            # T: state entries of the VF memory; P: PF table entries; Q: Qmax, the VF stride.
            T, P, Q = self.vf_entries, self.pf_table_base(NP), self.vf_stride
            T_max = max(pf.total_vfs for pf in self._pfs)
        else:
            T, P, Q = self._total_vfs, self._pf_vectors, self._vf_vectors
            T_max = T
        V = self.vectors
        vbits = max(1, ceil_log2(V))
        state_layout = MsixState(V)

        # The PF apart from the VFs: its state entry in a register, its table in a memory of
        # its own (LUT RAM); VF n's state at index i = n mod T of the VF state memory, its vector
        # v at i * Q + v of the VF table memory. Both VF memories are sliced for block RAM.
        if multi:
            # The PFs' state entries: one per PF, LUT RAM read asynchronously (like the register
            # of one PF), at the PF index ``op_pf``.
            m.submodules.pf_state = pf_st_mem = memory.Memory(shape=state_layout,
                                                              depth=max(2, NP), init=[])
            pf_st_wr, pf_st_rd = pf_st_mem.write_port(), pf_st_mem.read_port(domain="comb")
            pf_st = pf_st_rd.data
        else:
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
        op_f       = Signal(range(T_max + 1))
        vf_idx     = Signal(max(1, ceil_log2(T)))
        op_pf      = Signal(range(NP))    # the PF index (several PFs only)
        is_pf      = Signal()
        op_v       = Signal(12)           # irq vector, or table entry (offset bits 15:4)
        op_half    = Signal()             # offset bit 3: QWORD 1 of the entry
        op_pba_ok  = Signal()             # PBA offset inside QWORD 0
        op_write   = Signal()
        op_data    = Signal(64)
        op_be      = Signal(8)
        op_pba     = Signal()
        op_ctrl    = Signal(MsixControl(T_max, NP, T))
        op_size    = Signal(11)
        tbl_idx    = Signal(tbl_bits)
        st_r       = Signal(state_layout) # the function's state entry, as it will be written
        tb_r       = Signal(MsixEntry)    # the table entry read, then as it will be written
        m.d.comb += [vf_st.addr.eq(vf_idx), vf_st.w_data.eq(st_r),
                     vf_st.w_en.eq(st_we & ~is_pf)]
        if multi:
            m.d.comb += [pf_st_wr.addr.eq(op_pf), pf_st_rd.addr.eq(op_pf),
                         pf_st_wr.data.eq(st_r), pf_st_wr.en.eq(st_we & is_pf)]
        else:
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
        new_f      = Signal(range(T_max + 1))
        new_idx    = Signal.like(vf_idx)
        new_pf     = Signal()
        new_k      = Signal.like(op_pf)
        load_f     = Signal()
        with m.If(load_f):
            m.d.sync += [op_f.eq(new_f), vf_idx.eq(new_idx), is_pf.eq(new_pf)]
            if multi:
                m.d.sync += op_pf.eq(new_k)

        def vf_index(function):
            """VF n's index in the VF memories: n mod TotalVFs (n itself below TotalVFs, 0 for
            VF TotalVFs). With TotalVFs a power of two that is the low bits of n, with no logic
            (no subtraction on the path from the requesters' payloads)."""
            if T == 1:
                return Const(0, 1)
            if T & (T - 1) == 0:
                return function[:len(vf_idx)]
            return Mux(function == T, 0, function[:len(vf_idx)])

        def take(function, payload=None):
            """Load ``function`` as the operation's function. Its index and is-PF flag are
            computed from each source before the priority multiplexer, not after it. With
            several PFs the index and the PF come with the request (``payload``)."""
            if multi:
                return [new_f.eq(function), new_idx.eq(payload.index),
                        new_pf.eq(function == 0), new_k.eq(payload.pf)]
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

        if not multi:
            sweep_req = Signal(init=1)        # also after the design's reset
            # The sweep after the design's reset covers the PF's entry too; one asked for by
            # ``reset_all`` only the VFs' (VF Enable clearing must not touch the PF's MSI-X).
            sweep_all = Signal(init=1)

        def deliverable(enable, function_mask, bme, d0):
            return enable & ~function_mask & bme & d0

        st_deliverable = deliverable(st_r.enable, st_r.function_mask, st_r.bme, ~st_r.not_d0)

        m.d.sync += [self.irq_dropped.eq(0), st_we.eq(0), tbl_we.eq(0)]

        offered = {name: getattr(self, name).valid
                   for name in ("reset_fn", "ctrl", "table_size", "tbl_req", "irq")}
        if multi:
            def by_pf(pf, values, width):
                """The per-PF value ``values[pf]`` (0 for a ``pf`` past the PFs)."""
                sig = Signal(width)
                with m.Switch(pf):
                    for k, value in enumerate(values):
                        with m.Case(k):
                            m.d.comb += sig.eq(value)
                return sig

            # The irq input stage: the request and its VF's global index, vf_base(pf) + n - 1,
            # registered (one more edge on MSG_LATENCY), so that the load path has no adder.
            # An irq is accepted when the FSM would take it (IDLE, nothing else offered), and
            # the FSM takes it from the stage in the next cycle before anything else: requests
            # are executed in the order they are accepted, as with one PF.
            irq_r = Signal(IrqRequest(T_max))
            irq_pf = Signal(range(NP))
            irq_idx = Signal.like(vf_idx)
            irq_v = Signal()
            irq_load = Signal()            # (from the FSM) the stage takes the irq offered
            irq_ready = Signal()           # (from the FSM) the FSM takes the staged irq
            m.d.comb += self.irq.ready.eq(irq_load)
            # The stage's operands are loaded in every cycle it is empty, taken or not (nothing
            # reads them while ``irq_v`` is low), so that their clock enable does not wait for
            # the decision to accept the irq.
            with m.If(~irq_v):
                p = self.irq.payload
                base_of = by_pf(p.pf, [self.vf_base(k) for k in range(NP)], len(vf_idx))
                m.d.sync += [irq_pf.eq(p.pf), irq_r.function.eq(p.function),
                             irq_r.vector.eq(p.vector), irq_idx.eq(base_of + p.function - 1)]
            with m.If(irq_load):
                m.d.sync += irq_v.eq(1)
            with m.If(irq_ready):
                m.d.sync += irq_v.eq(0)

            # The reset sweeps. ``pend``: PFs whose VF entries wait to be cleared (all after the
            # design's reset), ``pend_pf``: ... and whose own entry too. One PF's range is swept
            # at a time (``active``, PF ``sw_k``, its own entry first when ``sw_pf``), lowest
            # PF first, one entry per IDLE cycle that no request takes; after each request
            # taken, the sweep has the next IDLE cycle (``owed``), so neither starves.
            pend = Signal(NP, init=(1 << NP) - 1)
            pend_pf = Signal(NP, init=(1 << NP) - 1)
            active = Signal()
            sw_k = Signal(range(NP))
            sw_ptr = Signal.like(vf_idx)
            sw_last = Signal.like(vf_idx)
            sw_pf = Signal()
            owed = Signal()
            sw_clear = Signal(NP)
            sw_end = Signal()              # (from the FSM) the last entry of PF sw_k's range
            m.d.sync += [pend.eq(pend & ~sw_clear | self.reset_pf | self.reset_vfs),
                         pend_pf.eq(pend_pf & ~sw_clear | self.reset_pf)]
            # ``busy_bits`` is pend | (active ? bit sw_k : 0), kept in a register of its own so
            # that the streams' ``ready`` comes from flip-flops: a sweep's start moves bit k from
            # pend to active (no change), its end clears bit sw_k unless pend has it again, and
            # the sweep requests of the cycle are ORed in, as into pend, so that no request of
            # that PF is taken from the next cycle on.
            busy_bits = Signal(NP, init=(1 << NP) - 1)
            with m.If(sw_end):
                m.d.sync += busy_bits.eq(pend | self.reset_pf | self.reset_vfs)
            with m.Else():
                m.d.sync += busy_bits.eq(busy_bits | self.reset_pf | self.reset_vfs)
            m.d.comb += self.busy.eq(busy_bits)

            # A request is offered to the FSM only when its PF's sweep is not waiting or running.
            def free(pf):
                return ~busy_bits.bit_select(pf, 1)
            for name in ("reset_fn", "ctrl", "table_size", "tbl_req"):
                offered[name] = offered[name] & free(getattr(self, name).payload.pf)
            offered["irq"] = self.irq.valid & free(self.irq.payload.pf)
            any_offered = Cat(*offered.values()).any()
            sweep_step = busy_bits.any() & (owed | ~any_offered)
            # A request offered is taken unless the sweep has the cycle: with one offered,
            # ~sweep_step is this (registered state only, not the other requests).
            req_turn = ~(busy_bits.any() & owed)

            # Per-PF constants, for the PF of the operation.
            k_total = by_pf(op_pf, [pf.total_vfs for pf in self._pfs], 16)
            k_exists = by_pf(op_pf, [1] * NP, 1)
            k_pf_vectors = by_pf(op_pf, [pf.pf_vectors for pf in self._pfs], 7)
            k_vf_vectors = by_pf(op_pf, [pf.vf_vectors for pf in self._pfs], 7)
            k_pf_default = by_pf(op_pf, [max(pf.pf_vectors - 1, 0) for pf in self._pfs], 11)
            k_vf_default = by_pf(op_pf, [max(pf.vf_default_vectors - 1, 0)
                                         for pf in self._pfs], 11)
            k_tbl_base = by_pf(op_pf, [self.pf_table_base(k) for k in range(NP)], tbl_bits)
            k_num_vfs = by_pf(op_pf, [self.num_vfs[k] for k in range(NP)], 16)
            k_vf_enable = by_pf(op_pf, [self.vf_enable[k] for k in range(NP)], 1)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                # The operands, op and the function are loaded in every IDLE cycle, from
                # whichever request offers them (an operation reads only its own; op and the
                # function by priority, IRQ and 0 when nothing is offered), so that no clock
                # enable waits for the priority decision.
                req = self.tbl_req.payload
                m.d.comb += load_f.eq(1)
                op_next = Mux(offered["reset_fn"], _Op.RESET_FN,
                              Mux(offered["ctrl"], _Op.CTRL,
                              Mux(offered["table_size"], _Op.TABLE_SIZE,
                              Mux(offered["tbl_req"], _Op.TABLE, _Op.IRQ))))
                if multi:
                    op_next = Mux(irq_v, _Op.IRQ, op_next)
                    v_next = Mux(~irq_v & offered["tbl_req"], req.offset[4:], irq_r.vector)
                else:
                    v_next = Mux(offered["tbl_req"], req.offset[4:], self.irq.payload.vector)
                m.d.sync += op.eq(op_next)
                m.d.sync += [op_ctrl.eq(self.ctrl.payload),
                             op_size.eq(self.table_size.payload.size),
                             op_v.eq(v_next),
                             op_half.eq(req.offset[3]), op_pba_ok.eq(req.offset[3:] == 0),
                             op_write.eq(req.write), op_data.eq(req.data),
                             op_be.eq(req.be), op_pba.eq(req.pba)]
                if multi:
                    # The handshakes, from the priority of the requests offered and registered
                    # state (the same as the decision below, which sets them without several
                    # PFs).
                    higher = Const(0)
                    for name in ("reset_fn", "ctrl", "table_size", "tbl_req"):
                        m.d.comb += getattr(self, name).ready.eq(
                            ~irq_v & req_turn & ~higher & offered[name])
                        higher = higher | offered[name]
                    m.d.comb += irq_load.eq(~irq_v & req_turn & ~higher & offered["irq"])
                    with m.If(~sweep_step & any_offered):
                        m.d.sync += owed.eq(1)
                    with m.If(irq_v):
                        # The irq staged in the last cycle.
                        m.d.comb += [irq_ready.eq(1), new_f.eq(irq_r.function),
                                     new_idx.eq(irq_idx), new_pf.eq(irq_r.function == 0),
                                     new_k.eq(irq_pf)]
                        m.next = "LOOKUP"
                    first, sweep_cond = m.Elif, sweep_step
                else:
                    first, sweep_cond = m.If, sweep_req
                with first(sweep_cond):
                    if multi:
                        m.d.sync += owed.eq(0)
                        with m.If(~active):
                            # Start PF k's sweep, the lowest pending.
                            low = pend & (~pend + 1)[:NP]
                            k = _lowest_set(pend)[:len(sw_k)]
                            m.d.comb += sw_clear.eq(low)
                            m.d.sync += [
                                active.eq(1), sw_k.eq(k), sw_pf.eq((pend_pf & low).any()),
                                sw_ptr.eq(by_pf(k, [self.vf_base(j) for j in range(NP)],
                                                len(vf_idx))),
                                sw_last.eq(by_pf(k, [self.vf_base(j + 1) - 1
                                                     for j in range(NP)], len(vf_idx))),
                            ]
                        with m.Elif(sw_pf):
                            # PF sw_k's own entry (written in the next cycle, like below).
                            m.d.sync += [sw_pf.eq(0), st_r.eq(0), st_we.eq(1)]
                            m.d.comb += [new_f.eq(0), new_pf.eq(1), new_k.eq(sw_k)]
                        with m.Else():
                            # Its VF at index sw_ptr.
                            m.d.sync += [sw_ptr.eq(sw_ptr + 1), st_r.eq(0), st_we.eq(1)]
                            m.d.comb += [new_f.eq(1), new_idx.eq(sw_ptr), new_pf.eq(0),
                                         new_k.eq(sw_k)]
                            with m.If(sw_ptr == sw_last):
                                m.d.sync += active.eq(0)
                                m.d.comb += sw_end.eq(1)
                    else:
                        m.d.sync += [sweep_req.eq(0), sweep_all.eq(0), st_r.eq(0),
                                     st_we.eq(1)]
                        # The sweep writes index op_f - 1 for VF op_f: every index once.
                        m.d.comb += [*take(Mux(sweep_all, 0, 1)), new_idx.eq(0)]
                        m.next = "SWEEP"
                for name in ("reset_fn", "ctrl", "table_size", "tbl_req"):
                    stream_ = getattr(self, name)
                    with m.Elif(offered[name]):
                        if not multi:
                            m.d.comb += stream_.ready.eq(1)
                        function = (stream_.payload.vf if name == "table_size"
                                    else stream_.payload.function)
                        m.d.comb += take(function, stream_.payload)
                        m.next = "LOOKUP"
                with m.Elif(offered["irq"]):
                    if not multi:                      # (several PFs: staged, irq_load above)
                        m.d.comb += self.irq.ready.eq(1)
                        m.d.comb += take(self.irq.payload.function)
                        m.next = "LOOKUP"

            if not multi:
                with m.State("SWEEP"):
                    # st_we is high and st_r zero in every SWEEP cycle: one entry cleared per
                    # cycle.
                    m.d.sync += [op_f.eq(op_f + 1), vf_idx.eq(op_f), is_pf.eq(0)]
                    with m.If(op_f == T):
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += st_we.eq(1)

            with m.State("LOOKUP"):
                # The VF state memory reads vf_idx in this cycle.
                pf = is_pf
                if multi:
                    # The PF's constants, chosen by op_pf (no function past the PFs).
                    valid = k_exists & (op_f <= k_total)
                    kind_ok = Mux(pf, k_pf_vectors != 0, k_vf_vectors != 0)
                    m.d.sync += [
                        f_valid.eq(valid),
                        f_ok.eq(valid & kind_ok),
                        exists.eq(valid & kind_ok & (pf | (k_vf_enable & (op_f <= k_num_vfs)))),
                        base.eq(Mux(pf, k_tbl_base, vf_idx * Q)),
                        ts_default.eq(Mux(pf, k_pf_default, k_vf_default)),
                        v_limit.eq(Mux(pf, k_pf_vectors, k_vf_vectors)),
                        therm.eq(Cat(*(op_size >= v if v else Const(1, 1)
                                       for v in range(V)))),
                    ]
                else:
                    # Always true when T + 1 is a power of two: leave the comparison out then
                    # (Verilator -Wall: CMPCONST).
                    valid = op_f <= T if (T + 1) & T else Const(1, 1)
                    kind_ok = Mux(pf, int(P > 0), int(Q > 0))
                    m.d.sync += [
                        f_valid.eq(valid),
                        f_ok.eq(valid & kind_ok),
                        exists.eq(valid & kind_ok &
                                  (pf | (self.vf_enable & (op_f <= self.num_vfs)))),
                        base.eq(Mux(pf, 0, vf_idx * Q)),
                        ts_default.eq(Mux(pf, max(P - 1, 0), max(self._vf_default - 1, 0))),
                        v_limit.eq(Mux(pf, P, Q)),
                        # (``op_size >= 0`` always holds: a constant, Verilator -Wall: UNSIGNED)
                        therm.eq(Cat(*(op_size >= v if v else Const(1, 1)
                                       for v in range(V)))),
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
                    *([self.msg.payload.pf.eq(op_pf)] if multi else []),
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
        if multi:
            return m
        busy = Signal(init=1)
        m.d.comb += self.busy.eq(busy)
        with m.If(fsm.ongoing("SWEEP") & (op_f == T)):
            m.d.sync += busy.eq(0)
        with m.If(self.reset_all):
            m.d.sync += [sweep_req.eq(1), busy.eq(1)]

        return m
