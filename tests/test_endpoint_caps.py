# amaranth: UnusedElaboratable=no
"""The endpoint's capabilities on the RTL, checked against the reference model: the capability
chains, Power Management, MSI-X (capability, tables, PBA, delivery, per-VF Table Size, resets),
the user-owned configuration space and the Linux suspend/resume scenario.

Every config request goes through a :class:`Scoreboard`, every memory request through a
:class:`MemoryPort`, every interrupt and every MSI-X message through an :class:`InterruptPort`:
the design and :class:`EndpointModel` must agree on each. Expected values on top of that are
literals from the spec and the parameters below, never from the RTL's tables.

Configuration: an 82576-like NIC built here (not examples/igb-82576.toml, which may change):
PF BAR0 and BAR1 128 KiB, BAR3 16 KiB (32-bit); VF BAR0 and BAR3 16 KiB, 64-bit prefetchable;
PM in the PF (default) and in every VF; PF MSI-X 10 vectors, VF MSI-X 3 vectors (up to 4), each
with its table at offset 0 and its PBA at 0x2000 of (VF) BAR3. ARI at 0x100, SR-IOV at 0x140.
First VF Offset 0x80, VF Stride 2 (ARI): VF n is 01:10.0 + 2(n-1).

Addresses LinuxHost assigns: PF BAR0 0x8000_0000, BAR1 0x8002_0000, BAR3 0x8004_0000; VF BAR0
0x1_0000_0000, VF BAR3 0x1_0002_0000 (VF n's table at + (n-1) * 0x4000). Messages Linux
programs: address 0xFEE0_0000 | cpu << 12, data = a host-wide number from 0x20 in setup order,
cpu = (data - 0x20) % 4.

One simulation per scenario; the whole file runs in well under a minute.
"""

import random

import pytest

from sriov_ep.endpoint import SriovEndpoint, config_latency
from sriov_ep.params import Bar, EndpointParams, MsixParams, PmParams, UserCap
from sriov_tb.host import (
    EndpointDriver,
    InterruptDriver,
    InterruptPort,
    LinuxHost,
    MemoryDriver,
    MemoryPort,
    ModelEndpointPort,
    ModelInterruptPort,
    MsiMessage,
    RootPort,
    Scoreboard,
    SettledDriver,
    UserRegisters,
    user_config_responder,
)
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

KiB = 1 << 10
PF = 0x0100
PF_TABLE, PF_PBA = 0x8004_0000, 0x8004_2000
VF_BAR0, VF_TABLE = 0x1_0000_0000, 0x1_0002_0000

# Config-space offsets (the chains, by the placement rule: PCIe fixed at 0x40, PM right after
# its 0x3c bytes, MSI-X after PM's 8; ARI at 0x100, SR-IOV at 0x140; user capabilities after).
PCIE, PM, MSIX = 0x40, 0x7c, 0x84
ARI, SRIOV = 0x100, 0x140
PMCSR, MSGCTL = PM + 4, MSIX + 2
SRIOV_CTRL, SRIOV_NUMVFS = SRIOV + 0x08, SRIOV + 0x10
DEVCTL = PCIE + 0x08
COMMAND = 0x04
CMD_MEMORY, CMD_MASTER, CMD_INTX_DISABLE = 0x0002, 0x0004, 0x0400
MSIX_ENABLE, MSIX_MASKALL = 0x8000, 0x4000


def vf_rid(n):
    return 0x0180 + 2 * (n - 1)


def vf_table(n):
    return VF_TABLE + (n - 1) * 0x4000


def vf_pba(n):
    return vf_table(n) + 0x2000


def message(data):
    """The (address, data) LinuxHost programs for host-wide vector number ``data``."""
    return 0xFEE0_0000 | ((data - 0x20) % 4) << 12, data


def igb_params(**changes):
    values = dict(
        vendor_id=0x8086, device_id=0x10C9, revision_id=0x01, class_code=0x020000,
        pf_rid=PF,
        pf_bars=(Bar(0, 128 * KiB), Bar(1, 128 * KiB), Bar(3, 16 * KiB)),
        total_vfs=8, vf_device_id=0x10CA,
        first_vf_offset_ari=0x80, vf_stride_ari=2,
        first_vf_offset_non_ari=0x180, vf_stride_non_ari=2,
        vf_bars=(Bar(0, 16 * KiB, is_64bit=True, prefetchable=True),
                 Bar(3, 16 * KiB, is_64bit=True, prefetchable=True)),
        msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000),
        vf_pm=PmParams(),
        vf_msix=MsixParams(vectors=3, max_vectors=4, table_bar=3, table_offset=0, pba_bar=3,
                           pba_offset=0x2000),
    )
    values.update(changes)
    return EndpointParams(**values)


DSN = UserCap("dsn", "extended", 12, cap_id=3)
VSEC = UserCap("vsec", "extended", 0x18, cap_id=0xb)


def user_params(timeout=16):
    return igb_params(user_caps=(DSN,), vf_user_caps=(VSEC,), user_cfg_timeout=timeout)


# -- The bench -----------------------------------------------------------------------------------


class Env:
    """One simulation: the design and the model behind checked ports, a Linux host on top."""

    def __init__(self, ctx, dut, params, model):
        self.ctx, self.dut, self.params, self.model = ctx, dut, params, model
        irq = InterruptDriver(ctx, dut)
        self.board = Scoreboard(SettledDriver(EndpointDriver(ctx, dut), irq.settle),
                                ModelEndpointPort(model))
        self.mem = MemoryPort(SettledDriver(MemoryDriver(ctx, dut), irq.settle), model)
        self.irq = InterruptPort(irq, ModelInterruptPort(model))
        self.root = RootPort(self.board, secondary_bus=PF >> 8, mem=self.mem, irq=self.irq)
        self.root.model = model
        self.host = LinuxHost(self.root, PF)

    def space(self, rid):
        return self.root.function(rid)

    async def fire(self, function, vector):
        """Raise ``vector`` of ``function``: (outcome, messages delivered by it)."""
        outcome = await self.irq.interrupt(function, vector)
        return outcome, self.irq.messages()

    async def memrd(self, addr, size=4):
        return (await self.host.mmio("memrd", addr, size)).value

    async def memwr(self, addr, value, size=4):
        return await self.host.mmio("memwr", addr, size, value)

    def messages_since(self, start):
        """(function, address, data) of the MSI-X messages recorded since transcript index
        ``start`` (the ones config or table writes delivered)."""
        return [(t.function, t.addr, t.data) for t in self.root.transcript[start:]
                if isinstance(t, MsiMessage)]

    def compared(self):
        return self.board.compared + self.mem.compared + self.irq.compared


def run(params, body, *, name, user=None, rtl_user=None):
    """Simulate ``SriovEndpoint(params)`` with ``await body(env)``. ``user``: the model's user
    configuration handler; ``rtl_user``: the one a background testbench serves the design's
    ``ucfg`` channel with (none: nothing answers)."""
    dut = SriovEndpoint(params)
    done = []

    def make_testbench():
        done.clear()

        async def testbench(ctx):
            env = Env(ctx, dut, params, EndpointModel(params, user=user))
            await body(env)
            assert env.compared() > 0
            done.append(env)
        if rtl_user is None:
            return testbench
        return testbench, user_config_responder(dut, rtl_user)

    simulate(dut, make_testbench, name=f"test_endpoint_caps_{name}")
    assert done, "the testbench did not finish"
    return done[0]


# -- Chains, Power Management ---------------------------------------------------------------------


async def walk(space):
    """The legacy and extended capability lists: [(offset, id, next)]."""
    legacy, extended = [], []
    assert await space.read16(0x06) & 0x0010            # Capabilities List
    ptr = await space.read8(0x34)
    while ptr:
        cap_id, nxt = await space.read8(ptr), await space.read8(ptr + 1)
        legacy.append((ptr, cap_id, nxt))
        ptr = nxt
    ptr = 0x100
    while ptr:
        header = await space.read32(ptr)
        extended.append((ptr, header & 0xffff, header >> 20))
        ptr = header >> 20
    return legacy, extended


def test_chains_and_power_management():
    """Chain walks with literal offsets (PF and VF); capability fields; PowerState writes;
    D3hot stops memory decode (PF and one VF, the others go on); D3hot -> D0 of a VF resets it;
    D3hot -> D0 of the PF resets it and clears VF Enable."""
    async def body(env):
        host = env.host
        await host.enable(4)
        assert host.pf.bars == {0: (0x8000_0000, 128 * KiB), 1: (0x8002_0000, 128 * KiB),
                                3: (PF_TABLE, 16 * KiB)}
        pf, vf1, vf2 = env.space(PF), env.space(vf_rid(1)), env.space(vf_rid(2))
        assert await walk(pf) == ([(PCIE, 0x10, PM), (PM, 0x01, MSIX), (MSIX, 0x11, 0)],
                                  [(ARI, 0x000e, SRIOV), (SRIOV, 0x0010, 0)])
        assert await walk(vf1) == ([(PCIE, 0x10, PM), (PM, 0x01, MSIX), (MSIX, 0x11, 0)],
                                   [(ARI, 0x000e, 0)])
        # PM: PMC version 3, no D1/D2, no PME; PMCSR D0, No_Soft_Reset 0.
        for space in (pf, vf1):
            assert await space.read32(PM) == 0x0003_8401
            assert await space.read32(PMCSR) == 0
        # MSI-X: Table Size 9 (PF) / 2 (VF); table BIR 3 offset 0; PBA BIR 3 offset 0x2000.
        assert await pf.read32(MSIX) == 0x0009_0011
        assert await vf1.read32(MSIX) == 0x0002_0011
        for space in (pf, vf1):
            assert (await space.read32(MSIX + 4), await space.read32(MSIX + 8)) == \
                (0x0000_0003, 0x0000_2003)

        # PowerState: D1 and D2 are not supported (ignored); D3hot is.
        for value, now in ((1, 0), (2, 0), (3, 3), (2, 3), (1, 3)):
            await vf2.write16(PMCSR, value)
            assert await vf2.read16(PMCSR) == now
        # VF2 in D3hot claims nothing; VF1 and VF3 still decode; config still answers.
        assert (await env.mem.access(VF_BAR0 + 0x4000, False)).answered is False
        assert (await env.mem.access(vf_table(2), False)).answered is False
        assert (await env.mem.access(VF_BAR0, False)).claimed
        assert (await env.mem.access(VF_BAR0 + 0x8000, True, 0x1234, 0x0F)).claimed
        assert await vf2.read8(0x34) == PCIE
        # D3hot -> D0 (No_Soft_Reset 0): VF2 is reset (Bus Master Enable back to 0).
        await vf2.write16(PMCSR, 0)
        assert await vf2.read16(PMCSR) == 0
        assert (await env.mem.access(VF_BAR0 + 0x4000, False)).claimed
        await vf1.write16(COMMAND, CMD_MASTER)
        await vf2.write16(COMMAND, CMD_MASTER)
        await vf2.write16(PMCSR, 3)
        await vf2.write16(PMCSR, 0)
        assert await vf2.read16(COMMAND) == 0
        assert await vf1.read16(COMMAND) == CMD_MASTER

        # PF in D3hot: its BARs claim nothing, the VFs' go on; D0 again resets the PF.
        assert (await env.mem.access(0x8000_0000, False)).claimed
        await pf.write16(PMCSR, 3)
        assert await pf.read16(PMCSR) == 3
        assert (await env.mem.access(0x8000_0000, False)).answered is False
        assert (await env.mem.access(PF_TABLE, False)).answered is False
        assert (await env.mem.access(VF_BAR0, False)).claimed
        assert await pf.read16(SRIOV_CTRL) & 0x0001                 # VF Enable still set
        await pf.write16(PMCSR, 0)
        assert await pf.read16(PMCSR) == 0
        # VF Enable cleared; ARI Capable Hierarchy (0x10) is the device's: kept (resets.md)
        assert await pf.read16(SRIOV_CTRL) == 0x0010
        assert await pf.read16(COMMAND) == 0                        # PF reset
        assert await vf1.read32(0x00) == 0xffff_ffff                 # the VFs are gone
        assert (await env.mem.access(VF_BAR0, False)).answered is False
        assert ("vfs_reset", 0) in env.model.events and ("pm_reset", 0, 0) in env.model.events

    run(igb_params(), body, name="chains_pm")


# -- MSI-X -----------------------------------------------------------------------------------------


async def setup_msix(env, vfs=2):
    """Enable 4 VFs; MSI-X through Linux on the PF (10 vectors, data 0x20..0x29), then on VF 1..
    ``vfs`` (3 vectors each: VF1 0x2a..0x2c, VF2 0x2d..0x2f)."""
    await env.host.enable(4)
    await env.host.msix_setup(PF, 10)
    for n in range(1, vfs + 1):
        await env.host.msix_setup(vf_rid(n), 3)


def test_msix_delivery_masking_and_gates():
    """Delivery with exact address/data on the PF and two VFs; a masked vector goes pending
    (PBA) and out on unmasking; Function Mask, MSI-X Enable off and Bus Master Enable off hold
    interrupts pending, and restoring each delivers them; vectors past the Table Size and
    functions without MSI-X drop."""
    async def body(env):
        await setup_msix(env)
        host = env.host
        pf, vf1 = env.space(PF), env.space(vf_rid(1))
        for v in range(10):
            assert await env.fire(0, v) == ("sent", [(0, *message(0x20 + v))])
        for n, first in ((1, 0x2a), (2, 0x2d)):
            for v in range(3):
                assert await env.fire(n, v) == ("sent", [(n, *message(first + v))])
        assert await env.fire(0, 10) == ("dropped", [])
        assert await env.fire(1, 3) == ("dropped", [])
        assert await env.fire(3, 0) == ("pending", [])          # VF3: MSI-X not enabled
        assert await env.fire(5, 0) == ("dropped", [])          # VF5 does not exist
        assert await env.memrd(vf_pba(3), 8) == 0x1

        # Mask VF1 vector 1: pending, seen in the PBA; unmasking delivers it.
        await host.msix_mask(vf_rid(1), 1)
        assert await env.memrd(vf_table(1) + 0x1c) == 1
        assert await env.fire(1, 1) == ("pending", [])
        assert await env.fire(1, 1) == ("pending", [])          # once: one message later
        assert await env.memrd(vf_pba(1), 8) == 0x2
        start = len(env.root.transcript)
        await host.msix_mask(vf_rid(1), 1, masked=False)
        assert env.messages_since(start) == [(1, *message(0x2b))]
        assert await env.memrd(vf_pba(1), 8) == 0

        # Function Mask on the PF: everything pending; cleared: delivered lowest first.
        await pf.write16(MSGCTL, MSIX_ENABLE | MSIX_MASKALL)
        assert await pf.read16(MSGCTL) == 0xC009
        for v in (7, 2, 7):
            assert await env.fire(0, v) == ("pending", [])
        assert await env.memrd(PF_PBA, 8) == 0x84
        start = len(env.root.transcript)
        await pf.write16(MSGCTL, MSIX_ENABLE)
        assert env.messages_since(start) == [(0, *message(0x22)), (0, *message(0x27))]

        # MSI-X Enable off (VF1): pending; on again: delivered.
        await vf1.write16(MSGCTL, 0)
        assert await env.fire(1, 2) == ("pending", [])
        start = len(env.root.transcript)
        await vf1.write16(MSGCTL, MSIX_ENABLE)
        assert env.messages_since(start) == [(1, *message(0x2c))]

        # Bus Master Enable off (VF2): held pending, not dropped; on again: delivered.
        await env.space(vf_rid(2)).write16(COMMAND, 0)
        assert await env.fire(2, 0) == ("pending", [])
        start = len(env.root.transcript)
        await env.space(vf_rid(2)).write16(COMMAND, CMD_MASTER)
        assert env.messages_since(start) == [(2, *message(0x2d))]

        # PF Bus Master Enable off does not gate the VFs.
        command = await pf.read16(COMMAND)
        await pf.write16(COMMAND, command & ~CMD_MASTER)
        assert await env.fire(0, 0) == ("pending", [])
        assert await env.fire(1, 0) == ("sent", [(1, *message(0x2a))])
        start = len(env.root.transcript)
        await pf.write16(COMMAND, command)
        assert env.messages_since(start) == [(0, *message(0x20))]

    run(igb_params(), body, name="msix_delivery")


def test_msix_tables_isolation_and_table_size():
    """Table and PBA accesses of every width at the PF's and VFs' apertures (DWORD and QWORD,
    reads and writes, Vector Control's reserved bits, entries past the Table Size, PBA writes
    ignored); one VF's table does not show in another's; the per-VF Table Size port (accepted
    only with MSI-X disabled, 1..max_vectors, 0 = default; refused for VFs that do not exist);
    a VF FLR resets MSI-X Enable, Function Mask and the masks but keeps the Table Size; clearing
    VF Enable resets every VF's MSI-X state, Table Size included."""
    async def body(env):
        host = env.host
        await host.enable(4)
        await host.msix_setup(vf_rid(1), 3)
        # Reset values: every vector masked, addresses and data 0, nothing pending.
        for addr in (PF_TABLE, vf_table(2)):
            assert [await env.memrd(addr + 4 * d) for d in range(4)] == [0, 0, 0, 1]
        # QWORD writes and reads; Message Address bits 1:0 read 0.
        await env.memwr(PF_TABLE + 0x50, 0x0000_0001_FEE0_3003, 8)
        assert await env.memrd(PF_TABLE + 0x50, 8) == 0x0000_0001_FEE0_3000
        await env.memwr(PF_TABLE + 0x58, 0xFFFF_FFFF_0000_0042, 8)
        assert await env.memrd(PF_TABLE + 0x58, 8) == 0x0000_0001_0000_0042
        # DWORD writes, byte-enabled: only Vector Control's Mask bit is writable.
        await env.memwr(PF_TABLE + 0x5c, 0xFFFF_FFFE)
        assert await env.memrd(PF_TABLE + 0x5c) == 0
        await env.memwr(PF_TABLE + 0x54, 0xABCD_0123)
        assert await env.memrd(PF_TABLE + 0x50, 8) == 0xABCD_0123_FEE0_3000
        await env.memwr(PF_TABLE + 0x59, 0x99, 1)               # one byte of Message Data
        assert await env.memrd(PF_TABLE + 0x58) == 0x9942
        # The last PF entry, and the PBA: read-only.
        await env.memwr(PF_TABLE + 0x90, 0x1234_5678_9ABC_DEF0, 8)
        assert await env.memrd(PF_TABLE + 0x94) == 0x1234_5678
        await env.memwr(PF_PBA, 0xFFFF_FFFF_FFFF_FFFF, 8)
        assert await env.memrd(PF_PBA, 8) == 0
        # Past the PF's 10 entries and past the PBA: BAR3 is the user's memory again.
        far = await env.mem.access(PF_TABLE + 0xa0, False)
        assert (far.claimed, far.internal) == (True, False)
        assert (await env.mem.access(PF_PBA + 8, False)).claimed

        # VF tables: VF2's entry 0 written; VF1's and VF3's entries 0 unchanged (isolation).
        vf1_entry = [await env.memrd(vf_table(1) + 4 * d) for d in range(4)]
        await env.memwr(vf_table(2), 0x0000_0000_FEE0_2000, 8)
        await env.memwr(vf_table(2) + 8, 0x0000_0000_0000_0077, 8)
        assert await env.memrd(vf_table(2), 8) == 0xFEE0_2000
        assert await env.memrd(vf_table(2) + 8, 8) == 0x77                  # and unmasked
        assert [await env.memrd(vf_table(1) + 4 * d) for d in range(4)] == vf1_entry
        assert [await env.memrd(vf_table(3) + 4 * d) for d in range(4)] == [0, 0, 0, 1]
        # Entry 3 is past VF2's Table Size (3): reads 0, writes ignored.
        await env.memwr(vf_table(2) + 0x30, 0xFEE0_1000)
        assert await env.memrd(vf_table(2) + 0x30, 8) == 0
        # VF2's vector 0 unmasked behind Linux's back, MSI-X off: held pending.
        assert await env.fire(2, 0) == ("pending", [])
        assert await env.memrd(vf_pba(2), 8) == 0x1

        # Per-VF Table Size.
        vf2, vf3 = env.space(vf_rid(2)), env.space(vf_rid(3))
        assert await env.irq.vf_msix_count(1, 2) is False       # VF1's MSI-X is enabled
        assert await env.irq.vf_msix_count(2, 5) is False       # above max_vectors (4)
        assert await env.irq.vf_msix_count(5, 2) is False       # VF5 is not enabled
        assert await env.irq.vf_msix_count(9, 2) is False       # beyond TotalVFs
        assert await env.irq.vf_msix_count(2, 4) is True
        assert await vf2.read16(MSGCTL) == 0x0003
        await env.memwr(vf_table(2) + 0x30, 0xFEE0_1000)        # entry 3 exists now
        assert await env.memrd(vf_table(2) + 0x30, 8) == 0xFEE0_1000
        assert await env.memrd(vf_table(2) + 0x3c) == 1         # masked
        assert await env.irq.vf_msix_count(3, 1) is True
        assert await vf3.read16(MSGCTL) == 0x0000
        assert await env.fire(3, 1) == ("dropped", [])
        assert await env.irq.vf_msix_count(3, 0) is True        # back to the default (3)
        assert await vf3.read16(MSGCTL) == 0x0002
        assert await env.fire(3, 2) == ("pending", [])

        # VF FLR of VF2: Enable, Function Mask and masks reset; its Table Size (4) stays.
        await vf2.write16(MSGCTL, MSIX_ENABLE | MSIX_MASKALL)
        await env.memwr(vf_table(2) + 0x1c, 0)
        await host.flr(vf_rid(2))
        assert await vf2.read16(MSGCTL) == 0x0003
        assert [await env.memrd(vf_table(2) + 16 * v + 12) for v in range(4)] == [1, 1, 1, 1]
        assert await env.memrd(vf_pba(2), 8) == 0
        # Message Address and Data are not reset.
        assert await env.memrd(vf_table(2), 8) == 0xFEE0_2000

        # VF Enable cleared and set again: every VF's MSI-X state is back to reset.
        await host.disable()
        await host.enable(4)
        assert await vf2.read16(MSGCTL) == 0x0002
        assert await env.space(vf_rid(1)).read16(MSGCTL) == 0x0002
        assert await env.memrd(vf_pba(3), 8) == 0
        for n in (1, 2, 3):
            assert [await env.memrd(vf_table(n) + 16 * v + 12) for v in range(3)] == [1, 1, 1]

    run(igb_params(), body, name="msix_tables")


def test_random_interrupts_and_masks():
    """A seeded random sequence of interrupts, Vector Control writes, Function Mask, MSI-X
    Enable and Bus Master Enable changes, PBA reads and message rewrites on the PF and two
    VFs: design and model agree on every outcome, message and read."""
    rng = random.Random(0x9_1357)
    functions = {0: (PF, PF_TABLE, PF_PBA, 10), 1: (vf_rid(1), vf_table(1), vf_pba(1), 3),
                 2: (vf_rid(2), vf_table(2), vf_pba(2), 3)}
    outcomes = {"sent": 0, "pending": 0, "dropped": 0}

    async def body(env):
        await setup_msix(env)
        delivered = 0
        for _ in range(300):
            f = rng.choice(list(functions))
            rid, table, pba, size = functions[f]
            space = env.space(rid)
            pick = rng.random()
            if pick < 0.45:
                outcome, msgs = await env.fire(f, rng.randrange(size + 1))
                outcomes[outcome] += 1
                delivered += len(msgs)
            elif pick < 0.65:
                v = rng.randrange(size)
                await env.memwr(table + 16 * v + 12, rng.choice((0, 1, 0xFFFF_FFFE, 3)))
            elif pick < 0.72:
                await space.write16(MSGCTL, MSIX_ENABLE | rng.choice((0, MSIX_MASKALL)))
            elif pick < 0.77:
                await space.write16(MSGCTL, rng.choice((0, MSIX_ENABLE)))
            elif pick < 0.84:
                base = CMD_MEMORY | CMD_INTX_DISABLE if f == 0 else 0
                await space.write16(COMMAND, base | rng.choice((0, CMD_MASTER)))
            elif pick < 0.94:
                await env.memrd(pba, 8)
            else:
                v = rng.randrange(size)
                await env.memwr(table + 16 * v + 8, 0x40 + rng.randrange(0x40))
        return delivered

    env = run(igb_params(), body, name="random_irq")
    assert all(outcomes.values()), outcomes
    assert sum(isinstance(t, MsiMessage) for t in env.root.transcript) > 0
    assert env.irq.compared >= 300 * 0.45 * 0.8


# -- User configuration space ----------------------------------------------------------------------


def test_user_config_windows_with_a_handler():
    """A PF DSN capability (extended, ID 3) after SR-IOV and a VF vendor-specific one (ID 0xb)
    after ARI: the endpoint answers their headers; everything else reaches the user logic with
    the function, window, dword, byte enables and data the model expects (the design's handler
    and the model's see the same calls)."""
    params = user_params()
    values = {(0, 0, 1): 0x1122_3344, (0, 0, 2): 0x5566_7788, (2, 0, 3): 0xCAFE_0002}
    rtl_user, model_user = UserRegisters(values, read_only={(0, 0, 1), (0, 0, 2)}), \
        UserRegisters(values, read_only={(0, 0, 1), (0, 0, 2)})

    async def body(env):
        await env.host.enable(2)
        pf, vf2 = env.space(PF), env.space(vf_rid(2))
        assert (await walk(pf))[1] == [(ARI, 0x000e, SRIOV), (SRIOV, 0x0010, 0x180),
                                       (0x180, 0x0003, 0)]
        assert (await walk(vf2))[1] == [(ARI, 0x000e, 0x108), (0x108, 0x000b, 0)]
        assert await pf.read32(0x180) == 0x0001_0003
        assert (await pf.read32(0x184), await pf.read32(0x188)) == (0x1122_3344, 0x5566_7788)
        await pf.write32(0x184, 0)                              # read-only in the handler
        assert await pf.read32(0x184) == 0x1122_3344
        await pf.write32(0x180, 0xFFFF_FFFF)                    # the header is the endpoint's
        assert await pf.read32(0x180) == 0x0001_0003
        assert await vf2.read32(0x108) == 0x0001_000b
        assert await vf2.read32(0x114) == 0xCAFE_0002
        await vf2.write8(0x111, 0xA5)                           # dword 2, byte 1
        assert await vf2.read32(0x110) == 0x0000_A500
        assert await env.space(vf_rid(1)).read32(0x110) == 0   # VF1's own register
        await env.space(vf_rid(1)).write16(0x11e, 0xBEEF)
        assert await env.space(vf_rid(1)).read32(0x11c) == 0xBEEF_0000
        assert await vf2.read32(0x11c) == 0

    env = run(params, body, name="user_handler", user=model_user, rtl_user=rtl_user)
    assert rtl_user.calls == model_user.calls
    writes = [c for c in rtl_user.calls if c[0] == "write"]
    assert writes == [("write", 0, 0, 1, 0xF, 0), ("write", 2, 0, 2, 0b0010, 0x0000_A500),
                      ("write", 1, 0, 5, 0b1100, 0xBEEF_0000)]
    assert ("read", 2, 0, 3) in rtl_user.calls and ("read", 0, 0, 2) in rtl_user.calls
    assert not any(c[3] == 0 for c in rtl_user.calls)          # headers never reach the user
    assert env.board.compared > 0


def test_user_config_windows_time_out_without_a_handler():
    """Nothing answers ``ucfg_req``: after ``user_cfg_timeout`` (16) cycles the endpoint
    completes the request itself (SC; a read returns 0); the header still reads right and the
    next requests go on."""
    params = user_params(timeout=16)

    async def body(env):
        await env.host.enable(1)
        pf, vf1 = env.space(PF), env.space(vf_rid(1))
        assert await pf.read32(0x180) == 0x0001_0003
        base = env.root._last.cycles
        assert base == config_latency(params)
        status, value = await pf.status_of_read(0x184, 4)
        assert (status, value) == ("SC", 0)
        slow = env.root._last.cycles
        assert base + 16 <= slow <= base + 16 + 4
        await pf.write32(0x188, 0x1234_5678)
        assert env.root._last.status == "SC"
        assert await pf.read32(0x188) == 0
        assert await vf1.read32(0x10c) == 0
        assert await vf1.read8(0x34) == PCIE                    # and the rest goes on
        assert await pf.read16(SRIOV_CTRL) & 0x0001

    run(params, body, name="user_timeout")


# -- Suspend and resume ----------------------------------------------------------------------------


def test_suspend_resume_restores_every_function():
    """Linux's suspend (save, D3hot, the VFs first) and resume (D0, which resets the PF and
    clears VF Enable; restore, which re-enables the VFs): every function's state (Command,
    Device Control, PowerState, MSI-X control, table and PBA) comes back equal. While
    suspended, config answers, memory is not decoded and interrupts are held pending (the
    resets on resume drop them)."""
    async def body(env):
        host = env.host
        await host.enable(4)
        await host.msix_setup(PF, 10)
        await host.msix_setup(vf_rid(1), 3)
        await host.msix_setup(vf_rid(3), 3)
        await host.msix_mask(vf_rid(3), 2)
        await host.msix_mask(PF, 4)
        rids = [PF] + [vf_rid(n) for n in range(1, 5)]
        before = {rid: await host.function_state(rid) for rid in rids}
        await host.suspend()
        assert host.warnings == []
        assert await env.space(PF).read16(PMCSR) == 3
        assert await env.space(vf_rid(2)).read16(PMCSR) == 3
        assert (await env.mem.access(PF_TABLE, False)).answered is False
        assert (await env.mem.access(vf_table(1), False)).answered is False
        assert await env.fire(0, 1) == ("pending", [])
        assert await env.fire(1, 0) == ("pending", [])
        await host.resume()
        assert host.warnings == []
        after = {rid: await host.function_state(rid) for rid in rids}
        assert after == before
        assert before[vf_rid(3)]["msix_table"][2][3] == 1                   # still masked
        assert before[PF]["msix_control"] == 0x8009
        assert await env.fire(1, 0) == ("sent", [(1, *message(0x2a))])
        assert await env.fire(3, 2) == ("pending", [])
        assert await env.fire(0, 9) == ("sent", [(0, *message(0x29))])

    run(igb_params(), body, name="suspend_resume")


@pytest.mark.parametrize("vf_pm", [False, True])
@pytest.mark.parametrize("latency", [1, 2])
def test_memory_decode_latency(latency, vf_pm):
    """Outside MSI-X tables a memory request is answered ``mem_decode_latency`` cycles after
    it is accepted; while a VF is in D3hot, a request a VF's BAR claims takes 3 more (its
    PowerState is read from the VF state memory), and one for the VF in D3hot is not claimed;
    a table access takes longer."""
    params = igb_params() if vf_pm else igb_params(vf_pm=None)
    dut = SriovEndpoint(params, mem_latency=latency)
    want = dut.mem_decode_latency
    assert want == latency + 1
    assert dut.mem_latency_of(vf_claimed=True) == want
    want_slow = want + 3 if vf_pm else want
    assert dut.mem_latency_of(vf_claimed=True, vf_low_power=True) == want_slow

    def make_testbench():
        async def testbench(ctx):
            model = EndpointModel(params)
            root = RootPort(Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model)),
                            secondary_bus=1)
            host = LinuxHost(root, PF)
            await host.enable(2)
            mem = MemoryPort(MemoryDriver(ctx, dut), model)
            for addr in (0x8000_0000, PF_TABLE + 0xa0, 0x7000_0000, VF_BAR0 + 0x4000):
                assert (await mem.access(addr, False)).cycles == want
            assert (await mem.access(PF_TABLE, False)).cycles > want
            assert (await mem.access(vf_table(2), False)).cycles > want
            if vf_pm:
                vf2 = root.function(vf_rid(2))
                await vf2.write16(PMCSR, 3)                 # VF 2 to D3hot
                result = await mem.access(VF_BAR0 + 0x4000, False)
                assert (result.cycles, result.claimed) == (want_slow, False)
                result = await mem.access(VF_BAR0, False)           # VF 1, in D0
                assert (result.cycles, result.claimed) == (want_slow, True)
                assert (await mem.access(0x8000_0000, False)).cycles == want      # the PF
                await vf2.write16(PMCSR, 0)                 # back to D0 (a VF reset)
                assert (await mem.access(VF_BAR0, False)).cycles == want
        return testbench

    simulate(dut, make_testbench, name=f"test_endpoint_caps_latency_{latency}_{vf_pm}")
