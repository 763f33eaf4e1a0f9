"""Routing-ID decoding: which function of the endpoint a configuration request reaches."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from ..params import as_pf

__all__ = ["Target", "RoutingIdDecoder", "exact_divider", "needs_divider"]


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
    """Whether a VF Stride of ``params`` is neither 0 nor a power of two, so that decoding takes
    a multiplier (and :class:`SriovEndpoint` a decode stage more for it)."""
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
        params = as_pf(params)
        if stages not in (1, 2, 3):
            raise ValueError(f"stages: must be 1, 2 or 3 (got {stages!r})")
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
