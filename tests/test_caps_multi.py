# amaranth: UnusedElaboratable=no
"""Configuration spaces of the PFs of a multi-PF device (docs/multi-pf.md §3, §4).

Expected values are literal numbers from PCI Express Base (ARI §7.8.7: Next Function Number;
§7.5.1.1.9: Header Type's Multi-Function bit; ACS §7.7.11: ID 0x000D, version 1) and from the
design note (ARI Capable Hierarchy: RW in PF 0, RsvdP elsewhere, held while any PF has VF Enable,
kept by a PF function-level reset), never read back from the register tables the RTL is built
from. Registers are read through the hardware (a RegisterBank or SriovCapability in simulation)
where the test is about behaviour, and from the chain's register maps where it is about the
constants a chain carries.
"""

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sriov_ep.caps import pf_chain, pf_structures, vf_chain
from sriov_ep.caps.acs import acs_capability_map
from sriov_ep.caps.sriov import SriovCapability
from sriov_ep.params import AcsParams, EndpointParams, ParamError, PfParams
from sriov_ep.regs import RegisterBank, RegisterPort
from sriov_ep.tools.regmap import per_vf_fields, structures
from sriov_tb.cfg import RegisterPortDriver
from sriov_tb.sim import simulate

# -- Test devices ---------------------------------------------------------------------------------

def device(functions, total_vfs=2, **pf_changes):
    """PFs at ``functions`` of bus 1, ``total_vfs`` VFs each, stride 1. With ARI, PF k's VFs are
    functions ``base + k*T ..`` past the highest PF; without, ``02:00.0 + k*T ..``."""
    base = max(functions) + 1
    pfs = tuple(PfParams(pf_rid=0x100 + fn, total_vfs=total_vfs,
                         first_vf_offset_ari=base + k * total_vfs - fn,
                         first_vf_offset_non_ari=0x100 + k * total_vfs - fn, **pf_changes)
                for k, fn in enumerate(functions))
    # The layouts must not put two functions at one Routing ID (checked here independently).
    for ari in (True, False):
        rids = [pf.pf_rid for pf in pfs] + [pf.vf_rid(n, ari) for pf in pfs
                                            for n in range(1, total_vfs + 1)]
        assert len(set(rids)) == len(rids)
    return EndpointParams(pfs=pfs)


def entry(chain, name):
    return next(e for e in chain if e.name == name)


def dword_at(chain, offset):
    """Reset value of the dword at byte ``offset`` of a function's configuration space."""
    for e in chain:
        if e.offset <= offset < e.offset + e.size:
            return e.regmap.reset_value((offset - e.offset) // 4)
    return 0


def next_function(chain):
    """ARI Next Function Number: bits 15:8 of the ARI capability's dword 1."""
    return dword_at(chain, entry(chain, "ari").offset + 4) >> 8 & 0xff


# -- ARI Next Function Number ----------------------------------------------------------------------

@pytest.mark.parametrize("functions, expected", [
    ((0, 1), [1, 0]),
    ((0, 1, 2, 3), [1, 2, 3, 0]),
    ((0, 3, 8, 0x42), [3, 8, 0x42, 0]),
    (tuple(range(16)), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]),
])
def test_next_function_number_chain(functions, expected):
    params = device(functions)
    assert [next_function(pf_chain(params, k)) for k in range(len(functions))] == expected
    # VFs: Next Function Number 0 in every PF's VF chain.
    assert [next_function(vf_chain(params, k)) for k in range(len(functions))] == \
        [0] * len(functions)


def test_next_function_walk_like_linux():
    """Linux's next_ari_fn: from function 0, follow Next Function Number while it ascends."""
    params = device((0, 2, 5, 7, 9))
    by_fn = {pf.pf_rid & 0xff: k for k, pf in enumerate(params.pfs)}
    seen, fn = [], 0
    while True:
        seen.append(fn)
        nxt = next_function(pf_chain(params, by_fn[fn]))
        if nxt <= fn:
            break
        fn = nxt
    assert seen == [0, 2, 5, 7, 9]


def test_single_pf_next_function_and_header_type():
    params = EndpointParams()
    for chain in (pf_chain(params), pf_chain(params, 0), pf_chain(params.pfs[0])):
        assert next_function(chain) == 0
        assert dword_at(chain, 0x0C) >> 16 & 0xff == 0x00
        assert "acs" not in [e.name for e in chain]


# -- Header Type -----------------------------------------------------------------------------------

@pytest.mark.parametrize("functions", [(0, 1), (0, 1, 2, 3), tuple(range(16))])
def test_header_type_multi_function(functions):
    params = device(functions)
    for k in range(len(functions)):
        assert dword_at(pf_chain(params, k), 0x0C) >> 16 & 0xff == 0x80
        assert dword_at(vf_chain(params, k), 0x0C) >> 16 & 0xff == 0x00


# -- Simulation ----------------------------------------------------------------------------------

class WithClockDomain(Elaboratable):
    """``dut`` under an explicit ``sync`` domain, whose reset is the conventional reset."""

    def __init__(self, dut):
        self.dut    = dut
        self.domain = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.dut = self.dut
        return m


# -- ACS -------------------------------------------------------------------------------------------

class AcsBank(wiring.Component):
    """A RegisterBank over the ACS map, with its function-level reset on ``reset``."""
    cfg:   In(RegisterPort(1))
    reset: In(1)

    def __init__(self, regmap):
        self.regmap = regmap
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        bank = RegisterBank(self.regmap)
        bank.read(m, self.cfg.addr, self.cfg.r_data)
        bank.write(m, self.cfg.addr, self.cfg.w_en, self.cfg.w_be, self.cfg.w_data)
        bank.reset(m, self.reset)
        return m


def run_acs(acs, next_offset, body, name):
    dut = AcsBank(acs_capability_map(acs, next_offset))

    def make_testbench():
        async def testbench(ctx):
            await body(ctx, dut, RegisterPortDriver(ctx, dut.cfg))
        return testbench

    # (With Capability 0 the bank has no storage: the domain is declared explicitly.)
    simulate(WithClockDomain(dut), make_testbench, name=f"test_caps_multi_{name}")


@pytest.mark.parametrize("capability", [0x0000, 0x0004, 0x0008, 0x0040, 0x004C])
def test_acs_registers(capability):
    assert acs_capability_map(AcsParams(capability), 0x1A8).size == 8

    async def body(ctx, dut, port):
        # Header: ID 0x000D, version 1, next 0x1A8.
        assert await port.read_dword(0) == 0x1A81_000D
        assert await port.read_dword(1) == capability
        # Writes to the header and to ACS Capability change nothing; Control takes the
        # Capability bits only.
        await port.write_dword(0, 0xFFFF_FFFF, 0xF)
        assert await port.read_dword(0) == 0x1A81_000D
        await port.write_dword(1, 0xFFFF_FFFF, 0xF)
        assert await port.read_dword(1) == capability << 16 | capability
        await port.write_dword(1, 0x0000_FFFF, 0x3)
        assert await port.read_dword(1) == capability << 16 | capability
        # Byte enables: the upper Control byte alone changes nothing (bits 15:8 are RO 0).
        await port.write_dword(1, 0x0000_0000, 0x8)
        assert await port.read_dword(1) == capability << 16 | capability
        await port.write_dword(1, 0x0000_0000, 0x4)
        assert await port.read_dword(1) == capability
        # Control is function state: a function-level reset clears it.
        await port.write_dword(1, 0xFFFF_FFFF, 0xC)
        ctx.set(dut.reset, 1)
        await ctx.tick()
        ctx.set(dut.reset, 0)
        assert await port.read_dword(1) == capability

    run_acs(AcsParams(capability), 0x1A8, body, f"acs_{capability:04x}")


def test_acs_refuses_capability_bits_past_6():
    with pytest.raises(ValueError, match="15:7"):
        acs_capability_map(_raw_acs(0x0080))


def _raw_acs(capability):
    """An AcsParams that skipped its own checks (to reach the map's)."""
    acs = AcsParams()
    object.__setattr__(acs, "capability", capability)
    return acs


def test_acs_placement():
    # Several PFs: AcsParams() in every PF, after SR-IOV (0x140 + 0x40), linked from it.
    params = device((0, 1))
    for k in range(2):
        chain = pf_chain(params, k)
        assert [(e.name, e.offset, e.placed.next_offset) for e in chain[-3:]] == [
            ("ari", 0x100, 0x140), ("sriov", 0x140, 0x180), ("acs", 0x180, 0)]
        assert dword_at(chain, 0x180) == 0x0001_000D
        assert dword_at(chain, 0x184) == 0
        assert "acs" not in [e.name for e in vf_chain(params, k)]
    # SR-IOV at 0x160 (the 82576's place): ACS at 0x1A0.
    params = device((0, 1), sriov_cap_offset=0x160)
    assert entry(pf_chain(params, 1), "acs").offset == 0x1A0
    # A fixed offset, below SR-IOV: the list stays ascending.
    params = device((0, 1), acs=AcsParams(capability=0x4C, offset=0x108))
    chain = pf_chain(params, 0)
    assert [(e.name, e.offset, e.placed.next_offset) for e in chain[-3:]] == [
        ("ari", 0x100, 0x108), ("acs", 0x108, 0x140), ("sriov", 0x140, 0)]
    assert dword_at(chain, 0x108) == 0x1401_000D
    assert dword_at(chain, 0x10C) == 0x0000_004C
    # One PF: absent unless asked for; "auto" and None mean absent.
    assert "acs" not in [e.name for e in pf_chain(EndpointParams())]
    assert "acs" not in [s.name for s in pf_structures(PfParams())]
    assert "acs" not in [s.name for s in pf_structures(PfParams(acs=None))]
    chain = pf_chain(PfParams(acs=AcsParams(capability=4)))
    assert entry(chain, "acs").offset == 0x180
    assert dword_at(chain, 0x184) == 0x0000_0004


@pytest.mark.parametrize("acs, rule", [
    (AcsParams(offset=0x140), "overlaps sriov"),
    (AcsParams(offset=0x104), "overlaps ari"),
    (AcsParams(offset=0x182), "dword-aligned"),
])
def test_acs_bad_layouts_refused(acs, rule):
    with pytest.raises(ParamError, match=rule) as info:
        PfParams(acs=acs)
    assert info.value.args[0].startswith("pf.acs")


def test_acs_no_room_refused():
    with pytest.raises(ParamError, match="no room"):
        PfParams(ari_cap_offset=0x100, sriov_cap_offset=0xFC0, acs=AcsParams())


# -- The register map tool, per PF -----------------------------------------------------------------

def test_regmap_structures_per_pf():
    params = device((0, 1, 2))
    views = structures(params, "pf", 2)
    assert [(v.entry.name, v.first) for v in views][-3:] == [
        ("ari", 0x100), ("sriov", 0x140), ("acs", 0x180)]
    assert views[-1].heading == "PF 2 ACS Extended Capability"
    assert structures(params, "vf", 1)[0].heading == \
        "PF 1 VF Type 0 Configuration Space Header"
    with pytest.raises(ValueError, match="3 PFs"):
        structures(params)
    assert per_vf_fields(params, 1) == ["command.bus_master_enable (header)",
                                        "device_control.relaxed_ordering (pcie)",
                                        "device_control.no_snoop (pcie)"]
    # One PF: the headings stay as they are.
    assert structures(EndpointParams(), "pf")[0].heading == \
        "PF Type 0 Configuration Space Header"
    assert structures(EndpointParams(), "pf", 0)[0].heading == \
        "PF Type 0 Configuration Space Header"


# -- ARI Capable Hierarchy in SriovCapability ------------------------------------------------------

CONTROL = 0x08 // 4
OFFSET_STRIDE = 0x14 // 4


def run_sriov(dut, body, name):
    top = WithClockDomain(dut)

    def make_testbench():
        async def testbench(ctx):
            await body(ctx, dut, RegisterPortDriver(ctx, dut.cfg), top.domain)
        return testbench

    simulate(top, make_testbench, name=f"test_caps_multi_{name}")


# PF 1 of device((0, 1), total_vfs=4): ARI offset 2 + 4 - 1 = 5, non-ARI 0x100 + 4 - 1 = 0x103,
# both stride 1; PF 0: ARI offset 2, non-ARI 0x100.
PF0_NON_ARI, PF0_ARI = 0x0001_0100, 0x0001_0002
PF1_NON_ARI, PF1_ARI = 0x0001_0103, 0x0001_0005


def test_ari_bit_rw_in_pf0():
    params = device((0, 1), total_vfs=4)
    assert entry(pf_chain(params, 0), "sriov").regmap.register("control").field(
        "ari_capable_hierarchy").access.value == "RW"

    async def body(ctx, dut, port, domain):
        assert await port.read_dword(OFFSET_STRIDE) == PF0_NON_ARI
        await port.write_dword(CONTROL, 0x0000_0010, 0x1)
        assert await port.read_dword(CONTROL) == 0x0000_0010
        assert ctx.get(dut.ari_capable_hierarchy) == 1
        assert await port.read_dword(OFFSET_STRIDE) == PF0_ARI
        # ari_in does not matter in the owner.
        ctx.set(dut.ari_in, 0)
        await ctx.tick()
        assert ctx.get(dut.first_vf_offset) == 2
        await port.write_dword(CONTROL, 0x0000_0000, 0x1)
        assert await port.read_dword(CONTROL) == 0
        assert ctx.get(dut.ari_capable_hierarchy) == 0
        assert await port.read_dword(OFFSET_STRIDE) == PF0_NON_ARI

    run_sriov(SriovCapability(params.pfs[0], next_offset=0x180), body, "ari_owner")


def test_ari_bit_rsvdp_in_other_pf():
    params = device((0, 1), total_vfs=4)
    field = entry(pf_chain(params, 1), "sriov").regmap.register("control").field(
        "ari_capable_hierarchy")
    assert field.access.value == "RsvdP"

    async def body(ctx, dut, port, domain):
        assert await port.read_dword(OFFSET_STRIDE) == PF1_NON_ARI
        # The write is dropped: the bit reads 0 and offset/stride stay non-ARI.
        await port.write_dword(CONTROL, 0x0000_0010, 0x1)
        assert await port.read_dword(CONTROL) == 0
        assert ctx.get(dut.ari_capable_hierarchy) == 0
        assert await port.read_dword(OFFSET_STRIDE) == PF1_NON_ARI
        # The device's bit arrives on ari_in: offset and stride follow at once.
        ctx.set(dut.ari_in, 1)
        assert ctx.get(dut.first_vf_offset) == 5
        assert ctx.get(dut.ari_capable_hierarchy) == 1
        assert await port.read_dword(OFFSET_STRIDE) == PF1_ARI
        assert await port.read_dword(CONTROL) == 0          # still reads 0 here
        await port.write_dword(CONTROL, 0x0000_0000, 0x1)
        assert await port.read_dword(OFFSET_STRIDE) == PF1_ARI
        ctx.set(dut.ari_in, 0)
        assert await port.read_dword(OFFSET_STRIDE) == PF1_NON_ARI

    run_sriov(SriovCapability(params.pfs[1], next_offset=0x180, owns_ari=False), body,
              "ari_not_owner")


def test_ari_writes_ignored_while_held():
    params = device((0, 1), total_vfs=4)

    async def body(ctx, dut, port, domain):
        ctx.set(dut.ari_hold, 1)
        await port.write_dword(CONTROL, 0x0000_0010, 0x1)
        assert await port.read_dword(CONTROL) == 0
        assert await port.read_dword(OFFSET_STRIDE) == PF0_NON_ARI
        ctx.set(dut.ari_hold, 0)
        await port.write_dword(CONTROL, 0x0000_0010, 0x1)
        assert await port.read_dword(CONTROL) == 0x0000_0010
        ctx.set(dut.ari_hold, 1)
        # VF MSE still writable while held; ARI Capable Hierarchy kept at 1.
        await port.write_dword(CONTROL, 0x0000_0008, 0x1)
        assert await port.read_dword(CONTROL) == 0x0000_0018
        assert await port.read_dword(OFFSET_STRIDE) == PF0_ARI
        ctx.set(dut.ari_hold, 0)
        await port.write_dword(CONTROL, 0x0000_0000, 0x1)
        assert await port.read_dword(CONTROL) == 0

    run_sriov(SriovCapability(params.pfs[0], next_offset=0x180), body, "ari_hold")


@pytest.mark.parametrize("multi", [False, True])
def test_ari_survives_function_level_reset(multi):
    pf = device((0, 1), total_vfs=4).pfs[0] if multi else EndpointParams(total_vfs=4)

    async def body(ctx, dut, port, domain):
        await port.write_dword(CONTROL, 0x0000_0010, 0x1)       # ARI Capable Hierarchy
        await port.write_dword(0x10 // 4, 0x0000_0003, 0x3)     # NumVFs 3
        await port.write_dword(CONTROL, 0x0000_0019, 0x1)       # + VF Enable, VF MSE
        assert await port.read_dword(CONTROL) == 0x0000_0019
        # PF FLR / D3hot->D0: everything else returns to reset, ARI stays.
        ctx.set(dut.reset, 1)
        await ctx.tick()
        ctx.set(dut.reset, 0)
        assert await port.read_dword(CONTROL) == 0x0000_0010
        assert await port.read_dword(0x10 // 4) == 0
        assert (ctx.get(dut.ari_capable_hierarchy), ctx.get(dut.vf_enable)) == (1, 0)
        assert ctx.get(dut.first_vf_offset) == (2 if multi else 1)
        # The conventional reset (the domain's) clears it.
        ctx.set(domain.rst, 1)
        await ctx.tick()
        ctx.set(domain.rst, 0)
        assert await port.read_dword(CONTROL) == 0
        assert ctx.get(dut.ari_capable_hierarchy) == 0

    run_sriov(SriovCapability(pf), body, f"ari_flr_{'multi' if multi else 'single'}")
