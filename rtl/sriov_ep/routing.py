"""Routing-ID decoding: which function of the endpoint a configuration request reaches."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .params import EndpointParams

__all__ = ["Target", "RoutingIdDecoder", "const_divider"]


class Target(enum.Enum, shape=2):
    """The function a request reaches."""
    NONE = 0
    PF   = 1
    VF   = 2


def const_divider(stride, width):
    """``(multiplier, shift)`` such that ``(d * multiplier) >> shift == d // stride`` for every
    ``0 <= d < 2**width`` (round-up reciprocal; Granlund and Montgomery, 1994)."""
    if stride < 1:
        raise ValueError("stride must be positive")
    extra = (stride - 1).bit_length()      # ceil(log2(stride))
    shift = width + extra
    return -(-(1 << shift) // stride), shift


class RoutingIdDecoder(wiring.Component):
    """Decide whether a configuration request reaches the PF, VF n, or nothing.

    The rules are in ``docs/endpoint-behaviour.md`` §1. In short: a Type 0 request reaches the PF
    when its function number (8 bits, ARI or not) is the PF's; VFs sit at
    ``PF RID + First VF Offset + (n-1) * VF Stride`` (16-bit Routing IDs, carries into the bus
    number), reached by Type 0 requests on the PF's bus and Type 1 requests on higher buses.

    The VF number is computed, not searched: one subtraction and a division by the (constant)
    VF Stride, done as a multiplication by its reciprocal. No logic grows with TotalVFs beyond the
    width of a VF number.

    Parameters
    ----------
    params : EndpointParams
    stages : int
        1: ``target``/``vf`` are combinational. 2: the subtraction is registered, so they
        follow ``type1``, ``rid``, ``ari`` and the captured bus one cycle later (for higher clock
        rates; ``vf_enable`` and ``num_vfs`` still act at once).

    Members
    -------
    type1 : In(1)
        The request is Type 1.
    rid : In(16)
        Target Routing ID of the request.
    capture : In(1)
        Store ``rid[15:8]`` as the captured bus number at the next clock edge (assert for Type 0
        configuration writes that reach the PF).
    bus : Out(8)
        Captured bus number (0 after reset).
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

    def __init__(self, params, *, stages=1):
        if not isinstance(params, EndpointParams):
            raise TypeError(f"params: must be an EndpointParams, not {params!r}")
        if stages not in (1, 2):
            raise ValueError(f"stages: must be 1 or 2 (got {stages!r})")
        self._params = params
        self._stages = stages
        super().__init__({
            "type1":     In(1),
            "rid":       In(16),
            "capture":   In(1),
            "bus":       Out(8),
            "ari":       In(1),
            "vf_enable": In(1),
            "num_vfs":   In(16),
            "target":    Out(Target),
            "vf":        Out(range(params.total_vfs + 1)),
            "vf_index":  Out(range(max(2, params.total_vfs))),
        })

    def _divide(self, m, d, stride, name):
        """``d // stride`` and whether the division is exact, for the constant ``stride``."""
        q     = Signal(16, name=f"{name}_q")
        exact = Signal(name=f"{name}_exact")
        if stride == 0:         # only legal with TotalVFs == 1: VF 1 alone, at d == 0
            m.d.comb += [q.eq(0), exact.eq(d == 0)]
        elif stride & (stride - 1) == 0:
            shift = stride.bit_length() - 1
            m.d.comb += [q.eq(d >> shift), exact.eq(d[:shift] == 0 if shift else 1)]
        else:
            mult, shift = const_divider(stride, 16)
            m.d.comb += [q.eq((d * Const(mult)) >> shift),
                         exact.eq((q * Const(stride))[:16] == d)]
        return q, exact

    def elaborate(self, platform):
        p = self._params
        m = Module()

        pf_fn = p.pf_rid & 0xff
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
        m.d.sync += first if self._stages == 2 else []
        d = diff[:16]

        q_ari, exact_ari = self._divide(m, d, p.vf_stride_ari, "ari")
        if p.vf_stride_non_ari == p.vf_stride_ari:
            q, exact = q_ari, exact_ari
        else:
            q_non, exact_non = self._divide(m, d, p.vf_stride_non_ari, "non_ari")
            q, exact = Signal(16), Signal()
            m.d.comb += [q.eq(Mux(ari, q_ari, q_non)),
                         exact.eq(Mux(ari, exact_ari, exact_non))]

        is_vf = Signal()
        m.d.comb += is_vf.eq(~own_bus_type1 & (diff >= 0) & exact & self.vf_enable &
                             (q < self.num_vfs))

        m.d.comb += self.vf_index.eq(q)
        with m.If(pf_hit):
            m.d.comb += self.target.eq(Target.PF)
        with m.Elif(is_vf):
            m.d.comb += [self.target.eq(Target.VF), self.vf.eq(q + 1)]
        with m.Else():
            m.d.comb += self.target.eq(Target.NONE)
        return m
