"""Memory address decoding: PF BARs and VF BARs (SR-IOV §2.1.1.1, §3.3.14)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..caps.sriov import VfBarState
from ..params import as_pf

__all__ = ["MemRequest", "MemDecode", "PfBarState", "VfBarDecoder"]

#: Base address of a PF BAR as programmed (type bits cleared).
PfBarState = data.StructLayout({"base": 64})


def MemRequest(tag_width=8):
    """Layout of a memory request: address, direction, a tag carried through untouched, and
    for writes the data: ``data`` holds the bytes of the naturally aligned QWORD containing
    ``addr`` (byte i at bits 8i+7:8i) and ``be`` enables them (0x0F: the low DWORD, 0xF0: the
    high DWORD, 0xFF: the QWORD)."""
    return data.StructLayout({"addr": 64, "write": 1, "tag": tag_width, "data": 64, "be": 8})


def MemDecode(params, tag_width=8):
    """Layout of a decode result.

    ``claimed``: a function's BAR holds the address. ``is_vf``/``vf``: which function (``vf`` is
    the 1-based VF number, 0 for the PF). ``bar``: BAR index (the low slot of a 64-bit BAR).
    ``offset``: the address minus the start of that function's aperture. ``addr``, ``write``,
    ``tag`` and ``be`` are the request's. ``internal``: the endpoint answered the request itself
    (an MSI-X table or PBA access; ``claimed`` is then 0 and the user's logic only completes
    it); ``data`` is then, for a read, the QWORD read, and otherwise the request's write data.
    """
    return data.StructLayout({
        "claimed": 1,
        "internal": 1,
        "is_vf":   1,
        "vf":      range(params.total_vfs + 1),
        "bar":     3,
        "offset":  64,
        "addr":    64,
        "write":   1,
        "tag":     tag_width,
        "data":    64,
        "be":      8,
    })


def _aperture_log2s(params, bar):
    """Every value log2(max(BAR size, System Page Size)) can take for VF BAR ``bar``."""
    return sorted({max(bar.size_log2, 12 + bit) for bit in range(32)
                   if params.supported_page_sizes >> bit & 1})


class VfBarDecoder(wiring.Component):
    """Decide which function and BAR a memory request reaches, or none.

    VF n's BAR i occupies ``[base_i + (n-1)*A_i, base_i + n*A_i)`` with ``A_i = 2**aperture_log2``
    = max(BAR size, System Page Size). The VF number comes from the address: ``(addr - base_i)
    >> aperture_log2`` plus one, so nothing grows with TotalVFs beyond the width of a VF number.
    VFs decode while VF Enable and VF MSE are set and ``n <= NumVFs``; PF BARs while the PF's
    Memory Space Enable is set. Nothing else is claimed: below a base, past NumVFs apertures,
    above 4 GiB for a 32-bit BAR.

    Parameters
    ----------
    params : PfParams (or a single-PF EndpointParams)
    latency : int
        1: the result is registered one cycle after the request is accepted. 2: one more
        pipeline stage (subtract, then shift and compare) for higher clock rates.
    tag_width : int
        Width of the request tag carried to the result.

    Members
    -------
    req : In(stream.Signature(MemRequest(tag_width)))
        Memory requests.
    res : Out(stream.Signature(MemDecode(params, tag_width)))
        One decode result per request, in order, ``latency`` cycles after acceptance when
        ``res.ready`` is high. ``req.ready`` is low while a result is held back.
    vf_enable, vf_mse : In(1)
    num_vfs : In(16)
    vf_bars : In(ArrayLayout(VfBarState, len(params.vf_bars)))
        From :class:`SriovCapability`. The decoder works from a registered copy of these and of
        ``pf_mse``/``pf_bars``: a change made at a clock edge applies to requests accepted from
        the second edge after it on, except NumVFs and the apertures, from the fourth. Those two
        change only while VF Enable is 0 (as :class:`SriovCapability` guarantees); a user
        driving the decoder directly must keep to that. In :class:`SriovEndpoint` the
        configuration write that makes a change completes later than that.
    pf_mse : In(1)
        PF Command Memory Space Enable.
    pf_bars : In(ArrayLayout(PfBarState, len(params.pf_bars)))
        PF BAR bases, in the order of ``params.pf_bars``.
    """

    def __init__(self, params, *, latency=1, tag_width=8):
        params = as_pf(params)
        if latency not in (1, 2):
            raise ValueError(f"latency: must be 1 or 2 (got {latency!r})")
        if not isinstance(tag_width, int) or not 0 <= tag_width <= 64:
            raise ValueError(f"tag_width: must be an integer in 0..64 (got {tag_width!r})")
        self._params  = params
        self._latency = latency
        super().__init__({
            "req":       In(stream.Signature(MemRequest(tag_width))),
            "res":       Out(stream.Signature(MemDecode(params, tag_width))),
            "vf_enable": In(1),
            "vf_mse":    In(1),
            "num_vfs":   In(16),
            "vf_bars":   In(data.ArrayLayout(VfBarState, len(params.vf_bars))),
            "pf_mse":    In(1),
            "pf_bars":   In(data.ArrayLayout(PfBarState, len(params.pf_bars))),
        })

    @property
    def latency(self):
        return self._latency

    def elaborate(self, platform):
        p = self._params
        m = Module()
        vf_width = max(1, p.total_vfs.bit_length())

        # -- Configuration snapshot -------------------------------------------------------------
        # The state inputs change only on configuration writes. A registered copy, with each
        # VF BAR's end address base + NumVFs * A precomputed, takes the range checks off the
        # request path; the decode follows a configuration change one cycle later, before the
        # configuration write that caused it completes. NumVFs * A takes two more cycles: NumVFs
        # and the aperture (System Page Size) only change while VF Enable is 0, when no VF
        # decodes, and VF Enable can only rise on a later configuration write.
        vf_on  = Signal()
        pf_mse = Signal()
        num    = Signal(16)
        base   = [Signal(64, name=f"vf{bar.index}_base") for bar in p.vf_bars]
        ap     = [Signal(6, name=f"vf{bar.index}_ap") for bar in p.vf_bars]
        end    = [Signal(65, name=f"vf{bar.index}_end") for bar in p.vf_bars]
        pf_base = [Signal(64, name=f"pf{bar.index}_base") for bar in p.pf_bars]
        m.d.sync += [vf_on.eq(self.vf_enable & self.vf_mse), pf_mse.eq(self.pf_mse),
                     num.eq(self.num_vfs)]
        for n, bar in enumerate(p.vf_bars):
            span = Signal(64 + 16, name=f"vf{bar.index}_span")
            # The aperture takes few values (the BAR size or a supported page size): multiplexers
            # of constant shifts are far smaller than 64-bit barrel shifters.
            with m.Switch(ap[n]):
                for log2 in _aperture_log2s(p, bar):
                    with m.Case(log2):
                        m.d.sync += span.eq(num << log2)
            m.d.sync += [base[n].eq(self.vf_bars[n].base), ap[n].eq(self.vf_bars[n].aperture_log2),
                         end[n].eq(self.vf_bars[n].base + span)]
        for n in range(len(p.pf_bars)):
            m.d.sync += pf_base[n].eq(self.pf_bars[n].base)

        # The whole pipeline moves when its last stage is empty or being emptied.
        advance = Signal()
        m.d.comb += [advance.eq(~self.res.valid | self.res.ready),
                     self.req.ready.eq(advance)]

        # -- Stage 1: compare with every BAR's range, subtract the VF BAR bases ---------------
        addr = self.req.payload.addr
        s1_valid = Signal()
        s1_req   = Signal.like(self.req.payload)
        s1_rel   = [Signal(64, name=f"s1_vf{bar.index}_rel") for bar in p.vf_bars]
        s1_vf    = [Signal(name=f"s1_vf{bar.index}_in") for bar in p.vf_bars]
        s1_pf    = [Signal(name=f"s1_pf{bar.index}_hit") for bar in p.pf_bars]
        s1_comb = []
        for n, bar in enumerate(p.vf_bars):
            inside = vf_on & (addr >= base[n]) & (addr < end[n])
            if not bar.is_64bit:            # a 32-bit BAR decodes only below 4 GiB
                inside &= addr[32:] == 0
            s1_comb += [s1_rel[n].eq(addr - base[n]), s1_vf[n].eq(inside)]
        for n, bar in enumerate(p.pf_bars):
            top = 64 if bar.is_64bit else 32
            s1_comb.append(s1_pf[n].eq(pf_mse & (addr[bar.size_log2:64] ==
                                                 pf_base[n][bar.size_log2:top])))

        if self._latency == 2:
            with m.If(advance):
                m.d.sync += [s1_valid.eq(self.req.valid), s1_req.eq(self.req.payload)]
                m.d.sync += s1_comb
        else:
            m.d.comb += [s1_valid.eq(self.req.valid), s1_req.eq(self.req.payload)]
            m.d.comb += s1_comb

        # -- Stage 2: VF number and offset from the difference; pick the hit -----------------
        # ``result`` holds the decode; the request's own fields go from stage 1 straight into
        # the result register (copied through ``result``, they would become always blocks that
        # read nothing when user logic ties ``req`` off: Verilator ALWNEVER).
        decoded = ("claimed", "internal", "is_vf", "vf", "bar", "offset")
        layout = data.Layout.cast(self.res.payload.shape())
        result = Signal(data.StructLayout({name: layout[name].shape for name in decoded}))
        hits = []
        for n, bar in enumerate(p.pf_bars):
            offset = Signal(64, name=f"pf{bar.index}_offset")
            m.d.comb += offset.eq(s1_req.addr[:bar.size_log2])
            hits.append((s1_pf[n], 0, 0, bar.index, offset))
        for n, bar in enumerate(p.vf_bars):
            number = Signal(vf_width, name=f"vf{bar.index}_number")
            offset = Signal(64, name=f"vf{bar.index}_offset")
            with m.Switch(ap[n]):
                for log2 in _aperture_log2s(p, bar):
                    with m.Case(log2):
                        m.d.comb += [number.eq(s1_rel[n][log2:64] + 1),
                                     offset.eq(s1_rel[n][:log2])]
            hits.append((s1_vf[n], 1, number, bar.index, offset))

        # Priority matters only when software programs overlapping BARs: PF BARs first, then in
        # parameter order. Later assignments win, so go backwards.
        for hit, is_vf, number, bar_index, offset in reversed(hits):
            # ``internal`` is the endpoint's (MSI-X); assigned here so that it is not a constant
            # Amaranth writes as an always block that reads nothing (Verilator: ALWNEVER).
            with m.If(hit):
                m.d.comb += [result.internal.eq(0),
                             result.claimed.eq(1), result.is_vf.eq(is_vf), result.vf.eq(number),
                             result.bar.eq(bar_index), result.offset.eq(offset)]

        with m.If(advance):
            m.d.sync += [self.res.valid.eq(s1_valid),
                         *(self.res.payload[name].eq(result[name]) for name in decoded),
                         *(self.res.payload[name].eq(s1_req[name])
                           for name in ("addr", "write", "tag", "data", "be"))]
        return m
