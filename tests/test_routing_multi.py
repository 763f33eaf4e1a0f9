# amaranth: UnusedElaboratable=no
"""Tests of ``DeviceRoutingDecoder``: which PF, or which VF of which PF, a configuration request
reaches in a device of several PFs (``docs/multi-pf.md`` §5).

The expected target of every request comes from the reference model
(``sriov_tb.model.EndpointModel``), programmed to the sweep's state through its configuration
interface: NumVFs and VF Enable of every PF, ARI Capable Hierarchy through PF 0's SR-IOV
capability, the bus captured by the PF writes; then ``model.route(type1, rid)``. The global VF
index is ``sum(TotalVFs of PFs below k) + n - 1``, summed here. A second, independent check: the
spec's formula written here (VF n of PF k at ``pf_rid_k + offset_k + (n - 1) * stride_k``, no
wrap past 0xFFFF; a Type 0 request targets the captured bus and reaches PF k by its function
number; a Type 1 request never reaches a PF nor anything on the captured bus), which must agree
with the model on every request. Literal facts from ``docs/multi-pf.md`` §12 pin a few positions.

Four configurations (dual 82576, quad, mixed-3, sparse) decode all 65536 Routing IDs as Type 0
and as Type 1 requests in three states each: before (VF Enable 0 in every PF, NumVFs = TotalVFs,
ARI set), after with ARI and after without ARI (NumVFs differing per PF: TotalVFs, half, 1, 0 in
a different order). The 16-PF cpm5 device decodes ``requests``' window only (every Type 1 RID on
the buses where a VF can sit, Type 0 RIDs with three bus fields, random RIDs: ~7000 requests):
its 16 cores make a request cost ~8 times a dual one: ~80 s of CPU for an exhaustive sweep of
one state (estimated), a third of the file's budget.

Cost: Amaranth's simulator runs every process of the design whose inputs change, so a sweep
runs 16 copies of the decoder side by side (4 for cpm5), fed from a ROM one batch per clock
cycle with no testbench code per cycle, the results stored in a RAM read at the end. CPU time of
one exhaustive sweep (131072 requests) measured on the project's shared machine (busy): dual
9-11 s, sparse 12-14 s, mixed-3 20-23 s, quad 20-24 s, the model and the formula ~1 s of it; a
cpm5 window ~5 s. The whole file: ~220 s of CPU, in 15 tests that xdist spreads.
"""

import random
from dataclasses import dataclass, field

import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from sriov_ep.decode.routing import DeviceRoutingDecoder, Target
from sriov_ep.params import EndpointParams, PfParams
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

TYPE0, TYPE1 = False, True
NONE, PF, VF = Target.NONE.value, Target.PF.value, Target.VF.value

# SR-IOV Extended Capability (PCIe Base §9.3.3): ID, Control (VF Enable bit 0, ARI Capable
# Hierarchy bit 4) and NumVFs byte offsets.
SRIOV_ID, SRIOV_CONTROL, SRIOV_NUM_VFS = 0x0010, 0x08, 0x10
VF_ENABLE, ARI_CAPABLE = 1 << 0, 1 << 4


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


def sparse():
    """PFs at functions 0 and 5 (not adjacent), TotalVFs 6 and 20, stride 8. ARI: PF 0's VFs at
    functions 1, 9 .. 41 (the first between the PFs), PF 1's at 6, 14 .. 158. Non-ARI: on the
    PF's own bus, PF 0's VFs at devices 2..7 function 0, PF 1's at function 1 of devices
    2..21 (reached by Type 0 requests)."""
    return device([(0, 6, (1, 8), (0x10, 8)), (5, 20, (1, 8), (0x0C, 8))])


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
    window:  bool = False


def pattern(params, shift):
    """NumVFs T, T/2, 1 and "disabled" (VF Enable 0, NumVFs T) across the PFs, rotated by
    ``shift``."""
    states = []
    for k, pf in enumerate(params.pfs):
        t = pf.total_vfs
        states.append([(True, t), (True, t // 2), (True, 1), (False, t)][(k + shift) % 4])
    return tuple(states)


def before(params, **kwargs):
    """VF Enable 0 in every PF, NumVFs = TotalVFs, ARI set: no VF exists, whatever the layout."""
    return Sweep("before", True, tuple((False, pf.total_vfs) for pf in params.pfs), **kwargs)


@dataclass(frozen=True)
class Config:
    name:   str
    params: object = field(repr=False)
    sweeps: tuple


def _configs():
    d, q, m, s, c = dual(), quad(), mixed3(), sparse(), cpm5()
    return {cfg.name: cfg for cfg in [
        Config("dual", d, (
            before(d, writer=1,
                   anchors=((TYPE0, 0x0100, PF, 0, 0), (TYPE0, 0xAB01, PF, 1, 0),
                            (TYPE1, 0x0101, NONE, 0, 0), (TYPE0, 0x0180, NONE, 0, 0))),
            # PF 0: 8 VFs at 01:10.0, 10.2 .. 11.6; PF 1: 4 VFs at 01:10.1 .. 10.7.
            Sweep("ari", True, ((True, 8), (True, 4)),
                  anchors=((TYPE0, 0x0180, VF, 0, 1), (TYPE0, 0x0181, VF, 1, 1),
                           (TYPE0, 0x018E, VF, 0, 8), (TYPE0, 0x0187, VF, 1, 4),
                           (TYPE0, 0x0189, NONE, 0, 0), (TYPE1, 0x0181, NONE, 0, 0))),
            # PF 0: VF 1 at 02:10.0 only; PF 1: 8 VFs at 02:10.1 .. 02:11.7.
            Sweep("non-ari", False, ((True, 1), (True, 8)), writer=1,
                  anchors=((TYPE1, 0x0280, VF, 0, 1), (TYPE1, 0x0282, NONE, 0, 0),
                           (TYPE1, 0x0281, VF, 1, 1), (TYPE1, 0x028F, VF, 1, 8),
                           (TYPE0, 0x0281, NONE, 0, 0), (TYPE1, 0x0291, NONE, 0, 0))),
        )),
        Config("quad", q, (
            before(q, writer=3),
            # ARI: PF k's VF 1 at 0x0104 + 63k; PF 1 has 31 VFs, PF 2 one, PF 3 none (NumVFs 0).
            Sweep("ari", True, ((True, 63), (True, 31), (True, 1), (True, 0)),
                  anchors=((TYPE0, 0x0104, VF, 0, 1), (TYPE0, 0x0142, VF, 0, 63),
                           (TYPE0, 0x0143, VF, 1, 1), (TYPE0, 0x0161, VF, 1, 31),
                           (TYPE0, 0x0162, NONE, 0, 0), (TYPE0, 0x0182, VF, 2, 1),
                           (TYPE0, 0x01C1, NONE, 0, 0), (TYPE0, 0x0103, PF, 3, 0))),
            # Non-ARI on bus 0xFE: PF k's VF 1 at 0xFF00 + 63k, PF 3's last VF at 0xFFFB.
            Sweep("non-ari-bus-fe", False, ((True, 31), (True, 1), (False, 63), (True, 63)),
                  bus=0xFE, writer=2,
                  anchors=((TYPE1, 0xFF00, VF, 0, 1), (TYPE1, 0xFF1E, VF, 0, 31),
                           (TYPE1, 0xFF3F, VF, 1, 1), (TYPE1, 0xFF40, NONE, 0, 0),
                           (TYPE1, 0xFFBD, VF, 3, 1), (TYPE1, 0xFFFB, VF, 3, 63),
                           (TYPE1, 0xFFFC, NONE, 0, 0), (TYPE0, 0x0102, PF, 2, 0))),
        )),
        Config("mixed-3", m, (
            before(m),
            # ARI: PF k's VF n at 0x0103 + k + 3(n - 1).
            Sweep("ari", True, ((True, 80), (True, 25), (True, 1)), writer=2,
                  anchors=((TYPE0, 0x0103, VF, 0, 1), (TYPE0, 0x0104, VF, 1, 1),
                           (TYPE0, 0x0105, VF, 2, 1), (TYPE0, 0x0108, NONE, 0, 0),
                           (TYPE0, 0x0106, VF, 0, 2), (TYPE0, 0x01F0, VF, 0, 80),
                           (TYPE0, 0x014C, VF, 1, 25), (TYPE0, 0x014F, NONE, 0, 0))),
            # Non-ARI on bus 0xFE: PF k's VF n at 0xFF00 + k + 5(n - 1); PF 0's VFs past
            # 52 would be above 0xFFFF: they do not exist (no wrap to 0x0000).
            Sweep("non-ari-bus-fe", False, ((True, 80), (True, 0), (True, 7)), bus=0xFE,
                  anchors=((TYPE1, 0xFF00, VF, 0, 1), (TYPE1, 0xFFFF, VF, 0, 52),
                           (TYPE1, 0xFF01, NONE, 0, 0), (TYPE1, 0xFF02, VF, 2, 1),
                           (TYPE1, 0xFF20, VF, 2, 7), (TYPE1, 0x0004, NONE, 0, 0))),
        )),
        Config("sparse", s, (
            before(s, bus=0x7F, writer=1,
                   anchors=((TYPE0, 0x0105, PF, 1, 0), (TYPE0, 0x0101, NONE, 0, 0),
                            (TYPE0, 0x7F07, NONE, 0, 0))),
            # PF 0: 6 VFs at functions 1 + 8(n - 1); PF 1: 10 at 6 + 8(n - 1).
            Sweep("ari", True, ((True, 6), (True, 10)), writer=1,
                  anchors=((TYPE0, 0x0101, VF, 0, 1), (TYPE0, 0x0106, VF, 1, 1),
                           (TYPE0, 0x0129, VF, 0, 6), (TYPE0, 0x0131, NONE, 0, 0),
                           (TYPE0, 0x014E, VF, 1, 10), (TYPE0, 0x0156, NONE, 0, 0),
                           (TYPE0, 0xAB05, PF, 1, 0), (TYPE0, 0x0102, NONE, 0, 0),
                           (TYPE1, 0x0106, NONE, 0, 0), (TYPE1, 0x0206, NONE, 0, 0))),
            # Bus 0x20. PF 0: 3 VFs at 0x2010 + 8(n - 1); PF 1: 20 at 0x2011 + 8(n - 1).
            Sweep("non-ari-bus-20", False, ((True, 3), (True, 20)), bus=0x20,
                  anchors=((TYPE0, 0x3310, VF, 0, 1), (TYPE0, 0x2020, VF, 0, 3),
                           (TYPE0, 0x2028, NONE, 0, 0), (TYPE0, 0x2011, VF, 1, 1),
                           (TYPE0, 0x20A9, VF, 1, 20), (TYPE0, 0x20B1, NONE, 0, 0),
                           (TYPE1, 0x2011, NONE, 0, 0), (TYPE0, 0x2005, PF, 1, 0))),
        )),
        Config("cpm5-16", c, (
            # ARI: PF k's VF 1 at 0x0110 + 255k; PF 15's last VF at 0x10FF.
            Sweep("ari", True, pattern(c, 0), writer=15, window=True,
                  anchors=((TYPE0, 0x0110, VF, 0, 1), (TYPE1, 0x020E, VF, 0, 255),
                           (TYPE1, 0x020F, VF, 1, 1), (TYPE1, 0x028D, VF, 1, 127),
                           (TYPE1, 0x028E, NONE, 0, 0), (TYPE1, 0x10FF, NONE, 0, 0),
                           (TYPE1, 0x0F02, VF, 14, 1), (TYPE0, 0x010F, PF, 15, 0))),
            before(c, window=True),
            Sweep("non-ari", False, pattern(c, 2), window=True,
                  anchors=((TYPE1, 0x0200, VF, 0, 1), (TYPE1, 0x0201, NONE, 0, 0),
                           (TYPE1, 0x116F, VF, 15, 127), (TYPE1, 0x1170, NONE, 0, 0))),
        )),
    ]}


CONFIGS = _configs()


# -- The expected decode: the reference model ----------------------------------------------------


def _config(model, rid, offset, write=False, data=0, be=0xF):
    status, value = model.config(TYPE0, rid, offset // 4, be, write, data)
    assert status == "SC", f"{rid:#06x} @ {offset:#x}"
    return value


def sriov_offset(model, rid):
    """Offset of the SR-IOV capability of the PF at ``rid``, by walking its extended capability
    list from 0x100 with config reads."""
    offset = 0x100
    while offset:
        header = _config(model, rid, offset)
        if header & 0xFFFF == SRIOV_ID:
            return offset
        offset = header >> 20
    raise AssertionError(f"{rid:#06x}: no SR-IOV capability")


def programmed_model(params, sweep):
    """An ``EndpointModel`` brought to ``sweep``'s state by Type 0 config writes only: NumVFs of
    every PF, then ARI Capable Hierarchy through PF 0 (ignored once a VF Enable is set), then VF
    Enable; the last write goes to PF ``writer`` (every PF write captures the bus). Read back."""
    model = EndpointModel(params)
    rids = [sweep.bus << 8 | pf.pf_rid & 0xFF for pf in params.pfs]
    caps = [sriov_offset(model, rid) for rid in rids]
    for rid, cap, (_, num_vfs) in zip(rids, caps, sweep.states, strict=True):
        _config(model, rid, cap + SRIOV_NUM_VFS, True, num_vfs, 0b0011)
    ari, pf0_control = ARI_CAPABLE if sweep.ari else 0, caps[0] + SRIOV_CONTROL
    _config(model, rids[0], pf0_control, True, ari, 0b0011)
    for rid, cap, (vf_enable, _) in zip(rids, caps, sweep.states, strict=True):
        _config(model, rid, cap + SRIOV_CONTROL, True, ari | int(vf_enable), 0b0011)
    _config(model, rids[sweep.writer], 0x04, True, 0, 0b0000)
    assert model.captured_bus == sweep.bus
    assert bool(_config(model, rids[0], pf0_control) & ARI_CAPABLE) == sweep.ari
    for rid, cap, (vf_enable, num_vfs) in zip(rids, caps, sweep.states, strict=True):
        assert _config(model, rid, cap + SRIOV_CONTROL) & VF_ENABLE == vf_enable
        assert _config(model, rid, cap + SRIOV_NUM_VFS) & 0xFFFF == num_vfs
    return model


def vf_bases(params):
    """Each PF's first global VF index: the sum of the TotalVFs of the PFs below it."""
    bases, total = [], 0
    for pf in params.pfs:
        bases.append(total)
        total += pf.total_vfs
    return bases


class Modelled:
    """The model's decode of any request in ``sweep``'s state, as ``(target, pf, vf, index)``."""

    def __init__(self, params, sweep):
        self.model = programmed_model(params, sweep)
        self.base = vf_bases(params)

    def __call__(self, type1, rid):
        kind, k, n = self.model.route(type1, rid)
        if kind == "PF":
            return (PF, k, 0, 0)
        if kind == "VF":
            return (VF, k, n, self.base[k] + n - 1)
        assert kind is None
        return (NONE, 0, 0, 0)


# -- The second check: the spec's formula --------------------------------------------------------


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
    """The formula's decode of any request in ``sweep``'s state, as ``(target, pf, vf, index)``."""

    def __init__(self, params, sweep):
        self.table = vf_table(params, sweep)
        self.base = vf_bases(params)
        self.fns = {pf.pf_rid & 0xFF: k for k, pf in enumerate(params.pfs)}
        self.bus = sweep.bus

    def _vf(self, target):
        if target not in self.table:
            return (NONE, 0, 0, 0)
        k, n = self.table[target]
        return (VF, k, n, self.base[k] + n - 1)

    def __call__(self, type1, rid):
        if type1:       # never a PF; nothing on the captured bus
            return (NONE, 0, 0, 0) if rid >> 8 == self.bus else self._vf(rid)
        k = self.fns.get(rid & 0xFF)        # the bus field of a Type 0 request is not compared
        return (PF, k, 0, 0) if k is not None else self._vf(self.bus << 8 | rid & 0xFF)


# -- Simulation ----------------------------------------------------------------------------------

def lanes_for(params):
    """Decoder copies simulated side by side: 16, or 4 for more than 4 PFs (building and
    compiling 16 copies of 16 cores costs more than the window's few ticks save)."""
    return 16 if params.num_pfs <= 4 else 4


def fields(decoder):
    return (decoder.target.as_value(), decoder.pf, decoder.vf, decoder.vf_index)


def unpack(decoder, code):
    """``(target, pf, vf, vf_index)`` from the packed ``Cat`` of ``fields(decoder)``."""
    parts = []
    for f in fields(decoder):
        parts.append(code & ((1 << len(f)) - 1))
        code >>= len(f)
    return tuple(parts)


class Fed(Elaboratable):
    """``lanes_for(params)`` decoders sharing every input but ``rid``, fed from a ROM: word 0
    holds the capturing Type 0 write's RID (``capture`` is set while it is presented), word
    b + 1 the Type flag (bit 0) and one RID per lane of batch b. Batch b's results are written
    to ``ram`` entry b, ``latency`` edges after the decoders see it: one batch a cycle."""

    def __init__(self, params, batches, capture_rid):
        self.lanes = lanes_for(params)
        self.decoders = [DeviceRoutingDecoder(params) for _ in range(self.lanes)]
        self.latency = self.decoders[0].latency
        self.width = sum(len(f) for f in fields(self.decoders[0]))
        words = [sum(capture_rid << 1 + 16 * j for j in range(self.lanes))]
        words += [int(type1) | sum(rid << 1 + 16 * j for j, rid in enumerate(rids))
                  for type1, rids in batches]
        self.rom = Memory(shape=1 + 16 * self.lanes, depth=len(words), init=words)
        self.ram = Memory(shape=self.width * self.lanes, depth=len(batches), init=[])
        self.cycles = len(words) + self.latency + 2
        self.ari = Signal()
        self.vf_enable = Signal(params.num_pfs)
        self.num_vfs = [Signal(16, name=f"num_vfs{k}") for k in range(params.num_pfs)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom, m.submodules.ram = self.rom, self.ram
        count = Signal(range(self.cycles + 1))
        m.d.sync += count.eq(count + 1)
        read = self.rom.read_port(domain="comb")
        m.d.comb += read.addr.eq(count)
        results = []
        for i, d in enumerate(self.decoders):
            m.submodules[f"lane{i}"] = d
            # ROM word w reaches the decoders while count == w + 1 (driven at the clock edge).
            m.d.sync += [d.rid.eq(read.data[1 + 16 * i:17 + 16 * i]), d.type1.eq(read.data[0])]
            m.d.comb += [d.capture.eq(count == 1), d.ari.eq(self.ari),
                         d.vf_enable.eq(self.vf_enable)]
            m.d.comb += [d.num_vfs[k].eq(n) for k, n in enumerate(self.num_vfs)]
            results.append(Cat(*fields(d)))
        write = self.ram.write_port()
        first = 2 + self.latency        # count when batch 0 (word 1) leaves the decoders
        m.d.comb += [write.addr.eq(count - first), write.data.eq(Cat(*results)),
                     write.en.eq((count >= first) & (count < first + self.ram.depth))]
        return m


def requests(params, sweep):
    """The ``(type1, rid)`` requests of ``sweep``: all 131072, or with ``window`` every Type 1
    RID on the buses where some VF of either layout could be (any NumVFs) and on the captured
    bus, every Type 0 RID with bus field 0x00, 0xFF or the captured bus (the others decode
    alike: exhaustively checked by the other configurations), 1024 random RIDs of each type and
    the anchors."""
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
    for type1, fields_ in ((TYPE0, {0x00, 0xFF, sweep.bus}), (TYPE1, buses)):
        rids = {bus << 8 | devfn for bus in fields_ for devfn in range(256)}
        rids |= {rng.randrange(1 << 16) for _ in range(1024)}
        rids |= {rid for t, rid, *_ in sweep.anchors if t == type1}
        out += [(type1, rid) for rid in sorted(rids)]
    return out


def run_sweep(params, sweep):
    """Decode the requests of ``sweep``; returns ``(decoder, {(type1, rid): fields})``."""
    reqs = requests(params, sweep)
    lanes, batches = lanes_for(params), []
    for type1 in (TYPE0, TYPE1):
        rids = [rid for t, rid in reqs if t == type1]
        batches += [(type1, rids[i:i + lanes]) for i in range(0, len(rids), lanes)]
    writer_rid = sweep.bus << 8 | params.pfs[sweep.writer].pf_rid & 0xFF
    dut = Fed(params, batches, writer_rid)
    raw = []

    async def testbench(ctx):
        ctx.set(dut.ari, sweep.ari)
        ctx.set(dut.vf_enable, sum(int(on) << k for k, (on, _) in enumerate(sweep.states)))
        for k, (_, num) in enumerate(sweep.states):
            ctx.set(dut.num_vfs[k], num)
        await ctx.tick().repeat(dut.cycles)
        assert all(ctx.get(d.bus) == sweep.bus for d in dut.decoders)
        raw.extend(ctx.get(dut.ram.data[i]) for i in range(len(batches)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    got = {}
    mask = (1 << dut.width) - 1
    decoder = dut.decoders[0]
    for (type1, rids), word in zip(batches, raw, strict=True):
        for j, rid in enumerate(rids):
            got[type1, rid] = unpack(decoder, word >> dut.width * j & mask)
    return decoder, got


def sweep_params():
    for name, cfg in CONFIGS.items():
        for sweep in cfg.sweeps:
            yield pytest.param(name, sweep.name, id=f"{name}-{sweep.name}")


def show(fields_):
    target, pf, vf, index = fields_
    name = {NONE: "none", PF: "PF", VF: "VF"}.get(target, f"?{target}")
    return f"{name} pf {pf} vf {vf} index {index}"


def differences(what, got, want):
    bad = [key for key, value in got.items() if value != want(*key)]
    lines = [f"  Type {int(type1)} {rid:#06x}: {what[0]} {show(got[type1, rid])}, "
             f"{what[1]} {show(want(type1, rid))}" for type1, rid in bad[:10]]
    return f"{len(bad)} of {len(got)} requests differ:\n" + "\n".join(lines) if bad else ""


@pytest.mark.parametrize("name, sweep_name", list(sweep_params()))
def test_routing_ids(name, sweep_name):
    cfg = CONFIGS[name]
    sweep = next(s for s in cfg.sweeps if s.name == sweep_name)
    params = cfg.params
    _, got = run_sweep(params, sweep)
    model = Modelled(params, sweep)
    modelled = {key: model(*key) for key in got}
    assert not (msg := differences(("design", "model"), got, lambda *key: modelled[key])), \
        f"{name}/{sweep_name}: {msg}"
    # The second check: the model agrees with the formula written here.
    assert not (msg := differences(("model", "formula"), modelled, Expected(params, sweep))), \
        f"{name}/{sweep_name}: {msg}"
    for type1, rid, target, pf, vf in sweep.anchors:
        assert got[type1, rid][:3] == (target, pf, vf), \
            f"Type {int(type1)} {rid:#06x}: {show(got[type1, rid])}"
    # Every VF that exists was reached (the requests cover every VF's RID).
    reached = {value[1:3] for value in got.values() if value[0] == VF}
    assert reached == set(vf_table(params, sweep).values())
    if sweep.name == "before":
        assert not reached


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


def test_model_programming_matches_literal_positions():
    """The programmed model routes hand-computed positions (a check of ``programmed_model``)."""
    model = programmed_model(dual(), Sweep("x", True, ((True, 8), (False, 8)), bus=0x05))
    assert model.route(TYPE0, 0x0580) == ("VF", 0, 1)
    assert model.route(TYPE1, 0x058E) == (None, 0, 0)
    assert model.route(TYPE0, 0x0181) == (None, 0, 0)
    assert model.route(TYPE0, 0x0101) == ("PF", 1, 0)
    model = programmed_model(dual(), Sweep("x", False, ((True, 1), (True, 2))))
    assert model.route(TYPE1, 0x0283) == ("VF", 1, 2)


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
    """Random RIDs with the state changing between them, against the model and the formula:
    catches a state input wired to the wrong core."""
    params = quad()
    rng = random.Random(10)
    dut = DeviceRoutingDecoder(params)
    steps = []
    for _ in range(300):
        states = tuple((rng.random() < 0.7, rng.randint(0, 63)) for _ in range(4))
        sweep = Sweep("r", rng.random() < 0.5, states)
        steps.append((sweep, rng.random() < 0.5, rng.randint(0x0100, 0x02FF)))

    async def testbench(ctx):
        ctx.set(dut.rid, 0x0100)
        ctx.set(dut.capture, 1)
        await ctx.tick()
        ctx.set(dut.capture, 0)
        for sweep, type1, rid in steps:
            ctx.set(dut.ari, sweep.ari)
            ctx.set(dut.vf_enable, sum(int(on) << k for k, (on, _) in enumerate(sweep.states)))
            for k, (_, num) in enumerate(sweep.states):
                ctx.set(dut.num_vfs[k], num)
            ctx.set(dut.type1, type1)
            ctx.set(dut.rid, rid)
            await ctx.tick().repeat(dut.latency)
            want = Modelled(params, sweep)(type1, rid)
            assert want == Expected(params, sweep)(type1, rid)
            got = (ctx.get(dut.target).value, ctx.get(dut.pf), ctx.get(dut.vf),
                   ctx.get(dut.vf_index))
            assert got == want, f"{rid:#06x} type {int(type1)} {sweep}"

    simulate(dut, lambda: testbench, name="routing-multi-random")
