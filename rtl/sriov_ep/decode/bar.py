"""Memory address decoding: PF BARs and VF BARs (SR-IOV §2.1.1.1, §3.3.14)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..caps.sriov import VfBarState
from ..params import EndpointParams, as_pf

__all__ = ["MemRequest", "MemDecode", "MsixHit", "PfBarState", "VfBarDecoder",
           "DeviceBarDecoder"]

#: Base address of a PF BAR as programmed (type bits cleared).
PfBarState = data.StructLayout({"base": 64})

#: Whether a claimed decode result falls in the MSI-X table or PBA of its function (from that
#: function's MSI-X capability), and the offset into the table or PBA.
MsixHit = data.StructLayout({"table": 1, "pba": 1, "offset": 16})


def MemRequest(tag_width=8):
    """Layout of a memory request: address, direction, a tag carried through untouched, and
    for writes the data: ``data`` holds the bytes of the naturally aligned QWORD containing
    ``addr`` (byte i at bits 8i+7:8i) and ``be`` enables them (0x0F: the low DWORD, 0xF0: the
    high DWORD, 0xFF: the QWORD)."""
    return data.StructLayout({"addr": 64, "write": 1, "tag": tag_width, "data": 64, "be": 8})


def MemDecode(params, tag_width=8):
    """Layout of a decode result.

    ``claimed``: a function's BAR holds the address. ``is_vf``/``vf``: which function (``vf`` is
    the 1-based VF number, 0 for the PF). With ``params`` a device of several PFs, ``pf`` (after
    ``internal``) is the PF index of the function, ``vf`` a VF number within that PF (as wide as
    the largest TotalVFs). ``bar``: BAR index (the low slot of a 64-bit BAR).
    ``offset``: the address minus the start of that function's aperture. ``addr``, ``write``,
    ``tag`` and ``be`` are the request's. ``internal``: the endpoint answered the request itself
    (an MSI-X table or PBA access; ``claimed`` is then 0 and the user's logic only completes
    it); ``data`` is then, for a read, the QWORD read, and otherwise the request's write data.
    """
    pfs = {}
    if isinstance(params, EndpointParams) and params.num_pfs > 1:
        pfs = {"pf": max(1, (params.num_pfs - 1).bit_length())}
        total_vfs = max(pf.total_vfs for pf in params.pfs)
    else:
        total_vfs = as_pf(params).total_vfs
    return data.StructLayout({
        "claimed": 1,
        "internal": 1,
        **pfs,
        "is_vf":   1,
        "vf":      range(total_vfs + 1),
        "bar":     3,
        "offset":  64,
        "addr":    64,
        "write":   1,
        "tag":     tag_width,
        "data":    64,
        "be":      8,
    })


#: The fields of a decode result that the decoder computes (the others are the request's).
_DECODED = ("claimed", "internal", "is_vf", "vf", "bar", "offset")


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

    With ``core=True`` the decoder is one PF's core of :class:`DeviceBarDecoder`, which holds the
    request's pipeline registers once for all PFs: ``req`` and ``res`` are replaced by

    advance : In(1)
        The pipeline moves at the next clock edge.
    addr : In(64)
        The address of the request entering the pipeline.
    addr_s1 : In(64)
        (``latency`` 2 only) that address registered once by the device.
    result : Out(StructLayout)
        ``claimed``, ``internal``, ``is_vf``, ``vf``, ``bar`` and ``offset`` of
        :func:`MemDecode`, registered: ``latency`` advancing edges after ``addr``.
    msix : Out(MsixHit)
        Whether ``result`` is a claim in this PF's MSI-X table or PBA, or its VFs' (from this
        PF's ``msix`` and ``vf_msix``), and the offset in it (meaningful with ``table`` or
        ``pba`` only): registered with ``result``, from each BAR's candidate offset before the
        BAR priority (so that no comparison follows ``result``'s flip-flops).
    """

    def __init__(self, params, *, latency=1, tag_width=8, core=False):
        params = as_pf(params)
        if latency not in (1, 2):
            raise ValueError(f"latency: must be 1 or 2 (got {latency!r})")
        if not isinstance(tag_width, int) or not 0 <= tag_width <= 64:
            raise ValueError(f"tag_width: must be an integer in 0..64 (got {tag_width!r})")
        self._params  = params
        self._latency = latency
        self._core    = core
        if core:
            layout = data.Layout.cast(MemDecode(params, tag_width))
            ports = {"advance": In(1), "addr": In(64),
                     **({"addr_s1": In(64)} if latency == 2 else {}),
                     "result": Out(data.StructLayout({name: layout[name].shape
                                                      for name in _DECODED})),
                     "msix": Out(MsixHit)}
        else:
            ports = {"req": In(stream.Signature(MemRequest(tag_width))),
                     "res": Out(stream.Signature(MemDecode(params, tag_width)))}
        super().__init__({
            **ports,
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

        if self._core:          # the device holds the request's registers
            advance, addr = self.advance, self.addr
        else:
            # The whole pipeline moves when its last stage is empty or being emptied.
            advance = Signal()
            m.d.comb += [advance.eq(~self.res.valid | self.res.ready),
                         self.req.ready.eq(advance)]
            addr = self.req.payload.addr

        # -- Stage 1: compare with every BAR's range, subtract the VF BAR bases ---------------
        if not self._core:
            s1_valid = Signal()
            s1_req   = Signal.like(self.req.payload)
        s1_rel   = [Signal(64, name=f"s1_vf{bar.index}_rel") for bar in p.vf_bars]
        s1_vf    = [Signal(name=f"s1_vf{bar.index}_in") for bar in p.vf_bars]
        s1_pf    = [Signal(name=f"s1_pf{bar.index}_hit") for bar in p.pf_bars]
        # The aperture the difference was taken with travels with it: with latency 2 the
        # snapshot may change (a PF reset, a page size written while the result is held)
        # between the two stages.
        s1_ap    = [Signal(6, name=f"s1_vf{bar.index}_ap") for bar in p.vf_bars]
        s1_comb = []
        for n, bar in enumerate(p.vf_bars):
            inside = vf_on & (addr >= base[n]) & (addr < end[n])
            if not bar.is_64bit:            # a 32-bit BAR decodes only below 4 GiB
                inside &= addr[32:] == 0
            s1_comb += [s1_rel[n].eq(addr - base[n]), s1_vf[n].eq(inside), s1_ap[n].eq(ap[n])]
        for n, bar in enumerate(p.pf_bars):
            top = 64 if bar.is_64bit else 32
            s1_comb.append(s1_pf[n].eq(pf_mse & (addr[bar.size_log2:64] ==
                                                 pf_base[n][bar.size_log2:top])))

        if self._latency == 2:
            with m.If(advance):
                if not self._core:
                    m.d.sync += [s1_valid.eq(self.req.valid), s1_req.eq(self.req.payload)]
                m.d.sync += s1_comb
        else:
            if not self._core:
                m.d.comb += [s1_valid.eq(self.req.valid), s1_req.eq(self.req.payload)]
            m.d.comb += s1_comb
        if self._core:
            s1_addr = self.addr_s1 if self._latency == 2 else self.addr
        else:
            s1_addr = s1_req.addr

        # -- Stage 2: VF number and offset from the difference; pick the hit -----------------
        # ``result`` holds the decode; the request's own fields go from stage 1 straight into
        # the result register (copied through ``result``, they would become always blocks that
        # read nothing when user logic ties ``req`` off: Verilator ALWNEVER).
        decoded = _DECODED
        if self._core:
            result = Signal.like(self.result)
        else:
            layout = data.Layout.cast(self.res.payload.shape())
            result = Signal(data.StructLayout({name: layout[name].shape for name in decoded}))
        hits = []
        # (core) Each BAR's MSI-X hit, from its own candidate offset, before the BAR priority.
        # (Comparing per aperture, beside the offset's multiplexer, made ABC9 in the ECP5 flow
        # fail on the whole 4-PF endpoint.)
        cand = []
        for n, bar in enumerate(p.pf_bars):
            offset = Signal(64, name=f"pf{bar.index}_offset")
            m.d.comb += offset.eq(s1_addr[:bar.size_log2])
            hits.append((s1_pf[n], 0, 0, bar.index, offset))
            if self._core:
                c = Signal(MsixHit, name=f"pf{bar.index}_msix")
                m.d.comb += self._msix_of(c, s1_addr[:bar.size_log2], 1, bar.index, p.msix)
                cand.append(c)
        for n, bar in enumerate(p.vf_bars):
            number = Signal(vf_width, name=f"vf{bar.index}_number")
            offset = Signal(64, name=f"vf{bar.index}_offset")
            # (core) The MSI-X structures lie inside the BAR's size: the offset's bits below it
            # are the difference's whatever the aperture, and the bits between it and the
            # aperture must be 0 (one zero test per aperture, selected like the offset).
            high_zero = Signal(name=f"vf{bar.index}_in_size") if self._core else None
            with m.Switch(s1_ap[n]):
                for log2 in _aperture_log2s(p, bar):
                    with m.Case(log2):
                        m.d.comb += [number.eq(s1_rel[n][log2:64] + 1),
                                     offset.eq(s1_rel[n][:log2])]
                        if self._core:
                            m.d.comb += high_zero.eq(
                                ~s1_rel[n][bar.size_log2:log2].any()
                                if log2 > bar.size_log2 else 1)
            if self._core:
                c = Signal(MsixHit, name=f"vf{bar.index}_msix")
                m.d.comb += self._msix_of(c, s1_rel[n][:bar.size_log2], high_zero, bar.index,
                                          p.vf_msix)
                cand.append(c)
            hits.append((s1_vf[n], 1, number, bar.index, offset))
        msix = Signal(MsixHit) if self._core else None

        # Priority matters only when software programs overlapping BARs: PF BARs first, then in
        # parameter order. Later assignments win, so go backwards.
        for i, (hit, is_vf, number, bar_index, offset) in reversed(list(enumerate(hits))):
            # ``internal`` is the endpoint's (MSI-X); assigned here so that it is not a constant
            # Amaranth writes as an always block that reads nothing (Verilator: ALWNEVER).
            with m.If(hit):
                m.d.comb += [result.internal.eq(0),
                             result.claimed.eq(1), result.is_vf.eq(is_vf), result.vf.eq(number),
                             result.bar.eq(bar_index), result.offset.eq(offset)]
                if self._core:
                    m.d.comb += msix.eq(cand[i])

        if self._core:
            with m.If(advance):
                m.d.sync += [self.result.eq(result), self.msix.eq(msix)]
            return m
        with m.If(advance):
            m.d.sync += [self.res.valid.eq(s1_valid),
                         *(self.res.payload[name].eq(result[name]) for name in decoded),
                         *(self.res.payload[name].eq(s1_req[name])
                           for name in ("addr", "write", "tag", "data", "be"))]
        return m

    @staticmethod
    def _msix_of(hit, low, in_size, bar_index, mx):
        """The :data:`MsixHit` of a claim in BAR ``bar_index`` of a function whose MSI-X
        structures are ``mx`` (or None), at the offset whose bits below the BAR's size are
        ``low``, ``in_size`` telling whether the bits above are 0 (the structures lie inside
        the BAR's size, :class:`MsixParams`): the assignments of ``hit`` (an
        :data:`MsixHit`), all 0 for a BAR that holds neither structure."""
        if mx is None or bar_index not in (mx.table_bar, mx.pba_bar):
            return [hit.eq(0)]              # (no offset computed that nothing reads)
        offset = Value.cast(low)
        offset = Cat(offset, Const(0, 64 - len(offset)))

        def inside(start, size):
            hit = Value.cast(in_size) & (offset < start + size)
            if start:       # ``offset >= 0`` always holds (Verilator: UNSIGNED)
                hit &= offset >= start
            return hit

        in_table = inside(mx.table_offset, mx.table_bytes) if mx.table_bar == bar_index else 0
        in_pba = inside(mx.pba_offset, mx.pba_bytes) if mx.pba_bar == bar_index else 0
        in_table, in_pba = Value.cast(in_table), Value.cast(in_pba)
        start = mx.table_offset if mx.table_bar == bar_index else mx.pba_offset
        if mx.table_bar == bar_index and mx.pba_bar == bar_index:
            rel = Mux(in_table, offset - mx.table_offset, offset - mx.pba_offset)
        else:
            rel = offset - start
        return [hit.table.eq(in_table), hit.pba.eq(in_pba), hit.offset.eq(rel[:16])]


class DeviceBarDecoder(wiring.Component):
    """Decide which PF, or which VF of which PF, and which BAR a memory request reaches, in a
    device of several PFs (``docs/multi-pf.md`` §7).

    One :class:`VfBarDecoder` core per PF (built with ``core=True``) decodes the request against
    that PF's BARs and its VFs' BARs, from that PF's own state inputs; the request's fields
    (``addr``, ``write``, ``tag``, ``data``, ``be``) are registered once for all cores. A
    registered merge keeps the claim of the lowest PF index: PFs claim the same address only
    when software programs overlapping BARs (within a PF, the core's own order stands: PF BARs,
    then parameter order). So a PF FLR, D3hot-to-D0 reset or VF Enable clearing of PF k, which
    change only PF k's inputs, changes only the decode of PF k and its VFs.

    Parameters
    ----------
    params : EndpointParams
        The device.
    latency : int
        Each core's latency (1 or 2, see :class:`VfBarDecoder`); the merge adds one.
    tag_width : int
        Width of the request tag carried to the result.

    Members
    -------
    req : In(stream.Signature(MemRequest(tag_width)))
        Memory requests.
    res : Out(stream.Signature(MemDecode(params, tag_width)))
        One result per request, in order, :attr:`latency` (``latency + 1``) cycles after
        acceptance when ``res.ready`` is high; ``pf`` names the PF, ``vf`` is 1-based within
        it. ``req.ready`` is low while a result is held back.
    msix : Out(MsixHit)
        With ``res``: whether the result is a claim in the MSI-X table or PBA of the function
        (PF ``pf``'s ``msix`` or ``vf_msix``), and the offset in it.
    vf_enable, vf_mse, pf_mse : In(P)
        Bit k: PF k's VF Enable, VF MSE, and Command Memory Space Enable.
    num_vfs : In(ArrayLayout(16, P))
        PF k's NumVFs.
    vf_bars : In(ArrayLayout(ArrayLayout(VfBarState, V), P))
        PF k's VF BARs in the order of ``params.pfs[k].vf_bars`` (V: the most VF BARs of any
        PF; the entries past PF k's own are not used).
    pf_bars : In(ArrayLayout(ArrayLayout(PfBarState, B), P))
        PF k's BAR bases in the order of ``params.pfs[k].pf_bars`` (B likewise).

    The state inputs act as in :class:`VfBarDecoder`, each on its own PF's core.
    """

    def __init__(self, params, *, latency=1, tag_width=8):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        if params.num_pfs < 2:
            raise ValueError("DeviceBarDecoder: a device of one PF decodes with VfBarDecoder")
        if latency not in (1, 2):
            raise ValueError(f"latency: must be 1 or 2 (got {latency!r})")
        if not isinstance(tag_width, int) or not 0 <= tag_width <= 64:
            raise ValueError(f"tag_width: must be an integer in 0..64 (got {tag_width!r})")
        self._params    = params
        self._latency   = latency
        self._tag_width = tag_width
        pfs = params.num_pfs
        vf_bars = max(len(pf.vf_bars) for pf in params.pfs)
        pf_bars = max(len(pf.pf_bars) for pf in params.pfs)
        super().__init__({
            "req":       In(stream.Signature(MemRequest(tag_width))),
            "res":       Out(stream.Signature(MemDecode(params, tag_width))),
            "msix":      Out(MsixHit),
            "vf_enable": In(pfs),
            "vf_mse":    In(pfs),
            "num_vfs":   In(data.ArrayLayout(16, pfs)),
            "vf_bars":   In(data.ArrayLayout(data.ArrayLayout(VfBarState, vf_bars), pfs)),
            "pf_mse":    In(pfs),
            "pf_bars":   In(data.ArrayLayout(data.ArrayLayout(PfBarState, pf_bars), pfs)),
        })

    @property
    def latency(self):
        """Cycles from accepting a request to its result: the cores' latency plus the merge."""
        return self._latency + 1

    def elaborate(self, platform):
        m = Module()
        latency = self._latency
        cores = [VfBarDecoder(pf, latency=latency, tag_width=self._tag_width, core=True)
                 for pf in self._params.pfs]

        # The whole pipeline moves when its last stage is empty or being emptied.
        advance = Signal()
        m.d.comb += [advance.eq(~self.res.valid | self.res.ready),
                     self.req.ready.eq(advance)]

        # -- The request's fields, registered once for every core ------------------------------
        fields = ("addr", "write", "tag", "data", "be")
        s1_valid, s1_req = self.req.valid, self.req.payload
        if latency == 2:
            s1_valid, s1_req = Signal(), Signal.like(self.req.payload, name="s1_req")
            with m.If(advance):
                m.d.sync += [s1_valid.eq(self.req.valid), s1_req.eq(self.req.payload)]
        s2_valid, s2_req = Signal(), Signal.like(self.req.payload, name="s2_req")
        with m.If(advance):
            m.d.sync += [s2_valid.eq(s1_valid),
                         *(s2_req[name].eq(s1_req[name]) for name in fields)]

        # -- One core per PF -------------------------------------------------------------------
        for k, core in enumerate(cores):
            m.submodules[f"pf{k}"] = core
            p = self._params.pfs[k]
            m.d.comb += [core.advance.eq(advance), core.addr.eq(self.req.payload.addr),
                         core.vf_enable.eq(self.vf_enable[k]), core.vf_mse.eq(self.vf_mse[k]),
                         core.num_vfs.eq(self.num_vfs[k]), core.pf_mse.eq(self.pf_mse[k])]
            if latency == 2:
                m.d.comb += core.addr_s1.eq(s1_req.addr)
            m.d.comb += [core.vf_bars[n].eq(self.vf_bars[k][n]) for n in range(len(p.vf_bars))]
            m.d.comb += [core.pf_bars[n].eq(self.pf_bars[k][n]) for n in range(len(p.pf_bars))]

        # -- Merge: the lowest PF that claims --------------------------------------------------
        res = self.res.payload
        claimed = internal = is_vf = vf = bar = offset = pf = 0
        table = pba = msix_offset = 0
        before = Const(0, 1)            # a lower PF claims
        for k, core in enumerate(cores):
            r = core.result
            sel = Signal(name=f"pf{k}_selected")
            m.d.comb += sel.eq(r.claimed & ~before)
            before = before | r.claimed
            claimed = claimed | r.claimed
            internal = internal | (sel & r.internal)
            is_vf = is_vf | (sel & r.is_vf)
            vf = vf | Mux(sel, r.vf, 0)
            bar = bar | Mux(sel, r.bar, 0)
            offset = offset | Mux(sel, r.offset, 0)
            if k:
                pf = pf | Mux(sel, k, 0)
            table = table | (sel & core.msix.table)
            pba = pba | (sel & core.msix.pba)
            msix_offset = msix_offset | Mux(sel, core.msix.offset, 0)
        with m.If(advance):
            m.d.sync += [self.res.valid.eq(s2_valid),
                         res.claimed.eq(claimed), res.internal.eq(internal), res.pf.eq(pf),
                         res.is_vf.eq(is_vf), res.vf.eq(vf), res.bar.eq(bar),
                         res.offset.eq(offset),
                         *(res[name].eq(s2_req[name]) for name in fields),
                         self.msix.table.eq(table), self.msix.pba.eq(pba),
                         self.msix.offset.eq(msix_offset)]
        return m
