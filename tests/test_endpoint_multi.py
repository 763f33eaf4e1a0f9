# amaranth: UnusedElaboratable=no
"""Tests of ``SriovEndpoint`` with several PFs, configuration side (``docs/multi-pf.md`` §3-§6,
§9, §10).

Config requests are driven directly (no Linux host yet) and every completion goes through a
``Scoreboard`` against the independent reference model (``sriov_tb.model.EndpointModel``); its
latency is checked too. Literal values come from the comments of ``examples/multi-pf/*.toml`` and
the PCIe spec (Header Type 0x80, ARI Next Function Number); Routing IDs are computed here from
those literal offsets. The configuration-side tests remove MSI-X from the examples; the MSI-X
and memory tests at the end use the examples as they are, with memory requests and interrupts
checked against the model as well (MemoryPort, InterruptPort).
"""

import dataclasses
from pathlib import Path

import pytest
from test_endpoint import LatencyCheck, RawPort, be_for

from sriov_ep.endpoint import CompletionStatus, SriovEndpoint, config_latency
from sriov_ep.params import EndpointParams, PfParams, PmParams, UserCap, load_params
from sriov_tb.host import (
    EndpointDriver,
    InterruptDriver,
    InterruptPort,
    MemoryDriver,
    MemoryPort,
    ModelEndpointPort,
    ModelInterruptPort,
    Scoreboard,
    SettledDriver,
)
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "multi-pf"
TYPE0, TYPE1 = 0, 1
INITIATE_FLR = 0x8000


def without_msix(params):
    return params.replace(pfs=tuple(dataclasses.replace(pf, msix=None, vf_msix=None)
                                    for pf in params.pfs))


def dual():
    """igb-82576-dual.toml: PFs 01:00.0/01:00.1, SR-IOV at 0x160, ARI at 0x100, 8 VFs each,
    ARI offset 0x80 stride 2, non-ARI 0x180 stride 2 (the VFs interleave)."""
    return without_msix(load_params(EXAMPLES / "igb-82576-dual.toml"))


def quad():
    """quad-pf.toml: PFs 01:00.0-3, SR-IOV at 0x140, ARI at 0x100, 63 VFs each, ARI offset
    4 + 62k, non-ARI 0x100 + 62k, stride 1."""
    return without_msix(load_params(EXAMPLES / "quad-pf.toml"))


def uneven():
    """Two PFs with different TotalVFs (8 and 5), so PF 1's VFs start at entry 8 of the VF
    state memory; VF PM in both. ARI: PF 0's VFs at functions 2..9, PF 1's at 10..14
    (offset 9 from function 1); non-ARI: 02:00.0.. and 02:00.7.. (0x100, 0x107)."""
    common = dict(vendor_id=0x1234, class_code=0x020000, pm=PmParams(), vf_pm=PmParams(),
                  vf_device_id=0x0010)
    return EndpointParams(pfs=(
        PfParams(pf_rid=0x0100, device_id=0x0011, total_vfs=8, first_vf_offset_ari=2,
                 first_vf_offset_non_ari=0x100, **common),
        PfParams(pf_rid=0x0101, device_id=0x0012, total_vfs=5, first_vf_offset_ari=9,
                 first_vf_offset_non_ari=0x107, **common),
    ))


# Each configuration: params, SR-IOV capability offset, device IDs, per PF (ARI offset,
# non-ARI offset, stride) as the example files' comments give them.
CONFIGS = {
    "dual":   (dual, 0x160, [0x10C9, 0x10C9], [(0x80, 0x180, 2), (0x80, 0x180, 2)], 0x8086),
    "quad":   (quad, 0x140, [0x4004, 0x4004, 0x4004, 0x4004],
               [(4 + 62 * k, 0x100 + 62 * k, 1) for k in range(4)], 0x1234),
    "uneven": (uneven, 0x140, [0x0011, 0x0012], [(2, 0x100, 1), (9, 0x107, 1)], 0x1234),
}


class MultiBench:
    """One multi-PF SriovEndpoint behind a LatencyCheck and a Scoreboard with a fresh model."""

    def __init__(self, ctx, dut, params):
        self.ctx    = ctx
        self.dut    = dut
        self.params = params
        self.model  = EndpointModel(params)
        self.raw    = RawPort(ctx, dut)
        self.port   = LatencyCheck(self.raw, dut.config_latency)
        self.board  = Scoreboard(self.port, ModelEndpointPort(self.model))

    def get(self, signal):
        return self.ctx.get(signal)

    async def read(self, type1, rid, offset):
        assert offset % 4 == 0
        return await self.board.config(type1, rid, offset // 4, 0xF, False, 0)

    async def write(self, type1, rid, offset, size, value):
        assert offset % size == 0
        return await self.board.config(type1, rid, offset // 4, be_for(offset, size), True,
                                       value << (8 * (offset % 4)))

    async def pf_read(self, k, offset):
        cpl = await self.read(TYPE0, self.params.pfs[k].pf_rid, offset)
        assert cpl.status == "SC"
        return cpl.data

    async def pf_write(self, k, offset, size, value):
        cpl = await self.write(TYPE0, self.params.pfs[k].pf_rid, offset, size, value)
        assert (cpl.status, cpl.data) == ("SC", 0)

    async def attempt(self, type1, rid, offset, *, write=False, data=0):
        """One request without the scoreboard and without reissue on RRS: (status, data,
        whether PF 0's VFs were being cleared when it was accepted)."""
        self.raw.retry_rrs = False
        try:
            status, value, _ = await self.raw._attempt(type1, rid, offset // 4, 0xF, write,
                                                       data)
        finally:
            self.raw.retry_rrs = True
        accepted = self.raw.requests[-1]["accepted"]
        return status, value, self.raw.samples[accepted - 1].busy


def run(params, body, *, name):
    dut = SriovEndpoint(params)

    def make_testbench():
        async def testbench(ctx):
            await body(MultiBench(ctx, dut, params))
        return testbench

    simulate(dut, make_testbench, name=f"test_endpoint_multi_{name}")


def vf_rid(pf_rid, offset, stride, n):
    return pf_rid + offset + (n - 1) * stride


async def wait_ready(b):
    """Until every PF's VF state clear after reset is over (RRS reissues would do it too)."""
    for _ in range(10_000):
        if not any(b.get(b.dut.pfs[k].vf_reset_busy) for k in range(b.params.num_pfs)):
            return
        await b.raw.idle(1)
    raise AssertionError("VF state clear never ended")


async def find_cap(b, k, cap_id):
    """Offset of PF ``k``'s capability ``cap_id``, found by walking its list from 0x34."""
    offset = (await b.pf_read(k, 0x34)) & 0xFC
    while offset:
        header = await b.pf_read(k, offset)
        if header & 0xFF == cap_id:
            return offset
        offset = header >> 8 & 0xFC
    raise AssertionError(f"PF {k} has no capability {cap_id:#x}")


# -- Enumeration and SR-IOV in every PF ----------------------------------------------------------


@pytest.mark.parametrize("ari", [True, False], ids=["ari", "non_ari"])
@pytest.mark.parametrize("config", ["dual", "quad", "uneven"])
def test_enumerate_and_enable_every_pf(config, ari):
    """Each PF: Vendor/Device ID, Header Type 0x80 (multi-function), ARI Next Function Number
    (the next PF's function, 0 in the last). Then VFs enabled in every PF with a different
    NumVFs each; every VF's ID registers read (and the VF past NumVFs: UR)."""
    make, sriov, devices, layout, vendor = CONFIGS[config]
    params = make()
    num_vfs = [min(pf.total_vfs, 2 + 3 * k) for k, pf in enumerate(params.pfs)]

    async def body(b):
        dut = b.dut
        assert dut.config_latency == 8      # 7, and one for the merge of the PF decoders
        await wait_ready(b)
        pfs = params.pfs
        # A Type 0 write to PF 0 captures the bus.
        await b.pf_write(0, 0x04, 2, 0x0006)
        assert b.get(dut.bus) == 0x01
        for k, pf in enumerate(pfs):
            assert pf.pf_rid == 0x0100 + k
            assert await b.pf_read(k, 0x00) == devices[k] << 16 | vendor
            assert (await b.pf_read(k, 0x0C)) >> 16 & 0xFF == 0x80
            ari_header = await b.pf_read(k, 0x100)
            assert ari_header & 0xFFFF == 0x000E
            nfn = (await b.pf_read(k, 0x104)) >> 8 & 0xFF
            assert nfn == (k + 1 if k + 1 < len(pfs) else 0)
            assert (await b.pf_read(k, sriov)) & 0xFFFF == 0x0010
        # ARI Capable Hierarchy in PF 0 (the owner), then NumVFs and VF Enable + VF MSE.
        if ari:
            await b.pf_write(0, sriov + 0x08, 2, 0x0010)
        assert b.get(dut.ari_capable_hierarchy) == ari
        for k in range(len(pfs)):
            await b.pf_write(k, sriov + 0x10, 2, num_vfs[k])
            await b.pf_write(k, sriov + 0x08, 2, 0x0009 | (0x10 if ari else 0))
        for k in range(len(pfs)):
            ports = dut.pfs[k]
            off_ari, off_non, stride = layout[k]
            offset = off_ari if ari else off_non
            assert (b.get(ports.vf_enable), b.get(ports.num_vfs)) == (1, num_vfs[k])
            assert (b.get(ports.first_vf_offset), b.get(ports.vf_stride)) == (offset, stride)
            assert (await b.pf_read(k, sriov + 0x14)) == stride << 16 | offset
            # ARI: the VFs are on the PFs' bus (Type 0); without, on bus 2 (Type 1).
            kind = TYPE0 if ari else TYPE1
            for n in range(1, num_vfs[k] + 2):
                rid = vf_rid(0x0100 + k, offset, stride, n)
                assert (rid >> 8) == (0x01 if ari else 0x02)
                cpl = await b.read(kind, rid, 0x00)
                if n <= num_vfs[k]:
                    assert (cpl.status, cpl.data) == ("SC", 0xFFFF_FFFF)
                    assert (await b.read(kind, rid, 0x08)).status == "SC"
                else:
                    assert cpl.status == "UR"
        assert b.port.count > 0

    run(params, body, name=f"enumerate_{config}_{'ari' if ari else 'non_ari'}")


def test_ari_bit_writable_in_pf0_only():
    """ARI Capable Hierarchy: RsvdP in PF 1 (a write there changes nothing, in any PF), RW in
    PF 0, where it moves every PF's First VF Offset; ignored while any PF has VF Enable set."""
    params = dual()
    sriov = 0x160

    async def body(b):
        dut = b.dut
        await wait_ready(b)
        await b.pf_write(1, sriov + 0x08, 2, 0x0010)
        assert b.get(dut.ari_capable_hierarchy) == 0
        assert (await b.pf_read(1, sriov + 0x08)) & 0x10 == 0
        assert (await b.pf_read(1, sriov + 0x14)) & 0xFFFF == 0x180
        await b.pf_write(0, sriov + 0x08, 2, 0x0010)
        assert b.get(dut.ari_capable_hierarchy) == 1
        assert (await b.pf_read(1, sriov + 0x14)) & 0xFFFF == 0x80
        assert (await b.pf_read(0, sriov + 0x14)) & 0xFFFF == 0x80
        # VF Enable in PF 1 holds the bit: PF 0 cannot clear it.
        await b.pf_write(1, sriov + 0x10, 2, 2)
        await b.pf_write(1, sriov + 0x08, 2, 0x0001)
        await b.pf_write(0, sriov + 0x08, 2, 0x0000)
        assert b.get(dut.ari_capable_hierarchy) == 1
        await b.pf_write(1, sriov + 0x08, 2, 0x0000)
        await b.pf_write(0, sriov + 0x08, 2, 0x0000)
        assert b.get(dut.ari_capable_hierarchy) == 0

    run(params, body, name="ari_bit")


# -- Resets of one PF ----------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["flr", "d3hot"])
def test_pf0_reset_isolation(reset):
    """quad: PF 0 FLR (or D3hot -> D0): PF 0 answers RRS while its VFs are cleared; PF 1's VF
    Enable, NumVFs and its VFs' state stay; requests to PF 1 and its VFs issued during PF 0's
    clear are served; afterwards PF 0 is reset and its VFs are gone."""
    params = quad()
    sriov = 0x140
    pf1_vfs = [vf_rid(0x0101, 66, 1, n) for n in range(1, 5)]    # 01:08.3 ..
    pf0_vfs = [vf_rid(0x0100, 4, 1, n) for n in range(1, 4)]     # 01:00.4 ..

    async def body(b):
        dut = b.dut
        await wait_ready(b)
        await b.pf_write(0, sriov + 0x08, 2, 0x0010)                  # ARI
        for k, count in ((0, 3), (1, 4)):
            await b.pf_write(k, sriov + 0x10, 2, count)
            await b.pf_write(k, sriov + 0x08, 2, 0x0019 if k == 0 else 0x0009)
        # VF state in both PFs: Command (BME, MSE) and Device Control.
        for rid in pf0_vfs + pf1_vfs:
            assert (await b.write(TYPE0, rid, 0x04, 2, 0x0004)).status == "SC"
            assert (await b.write(TYPE0, rid, 0x48, 2, 0x0000)).status == "SC"
        await b.pf_write(0, 0x04, 2, 0x0006)
        await b.pf_write(1, 0x04, 2, 0x0006)
        # BME of PF 1's VF 2 and PF 0's VF 1 through vf_bme_query.
        for pf, n in ((1, 2), (0, 1)):
            b.ctx.set(dut.vf_bme_query, {"pf": pf, "vf": n})
            await b.raw.idle(3)
            assert b.get(dut.vf_bme) == 1

        # The reset of PF 0.
        if reset == "flr":
            await b.pf_write(0, 0x48, 2, INITIATE_FLR)
        else:
            pm = await find_cap(b, 0, 0x01)
            await b.pf_write(0, pm + 4, 2, 0x0003)                    # PMCSR: D3hot
            await b.pf_write(0, pm + 4, 2, 0x0000)                    # D0: resets PF 0
        # During PF 0's clear: PF 1 and its VFs served, PF 0 answers RRS.
        served_during = 0
        for rid in [0x0101] + pf1_vfs:
            status, value, busy0 = await b.attempt(TYPE0, rid, 0x04)
            assert status == CompletionStatus.SC
            expected = b.model.config(TYPE0, rid, 1, 0xF, False, 0)
            assert ("SC", value) == expected
            served_during += busy0
        assert served_during >= 3, "PF 1's requests did not overlap PF 0's clear"
        status, value, busy0 = await b.attempt(TYPE0, 0x0100, 0x00)
        assert (status, value, busy0) == (CompletionStatus.RRS, 0, 1)
        # A write to PF 0 during its clear has no effect.
        status, _, busy0 = await b.attempt(TYPE0, 0x0100, sriov + 0x10, write=True, data=7)
        assert (status, busy0) == (CompletionStatus.RRS, 1)
        assert b.get(dut.pfs[0].vf_reset_busy) == 1
        assert b.get(dut.pfs[1].vf_reset_busy) == 0
        await wait_ready(b)

        # PF 1 untouched, PF 0 reset.
        assert (b.get(dut.pfs[1].vf_enable), b.get(dut.pfs[1].num_vfs)) == (1, 4)
        assert (b.get(dut.pfs[0].vf_enable), b.get(dut.pfs[0].num_vfs)) == (0, 0)
        assert b.get(dut.ari_capable_hierarchy) == 1                  # LINK scope
        assert (await b.pf_read(1, sriov + 0x08)) & 0x0F == 0x0009
        assert (await b.pf_read(1, sriov + 0x10)) & 0xFFFF == 4
        assert (await b.pf_read(0, sriov + 0x10)) & 0xFFFF == 0
        for rid in pf1_vfs:
            assert (await b.read(TYPE0, rid, 0x04)).data & 0xFFFF == 0x0004
            assert (await b.read(TYPE0, rid, 0x48)).data & 0xFFFF == 0x0000
        for rid in pf0_vfs:
            assert (await b.read(TYPE0, rid, 0x00)).status == "UR"
        assert (await b.pf_read(1, 0x04)) & 0xFFFF == 0x0006
        assert (await b.pf_read(0, 0x04)) & 0xFFFF == 0x0000
        b.ctx.set(dut.vf_bme_query, {"pf": 1, "vf": 2})
        await b.raw.idle(3)
        assert b.get(dut.vf_bme) == 1
        b.ctx.set(dut.vf_bme_query, {"pf": 0, "vf": 1})
        await b.raw.idle(3)
        assert b.get(dut.vf_bme) == 0
        # Re-enabled, PF 0's VFs come back in their reset state.
        await b.pf_write(0, sriov + 0x10, 2, 3)
        await b.pf_write(0, sriov + 0x08, 2, 0x0009)
        for rid in pf0_vfs:
            assert (await b.read(TYPE0, rid, 0x04)).data & 0xFFFF == 0x0000
            assert (await b.read(TYPE0, rid, 0x48)).data & 0xFFFF == 0x0810

    run(params, body, name=f"pf0_{reset}_isolation")


def test_vf_flr_reports_pf():
    """uneven: a VF FLR of PF 1's VF 3 pulses ``vf_flr`` with pf 1, vf 3, and resets only that
    VF (its neighbour and PF 0's VF 3 keep their state)."""
    params = uneven()
    sriov = 0x140

    async def body(b):
        dut = b.dut
        await wait_ready(b)
        await b.pf_write(0, sriov + 0x08, 2, 0x0010)
        for k in range(2):
            await b.pf_write(k, sriov + 0x10, 2, 4)
            await b.pf_write(k, sriov + 0x08, 2, 0x0009 | (0x10 if k == 0 else 0))
        rids = {(k, n): vf_rid(0x0100 + k, (2, 9)[k], 1, n) for k in range(2)
                for n in range(1, 5)}
        for rid in rids.values():
            assert (await b.write(TYPE0, rid, 0x04, 2, 0x0004)).status == "SC"
        start = len(b.raw.samples)
        assert (await b.write(TYPE0, rids[1, 3], 0x48, 2, INITIATE_FLR)).status == "SC"
        pulses = [s for s in b.raw.samples[start:] if s.flr_valid]
        assert len(pulses) == 1 and pulses[0].flr_vf == 3
        # (RawPort samples PF 0's ports; the event's pf and vf hold until the next request)
        assert (b.get(dut.vf_flr.pf), b.get(dut.vf_flr.vf)) == (1, 3)
        for (k, n), rid in rids.items():
            value = (await b.read(TYPE0, rid, 0x04)).data & 0xFFFF
            assert value == (0 if (k, n) == (1, 3) else 0x0004)
        assert b.model.events[-1] == ("vf_flr", 3, 1)

    run(params, body, name="vf_flr_pf")


def test_single_pf_latency_unchanged():
    assert config_latency(EndpointParams(total_vfs=4)) == 7
    assert config_latency(dual()) == 8


# -- Memory decode with several PFs (smoke test of the wiring) ------------------------------------


def test_memory_decode_two_pfs():
    """dual: each PF's BAR0 and its VFs' BAR0 claim for that PF (``mem_res.pf``), compared
    with the model's ``route_memory``; after PF 0's FLR only PF 1 and its VFs still claim."""
    params = dual()
    sriov = 0x160
    pf_bar = [0x8000_0000, 0x8002_0000]             # 128 KiB each
    vf_bar = [0x1_0000_0000, 0x1_0002_0000]         # 8 x 16 KiB each

    async def decode(b, addr):
        dut, ctx = b.dut, b.ctx
        ctx.set(dut.mem_req.payload, {"addr": addr, "write": 0, "tag": 5, "data": 0, "be": 0xFF})
        ctx.set(dut.mem_req.valid, 1)
        ctx.set(dut.mem_res.ready, 1)
        await b.raw.tick()
        ctx.set(dut.mem_req.valid, 0)
        for cycles in range(1, 20):
            if b.get(dut.mem_res.valid):
                res = b.get(dut.mem_res.payload)
                await b.raw.tick()
                assert cycles == dut.mem_decode_latency
                function = res.vf if res.is_vf else 0
                return (bool(res.claimed), res.pf, function, res.bar, res.offset)
            await b.raw.tick()
        raise AssertionError("no decode result")

    async def check(b, addr, expected):
        got = await decode(b, addr)
        model = b.model.route_memory(addr)
        claimed = model[0]
        assert got[0] == claimed == expected[0], (hex(addr), got, model)
        if claimed:
            assert got == tuple(model) == expected, (hex(addr), got, model)

    async def body(b):
        await wait_ready(b)
        await b.pf_write(0, sriov + 0x08, 2, 0x0010)
        for k in range(2):
            await b.pf_write(k, 0x10, 4, pf_bar[k])
            await b.pf_write(k, 0x04, 2, 0x0006)
            await b.pf_write(k, sriov + 0x24, 4, vf_bar[k] & 0xFFFF_FFFF)    # VF BAR0
            await b.pf_write(k, sriov + 0x28, 4, vf_bar[k] >> 32)
            await b.pf_write(k, sriov + 0x10, 2, 8)
            await b.pf_write(k, sriov + 0x08, 2, 0x0019 if k == 0 else 0x0009)
        await check(b, pf_bar[0] + 0x10, (True, 0, 0, 0, 0x10))
        await check(b, pf_bar[1] + 0x1_FFFC, (True, 1, 0, 0, 0x1_FFFC))
        await check(b, vf_bar[0] + 3 * 0x4000 + 8, (True, 0, 4, 0, 8))
        await check(b, vf_bar[1] + 7 * 0x4000 + 0x3FF8, (True, 1, 8, 0, 0x3FF8))
        await check(b, vf_bar[1] + 8 * 0x4000, (False, 0, 0, 0, 0))
        await b.pf_write(0, 0x48, 2, INITIATE_FLR)
        await check(b, pf_bar[0] + 0x10, (False, 0, 0, 0, 0))
        await check(b, vf_bar[0] + 8, (False, 0, 0, 0, 0))
        await check(b, pf_bar[1] + 0x10, (True, 1, 0, 0, 0x10))
        await check(b, vf_bar[1] + 0x4000, (True, 1, 2, 0, 0))

    run(params, body, name="memory_decode")


# -- MSI-X and memory with several PFs (docs/multi-pf.md §7, §8) ---------------------------------
#
# The examples as they are, with MSI-X. Config requests, memory requests and interrupts go to the
# design and to the model through checked ports (Scoreboard, MemoryPort, InterruptPort): every
# completion, decode, internal read and MSI-X message (with its PF) must agree. Writes are
# followed by a settle of the interrupt driver, so the messages a write delivers are compared too.

MSIX_CAP_ID, PM_CAP_ID = 0x11, 0x01
MSIX_ENABLE, FUNCTION_MASK = 0x8000, 0x4000
KIB = 1024


class MsixBench:
    """A multi-PF SriovEndpoint with MSI-X, and the model, behind checked ports."""

    def __init__(self, ctx, dut, params, model):
        self.ctx, self.dut, self.params, self.model = ctx, dut, params, model
        irq = InterruptDriver(ctx, dut)
        self.cfg = EndpointDriver(ctx, dut)
        self.board = Scoreboard(SettledDriver(self.cfg, irq.settle), ModelEndpointPort(model))
        self.mem = MemoryPort(SettledDriver(MemoryDriver(ctx, dut), irq.settle), model)
        self.irq = InterruptPort(irq, ModelInterruptPort(model))

    def get(self, signal):
        return self.ctx.get(signal)

    async def read(self, rid, offset, type1=TYPE0):
        cpl = await self.board.config(type1, rid, offset // 4, 0xF, False, 0)
        assert cpl.status == "SC", (hex(rid), hex(offset))
        return cpl.data

    async def write(self, rid, offset, size, value, type1=TYPE0):
        cpl = await self.board.config(type1, rid, offset // 4, be_for(offset, size), True,
                                      value << (8 * (offset % 4)))
        assert (cpl.status, cpl.data) == ("SC", 0), (hex(rid), hex(offset))

    async def cap(self, rid, cap_id):
        """Offset of capability ``cap_id`` of function ``rid`` (its list walked from 0x34)."""
        offset = (await self.read(rid, 0x34)) & 0xFC
        while offset:
            header = await self.read(rid, offset)
            if header & 0xFF == cap_id:
                return offset
            offset = header >> 8 & 0xFC
        raise AssertionError(f"{rid:#06x} has no capability {cap_id:#x}")

    async def mem_read(self, addr):
        """The aligned QWORD at ``addr`` (an internal read), checked against the model."""
        return await self.mem.access(addr, False)

    async def mem_write32(self, addr, value):
        shift = addr % 8
        return await self.mem.access(addr, True, value << (8 * shift), 0xF << shift)

    async def fire(self, function, vector, pf):
        """(outcome, messages) of one interrupt; both checked against the model."""
        outcome = await self.irq.interrupt(function, vector, pf=pf)
        return outcome, self.irq.messages()

    def compared(self):
        return self.board.compared + self.mem.compared + self.irq.compared


def run_msix(params, body, *, name, user=None, rtl_user=None):
    dut = SriovEndpoint(params)
    done = []

    def make_testbench():
        done.clear()

        async def testbench(ctx):
            b = MsixBench(ctx, dut, params, EndpointModel(params, user=user))
            await body(b)
            assert b.compared() > 0
            done.append(b)
        if rtl_user is None:
            return testbench
        return testbench, rtl_user(dut)

    simulate(dut, make_testbench, name=f"test_endpoint_multi_{name}")
    assert done, "the testbench did not finish"
    return done[0]


def dual_msix():
    """igb-82576-dual.toml as it is: PF MSI-X 10 vectors in PF BAR3 (table 0, PBA 0x2000), VF
    MSI-X 3 vectors in VF BAR3 (table 0, PBA 0x2000), 16 KiB VF BARs 0 and 3."""
    return load_params(EXAMPLES / "igb-82576-dual.toml")


DUAL_SRIOV = 0x160
DUAL_PF_BAR3 = [0x8010_0000, 0x8020_0000]        # 16 KiB each
DUAL_VF_BAR3 = [0x2_0000_0000, 0x2_0010_0000]     # 8 x 16 KiB each


def dual_vf_rid(k, n):
    """ARI: PF k's VF n at 0x0180 + k + 2(n - 1) (the file's layout comment)."""
    return 0x0180 + k + 2 * (n - 1)


async def dual_setup(b, num_vfs=8):
    """ARI; each PF's BAR3 and VF BAR3 (64-bit, slots 3-4 of the VF BAR area), Memory Space
    and Bus Master Enable, NumVFs, VF Enable + VF MSE."""
    await b.write(0x0100, DUAL_SRIOV + 0x08, 2, 0x0010)
    for k in range(2):
        rid = 0x0100 + k
        await b.write(rid, 0x1C, 4, DUAL_PF_BAR3[k])                  # BAR3
        await b.write(rid, 0x04, 2, 0x0006)
        await b.write(rid, DUAL_SRIOV + 0x30, 4, DUAL_VF_BAR3[k] & 0xFFFF_FFFF)   # VF BAR3
        await b.write(rid, DUAL_SRIOV + 0x34, 4, DUAL_VF_BAR3[k] >> 32)
        await b.write(rid, DUAL_SRIOV + 0x10, 2, num_vfs)
        await b.write(rid, DUAL_SRIOV + 0x08, 2, 0x0019 if k == 0 else 0x0009)
    for k in range(2):
        assert b.get(b.dut.pfs[k].vf_enable) == 1


def dual_table(k, n, vector):
    """Address of vector ``vector``'s entry in PF k's table (n = 0) or its VF n's."""
    if n == 0:
        return DUAL_PF_BAR3[k] + 16 * vector
    return DUAL_VF_BAR3[k] + (n - 1) * 16 * KIB + 16 * vector


def dual_pba(k, n):
    return (DUAL_PF_BAR3[k] if n == 0 else DUAL_VF_BAR3[k] + (n - 1) * 16 * KIB) + 0x2000


async def program_vector(b, k, n, vector, addr, data, *, unmask=True):
    """Message Address/Upper/Data of one entry, then its Vector Control (unmasked or not)."""
    entry = dual_table(k, n, vector)
    for i, value in enumerate((addr & 0xFFFF_FFFF, addr >> 32, data)):
        res = await b.mem_write32(entry + 4 * i, value)
        assert res.internal and res.pf == k and res.function == n
    await b.mem_write32(entry + 12, 0 if unmask else 1)


async def enable_msix(b, rid, *, bme=True):
    msix = await b.cap(rid, MSIX_CAP_ID)
    if bme:
        await b.write(rid, 0x04, 2, 0x0006 if rid >> 8 == 1 and rid < 0x0102 else 0x0004)
    await b.write(rid, msix + 2, 2, MSIX_ENABLE)
    return msix


def test_msix_tables_and_interrupts_name_the_pf():
    """dual: table entries written and read back through each PF's BAR3 and its VFs' VF BAR3
    (internal, with the PF named); PF 1's VF 3 and PF 0's VF 3 (same VF number) raise vector 1:
    each message names its PF and function with that PF's entry; a masked vector goes pending
    (PBA bit), is delivered when unmasked; a vector past the Table Size is dropped; Function
    Mask holds a PF's own vector; vf_msix_size with pf changes one PF's VF only."""
    params = dual_msix()
    entries = {(1, 3): (0xFEE0_1000, 0x0000_4131), (0, 3): (0xFEE0_2000, 0x0000_4030),
               (1, 0): (0x1_FEE0_3000, 0x0000_4100), (0, 0): (0xFEE0_4000, 0x0000_4000)}

    async def body(b):
        dut = b.dut
        assert dut.msg_latency == 7            # MSG_LATENCY 6, + the engine's irq stage
        await dual_setup(b)
        # Entries: vector 1 of each VF 3, vector 2 of each PF (distinct values per PF).
        for (k, n), (addr, data) in entries.items():
            await program_vector(b, k, n, 2 if n == 0 else 1, addr, data, unmask=(k == 1))
        for (k, n), (addr, data) in entries.items():
            vector = 2 if n == 0 else 1
            low = await b.mem_read(dual_table(k, n, vector))
            high = await b.mem_read(dual_table(k, n, vector) + 8)
            assert (low.internal, low.pf, low.function) == (True, k, n)
            assert low.data == addr                                     # address QWORD
            assert high.data == data | (0 if k == 1 else 1) << 32       # data, Vector Control
        # MSI-X Enable (and BME) on PF 1's VF 3, PF 0's VF 3 and both PFs.
        for rid in (dual_vf_rid(1, 3), dual_vf_rid(0, 3)):
            await enable_msix(b, rid)
        pf_msix = [await enable_msix(b, 0x0100 + k) for k in range(2)]
        # PF 1's VF 3, vector 1 (unmasked): a message of function 3 of PF 1.
        assert await b.fire(3, 1, pf=1) == ("sent", [(3, *entries[1, 3], 1)])
        # PF 0's VF 3, vector 1 (masked): pending, its PBA bit set; PF 1's VF 3's PBA clear.
        assert await b.fire(3, 1, pf=0) == ("pending", [])
        assert (await b.mem_read(dual_pba(0, 3))).data == 0b10
        assert (await b.mem_read(dual_pba(1, 3))).data == 0
        # Unmasking delivers it (the message comes with the table write, checked by the port).
        await b.mem_write32(dual_table(0, 3, 1) + 12, 0)
        assert b.irq.messages() == [(3, *entries[0, 3], 0)]
        assert (await b.mem_read(dual_pba(0, 3))).data == 0
        # Vector 3 is past a VF's Table Size (3 vectors): dropped; PF vector 9 exists.
        assert await b.fire(3, 3, pf=1) == ("dropped", [])
        assert await b.fire(0, 10, pf=0) == ("dropped", [])
        assert (await b.fire(0, 9, pf=0))[0] == "pending"
        # PF 1's vector 2 sent; PF 0's (masked) pending. Function Mask on PF 1 holds its next.
        assert await b.fire(0, 2, pf=1) == ("sent", [(0, *entries[1, 0], 1)])
        assert await b.fire(0, 2, pf=0) == ("pending", [])
        await b.write(0x0101, pf_msix[1] + 2, 2, MSIX_ENABLE | FUNCTION_MASK)
        assert await b.fire(0, 2, pf=1) == ("pending", [])
        assert (await b.mem_read(dual_pba(1, 0))).data == 0b100
        await b.write(0x0101, pf_msix[1] + 2, 2, MSIX_ENABLE)
        assert b.irq.messages() == [(0, *entries[1, 0], 1)]
        # A VF that does not exist (VF 9) raises nothing.
        assert await b.fire(9, 0, pf=1) == ("dropped", [])
        # vf_msix_size: VF 5 of PF 1 to 2 vectors; PF 0's VF 5 keeps 3.
        vf_msix = await b.cap(dual_vf_rid(1, 5), MSIX_CAP_ID)
        assert await b.irq.vf_msix_count(5, 2, pf=1) is True
        assert (await b.read(dual_vf_rid(1, 5), vf_msix)) >> 16 & 0x7FF == 1
        assert (await b.read(dual_vf_rid(0, 5), vf_msix)) >> 16 & 0x7FF == 2
        assert await b.irq.vf_msix_count(3, 2, pf=1) is False       # MSI-X enabled: refused
        assert await b.irq.vf_msix_count(9, 2, pf=0) is False       # no VF 9
        assert await b.irq.vf_msix_count(5, 5, pf=0) is False       # above max_vectors
        assert b.get(dut.irq_dropped) == 0

    run_msix(params, body, name="msix_dual")


def test_vf_lookups_use_the_named_pfs_num_vfs():
    """dual with NumVFs 8 on PF 0 and 3 on PF 1: VF 5 exists in PF 0 only. vf_msix_size for
    VF 5 answers by the NumVFs of the PF it names, not another PF's (the lookup compares VF n
    with every PF's NumVFs, then selects one PF's bit; selecting PF 0's or PF 1's bit always
    fails here). vf_bme_query is checked on the same VFs; its selection is caught by
    test_pf0_reset_isolation (a VF past NumVFs of its own PF has a cleared entry, so only a
    disabled PF tells a wrong selection there)."""
    params = dual_msix()

    async def body(b):
        dut = b.dut
        await dual_setup(b)
        await b.write(0x0101, DUAL_SRIOV + 0x08, 2, 0x0000)          # PF 1: VF Enable off
        while b.get(dut.pfs[1].vf_reset_busy):
            await b.ctx.tick()
        await b.write(0x0101, DUAL_SRIOV + 0x10, 2, 3)
        await b.write(0x0101, DUAL_SRIOV + 0x08, 2, 0x0009)
        for k, n in ((0, 5), (0, 3), (1, 3)):
            await b.write(dual_vf_rid(k, n), 0x04, 2, 0x0004)       # the VF's BME
        for (k, n), exists in {(0, 5): True, (1, 5): False, (1, 3): True, (0, 9): False,
                               (1, 4): False}.items():
            b.ctx.set(dut.vf_bme_query, {"pf": k, "vf": n})
            await b.ctx.tick().repeat(3)
            assert b.get(dut.vf_bme) == (exists and n in (3, 5)), (k, n)
            # Refused without the VF (the model says which), accepted with it.
            assert await b.irq.vf_msix_count(n, 2, pf=k) is exists, (k, n)

    run_msix(params, body, name="lookups_dual")


def test_pf0_flr_clears_pf0_msix_only_and_vf_enable_clear_keeps_pf_msix():
    """dual: MSI-X state in both PFs and their VF 3s (enabled, unmasked entries, pending bits).
    PF 0's FLR: PF 0's and its VFs' MSI-X state returns to reset (Message Control 0, every Mask
    bit set, PBA 0, once its BAR is programmed again), PF 1's and its VF 3's is untouched and
    PF 1's VF 3 still interrupts. Then VF Enable cleared on PF 1: PF 1's own MSI-X stays (its
    vector is still sent), its VF 3's state is reset when the VFs come back."""
    params = dual_msix()
    vec = {k: (0xFEE0_0000 + 0x1000 * k, 0x100 + k) for k in range(2)}
    vf_vec = {k: (0xFEE1_0000 + 0x1000 * k, 0x200 + k) for k in range(2)}

    async def body(b):
        await dual_setup(b)
        for k in range(2):
            await program_vector(b, k, 0, 4, *vec[k])
            await program_vector(b, k, 3, 2, *vf_vec[k])
            await program_vector(b, k, 3, 0, 0xFEE2_0000, 0x300 + k, unmask=False)
            await enable_msix(b, 0x0100 + k)
            await enable_msix(b, dual_vf_rid(k, 3))
            assert await b.fire(3, 0, pf=k) == ("pending", [])      # vector 0 masked
            assert await b.fire(0, 5, pf=k) == ("pending", [])      # PF vector 5 masked
        pf_msix = await b.cap(0x0100, MSIX_CAP_ID)
        vf_msix = await b.cap(dual_vf_rid(0, 3), MSIX_CAP_ID)

        await b.write(0x0100, 0x48, 2, INITIATE_FLR)
        for _ in range(200):                 # the RRS retries wait for PF 0's clear
            if not b.get(b.dut.pfs[0].vf_reset_busy):
                break
            await b.ctx.tick()
        # PF 1 and its VF 3: everything kept.
        assert (await b.read(0x0101, pf_msix)) >> 16 == MSIX_ENABLE | 9
        assert (await b.read(dual_vf_rid(1, 3), vf_msix)) >> 16 == MSIX_ENABLE | 2
        assert (await b.mem_read(dual_pba(1, 0))).data == 1 << 5
        assert (await b.mem_read(dual_pba(1, 3))).data == 1
        assert (await b.mem_read(dual_table(1, 3, 2) + 8)).data == vf_vec[1][1]
        assert await b.fire(3, 2, pf=1) == ("sent", [(3, *vf_vec[1], 1)])
        assert await b.fire(0, 4, pf=1) == ("sent", [(0, *vec[1], 1)])
        # PF 0 reset: Message Control 0; interrupts of PF 0 are dropped or held.
        assert (await b.read(0x0100, pf_msix)) >> 16 == 9
        assert await b.fire(0, 4, pf=0) == ("pending", [])
        assert await b.fire(3, 2, pf=0) == ("dropped", [])          # its VFs are gone
        # Its BAR back: every Mask bit set, PBA only the vector just raised, entries kept.
        await b.write(0x0100, 0x1C, 4, DUAL_PF_BAR3[0])
        await b.write(0x0100, 0x04, 2, 0x0006)
        assert (await b.mem_read(dual_table(0, 0, 4) + 8)).data == 1 << 32 | vec[0][1]
        assert (await b.mem_read(dual_pba(0, 0))).data == 1 << 4
        # Its VFs again: VF 3's MSI-X in reset (masked, nothing pending), its entry kept.
        await b.write(0x0100, DUAL_SRIOV + 0x30, 4, DUAL_VF_BAR3[0] & 0xFFFF_FFFF)
        await b.write(0x0100, DUAL_SRIOV + 0x34, 4, DUAL_VF_BAR3[0] >> 32)
        await b.write(0x0100, DUAL_SRIOV + 0x10, 2, 8)
        await b.write(0x0100, DUAL_SRIOV + 0x08, 2, 0x0009)
        assert (await b.read(dual_vf_rid(0, 3), vf_msix)) >> 16 == 2
        assert (await b.mem_read(dual_pba(0, 3))).data == 0
        assert (await b.mem_read(dual_table(0, 3, 2) + 8)).data == 1 << 32 | vf_vec[0][1]

        # VF Enable cleared on PF 1: its own MSI-X stays.
        await b.write(0x0101, DUAL_SRIOV + 0x08, 2, 0x0000)
        assert (await b.read(0x0101, pf_msix)) >> 16 == MSIX_ENABLE | 9
        assert await b.fire(0, 4, pf=1) == ("sent", [(0, *vec[1], 1)])
        assert (await b.mem_read(dual_pba(1, 0))).data == 1 << 5
        await b.write(0x0101, DUAL_SRIOV + 0x08, 2, 0x0009)
        assert (await b.read(dual_vf_rid(1, 3), vf_msix)) >> 16 == 2
        assert (await b.mem_read(dual_pba(1, 3))).data == 0
        assert (await b.mem_read(dual_table(1, 3, 2) + 8)).data == 1 << 32 | vf_vec[1][1]

    run_msix(params, body, name="msix_flr_isolation")


QUAD_SRIOV = 0x140


def test_memory_isolation_adjacent_vf_blocks():
    """quad as it is: PF 0's VF BAR0 block (3 VFs x 16 KiB) directly below PF 1's (4 VFs): the
    last byte of PF 0's VF 3 aperture and the first of PF 1's VF 1 decode to their own PF; the
    VFs' MSI-X tables (VF BAR0 + 0x2000) are served for their PF. PF 0's FLR leaves PF 1's block
    claimed, VF Enable cleared on PF 1 leaves PF 2's."""
    params = load_params(EXAMPLES / "quad-pf.toml")
    base = 0x4_0000_0000
    blocks = {0: (base, 3), 1: (base + 3 * 16 * KIB, 4), 2: (base + 7 * 16 * KIB, 2)}

    async def decode(b, addr, expected):
        got = await b.mem.decode(addr, False)          # checked against the model
        assert (got.claimed, got.pf, got.function, got.bar, got.offset) == expected, hex(addr)
        assert got.cycles == b.dut.mem_decode_latency
        return got

    async def body(b):
        await b.write(0x0100, QUAD_SRIOV + 0x08, 2, 0x0010)
        for k, (addr, count) in blocks.items():
            rid = 0x0100 + k
            await b.write(rid, QUAD_SRIOV + 0x24, 4, addr & 0xFFFF_FFFF)
            await b.write(rid, QUAD_SRIOV + 0x28, 4, addr >> 32)
            await b.write(rid, QUAD_SRIOV + 0x10, 2, count)
            await b.write(rid, QUAD_SRIOV + 0x08, 2, 0x0019 if k == 0 else 0x0009)
        edge = blocks[1][0]
        await decode(b, edge - 1, (True, 0, 3, 0, 0x3FFF))
        await decode(b, edge, (True, 1, 1, 0, 0))
        await decode(b, base - 1, (False, 0, 0, 0, 0))
        await decode(b, blocks[2][0] - 1, (True, 1, 4, 0, 0x3FFF))
        await decode(b, blocks[2][0], (True, 2, 1, 0, 0))
        await decode(b, blocks[2][0] + 2 * 16 * KIB, (False, 0, 0, 0, 0))
        # MSI-X tables of the two VFs at the edge: served for their PF (reads 0 after reset,
        # Vector Control's Mask set).
        for k, n, addr in ((0, 3, edge - 16 * KIB), (1, 1, edge)):
            res = await b.mem_read(addr + 0x2008)
            assert (res.internal, res.pf, res.function, res.data) == (True, k, n, 1 << 32)
        await b.write(0x0100, 0x48, 2, INITIATE_FLR)
        await decode(b, edge - 1, (False, 0, 0, 0, 0))
        await decode(b, edge, (True, 1, 1, 0, 0))
        await b.write(0x0101, QUAD_SRIOV + 0x08, 2, 0x0000)
        await decode(b, edge, (False, 0, 0, 0, 0))
        await decode(b, blocks[2][0], (True, 2, 1, 0, 0))

    run_msix(params, body, name="memory_isolation")


def test_vf_in_d3hot_claims_nothing():
    """dual with VF PM in both PFs: PF 1's VF 2 put in D3hot claims nothing (its registers nor
    its MSI-X table), PF 0's VF 2 and PF 1's VF 3 still claim, three cycles later while a VF is
    out of D0 (the PowerState query by the VF's global index); back in D0 (a VF reset: its Bus
    Master Enable, set before, is 0) it claims again."""
    base = dual_msix()
    params = base.replace(pfs=tuple(dataclasses.replace(pf, vf_pm=PmParams())
                                    for pf in base.pfs))

    async def body(b):
        dut = b.dut
        await dual_setup(b)
        pm = await b.cap(dual_vf_rid(1, 2), PM_CAP_ID)
        await b.write(dual_vf_rid(1, 2), 0x04, 2, 0x0004)              # its Bus Master Enable
        await b.write(dual_vf_rid(1, 2), pm + 4, 2, 0x0003)            # D3hot
        slow = dut.mem_latency_of(vf_claimed=True, vf_low_power=True)
        assert slow == dut.mem_decode_latency + 3

        async def decode(k, n, offset, claimed):
            got = await b.mem.decode(dual_table(k, n, 0) + offset, False)
            assert (got.claimed, got.pf, got.function) == ((True, k, n) if claimed
                                                           else (False, 0, 0))
            assert got.cycles == slow
        await decode(1, 2, 0x3000, False)
        await decode(1, 2, 0x0000, False)                               # its MSI-X table
        res = await b.mem_read(dual_table(1, 2, 0))
        assert not (res.claimed or res.internal)
        await decode(0, 2, 0x3000, True)
        await decode(1, 3, 0x3000, True)
        await decode(1, 1, 0x3FFF, True)
        await b.write(dual_vf_rid(1, 2), pm + 4, 2, 0x0000)            # D0 (a VF reset)
        assert await b.read(dual_vf_rid(1, 2), 0x04) & 0x0004 == 0      # BME reset with it
        got = await b.mem.decode(dual_table(1, 2, 0) + 0x3000, False)
        assert (got.claimed, got.pf, got.function, got.cycles) == (
            True, 1, 2, dut.mem_decode_latency)

    run_msix(params, body, name="vf_d3hot")


class PfUserRegisters:
    """User configuration windows of a device of several PFs: one dword per (pf, function,
    window, dword), initially a value naming all four; every call recorded with its PF."""

    def __init__(self):
        self.values = {}
        self.calls = []

    def read(self, function, window, dword, pf=0):
        self.calls.append(("read", pf, function, window, dword))
        return self.values.get((pf, function, window, dword),
                               0x5000_0000 | pf << 16 | function << 8 | window << 4 | dword)

    def write(self, function, window, dword, be, data, pf=0):
        self.calls.append(("write", pf, function, window, dword, be, data))
        mask = sum(0xFF << (8 * i) for i in range(4) if be >> i & 1)
        old = self.read(function, window, dword, pf=pf)
        self.calls.pop()
        self.values[(pf, function, window, dword)] = (old & ~mask) | (data & mask)


def pf_user_responder(handler):
    """Background testbench answering ``ucfg_req`` with ``handler``, passing ``pf``."""
    def make(dut):
        async def testbench(ctx):
            req, res = dut.ucfg_req, dut.ucfg_res
            ctx.set(req.ready, 1)
            while True:
                _, _, valid, p = await ctx.tick().sample(req.valid, req.payload)
                if not valid:
                    continue
                args = (int(p.function), int(p.window), int(p.offset))
                if p.write:
                    handler.write(*args, int(p.be), int(p.data), pf=int(p.pf))
                    value = 0
                else:
                    value = handler.read(*args, pf=int(p.pf))
                ctx.set(res.payload, {"data": value, "tag": int(p.tag)})
                ctx.set(res.valid, 1)
                await ctx.tick()
                ctx.set(res.valid, 0)
        return testbench
    return make


def test_user_window_request_names_the_pf():
    """Two PFs (uneven) with a DSN-like user capability each and a VSEC in their VFs:
    ``ucfg_req.pf`` names the PF of the function reached (PF 1, and PF 1's VF 2, vs PF 0's
    VF 2), reads return that PF's user data and writes land in that PF's window only."""
    dsn = UserCap("dsn", "extended", 12, cap_id=3)
    vsec = UserCap("vsec", "extended", 0x18, cap_id=0xb)
    base = uneven()
    params = base.replace(pfs=tuple(dataclasses.replace(pf, user_caps=(dsn,),
                                                        vf_user_caps=(vsec,))
                                    for pf in base.pfs))
    rtl_user, model_user = PfUserRegisters(), PfUserRegisters()

    async def find_ext(b, rid, cap_id):
        offset = 0x100
        while offset:
            header = await b.read(rid, offset)
            if header & 0xFFFF == cap_id:
                return offset
            offset = header >> 20
        raise AssertionError(f"{rid:#06x} has no extended capability {cap_id:#x}")

    async def body(b):
        await b.write(0x0100, 0x140 + 0x08, 2, 0x0010)
        for k in range(2):
            await b.write(0x0100 + k, 0x140 + 0x10, 2, 3)
            await b.write(0x0100 + k, 0x140 + 0x08, 2, 0x0009 | (0x10 if k == 0 else 0))
        pf_rids = [0x0100, 0x0101]
        vf_rids = [vf_rid(0x0100, 2, 1, 2), vf_rid(0x0101, 9, 1, 2)]
        dsn_at = await find_ext(b, 0x0101, 3)
        vsec_at = await find_ext(b, vf_rids[1], 0xb)
        for k in (1, 0):
            assert await b.read(pf_rids[k], dsn_at + 4) == 0x5000_0001 | k << 16
            assert await b.read(vf_rids[k], vsec_at + 8) == 0x5000_0202 | k << 16
        await b.write(pf_rids[1], dsn_at + 8, 4, 0x1234_5678)
        await b.write(vf_rids[0], vsec_at + 4, 2, 0xBEEF)
        assert await b.read(pf_rids[1], dsn_at + 8) == 0x1234_5678
        assert await b.read(pf_rids[0], dsn_at + 8) == 0x5000_0002
        assert await b.read(vf_rids[0], vsec_at + 4) == 0x5000_BEEF
        assert await b.read(vf_rids[1], vsec_at + 4) == 0x5001_0201

    run_msix(params, body, name="user_window_pf", user=model_user,
             rtl_user=pf_user_responder(rtl_user))
    assert rtl_user.calls == model_user.calls
    assert {call[1] for call in rtl_user.calls} == {0, 1}
