"""Routing-ID decoding: which function of the endpoint a configuration request reaches."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ..params import EndpointParams, as_pf

__all__ = ["Target", "RoutingIdDecoder", "DeviceRoutingDecoder", "exact_divider",
           "needs_divider"]


class Target(enum.Enum, shape=2):
    """The function a request reaches."""
    NONE = 0
    PF   = 1
    VF   = 2


def exact_divider(stride, width):
    """``(shift, inverse, limit)`` for an exact division by the constant ``stride``.

    For ``0 <= d < 2**width``, with ``t = ((d >> shift) * inverse) % 2**(width - shift)``:
    ``stride`` divides ``d`` exactly when ``d``'s low ``shift`` bits are 0 and ``t <= limit``, and
    then ``t == d // stride``. ``shift`` is the number of trailing zeros of ``stride``,
    ``inverse`` the inverse of its odd part modulo ``2**(width - shift)`` (Granlund and
    Montgomery, 1994): one multiplication by a constant and one comparison, where a division
    with remainder would need a second multiplication to check the remainder.
    """
    if not 0 < stride < 1 << width:
        raise ValueError(f"stride must be in 1..{(1 << width) - 1} (got {stride})")
    shift = (stride & -stride).bit_length() - 1
    odd, bits = stride >> shift, width - shift
    return shift, pow(odd, -1, 1 << bits), ((1 << bits) - 1) // odd


def needs_divider(params):
    """Whether a VF Stride of ``params`` (of any of its PFs, for a device) is neither 0 nor a
    power of two, so that decoding takes a multiplier (and :class:`SriovEndpoint` a decode stage
    more for it)."""
    if isinstance(params, EndpointParams):
        return any(needs_divider(pf) for pf in params.pfs)
    return any(stride & (stride - 1) for stride in (params.vf_stride_ari, params.vf_stride_non_ari))


class RoutingIdDecoder(wiring.Component):
    """Decide whether a configuration request reaches the PF, VF n, or nothing.

    The rules are in ``docs/endpoint-behaviour.md`` §1. In short: a Type 0 request reaches the PF
    when its function number (8 bits, ARI or not) is the PF's; VFs sit at
    ``PF RID + First VF Offset + (n-1) * VF Stride`` (16-bit Routing IDs, carries into the bus
    number), reached by Type 0 requests on the PF's bus and Type 1 requests on higher buses.

    The VF number is computed, not searched: one subtraction and an exact division by the
    (constant) VF Stride, a shift for a power of two and otherwise a multiplication by a modular
    inverse and a comparison (:func:`exact_divider`). No logic grows with TotalVFs beyond the
    width of a VF number.

    Parameters
    ----------
    params : PfParams (or a single-PF EndpointParams)
    stages : int
        1: ``target``/``vf`` are combinational. 2: the subtraction is registered, so they
        follow ``type1``, ``rid``, ``ari`` and the captured bus one cycle later (for higher clock
        rates; ``vf_enable`` and ``num_vfs`` still act at once). 3: the division's
        multiplication is registered too: two cycles later (for a VF Stride that is not a power
        of two, see :func:`needs_divider`).
    external_bus : bool
        Take the captured bus number as an input (``bus`` is then ``In(8)`` and there is no
        ``capture``): a core of :class:`DeviceRoutingDecoder`, whose PFs share one bus register.

    Members
    -------
    type1 : In(1)
        The request is Type 1.
    rid : In(16)
        Target Routing ID of the request.
    capture : In(1)
        Store ``rid[15:8]`` as the captured bus number at the next clock edge (assert for Type 0
        configuration writes that reach the PF). Absent with ``external_bus``.
    bus : Out(8)
        Captured bus number (0 after reset). ``In(8)`` with ``external_bus``.
    ari : In(1)
        ARI Capable Hierarchy: selects the ARI or non-ARI First VF Offset and VF Stride.
    vf_enable : In(1)
        SR-IOV VF Enable.
    num_vfs : In(16)
        NumVFs (at most TotalVFs).
    target : Out(Target)
        Combinational decode of ``type1``/``rid``.
    vf : Out(range(TotalVFs + 1))
        VF number (1-based) when ``target`` is ``VF``, else 0.
    vf_index : Out(range(max(2, TotalVFs)))
        ``vf - 1`` when ``target`` is ``VF`` (the VF's entry in a per-VF memory); meaningless
        otherwise. It comes without the adder and the multiplexer that ``vf`` passes through.
    """

    def __init__(self, params, *, stages=1, external_bus=False):
        params = as_pf(params)
        if stages not in (1, 2, 3):
            raise ValueError(f"stages: must be 1, 2 or 3 (got {stages!r})")
        self._params = params
        self._stages = stages
        self._external_bus = external_bus
        bus = {"bus": In(8)} if external_bus else {"capture": In(1), "bus": Out(8)}
        super().__init__({
            "type1":     In(1),
            "rid":       In(16),
            **bus,
            "ari":       In(1),
            "vf_enable": In(1),
            "num_vfs":   In(16),
            "target":    Out(Target),
            "vf":        Out(range(params.total_vfs + 1)),
            "vf_index":  Out(range(max(2, params.total_vfs))),
        })

    @staticmethod
    def _divide(m, d, stride, name, stage2):
        """``(q, exact)``: ``d // stride`` and whether the division is exact, for the constant
        ``stride`` (``q`` matters only when exact). What is computed from ``d`` is appended to
        ``stage2`` (registered with three stages); the comparison comes after it."""
        low_zero = Signal(name=f"{name}_low_zero")
        if stride == 0:         # only legal with TotalVFs == 1: VF 1 alone, at d == 0
            stage2.append(low_zero.eq(d == 0))
            return Const(0, 16), low_zero
        shift, inverse, limit = exact_divider(stride, 16)
        product = Signal(16 - shift, name=f"{name}_product")
        q, exact = Signal(16, name=f"{name}_q"), Signal(name=f"{name}_exact")
        stage2 += [product.eq(d[shift:] * Const(inverse, 16 - shift)),
                   low_zero.eq(d[:shift] == 0 if shift else 1)]
        fits = product <= limit if inverse != 1 else 1      # (always, for a power of two)
        m.d.comb += [q.eq(product), exact.eq(low_zero & fits)]
        return q, exact

    def elaborate(self, platform):
        p = self._params
        m = Module()

        pf_fn = p.pf_rid & 0xff
        if not self._external_bus:
            with m.If(self.capture):
                m.d.sync += self.bus.eq(self.rid[8:16])

        # Type 0 requests are for our own bus: their bus field is not compared.
        target_rid = Signal(16)
        m.d.comb += target_rid.eq(Mux(self.type1, self.rid, Cat(self.rid[:8], self.bus)))
        pf_rid = Signal(16)
        m.d.comb += pf_rid.eq(Cat(Const(pf_fn, 8), self.bus))

        offset = Signal(16)
        m.d.comb += offset.eq(Mux(self.ari, p.first_vf_offset_ari, p.first_vf_offset_non_ari))
        diff = Signal(signed(18))
        # A Type 1 request for our own bus never comes from a Downstream Port: claim nothing.
        own_bus_type1 = Signal()
        pf_hit = Signal()
        ari = Signal()
        first = [diff.eq(target_rid - pf_rid - offset),
                 own_bus_type1.eq(self.type1 & (self.rid[8:16] == self.bus)),
                 pf_hit.eq(~self.type1 & (self.rid[:8] == pf_fn)),
                 ari.eq(self.ari)]
        # With two stages, the subtraction is registered: outputs follow inputs a cycle later.
        m.d.comb += first if self._stages == 1 else []
        m.d.sync += first if self._stages >= 2 else []
        d = diff[:16]

        # The division's products and what else the last stage needs; with three stages they
        # are registered once more.
        stage2 = []
        claimable = Signal()        # a VF's RID as far as the RID alone can tell
        pf_hit_2, ari_2 = Signal(), Signal()
        stage2 += [claimable.eq(~own_bus_type1 & (diff >= 0)), pf_hit_2.eq(pf_hit),
                   ari_2.eq(ari)]
        q_ari, exact_ari = self._divide(m, d, p.vf_stride_ari, "ari", stage2)
        if p.vf_stride_non_ari == p.vf_stride_ari:
            q, exact = q_ari, exact_ari
        else:
            q_non, exact_non = self._divide(m, d, p.vf_stride_non_ari, "non_ari", stage2)
            q, exact = Signal(16), Signal()
            m.d.comb += [q.eq(Mux(ari_2, q_ari, q_non)),
                         exact.eq(Mux(ari_2, exact_ari, exact_non))]
        m.d.comb += stage2 if self._stages < 3 else []
        m.d.sync += stage2 if self._stages == 3 else []

        is_vf = Signal()
        m.d.comb += is_vf.eq(claimable & exact & self.vf_enable & (q < self.num_vfs))

        m.d.comb += self.vf_index.eq(q)
        with m.If(pf_hit_2):
            m.d.comb += self.target.eq(Target.PF)
        with m.Elif(is_vf):
            m.d.comb += [self.target.eq(Target.VF), self.vf.eq(q + 1)]
        with m.Else():
            m.d.comb += self.target.eq(Target.NONE)
        return m


class DeviceRoutingDecoder(wiring.Component):
    """Decide whether a configuration request reaches one of a device's PFs, one of its VFs, or
    nothing (``docs/multi-pf.md`` §5).

    One :class:`RoutingIdDecoder` core per PF decodes in parallel, all from one captured bus
    number (the PFs share it, PCIe Base §2.2.6.2). Core k also adds ``params.vf_base(k)`` to its
    VF's index, giving the VF's entry in the device's per-VF memories. Each core's results are
    registered, and an AND-OR merge after the flip-flops combines them: no two functions of the
    device share a Routing ID (checked by :class:`EndpointParams`), so at most one core claims a
    request and no priority is needed.
    Logic grows with the number of PFs, nothing with the number of VFs.

    Latency: every core has ``stages`` stages and its results are registered, so ``target``,
    ``pf``, ``vf`` and ``vf_index`` follow ``type1``, ``rid``, ``ari`` and the captured bus
    ``stages`` clock edges later (2, or 3 when some PF's VF Stride is not a power of two: one
    edge more than :class:`RoutingIdDecoder` in :class:`SriovEndpoint`), and ``vf_enable`` and
    ``num_vfs`` one clock edge later.

    Parameters
    ----------
    params : EndpointParams
        The device (any number of PFs; with one, :class:`RoutingIdDecoder` alone decodes the same
        an edge earlier).
    stages : int or None
        Stages of each core (see :class:`RoutingIdDecoder`); by default 3 if any PF needs the
        divider (:func:`needs_divider`), else 2.

    Members
    -------
    type1 : In(1)
        The request is Type 1.
    rid : In(16)
        Target Routing ID of the request.
    capture : In(1)
        Store ``rid[15:8]`` as the captured bus number at the next clock edge (assert for Type 0
        configuration writes that reach any PF).
    bus : Out(8)
        Captured bus number (0 after reset), shared by every PF.
    ari : In(1)
        ARI Capable Hierarchy (one bit for the device): selects every PF's ARI or non-ARI First
        VF Offset and VF Stride.
    vf_enable : In(P)
        Bit k: PF k's VF Enable.
    num_vfs : In(ArrayLayout(16, P))
        PF k's NumVFs at index k.
    target : Out(Target)
        What the request reaches.
    pf : Out(max(1, ceil(log2(P))))
        PF index of the PF reached, or of the PF whose VF is reached; 0 when ``target`` is NONE.
    vf : Out(range(max TotalVFs + 1))
        VF number (1-based, within PF ``pf``) when ``target`` is ``VF``, else 0.
    vf_index : Out(range(max(2, sum of TotalVFs)))
        ``params.vf_base(pf) + vf - 1`` when ``target`` is ``VF`` (the VF's entry in the device's
        per-VF memories), else 0.

    Every output is merged from per-PF flip-flops after them (an OR of P terms between the
    flip-flops and the output; the latency is the same as a registered merge's).
    """

    def __init__(self, params, *, stages=None):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        if stages is None:
            stages = 3 if needs_divider(params) else 2
        if stages not in (1, 2, 3):
            raise ValueError(f"stages: must be 1, 2 or 3 (got {stages!r})")
        self._params = params
        self._stages = stages
        pfs = params.num_pfs
        super().__init__({
            "type1":     In(1),
            "rid":       In(16),
            "capture":   In(1),
            "bus":       Out(8),
            "ari":       In(1),
            "vf_enable": In(pfs),
            "num_vfs":   In(data.ArrayLayout(16, pfs)),
            "target":    Out(Target),
            "pf":        Out(max(1, (pfs - 1).bit_length())),
            "vf":        Out(range(max(pf.total_vfs for pf in params.pfs) + 1)),
            "vf_index":  Out(range(max(2, params.vf_entries))),
        })

    @property
    def latency(self):
        """Clock edges from ``type1``/``rid`` to the decode."""
        return self._stages

    def elaborate(self, platform):
        p = self._params
        m = Module()

        with m.If(self.capture):
            m.d.sync += self.bus.eq(self.rid[8:16])

        target, pf, vf, vf_index = 0, 0, 0, 0
        for k, pf_params in enumerate(p.pfs):
            core = RoutingIdDecoder(pf_params, stages=self._stages, external_bus=True)
            m.submodules[f"pf{k}"] = core
            m.d.comb += [core.type1.eq(self.type1), core.rid.eq(self.rid),
                         core.bus.eq(self.bus), core.ari.eq(self.ari),
                         core.vf_enable.eq(self.vf_enable[k]),
                         core.num_vfs.eq(self.num_vfs[k])]
            # Each core's results are registered on their own and merged after the flip-flops:
            # the NumVFs comparison (the core's last stage) then ends at a flip-flop of PF k's
            # instead of passing through the merge of every PF's results (4 PFs: that merge
            # was the critical path). The VF's entry is the global index (the core's plus PF
            # k's base), registered with the core's VF decision beside it.
            code = Signal(len(core.target.as_value()), name=f"pf{k}_target")
            vf_k = Signal.like(core.vf, name=f"pf{k}_vf")
            index = Signal.like(self.vf_index, name=f"pf{k}_vf_index")
            is_vf = Signal(name=f"pf{k}_is_vf")
            m.d.sync += [code.eq(core.target.as_value()), vf_k.eq(core.vf),
                         index.eq(core.vf_index + p.vf_base(k)),
                         is_vf.eq(core.target == Target.VF)]
            target |= code
            if k:
                pf |= Mux(code.any(), k, 0)
            vf |= vf_k
            vf_index |= Mux(is_vf, index, 0)
        # At most one core claims (no two functions share a Routing ID): OR the results.
        m.d.comb += [self.target.eq(target), self.pf.eq(pf), self.vf.eq(vf),
                     self.vf_index.eq(vf_index)]
        return m
