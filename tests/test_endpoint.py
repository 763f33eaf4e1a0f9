# amaranth: UnusedElaboratable=no
"""Tests of the whole endpoint RTL (``sriov_ep.endpoint.SriovEndpoint``).

The Linux sequences of ``../shared/reference/sriov-spec.md`` §4 run end to end through
``LinuxHost`` -> ``RootPort`` -> ``Scoreboard``, so every completion is also compared with the
independent reference model (``sriov_tb.model.EndpointModel``), and every completion's latency is
checked. On top of that the tests assert literal values taken from sriov-spec.md (§2 routing, §6
lspci, §7 VF rules, §8 corner cases and the igb worked example), ``docs/endpoint-behaviour.md``
and the comments of ``examples/*.toml``; none is computed with the design's or the model's own
formulas.

The Linux sequences on many-vfs (4000 VFs: Linux's enumeration alone is 12000 requests) run the
exported Verilog of the same design on the native backend (``NativeBench``,
docs/native-backend.md) with the same checks; what they would read from ports other than the
config channels is read from the configuration space there, and the ports themselves are
checked with 4000 VFs in Amaranth's simulator by a short direct programming.

Routing corner cases 8 and 21 of sriov-spec.md §8 are in ``tests/test_routing.py``.
"""

import random
from collections import namedtuple
from pathlib import Path

import pytest

from sriov_ep.endpoint import (
    CONFIG_LATENCY,
    VF_BME_LATENCY,
    CompletionStatus,
    SriovEndpoint,
    config_latency,
)
from sriov_ep.params import Bar, EndpointParams, ParamError, load_params
from sriov_tb.host import (
    Completion,
    EndpointDriver,
    HostError,
    LinuxHost,
    ModelEndpointPort,
    RootPort,
    Scoreboard,
    status_name,
)
from sriov_tb.model import EndpointModel
from sriov_tb.native import NativeConfigDriver
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_NAMES = ["igb-82576", "many-vfs", "nvme"]

TYPE0, TYPE1 = 0, 1
KiB = 1 << 10

# Extended capability IDs (sriov-spec.md §1, §2).
ARI_ID, SRIOV_ID = 0x000E, 0x0010

# igb-82576.toml: PF 01:00.0, ARI at 0x100, SR-IOV at 0x160 (so Control 0x168, NumVFs 0x170,
# FDL 0x172, First VF Offset 0x174, VF BAR0 0x184 ... VF BAR5 0x198).
IGB_PF = 0x0100
IGB_SRIOV = 0x160
IGB_CTRL, IGB_NUMVFS, IGB_FDL, IGB_OFFSET = 0x168, 0x170, 0x172, 0x174
IGB_VF_ARI = [0x0180 + 2 * i for i in range(8)]       # 01:10.0, 01:10.2, ..., 01:11.6
IGB_VF_NON_ARI = [0x0280 + 2 * i for i in range(8)]   # 02:10.0, 02:10.2, ..., 02:11.6

# PCI Express Device Control at 0x48: reset value with Relaxed Ordering (bit 4) and No Snoop
# (bit 11) set and Max Read Request Size 2 (endpoint-behaviour.md §3); a VF's reads 0x0810.
PF_DEVCTL_RESET = 0x2810
VF_DEVCTL_RESET = 0x0810
INITIATE_FLR = 0x8000


def example(name):
    return load_params(EXAMPLES / f"{name}.toml")


def igb():
    return example("igb-82576")


def be_for(offset, size):
    return ((1 << size) - 1) << (offset % 4)


# -- Minimal in-test drivers ---------------------------------------------------------------------


class LatencyCheck:
    """Wrap an endpoint port: every completion must come ``latency`` cycles (the endpoint's
    ``config_latency``; literal values are asserted by the latency tests) after the request was
    accepted."""

    def __init__(self, port, latency):
        self.port  = port
        self.latency = latency
        self.count = 0

    async def config(self, type1, rid, reg, be, write, data):
        cpl = await self.port.config(type1, rid, reg, be, write, data)
        assert cpl.cycles == self.latency, (
            f"completion of {'CfgWr' if write else 'CfgRd'}{type1} {rid:#06x} reg {reg:#x} took "
            f"{cpl.cycles} cycles, not {self.latency}")
        self.count += 1
        return cpl


Sample = namedtuple("Sample", "cycle flr_valid flr_vf vfs_reset busy pf_flr req_ready")


class RawPort:
    """A minimal driver of ``cfg_req``/``cfg_cpl`` kept in this test file (not general machinery):
    it records the event outputs at every clock edge (``samples``), holds ``cfg_cpl.ready`` low
    for ``hold()`` cycles once a completion is valid, and checks on the way that the completion
    stays valid and unchanged until it is taken and that ``cfg_req.ready`` stays low meanwhile.

    ``requests`` gets one record per request: the edge that accepted it, the first edge at which
    its completion was valid, the edge that took it, and the edges it waited for ``ready``.
    """

    def __init__(self, ctx, dut, *, hold=None):
        self.ctx      = ctx
        self.dut      = dut
        self.hold     = hold or (lambda: 0)
        self.cycle    = 0
        self.samples  = []
        self.requests = []
        self.last_status = None
        self.retry_rrs = True

    async def tick(self, *extra):
        d, pf0 = self.dut, self.dut.pfs[0]
        got = await self.ctx.tick().sample(d.vf_flr.valid, d.vf_flr.vf, pf0.vfs_reset,
                                           pf0.vf_reset_busy, pf0.flr, d.cfg_req.ready, *extra)
        self.cycle += 1
        self.samples.append(Sample(self.cycle, *got[2:8]))
        return got[8:]

    async def idle(self, cycles):
        for _ in range(cycles):
            await self.tick()

    async def config(self, type1, rid, reg, be, write, data):
        """One request; a Request Retry Status completion is reissued (``retry_rrs``), as a Root
        Complex does, and each attempt gets its own record."""
        while True:
            status, value, cycles = await self._attempt(type1, rid, reg, be, write, data)
            if status != CompletionStatus.RRS or not self.retry_rrs:
                return Completion(status_name(status), value, cycles)

    async def _attempt(self, type1, rid, reg, be, write, data):
        ctx, d = self.ctx, self.dut
        ctx.set(d.cfg_req.payload, {"type1": type1, "rid": rid, "reg": reg, "be": be,
                                    "write": write, "data": data})
        ctx.set(d.cfg_req.valid, 1)
        offered = self.cycle
        while True:
            await self.tick()
            if self.samples[-1].req_ready:
                break
            assert self.cycle - offered < 1_000_000, "request never accepted"
        accepted = self.cycle
        ctx.set(d.cfg_req.valid, 0)
        hold = self.hold()
        ctx.set(d.cfg_cpl.ready, hold == 0)
        first = held = None
        while True:
            valid, payload = await self.tick(d.cfg_cpl.valid, d.cfg_cpl.payload)
            assert not self.samples[-1].req_ready, \
                f"cycle {self.cycle}: cfg_req.ready high while a request is in flight"
            if first is None:
                if not valid:
                    assert self.cycle - accepted < 1000, "no completion"
                    continue
                first, held = self.cycle, (payload.status, payload.data)
            else:
                assert valid, f"cycle {self.cycle}: completion valid dropped before it was taken"
                assert (payload.status, payload.data) == held, \
                    f"cycle {self.cycle}: completion changed while cfg_cpl.ready was low"
            if hold == 0:
                break
            hold -= 1
            ctx.set(d.cfg_cpl.ready, hold == 0)
        ctx.set(d.cfg_cpl.ready, 0)
        status, value = held
        self.last_status = status
        self.requests.append({"offered": offered, "accepted": accepted, "first_valid": first,
                              "taken": self.cycle, "waited": accepted - offered - 1,
                              "rid": rid, "reg": reg, "write": write,
                              "status": status_name(status)})
        return status, value, first - accepted

    def pulses(self, field):
        """Runs of consecutive samples where ``field`` is 1, as (first cycle, length, sample)."""
        runs, start = [], None
        for s in self.samples:
            if getattr(s, field) and start is None:
                start = s
            elif not getattr(s, field) and start is not None:
                runs.append((start.cycle, s.cycle - start.cycle, start))
                start = None
        if start is not None:
            runs.append((start.cycle, self.samples[-1].cycle - start.cycle + 1, start))
        return runs


class Bench:
    """One SriovEndpoint behind a LatencyCheck, a Scoreboard (with a fresh EndpointModel), a
    RootPort whose secondary bus is the PF's, and a LinuxHost."""

    def __init__(self, ctx, dut, params, *, ari=True, raw=False, hold=None):
        self.ctx    = ctx
        self.dut    = dut
        self.raw    = RawPort(ctx, dut, hold=hold) if raw else None
        self._connect(params, self.raw or EndpointDriver(ctx, dut), dut.config_latency, ari)

    def _connect(self, params, driver, latency, ari):
        self.params = params
        self.model  = EndpointModel(params)
        self.port   = LatencyCheck(driver, latency)
        self.board  = Scoreboard(self.port, ModelEndpointPort(self.model))
        self.root   = RootPort(self.board, secondary_bus=params.pf_rid >> 8)
        self.host   = LinuxHost(self.root, params.pf_rid, ari=ari)

    def get(self, signal):
        return self.ctx.get(signal)

    def space(self, rid):
        return self.root.function(rid)

    async def read(self, type1, rid, offset):
        """A dword config read at byte ``offset`` (dword-aligned): a Completion."""
        assert offset % 4 == 0
        return await self.board.config(type1, rid, offset // 4, 0xF, False, 0)

    async def write(self, type1, rid, offset, size, value):
        """A config write of ``size`` bytes at ``offset``: a Completion."""
        assert offset % size == 0
        return await self.board.config(type1, rid, offset // 4, be_for(offset, size), True,
                                       value << (8 * (offset % 4)))

    async def pf_read(self, offset):
        cpl = await self.read(TYPE0, self.params.pf_rid, offset)
        assert cpl.status == "SC"
        return cpl.data

    async def pf_write(self, offset, size, value):
        cpl = await self.write(TYPE0, self.params.pf_rid, offset, size, value)
        assert (cpl.status, cpl.data) == ("SC", 0)

    async def idle(self, cycles):
        if self.raw is not None:
            await self.raw.idle(cycles)
        else:
            await self.ctx.tick().repeat(cycles)

    def check_transcript(self):
        """Every access the root port made completed in the endpoint's config latency; the
        scoreboard compared every request the design saw."""
        assert all(t.cycles == self.port.latency for t in self.root.transcript)
        assert self.board.compared == self.port.count >= len(self.root.transcript)


def run(params, body, *, name, ari=True, raw=False, hold=None, waves_on_failure=True):
    dut = SriovEndpoint(params)

    def make_testbench():
        async def testbench(ctx):
            bench = Bench(ctx, dut, params, ari=ari, raw=raw, hold=hold)
            await body(bench)
            bench.check_transcript()
        return testbench

    simulate(dut, make_testbench, name=f"test_endpoint_{name}",
             waves_on_failure=waves_on_failure)


class NativeBench(Bench):
    """:class:`Bench` on the native backend (the exported Verilog of the same design under
    Verilator, docs/native-backend.md): the same latency check, scoreboard, root port and Linux
    host, over :class:`~sriov_tb.native.NativeConfigDriver`. Only the config channels are
    reached, so the facts a test learns from other ports (``get``) it must learn from config
    reads here."""

    def __init__(self, rtl, params, *, ari=True):
        self.rtl = rtl
        self.raw = None
        self._connect(params, NativeConfigDriver(rtl), config_latency(params), ari)

    def get(self, signal):
        raise TypeError("the native backend reaches the config channels only")

    async def idle(self, cycles):
        self.rtl.idle(cycles)


def run_native(native, params, body, *, ari=True):
    """``body(bench)`` on a :class:`NativeBench` of ``params``'s endpoint (``native``: the
    conftest fixture), then the transcript check of :func:`run`."""
    with native.model(params) as rtl:
        bench = NativeBench(rtl, params, ari=ari)
        native.complete(body(bench))
        bench.check_transcript()


# -- Linux sequences end to end -----------------------------------------------------------------


@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non_ari"])
def test_linux_igb_enumerate_enable_walk_disable_reenable(ari):
    """igb-82576 (8 VFs) through the whole Linux life cycle: enumerate (sriov_init), enable 4,
    walk every VF, disable, enable all 8, walk every VF, disable. With ARI the VFs are 01:10.0 ..
    01:11.6 (offset 0x80, stride 2); without, 02:10.0 .. 02:11.6 (offset 0x180): on bus 2, which
    the root port reaches with Type 1 requests."""
    params = igb()
    vfs = IGB_VF_ARI if ari else IGB_VF_NON_ARI
    offset = 0x80 if ari else 0x180

    async def body(b):
        host, dut = b.host, b.dut
        info = await host.enumerate()
        assert (info.vendor, info.device) == (0x8086, 0x10C9)
        assert info.caps == {0x10: 0x40, 0x01: 0x7c, 0x11: 0x84}     # PCIe, PM, MSI-X
        assert info.ext_caps == {ARI_ID: 0x100, SRIOV_ID: 0x160}
        # PF BARs 0, 1 (128 KiB) and 3 (16 KiB), 32-bit, from the 32-bit window at 0x8000_0000.
        assert info.bars == {0: (0x8000_0000, 128 * KiB), 1: (0x8002_0000, 128 * KiB),
                             3: (0x8004_0000, 16 * KiB)}
        s = host.sriov.info
        assert (s.total_vfs, s.vf_device, s.link, s.pgsz) == (8, 0x10CA, 0x00, 0x1)
        assert [(bar.index, bar.size, bar.is_64bit, bar.prefetchable) for bar in s.bars] == \
            [(0, 16 * KiB, True, True), (3, 16 * KiB, True, True)]
        # compute_max_vf_buses: NumVFs 8..1, offset and stride read back each time.
        assert s.offsets_seen == [(nr, offset, 2) for nr in range(8, 0, -1)]
        assert s.max_vf_buses == (0x01 if ari else 0x02)
        # VF BARs: 8 x 16 KiB each from the 64-bit window at 0x1_0000_0000.
        assert host.sriov.bar_addresses == {0: 0x1_0000_0000, 3: 0x1_0002_0000}
        assert b.get(dut.ari_capable_hierarchy) == ari
        pf0 = dut.pfs[0]
        assert (b.get(pf0.vf_enable), b.get(pf0.num_vfs), b.get(dut.bus)) == (0, 0, 0x01)
        assert b.get(dut.pfs[0].memory_space_enable) == 1
        assert b.get(dut.pfs[0].bus_master_enable) == 1

        rids = await host.enable(4)
        assert rids == vfs[:4]
        pf0 = dut.pfs[0]
        assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(pf0.num_vfs)) == (1, 1, 4)
        assert (b.get(dut.pfs[0].first_vf_offset), b.get(dut.pfs[0].vf_stride)) == (offset, 2)
        assert await b.pf_read(IGB_CTRL) == (0x19 if ari else 0x09)
        for rid in rids:
            vf = await host.walk_vf(rid)
            assert vf.caps == {0x10: 0x40, 0x11: 0x7c}     # PCIe, MSI-X
            assert vf.ext_caps == {ARI_ID: 0x100}
        walked = [t for t in b.root.transcript if t.step.startswith("walk")]
        assert len(walked) >= 4 * (16 + 15)
        assert all(t.status == "SC" for t in walked)
        assert {t.rid >> 8 for t in walked} == {0x01 if ari else 0x02}
        for rid in rids:
            assert (await b.read(TYPE1 if not ari else TYPE0, rid, 0x00)) == \
                Completion("SC", 0xFFFF_FFFF, 7)
        # VF 5 does not exist yet.
        assert (await b.read(TYPE0 if ari else TYPE1, vfs[4], 0x00)).status == "UR"
        if not ari:
            # Without ARI the VFs are on bus 2 only: a Type 0 request for 01:10.0 is the PF's
            # bus, devfn 0x80, which nothing claims.
            assert (await b.read(TYPE0, 0x0180, 0x00)).status == "UR"

        # Give the VFs some state, then disable: all VFs vanish.
        await b.space(rids[0]).write16(0x04, 0x0004)
        await b.space(rids[1]).write16(0x48, 0x0000)
        assert await b.space(rids[0]).read16(0x04) == 0x0004
        assert await b.space(rids[1]).read16(0x48) == 0x0000
        await host.disable()
        pf0 = dut.pfs[0]
        assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(pf0.num_vfs)) == (0, 0, 0)
        assert b.get(dut.ari_capable_hierarchy) == ari       # ARI bit kept by sriov_disable
        for rid in rids:
            assert (await b.read(TYPE0 if ari else TYPE1, rid, 0x00)).status == "UR"

        # Re-enable all 8: every VF at its reset state (case 24).
        rids = await host.enable(8)
        assert rids == vfs
        assert b.get(dut.pfs[0].num_vfs) == 8
        for rid in rids:
            await host.walk_vf(rid)
            assert await b.space(rid).read32(0x04) == 0x0011_0000
            assert await b.space(rid).read16(0x48) == VF_DEVCTL_RESET
        assert (await b.read(TYPE0 if ari else TYPE1, vfs[7] + 2, 0x00)).status == "UR"
        await host.disable()
        assert b.get(dut.pfs[0].vf_enable) == 0

    run(params, body, name=f"linux_igb_{ari}", ari=ari)


def many_vf_rid(n, ari):
    """many-vfs.toml, PF 81:00.0: ARI offset 1 stride 1 (VF n = 0x8100 + n); non-ARI offset
    0x100 stride 1 (VF n = 0x8200 + n - 1)."""
    return 0x8100 + n if ari else 0x8200 + n - 1


#: VFs to walk: first, last, and both sides of the bus boundaries (ARI: 255|256 is 81:ff.7 |
#: 82:00.0 and 511|512; non-ARI: 256|257 is 82:ff.7 | 83:00.0 and 512|513).
MANY_SAMPLE = [1, 2, 255, 256, 257, 511, 512, 513, 2048, 3999, 4000]


#: many-vfs.toml: SR-IOV at 0x140, so Control at 0x148 and NumVFs at 0x150.
MANY_CTRL, MANY_NUMVFS = 0x148, 0x150


@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non_ari"])
def test_linux_many_vfs_enable_all(native, ari):
    """many-vfs (4000 VFs over 16 buses): enumerate, enable all 4000 (Linux reads every VF's ID
    dword and capability list), walk a sample, disable; re-enable all and walk the sample
    again (a VF's state was cleared by the disable). On the native backend (the exported
    Verilog; the same latency check, scoreboard and Linux host as the Amaranth bench): some
    30000 config requests. VF Enable and NumVFs are read from the SR-IOV capability here; that
    the ports follow them with 4000 VFs is :func:`test_many_vfs_ports_follow_the_capability`'s
    (Amaranth)."""
    params = example("many-vfs")
    expected = [many_vf_rid(n, ari) for n in range(1, 4001)]
    last_bus = 0x90 if ari else 0x91

    async def body(b):
        host = b.host
        await host.enumerate()
        assert host.sriov.info.max_vf_buses == last_bus
        assert host.sriov.info.offsets_seen[0] == (4000, 1 if ari else 0x100, 1)
        for round_ in range(2):
            rids = await host.enable(4000)
            assert rids == expected
            assert (expected[0], expected[-1]) == ((0x8101, 0x90A0) if ari else (0x8200, 0x919F))
            # VF Enable, VF MSE (and ARI Capable Hierarchy); NumVFs 4000.
            assert (await b.pf_read(MANY_CTRL)) & 0xFFFF == (0x19 if ari else 0x09)
            assert (await b.pf_read(MANY_NUMVFS)) & 0xFFFF == 4000
            assert all(vf.caps == {0x10: 0x40} for vf in host.vfs)
            for n in MANY_SAMPLE:
                rid = many_vf_rid(n, ari)
                vf = await host.walk_vf(rid)
                assert vf.ext_caps == {ARI_ID: 0x100}
                assert await b.space(rid).read32(0x00) == 0xFFFF_FFFF
                assert await b.space(rid).read32(0x08) == 0x0200_0000   # class 02 00 00, rev 0
                assert await b.space(rid).read32(0x2C) == 0x0001_1234
            assert (await b.read(TYPE1, many_vf_rid(4001, ari), 0x00)).status == "UR"
            if round_ == 0:
                await b.space(many_vf_rid(4000, ari)).write16(0x04, 0x0004)
                assert await b.space(many_vf_rid(4000, ari)).read16(0x04) == 0x0004
            else:
                assert await b.space(many_vf_rid(4000, ari)).read16(0x04) == 0x0000
            await host.disable()
            assert (await b.pf_read(MANY_CTRL)) & 0x1 == 0
            for n in (1, 256, 4000):
                rid = many_vf_rid(n, ari)
                assert (await b.read(TYPE0 if rid >> 8 == 0x81 else TYPE1, rid, 0)).status \
                    == "UR"

    run_native(native, params, body, ari=ari)


def test_many_vfs_ports_follow_the_capability():
    """many-vfs in Amaranth's simulator, the SR-IOV capability programmed directly (no Linux
    enumeration, which is 12000 requests): the ports show what its registers hold with 4000
    VFs (NumVFs needs all 12 bits), in both hierarchies: ARI offset 1 / stride 1, non-ARI
    0x100 / 1 (many-vfs.toml); clearing VF Enable keeps NumVFs (case 24)."""
    params = example("many-vfs")
    pf = params.pf_rid

    async def body(b):
        dut, pf0 = b.dut, b.dut.pfs[0]
        await b.write(TYPE0, pf, 0x04, 2, 0x0006)           # Memory Space, Bus Master
        assert b.get(dut.bus) == 0x81
        for ari, (offset, stride) in ((True, (1, 1)), (False, (0x100, 1))):
            await b.pf_write(MANY_CTRL, 2, 0x10 if ari else 0x00)     # ARI while VFE is 0
            await b.pf_write(MANY_NUMVFS, 2, 4000)
            await b.pf_write(MANY_CTRL, 2, 0x19 if ari else 0x09)
            assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(pf0.num_vfs)) == (1, 1, 4000)
            assert (b.get(pf0.first_vf_offset), b.get(pf0.vf_stride)) == (offset, stride)
            assert b.get(dut.ari_capable_hierarchy) == ari
            vf4000 = many_vf_rid(4000, ari)
            assert await b.read(TYPE1, vf4000, 0x00) == Completion("SC", 0xFFFF_FFFF, 7)
            if ari:     # (once: each VF Enable 1 -> 0 clears 4000 VFs' state, 4000 cycles)
                await b.pf_write(MANY_CTRL, 2, 0x10)
                assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(pf0.num_vfs)) == \
                    (0, 0, 4000)
                assert (await b.read(TYPE1, vf4000, 0x00)).status == "UR"

    run(params, body, name="many_vfs_ports")


def test_linux_many_vfs_across_bus_boundaries(native):
    """many-vfs without ARI: enable 300 VFs, 82:00.0 .. 83:2b.3, every one reached by Type 1
    requests; walk both sides of the bus boundary (VF 256 = 82:ff.7, VF 257 = 83:00.0). On the
    native backend (Linux's enumeration alone is 12000 requests)."""
    params = example("many-vfs")

    async def body(b):
        rids = await b.host.enable(300)
        assert rids == [0x8200 + i for i in range(300)]
        for n in (1, 256, 257, 300):
            await b.host.walk_vf(many_vf_rid(n, False))
        assert (await b.read(TYPE1, 0x832C, 0x00)).status == "UR"      # VF 301
        assert (await b.read(TYPE0, 0x8101, 0x00)).status == "UR"      # ARI VF 1's place
        vf_accesses = [t for t in b.root.transcript if t.rid != 0x8100]
        assert vf_accesses and all(t.rid >> 8 in (0x82, 0x83) for t in vf_accesses)
        await b.host.disable()

    run_native(native, params, body, ari=False)


# -- Completions: SC vs UR, latency, backpressure ------------------------------------------------


def test_case09_enabled_vf_vendor_device_id_is_sc_all_ones():
    """§8 case 9 (and the igb worked example): a config read of dword 0 of enabled VF 01:10.0
    completes successfully with 0xFFFFFFFF (Vendor ID and Device ID 0xFFFF)."""
    async def body(b):
        await b.host.enable(4)
        for rid in IGB_VF_ARI[:4]:
            assert await b.read(TYPE0, rid, 0x00) == Completion("SC", 0xFFFF_FFFF, 7)
            assert b.raw.last_status == CompletionStatus.SC
            assert await b.space(rid).read16(0x00) == 0xFFFF
            assert await b.space(rid).read16(0x02) == 0xFFFF

    run(igb(), body, name="case09", raw=True)


def test_enabled_vf_dword0_told_apart_from_absent_vf_by_status():
    """Software sees 0xFFFFFFFF both from an enabled VF's dword 0 and from a missing function;
    only the completion status tells them apart: SC for the VF, UR (data 0) for 01:11.0
    (would-be VF 5), for VFs while VF Enable is 0, and for an odd devfn between two VFs."""
    async def body(b):
        await b.host.enumerate()
        assert await b.read(TYPE0, 0x0180, 0x00) == Completion("UR", 0, 7)   # VFE = 0
        await b.host.enable(4)
        present = await b.read(TYPE0, 0x0180, 0x00)
        assert (present.status, present.data) == ("SC", 0xFFFF_FFFF)
        assert b.raw.last_status == CompletionStatus.SC
        for rid in (0x0188, 0x0181, 0x018E):
            absent = await b.read(TYPE0, rid, 0x00)
            assert (absent.status, absent.data) == ("UR", 0)
            assert b.raw.last_status == CompletionStatus.UR
        # Through the root port both read as all ones; the transcript keeps the status.
        s_present = await b.space(0x0180).status_of_read(0x00, 4)
        s_absent = await b.space(0x0188).status_of_read(0x00, 4)
        assert s_present == ("SC", 0xFFFF_FFFF)
        assert s_absent == ("UR", 0xFFFF_FFFF)
        assert [(t.status, t.value) for t in b.root.transcript[-2:]] == \
            [("SC", 0xFFFF_FFFF), ("UR", 0xFFFF_FFFF)]
        # A write to an absent VF completes UR and changes nothing.
        assert await b.write(TYPE0, 0x0188, 0x04, 2, 0x0004) == Completion("UR", 0, 7)

    run(igb(), body, name="sc_vs_ur", raw=True)


def test_completion_latency_is_config_latency():
    """CONFIG_LATENCY is documented as 7 cycles, and every completion of a Linux enumerate,
    enable and walk (PF, VFs, UR) arrives exactly 7 cycles after the request was accepted."""
    assert CONFIG_LATENCY == 7

    async def body(b):
        await b.host.enable(8)
        for rid in IGB_VF_ARI:
            await b.host.walk_vf(rid)
        await b.read(TYPE0, 0x0190, 0x00)      # UR
        await b.read(TYPE1, 0x0280, 0x00)      # UR
        cycles = [r["first_valid"] - r["accepted"] for r in b.raw.requests]
        assert len(cycles) > 400 and set(cycles) == {7}

    run(igb(), body, name="latency", raw=True)


def test_completion_latency_with_a_stride_that_needs_a_divider():
    """VF Stride 3 (ARI) and 5 (non-ARI): the Routing-ID decoder multiplies by an inverse in a
    stage of its own, so every completion takes 8 cycles; the VFs are where the strides put them
    (PF 03:00.4: ARI VF n at 0x0306 + 3(n-1), so VF 84 at 0x03FF and VF 85 on bus 4)."""
    params = EndpointParams(pf_rid=0x0304, total_vfs=200,
                            first_vf_offset_ari=2, vf_stride_ari=3,
                            first_vf_offset_non_ari=0x17C, vf_stride_non_ari=5)
    assert (config_latency(params), config_latency(igb())) == (8, 7)

    async def body(b):
        await b.host.enable(100)
        for rid in (0x0306, 0x0309, 0x03FF, 0x0402, 0x042F):     # VFs 1, 2, 84, 85, 100
            await b.host.walk_vf(rid)
        assert (await b.read(TYPE0, 0x0307, 0x00)).status == "UR"      # between VFs 1 and 2
        assert (await b.read(TYPE1, 0x0432, 0x00)).status == "UR"      # VF 101: above NumVFs
        cycles = [r["first_valid"] - r["accepted"] for r in b.raw.requests]
        assert len(cycles) > 100 and set(cycles) == {8} and b.dut.config_latency == 8

    run(params, body, name="latency_divider", raw=True)


def test_linux_sequence_under_completion_backpressure():
    """The Linux enable and walk with cfg_cpl.ready held low for random numbers of cycles: every
    completion stays valid and unchanged until taken, cfg_req.ready stays low meanwhile, and the
    results still match the model."""
    rng = random.Random(0x5EED_0001)

    def hold():
        return rng.choice([0, 0, 1, 2, 3, 5, 8, 13, 40])

    async def body(b):
        await b.host.enable(8)
        for rid in IGB_VF_ARI:
            await b.host.walk_vf(rid)
        await b.host.disable()
        held = [r["taken"] - r["first_valid"] for r in b.raw.requests]
        assert max(held) == 40 and min(held) == 0
        assert all(r["first_valid"] - r["accepted"] == 7 for r in b.raw.requests)

    run(igb(), body, name="linux_backpressure", raw=True, hold=hold)


def _random_requests(rng, count):
    """Requests for igb-82576 at 01:00.0: every 60 requests the SR-IOV enable (NumVFs 4, Control
    VFE|MSE|ARI), halfway a VF Enable clear or a PF FLR (each starts the VF state sweep), and
    otherwise random reads and writes to the PF, to VF 1..8 (5..8 absent), to an odd devfn and to
    bus 2 (Type 1)."""
    enable = [(TYPE0, IGB_PF, IGB_NUMVFS // 4, 0b0011, 1, 4),
              (TYPE0, IGB_PF, IGB_CTRL // 4, 0b0011, 1, 0x19)]
    regs = [0x00, 0x01, 0x02, 0x03, 0x04, 0x0F, 0x10, 0x11, 0x12, 0x14, 0x40, 0x41, 0x42,
            0x5A, 0x5C, 0x5D, 0x61]
    resets = [(TYPE0, IGB_PF, IGB_CTRL // 4, 0b0011, 1, 0x10),                 # VFE off
              (TYPE0, IGB_PF, 0x48 // 4, 0b0011, 1, PF_DEVCTL_RESET | INITIATE_FLR)]
    out = []
    while len(out) < count:
        if len(out) % 60 == 0:
            out += enable
        elif len(out) % 60 == 30:
            out.append(resets[len(out) // 60 % 2])
        what = rng.random()
        if what < 0.3:
            rid, type1 = IGB_PF, TYPE0
        elif what < 0.8:
            rid, type1 = rng.choice(IGB_VF_ARI), TYPE0
        elif what < 0.9:
            rid, type1 = 0x0181, TYPE0
        else:
            rid, type1 = 0x0280 + 2 * rng.randrange(4), TYPE1
        reg = rng.choice(regs) if rng.random() < 0.8 else rng.randrange(1024)
        write = rng.random() < 0.35
        if write and rid == IGB_PF and reg in (0x5A, 0x12) and rng.random() < 0.6:
            write = False       # keep the VFs around a good part of the time
        be = rng.randrange(16) if write else 0xF
        data = rng.getrandbits(32) if write else 0
        out.append((type1, rid, reg, be, write, data))
    return out


def test_backpressure_raw_channels():
    """A free-running bench on the raw channels: requests offered with random gaps (held stable
    until accepted), cfg_cpl.ready held low for random numbers of cycles. At every clock edge:
    a completion, once valid, stays valid and unchanged until taken; cfg_req.ready is low from
    acceptance until the completion is taken; while vf_reset_busy it is low only for writes
    (the clear after VF Enable clearing), and requests taken during a reset's clear complete
    with RRS and are offered again; the first valid cycle comes CONFIG_LATENCY cycles after
    acceptance; no completion without a request. At the end every request got exactly one
    completion other than RRS, in order, equal to the model's."""
    params = igb()
    rng = random.Random(0x5EED_0002)
    requests = _random_requests(rng, 500)
    dut = SriovEndpoint(params)
    stats = {}

    def make_testbench():
        model = EndpointModel(params)
        bench_rng = random.Random(0x5EED_0003)

        async def testbench(ctx):
            d = dut
            pending = list(requests)
            completions, expected = [], []
            in_flight = None            # (accept cycle, expected completion)
            first_valid = held = None
            hold = 0
            offered = False
            cycle = busy_cycles = stalled_busy = max_hold = rrs = 0
            while pending or in_flight is not None:
                if not offered and pending and bench_rng.random() < 0.6:
                    offered = True
                    t1, rid, reg, be, write, data = pending[0]
                    ctx.set(d.cfg_req.payload, {"type1": t1, "rid": rid, "reg": reg, "be": be,
                                                "write": write, "data": data})
                ctx.set(d.cfg_req.valid, offered)
                # Completion side: decide how long to hold ready low when one becomes valid.
                if ctx.get(d.cfg_cpl.valid):
                    if first_valid is None:
                        hold = bench_rng.choice([0, 0, 1, 2, 3, 4, 7, 12, 25, 60])
                        max_hold = max(max_hold, hold)
                    ready = hold == 0
                else:
                    ready = bench_rng.random() < 0.5      # ready without valid means nothing
                ctx.set(d.cfg_cpl.ready, ready)
                _, _, req_ready, cpl_valid, payload, busy = await ctx.tick().sample(
                    d.cfg_req.ready, d.cfg_cpl.valid, d.cfg_cpl.payload, d.pfs[0].vf_reset_busy)
                cycle += 1
                assert cycle < 100_000
                if busy:
                    busy_cycles += 1
                    if offered and not pending[0][4]:
                        assert req_ready or in_flight is not None, \
                            f"cycle {cycle}: a read waits while vf_reset_busy"
                    stalled_busy += offered and not req_ready and in_flight is None
                if in_flight is not None:
                    assert not req_ready, f"cycle {cycle}: ready with a request in flight"
                if cpl_valid:
                    assert in_flight is not None, f"cycle {cycle}: completion without request"
                    value = (payload.status, payload.data)
                    if first_valid is None:
                        first_valid, held = cycle, value
                        assert cycle - in_flight[0] == CONFIG_LATENCY
                    else:
                        assert value == held, f"cycle {cycle}: completion changed while held"
                    if ready:
                        if payload.status == CompletionStatus.RRS:
                            # Taken during a reset's clear: no effect, offered again (after
                            # the one on offer now, which must stay offered until taken).
                            assert in_flight[2], f"cycle {cycle}: RRS outside a clear"
                            assert payload.data == 0
                            pending.insert(1 if offered else 0, in_flight[1])
                            rrs += 1
                        else:
                            completions.append((status_name(payload.status), payload.data))
                            expected.append(model.config(*in_flight[1]))
                        in_flight = first_valid = held = None
                    else:
                        hold -= 1
                else:
                    assert first_valid is None, \
                        f"cycle {cycle}: completion valid dropped before it was taken"
                if offered and req_ready:
                    assert in_flight is None
                    in_flight = (cycle, pending.pop(0), busy)
                    offered = False
            ctx.set(d.cfg_req.valid, 0)
            ctx.set(d.cfg_cpl.ready, 1)
            for _ in range(20):
                _, _, cpl_valid = await ctx.tick().sample(d.cfg_cpl.valid)
                assert not cpl_valid
            assert len(completions) == len(requests)
            for n, (got, want) in enumerate(zip(completions, expected, strict=True)):
                assert got == want, f"request {n} {requests[n]}: design {got}, model {want}"
            stats.update(busy=busy_cycles, stalled=stalled_busy, max_hold=max_hold, rrs=rrs,
                         ur=sum(c[0] == "UR" for c in completions),
                         vf_reset=sum(1 for e in model.events if e[0] == "vfs_reset"))
        return testbench

    simulate(dut, make_testbench, name="test_endpoint_backpressure_raw")
    # The run exercised what it is meant to: long holds, UR and SC, VF state sweeps, requests
    # answered RRS during the clear after reset or a PF FLR.
    assert stats["max_hold"] == 60
    assert 0 < stats["ur"] < len(requests)
    assert stats["vf_reset"] >= 2 and stats["busy"] >= 8 * stats["vf_reset"]
    assert stats["rrs"] > 0


# -- Events and user-facing state --------------------------------------------------------------


def test_vf_flr_event_pulse():
    """An Initiate FLR write to VF n pulses vf_flr.valid for exactly one cycle with vf = n,
    while that request is in flight. Nothing pulses for writes without bit 15, for bit 15 with
    byte 1 not enabled, for an absent VF, or for a PF FLR."""
    async def body(b):
        await b.host.enable(8)
        raw = b.raw
        start = raw.cycle
        for n, rid in ((2, IGB_VF_ARI[1]), (8, IGB_VF_ARI[7]), (1, IGB_VF_ARI[0])):
            before = raw.cycle
            await b.host.flr(rid)
            flr_write = [r for r in raw.requests if r["write"] and r["reg"] == 0x48 // 4][-1]
            pulses = [p for p in raw.pulses("flr_valid") if p[0] > before]
            assert len(pulses) == 1, pulses
            cycle, length, sample = pulses[0]
            assert (length, sample.flr_vf) == (1, n)
            assert flr_write["accepted"] < cycle <= flr_write["taken"]
            assert b.model.events[-1] == ("vf_flr", n, 0)
        assert len([p for p in raw.pulses("flr_valid") if p[0] > start]) == 3

        quiet = raw.cycle
        await b.write(TYPE0, IGB_VF_ARI[2], 0x48, 2, 0x0010)            # no FLR bit
        await b.write(TYPE0, IGB_VF_ARI[2], 0x48, 1, 0x00)              # byte 0 only
        await b.board.config(TYPE0, IGB_VF_ARI[2], 0x48 // 4, 0b0001, True, 0x8000)
        await b.write(TYPE0, 0x0190, 0x48, 2, INITIATE_FLR)             # VF 9: absent, UR
        await b.write(TYPE0, IGB_VF_ARI[2], 0x04, 2, 0x8000)            # Command, not DevCtl
        assert not [p for p in raw.pulses("flr_valid") if p[0] > quiet]
        await b.pf_write(0x48, 2, PF_DEVCTL_RESET | INITIATE_FLR)       # PF FLR
        await raw.idle(12)
        assert not [p for p in raw.pulses("flr_valid") if p[0] > quiet]
        assert len([p for p in raw.pulses("pf_flr") if p[0] > quiet]) == 1

    run(igb(), body, name="vf_flr_event", raw=True)


def test_vfs_reset_pulse_and_sweep():
    """vfs_reset pulses for one cycle when VF Enable goes from 1 to 0 (Linux disable), and on a
    PF FLR; vf_reset_busy is then high for TotalVFs cycles. Readiness (docs/resets.md): while
    the VF state is cleared after reset, PF config requests are accepted at once and complete
    with Request Retry Status in the usual latency (the driver reissues them); after VF Enable
    clearing, reads are served meanwhile and a write waits for the end of the clear. Writing
    Control without clearing VF Enable resets nothing."""
    params = EndpointParams(total_vfs=100, vf_bars=(Bar(0, 16 * KiB),))

    async def body(b):
        raw = b.raw
        latency = b.dut.config_latency
        # After reset the sweep runs once: the PF answers RRS until it ends, without stalling.
        assert await b.pf_read(0x00) == 0x0001_1234
        sweep = raw.pulses("busy")[0]
        assert sweep[:2] == (1, 100)
        *retried, last = raw.requests
        assert len(retried) >= 100 // (latency + 1) - 1
        assert {r["status"] for r in retried} == {"RRS"}
        assert all(r["waited"] == 0 for r in raw.requests)
        assert all(r["first_valid"] - r["accepted"] == latency for r in raw.requests)
        assert all(r["accepted"] < sweep[0] + sweep[1] for r in retried)
        assert last["status"] == "SC" and last["accepted"] >= sweep[0] + sweep[1] - latency

        await b.host.enable(100)
        quiet = raw.cycle
        await b.pf_write(0x148, 2, 0x19)      # VFE, MSE, ARI again: no change of VF Enable
        await raw.idle(5)
        assert not [p for p in raw.pulses("vfs_reset") if p[0] > quiet]
        assert not [p for p in raw.pulses("busy") if p[0] > quiet]

        before = raw.cycle
        await b.pf_write(0x148, 2, 0x10)      # clear VFE and MSE
        n_req = len(raw.requests)
        cpl = await b.read(TYPE0, 0x0101, 0x00)       # VF 1, now gone: UR at once
        assert cpl.status == "UR"
        assert await b.pf_read(0x148) == 0x10          # the PF reads during the clear
        await b.pf_write(0x0c, 1, 0x10)               # a write waits for the clear's end
        resets = [p for p in raw.pulses("vfs_reset") if p[0] > before]
        busy = [p for p in raw.pulses("busy") if p[0] > before]
        assert [p[1] for p in resets] == [1]
        assert [p[1] for p in busy] == [100]
        vf_read, pf_read, pf_write = raw.requests[n_req:n_req + 3]
        end = busy[0][0] + 100
        assert vf_read["waited"] <= 2 and pf_read["waited"] == 0
        assert pf_read["accepted"] < end
        assert pf_write["accepted"] >= end and pf_write["waited"] >= 60
        assert {r["status"] for r in raw.requests[n_req:]} == {"SC", "UR"}
        assert b.model.events[-1] == ("vfs_reset", 0)

        # Clearing an already clear VF Enable does nothing.
        quiet = raw.cycle
        await b.pf_write(0x148, 2, 0x10)
        await raw.idle(5)
        assert not [p for p in raw.pulses("vfs_reset") if p[0] > quiet]

        # PF FLR with VF Enable = 0: one vfs_reset, one sweep.
        before = raw.cycle
        await b.pf_write(0x48, 2, PF_DEVCTL_RESET | INITIATE_FLR)
        await raw.idle(120)
        assert [p[1] for p in raw.pulses("pf_flr") if p[0] > before] == [1]
        assert [p[1] for p in raw.pulses("vfs_reset") if p[0] > before] == [1]
        assert [p[1] for p in raw.pulses("busy") if p[0] > before] == [100]

    run(params, body, name="vfs_reset", raw=True)


def test_vfs_reset_single_pulse_on_pf_flr_with_vfs_enabled():
    """A PF FLR while VF Enable is 1 resets every VF once: vfs_reset is documented as a one-cycle
    pulse, and the sweep should run once (TotalVFs cycles)."""
    params = EndpointParams(total_vfs=100, vf_bars=(Bar(0, 16 * KiB),))

    async def body(b):
        raw = b.raw
        await b.host.enable(100)
        before = raw.cycle
        await b.pf_write(0x48, 2, PF_DEVCTL_RESET | INITIATE_FLR)
        await raw.idle(150)
        lengths = {name: [p[1] for p in raw.pulses(name) if p[0] > before]
                   for name in ("pf_flr", "vfs_reset", "busy")}
        assert lengths == {"pf_flr": [1], "vfs_reset": [1], "busy": [100]}

    run(params, body, name="vfs_reset_pf_flr", raw=True, waves_on_failure=False)


def test_vf_bme_lookup():
    """vf_bme answers three cycles after vf_bme_query with that VF's Bus Master Enable, and 0
    for query 0, for VFs above NumVFs, and while VF Enable is 0. Queries can change every
    cycle."""
    assert VF_BME_LATENCY == 3

    async def lookup(ctx, dut, query):
        ctx.set(dut.vf_bme_query.vf, query)
        await ctx.tick().repeat(3)
        return ctx.get(dut.vf_bme)

    async def body(b):
        ctx, dut = b.ctx, b.dut
        await b.host.enable(4)
        for n in (1, 3, 4):
            await b.space(IGB_VF_ARI[n - 1]).write16(0x04, 0x0004)
        await b.host.flr(IGB_VF_ARI[3])           # VF 4 loses it again
        await b.idle(2)
        expected = {0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0}
        for query, want in expected.items():
            assert await lookup(ctx, dut, query) == want, f"VF {query}"
        # One query per cycle: the index register, the memory read, the output register.
        queries = (1, 2, 3, 2, 1, 4, 3, 0, 0, 0)
        outputs = []
        for query in queries:
            ctx.set(dut.vf_bme_query.vf, query)
            await ctx.tick()
            outputs.append(ctx.get(dut.vf_bme))
        assert outputs[2:] == [expected[q] for q in queries[:-2]]

        await b.host.disable()
        for query in range(9):
            assert await lookup(ctx, dut, query) == 0, f"VF {query} after disable"
        # Re-enabled VFs start with Bus Master Enable 0.
        await b.host.enable(4)
        for query in range(9):
            assert await lookup(ctx, dut, query) == 0, f"VF {query} after re-enable"

    run(igb(), body, name="vf_bme")


def test_vf_flr_resets_only_that_vf():
    """VF FLR of VF 2: its Bus Master Enable, Relaxed Ordering and No Snoop return to reset
    (Command 0, Device Control 0x0810); VFs 1, 3, 4 keep theirs; the PF is untouched."""
    async def body(b):
        await b.host.enable(4)
        vfs = IGB_VF_ARI[:4]
        # VF n: BME set; Relaxed Ordering cleared on even VFs, No Snoop cleared on odd VFs.
        devctl = {1: 0x0010, 2: 0x0800, 3: 0x0010, 4: 0x0800}
        for n, rid in enumerate(vfs, start=1):
            await b.space(rid).write16(0x04, 0x0004)
            await b.space(rid).write16(0x48, devctl[n])
        pf_cmd = await b.space(IGB_PF).read16(0x04)
        await b.host.flr(vfs[1])
        assert b.model.events[-1] == ("vf_flr", 2, 0)
        assert await b.space(vfs[1]).read16(0x04) == 0x0000
        assert await b.space(vfs[1]).read16(0x48) == VF_DEVCTL_RESET
        for n in (1, 3, 4):
            assert await b.space(vfs[n - 1]).read16(0x04) == 0x0004
            assert await b.space(vfs[n - 1]).read16(0x48) == devctl[n]
        assert await b.space(IGB_PF).read16(0x04) == pf_cmd
        assert b.get(b.dut.pfs[0].vf_enable) == 1 and b.get(b.dut.pfs[0].num_vfs) == 4

    run(igb(), body, name="vf_flr_one_vf")


def test_constructor_refuses_non_params():
    for bad in (None, {"total_vfs": 8}, str(EXAMPLES / "igb-82576.toml"), 8):
        with pytest.raises(TypeError, match=r"params: must be an EndpointParams"):
            SriovEndpoint(bad)


# -- sriov-spec.md §8 corner cases ---------------------------------------------------------------


def test_case24_clearing_vf_enable_resets_vfs_keeps_numvfs():
    """§8 case 24: clearing VF Enable (here on its own, without Linux's NumVFs = 0) makes every VF
    vanish (UR) and resets it; NumVFs keeps its value; on re-enable the VFs are at defaults."""
    async def body(b):
        await b.host.enable(4)
        for rid in IGB_VF_ARI[:4]:
            await b.space(rid).write16(0x04, 0x0004)
            await b.space(rid).write16(0x48, 0x0000)
        await b.pf_write(IGB_CTRL, 2, 0x10)           # VFE and MSE off, ARI kept
        assert await b.space(IGB_PF).read16(IGB_NUMVFS) == 4
        assert b.get(b.dut.pfs[0].num_vfs) == 4
        for rid in IGB_VF_ARI[:4]:
            assert (await b.read(TYPE0, rid, 0x04)).status == "UR"
        await b.pf_write(IGB_CTRL, 2, 0x19)
        for rid in IGB_VF_ARI[:4]:
            assert await b.space(rid).read32(0x04) == 0x0011_0000
            assert await b.space(rid).read16(0x48) == VF_DEVCTL_RESET
        assert (await b.read(TYPE0, IGB_VF_ARI[4], 0x00)).status == "UR"

    run(igb(), body, name="case24")


async def _enable_with_state(b):
    """Linux enable 4 on igb, then BME on VF 1 and Relaxed Ordering off on VF 2."""
    await b.host.enable(4)
    await b.space(IGB_VF_ARI[0]).write16(0x04, 0x0004)
    await b.space(IGB_VF_ARI[1]).write16(0x48, 0x0800)


def test_case25_pf_flr_resets_sriov_capability():
    """§8 case 25: Initiate FLR on the PF (W16 Device Control with bit 15): the write completes
    SC, then the SR-IOV capability is back at reset (VF Enable and VF MSE 0, NumVFs 0, System
    Page Size 1, VF BARs type bits only), the PF header and Device Control too, and the VFs are
    gone. The captured bus number survives, and so does ARI Capable Hierarchy: it belongs to the
    whole device and only a conventional reset clears it (docs/resets.md)."""
    async def body(b):
        await _enable_with_state(b)
        assert await b.pf_read(IGB_CTRL) == 0x0000_0019
        assert await b.pf_read(0x184) == 0x0000_000C
        assert await b.pf_read(0x188) == 0x0000_0001
        assert await b.write(TYPE0, IGB_PF, 0x48, 2, PF_DEVCTL_RESET | INITIATE_FLR) == \
            Completion("SC", 0, 7)
        assert b.raw.pulses("pf_flr")[-1][1] == 1
        assert ("vfs_reset", 0) in b.model.events
        # SR-IOV capability (sriov-spec.md §1 reset column, endpoint-behaviour.md §3).
        expected = {
            0x160: 0x0001_0010,     # ID 0x0010, version 1, next 0 (ARI at 0x100 points here)
            0x164: 0x0000_0000,
            0x168: 0x0000_0010,     # Control and Status: ARI Capable Hierarchy kept
            0x16C: 0x0008_0008,     # InitialVFs, TotalVFs
            0x170: 0x0000_0000,     # NumVFs 0, FDL 0
            0x174: 0x0002_0080,     # ARI Capable Hierarchy still 1: the ARI pair
            0x178: 0x10CA_0000,
            0x17C: 0x0000_0553,
            0x180: 0x0000_0001,
            0x184: 0x0000_000C, 0x188: 0, 0x18C: 0, 0x190: 0x0000_000C, 0x194: 0, 0x198: 0,
            0x19C: 0,
        }
        for offset, value in expected.items():
            assert await b.pf_read(offset) == value, hex(offset)
        dut = b.dut
        pf0 = dut.pfs[0]
        assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(dut.ari_capable_hierarchy),
                b.get(pf0.num_vfs)) == (0, 0, 1, 0)
        # PF header and PCIe capability at reset too; the captured bus survives.
        assert await b.pf_read(0x04) == 0x0010_0000
        assert await b.pf_read(0x10) == 0x0000_0000
        assert await b.pf_read(0x48) == PF_DEVCTL_RESET
        assert b.get(dut.bus) == 0x01
        pf0 = dut.pfs[0]
        assert (b.get(pf0.memory_space_enable), b.get(pf0.bus_master_enable)) == (0, 0)
        # The VFs are gone, in both places they could be.
        for rid in IGB_VF_ARI[:4]:
            assert (await b.read(TYPE0, rid, 0x00)).status == "UR"
        for rid in IGB_VF_NON_ARI[:4]:
            assert (await b.read(TYPE1, rid, 0x00)).status == "UR"
        # Re-enabling by hand: the VFs come back at their reset state.
        await b.pf_write(IGB_NUMVFS, 2, 4)
        await b.pf_write(IGB_CTRL, 2, 0x19)
        assert await b.space(IGB_VF_ARI[0]).read32(0x04) == 0x0011_0000
        assert await b.space(IGB_VF_ARI[1]).read16(0x48) == VF_DEVCTL_RESET

    run(igb(), body, name="case25_flr", raw=True)


def test_case25_linux_pf_flr_restores_state():
    """§8 case 25 with Linux's pci_reset_function on the PF: LinuxHost.flr saves Command, resets,
    rewrites the PF BARs and Command and runs sriov_restore_state (ARI first, VF BARs, System
    Page Size, NumVFs, Control): the VFs are back at the same Routing IDs, at reset state."""
    async def body(b):
        await _enable_with_state(b)
        await b.host.flr(IGB_PF)
        restore = [t for t in b.root.transcript if t.step == "restore 01:00.0"]
        assert restore and all(t.status == "SC" for t in restore)
        assert await b.pf_read(0x04) & 0xFFFF == 0x0006
        assert [await b.pf_read(off) for off in (0x10, 0x14, 0x1C)] == \
            [0x8000_0000, 0x8002_0000, 0x8004_0000]
        assert await b.pf_read(IGB_CTRL) == 0x0000_0019
        assert await b.pf_read(IGB_NUMVFS) == 4
        assert [await b.pf_read(off) for off in (0x184, 0x188, 0x190, 0x194)] == \
            [0x0000_000C, 0x0000_0001, 0x0002_000C, 0x0000_0001]
        assert await b.pf_read(0x180) == 0x1
        for rid in IGB_VF_ARI[:4]:
            await b.host.walk_vf(rid)
        assert await b.space(IGB_VF_ARI[0]).read16(0x04) == 0x0000
        assert await b.space(IGB_VF_ARI[1]).read16(0x48) == VF_DEVCTL_RESET
        assert b.get(b.dut.bus) == 0x01

    run(igb(), body, name="case25_linux")


#: Parameters with the SR-IOV capability at 0x100 and ARI elsewhere (after it, and at the very
#: end of configuration space).
SRIOV_FIRST = {
    "sriov_at_100_ari_at_200": dict(ari_cap_offset=0x200, sriov_cap_offset=0x100),
    "sriov_at_100_ari_at_ff8": dict(ari_cap_offset=0xFF8, sriov_cap_offset=0x100),
    "ari_at_100_sriov_at_fc0": dict(ari_cap_offset=0x100, sriov_cap_offset=0xFC0),
}


def chain_params():
    out = [pytest.param(example(name), id=name) for name in EXAMPLE_NAMES]
    out += [pytest.param(EndpointParams(total_vfs=4, vf_bars=(Bar(0, 4 * KiB),), **kw), id=key)
            for key, kw in SRIOV_FIRST.items()]
    return out


@pytest.mark.parametrize("params", chain_params())
def test_case26_extended_space_not_all_ones_not_mirrored(params):
    """§8 case 26: the dword at 0x100 is neither 0xFFFFFFFF nor 0, and 0x100, 0x200, ..., 0xF00
    do not mirror dword 0 (otherwise Linux takes the function for a 256-byte one)."""
    async def body(b):
        dword0 = await b.pf_read(0x00)
        assert dword0 == params.vendor_id | params.device_id << 16
        ext = await b.pf_read(0x100)
        assert ext not in (0xFFFF_FFFF, 0)
        assert ext & 0xFFFF in (ARI_ID, SRIOV_ID)
        for offset in range(0x100, 0x1000, 0x100):
            assert await b.pf_read(offset) != dword0, hex(offset)

    run(params, body, name="case26")


@pytest.mark.parametrize("params", chain_params())
def test_case27_extended_capability_chain(params):
    """§8 case 27: the extended capability list from 0x100, walked as pciutils does: next
    pointers dword-aligned and >= 0x100, no loops, ending in 0; exactly ARI (8 bytes) and SR-IOV
    (0x40 bytes, inside config space, overlapping nothing), both version 1; the whole SR-IOV
    capability readable (Linux's compute_max_vf_buses and lspci read up to cap+0x3C). Also the
    standard list: 0x34 -> 0x40 (PCI Express), next 0."""
    async def body(b):
        assert await b.pf_read(0x04) >> 16 & 0x10          # Capabilities List
        assert await b.pf_read(0x34) & 0xFF == 0x40
        assert await b.pf_read(0x40) & 0xFFFF == 0x7C10     # PCIe cap ID 0x10, next PM
        found, ptr, seen = {}, 0x100, []
        while ptr:
            assert ptr % 4 == 0 and 0x100 <= ptr <= 0xFFC, hex(ptr)
            assert ptr not in seen, f"loop at {ptr:#x}: {[hex(p) for p in seen]}"
            seen.append(ptr)
            header = await b.pf_read(ptr)
            assert header not in (0, 0xFFFF_FFFF)
            cap_id, version, nxt = header & 0xFFFF, header >> 16 & 0xF, header >> 20
            assert version == 1
            assert cap_id not in found
            found[cap_id] = ptr
            assert nxt & 0x3 == 0
            ptr = nxt
        assert len(seen) == 2
        assert found == {ARI_ID: params.ari_cap_offset, SRIOV_ID: params.sriov_cap_offset}
        sriov, ari = found[SRIOV_ID], found[ARI_ID]
        assert sriov + 0x40 <= 0x1000 and ari + 0x08 <= 0x1000
        assert ari + 8 <= sriov or sriov + 0x40 <= ari
        # The capability at 0x100 points to the other, which ends the list.
        assert seen[0] == 0x100
        # TotalVFs and VF Device ID sit inside the 0x40 bytes at the offsets lspci reads.
        assert await b.pf_read(sriov + 0x0C) == params.total_vfs * 0x1_0001
        assert await b.pf_read(sriov + 0x18) >> 16 == params.vf_device_id
        assert await b.pf_read(sriov + 0x1C) == params.supported_page_sizes
        assert await b.pf_read(sriov + 0x3C) == 0
        if params.total_vfs <= 200:     # sriov_init writes NumVFs TotalVFs times
            info = await b.host.enumerate()
            assert info.ext_caps == {ARI_ID: params.ari_cap_offset,
                                     SRIOV_ID: params.sriov_cap_offset}
            assert b.host.sriov.info.total_vfs == params.total_vfs

    run(params, body, name="case27")


def test_case28_pf_memory_space_enable_does_not_disable_vfs():
    """§8 case 28: PF Command Memory Space Enable = 0 (as Linux does around BAR sizing) does not
    touch VF Enable, VF MSE, the VF BARs or the VFs' config spaces, before or after enabling."""
    async def body(b):
        dut = b.dut
        await b.host.enumerate()
        await b.pf_write(0x04, 2, 0x0000)                  # PF MSE and BME off
        assert b.get(dut.pfs[0].memory_space_enable) == 0
        rids = await b.host.enable(4)
        assert rids == IGB_VF_ARI[:4]
        assert (b.get(dut.pfs[0].vf_enable), b.get(dut.pfs[0].vf_mse)) == (1, 1)
        bars = b.get(dut.pfs[0].vf_bars.as_value())
        await b.pf_write(0x04, 2, 0x0006)
        await b.pf_write(0x04, 2, 0x0000)
        for rid in rids:
            await b.host.walk_vf(rid)
        await b.space(rids[0]).write16(0x04, 0x0004)
        assert await b.space(rids[0]).read16(0x04) == 0x0004
        pf0 = dut.pfs[0]
        assert (b.get(pf0.vf_enable), b.get(pf0.vf_mse), b.get(pf0.num_vfs)) == (1, 1, 4)
        assert b.get(dut.pfs[0].vf_bars.as_value()) == bars
        assert await b.pf_read(IGB_CTRL) == 0x19
        assert [await b.pf_read(off) for off in (0x184, 0x188)] == [0x0000_000C, 0x0000_0001]
        assert b.get(dut.pfs[0].memory_space_enable) == 0

    run(igb(), body, name="case28")


def test_case29_vf_command_memory_bit_ignored():
    """§8 case 29: a VF's Command Memory Space Enable (bit 1) is hard-wired 0: writing it is
    ignored; only Bus Master Enable (bit 2) sticks. PF MSE and VF MSE are not affected."""
    async def body(b):
        dut = b.dut
        await b.host.enable(2)
        vf = b.space(IGB_VF_ARI[0])
        pf_cmd = await b.space(IGB_PF).read16(0x04)
        await vf.write16(0x04, 0x0002)
        assert await vf.read16(0x04) == 0x0000
        await vf.write16(0x04, 0x0006)
        assert await vf.read16(0x04) == 0x0004
        await vf.write8(0x04, 0x03)                           # I/O and Memory only
        assert await vf.read16(0x04) == 0x0000
        await vf.write32(0x04, 0xFFFF_FFFF)
        assert await vf.read32(0x04) == 0x0011_0004           # Status: Cap List, Imm Readiness
        await vf.write16(0x04, 0x0000)
        assert await vf.read16(0x04) == 0x0000
        assert await b.space(IGB_VF_ARI[1]).read16(0x04) == 0x0000
        assert await b.space(IGB_PF).read16(0x04) == pf_cmd
        assert (b.get(dut.pfs[0].vf_mse), b.get(dut.pfs[0].memory_space_enable)) == (1, 1)

    run(igb(), body, name="case29")


@pytest.mark.parametrize("pf_rid,fdl", [(0x0100, 0x00), (0x0102, 0x02), (0x0117, 0x17)],
                         ids=["fn0", "fn2", "dev2_fn7"])
def test_case30_function_dependency_link_is_own_function(pf_rid, fdl):
    """§8 case 30: Function Dependency Link reads the PF's own function number, so Linux's
    sriov_enable check passes and the VFs come up; another value is refused at construction."""
    params = igb().replace(pf_rid=pf_rid)

    async def body(b):
        assert await b.space(pf_rid).read8(IGB_FDL) == fdl
        rids = await b.host.enable(4)
        assert b.host.sriov.info.link == fdl
        assert rids == [pf_rid + 0x80 + 2 * i for i in range(4)]
        for rid in rids:
            await b.host.walk_vf(rid)

    run(params, body, name=f"case30_{pf_rid:04x}")
    with pytest.raises(ParamError, match="function_dependency_link"):
        igb().replace(pf_rid=pf_rid, function_dependency_link=fdl ^ 1)


def test_linux_host_refuses_missing_pf():
    """The host model's guard: enumerating a Routing ID where no function answers raises
    HostError (an absent function reads 0xFFFFFFFF)."""
    async def body(b):
        b.host.pf_rid = 0x0101
        with pytest.raises(HostError, match="no function at 01:00.1"):
            await b.host.enumerate()

    run(igb(), body, name="missing_pf")


def test_endpoint_65535_vfs_elaborates_and_simulates():
    """The largest endpoint: TotalVFs 65535, PF at 00:00.0, offset 1 / stride 1 (ARI), so VF 65535
    is Routing ID 0xFFFF on bus 0xFF. Its per-VF state lives in a 65535-entry memory that is
    cleared after reset and when VF Enable goes to 0 (65535 cycles each). Every completion is
    compared with the model."""
    params = EndpointParams(pf_rid=0x0000, total_vfs=65535, first_vf_offset_ari=1,
                            vf_stride_ari=1, first_vf_offset_non_ari=1, vf_stride_non_ari=1)
    cap = params.sriov_cap_offset
    dut = SriovEndpoint(params)

    def make_testbench():
        model = EndpointModel(params)

        async def testbench(ctx):
            port = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model))

            async def cfg(type1, rid, offset, be, write=False, data=0):
                return await port.config(type1, rid, offset // 4, be, write, data)

            # Capture bus 0, set NumVFs = 65535 and VF Enable | VF MSE | ARI.
            await cfg(TYPE0, 0x0000, 0x04, 0b0011, True, 0x0006)
            await cfg(TYPE0, 0x0000, cap + 0x10, 0b0011, True, 65535)
            await cfg(TYPE0, 0x0000, cap + 0x08, 0b0011, True, 0x0019)
            assert ctx.get(dut.pfs[0].num_vfs) == 65535 and ctx.get(dut.pfs[0].vf_enable) == 1
            assert await cfg(TYPE0, 0x0001, 0x00, 0xF) == Completion("SC", 0xFFFF_FFFF, 7)
            assert await cfg(TYPE1, 0xFFFF, 0x00, 0xF) == Completion("SC", 0xFFFF_FFFF, 7)
            assert (await cfg(TYPE1, 0x8000, 0x100, 0xF)).data == 0x0001_000E     # VF 32768 ARI
            await cfg(TYPE1, 0xFFFF, 0x04, 0b0011, True, 0x0004)                  # BME of 65535
            assert (await cfg(TYPE1, 0xFFFF, 0x04, 0b0011)).data & 0x4 == 0x4
            assert (await cfg(TYPE1, 0xFFFE, 0x04, 0b0011)).data & 0x4 == 0
            ctx.set(dut.vf_bme_query.vf, 65535)
            await ctx.tick().repeat(3)
            assert ctx.get(dut.vf_bme) == 1
            await cfg(TYPE1, 0xFFFF, 0x48, 0b0010, True, 0x8000)                  # VF FLR
            assert (await cfg(TYPE1, 0xFFFF, 0x04, 0b0011)).data & 0x4 == 0
            await cfg(TYPE0, 0x0000, cap + 0x08, 0b0011, True, 0x0010)            # VFE off
            assert await cfg(TYPE1, 0xFFFF, 0x00, 0xF) == Completion("UR", 0, 7)
            assert model.events == [("vf_flr", 65535, 0), ("vfs_reset", 0)]

        return testbench

    simulate(dut, make_testbench, name="test_endpoint_65535_vfs")
