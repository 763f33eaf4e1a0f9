# amaranth: UnusedElaboratable=no
"""``SriovTlpEndpoint`` (docs/tlp.md) in Amaranth's simulator, driven with TLPs built by the
testbench's codec (``sriov_tb.tlp``).

Expected values: literal numbers from the PCIe Base spec (Fmt/Type codes, status codes, Byte
Count 4 / Lower Address 0 of config completions, the igb-82576 example's Routing IDs), completions
built by the codec's ``completion()`` (§2.2.9/§2.3.1.1 rules, written independently of the RTL),
and config read data, memory decodes and MSI-X table contents from the reference model
``sriov_tb.model.EndpointModel`` fed the same requests.
"""

import dataclasses
import random
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from sriov_ep import load_params
from sriov_ep.tlp import ROUTING_ID_LATENCY, RoutingIdLookup, RxEvent, SriovTlpEndpoint
from sriov_tb.model import EndpointModel
from sriov_tb.tlp import (
    CplStatus,
    Tlp,
    TlpType,
    atomic,
    cfg_read,
    cfg_write,
    completion,
    io_read,
    io_write,
    mem_read,
    mem_write,
    message,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IGB = EXAMPLES / "igb-82576.toml"
HOST = 0x0000                   # the Root Complex's Requester ID
PF = 0x0100                     # igb-82576's PF, 01:00.0
# igb-82576 with ARI: VF n at 0x0180 + 2 (n-1) (First VF Offset 0x80, VF Stride 2)
VF_RID = {n: 0x0180 + 2 * (n - 1) for n in range(1, 9)}
CTRL, NUMVFS = 0x168 // 4, 0x170 // 4
VF_BAR0, VF_BAR3 = 0x184 // 4, 0x190 // 4
PF_BAR0, PF_BAR3 = 0x8000_0000, 0x8004_0000
VF_BAR0_BASE, VF_BAR3_BASE = 0x1_0000_0000, 0x1_0002_0000
VF_APERTURE = 16 << 10
MSIX_CAP = 0x84 // 4            # PF MSI-X capability; Message Control in bits 31:16
MAX_CYCLES = 4000


class Bench:
    """Drives ``rx`` and the user streams and records ``tx``, ``req`` and the events."""

    def __init__(self, dut, *, seed=0, tx_ready=1.0, req_ready=1.0, rx_gap=0.0,
                 rx_cpl_ready=1.0):
        self.dut = dut
        self.w = dut._w
        self.rng = random.Random(seed)
        self.tx_ready, self.req_ready, self.rx_gap = tx_ready, req_ready, rx_gap
        self.rx_cpl_ready = rx_cpl_ready
        self.tx = []            # (cycle, Tlp)
        self.req = []           # (cycle, Tlp, func, bar, offset)
        self.rx_cpl = []        # (cycle, Tlp)
        self.events = []        # (cycle, name, fields)
        self.cycle = 0
        self.rx_taken = []      # cycles at which a TLP's sop beat was taken
        self.tx_sop_cycles = []

    # -- background: the link's transmit side, the user's request sink, the events ----------

    def background(self):
        async def monitor(ctx):
            d = self.dut
            tx_beats, req_beats, cpl_beats = [], [], []
            while True:
                ctx.set(d.tx.ready, int(self.rng.random() < self.tx_ready))
                ctx.set(d.req.ready, int(self.rng.random() < self.req_ready))
                ctx.set(d.rx_cpl.ready, int(self.rng.random() < self.rx_cpl_ready))
                (_, _, tv, tr, tp, qv, qr, qp, ev, msg, cur, ref, rv, rr, rp, cv, cr, cp) = \
                    await ctx.tick().sample(
                        d.tx.valid, d.tx.ready, d.tx.payload, d.req.valid, d.req.ready,
                        d.req.payload, d.rx_event, d.rx_msg, d.cfg_ur, d.dma_refused,
                        d.rx.valid, d.rx.ready, d.rx.payload,
                        d.rx_cpl.valid, d.rx_cpl.ready, d.rx_cpl.payload)
                self.cycle += 1
                if cv and cr:
                    cpl_beats.append(_beat(cp))
                    if cp.eop:
                        self.rx_cpl.append((self.cycle, Tlp.from_beats(cpl_beats)))
                        cpl_beats = []
                if rv and rr and rp.sop:
                    self.rx_taken.append(self.cycle)
                if tv and tr:
                    tx_beats.append(_beat(tp))
                    if tp.sop:
                        self.tx_sop_cycles.append(self.cycle)
                    if tp.eop:
                        self.tx.append((self.cycle, Tlp.from_beats(tx_beats)))
                        tx_beats = []
                if qv and qr:
                    req_beats.append(_beat(qp))
                    if qp.eop:
                        self.req.append((self.cycle, Tlp.from_beats(req_beats),
                                         (qp.func.pf, qp.func.vf), qp.bar_id, qp.offset))
                        req_beats = []
                if ev.valid:
                    self.events.append((self.cycle, "rx_event",
                                        (RxEvent(ev.kind), ev.func.pf, ev.func.vf)))
                if msg.valid:
                    self.events.append((self.cycle, "rx_msg", msg.code))
                if cur.valid:
                    self.events.append((self.cycle, "cfg_ur", cur.rid))
                if ref.valid:
                    self.events.append((self.cycle, "dma_refused",
                                        (ref.write, ref.func.pf, ref.func.vf)))
        return [monitor]

    # -- sending -----------------------------------------------------------------------------

    async def send(self, ctx, tlp, stream=None, func=None):
        """Offer ``tlp`` on ``rx`` (or a user stream with ``func``), beat by beat."""
        s = self.dut.rx if stream is None else stream
        for b in tlp.beats(self.w):
            while self.rng.random() < self.rx_gap:
                ctx.set(s.valid, 0)
                await ctx.tick()
            payload = dict(b)
            if func is not None:
                payload["func"] = {"pf": func[0], "vf": func[1]}
            ctx.set(s.payload, payload)
            ctx.set(s.valid, 1)
            await ctx.tick().until(s.ready)
        ctx.set(s.valid, 0)

    async def wait_tx(self, ctx, count):
        for _ in range(MAX_CYCLES):
            if len(self.tx) >= count:
                return
            await ctx.tick()
        raise AssertionError(f"{count} TLPs expected on tx, got {len(self.tx)}: "
                             f"{[str(t) for _, t in self.tx]}")

    async def settle(self, ctx, cycles=30):
        await ctx.tick().repeat(cycles)

    async def request(self, ctx, tlp):
        """Send a non-posted request and return its completion."""
        n = len(self.tx)
        await self.send(ctx, tlp)
        await self.wait_tx(ctx, n + 1)
        return self.tx[n][1]

    def events_of(self, name):
        return [e[2] for e in self.events if e[1] == name]

    def rx_msg_seen(self):
        return self.events_of("rx_msg")


def _beat(p):
    return {"hdr": p.hdr, "data": p.data, "strb": p.strb, "sop": p.sop, "eop": p.eop}


class Host:
    """Config and memory requests through the wrapper, mirrored on the reference model, with
    each completion checked against the one the codec builds."""

    def __init__(self, bench, model):
        self.b = bench
        self.model = model
        self.tag = 0

    def next_tag(self):
        self.tag = (self.tag + 1) % 1024 or 1
        return self.tag

    def expected_cfg(self, tlp, status, value):
        t1 = tlp.type in (TlpType.CFGRD1, TlpType.CFGWR1)
        bus = self.model.pf(0).captured_bus
        cid = tlp.target_id if t1 else bus << 8 | (tlp.target_id & 0xFF)
        read = tlp.type in (TlpType.CFGRD0, TlpType.CFGRD1)
        if status == "SC":
            return completion(tlp, cid, CplStatus.SC, value if read else None)
        return completion(tlp, cid, CplStatus.UR)

    async def cfg(self, ctx, rid, reg, data=None, be=0xF, type1=False):
        tag = self.next_tag()
        if data is None:
            tlp = cfg_read(HOST, tag, rid, reg, first_be=be, type1=type1)
        else:
            tlp = cfg_write(HOST, tag, rid, reg, data, first_be=be, type1=type1)
        status, value = self.model.config(type1, rid, reg, be, data is not None, data or 0)
        got = await self.b.request(ctx, tlp)
        want = self.expected_cfg(tlp, status, value)
        assert got == want, f"{tlp}: got {got}, expected {want}"
        return got

    async def bring_up(self, ctx, vfs=4, vf_bme=()):
        await self.cfg(ctx, PF, 1, 0x0006)                 # Command: MSE, BME (bus captured)
        await self.cfg(ctx, PF, 4, PF_BAR0)
        await self.cfg(ctx, PF, 7, PF_BAR3)
        await self.cfg(ctx, PF, VF_BAR0, VF_BAR0_BASE & 0xFFFF_FFFF)
        await self.cfg(ctx, PF, VF_BAR0 + 1, VF_BAR0_BASE >> 32)
        await self.cfg(ctx, PF, VF_BAR3, VF_BAR3_BASE & 0xFFFF_FFFF)
        await self.cfg(ctx, PF, VF_BAR3 + 1, VF_BAR3_BASE >> 32)
        await self.cfg(ctx, PF, NUMVFS, vfs, be=0x3)
        await self.cfg(ctx, PF, CTRL, 0x19)               # VF Enable, VF MSE, ARI Capable
        for n in vf_bme:
            await self.cfg(ctx, VF_RID[n], 1, 0x0004)


def run(dut, body, *, bench_kw=None, deadline_us=None):
    """Simulate ``body(ctx, bench, host)`` with the monitor in the background."""
    bench = Bench(dut, **(bench_kw or {}))
    host = Host(bench, EndpointModel(dut.params))

    async def main(ctx):
        await ctx.tick().repeat(40)         # the VF state clear after reset (RRS meanwhile)
        await body(ctx, bench, host)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    for bg in bench.background():
        sim.add_testbench(bg, background=True)
    sim.run()
    return bench


@pytest.fixture(scope="module")
def igb():
    return load_params(IGB)


# -- 2. Config TLPs ------------------------------------------------------------------------------

def test_config_completions_and_ids(igb):
    """Config reads and writes to the PF before and after bus capture, to VFs (Type 0 with ARI),
    Type 1 and nonexistent functions: every completion is the codec's completion() of the
    request with the Completer ID of §2.2.6.2 (bus 0 before the first Type 0 write), data from
    the model."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        # Before any config write: Completer ID bus 0, function 0.
        got = await h.cfg(ctx, PF, 0)
        assert got.completer_id == 0x0000 and got.type == TlpType.CPLD
        assert got.data == (0x10C9_8086).to_bytes(4, "little")       # igb's IDs
        await h.bring_up(ctx, vfs=4)
        got = await h.cfg(ctx, PF, 0)
        assert got.completer_id == 0x0100
        for n in (1, 2, 4):
            got = await h.cfg(ctx, VF_RID[n], 0)                     # VF: Vendor ID 0xFFFF
            assert got.completer_id == VF_RID[n] and got.status == 0
            assert got.byte_count == 4 and got.lower_address == 0
        # VF 5 does not exist (NumVFs 4): UR with its would-be ID; a Type 1 to bus 1: UR.
        got = await h.cfg(ctx, VF_RID[4] + 2, 0)
        assert got.status == 1 and got.type == TlpType.CPL
        got = await h.cfg(ctx, 0x0180, 0, type1=True)
        assert got.status == 1 and got.completer_id == 0x0180
        # 10-bit tags, TC/Attr copied by completion() and compared.
        h.tag = 0x3FE
        got = await h.cfg(ctx, PF, 1)
        assert got.tag == 0x3FF
        assert b.events_of("cfg_ur") == [VF_RID[4] + 2, 0x0180]
        assert b.req == []

    run(dut, body)


def test_config_latency_and_order(igb):
    """A config TLP's completion is transferred config_tlp_latency (11 = the endpoint's 7 + the
    header register, the completion register, the arbiter's grant register, the output
    register) edges after its beat was taken; four CfgRds offered back to back complete in
    order."""
    dut = SriovTlpEndpoint(igb)
    assert dut.config_tlp_latency == 11

    async def body(ctx, b, h):
        await h.cfg(ctx, PF, 1, 0x0006)
        n = len(b.tx)
        await b.send(ctx, cfg_read(HOST, 7, PF, 0))
        await b.wait_tx(ctx, n + 1)
        assert b.tx[n][0] - b.rx_taken[-1] == 11
        tlps = [cfg_read(HOST, t, PF, reg) for t, reg in ((1, 0), (2, 1), (3, 2), (4, 3))]
        for t in tlps:
            await b.send(ctx, t)
        await b.wait_tx(ctx, n + 5)
        model = h.model
        for t, (_, got) in zip(tlps, b.tx[n + 1:], strict=True):
            status, value = model.config(False, PF, t.register, 0xF, False, 0)
            assert got == completion(t, 0x0100, CplStatus.SC, value)

    run(dut, body)


def test_memory_and_user_latency(igb):
    """docs/tlp.md §5 with mem_latency 2 and one PF (mem_decode_latency 3): a claimed MRd is on
    req 11 edges after its beat was taken (the header register, mem_req, the decode's 3, the
    shared lookup's 5 (grant register, query register, the lookup's 3), the output:
    1 + 1 + 3 + 5 + 1 = 11, i.e. M + 8), a received completion on rx_cpl 1 edge after, an
    unclaimed MRd's UR completion on tx after 13 (M + 10: instead of the output stage, the
    completion register, the arbiter's grant register, the output register); a user
    completion offered on an idle cpl stream is taken at the 9th edge with valid high (after
    the function register's edge, the shared lookup's 5 edges, the decision and the arbiter's
    grant register: 1 + 5 + 1 + 1 = 8 edges) and is on tx at the 10th."""
    dut = SriovTlpEndpoint(igb)
    assert dut.endpoint.mem_decode_latency == 3
    seen = []

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=1)
        await b.send(ctx, mem_read(HOST, 1, PF_BAR0, 4))
        await b.settle(ctx)
        assert b.req[-1][0] - b.rx_taken[-1] == 1 + 1 + 3 + 5 + 1
        await b.send(ctx, _cpl_for(0x55, 4))          # one beat: on rx_cpl at the next edge
        await b.settle(ctx)
        assert b.rx_cpl[-1][0] - b.rx_taken[-1] == 1
        n = len(b.tx)
        await b.send(ctx, mem_read(HOST, 2, 0xC000_0000, 4))
        await b.wait_tx(ctx, n + 1)
        assert b.tx[-1][0] - b.rx_taken[-1] == 1 + 1 + 3 + 5 + 3
        await b.settle(ctx)
        seen.clear()
        cpl = completion(mem_read(HOST, 3, PF_BAR0, 4), 0, CplStatus.SC, bytes(4))
        await b.send(ctx, cpl, stream=b.dut.cpl, func=(0, 0))
        await b.wait_tx(ctx, n + 2)
        first = seen[0][0]
        before_take = 1 + 5 + 1 + 1
        assert [k - first for k, r in seen if r] == [before_take]
        assert b.tx[-1][0] - first == before_take + 1

    async def watch(ctx):
        k = 0
        while True:
            _, _, v, r = await ctx.tick().sample(dut.cpl.valid, dut.cpl.ready)
            k += 1
            if v:
                seen.append((k, r))

    bench = Bench(dut)
    host = Host(bench, EndpointModel(dut.params))

    async def main(ctx):
        await ctx.tick().repeat(40)
        await body(ctx, bench, host)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    for bg in [*bench.background(), watch]:
        sim.add_testbench(bg, background=True)
    sim.run()


def test_rrs_while_vf_state_clears(igb):
    """Right after reset the endpoint clears its VF state (TotalVFs cycles) and answers the PF
    with Request Retry Status: a Cpl with status 010b (CRS), Byte Count 4, no data."""
    dut = SriovTlpEndpoint(igb)
    bench = Bench(dut)

    async def main(ctx):
        t = cfg_read(HOST, 0x155, PF, 0)
        await bench.send(ctx, t)
        await bench.wait_tx(ctx, 1)
        assert bench.tx[0][1] == completion(t, 0x0000, CplStatus.CRS)
        assert bench.tx[0][1].header_dwords()[1] == 0x0000_4004     # Completer 0, CRS, BC 4

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    for bg in bench.background():
        sim.add_testbench(bg, background=True)
    sim.run()


def test_malformed_config_dropped(igb):
    """§2.2.7: a config TLP with Length 2 or a nonzero Last DW BE is dropped and reported, never
    executed (Command stays 0); a poisoned CfgWr completes with UR and is not executed."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        long = Tlp(TlpType.CFGWR0, requester_id=HOST, tag=5, target_id=PF, register=1,
                   first_be=0xF, last_be=0xF, length=2, data=bytes([6, 0, 0, 0, 0, 0, 0, 0]))
        lbe = Tlp(TlpType.CFGWR0, requester_id=HOST, tag=6, target_id=PF, register=1,
                  first_be=0xF, last_be=0x1, length=1, data=bytes([6, 0, 0, 0]))
        rd = Tlp(TlpType.CFGRD0, requester_id=HOST, tag=7, target_id=PF, register=1,
                 first_be=0xF, length=3)
        for t in (long, lbe, rd):
            assert t.violations()
            await b.send(ctx, t)
        poisoned = cfg_write(HOST, 8, PF, 1, 0x0006, ep=1)
        got = await b.request(ctx, poisoned)
        assert got == completion(poisoned, 0x0000, CplStatus.UR)
        await b.settle(ctx)
        assert len(b.tx) == 1
        kinds = [e[0] for e in b.events_of("rx_event")]
        assert kinds == [RxEvent.MALFORMED] * 3 + [RxEvent.POISONED]
        got = await h.cfg(ctx, PF, 1)                   # Command still 0
        assert got.data[:2] == bytes(2)

    run(dut, body)


# -- 3. Memory TLPs ------------------------------------------------------------------------------

def test_memory_requests(igb):
    """MRd/MWr (32- and 64-bit) claimed by user BARs go to req unchanged with func/bar/offset
    from the model's decode; unclaimed MRd gets the codec's UR completion (Completer 01:00.0),
    unclaimed MWr is dropped; both report UR naming PF 0."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=4)
        n0 = len(b.tx)
        cases = [
            mem_read(HOST, 0x11, PF_BAR0 + 0x40, 4),
            mem_write(HOST, 0x12, PF_BAR0 + 0x1004, bytes(range(1, 13))),
            mem_read(HOST, 0x13, VF_BAR0_BASE + 2 * VF_APERTURE + 0x10, 8),
            mem_write(HOST, 0x14, VF_BAR0_BASE + 3 * VF_APERTURE + 0x20, bytes(range(64))),
            mem_read(HOST, 0x15, VF_BAR3_BASE + VF_APERTURE + 0x3000, 2),
            mem_read(HOST, 0x16, PF_BAR0 + 0x80, 4, force64=True),
        ]
        for t in cases:
            await b.send(ctx, t)
        await b.settle(ctx, 60)
        assert len(b.req) == len(cases) and len(b.tx) == n0
        for t, (_, got, func, bar, offset) in zip(cases, b.req, strict=True):
            claimed, function, mbar, moffset = h.model.decode_memory(t.address)
            assert claimed
            assert got == t and func == (0, function) and bar == mbar and offset == moffset
        assert [r[2] for r in b.req] == [(0, 0), (0, 0), (0, 3), (0, 4), (0, 2), (0, 0)]
        # Unclaimed: past NumVFs, and below every BAR.
        rd = mem_read(HOST, 0x21, VF_BAR0_BASE + 4 * VF_APERTURE, 4)
        got = await b.request(ctx, rd)
        assert got == completion(rd, 0x0100, CplStatus.UR)
        assert got.byte_count == 4 and got.lower_address == 0
        rd = mem_read(HOST, 0x22, 0x1000_0002, 5, force64=True)
        got = await b.request(ctx, rd)
        assert got == completion(rd, 0x0100, CplStatus.UR)
        assert got.byte_count == 5 and got.lower_address == 2
        for addr in (VF_BAR0_BASE + 4 * VF_APERTURE, 0x1000_0000, 0xC000_0000):
            assert not h.model.decode_memory(addr)[0]
        await b.send(ctx, mem_write(HOST, 0x23, 0xC000_0000, bytes(4)))
        await b.settle(ctx)
        assert len(b.req) == len(cases) and len(b.tx) == n0 + 2
        assert b.events_of("rx_event") == [(RxEvent.UR, 0, 0)] * 3

    run(dut, body)


def test_stray_rx_beat_dropped(igb):
    """A beat on rx outside a TLP (sop low) is dropped even when its header bits read as a
    claimed MRd: the endpoint's mem_req is not raised (mem_ok is set only with a sop beat),
    nothing reaches req; the next TLP is served."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        d = b.dut
        await h.bring_up(ctx, vfs=1)
        await b.settle(ctx)
        n = len(b.req)
        beat = {**mem_read(HOST, 1, VF_BAR0_BASE, 4).beats(64)[0], "sop": 0, "eop": 1}
        ctx.set(d.rx.payload, beat)
        ctx.set(d.rx.valid, 1)
        await ctx.tick().until(d.rx.ready)
        ctx.set(d.rx.valid, 0)
        for _ in range(30):                 # the endpoint's memory port is not asked
            _, _, asked = await ctx.tick().sample(d.endpoint.mem_req.valid)
            assert not asked
        assert len(b.req) == n
        await b.send(ctx, mem_read(HOST, 2, PF_BAR0, 4))
        await b.settle(ctx)
        assert len(b.req) == n + 1 and b.req[-1][1].tag == 2
        assert b.req[-1][2] == (0, 0)       # its own function, not the stray beat's VF 1

    run(dut, body)


def test_msix_table_through_tlps(igb):
    """The MSI-X tables of the PF and of VF 2 written and read with MWr/MRd: the endpoint
    serves them (nothing on req), CplD with the function's Completer ID and the model's data;
    an access of 3 DW is Completer Abort and changes nothing."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=4)
        for base, cid in ((PF_BAR3, 0x0100), (VF_BAR3_BASE + VF_APERTURE, VF_RID[2])):
            wr = mem_write(HOST, 1, base + 0x10, (0xFEE0_1000).to_bytes(4, "little"))
            await b.send(ctx, wr)
            h.model.memory(base + 0x10, True, 0xFEE0_1000, 0x0F)
            wr = mem_write(HOST, 2, base + 0x18, (0x0000_0031).to_bytes(4, "little"))
            await b.send(ctx, wr)
            h.model.memory(base + 0x18, True, 0x31, 0x0F)
            for addr, n in ((base + 0x10, 8), (base + 0x18, 4), (base + 0x1C, 4)):
                rd = mem_read(HOST, 3, addr, n)
                got = await b.request(ctx, rd)
                q = h.model.memory(addr & ~7, False).data
                value = (q >> (8 * (addr & 7))) & ((1 << (8 * n)) - 1)
                assert got == completion(rd, cid, CplStatus.SC, value.to_bytes(n, "little"))
            rd = mem_read(HOST, 4, base + 0x10, 12)
            got = await b.request(ctx, rd)
            assert got == completion(rd, cid, CplStatus.CA)
            bad = mem_write(HOST, 5, base + 0x10, bytes([0xAA] * 12))
            await b.send(ctx, bad)
            rd = mem_read(HOST, 6, base + 0x10, 8)
            got = await b.request(ctx, rd)
            assert got.data == (0xFEE0_1000).to_bytes(4, "little") + bytes(4)
        assert b.req == []
        abort = [e for e in b.events_of("rx_event") if e[0] == RxEvent.MSIX_ABORT]
        assert abort == [(RxEvent.MSIX_ABORT, 0, 0)] * 2 + [(RxEvent.MSIX_ABORT, 0, 2)] * 2

    run(dut, body)


# -- 4. Everything else -----------------------------------------------------------------------

def test_other_tlps(igb):
    """IO, MRdLk, AtomicOps: UR completions of the codec (CplLk for MRdLk, the operand size as
    AtomicOp Byte Count); messages by code; poisoned MWr; unknown types: nothing reaches req,
    no state changes (the PF's Command and a VF BAR read back as before); completions go to
    rx_cpl."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=2)
        n0 = len(b.tx)
        nonposted = [
            io_read(HOST, 1, 0x1000),
            io_write(HOST, 2, 0x1000, 0x1234),
            mem_read(HOST, 3, PF_BAR0, 4, locked=True),
            atomic("fetchadd", HOST, 4, PF_BAR0 + 8, bytes(8)),
            atomic("cas", HOST, 5, VF_BAR0_BASE, bytes(16)),
            atomic("swap", HOST, 6, PF_BAR0, bytes(4)),
            io_write(HOST, 7, 0x1000, 0x1234, ep=1),
        ]
        for t in nonposted:
            got = await b.request(ctx, t)
            assert got == completion(t, 0x0100, CplStatus.UR), str(t)
        assert b.tx[n0 + 2][1].type == TlpType.CPLLK
        assert [t.byte_count for _, t in b.tx[n0 + 3:n0 + 6]] == [8, 8, 4]
        posted = [
            message(HOST, 0x19, 0b011),                          # PM_PME_Turn_Off
            message(HOST, 0x50, 0b100, data=bytes(4)),            # Set_Slot_Power_Limit
            message(HOST, 0x7F, 0b010, target_id=PF),             # Vendor_Defined Type 1
            message(HOST, 0x41, 0b100),                           # an Ignored Message
            message(HOST, 0x7E, 0b010, target_id=PF),             # Vendor_Defined Type 0
            message(HOST, 0x50, 0b100, data=bytes(4), ep=1),
            mem_write(HOST, 8, PF_BAR0 + 0x100, bytes(4), ep=1),
            Tlp(TlpType.CPLD, completer_id=HOST, requester_id=PF, tag=1, data=bytes(4)),
            Tlp(TlpType.CPL, completer_id=HOST, requester_id=PF, tag=2),
        ]
        for t in posted:
            await b.send(ctx, t)
        # A Fmt/Type an endpoint never receives (a TLP prefix, Fmt 100b), one beat.
        raw = {"hdr": 0x9000_0000 << 96, "data": 0, "strb": 0, "sop": 1, "eop": 1}
        ctx.set(b.dut.rx.payload, raw)
        ctx.set(b.dut.rx.valid, 1)
        await ctx.tick().until(b.dut.rx.ready)
        ctx.set(b.dut.rx.valid, 0)
        await b.settle(ctx)
        assert len(b.tx) == n0 + len(nonposted) and b.req == []
        assert b.events_of("rx_msg") == [0x19, 0x50]
        K = RxEvent
        assert [e[0] for e in b.events_of("rx_event")] == (
            [K.UR] * 6 + [K.POISONED, K.UR, K.POISONED, K.POISONED, K.MALFORMED])
        # The two completions went to rx_cpl, unchanged (the user's DMA engine owns tags).
        assert [t for _, t in b.rx_cpl] == posted[-2:]
        # The model saw none of them: the registers read back as it says.
        await h.cfg(ctx, PF, 1)
        await h.cfg(ctx, PF, VF_BAR0)
        # The poisoned MWr never reached the endpoint's memory port: the next read is decoded
        # alone (its own offset, 0, not the write's 0x100).
        rd = mem_read(HOST, 9, PF_BAR0, 4)
        await b.send(ctx, rd)
        await b.settle(ctx)
        assert [(r[1], r[2], r[4]) for r in b.req] == [(rd, (0, 0), 0)]

    run(dut, body)


def _cpl_for(tag, nbytes, status=CplStatus.SC, **kw):
    """A completion the host sends for a DMA read of ``nbytes`` by the PF (the codec's rules)."""
    rd = mem_read(PF, tag, 0x2_0000_0000, nbytes)
    data = bytes((tag + i) & 0xFF for i in range(nbytes)) if status == CplStatus.SC else None
    return completion(rd, HOST, status, data).replace(**kw)


@pytest.mark.parametrize("width", [64, 256])
def test_completions_to_rx_cpl(igb, width):
    """Every well-formed completion arriving on rx goes to rx_cpl unchanged and in order
    (multi-beat CplD, Cpl UR, CplLk, CplDLk, poisoned, a reserved status, 8- and 10-bit tags,
    Length 32 = Max_Payload_Size 128 bytes), with rx_cpl stalling at random; none is reported;
    a CplD of 33 DW (beyond Max_Payload_Size, §2.2.2) is dropped and reported MALFORMED; a
    posted MWr and a config read around them are handled as usual."""
    dut = SriovTlpEndpoint(igb, data_width=width)
    kw = {"seed": 4, "rx_cpl_ready": 0.4, "rx_gap": 0.2}

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=1)
        n0 = len(b.tx)
        rd_lk = mem_read(PF, 0x12, 0x2_0000_0000, 4, locked=True)
        good = [
            _cpl_for(0x3A5, 64),                                       # 16 DW, 10-bit tag
            _cpl_for(0x07, 0, CplStatus.UR).replace(byte_count=4),
            completion(rd_lk, HOST, CplStatus.UR),                     # CplLk
            completion(rd_lk, HOST, CplStatus.SC, bytes([9, 8, 7, 6])),  # CplDLk
            _cpl_for(0x08, 8, ep=1),                                   # poisoned: the user's
            _cpl_for(0x09, 0, CplStatus.UR).replace(status=0b011),     # reserved status
            _cpl_for(0x0A, 128),                                       # 32 DW: MPS
        ]
        assert [t.type for t in good[2:4]] == [TlpType.CPLLK, TlpType.CPLDLK]
        oversize = _cpl_for(0x0B, 132)
        assert oversize.length == 33
        wr = mem_write(HOST, 0x20, PF_BAR0 + 0x10, bytes(range(8)))
        sent = [good[0], good[1], wr, good[2], oversize, good[3], good[4], good[5], good[6]]
        for t in sent:
            await b.send(ctx, t)
        got = await h.cfg(ctx, PF, 0)
        assert got.type == TlpType.CPLD
        await b.settle(ctx, 80)
        assert [t for _, t in b.rx_cpl] == good
        assert [r[1] for r in b.req] == [wr]
        assert b.events_of("rx_event") == [(RxEvent.MALFORMED, 0, 0)]
        assert len(b.tx) == n0 + 1

    run(dut, body, bench_kw=kw)


def test_malformed_memory_requests(igb):
    """PCIe Base §2.2.2 (payload beyond Max_Payload_Size, 128 bytes), §2.2.5 (byte enables) and
    §2.2.7 (4 KiB boundary; IO and config: Length 1, Last DW BE 0, TC 0, Attr 0): each violation
    is dropped and reported MALFORMED, never reaches req, the endpoint or tx; each request just
    inside a rule (ending at a 4 KiB boundary, 1024 DW from one, 32 DW written, a zero-length
    read, the QWORD-aligned Length 2 exception) goes to req. The codec's violations() agrees on
    which is which."""
    dut = SriovTlpEndpoint(igb)
    T = TlpType

    def mem(t, addr, length, fbe=0xF, lbe=0xF, **kw):
        if t in (T.MWR32, T.MWR64):
            kw["data"] = bytes(4 * length)
        return Tlp(t, requester_id=HOST, tag=0x30, address=addr, length=length, first_be=fbe,
                   last_be=lbe if length > 1 else 0, **kw)

    bad = [
        mem(T.MRD32, PF_BAR0 + 0xFFC, 2),                        # crosses 4 KiB
        mem(T.MWR64, VF_BAR0_BASE + 0x1FF8, 4),                  # crosses 4 KiB, 64-bit
        mem(T.MRD32, PF_BAR0 + 0x2004, 1024),                    # 4096 bytes from 0x004
        mem(T.MWR32, PF_BAR0 + 0x3000, 33),                      # 132 bytes > MPS
        Tlp(T.MRD32, requester_id=HOST, tag=1, address=PF_BAR0, length=1, first_be=0xF,
            last_be=0x1),                                        # Length 1, Last DW BE != 0
        mem(T.MRD32, PF_BAR0 + 8, 2, fbe=0),                     # Length 2, First DW BE 0
        mem(T.MWR32, PF_BAR0 + 0x10, 3, lbe=0),                  # Length 3, Last DW BE 0
        mem(T.MRD32, PF_BAR0 + 0x20, 3, fbe=0b0101),             # not contiguous
        mem(T.MRD32, PF_BAR0 + 0x30, 3, lbe=0b0111 << 1 & 0xF),  # Last DW BE 1110b
        mem(T.MRD32, PF_BAR0 + 0x44, 2, fbe=0b0011, lbe=0b1100),  # Length 2, not QW aligned
        mem(T.MRDLK32, PF_BAR0 + 0xFFC, 2),                      # MRdLk: malformed, not UR
        Tlp(T.IORD, requester_id=HOST, tag=2, address=0x1000, length=2, first_be=0xF,
            last_be=0xF),
        Tlp(T.IOWR, requester_id=HOST, tag=3, address=0x1000, length=1, first_be=0xF,
            tc=1, data=bytes(4)),
        Tlp(T.CFGRD0, requester_id=HOST, tag=4, target_id=PF, register=0, first_be=0xF,
            attr=1),
        Tlp(T.CFGWR0, requester_id=HOST, tag=5, target_id=PF, register=1, first_be=0xF,
            tc=2, data=bytes(4)),
        message(HOST, 0x50, 0b100, data=bytes(132)),             # MsgD of 33 DW
    ]
    good = [
        mem(T.MRD32, PF_BAR0 + 0xFF8, 2),                        # ends at the boundary
        mem(T.MRD32, PF_BAR0 + 0x1000, 1024),                    # exactly 4 KiB
        mem(T.MWR32, PF_BAR0 + 0x3000, 32),                      # 128 bytes
        mem(T.MRD32, PF_BAR0 + 0x40, 1, fbe=0),                  # zero-length read
        mem(T.MRD32, PF_BAR0 + 0x48, 2, fbe=0b0011, lbe=0b1100),  # QW-aligned exception
        mem(T.MWR32, PF_BAR0 + 0x50, 2, fbe=0b0101, lbe=0b1010),
        mem(T.MRD32, PF_BAR0 + 0x60, 3, fbe=0b1110, lbe=0b0111),
    ]
    for i, t in enumerate(bad):
        # the codec knows no Max_Payload_Size: bad[3] and bad[-1] break only that rule
        assert bool(t.violations()) == (i not in (3, len(bad) - 1)), str(t)
    for t in good:
        assert not t.violations(), (str(t), t.violations())

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=2)
        for t in (*bad, *good):
            if t.type.is_memory:
                assert h.model.decode_memory(t.address)[0], str(t)
        n0 = len(b.tx)
        for t in bad:
            await b.send(ctx, t)
        await b.settle(ctx, 40)
        assert b.events_of("rx_event") == [(RxEvent.MALFORMED, 0, 0)] * len(bad)
        assert b.req == [] and len(b.tx) == n0 and b.rx_msg_seen() == []
        for t in good:
            await b.send(ctx, t)
        await b.settle(ctx, 40)
        assert [r[1] for r in b.req] == good
        assert len(b.events_of("rx_event")) == len(bad)
        got = await h.cfg(ctx, PF, 1)                   # the CfgWr of TC 2 cleared nothing
        assert got.data[:2] == bytes([6, 0])

    run(dut, body)


DEVCTL_DEVSTA = 0x48 // 4        # PCI Express Capability at 0x40: Device Status in bits 31:16
URD = 1 << 19                   # Device Status bit 3, Unsupported Request Detected (RW1C)


def test_unsupported_request_detected(igb):
    """Every UR the wrapper detects for a request (unclaimed MRd and MWr, IO, MRdLk, AtomicOp,
    an unsupported Message) sets Device Status bit 3 of the PF (the model's
    unsupported_request()); a config write of 1 to it clears it. A poisoned or malformed TLP, a
    config request to a function that does not exist, an MSI-X Completer Abort and a received
    completion do not set it."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=2)

        async def devsta():
            got = await h.cfg(ctx, PF, DEVCTL_DEVSTA)       # compared with the model's read
            return int.from_bytes(got.data, "little") & URD

        async def clear():
            await h.cfg(ctx, PF, DEVCTL_DEVSTA, URD, be=0b1100)
            assert await devsta() == 0

        assert await devsta() == 0
        ur = [
            mem_read(HOST, 1, 0xC000_0000, 4),
            mem_write(HOST, 2, 0xC000_0000, bytes(4)),
            io_read(HOST, 3, 0x1000),
            mem_read(HOST, 4, PF_BAR0, 4, locked=True),
            atomic("swap", HOST, 5, PF_BAR0, bytes(4)),
            message(HOST, 0x7E, 0b010, target_id=PF),            # Vendor_Defined Type 0
        ]
        for t in ur:
            await b.send(ctx, t)
            await b.settle(ctx, 20)
            h.model.unsupported_request(0, 0)
            assert await devsta() == URD, str(t)
            await clear()
        not_ur = [
            mem_write(HOST, 6, PF_BAR0, bytes(4), ep=1),
            Tlp(TlpType.MRD32, requester_id=HOST, tag=7, address=PF_BAR0 + 0xFFC, length=2,
                first_be=0xF, last_be=0xF),                      # crosses 4 KiB: malformed
            cfg_read(HOST, 8, VF_RID[2] + 2, 0),                 # VF 3 does not exist: UR cpl
            mem_read(HOST, 9, PF_BAR3, 12),                      # MSI-X table: CA
            _cpl_for(0x0A, 4),
            message(HOST, 0x7F, 0b010, target_id=PF),            # Vendor_Defined Type 1
        ]
        for t in not_ur:
            await b.send(ctx, t)
        await b.settle(ctx, 40)
        assert await devsta() == 0

    run(dut, body)


@pytest.mark.parametrize("config", ["igb-82576.toml", "multi-pf/igb-82576-dual.toml"])
def test_urd_event_of_endpoint(config):
    """SriovEndpoint's urd input: pf k with vf 0 sets PF k's Device Status bit 3 only; a VF
    number, or a PF index the device does not have, changes nothing; the model's
    unsupported_request() agrees (every config read compared); a config write of 1 clears it.
    Through the wrapper an unclaimed MRd sets PF 0's bit only."""
    from sriov_ep import SriovEndpoint

    params = load_params(EXAMPLES / config)
    rids = [pf.pf_rid for pf in params.pfs]
    dut = SriovEndpoint(params)
    model = EndpointModel(params)

    async def cfg(ctx, rid, reg, data=None, be=0xF):
        ctx.set(dut.cfg_req.payload, {"type1": 0, "rid": rid, "reg": reg, "be": be,
                                      "write": data is not None, "data": data or 0})
        ctx.set(dut.cfg_req.valid, 1)
        await ctx.tick().until(dut.cfg_req.ready)
        ctx.set(dut.cfg_req.valid, 0)
        ctx.set(dut.cfg_cpl.ready, 1)
        (payload,) = await ctx.tick().sample(dut.cfg_cpl.payload).until(dut.cfg_cpl.valid)
        ctx.set(dut.cfg_cpl.ready, 0)
        status, value = model.config(False, rid, reg, be, data is not None, data or 0)
        assert status == "SC" and payload.data == value, (hex(rid), reg)
        return payload.data

    async def urd(ctx, pf, vf):
        ctx.set(dut.urd, {"valid": 1, "pf": pf, "vf": vf})
        await ctx.tick()
        ctx.set(dut.urd.valid, 0)
        if pf < len(rids):
            model.unsupported_request(pf, vf)

    async def bits(ctx):
        return [await cfg(ctx, r, DEVCTL_DEVSTA) & URD for r in rids]

    async def tb(ctx):
        await ctx.tick().repeat(40)
        none = [0] * len(rids)
        assert await bits(ctx) == none
        if len(rids) == 1:
            await urd(ctx, 1, 0)                             # no PF 1: nothing
            assert await bits(ctx) == none
        for k in range(len(rids)):
            await urd(ctx, k, 1)                             # a VF: nothing (RO 0 for now)
            assert await bits(ctx) == none
            await urd(ctx, k, 0)
            assert await bits(ctx) == [URD if i == k else 0 for i in range(len(rids))]
            await cfg(ctx, rids[k], DEVCTL_DEVSTA, URD, be=0b0100)
            assert await bits(ctx) == none

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()

    wrapper = SriovTlpEndpoint(params)

    async def body(ctx, b, h):
        await h.cfg(ctx, rids[0], 1, 0x0006)
        got = await b.request(ctx, mem_read(HOST, 1, 0xC000_0000, 4))
        assert got.status == CplStatus.UR and got.completer_id == rids[0]
        h.model.unsupported_request(0, 0)
        for r, want in zip(rids, [URD] + [0] * (len(rids) - 1), strict=True):
            got = await h.cfg(ctx, r, DEVCTL_DEVSTA)
            assert int.from_bytes(got.data, "little") & URD == want

    run(wrapper, body)


# -- 5. Transmit ------------------------------------------------------------------------------

async def _offer(ctx, b, stream, tlp, func):
    await b.send(ctx, tlp, stream=stream, func=func)


def test_tx_stamping_and_bme(igb):
    """User completions get their function's Completer ID, DMA requests its Requester ID (PF:
    01:00.0; VF n: 0x0180 + 2(n-1)); DMA from a function without Bus Master Enable (PF Command,
    the VF's own bit, a VF past NumVFs) is refused and reported, per function."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        d = b.dut
        await h.bring_up(ctx, vfs=4, vf_bme=(2,))
        n0 = len(b.tx)
        rd = mem_read(HOST, 0x40, VF_BAR0_BASE, 4)
        user_cpl = completion(rd, 0xDEAD, CplStatus.SC, bytes([1, 2, 3, 4]))
        await _offer(ctx, b, d.cpl, user_cpl, (0, 3))
        await _offer(ctx, b, d.cpl, user_cpl, (0, 0))
        wr = mem_write(0xBEEF, 0x41, 0x2_0000_0000, bytes(range(24)))
        dma_rd = mem_read(0xBEEF, 0x42, 0x2_0000_1000, 64)
        await _offer(ctx, b, d.dma_wr, wr, (0, 0))
        await _offer(ctx, b, d.dma_wr, wr, (0, 2))
        await _offer(ctx, b, d.dma_rd, dma_rd, (0, 2))
        await b.wait_tx(ctx, n0 + 5)
        got = [t for _, t in b.tx[n0:]]
        assert got == [user_cpl.replace(completer_id=VF_RID[3]),
                       user_cpl.replace(completer_id=0x0100),
                       wr.replace(requester_id=0x0100),
                       wr.replace(requester_id=VF_RID[2]),
                       dma_rd.replace(requester_id=VF_RID[2])]
        # Refused: VF 1 (BME 0), VF 5 (past NumVFs), PF 1 (no such PF); then the PF once
        # its BME is cleared.
        await _offer(ctx, b, d.dma_wr, wr, (0, 1))
        await _offer(ctx, b, d.dma_rd, dma_rd, (0, 5))
        await _offer(ctx, b, d.dma_wr, wr, (1, 0))
        await h.cfg(ctx, PF, 1, 0x0002)
        await _offer(ctx, b, d.dma_rd, dma_rd, (0, 0))
        await _offer(ctx, b, d.dma_wr, wr, (0, 2))          # VF 2 keeps its own BME
        await b.wait_tx(ctx, n0 + 7)
        await b.settle(ctx)
        assert b.tx[-1][1] == wr.replace(requester_id=VF_RID[2])
        assert len(b.tx) == n0 + 7
        assert b.events_of("dma_refused") == [(1, 0, 1), (0, 0, 5), (1, 1, 0), (0, 0, 0)]

    run(dut, body)


def test_msix_message_out(igb):
    """An MSI-X vector of VF 1 programmed through MWr TLPs goes out as an MWr TLP: 3 DW header
    for an address below 4 GiB, Requester ID 01:10.0, Length 1, First DW BE 1111b, the data."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        d = b.dut
        await h.bring_up(ctx, vfs=2, vf_bme=(1,))
        base = VF_BAR3_BASE
        for off, value in ((0x10, 0xFEE0_0000), (0x14, 0), (0x18, 0x4321), (0x1C, 0)):
            await b.send(ctx, mem_write(HOST, 1, base + off, value.to_bytes(4, "little")))
        await h.cfg(ctx, VF_RID[1], 0x7C // 4, 0x8000_0000, be=0xC)     # MSI-X Enable
        n = len(b.tx)
        ctx.set(d.irq.payload, {"function": 1, "vector": 1})
        ctx.set(d.irq.valid, 1)
        await ctx.tick().until(d.irq.ready)
        ctx.set(d.irq.valid, 0)
        await b.wait_tx(ctx, n + 1)
        got = b.tx[n][1]
        assert got == Tlp(TlpType.MWR32, requester_id=0x0180, address=0xFEE0_0000, length=1,
                          first_be=0xF, data=(0x4321).to_bytes(4, "little"))
        assert got.header_dwords()[0] == 0x4000_0001

    run(dut, body)


def test_posted_not_blocked_by_nonposted(igb):
    """With tx_np_ok low a DMA read waits; DMA writes, user completions and config completions
    queued after it go out; the read goes once tx_np_ok rises."""
    dut = SriovTlpEndpoint(igb)

    async def body(ctx, b, h):
        d = b.dut
        await h.bring_up(ctx, vfs=1)
        ctx.set(d.tx_np_ok, 0)
        dma_rd = mem_read(0, 1, 0x2_0000_0000, 8)
        ctx.set(d.dma_rd.payload, {**dma_rd.beats(64)[0], "func": {"pf": 0, "vf": 0}})
        ctx.set(d.dma_rd.valid, 1)
        n = len(b.tx)
        wr = mem_write(0, 2, 0x2_0000_0000, bytes(8))
        await _offer(ctx, b, d.dma_wr, wr, (0, 0))
        cpl = completion(mem_read(HOST, 3, PF_BAR0, 4), 0, CplStatus.SC, bytes(4))
        await _offer(ctx, b, d.cpl, cpl, (0, 0))
        await b.send(ctx, cfg_read(HOST, 4, PF, 0))
        await b.wait_tx(ctx, n + 3)
        await b.settle(ctx, 50)
        assert len(b.tx) == n + 3 and all(t.type != TlpType.MRD64 for _, t in b.tx)
        ctx.set(d.tx_np_ok, 1)
        await ctx.tick().until(d.dma_rd.ready)
        ctx.set(d.dma_rd.valid, 0)
        await b.wait_tx(ctx, n + 4)
        assert b.tx[-1][1] == dma_rd.replace(requester_id=0x0100)

    run(dut, body)


def test_arbiter_grant_register(igb):
    """The transmit arbiter decides its grant a cycle ahead (docs/tlp.md §4): a DMA read granted
    while the output register is full does not go out when tx_np_ok falls in the cycle the
    register frees; TLPs of different sources waiting behind a full output register leave back
    to back, in round-robin order after the source whose TLP just ended."""
    dut = SriovTlpEndpoint(igb)

    def offer(ctx, pairs):
        """Offer one-beat TLPs on several user streams at once."""
        for stream_, tlp, func in pairs:
            (beat,) = tlp.beats(64)
            ctx.set(stream_.payload, {**beat, "func": {"pf": func[0], "vf": func[1]}})
            ctx.set(stream_.valid, 1)
        return [stream_ for stream_, _t, _f in pairs]

    async def taken(ctx, left):
        """Drop each stream's valid after its beat was taken; return when all were."""
        for _ in range(MAX_CYCLES):
            if not left:
                return
            readies = await ctx.tick().sample(*(st.ready for st in left))
            for st, r in zip(list(left), readies[2:], strict=True):
                if r:
                    ctx.set(st.valid, 0)
                    left.remove(st)
        raise AssertionError("user TLPs not taken")

    async def body(ctx, b, h):
        d = b.dut
        await h.bring_up(ctx, vfs=1)
        await b.settle(ctx)
        # (1) tx_np_ok falls while the DMA read is granted behind a full output register
        b.tx_ready = 0.0
        n = len(b.tx)
        wr = mem_write(0, 1, 0x2_0000_0000, bytes(8))
        await taken(ctx, offer(ctx, [(d.dma_wr, wr, (0, 0))]))   # into the output register
        rd = mem_read(0, 2, 0x2_0000_0000, 8)
        ctx.set(d.dma_rd.payload, {**rd.beats(64)[0], "func": {"pf": 0, "vf": 0}})
        ctx.set(d.dma_rd.valid, 1)
        await ctx.tick().repeat(20)                 # looked up, offered, granted
        ctx.set(d.tx_np_ok, 0)                      # falls as tx.ready rises
        ctx.set(d.tx.ready, 1)
        b.tx_ready = 1.0
        await ctx.tick().repeat(30)
        assert [t for _, t in b.tx[n:]] == [wr.replace(requester_id=0x0100)]
        ctx.set(d.tx_np_ok, 1)
        await ctx.tick().until(d.dma_rd.ready)
        ctx.set(d.dma_rd.valid, 0)
        await b.wait_tx(ctx, n + 2)
        assert b.tx[-1][1] == rd.replace(requester_id=0x0100)
        await b.settle(ctx)
        # (2) a config completion in the output register (the last grant: config), a user
        # completion and a DMA write waiting: they leave in that order, one per edge
        b.tx_ready = 0.0
        n = len(b.tx)
        await b.send(ctx, cfg_read(HOST, 3, PF, 0))
        await ctx.tick().repeat(20)
        user_cpl = completion(mem_read(HOST, 4, PF_BAR0, 4), 0, CplStatus.SC, bytes(4))
        wr2 = mem_write(0, 5, 0x2_0000_0040, bytes(8))
        left = offer(ctx, [(d.cpl, user_cpl, (0, 0)), (d.dma_wr, wr2, (0, 0))])
        await ctx.tick().repeat(20)                 # both looked up, offered
        b.tx_ready = 1.0
        await taken(ctx, left)
        await b.wait_tx(ctx, n + 3)
        assert [t.type for _, t in b.tx[n:]] == [TlpType.CPLD, TlpType.CPLD, TlpType.MWR64]
        assert b.tx[n + 1][1] == user_cpl.replace(completer_id=0x0100)
        first = b.tx_sop_cycles[-3]
        assert b.tx_sop_cycles[-3:] == [first, first + 1, first + 2]

    run(dut, body)


# -- Random mixes under stalls ------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_mix_with_stalls(igb, seed):
    """Random config reads, memory reads/writes (claimed and not), user completions and DMA
    writes and reads from several functions, with tx, req and rx stalling at random: every
    TLP arrives exactly once; config completions in request order, each source's TLPs in order,
    requests on req in rx order."""
    dut = SriovTlpEndpoint(igb)
    kw = {"seed": seed, "tx_ready": 0.6, "req_ready": 0.5, "rx_gap": 0.3}

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=4, vf_bme=(1, 2, 3, 4))
        rng = random.Random(seed)
        start_tx = len(b.tx)
        state["up"] = True
        expect_rx_cpl, expect_req = [], []
        for i in range(30):
            kind = rng.choice(["cfg", "mrd", "mwr", "ur"])
            tag = i + 1
            if kind == "cfg":
                n = rng.randint(1, 4)
                t = cfg_read(HOST, tag, VF_RID[n], rng.choice([0, 1, 2]))
                status, value = h.model.config(False, VF_RID[n], t.register, 0xF, False, 0)
                expect_rx_cpl.append(completion(t, VF_RID[n], CplStatus.SC, value))
            elif kind == "ur":
                t = mem_read(HOST, tag, 0x4000_0000 + 8 * i, 4)
                expect_rx_cpl.append(completion(t, 0x0100, CplStatus.UR))
            else:
                n = rng.randint(1, 4)
                addr = VF_BAR0_BASE + (n - 1) * VF_APERTURE + 8 * rng.randint(0, 100)
                if kind == "mrd":
                    t = mem_read(HOST, tag, addr, 4 * rng.randint(1, 8))
                else:
                    t = mem_write(HOST, tag, addr, bytes(rng.randrange(256)
                                                          for _ in range(4 * rng.randint(1, 9))))
                expect_req.append((t, (0, n)))
            await b.send(ctx, t)
        # The user's streams, offered concurrently by their own testbenches below.
        await b.wait_tx(ctx, start_tx + len(expect_rx_cpl) + 3 * 8)
        await b.settle(ctx, 40)
        got = [t for _, t in b.tx[start_tx:]]
        assert len(got) == len(expect_rx_cpl) + 24
        # Config completions in request order; receive-side completions (UR) in their order;
        # the two may interleave (completions of different requests may pass, §2.4.1).
        mine = [t for t in got if t.requester_id == HOST]
        assert sorted(map(str, mine)) == sorted(map(str, expect_rx_cpl))
        for kind in (TlpType.CPLD, TlpType.CPL):
            assert ([t for t in mine if t.type == kind]
                    == [t for t in expect_rx_cpl if t.type == kind])
        assert [(r[1], r[2]) for r in b.req] == expect_req

    # The user's streams: 8 TLPs each, from random functions, offered with gaps.
    def user_tb(stream_name, seed_):
        async def tb(ctx):
            rng = random.Random(seed_)
            while not state["up"]:
                await ctx.tick()
            s = getattr(dut, stream_name)
            for k in range(8):
                n = rng.randint(0, 4)
                if stream_name == "cpl":
                    t = completion(mem_read(0x0ABC, k, 0x1000, 4 * rng.randint(1, 12)), 0,
                                   CplStatus.SC, bytes(4 * rng.randint(1, 12)))
                    t = t.replace(byte_count=len(t.data), lower_address=0)
                elif stream_name == "dma_wr":
                    t = mem_write(0, k, 0x3_0000_0000 + 64 * k, bytes(4 * rng.randint(1, 10)))
                else:
                    t = mem_read(0, k, 0x3_0000_0000 + 64 * k, 4 * rng.randint(1, 10))
                expected_user[stream_name].append((t, n))
                for beat in t.beats(64):
                    while rng.random() < 0.3:
                        ctx.set(s.valid, 0)
                        await ctx.tick()
                    ctx.set(s.payload, {**beat, "func": {"pf": 0, "vf": n}})
                    ctx.set(s.valid, 1)
                    await ctx.tick().until(s.ready)
                ctx.set(s.valid, 0)
        return tb

    expected_user = {"cpl": [], "dma_wr": [], "dma_rd": []}
    state = {"up": False}
    bench = Bench(dut, **kw)
    host = Host(bench, EndpointModel(dut.params))

    async def main(ctx):
        await ctx.tick().repeat(40)
        await body(ctx, bench, host)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(main)
    for bg in bench.background():
        sim.add_testbench(bg, background=True)
    for i, name in enumerate(expected_user):
        sim.add_testbench(user_tb(name, seed * 10 + i), background=True)
    sim.run()
    rid = {0: 0x0100, **VF_RID}
    got = [t for _, t in bench.tx]
    want_cpl = [t.replace(completer_id=rid[n]) for t, n in expected_user["cpl"]]
    want_wr = [t.replace(requester_id=rid[n]) for t, n in expected_user["dma_wr"]]
    want_rd = [t.replace(requester_id=rid[n]) for t, n in expected_user["dma_rd"]]
    assert [t for t in got if t.type == TlpType.CPLD and t.requester_id == 0x0ABC] == want_cpl
    assert [t for t in got if t.type == TlpType.MWR64] == want_wr
    assert [t for t in got if t.type == TlpType.MRD64] == want_rd


# -- 6. Routing IDs -----------------------------------------------------------------------------

def test_routing_id_lookup(igb):
    """RoutingIdLookup against the spec's formula (SR-IOV §3.3.10/11: PF RID + First VF Offset +
    (n-1) * VF Stride, mod 2^16), one query per cycle, answers 3 edges later."""
    quad = load_params(EXAMPLES / "multi-pf" / "quad-pf.toml")
    dut = RoutingIdLookup(quad)
    fns = [pf.pf_rid & 0xFF for pf in quad.pfs]
    rng = random.Random(5)
    queries = []
    for _ in range(200):
        k = rng.randrange(len(fns) + 1)          # one PF index past the last: 0
        queries.append((rng.randrange(256), [rng.randrange(1 << 16) for _ in fns],
                        [rng.randrange(1 << 16) for _ in fns], k, rng.choice(
                            [0, 1, rng.randrange(1 << 16)])))

    def want(bus, offs, strides, k, n):
        if k >= len(fns):
            return 0
        base = bus << 8 | fns[k]
        return base if n == 0 else (base + offs[k] + (n - 1) * strides[k]) % (1 << 16)

    def drive(ctx, bus, offs, strides, k, n):
        ctx.set(dut.bus, bus)
        for j in range(len(fns)):
            ctx.set(dut.first_vf_offset[j], offs[j])
            ctx.set(dut.vf_stride[j], strides[j])
        ctx.set(dut.query, {"pf": k, "vf": n})

    _check_lookup(dut, queries, drive, want)


def _check_lookup(dut, queries, drive, want):
    """One query per cycle (``drive(ctx, *query)``), each answer taken
    ``ROUTING_ID_LATENCY`` edges later and compared with ``want(*query)``."""
    async def tb(ctx):
        got = []
        for i in range(len(queries) + ROUTING_ID_LATENCY):
            if i < len(queries):
                drive(ctx, *queries[i])
            await ctx.tick()
            if i >= ROUTING_ID_LATENCY - 1:
                got.append(ctx.get(dut.rid))
        for q, g in zip(queries, got, strict=False):
            assert g == want(*q), q

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("config, strides", [
    ("multi-pf/quad-pf.toml", None), ("igb-82576.toml", None),
    ("igb-82576.toml", (1, 4)), ("igb-82576.toml", (3, 1)), ("igb-82576.toml", (5, 7))],
    ids=["quad", "igb", "one-four", "three-one", "five-seven"])
def test_routing_id_lookup_fixed_strides(config, strides):
    """The wrapper's lookups (fixed_strides: PF k's VF Stride the configured one for the ARI
    input) against the spec's formula, one query per cycle, answers 3 edges later; strides
    (non-ARI, ARI) that are 1, powers of two and odd, one or two distinct ones."""
    params = load_params(EXAMPLES / config)
    if strides is not None:
        pf = dataclasses.replace(params.pfs[0], vf_stride_non_ari=strides[0],
                                 vf_stride_ari=strides[1])
        params = dataclasses.replace(params, pfs=[pf])
    strides = [(pf.vf_stride_non_ari, pf.vf_stride_ari) for pf in params.pfs]
    dut = RoutingIdLookup(params, fixed_strides=True)
    fns = [pf.pf_rid & 0xFF for pf in params.pfs]
    rng = random.Random(7)
    queries = [(rng.randrange(256), [rng.randrange(1 << 16) for _ in fns], rng.randrange(2),
                rng.randrange(len(fns) + 1), rng.choice([0, 1, 2, rng.randrange(1 << 16)]))
               for _ in range(200)]

    def want(bus, offs, ari, k, n):
        if k >= len(fns):
            return 0
        base = bus << 8 | fns[k]
        stride = strides[k][ari]
        return base if n == 0 else (base + offs[k] + (n - 1) * stride) % (1 << 16)

    def drive(ctx, bus, offs, ari, k, n):
        ctx.set(dut.bus, bus)
        ctx.set(dut.ari, ari)
        for j in range(len(fns)):
            ctx.set(dut.first_vf_offset[j], offs[j])
        ctx.set(dut.query, {"pf": k, "vf": n})

    _check_lookup(dut, queries, drive, want)


# -- Wider data paths, several PFs ---------------------------------------------------------------

@pytest.mark.parametrize("width", [128, 256])
def test_wide_data(igb, width):
    """At 128 and 256 bits: config completions, a 13-DW MWr forwarded unchanged, an MSI-X table
    read, a multi-beat user completion stamped."""
    dut = SriovTlpEndpoint(igb, data_width=width)

    async def body(ctx, b, h):
        await h.bring_up(ctx, vfs=2)
        wr = mem_write(HOST, 1, VF_BAR0_BASE + VF_APERTURE + 4, bytes(range(52)))
        await b.send(ctx, wr)
        await b.settle(ctx)
        assert b.req[-1][1:3] == (wr, (0, 2))
        rd = mem_read(HOST, 2, PF_BAR3, 8)
        got = await b.request(ctx, rd)
        assert got.type == TlpType.CPLD and got.length == 2
        cpl = completion(mem_read(HOST, 3, PF_BAR0, 40), 0, CplStatus.SC, bytes(range(40)))
        n = len(b.tx)
        await _offer(ctx, b, b.dut.cpl, cpl, (0, 1))
        await b.wait_tx(ctx, n + 1)
        assert b.tx[-1][1] == cpl.replace(completer_id=VF_RID[1])

    run(dut, body)


def test_two_pfs():
    """igb-82576-dual: config to PF 1 (its function number), DMA stamped with PF 1's VF 1's
    Routing ID (from the model)."""
    params = load_params(EXAMPLES / "multi-pf" / "igb-82576-dual.toml")
    dut = SriovTlpEndpoint(params)
    pf1 = params.pfs[1].pf_rid

    async def body(ctx, b, h):
        await h.cfg(ctx, pf1, 0)
        await h.cfg(ctx, pf1, 1, 0x0006)
        assert b.tx[-1][1].completer_id == pf1
        n = len(b.tx)
        wr = mem_write(0, 1, 0x2_0000_0000, bytes(8))
        await _offer(ctx, b, b.dut.dma_wr, wr, (1, 0))
        await b.wait_tx(ctx, n + 1)
        assert b.tx[-1][1] == wr.replace(requester_id=h.model.pf(1).pf_rid)

    run(dut, body)


# -- Verilog -----------------------------------------------------------------------------------

@pytest.mark.parametrize("config,width", [("igb-82576.toml", 64),
                                          ("multi-pf/quad-pf.toml", 256)])
def test_verilog_lints_clean(verilator, tmp_path, config, width):
    """The wrapper's Verilog passes verilator --lint-only -Wall with the project's waivers only
    (sriov_ep.tools.build.LINT_WAIVERS, none of them about the design)."""
    import os
    import subprocess

    from amaranth.back import verilog

    from sriov_ep.tools.build import lint_args

    cmd, env = verilator
    top = tmp_path / "tlp_top.v"
    top.write_text(verilog.convert(SriovTlpEndpoint(load_params(EXAMPLES / config),
                                                    data_width=width),
                                   name="tlp_top", emit_src=False))
    proc = subprocess.run([*cmd, *lint_args(), str(top)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
