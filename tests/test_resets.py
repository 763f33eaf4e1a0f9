"""Every kind of reset against ``docs/resets.md``: what it resets, what it keeps, and readiness.

For each example and each reset kind the PF and two VFs are set away from their reset values
(every RW field software can set; sriov-ep's RW1C bits are never set by hardware), the reset is
applied, and every dword of both chains is read back through a scoreboard against the reference
model, which is written from the table. The fields the table singles out are also checked
against literal values from it (PCIe Base §6.6.2: Max_Payload_Size and the Link Control bits
survive an FLR, not a conventional reset).
"""

from pathlib import Path

import pytest

from sriov_ep.caps import pf_chain, vf_chain
from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import Bar, EndpointParams, PmParams, load_params
from sriov_ep.regs import ResetScope
from sriov_tb.host import EndpointDriver, MemoryDriver, ModelEndpointPort, Scoreboard
from sriov_tb.model import EndpointModel
from sriov_tb.sim import WithReset, simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TYPE0 = 0

#: Values written before a reset, and what the table says each reads afterwards.
COMMAND_DIRTY = 0x0546      # MSE, BME, Parity Error Response, SERR# Enable, Interrupt Disable
DEVCTL_DIRTY  = 0x50EF      # error enables, MPS 0b111, MRRS 0b101; Relaxed Ordering/No Snoop 0
DEVCTL_RESET  = 0x2810      # Relaxed Ordering 1, No Snoop 1, MRRS 0b010
DEVCTL_AFTER_FLR = 0x28F0   # DEVCTL_RESET with Max_Payload_Size kept (0b111)
LNKCTL_DIRTY  = 0x00CB      # ASPM 0b11, RCB, Common Clock Configuration, Extended Synch
VF_STATUS_COMMAND_RESET = 0x0011_0000   # Capabilities List, Immediate Readiness; Command 0
VF_DEVCTL_RESET = 0x0810    # Relaxed Ordering 1, No Snoop 1

KINDS = ["conventional", "pf_flr", "pf_d3hot_d0", "vf_flr", "vf_d3hot_d0", "vf_enable_clear"]




def be_for(offset, size):
    return ((1 << size) - 1) << (offset % 4)


class Config:
    """Dword-level config access through a Scoreboard (design against model)."""

    def __init__(self, ctx, dut, model):
        self.driver = EndpointDriver(ctx, dut)
        self.board = Scoreboard(self.driver, ModelEndpointPort(model))

    async def write(self, rid, offset, size, value):
        cpl = await self.board.config(TYPE0, rid, offset // 4, be_for(offset, size), True,
                                      value << (8 * (offset % 4)))
        assert cpl.status == "SC", (hex(rid), hex(offset))

    async def read(self, rid, offset):
        cpl = await self.board.config(TYPE0, rid, offset // 4, 0xF, False, 0)
        return cpl.data if cpl.status == "SC" else None

    async def read_chain(self, rid, chain):
        for e in chain:
            for dword in range(e.offset // 4, (e.offset + e.size + 3) // 4):
                await self.read(rid, dword * 4)


def _offsets(chain):
    return {e.name: e.offset for e in chain}


def applicable(params, kind):
    if kind == "pf_d3hot_d0":
        return params.pm is not None and not params.pm.no_soft_reset
    if kind == "vf_d3hot_d0":
        return params.vf_pm is not None and not params.vf_pm.no_soft_reset
    return True


def example(name):
    """An example's parameters; ``igb-82576+vf-pm`` adds a VF PM capability without
    No_Soft_Reset, so that a VF D3hot -> D0 reset is covered too."""
    if name == "igb-82576+vf-pm":
        params = load_params(EXAMPLES / "igb-82576.toml")
        return params.replace(vf_pm=PmParams(no_soft_reset=False))
    return load_params(EXAMPLES / f"{name}.toml")


def reset_cases(name):
    """One simulation per example (elaborating is most of the cost): each applicable kind in
    turn, from a state set away from reset."""
    params = example(name)
    kinds = [kind for kind in KINDS if applicable(params, kind)]
    dut = SriovEndpoint(params)
    top = WithReset(dut)
    pf = params.pf_rid
    pfo, vfo = _offsets(pf_chain(params)), _offsets(vf_chain(params))
    sriov = params.sriov_cap_offset

    def make_testbench():
        model = EndpointModel(params)

        async def testbench(ctx):
            cfg = Config(ctx, dut, model)
            for kind in kinds:
                await one_kind(ctx, cfg, kind)

        async def one_kind(ctx, cfg, kind):
            # (Every value below is written whole, whatever the kind before left.)
            compared = cfg.board.compared
            # -- Away from reset: the PF ---------------------------------------------------
            await cfg.write(pf, 0x04, 2, COMMAND_DIRTY)
            await cfg.write(pf, 0x0C, 1, 0x10)
            for bar in params.pf_bars:
                await cfg.write(pf, 0x10 + 4 * bar.index, 4, 0xFFFF_FFFF)
            await cfg.write(pf, 0x3C, 1, 0x0B)
            await cfg.write(pf, 0x48, 2, DEVCTL_DIRTY)
            await cfg.write(pf, 0x50, 2, LNKCTL_DIRTY)
            if "msix" in pfo:
                await cfg.write(pf, pfo["msix"] + 2, 2, 0xC000)
            await cfg.write(pf, sriov + 0x20, 4, 0x2)          # System Page Size 8 KiB
            for bar in params.vf_bars:
                await cfg.write(pf, sriov + 0x24 + 4 * bar.index, 4, 0xFFFF_FFFF)
            num_vfs = min(3, params.total_vfs)
            await cfg.write(pf, sriov + 0x10, 2, num_vfs)
            await cfg.write(pf, sriov + 0x08, 2, 0x19)          # VF Enable, VF MSE, ARI
            offset = await cfg.read(pf, sriov + 0x14)
            first, stride = offset & 0xFFFF, offset >> 16
            vfs = [pf + first + k * stride for k in range(num_vfs)]
            # -- ... and the VFs ---------------------------------------------------------------
            for rid in vfs[:2]:
                await cfg.write(rid, 0x04, 2, 0x0004)           # Bus Master Enable
                await cfg.write(rid, 0x48, 2, 0x0000)           # Relaxed Ordering, No Snoop 0
                if "msix" in vfo:
                    await cfg.write(rid, vfo["msix"] + 2, 2, 0xC000)
            if "pm" in vfo:
                await cfg.write(vfs[0], vfo["pm"] + 4, 2, 0x0003)      # D3hot
            if "pm" in pfo:
                await cfg.write(pf, pfo["pm"] + 4, 2, 0x0003)          # D3hot
            bus_before = ctx.get(dut.bus)
            assert bus_before == pf >> 8

            # -- The reset -----------------------------------------------------------------------
            if kind == "conventional":
                ctx.set(top.rst, 1)
                await ctx.tick()
                ctx.set(top.rst, 0)
                model.reset()
            elif kind == "pf_flr":
                await cfg.write(pf, 0x48, 2, DEVCTL_DIRTY | 0x8000)
            elif kind == "pf_d3hot_d0":
                await cfg.write(pf, pfo["pm"] + 4, 2, 0x0000)
            elif kind == "vf_flr":
                await cfg.write(vfs[0], 0x48, 2, 0x8000)
            elif kind == "vf_d3hot_d0":
                await cfg.write(vfs[0], vfo["pm"] + 4, 2, 0x0000)
            elif kind == "vf_enable_clear":
                await cfg.write(pf, sriov + 0x08, 2, 0x18)      # VF Enable off, MSE/ARI kept
                assert await cfg.read(pf, sriov + 0x10) & 0xFFFF == num_vfs    # NumVFs kept
                await cfg.write(pf, sriov + 0x08, 2, 0x19)

            # -- Everything, against the model ----------------------------------------------------
            await cfg.read_chain(pf, pf_chain(params))
            live = ctx.get(dut.pfs[0].vf_enable)
            for rid in (vfs[:2] if live else []):
                await cfg.read_chain(rid, vf_chain(params))

            # -- The table's singled-out fields, as literals -------------------------------------
            devctl = await cfg.read(pf, 0x48) & 0xFFFF
            lnkctl = await cfg.read(pf, 0x50) & 0xFFFF
            command = await cfg.read(pf, 0x04) & 0xFFFF
            if kind == "conventional":
                assert (devctl, lnkctl, command) == (DEVCTL_RESET, 0, 0)
                assert ctx.get(dut.bus) == 0 and not live
            elif kind in ("pf_flr", "pf_d3hot_d0"):
                assert (devctl, lnkctl, command) == (DEVCTL_AFTER_FLR, LNKCTL_DIRTY, 0)
                assert ctx.get(dut.bus) == bus_before and not live
                assert await cfg.read(pf, sriov + 0x10) & 0xFFFF == 0      # NumVFs 0
            else:
                assert (devctl, lnkctl, command) == (DEVCTL_DIRTY, LNKCTL_DIRTY, COMMAND_DIRTY)
                assert live
                assert await cfg.read(vfs[0], 0x04) == VF_STATUS_COMMAND_RESET
                assert await cfg.read(vfs[0], 0x48) & 0xFFFF == VF_DEVCTL_RESET
                if kind == "vf_enable_clear":
                    assert await cfg.read(vfs[1], 0x04) == VF_STATUS_COMMAND_RESET
                else:       # the other VF keeps its state
                    assert await cfg.read(vfs[1], 0x04) == VF_STATUS_COMMAND_RESET | 0x0004
                    assert await cfg.read(vfs[1], 0x48) & 0xFFFF == 0
            assert cfg.board.compared - compared > 50, kind
        return testbench

    simulate(top, make_testbench, name=f"test_resets_{name}")
    return kinds


def test_every_kind_is_covered():
    covered = set()
    for name in NAMES:
        covered |= {kind for kind in KINDS if applicable(example(name), kind)}
    assert covered == set(KINDS)


NAMES = ["igb-82576", "igb-82576+vf-pm", "nvme", "many-vfs"]


@pytest.mark.parametrize("name", NAMES)
def test_reset_keeps_and_resets_per_table(name):
    """Conventional reset, PF FLR, PF and VF D3hot -> D0, VF FLR and VF Enable clearing (those
    the example has) each against the table."""
    reset_cases(name)


# -- Readiness ---------------------------------------------------------------------------------

def test_requests_during_the_clear_at_65535_vfs():
    """docs/resets.md, Readiness: while 65535 VFs' state is cleared after the conventional reset
    (65535 cycles), a config request to the PF is accepted at once and completes in the usual
    latency with RRS and no effect, any other Routing ID gets UR; the first request after the
    clear completes as the model says. (The PF FLR's clear, the same logic, is covered at 100
    VFs in tests/test_endpoint.py and at 4000 by the per-example test above.)"""
    params = EndpointParams(pf_rid=0x0000, total_vfs=65535, first_vf_offset_ari=1,
                            vf_stride_ari=1, first_vf_offset_non_ari=1, vf_stride_non_ari=1,
                            vf_bars=(Bar(0, 16 * 1024),))
    dut = SriovEndpoint(params)
    pf = params.pf_rid

    def make_testbench():
        model = EndpointModel(params)

        async def testbench(ctx):
            driver = EndpointDriver(ctx, dut, retry_rrs=False)
            board = Scoreboard(driver, ModelEndpointPort(model))

            async def raw(rid, offset, write=False, data=0, type1=0):
                cpl = await driver.config(type1, rid, offset // 4, 0xF, write, data)
                assert cpl.cycles == dut.config_latency
                assert cpl.data == 0
                return cpl.status

            # During the clear: a write to the PF gets RRS and has no effect (no bus capture
            # either); reads of the PF get RRS, on any bus; others get UR.
            assert await raw(pf, 0x04, write=True, data=0x6) == "RRS"
            assert await raw(0x0300, 0x04, write=True, data=0x6) == "RRS"
            assert await raw(pf + 1, 0x00) == "UR"              # VF 1: VF Enable is 0
            assert await raw(0x0500, 0x08, type1=1) == "UR"
            for _ in range(10):
                assert await raw(pf, 0x00) == "RRS"
            # The memory path does not wait: nothing is claimed (Memory Space Enable is 0).
            mem = MemoryDriver(ctx, dut)
            for addr in (0, 0x4000, 0xFFFF_FFFF_FFFF_F000):
                assert not (await mem.decode(addr, False)).claimed
            assert ctx.get(dut.pfs[0].vf_reset_busy)
            await ctx.tick().until(~dut.pfs[0].vf_reset_busy)
            # Right after it: everything as the model says, and the writes above were lost.
            assert ctx.get(dut.bus) == 0
            for offset in (0x00, 0x04, 0x08, 0x40, 0x48):
                assert (await board.config(TYPE0, pf, offset // 4, 0xF, False, 0)).status == "SC"
            assert model.pf_read(0x04 // 4) & 0x6 == 0
        return testbench

    simulate(dut, make_testbench, name="test_resets_readiness_65535")


def test_flr_then_ascending_write_back_of_the_saved_4k():
    """What a compliance tool does (ARM ACS p035): save the PF's 4 KiB, FLR, write every dword
    back in ascending order. Nothing hangs, every completion matches the model, and the state
    follows the spec's rules: SR-IOV Control (VF Enable) comes back before NumVFs, so VF
    Enable is set with NumVFs 0 (no VF exists) and the later NumVFs write is ignored."""
    params = example("igb-82576")
    dut = SriovEndpoint(params)
    pf = params.pf_rid
    sriov = params.sriov_cap_offset

    def make_testbench():
        model = EndpointModel(params)

        async def testbench(ctx):
            cfg = Config(ctx, dut, model)
            await cfg.write(pf, 0x04, 2, 0x0006)
            await cfg.write(pf, 0x48, 2, DEVCTL_DIRTY)
            await cfg.write(pf, 0x50, 2, LNKCTL_DIRTY)
            await cfg.write(pf, sriov + 0x10, 2, 4)
            await cfg.write(pf, sriov + 0x08, 2, 0x19)
            saved = [await cfg.read(pf, 4 * reg) for reg in range(1024)]
            assert saved[(sriov + 0x08) // 4] & 0xFFFF == 0x19
            await cfg.write(pf, 0x48, 2, 0x8000)                   # FLR
            for reg, value in enumerate(saved):
                cpl = await cfg.board.config(TYPE0, pf, reg, 0xF, True, value)
                assert cpl.status == "SC"
            assert await cfg.read(pf, sriov + 0x08) & 0xFFFF == 0x19     # VF Enable 1 ...
            assert await cfg.read(pf, sriov + 0x10) & 0xFFFF == 0        # ... with NumVFs 0
            assert await cfg.read(pf + params.first_vf_offset(True), 0x00) is None   # UR
            assert await cfg.read(pf, 0x48) & 0xFFFF == DEVCTL_DIRTY
            assert await cfg.read(pf, 0x04) & 0xFFFF == 0x0006
            assert cfg.board.compared == 5 + 1024 + 1 + 1024 + 5
        return testbench

    simulate(dut, make_testbench, name="test_resets_write_back")


def test_link_scope_fields_are_the_tables():
    """The register layer marks exactly the fields docs/resets.md says an FLR keeps (its PCI
    Express Capability table), in every example's PF chain, and none in the VF chain."""
    kept_by_table = {"device_control.max_payload_size", "link_control.aspm_control",
                     "link_control.read_completion_boundary",
                     "link_control.common_clock_configuration", "link_control.extended_synch",
                     "control.ari_capable_hierarchy"}
    for name in NAMES:
        params = example(name)
        for chain, expected in ((pf_chain(params), kept_by_table), (vf_chain(params), set())):
            link = {f"{reg.name}.{f.name}" for e in chain if e.regmap is not None
                    for reg in e.regmap.registers for f in reg.fields
                    if f.scope is ResetScope.LINK}
            assert link == expected, name
