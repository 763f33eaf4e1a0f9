# amaranth: UnusedElaboratable=no
"""Tests of ``DeviceRoutingDecoder``: which PF, or which VF of which PF, a configuration request
reaches in a device of several PFs (``docs/multi-pf.md`` §5).

Routing IDs (all 65536 as Type 0 and as Type 1 requests in one state of each configuration,
those where a VF can sit and a sample of the others in the other states) are decoded and
compared with an expectation computed here from the spec's formula, independently of the design
and of the parameters' checks (``vf_table`` also refuses a layout where two functions share a
Routing ID, by brute force): VF n of PF k sits at ``pf_rid_k + offset_k + (n - 1) * stride_k``
(offset/stride of the ARI or non-ARI layout), n <= NumVFs_k while PF k's VF Enable is set, no
wrap past 0xFFFF; a Type 0 request targets the captured bus (its bus field is not compared) and
reaches PF k by its function number; a Type 1 request never reaches a PF and reaches nothing on
the captured bus (``docs/endpoint-behaviour.md`` §1). The global VF index is PF k's VF n's entry
``sum(TotalVFs of PFs below k) + n - 1``. Literal facts from ``docs/multi-pf.md`` §12 pin a few
positions.

Cost: Amaranth's simulator evaluates the whole design at every clock edge (about 50 us of CPU
per PF per request here) and the decoder is pipelined, so a sweep runs a few copies of the
decoder side by side (``lanes_for``), each fed its own Routing ID every cycle. One state per
configuration (ARI, NumVFs differing per PF) decodes all 131072 requests: CPU time measured on
the project's shared machine, dual ~14 s, quad ~29 s, mixed-3 ~22 s. The other states decode
``requests``' window: every Type 1 RID on the buses where a VF of either layout can sit, Type 0
RIDs with three bus fields, and random RIDs (3000-7000 requests: ~1 s each, ~6 s each for the
16 PFs). The whole file: ~100 s of CPU.
"""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from sriov_ep.decode.routing import DeviceRoutingDecoder, Target
from sriov_ep.params import EndpointParams, PfParams
from sriov_tb.sim import simulate

TYPE0, TYPE1 = False, True
NONE, PF, VF = Target.NONE.value, Target.PF.value, Target.VF.value



# -- Configurations ------------------------------------------------------------------------------


def device(layouts, *, bus=0x01):
    """A device from ``(function, total_vfs, (offset_ari, stride_ari), (offset_non, stride_non))``
    per PF, on bus ``bus``."""
    return EndpointParams(pfs=tuple(
        PfParams(pf_rid=bus << 8 | fn, total_vfs=total,
                 first_vf_offset_ari=ari[0], vf_stride_ari=ari[1],
                 first_vf_offset_non_ari=non[0], vf_stride_non_ari=non[1])
        for fn, total, ari, non in layouts))


def dual():
    """Two 82576-like PFs at 01:00.0 and 01:00.1, 8 VFs each, offset 0x80 (ARI) / 0x180
    (non-ARI) from each PF, stride 2: the two PFs' VFs interleave."""
    return device([(k, 8, (0x80, 2), (0x180, 2)) for k in range(2)])


def quad():
    """Four PFs at 01:00.0-3, 63 VFs each, stride 1: ARI offset 4 + 62k, non-ARI 0x100 + 62k
    (contiguous blocks)."""
    return device([(k, 63, (4 + 62 * k, 1), (0x100 + 62 * k, 1)) for k in range(4)])


def mixed3():
    """PFs at 01:00.0-2 with TotalVFs 80, 50, 7; ARI offset 3 stride 3, non-ARI offset 0x100
    stride 5 (the divider): the PFs' VFs interleave by residue."""
    return device([(k, total, (3, 3), (0x100, 5)) for k, total in enumerate((80, 50, 7))])


def cpm5():
    """16 PFs at functions 0..15, 255 VFs each (4080): ARI offset 16 + 254k, non-ARI
    0x100 + 254k, stride 1."""
    return device([(k, 255, (16 + 254 * k, 1), (0x100 + 254 * k, 1)) for k in range(16)])


@dataclass(frozen=True)
class Sweep:
    """One decoder state: ARI Capable Hierarchy, ``(vf_enable, num_vfs)`` per PF, the bus
    captured (by a Type 0 write to PF ``writer``), and literal ``(type1, rid, target, pf, vf)``
    facts."""
    name:    str
    ari:     bool
    states:  tuple
    bus:     int = 0x01
    writer:  int = 0
    anchors: tuple = ()
    #: Decode only the RIDs of ``requests``' window (and random ones), not all 131072.
    window:  bool = True


def pattern(params, shift):
    """NumVFs T, T/2, 1 and "disabled" (VF Enable 0, NumVFs T) across the PFs, rotated by
    ``shift``."""
    states = []
    for k, pf in enumerate(params.pfs):
        t = pf.total_vfs
        states.append([(True, t), (True, t // 2), (True, 1), (False, t)][(k + shift) % 4])
    return tuple(states)


def all_disabled(params):
    return tuple((False, pf.total_vfs) for pf in params.pfs)


@dataclass(frozen=True)
class Config:
    name:   str
    params: object = field(repr=False)
    sweeps: tuple


def _configs():
    d, q, m, c = dual(), quad(), mixed3(), cpm5()
    return {cfg.name: cfg for cfg in [
        Config("dual", d, (
            Sweep("disabled", False, all_disabled(d), writer=1,
                  anchors=((TYPE0, 0x0100, PF, 0, 0), (TYPE0, 0xAB01, PF, 1, 0),
                           (TYPE1, 0x0101, NONE, 0, 0), (TYPE0, 0x0180, NONE, 0, 0))),
            # PF 0: 8 VFs at 01:10.0, 10.2 .. 11.6; PF 1: 4 VFs at 01:10.1 .. 10.7.
            Sweep("ari", True, pattern(d, 0), window=False,
                  anchors=((TYPE0, 0x0180, VF, 0, 1), (TYPE0, 0x0181, VF, 1, 1),
                           (TYPE0, 0x018E, VF, 0, 8), (TYPE0, 0x0187, VF, 1, 4),
                           (TYPE0, 0x0189, NONE, 0, 0), (TYPE1, 0x0181, NONE, 0, 0))),
            # PF 0: VF 1 at 02:10.0 only; PF 1 disabled.
            Sweep("non-ari", False, pattern(d, 2), writer=1,
                  anchors=((TYPE1, 0x0280, VF, 0, 1), (TYPE1, 0x0282, NONE, 0, 0),
                           (TYPE1, 0x0281, NONE, 0, 0))),
        )),
        Config("quad", q, (
            Sweep("disabled", False, all_disabled(q), writer=3),
            # ARI: PF k's VF 1 at 0x0104 + 63k; PF 1 has 31 VFs, PF 2 one, PF 3 none.
            Sweep("ari", True, pattern(q, 0), window=False,
                  anchors=((TYPE0, 0x0104, VF, 0, 1), (TYPE0, 0x0142, VF, 0, 63),
                           (TYPE0, 0x0143, VF, 1, 1), (TYPE0, 0x0161, VF, 1, 31),
                           (TYPE0, 0x0162, NONE, 0, 0), (TYPE0, 0x0182, VF, 2, 1),
                           (TYPE0, 0x01C1, NONE, 0, 0), (TYPE0, 0x0103, PF, 3, 0))),
            # Non-ARI on bus 0xFE: PF k's VF 1 at 0xFF00 + 63k, PF 3's last VF at 0xFFFB.
            Sweep("non-ari-bus-fe", False, pattern(q, 1), bus=0xFE, writer=2,
                  anchors=((TYPE1, 0xFF00, VF, 0, 1), (TYPE1, 0xFF1E, VF, 0, 31),
                           (TYPE1, 0xFF3F, VF, 1, 1), (TYPE1, 0xFF40, NONE, 0, 0),
                           (TYPE1, 0xFFBD, VF, 3, 1), (TYPE1, 0xFFFB, VF, 3, 63),
                           (TYPE1, 0xFFFC, NONE, 0, 0), (TYPE0, 0x0102, PF, 2, 0))),
        )),
        Config("mixed-3", m, (
            Sweep("disabled", False, all_disabled(m)),
            # ARI: PF k's VF n at 0x0103 + k + 3(n - 1).
            Sweep("ari", True, ((True, 80), (True, 25), (True, 1)), writer=2, window=False,
                  anchors=((TYPE0, 0x0103, VF, 0, 1), (TYPE0, 0x0104, VF, 1, 1),
                           (TYPE0, 0x0105, VF, 2, 1), (TYPE0, 0x0108, NONE, 0, 0),
                           (TYPE0, 0x0106, VF, 0, 2), (TYPE0, 0x01F0, VF, 0, 80),
                           (TYPE0, 0x014C, VF, 1, 25), (TYPE0, 0x014F, NONE, 0, 0))),
            # Non-ARI on bus 0xFE: PF k's VF n at 0xFF00 + k + 5(n - 1); PF 0's VFs past
            # 52 would be above 0xFFFF: they do not exist (no wrap to 0x0000).
            Sweep("non-ari-bus-fe", False, ((True, 80), (False, 50), (True, 7)), bus=0xFE,
                  anchors=((TYPE1, 0xFF00, VF, 0, 1), (TYPE1, 0xFFFF, VF, 0, 52),
                           (TYPE1, 0xFF01, NONE, 0, 0), (TYPE1, 0xFF02, VF, 2, 1),
                           (TYPE1, 0xFF20, VF, 2, 7), (TYPE1, 0x0004, NONE, 0, 0))),
        )),
        Config("cpm5-16", c, (
            # ARI: PF k's VF 1 at 0x0110 + 255k; PF 15's last VF at 0x10FF.
            Sweep("ari", True, pattern(c, 0), writer=15,
                  anchors=((TYPE0, 0x0110, VF, 0, 1), (TYPE1, 0x020E, VF, 0, 255),
                           (TYPE1, 0x020F, VF, 1, 1), (TYPE1, 0x028D, VF, 1, 127),
                           (TYPE1, 0x028E, NONE, 0, 0), (TYPE1, 0x10FF, NONE, 0, 0),
                           (TYPE1, 0x0F02, VF, 14, 1), (TYPE0, 0x010F, PF, 15, 0))),
            Sweep("disabled", False, all_disabled(c)),
            Sweep("non-ari", False, pattern(c, 2),
                  anchors=((TYPE1, 0x0200, VF, 0, 1), (TYPE1, 0x0201, NONE, 0, 0),
                           (TYPE1, 0x116F, VF, 15, 127), (TYPE1, 0x1170, NONE, 0, 0))),
        )),
    ]}


CONFIGS = _configs()


# -- The expected decode, from the spec's formula ------------------------------------------------


def vf_table(params, sweep):
    """``{rid: (k, n)}`` of every VF that exists in ``sweep``'s state, by brute force; raises if
    two functions share a Routing ID (the configuration would be illegal)."""
    owner = {}
    for k, pf in enumerate(params.pfs):
        rid = sweep.bus << 8 | pf.pf_rid & 0xFF
        assert rid not in owner, f"PF {k} on {owner[rid]}"
        owner[rid] = ("PF", k)
    table = {}
    for k, pf in enumerate(params.pfs):
        first = (sweep.bus << 8 | pf.pf_rid & 0xFF) + pf.first_vf_offset(sweep.ari)
        stride = pf.vf_stride(sweep.ari)
        vf_enable, num_vfs = sweep.states[k]
        # Every VF up to TotalVFs must be apart from every other function.
        for n in range(1, pf.total_vfs + 1):
            rid = first + (n - 1) * stride
            if rid > 0xFFFF:
                break
            assert rid not in owner, f"PF {k} VF {n} at {rid:#06x} on {owner[rid]}"
            owner[rid] = ("VF", k, n)
            if vf_enable and n <= num_vfs:
                table[rid] = (k, n)
    return table


class Expected:
    """The expected decode of any request in ``sweep``'s state, as a code made by ``encode``."""

    def __init__(self, params, sweep, encode):
        self.table = vf_table(params, sweep)
        self.base, total = [], 0
        for pf in params.pfs:
            self.base.append(total)
            total += pf.total_vfs
        self.fns = {pf.pf_rid & 0xFF: k for k, pf in enumerate(params.pfs)}
        self.bus = sweep.bus
        self.encode = encode

    def _vf(self, target):
        if target not in self.table:
            return self.encode(NONE, 0, 0, 0)
        k, n = self.table[target]
        return self.encode(VF, k, n, self.base[k] + n - 1)

    def __call__(self, type1, rid):
        if type1:       # never a PF; nothing on the captured bus
            return self.encode(NONE, 0, 0, 0) if rid >> 8 == self.bus else self._vf(rid)
        k = self.fns.get(rid & 0xFF)        # the bus field of a Type 0 request is not compared
        return self.encode(PF, k, 0, 0) if k is not None else self._vf(self.bus << 8 | rid & 0xFF)


# -- Simulation ----------------------------------------------------------------------------------


def lanes_for(params):
    """Decoder copies simulated side by side in a sweep (one tick decodes that many requests):
    fewer for more PFs (measured: the simulator slows down on large designs)."""
    return max(4, 32 // params.num_pfs)


class Lanes(Elaboratable):
    """``count`` decoders sharing every input but ``rid``: ``rids`` holds one RID per lane and
    ``results`` one packed result per lane."""

    def __init__(self, params, count):
        self.decoders = [DeviceRoutingDecoder(params) for _ in range(count)]
        d = self.decoders[0]
        self.fields = (d.target.as_value(), d.pf, d.vf, d.vf_index)
        self.width = sum(len(f) for f in self.fields)
        self.rids = Signal(16 * count)
        self.results = Signal(self.width * count)
        self.type1 = Signal()
        self.capture = Signal()
        self.ari = Signal()
        self.vf_enable = Signal(params.num_pfs)
        self.num_vfs = [Signal(16, name=f"num_vfs{k}") for k in range(params.num_pfs)]

    def encode(self, target, pf, vf, index):
        value, shift = 0, 0
        for part, f in zip((target, pf, vf, index), self.fields, strict=True):
            value |= part << shift
            shift += len(f)
        return value

    def decode(self, code):
        parts = []
        for f in self.fields:
            parts.append(code & ((1 << len(f)) - 1))
            code >>= len(f)
        return tuple(parts)

    def elaborate(self, platform):
        m = Module()
        results = []
        for i, d in enumerate(self.decoders):
            m.submodules[f"lane{i}"] = d
            m.d.comb += [d.rid.eq(self.rids.word_select(i, 16)), d.type1.eq(self.type1),
                         d.capture.eq(self.capture), d.ari.eq(self.ari),
                         d.vf_enable.eq(self.vf_enable)]
            m.d.comb += [d.num_vfs[k].eq(n) for k, n in enumerate(self.num_vfs)]
            results.append(Cat(*(Cat(d.target.as_value(), d.pf, d.vf, d.vf_index))))
        m.d.comb += self.results.eq(Cat(*results))
        return m


def requests(params, sweep):
    """The ``(type1, rid)`` requests of ``sweep``: all 131072, or with ``window`` every Type 1
    RID on the buses where some VF of either layout could be (any NumVFs) and on the captured
    bus, every Type 0 RID with bus field 0x00, 0xFF or the captured bus (the others decode
    alike: exhaustively checked by the sweeps without ``window``), 1024 random RIDs of each type
    and the anchors."""
    if not sweep.window:
        return [(type1, rid) for type1 in (TYPE0, TYPE1) for rid in range(1 << 16)]
    buses = {sweep.bus}
    for pf in params.pfs:
        rid = sweep.bus << 8 | pf.pf_rid & 0xFF
        for ari in (False, True):
            first = rid + pf.first_vf_offset(ari)
            last = min(0xFFFF, first + (pf.total_vfs - 1) * pf.vf_stride(ari))
            buses.update(range(min(first, 0xFFFF) >> 8, (last >> 8) + 1))
    rng = random.Random(f"{sweep.name}-{sorted(buses)}")
    out = []
    for type1, fields in ((TYPE0, {0x00, 0xFF, sweep.bus}), (TYPE1, buses)):
        rids = {bus << 8 | devfn for bus in fields for devfn in range(256)}
        rids |= {rng.randrange(1 << 16) for _ in range(1024)}
        rids |= {rid for t, rid, *_ in sweep.anchors if t == type1}
        out += [(type1, rid) for rid in sorted(rids)]
    return out


def run_sweep(params, sweep, lanes=None):
    """Decode the requests of ``sweep``; returns ``(lanes, {(type1, rid): code})``."""
    lanes = lanes or lanes_for(params)
    dut = Lanes(params, lanes)
    latency = dut.decoders[0].latency
    batches = []
    for type1 in (TYPE0, TYPE1):
        rids = [rid for t, rid in requests(params, sweep) if t == type1]
        batches += [(type1, rids[i:i + lanes]) for i in range(0, len(rids), lanes)]
    raw = []

    async def testbench(ctx):
        writer_rid = sweep.bus << 8 | params.pfs[sweep.writer].pf_rid & 0xFF
        ctx.set(dut.rids, sum(writer_rid << 16 * j for j in range(lanes)))
        ctx.set(dut.capture, 1)
        await ctx.tick()
        ctx.set(dut.capture, 0)
        assert all(ctx.get(d.bus) == sweep.bus for d in dut.decoders)
        ctx.set(dut.ari, sweep.ari)
        ctx.set(dut.vf_enable, sum(int(on) << k for k, (on, _) in enumerate(sweep.states)))
        for k, (_, num) in enumerate(sweep.states):
            ctx.set(dut.num_vfs[k], num)
        # Results leave ``latency`` edges after their request: a new batch every cycle.
        for i in range(len(batches) + latency - 1):
            if i < len(batches):
                type1, rids = batches[i]
                ctx.set(dut.type1, type1)
                ctx.set(dut.rids, sum(rid << 16 * j for j, rid in enumerate(rids)))
            await ctx.tick()
            if i + 1 >= latency:
                raw.append(ctx.get(dut.results))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    got = {}
    mask = (1 << dut.width) - 1
    for (type1, rids), word in zip(batches, raw, strict=True):
        for j, rid in enumerate(rids):
            got[type1, rid] = word >> dut.width * j & mask
    return dut, got


def sweep_params():
    for name, cfg in CONFIGS.items():
        for sweep in cfg.sweeps:
            yield pytest.param(name, sweep.name, id=f"{name}-{sweep.name}")


def show(dut, code):
    target, pf, vf, index = dut.decode(code)
    name = {NONE: "none", PF: "PF", VF: "VF"}.get(target, f"?{target}")
    return f"{name} pf {pf} vf {vf} index {index}"


@pytest.mark.parametrize("name, sweep_name", list(sweep_params()))
def test_routing_ids(name, sweep_name):
    cfg = CONFIGS[name]
    sweep = next(s for s in cfg.sweeps if s.name == sweep_name)
    params = cfg.params
    dut, got = run_sweep(params, sweep)
    expect = Expected(params, sweep, dut.encode)
    bad = [(type1, rid) for (type1, rid), code in got.items() if code != expect(type1, rid)]
    if bad:
        lines = [f"  Type {int(type1)} {rid:#06x}: design {show(dut, got[type1, rid])}, "
                 f"expected {show(dut, expect(type1, rid))}" for type1, rid in bad[:10]]
        raise AssertionError(f"{name}/{sweep_name}: {len(bad)} of {len(got)} requests decode "
                             f"differently:\n" + "\n".join(lines))
    for type1, rid, target, pf, vf in sweep.anchors:
        assert dut.decode(got[type1, rid])[:3] == (target, pf, vf), \
            f"Type {int(type1)} {rid:#06x}: {show(dut, got[type1, rid])}"
    # Every VF that exists was reached (the requests cover every VF's RID).
    reached = {dut.decode(code)[1:3] for code in got.values() if dut.decode(code)[0] == VF}
    assert reached == set(vf_table(params, sweep).values())


def test_expectation_matches_literal_positions():
    """The test's own formula agrees with hand-computed positions (a check of the checker)."""
    d = dual()
    table = vf_table(d, Sweep("x", True, ((True, 8), (True, 8))))
    assert table[0x0180] == (0, 1) and table[0x0181] == (1, 1) and table[0x018F] == (1, 8)
    c = cpm5()
    table = vf_table(c, Sweep("x", True, tuple((True, 255) for _ in range(16))))
    assert min(table) == 0x0110 and max(table) == 0x10FF and len(table) == 4080
    table = vf_table(c, Sweep("x", False, tuple((True, 255) for _ in range(16))))
    assert min(table) == 0x0200 and max(table) == 0x11EF


# -- Latency and the state inputs ----------------------------------------------------------------


@pytest.mark.parametrize("name, latency", [("dual", 2), ("mixed-3", 3)])
def test_latency(name, latency):
    """The decode appears ``latency`` edges after the RID (2, 3 with the divider), VF Enable and
    NumVFs act one edge after they change."""
    params = CONFIGS[name].params
    dut = DeviceRoutingDecoder(params)
    assert dut.latency == latency
    vf1_of_pf1 = {"dual": 0x0181, "mixed-3": 0x0104}[name]

    async def testbench(ctx):
        ctx.set(dut.rid, 0x0100)
        ctx.set(dut.capture, 1)
        await ctx.tick()
        ctx.set(dut.capture, 0)
        ctx.set(dut.ari, 1)
        ctx.set(dut.vf_enable, 0b11)
        ctx.set(dut.num_vfs[1], 1)
        await ctx.tick().repeat(latency)
        assert ctx.get(dut.target) == Target.PF and ctx.get(dut.pf) == 0
        ctx.set(dut.rid, vf1_of_pf1)
        for _ in range(latency - 1):
            await ctx.tick()
            assert ctx.get(dut.target) == Target.PF
        await ctx.tick()
        assert (ctx.get(dut.target), ctx.get(dut.pf), ctx.get(dut.vf)) == (Target.VF, 1, 1)
        assert ctx.get(dut.vf_index) == params.pfs[0].total_vfs
        ctx.set(dut.vf_enable, 0b01)
        assert ctx.get(dut.target) == Target.VF
        await ctx.tick()
        assert (ctx.get(dut.target), ctx.get(dut.pf), ctx.get(dut.vf)) == (Target.NONE, 0, 0)
        ctx.set(dut.vf_enable, 0b11)
        ctx.set(dut.num_vfs[1], 0)
        await ctx.tick()
        assert ctx.get(dut.target) == Target.NONE
        ctx.set(dut.num_vfs[1], 1)
        await ctx.tick()
        assert ctx.get(dut.target) == Target.VF

    simulate(dut, lambda: testbench, name=f"routing-multi-latency-{name}")


def test_rejects_a_pf_params():
    with pytest.raises(TypeError, match="EndpointParams"):
        DeviceRoutingDecoder(dual().pfs[0])
    with pytest.raises(ValueError, match="stages"):
        DeviceRoutingDecoder(dual(), stages=4)


def test_port_widths():
    """``pf`` fits the PF index, ``vf`` the largest TotalVFs, ``vf_index`` every VF's entry."""
    for params, pf, vf, index in ((dual(), 1, 4, 4), (mixed3(), 2, 7, 8), (cpm5(), 4, 8, 12)):
        d = DeviceRoutingDecoder(params)
        assert (len(d.pf), len(d.vf), len(d.vf_index)) == (pf, vf, index)


def test_random_state_changes_quad():
    """Random RIDs with the state changing between them, against the formula: catches a state
    input wired to the wrong core."""
    params = quad()
    rng = random.Random(10)
    dut = DeviceRoutingDecoder(params)
    steps = []
    for _ in range(300):
        states = tuple((rng.random() < 0.7, rng.randint(0, 63)) for _ in range(4))
        ari = rng.random() < 0.5
        steps.append((ari, states, rng.random() < 0.5, rng.randint(0x0100, 0x02FF)))
    lanes = Lanes(params, 1)

    async def testbench(ctx):
        ctx.set(dut.rid, 0x0100)
        ctx.set(dut.capture, 1)
        await ctx.tick()
        ctx.set(dut.capture, 0)
        for ari, states, type1, rid in steps:
            ctx.set(dut.ari, ari)
            ctx.set(dut.vf_enable, sum(int(on) << k for k, (on, _) in enumerate(states)))
            for k, (_, num) in enumerate(states):
                ctx.set(dut.num_vfs[k], num)
            ctx.set(dut.type1, type1)
            ctx.set(dut.rid, rid)
            await ctx.tick().repeat(dut.latency)
            want = Expected(params, Sweep("r", ari, states), lanes.encode)(type1, rid)
            got = lanes.encode(ctx.get(dut.target).value, ctx.get(dut.pf), ctx.get(dut.vf),
                               ctx.get(dut.vf_index))
            assert got == want, f"{rid:#06x} type {int(type1)} ari {ari} {states}"

    simulate(dut, lambda: testbench, name="routing-multi-random")
