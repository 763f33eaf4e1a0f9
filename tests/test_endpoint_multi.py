# amaranth: UnusedElaboratable=no
"""Tests of ``SriovEndpoint`` with several PFs, configuration side (``docs/multi-pf.md`` §3-§6,
§9, §10).

Config requests are driven directly (no Linux host yet) and every completion goes through a
``Scoreboard`` against the independent reference model (``sriov_tb.model.EndpointModel``); its
latency is checked too. Literal values come from the comments of ``examples/multi-pf/*.toml`` and
the PCIe spec (Header Type 0x80, ARI Next Function Number); Routing IDs are computed here from
those literal offsets. MSI-X is removed from the examples: with several PFs the endpoint refuses
it for now.
"""

import dataclasses
from pathlib import Path

import pytest
from test_endpoint import LatencyCheck, RawPort, be_for

from sriov_ep.endpoint import CompletionStatus, SriovEndpoint, config_latency
from sriov_ep.params import EndpointParams, PfParams, PmParams, load_params
from sriov_tb.host import ModelEndpointPort, Scoreboard
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


def test_msix_refused_with_several_pfs():
    with pytest.raises(NotImplementedError, match="MSI-X with several PFs"):
        SriovEndpoint(load_params(EXAMPLES / "igb-82576-dual.toml"))


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
