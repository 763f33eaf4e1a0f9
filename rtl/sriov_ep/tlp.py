"""``SriovTlpEndpoint``: :class:`SriovEndpoint` behind TLP streams (issue 11).

The streams have the shape of the generic TLP interface of alexforencich/verilog-pcie (a 128-bit
header with the first beat, payload, one strobe bit per payload dword, ``sop``/``eop``); the
wrapper serves configuration TLPs, decodes memory TLPs through the endpoint's memory port, answers
everything else an endpoint can receive as the spec says, and merges every TLP to send into one
stream, stamping Completer and Requester IDs from a function number. ``docs/tlp.md`` is the
contract: ports, fields, handshakes, latencies and what happens to each TLP type.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .endpoint import VF_BME_LATENCY, SriovEndpoint
from .params import EndpointParams

__all__ = ["Func", "TlpBeat", "TlpRequest", "TlpSource", "RxEvent", "RoutingIdLookup",
           "SriovTlpEndpoint", "ROUTING_ID_LATENCY",
           "SHARED_LOOKUP_LATENCY"]

#: A function of the device: ``pf`` the PF index (in the configuration's order), ``vf`` 0 for
#: the PF itself and n for its VF n.
Func = data.StructLayout({"pf": 4, "vf": 16})

#: Clock edges from a :class:`RoutingIdLookup` query to its answer.
ROUTING_ID_LATENCY = 3

#: Clock edges from a request of :class:`SriovTlpEndpoint`'s shared lookup (granted at once)
#: to its answer: the grant is registered, then the granted client's function, then
#: :data:`ROUTING_ID_LATENCY`.
SHARED_LOOKUP_LATENCY = ROUTING_ID_LATENCY + 2


def _beat_fields(data_width):
    return {"hdr": 128, "data": data_width, "strb": data_width // 32, "sop": 1, "eop": 1}


def TlpBeat(data_width):
    """One beat of a TLP stream: ``hdr`` (valid with ``sop``: DW0 in bits 127:96 ... DW3 in
    31:0, each dword as on the wire), ``data`` (payload dword i of the beat in bits
    32i+31:32i, its byte 0 in bits 7:0), ``strb`` (one bit per payload dword), ``sop``, ``eop``."""
    return data.StructLayout(_beat_fields(data_width))


def TlpRequest(data_width):
    """A beat of a request handed to user logic: a :func:`TlpBeat` plus ``bar_id``, ``func``
    and ``offset`` (byte offset of the first dword in the function's BAR aperture), the same on
    every beat of the TLP."""
    return data.StructLayout({**_beat_fields(data_width), "bar_id": 3, "func": Func,
                              "offset": 64})


def TlpSource(data_width):
    """A beat of a TLP user logic sends: a :func:`TlpBeat` plus ``func``, the function whose
    Completer ID (completions) or Requester ID (requests) the wrapper writes into header bits
    95:80, read on the ``sop`` beat."""
    return data.StructLayout({**_beat_fields(data_width), "func": Func})


class RxEvent(enum.Enum, shape=3):
    """What ``rx_event.kind`` reports about a received TLP."""
    NONE           = 0
    #: Malformed (§2.2.2 payload size, §2.2.5 byte enables, §2.2.7 4 KiB boundary and config/IO
    #: rules, or a Fmt/Type pair an endpoint cannot receive): dropped.
    MALFORMED      = 1
    #: Unsupported Request detected (completed with UR when non-posted, else dropped).
    UR             = 2
    #: Poisoned request (EP set on a TLP with data): not executed; UR when non-posted.
    POISONED       = 3
    #: Reserved: the wrapper forwards every well-formed completion to ``rx_cpl`` and tracks
    #: no tags, so it never reports an Unexpected Completion (the user's DMA engine may).
    UNEXPECTED_CPL = 4
    #: An MSI-X table or PBA access that is not one aligned dword or qword (PCIe Base §6.1.4.2:
    #: undefined): a read completes with Completer Abort, a write is dropped.
    MSIX_ABORT     = 5


#: The largest payload a received TLP may carry, in dwords: Device Capabilities'
#: Max_Payload_Size Supported is 000b (128 bytes, ``caps/pcie.py``), so Device Control's
#: Max_Payload_Size can only be 128 bytes too. A TLP with more is Malformed (PCIe Base §2.2.2).
MAX_PAYLOAD_DW = 32


# Header fields (bit positions in ``hdr``; DW0 is hdr[127:96]).
def _f(hdr, lo, width):
    return hdr[lo:lo + width]


def _fmt(h):       return _f(h, 125, 3)
def _type(h):      return _f(h, 120, 5)
def _length(h):    return _f(h, 96, 10)
def _ep(h):        return h[110]
def _req_id(h):    return _f(h, 80, 16)
def _tag8(h):      return _f(h, 72, 8)
def _first_be(h):  return _f(h, 64, 4)
def _last_be(h):   return _f(h, 68, 4)
def _tc(h):        return _f(h, 116, 3)
def _attr(h):      return Cat(h[108:110], h[114])


def _w(value, width):
    """``value`` as exactly ``width`` bits (a Python int becomes a constant)."""
    if isinstance(value, int):
        return Const(value, width)
    return value[:width]


def _cpl_hdr(req, *, fmt, typ, length, cpl_id, status, byte_count, lower_address):
    """A completion header answering request header ``req`` (TC, Attr and the 10-bit Tag
    copied, PCIe Base §2.2.9)."""
    length, cpl_id, status = _w(length, 10), _w(cpl_id, 16), _w(status, 3)
    byte_count, lower_address = _w(byte_count, 12), _w(lower_address, 7)
    dw0 = Cat(length, Const(0, 2), req[108:110], Const(0, 4), req[114], req[115],
              req[116:119], req[119], Const(typ, 5), Const(fmt, 3))
    dw1 = Cat(byte_count, Const(0, 1), status, cpl_id)
    dw2 = Cat(lower_address, Const(0, 1), _tag8(req), _req_id(req))
    return Cat(Const(0, 32), dw2, dw1, dw0)


def _be_low(be):
    """Index of the lowest set bit of a 4-bit byte enable (0 when none)."""
    return Mux(be[0], 0, Mux(be[1], 1, Mux(be[2], 2, Mux(be[3], 3, 0))))


def _be_high(be):
    """Index of the highest set bit of a 4-bit byte enable (0 when none)."""
    return Mux(be[3], 3, Mux(be[2], 2, Mux(be[1], 1, 0)))


def _byte_count(length, fbe, lbe):
    """The Byte Count of a memory read's first completion (§2.3.1.1): ``length`` dwords (0 is
    1024) trimmed by the byte enables, one byte for a zero-length read; 12 bits (4096 reads 0,
    as the field encodes it)."""
    words = Mux(length == 0, 1024, length)
    return Mux(length == 1,
               Mux(fbe == 0, 1, _be_high(fbe) - _be_low(fbe) + 1),
               words * 4 - _be_low(fbe) - (3 - _be_high(lbe)))[:12]


class RoutingIdLookup(wiring.Component):
    """The Routing ID of any function: PF k is ``bus << 8 | its function number``; VF n of PF k
    is that plus ``first_vf_offset[k] + (n-1) * vf_stride[k]``, modulo 2**16.

    Connect ``bus``, ``first_vf_offset[k]`` and ``vf_stride[k]`` to :class:`SriovEndpoint`'s
    ``bus`` and ``pfs[k].first_vf_offset``/``pfs[k].vf_stride``. ``rid`` answers the ``query``
    of :data:`ROUTING_ID_LATENCY` (3) clock edges earlier, one query per cycle (registered
    operands, then the product and the PF's Routing ID plus offset, then their sum). A PF index
    beyond the device's gives 0. It says nothing about whether the VF exists.

    With ``fixed_strides`` (the TLP wrapper's own lookups) there is no ``vf_stride`` input but
    ``ari`` (the endpoint's ``ari_capable_hierarchy``): PF k's VF Stride is the configured one
    for that ARI state (``params.pfs[k].vf_stride(ari)``), a constant: the product is ``n - 1``
    times each distinct configured stride (a shift for a power of two, no multiplier at all;
    a multiplication by a constant otherwise), the one that applies chosen by a one-hot
    registered with the operands. Same latency and answers.
    """

    def __init__(self, params, *, fixed_strides=False):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        self._fns = [pf.pf_rid & 0xFF for pf in params.pfs]
        self._fixed = bool(fixed_strides)
        self._strides = [(pf.vf_stride(False), pf.vf_stride(True)) for pf in params.pfs]
        n = len(self._fns)
        stride_port = ({"ari": In(1)} if self._fixed
                       else {"vf_stride": In(data.ArrayLayout(16, n))})
        super().__init__({
            "bus":             In(8),
            "first_vf_offset": In(data.ArrayLayout(16, n)),
            **stride_port,
            "query":           In(Func),
            "rid":             Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        pf_rid = Signal(16)
        offset = Signal(16)
        vm1 = Signal(16)
        is_vf = Signal()
        q_is_vf = self.query.vf != 0
        m.d.sync += [vm1.eq(self.query.vf - 1), is_vf.eq(q_is_vf)]
        product = Signal(16)
        if self._fixed:
            # the distinct strides, and a one-hot of the one that applies (none for a PF)
            distinct = sorted({st & 0xFFFF for pair in self._strides for st in pair})
            which = Signal(len(distinct))
            for j, st in enumerate(distinct):
                cond = Const(0, 1)
                for k, pair in enumerate(self._strides):
                    for ari, pst in enumerate(pair):
                        if pst & 0xFFFF == st:
                            cond = cond | ((self.query.pf == k) & (self.ari == ari))
                m.d.sync += which[j].eq(cond & q_is_vf)
            terms = [which[j].replicate(16) & (vm1 * st)[:16] for j, st in enumerate(distinct)]
            total = terms[0]
            for t in terms[1:]:
                total = total | t
            m.d.sync += product.eq(total)
        stride = Signal(16)             # without fixed_strides
        # a PF's stride is taken as 0, so that the product needs no multiplexer after it
        with m.Switch(self.query.pf):
            for k, fn in enumerate(self._fns):
                with m.Case(k):
                    m.d.sync += [pf_rid.eq(Cat(Const(fn, 8), self.bus)),
                                 offset.eq(self.first_vf_offset[k])]
                    if not self._fixed:
                        m.d.sync += stride.eq(Mux(q_is_vf, self.vf_stride[k], 0))
            with m.Default():
                m.d.sync += [pf_rid.eq(0), offset.eq(0)]
                if not self._fixed:
                    m.d.sync += stride.eq(0)
        if not self._fixed:
            m.d.sync += product.eq(vm1 * stride)
        base = Signal(16)
        m.d.sync += base.eq(pf_rid + Mux(is_vf, offset, 0))
        rid = Signal(16)
        m.d.sync += rid.eq(base + product)
        m.d.comb += self.rid.eq(rid)
        return m


# Fmt/Type pairs (PCIe Base §2.2.1, Table 2-3), as Cat(type, fmt) = fmt << 5 | type.
def _ft(fmt, typ):
    return fmt << 5 | typ


MRD32, MRD64, MWR32, MWR64 = _ft(0, 0), _ft(1, 0), _ft(2, 0), _ft(3, 0)
MRDLK32, MRDLK64 = _ft(0, 1), _ft(1, 1)
IORD, IOWR = _ft(0, 2), _ft(2, 2)
CFGRD0, CFGWR0, CFGRD1, CFGWR1 = _ft(0, 4), _ft(2, 4), _ft(0, 5), _ft(2, 5)
CPL, CPLD, CPLLK, CPLDLK = _ft(0, 10), _ft(2, 10), _ft(0, 11), _ft(2, 11)
ATOMICS = [_ft(f, t) for f in (2, 3) for t in (12, 13, 14)]
MSGS = [_ft(1, 16 | r) for r in range(8)]
MSGDS = [_ft(3, 16 | r) for r in range(8)]

#: Message codes an endpoint accepts and acts on (or leaves to user logic, which ``rx_msg``
#: tells): Unlock, PM_Active_State_Nak, PM_PME_Turn_Off, Set_Slot_Power_Limit (§2.2.8).
MSG_ACCEPTED = (0x00, 0x14, 0x19, 0x50)
#: Message codes silently discarded: the Ignored Messages (§2.2.8.7) and Vendor_Defined Type 1.
MSG_SILENT = (0x40, 0x41, 0x43, 0x44, 0x45, 0x47, 0x48, 0x7F)

_CPL_FT, _CPLD_FT = (0, 10), (2, 10)

#: The kinds of received TLP the receive side tells apart (``kind``, one-hot, in this order).
KINDS = ("cfg", "mem", "lk", "io", "atomic", "msg", "cpl")


class SriovTlpEndpoint(wiring.Component):
    """:class:`SriovEndpoint` behind TLP receive and transmit streams. See ``docs/tlp.md``.

    Parameters
    ----------
    params : EndpointParams
    data_width : int
        Payload bits per beat: 64, 128 or 256.
    mem_latency : int
        The endpoint's BAR decoder latency (1 or 2).
    """

    def __init__(self, params, *, data_width=64, mem_latency=2):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        if data_width not in (64, 128, 256):
            raise ValueError(f"data_width: must be 64, 128 or 256 (got {data_width!r})")
        if params.num_pfs > 16:
            raise ValueError(f"params: at most 16 PFs fit func.pf (got {params.num_pfs})")
        self._params = params
        self._w = data_width
        self.endpoint = SriovEndpoint(params, mem_latency=mem_latency)
        sig = self.endpoint.signature.members
        passed = {name: sig[name] for name in (
            "ucfg_req", "ucfg_res", "irq", "irq_dropped", "vf_msix_size", "vf_msix_size_done",
            "bus", "ari_capable_hierarchy", "pfs", "vf_flr")}
        super().__init__({
            "rx":          In(stream.Signature(TlpBeat(data_width))),
            "req":         Out(stream.Signature(TlpRequest(data_width))),
            "rx_cpl":      Out(stream.Signature(TlpBeat(data_width))),
            "cpl":         In(stream.Signature(TlpSource(data_width))),
            "dma_wr":      In(stream.Signature(TlpSource(data_width))),
            "dma_rd":      In(stream.Signature(TlpSource(data_width))),
            "tx":          Out(stream.Signature(TlpBeat(data_width))),
            "tx_np_ok":    In(1, init=1),
            "rx_event":    Out(data.StructLayout({"valid": 1, "kind": RxEvent, "func": Func})),
            "rx_msg":      Out(data.StructLayout({"valid": 1, "code": 8})),
            "cfg_ur":      Out(data.StructLayout({"valid": 1, "rid": 16})),
            "dma_refused": Out(data.StructLayout({"valid": 1, "write": 1, "func": Func})),
            "rid_query":   In(Func),
            "rid":         Out(16),
            **passed,
        })

    @property
    def params(self):
        return self._params

    @property
    def config_tlp_latency(self):
        """Clock edges from the one that takes a config TLP's (only) beat on ``rx`` to the one
        that transfers its completion on ``tx`` when nothing else is queued and ``tx.ready`` is
        high: the endpoint's :attr:`SriovEndpoint.config_latency` plus 4 (the header register,
        the completion register, the arbiter's grant register, the output register)."""
        return self.endpoint.config_latency + 4

    def _lookup(self, m, name, ep):
        # the endpoint's VF Stride is the configured one for its ARI Capable Hierarchy
        lk = RoutingIdLookup(self._params, fixed_strides=True)
        m.submodules[name] = lk
        m.d.comb += [lk.bus.eq(ep.bus), lk.ari.eq(ep.ari_capable_hierarchy)]
        for k in range(self._params.num_pfs):
            m.d.comb += lk.first_vf_offset[k].eq(ep.pfs[k].first_vf_offset)
        return lk

    def elaborate(self, platform):
        p = self._params
        W = self._w
        m = Module()
        m.submodules.endpoint = ep = self.endpoint
        multi = p.num_pfs > 1

        # -- Pass-through ports --------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.ucfg_req), ep.ucfg_req)
        wiring.connect(m, wiring.flipped(self.ucfg_res), ep.ucfg_res)
        wiring.connect(m, wiring.flipped(self.irq), ep.irq)
        wiring.connect(m, wiring.flipped(self.vf_msix_size), ep.vf_msix_size)
        m.d.comb += [self.irq_dropped.eq(ep.irq_dropped),
                     self.vf_msix_size_done.eq(ep.vf_msix_size_done),
                     self.bus.eq(ep.bus), self.ari_capable_hierarchy.eq(ep.ari_capable_hierarchy),
                     self.pfs.eq(ep.pfs), self.vf_flr.eq(ep.vf_flr)]
        user_lk = self._lookup(m, "rid_user", ep)
        m.d.comb += [user_lk.query.eq(self.rid_query), self.rid.eq(user_lk.rid)]

        # One more lookup, shared by the wrapper's own clients (docs/tlp.md §6): a client
        # raises want[c] with its function in qfunc[c] (a register, held until its answer);
        # one is granted per cycle, round robin; the grant is registered (one-hot, lk_tags[0]),
        # then the granted client's function (lk_query, an AND-OR by the grant's bits) before
        # the lookup, so ans[c] marks the cycle, SHARED_LOOKUP_LATENCY edges after the grant,
        # in which shared.rid is its answer.
        shared = self._lookup(m, "rid_shared", ep)
        clients = ("rx", "msg", "cpl", "dma_wr", "dma_rd")
        nc = len(clients)
        want = {c: Signal(name=f"lk_want_{c}") for c in clients}
        qfunc = {c: Signal(Func, name=f"lk_func_{c}") for c in clients}
        lk_sel = Signal(range(nc))
        lk_gnt = Signal(nc)             # one-hot: the client granted this cycle
        lk_last = Signal(range(nc), init=nc - 1)
        with m.Switch(lk_last):
            for lst in range(nc):
                with m.Case(lst):
                    for idx in reversed([(lst + k) % nc for k in range(1, nc + 1)]):
                        with m.If(want[clients[idx]]):
                            m.d.comb += [lk_sel.eq(idx), lk_gnt.eq(1 << idx)]
        grant = {c: lk_gnt[i] for i, c in enumerate(clients)}
        with m.If(lk_gnt.any()):
            m.d.sync += lk_last.eq(lk_sel)
        lk_tags = [Signal(nc, name=f"lk_tag{i}") for i in range(SHARED_LOOKUP_LATENCY)]
        m.d.sync += lk_tags[0].eq(lk_gnt)
        m.d.sync += [lk_tags[i].eq(lk_tags[i - 1]) for i in range(1, SHARED_LOOKUP_LATENCY)]
        lk_query = Signal(Func)
        picked = 0
        for i, c in enumerate(clients):
            bits = qfunc[c].as_value()
            picked = picked | (bits & lk_tags[0][i].replicate(len(bits)))
        m.d.sync += lk_query.as_value().eq(picked)
        m.d.comb += shared.query.eq(lk_query)
        ans = {c: lk_tags[-1][i] for i, c in enumerate(clients)}
        ans_next = {c: lk_tags[-2][i] for i, c in enumerate(clients)}
        pf0_rid = Cat(Const(p.pfs[0].pf_rid & 0xFF, 8), ep.bus)

        # -- Receive ---------------------------------------------------------------------------
        h = Signal(128)                 # the header of the TLP being handled
        d0 = Signal(W)                  # its first beat's payload
        s0 = Signal(W // 32)
        eop0 = Signal()                 # the first beat was its last
        length = _length(h)
        fbe = _first_be(h)
        has_data = _fmt(h)[1]
        poisoned = _ep(h) & has_data
        target = _f(h, 48, 16)
        reg = _f(h, 34, 10)
        msg_code = _f(h, 64, 8)
        bc = Signal(12)                 # a read's Byte Count, registered with h

        def mem_checks(hdr):
            """A TLP's kind, a request's address and checks, from its header: computed from the
            beat ``rx`` offers and registered with ``h``, so that ``mem_req``, ``cfg_req``
            (which the endpoint takes into its first stage) and ``rx_cpl.valid`` come from
            flip-flops and the receive side decides from flip-flops (docs/tlp.md §3)."""
            length, fbe, lbe = _length(hdr), _first_be(hdr), _last_be(hdr)
            words = Mux(length == 0, 1024, length)
            addr = Mux(_fmt(hdr)[0], Cat(Const(0, 2), hdr[2:32], hdr[32:64]),
                       Cat(Const(0, 2), hdr[34:64]))
            too_big = _fmt(hdr)[1] & (words > MAX_PAYLOAD_DW)
            # past a 4 KiB boundary (§2.2.7): the sum for either header format, chosen after,
            # so that the address multiplexer is not in front of the carry chain
            def crosses(dw_in_page):
                return Mux(length == 0, dw_in_page != 0, dw_in_page + length > 1024)
            crosses_4k = Mux(_fmt(hdr)[0], crosses(hdr[2:12]), crosses(hdr[34:44]))
            qw_pair = (length == 2) & ~addr[2]
            contiguous = (fbe.matches("1000", "1100", "1110", "1111") &
                          lbe.matches("0001", "0011", "0111", "1111"))
            be_bad = Mux(length == 1, lbe != 0,                         # §2.2.5
                         (fbe == 0) | (lbe == 0) | (~qw_pair & ~contiguous))
            bad = too_big | crosses_4k | be_bad
            poisoned = _ep(hdr) & _fmt(hdr)[1]
            fits = (length == 1) | qw_pair
            be = Mux(addr[2], Cat(Const(0, 4), fbe), Cat(fbe, Mux(length == 2, lbe, 0)))
            # Config and IO requests: Length 1, Last DW BE 0, TC 0, Attr 0 (§2.2.7).
            cfg_ok = (length == 1) & (lbe == 0) & (_tc(hdr) == 0) & (_attr(hdr) == 0)
            ft = Cat(_type(hdr), _fmt(hdr))
            kinds = {"cfg": ft.matches(CFGRD0, CFGWR0, CFGRD1, CFGWR1),
                     "mem": ft.matches(MRD32, MRD64, MWR32, MWR64),
                     "lk": ft.matches(MRDLK32, MRDLK64), "io": ft.matches(IORD, IOWR),
                     "atomic": ft.matches(*ATOMICS), "msg": ft.matches(*MSGS, *MSGDS),
                     "cpl": ft.matches(CPL, CPLD, CPLLK, CPLDLK)}
            return {"kind": Cat(kinds[k] for k in KINDS), "addr": addr, "bad": bad,
                    "too_big": too_big, "cfg_ok": cfg_ok, "bc": _byte_count(length, fbe, lbe),
                    "cfg_go": kinds["cfg"] & cfg_ok & ~poisoned,
                    "cpl_go": kinds["cpl"] & ~too_big, "fits": fits,
                    "msg_accepted": _f(hdr, 64, 8).matches(*MSG_ACCEPTED),
                    "msg_silent": _f(hdr, 64, 8).matches(*MSG_SILENT),
                    "ok": Cat(_type(hdr), _fmt(hdr)).matches(MRD32, MRD64, MWR32, MWR64)
                    & ~bad & ~poisoned,
                    "be": Mux(fits & _fmt(hdr)[1], be, 0)}

        # the TLP's kind (one-hot, registered with h: DISPATCH decides from flip-flops); none
        # set for a Fmt/Type pair the endpoint cannot receive
        kind = Signal(len(KINDS))
        k = {name: kind[i] for i, name in enumerate(KINDS)}
        addr = Signal(64)               # memory address (dword-aligned)
        too_big = Signal()              # a payload beyond Max_Payload_Size (§2.2.2)
        mem_bad = Signal()              # Malformed memory request (§2.2.2, §2.2.5, §2.2.7)
        # MRd/MWr, well formed, not poisoned: mem_req.valid itself, a flip-flop set with h (the
        # TLP goes to DISPATCH) and cleared by the mem_req handshake
        mem_ok = Signal()
        mem_be = Signal(8)              # mem_req.be
        # Config and IO requests well formed (§2.2.7), registered with h
        cfg_ok = Signal()
        # a well-formed, unpoisoned config request: cfg_req.valid itself, set with h and
        # cleared by the cfg_req handshake (as mem_ok)
        cfg_go = Signal()
        # a well-formed completion: rx_cpl.valid of its first beat, set with h and cleared by
        # the rx_cpl handshake (as mem_ok)
        cpl_go = Signal()
        la = Cat(Mux(fbe == 0, 0, _be_low(fbe))[:2], addr[2:7])

        # Completions the receive side makes: one register slot, a source of the arbiter.
        g_valid = Signal()
        g_hdr = Signal(128)
        g_data = Signal(64)
        g_dws = Signal(2)

        # The config completion context (the endpoint takes one request at a time).
        c_req = Signal(128)
        c_write = Signal()
        c_valid = Signal()
        c_hdr = Signal(128)
        c_data = Signal(32)

        ev = self.rx_event
        m.d.sync += [ev.valid.eq(0), self.rx_msg.valid.eq(0)]
        # Every UR the receive side reports sets Unsupported Request Detected in the function
        # the event names (docs/tlp.md §2, "Error status"), one edge later.
        m.d.comb += [ep.urd.valid.eq(ev.valid & (ev.kind == RxEvent.UR)),
                     ep.urd.pf.eq(ev.func.pf), ep.urd.vf.eq(ev.func.vf)]

        def event(kind, func_pf=0, func_vf=0):
            m.d.sync += [ev.valid.eq(1), ev.kind.eq(kind), ev.func.pf.eq(func_pf),
                         ev.func.vf.eq(func_vf)]

        # The completion register loads g_next in every cycle it is free (~g_valid), so that
        # its clock enable is one flip-flop; g_next is chosen by the state and the TLP's kind
        # alone, and gen() makes the slot valid where the checks say a completion is due.
        g_next_hdr = Signal(128)
        g_next_data = Signal(64)
        g_next_dws = Signal(2)
        with m.If(~g_valid):
            m.d.sync += [g_hdr.eq(g_next_hdr), g_data.eq(g_next_data), g_dws.eq(g_next_dws)]

        def gen_next(hdr, data_=0, dws=0):
            m.d.comb += [g_next_hdr.eq(hdr), g_next_data.eq(data_), g_next_dws.eq(dws)]

        def gen():
            m.d.sync += g_valid.eq(1)       # g_next was loaded at the same edge

        def ur_cpl(cpl_id, lock=False, mem=False):
            return _cpl_hdr(h, fmt=0, typ=11 if lock else 10, length=0, cpl_id=cpl_id,
                            status=1, byte_count=bc if mem else 4,
                            lower_address=la if mem else 0)

        def finish():
            with m.If(eop0):
                m.next = "IDLE"
            with m.Else():
                m.next = "DRAIN"

        cfg_cpl_id = Mux(h[120], target, Cat(target[:8], ep.bus))

        # Memory decode result, held.
        res = ep.mem_res.payload
        r_claimed = Signal()
        r_internal = Signal()
        r_pf = Signal(4)
        r_vf = Signal(16)
        r_bar = Signal(3)
        r_offset = Signal(64)
        r_data = Signal(64)
        # The function's Routing ID from the shared lookup: its answer in the cycle it comes,
        # then held.
        rx_asks = Signal()              # in LOOKUP, not granted yet: want["rx"], a register
        rx_rid_r = Signal(16)
        rx_rid = Mux(ans["rx"], shared.rid, rx_rid_r)
        m.d.comb += [qfunc["rx"].pf.eq(r_pf), qfunc["rx"].vf.eq(r_vf), want["rx"].eq(rx_asks)]
        with m.If(ans["rx"]):
            m.d.sync += rx_rid_r.eq(shared.rid)
        # one aligned DW or QWORD (an MSI-X table access that can be served), registered with h
        fits = Signal()
        # a message's code: one the endpoint accepts, one dropped silently (registered with h)
        msg_accepted = Signal()
        msg_silent = Signal()

        req = self.req
        rx_cpl = self.rx_cpl
        # A completion's first beat, from the held one (CPL_FWD passes the later ones)
        m.d.comb += [rx_cpl.valid.eq(cpl_go), rx_cpl.payload.hdr.eq(h),
                     rx_cpl.payload.data.eq(d0), rx_cpl.payload.strb.eq(s0),
                     rx_cpl.payload.sop.eq(1), rx_cpl.payload.eop.eq(eop0)]
        with m.If(cpl_go & rx_cpl.ready):
            m.d.sync += cpl_go.eq(0)
        m.d.comb += [req.payload.bar_id.eq(r_bar), req.payload.func.pf.eq(r_pf),
                     req.payload.func.vf.eq(r_vf), req.payload.offset.eq(r_offset)]

        with m.FSM(name="rx"):
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    checks = mem_checks(self.rx.payload.hdr)
                    m.d.sync += [h.eq(self.rx.payload.hdr), d0.eq(self.rx.payload.data),
                                 s0.eq(self.rx.payload.strb), eop0.eq(self.rx.payload.eop),
                                 addr.eq(checks["addr"]), too_big.eq(checks["too_big"]),
                                 mem_bad.eq(checks["bad"]),
                                 mem_ok.eq(checks["ok"] & self.rx.payload.sop),
                                 cfg_ok.eq(checks["cfg_ok"]), bc.eq(checks["bc"]),
                                 kind.eq(checks["kind"]),
                                 cfg_go.eq(checks["cfg_go"] & self.rx.payload.sop),
                                 cpl_go.eq(checks["cpl_go"] & self.rx.payload.sop),
                                 fits.eq(checks["fits"]),
                                 msg_accepted.eq(checks["msg_accepted"]),
                                 msg_silent.eq(checks["msg_silent"]),
                                 mem_be.eq(checks["be"])]
                    with m.If(self.rx.payload.sop):
                        m.next = "DISPATCH"
                    with m.Elif(~self.rx.payload.eop):
                        m.next = "DRAIN"        # a beat outside a TLP: skip to its end

            with m.State("DISPATCH"):
                with m.If(k["cfg"]):
                    gen_next(ur_cpl(cfg_cpl_id))
                with m.Elif(k["lk"]):
                    gen_next(ur_cpl(pf0_rid, lock=True, mem=True))
                with m.Elif(k["atomic"]):
                    # an AtomicOp's Byte Count is its operand's size (§2.2.9)
                    operand = Mux(_type(h) == 0b01110, length * 2, length * 4)
                    gen_next(_cpl_hdr(h, fmt=0, typ=10, length=0, cpl_id=pf0_rid, status=1,
                                      byte_count=operand, lower_address=0))
                with m.Else():
                    gen_next(ur_cpl(pf0_rid))
                with m.If(k["cfg"]):
                    with m.If(~cfg_ok):
                        event(RxEvent.MALFORMED)
                        finish()
                    with m.Elif(poisoned):
                        with m.If(~g_valid):
                            event(RxEvent.POISONED)
                            gen()
                            finish()
                    with m.Else():
                        # cfg_req.valid is cfg_go, a register set with h (the same
                        # condition), cleared by this handshake
                        with m.If(ep.cfg_req.ready):
                            m.d.sync += [c_req.eq(h), c_write.eq(has_data)]
                            finish()
                with m.Elif(k["mem"]):
                    with m.If(mem_bad):
                        event(RxEvent.MALFORMED)
                        finish()
                    with m.Elif(poisoned):
                        event(RxEvent.POISONED)
                        finish()
                    with m.Else():
                        # mem_req.valid is mem_ok, a register set with h (the same
                        # condition), cleared by this handshake
                        with m.If(ep.mem_req.ready):
                            m.next = "DECODE"
                with m.Elif(k["lk"] | k["io"] | k["atomic"]):
                    malformed = Mux(k["io"], ~cfg_ok, Mux(k["lk"], mem_bad, 0))
                    with m.If(malformed):
                        event(RxEvent.MALFORMED)
                        finish()
                    with m.Elif(~g_valid):
                        event(Mux(poisoned, RxEvent.POISONED, RxEvent.UR))
                        gen()
                        finish()
                with m.Elif(k["msg"]):
                    with m.If(too_big):
                        event(RxEvent.MALFORMED)
                    with m.Elif(poisoned):
                        event(RxEvent.POISONED)
                    with m.Elif(msg_accepted):
                        m.d.sync += [self.rx_msg.valid.eq(1), self.rx_msg.code.eq(msg_code)]
                    with m.Elif(~msg_silent):
                        event(RxEvent.UR)
                    finish()
                with m.Elif(k["cpl"]):
                    # every well-formed completion goes to rx_cpl, from the held beat
                    with m.If(too_big):
                        event(RxEvent.MALFORMED)
                        finish()
                    with m.Else():
                        # rx_cpl.valid is cpl_go, a register set with h (the same
                        # condition), cleared by this handshake
                        with m.If(rx_cpl.ready):
                            with m.If(eop0):
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "CPL_FWD"
                with m.Else():
                    event(RxEvent.MALFORMED)
                    finish()

            with m.State("DECODE"):
                m.d.comb += ep.mem_res.ready.eq(1)
                with m.If(ep.mem_res.valid):
                    m.d.sync += [r_claimed.eq(res.claimed), r_internal.eq(res.internal),
                                 r_pf.eq(res.pf if multi else 0),
                                 r_vf.eq(Mux(res.is_vf, res.vf, 0)), r_bar.eq(res.bar),
                                 r_offset.eq(res.offset), r_data.eq(res.data),
                                 rx_asks.eq(1)]
                    m.next = "LOOKUP"

            with m.State("LOOKUP"):
                # Asked until granted; ACT is the cycle the answer comes in.
                with m.If(grant["rx"]):
                    m.d.sync += rx_asks.eq(0)
                with m.If(ans_next["rx"]):
                    m.next = "ACT"

            with m.State("ACT"):
                with m.If(~r_internal):
                    gen_next(ur_cpl(pf0_rid, mem=True))
                with m.Elif(~fits):
                    gen_next(_cpl_hdr(h, fmt=0, typ=10, length=0, cpl_id=rx_rid, status=4,
                                      byte_count=bc, lower_address=la))
                with m.Else():
                    gen_next(_cpl_hdr(h, fmt=2, typ=10, length=length, cpl_id=rx_rid, status=0,
                                      byte_count=bc, lower_address=la),
                             Mux(addr[2], r_data[32:], r_data), length[:2])
                with m.If(r_claimed & ~r_internal):
                    m.next = "FWD_FIRST"
                with m.Elif(~g_valid | has_data):
                    with m.If(r_internal):
                        with m.If(~fits):
                            event(RxEvent.MSIX_ABORT, r_pf, r_vf)
                            with m.If(~has_data):
                                gen()                   # Completer Abort
                        with m.Elif(~has_data):
                            gen()                       # CplD with the table's data
                    with m.Else():
                        event(RxEvent.UR, 0, 0)
                        with m.If(~has_data):
                            gen()                       # UR
                    finish()

            with m.State("FWD_FIRST"):
                m.d.comb += [req.valid.eq(1), req.payload.hdr.eq(h), req.payload.data.eq(d0),
                             req.payload.strb.eq(s0), req.payload.sop.eq(1),
                             req.payload.eop.eq(eop0)]
                with m.If(req.ready):
                    with m.If(eop0):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FWD"

            def pass_rest(sink):
                """The TLP's later beats straight from ``rx`` to ``sink`` (header held)."""
                b = self.rx.payload
                m.d.comb += [sink.valid.eq(self.rx.valid), self.rx.ready.eq(sink.ready),
                             sink.payload.hdr.eq(h), sink.payload.data.eq(b.data),
                             sink.payload.strb.eq(b.strb), sink.payload.sop.eq(0),
                             sink.payload.eop.eq(b.eop)]
                with m.If(self.rx.valid & sink.ready & b.eop):
                    m.next = "IDLE"

            with m.State("FWD"):
                pass_rest(req)

            with m.State("CPL_FWD"):
                pass_rest(rx_cpl)

            with m.State("DRAIN"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid & self.rx.payload.eop):
                    m.next = "IDLE"

        m.d.comb += ep.mem_req.valid.eq(mem_ok)     # mem_ok is 1 only in DISPATCH
        # the request's fields straight from the registers, whatever the state (the endpoint
        # captures them into its decoder's first stage: no state decode in front of them)
        q = ep.mem_req.payload
        m.d.comb += [q.addr.eq(addr),
                     q.write.eq(has_data), q.tag.eq(_tag8(h)),
                     q.data.eq(Mux(addr[2], Cat(Const(0, 32), d0[:32]), d0[:64])),
                     q.be.eq(mem_be)]
        with m.If(mem_ok & ep.mem_req.ready):
            m.d.sync += mem_ok.eq(0)
        c = ep.cfg_req.payload                      # cfg_go too
        m.d.comb += [ep.cfg_req.valid.eq(cfg_go), c.type1.eq(h[120]), c.rid.eq(target),
                     c.reg.eq(reg), c.be.eq(fbe), c.write.eq(has_data), c.data.eq(d0[:32])]
        with m.If(cfg_go & ep.cfg_req.ready):
            m.d.sync += cfg_go.eq(0)

        # -- Config completions ----------------------------------------------------------------
        # The completion's header and data are loaded in every cycle the slot is free (their
        # operands, the endpoint's completion register and c_req, hold while it is offered),
        # and cfg_ur.rid in every cycle: cfg_cpl.valid, which the endpoint decides late in the
        # cycle, only sets c_valid and cfg_ur.valid, and is no clock enable of wide registers.
        cc = ep.cfg_cpl.payload
        status = cc.status.as_value()
        m.d.comb += ep.cfg_cpl.ready.eq(~c_valid)
        m.d.sync += [self.cfg_ur.valid.eq(ep.cfg_cpl.valid & ~c_valid & (status == 1)),
                     self.cfg_ur.rid.eq(_f(c_req, 48, 16))]
        with m.If(ep.cfg_cpl.valid & ~c_valid):
            m.d.sync += c_valid.eq(1)
        with m.If(~c_valid):
            with_data = ~c_write & (status == 0)
            cpl_id = Mux(c_req[120], _f(c_req, 48, 16), Cat(_f(c_req, 48, 8), ep.bus))
            m.d.sync += [
                c_data.eq(cc.data),
                c_hdr.eq(Mux(with_data,
                             _cpl_hdr(c_req, fmt=2, typ=10, length=1, cpl_id=cpl_id,
                                      status=status, byte_count=4, lower_address=0),
                             _cpl_hdr(c_req, fmt=0, typ=10, length=0, cpl_id=cpl_id,
                                      status=status, byte_count=4, lower_address=0))),
            ]

        # -- Transmit sources ------------------------------------------------------------------
        # Each source: (valid, beat fields, ready, non-posted).
        def beat(name):
            return Signal(TlpBeat(W), name=name)

        sources = []
        cfg_beat = beat("cfg_beat")
        cfg_ready = Signal()
        m.d.comb += [cfg_beat.hdr.eq(c_hdr), cfg_beat.data.eq(c_data),
                     cfg_beat.strb.eq(_length(c_hdr) != 0), cfg_beat.sop.eq(1),
                     cfg_beat.eop.eq(1)]
        with m.If(cfg_ready):
            m.d.sync += c_valid.eq(0)
        sources.append((c_valid, cfg_beat, cfg_ready, False))

        gen_beat = beat("gen_beat")
        gen_ready = Signal()
        m.d.comb += [gen_beat.hdr.eq(g_hdr), gen_beat.data.eq(g_data),
                     gen_beat.strb.eq(Mux(g_dws == 2, 3, Mux(g_dws == 1, 1, 0))),
                     gen_beat.sop.eq(1), gen_beat.eop.eq(1)]
        with m.If(gen_ready):
            m.d.sync += g_valid.eq(0)
        sources.append((g_valid, gen_beat, gen_ready, False))

        # MSI-X messages: posted MWr with the function's Requester ID.
        msg = ep.msg
        mx_valid = Signal()
        mx_addr = Signal(64)
        is64 = Signal()                 # the address needs a 4 DW header
        mx_data = Signal(32)
        mx_func = Signal(Func)
        mx_asks = Signal()              # want["msg"], a register (as rx_asks)
        mx_rid = Signal(16)
        m.d.comb += [qfunc["msg"].eq(mx_func), want["msg"].eq(mx_asks)]
        mx_beat = beat("msix_beat")
        mx_ready = Signal()
        with m.FSM(name="msix"):
            with m.State("IDLE"):
                m.d.comb += msg.ready.eq(1)
                with m.If(msg.valid):
                    m.d.sync += [mx_addr.eq(msg.payload.addr), mx_data.eq(msg.payload.data),
                                 is64.eq(msg.payload.addr[32:].any()),
                                 mx_func.pf.eq(msg.payload.pf if multi else 0),
                                 mx_func.vf.eq(msg.payload.function), mx_asks.eq(1)]
                    m.next = "LOOKUP"
            with m.State("LOOKUP"):
                with m.If(grant["msg"]):
                    m.d.sync += mx_asks.eq(0)
                with m.If(ans["msg"]):
                    m.d.sync += [mx_rid.eq(shared.rid), mx_valid.eq(1)]
                    m.next = "SEND"
            with m.State("SEND"):
                with m.If(mx_ready):
                    m.d.sync += mx_valid.eq(0)
                    m.next = "IDLE"
        m.d.comb += [
            mx_beat.hdr.eq(Cat(Mux(is64, Cat(Const(0, 2), mx_addr[2:32]), 0),
                               Mux(is64, mx_addr[32:], Cat(Const(0, 2), mx_addr[2:32])),
                               Const(0xF, 4), Const(0, 4), Const(0, 8), mx_rid,
                               Const(1, 10), Const(0, 19), Mux(is64, 3, 2)[:3])),
            mx_beat.data.eq(mx_data), mx_beat.strb.eq(1), mx_beat.sop.eq(1),
            mx_beat.eop.eq(1),
        ]
        sources.append((mx_valid, mx_beat, mx_ready, False))

        # User streams: Completer/Requester ID from func, BME checks for requests.
        bme_busy = Signal()         # dma_wr queries vf_bme this cycle
        # The vf_bme query of the IDLE cycle, registered before the endpoint (its answer comes
        # VF_BME_LATENCY + 1 edges after that cycle)
        bme_query = Signal.like(ep.vf_bme_query)
        m.d.sync += ep.vf_bme_query.eq(bme_query)
        m.d.sync += self.dma_refused.valid.eq(0)
        for name, stream_, check, nonposted in (("cpl", self.cpl, False, False),
                                                ("dma_wr", self.dma_wr, True, False),
                                                ("dma_rd", self.dma_rd, True, True)):
            func = Signal(Func, name=f"{name}_func")
            cnt = Signal(range(VF_BME_LATENCY + 2), name=f"{name}_wait")
            rid = Signal(16, name=f"{name}_rid")
            asks = Signal(name=f"{name}_asks")         # want[name], a register (as rx_asks)
            got = Signal(name=f"{name}_got")           # rid holds its answer
            bme_ok = Signal(name=f"{name}_bme_ok")     # pf_ok, registered
            out = beat(f"{name}_beat")
            o_valid = Signal(name=f"{name}_valid")
            o_ready = Signal(name=f"{name}_ready")
            b = stream_.payload
            m.d.comb += [qfunc[name].eq(func), want[name].eq(asks)]
            m.d.comb += [out.hdr.eq(Mux(b.sop, Cat(b.hdr[:80], rid, b.hdr[96:]), b.hdr)),
                         out.data.eq(b.data), out.strb.eq(b.strb), out.sop.eq(b.sop),
                         out.eop.eq(b.eop)]
            pf_ok = Signal(name=f"{name}_pf_ok")
            with m.Switch(func.pf):
                for k in range(p.num_pfs):
                    with m.Case(k):
                        m.d.comb += pf_ok.eq(Mux(func.vf == 0, ep.pfs[k].bus_master_enable,
                                                 ep.vf_bme))
            with m.FSM(name=name):
                with m.State("IDLE"):
                    # The sop beat's function is registered first; the lookup is asked from
                    # LOOKUP, so that every client's request comes from flip-flops.
                    may = ~bme_busy if name == "dma_rd" else Const(1)
                    with m.If(stream_.valid & ~b.sop):
                        m.d.comb += stream_.ready.eq(1)         # a stray beat: dropped
                    with m.Elif(stream_.valid & may):
                        m.d.sync += [func.eq(b.func), cnt.eq(0), asks.eq(1), got.eq(0)]
                        if check:
                            m.d.comb += [bme_query.pf.eq(b.func.pf),
                                         bme_query.vf.eq(b.func.vf)]
                            if name == "dma_wr":
                                m.d.comb += bme_busy.eq(1)
                        m.next = "LOOKUP"
                with m.State("LOOKUP"):
                    with m.If(grant[name]):
                        m.d.sync += asks.eq(0)
                    with m.If(ans[name]):
                        m.d.sync += [rid.eq(shared.rid), got.eq(1)]
                    # vf_bme answers the query of the IDLE cycle (registered) when cnt is
                    # VF_BME_LATENCY: registered (bme_ok), the decision is made from it
                    with m.If(cnt != VF_BME_LATENCY + 1):
                        m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == VF_BME_LATENCY):
                        m.d.sync += bme_ok.eq(pf_ok)
                    with m.If((cnt == VF_BME_LATENCY + 1) & (got | ans[name])):
                        if check:
                            with m.If(bme_ok):
                                m.next = "PASS"
                            with m.Else():
                                m.d.sync += [self.dma_refused.valid.eq(1),
                                             self.dma_refused.write.eq(name == "dma_wr"),
                                             self.dma_refused.func.eq(func)]
                                m.next = "REFUSE"
                        else:
                            m.next = "PASS"
                with m.State("PASS"):
                    m.d.comb += [o_valid.eq(stream_.valid), stream_.ready.eq(o_ready)]
                    with m.If(stream_.valid & o_ready & b.eop):
                        m.next = "IDLE"
                with m.State("REFUSE"):
                    m.d.comb += stream_.ready.eq(1)
                    with m.If(stream_.valid & b.eop):
                        m.next = "IDLE"
            sources.append((o_valid, out, o_ready, nonposted))

        # -- Arbiter: round robin at TLP boundaries, one output register -----------------------
        # The grant is decided a cycle ahead: sel (one-hot, a register) names the source the
        # output register may load from this cycle, so the beat multiplexer selects among the
        # sources by flip-flops; the round-robin pick of the next sel runs beside it.
        n = len(sources)
        o_valid = Signal()
        o_beat = beat("tx_beat")
        m.d.comb += [self.tx.valid.eq(o_valid), self.tx.payload.eq(o_beat)]
        can_load = ~o_valid | self.tx.ready
        locked = Signal()               # inside a TLP of source sel
        sel = Signal(n)                 # one-hot; 0: none
        last = Signal(range(n), init=n - 1)
        valid = Cat(*(v for v, _b, _r, _np in sources))
        elig = Signal(n)
        for i, (v, _b, _r, np) in enumerate(sources):
            m.d.comb += elig[i].eq(v & (self.tx_np_ok if np else 1))
        # sel's source may go now: inside a TLP when it offers a beat, else when eligible
        sel_ok = (sel & Mux(locked, valid, elig)).any()
        go = can_load & sel_ok
        sel_eop = Signal()
        for i, (_v, b, _r, _np) in enumerate(sources):
            with m.If(sel[i]):
                m.d.comb += sel_eop.eq(b.eop)
        for i, (_v, _b, r, _np) in enumerate(sources):
            m.d.comb += r.eq(go & sel[i])
        # The output register loads sel's beat whenever it may load (not only on go, so that
        # the clock enable of its flip-flops is a single gate); o_valid says whether it is one.
        # The beat multiplexer is an AND-OR of the sources' beats by the bits of the one-hot
        # sel (0 when none), so that no decode of sel sits in front of it.
        picked = 0
        for i, (_v, b, _r, _np) in enumerate(sources):
            bits = b.as_value()
            picked = picked | (bits & sel[i].replicate(len(bits)))
        with m.If(can_load):
            m.d.sync += [o_valid.eq(sel_ok), o_beat.as_value().eq(picked)]

        def rr(after, cand):
            """One-hot round-robin pick among the bits of ``cand``, starting after ``after``."""
            out = Signal(n, name=f"rr_after_{after}")
            for idx in reversed([(after + k) % n for k in range(1, n + 1)]):
                with m.If(cand[idx]):
                    m.d.comb += out.eq(1 << idx)
            return out

        sel_idx = Signal(range(n))
        for i in range(n):
            with m.If(sel[i]):
                m.d.comb += sel_idx.eq(i)
        # Both round-robin picks are made beside go, which only chooses between them.
        pick_sel = Signal(n)            # the first source eligible now after sel's
        pick_last = Signal(n)           # ... after the last one granted
        for after, pick in ((sel_idx, pick_sel), (last, pick_last)):
            with m.Switch(after):
                for a in range(n):
                    with m.Case(a):
                        m.d.comb += pick.eq(rr(a, elig))
        with m.If(go & ~sel_eop):
            m.d.sync += locked.eq(1)                    # sel stays up to the TLP's eop
        with m.Elif(go | ~locked):
            # Between TLPs: the next sel is the first source eligible now after the one whose
            # TLP ends with this beat (or after the last one granted). A source picked on a
            # valid it drops by the next cycle (the TLP just taken) is not loaded: sel_ok.
            m.d.sync += locked.eq(0)
            ends = go & sel_eop
            with m.If(ends):
                m.d.sync += [last.eq(sel_idx), sel.eq(pick_sel)]
            with m.Else():
                m.d.sync += sel.eq(pick_last)
        return m
