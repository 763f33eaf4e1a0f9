"""The Linux host model's MSI-X setup, interrupt delivery and suspend/resume, on the reference
model behind the model-backed drivers (ModelEndpointPort, ModelMemoryPort, ModelInterruptPort).

Configuration: an 82576-like NIC (examples/igb-82576.toml) with MSI-X as the real part has it:
PF 10 vectors in BAR3 (16 KiB; table at 0, PBA at 0x2000), VFs 3 vectors in VF BAR3 (table at
0, PBA at 0x2000), and a PM capability in the PF and in every VF.

Addresses the host assigns (LinuxHost's bump allocator, README "igb-memory.script"): PF BAR0
0x8000_0000, BAR1 0x8002_0000, BAR3 0x8004_0000; VF BAR0 0x1_0000_0000 and VF BAR3
0x1_0002_0000 (room for TotalVFs = 8 apertures of 16 KiB each), so VF n's table is at
0x1_0002_0000 + (n-1) * 0x4000.

Messages: Linux writes address 0xFEE0_0000 | cpu << 12 and data = a host-wide vector number
handed out from 0x20 in setup order; the host model spreads vectors over 4 CPUs round-robin
(cpu = (data - 0x20) % 4).
"""

import asyncio
from pathlib import Path

import pytest

from sriov_ep.params import MsixParams, PmParams, format_bdf, load_params
from sriov_tb.cfg import Mismatch
from sriov_tb.host import (
    HostError,
    InterruptPort,
    LinuxHost,
    MemAccessResult,
    MemoryPort,
    MemTransaction,
    ModelEndpointPort,
    ModelInterruptPort,
    ModelMemoryPort,
    MsiMessage,
    RootPort,
    Transaction,
    memory_transaction,
)
from sriov_tb.model import EndpointModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

PF, VF1_RID = 0x0100, 0x0180           # 01:00.0; ARI: First VF Offset 0x80, VF Stride 2
PF_TABLE = 0x8004_0000
PF_PBA   = 0x8004_2000
VF_TABLE = 0x1_0002_0000                # VF1; VF n at + (n-1) * 0x4000


def vf_rid(n):
    return VF1_RID + 2 * (n - 1)


def vf_table(n):
    return VF_TABLE + (n - 1) * 0x4000


def igb_params(**changes):
    msix = MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000)
    vf_msix = MsixParams(vectors=3, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000)
    values = dict(msix=msix, vf_pm=PmParams(), vf_msix=vf_msix)
    values.update(changes)
    return load_params(EXAMPLES / "igb-82576.toml").replace(**values)


def make_host(params=None):
    params = params or igb_params()
    model = EndpointModel(params)
    root = RootPort(ModelEndpointPort(model), secondary_bus=params.pf_rid >> 8,
                    mem=ModelMemoryPort(model), irq=ModelInterruptPort(model))
    host = LinuxHost(root, params.pf_rid)
    return model, root, host


def run(coro):
    return asyncio.run(coro)


def message(data):
    """The (address, data) the host programs for host-wide vector number ``data``."""
    return 0xFEE0_0000 | ((data - 0x20) % 4) << 12, data


# -- Capability walk ------------------------------------------------------------------------------

def test_walk_records_pm_and_msix_offsets():
    """Enumeration records where PM and MSI-X are in the PF and in each VF (as the model places
    them)."""
    model, _root, host = make_host()

    async def body():
        await host.enable(2)
    run(body())
    pf = {s.name: s.offset for s in model.pf_chain}
    vf = {s.name: s.offset for s in model.vf_chain}
    assert (host.pf.pm, host.pf.msix, host.pf.pcie) == (pf["pm"], pf["msix"], pf["pcie"])
    for info in host.vfs:
        assert (info.pm, info.msix, info.pcie) == (vf["pm"], vf["msix"], vf["pcie"])


# -- MSI-X setup and delivery ---------------------------------------------------------------------

def test_pf_msix_setup_and_interrupts():
    model, root, host = make_host()

    async def body():
        await host.enumerate()
        state = await host.msix_setup(PF, 10)
        assert (state.table_size, state.table_addr) == (10, PF_TABLE)
        seen = await host.function_state(PF)
        results = [await root.irq.interrupt(0, v) for v in range(10)]
        return seen, results
    seen, results = run(body())
    # Message Control: Enable, Function Mask clear, Table Size 9; Interrupt Disable and BME set.
    assert seen["msix_control"] == 0x8009
    assert seen["command"] & 0x0406 == 0x0406
    assert seen["msix_table"] == [(0xFEE0_0000, 0, 0x20, 0), (0xFEE0_1000, 0, 0x21, 0),
                                  (0xFEE0_2000, 0, 0x22, 0), (0xFEE0_3000, 0, 0x23, 0),
                                  (0xFEE0_0000, 0, 0x24, 0), (0xFEE0_1000, 0, 0x25, 0),
                                  (0xFEE0_2000, 0, 0x26, 0), (0xFEE0_3000, 0, 0x27, 0),
                                  (0xFEE0_0000, 0, 0x28, 0), (0xFEE0_1000, 0, 0x29, 0)]
    assert seen["msix_pba"] == 0
    assert results == ["sent"] * 10
    assert model.messages == [(0, *message(0x20 + v), 0) for v in range(10)]
    assert host.msix_vector_of(0, 0xFEE0_1000, 0x25) == (PF, 5)


def test_msix_setup_sequence_follows_linux():
    """msix_capability_init's order on a VF: BME, Table Size, Enable|Function Mask, Table BIR,
    each Vector Control read, messages (each with a flushing read of Data), Interrupt Disable,
    mask all, Function Mask cleared, then each vector unmasked (request_irq)."""
    _model, root, host = make_host()

    async def body():
        await host.enable(1)
        start = len(root.transcript)
        await host.msix_setup(VF1_RID, 3)
        return root.transcript[start:]
    txns = run(body())
    cap = host.vfs[0].msix

    def short(t):
        if isinstance(t, Transaction):
            return (t.op, t.offset, t.value)
        return (t.op, t.addr - VF_TABLE, t.value)
    assert [short(t) for t in txns] == [
        ("cfgrd", 0x04, 0x0000), ("cfgwr", 0x04, 0x0004),            # pci_set_master
        ("cfgrd", cap + 2, 0x0002),                                   # pci_msix_vec_count
        ("cfgrd", cap + 2, 0x0002), ("cfgwr", cap + 2, 0xC002),       # Enable | Function Mask
        ("cfgrd", cap + 2, 0xC002),
        ("cfgrd", cap + 4, 0x0000_0003),                              # Table: BIR 3, offset 0
        ("memrd", 0x0C, 1), ("memrd", 0x1C, 1), ("memrd", 0x2C, 1),   # msix_prepare_msi_desc
        ("memwr", 0x00, 0xFEE0_0000), ("memwr", 0x04, 0), ("memwr", 0x08, 0x20),
        ("memrd", 0x08, 0x20),
        ("memwr", 0x10, 0xFEE0_1000), ("memwr", 0x14, 0), ("memwr", 0x18, 0x21),
        ("memrd", 0x18, 0x21),
        ("memwr", 0x20, 0xFEE0_2000), ("memwr", 0x24, 0), ("memwr", 0x28, 0x22),
        ("memrd", 0x28, 0x22),
        ("cfgrd", 0x04, 0x0004), ("cfgwr", 0x04, 0x0404),            # pci_intx_for_msi
        ("memwr", 0x0C, 1), ("memwr", 0x1C, 1), ("memwr", 0x2C, 1),   # msix_mask_all
        ("cfgrd", cap + 2, 0xC002), ("cfgwr", cap + 2, 0x8002),       # Function Mask cleared
        ("memwr", 0x0C, 0), ("memwr", 0x1C, 0), ("memwr", 0x2C, 0),   # request_irq: unmask
    ]
    mem = [t for t in txns if isinstance(t, MemTransaction)]
    assert all((t.status, t.function, t.bar, t.internal) == ("SC", 1, 3, True) for t in mem)


def test_vf_msix_setup_and_interrupts():
    """PF and four VFs set up; each VF's messages carry its own address/data; the VF tables
    live in each VF's own aperture of VF BAR3."""
    model, root, host = make_host()

    async def body():
        await host.enable(4)
        await host.msix_setup(PF, 10)                   # data 0x20..0x29
        for n in range(1, 5):                           # VF n: 0x2a + 3(n-1) ..
            state = await host.msix_setup(vf_rid(n), 3)
            assert state.table_addr == vf_table(n)
        model.messages.clear()
        root.irq.messages()
        out = [await root.irq.interrupt(f, v) for f, v in ((1, 2), (2, 1), (4, 0), (3, 2))]
        return out, root.irq.messages(), [await host.function_state(vf_rid(n))
                                          for n in range(1, 5)]
    results, messages, states = run(body())
    assert results == ["sent"] * 4
    assert messages == [(1, 0xFEE0_0000, 0x2C), (2, 0xFEE0_2000, 0x2E),
                        (4, 0xFEE0_3000, 0x33), (3, 0xFEE0_2000, 0x32)]
    for n, state in enumerate(states, start=1):
        first = 0x2A + 3 * (n - 1)
        assert state["msix_control"] == 0x8002
        assert state["msix_table"] == [(message(first + v)[0], 0, first + v, 0)
                                       for v in range(3)]
    assert states[1]["msix_table"] == [(0xFEE0_1000, 0, 0x2D, 0), (0xFEE0_2000, 0, 0x2E, 0),
                                       (0xFEE0_3000, 0, 0x2F, 0)]
    assert [host.function_rid(n) for n in range(5)] == [PF, 0x0180, 0x0182, 0x0184, 0x0186]
    assert [host.function_of(rid) for rid in (PF, 0x0180, 0x0186, 0x0188, 0x0181)] == \
        [0, 1, 4, None, None]


def test_interrupt_outcomes_before_setup():
    """Before the driver enables MSI-X a vector is held pending; a vector beyond the Table Size
    and a VF that is not enabled are dropped."""
    model, root, host = make_host()

    async def body():
        await host.enable(2)
        return [await root.irq.interrupt(f, v) for f, v in ((0, 0), (1, 2), (1, 3), (3, 0))]
    assert run(body()) == ["pending", "pending", "dropped", "dropped"]
    assert model.messages == []


def test_pending_then_unmask_delivers_after_the_write():
    """Masked vector -> pending (PBA bit set); the Vector Control write that unmasks it delivers
    the message, which the transcript shows right after that write."""
    _model, root, host = make_host()

    async def body():
        await host.enable(2)
        await host.msix_setup(vf_rid(2), 3)             # data 0x20..0x22
        await host.msix_mask(vf_rid(2), 1)
        assert await root.irq.interrupt(2, 1) == "pending"
        assert root.irq.messages() == []
        pba = await host.readl(vf_table(2) + 0x2000)
        start = len(root.transcript)
        await host.msix_mask(vf_rid(2), 1, masked=False)
        return pba, root.transcript[start:]
    pba, txns = run(body())
    assert pba == 0b010
    unmask, msg = txns
    assert (unmask.op, unmask.addr, unmask.value) == ("memwr", vf_table(2) + 0x1C, 0)
    assert isinstance(msg, MsiMessage)
    assert (msg.function, msg.bdf, msg.addr, msg.data) == (2, "01:10.2", 0xFEE0_1000, 0x21)
    assert msg.vector == 1
    assert str(msg) == ("msg 01:10.2 (VF 2) vector 1: MWr 0x00000000fee01000 data 0x00000021 "
                        "from 01:10.2  [unmask 01:10.2 1]")


def test_function_mask_and_bus_master_hold_then_deliver_on_config_write():
    """Function Mask set, or Bus Master Enable clear: the interrupt is held pending, and the
    config write that clears the bit delivers it (recorded right after that write)."""
    _model, root, host = make_host()

    async def body():
        await host.enable(1)
        await host.msix_setup(VF1_RID, 3)               # data 0x20..0x22
        space = root.function(VF1_RID)
        cap = host.vfs[0].msix
        await space.write16(cap + 2, 0xC000)            # Enable | Function Mask
        assert await root.irq.interrupt(1, 0) == "pending"
        start = len(root.transcript)
        await space.write16(cap + 2, 0x8000)            # Function Mask cleared
        after_mask = root.transcript[start:]
        await space.write16(0x04, 0x0000)               # BME off
        assert await root.irq.interrupt(1, 2) == "pending"
        start = len(root.transcript)
        await space.write16(0x04, 0x0004)               # BME on
        return after_mask, root.transcript[start:]
    after_mask, after_bme = run(body())
    assert [type(t).__name__ for t in after_mask] == ["Transaction", "MsiMessage"]
    assert (after_mask[1].addr, after_mask[1].data) == (0xFEE0_0000, 0x20)
    assert [type(t).__name__ for t in after_bme] == ["Transaction", "MsiMessage"]
    assert (after_bme[1].addr, after_bme[1].data) == (0xFEE0_2000, 0x22)


def test_vf_msix_count():
    """The PF side sets a VF's Table Size while its MSI-X is disabled; Linux then allocates no
    more vectors than the table has; refused once the VF's MSI-X is enabled."""
    _model, root, host = make_host()

    async def body():
        await host.enable(2)
        assert await root.irq.vf_msix_count(1, 2) is True
        state = await host.msix_setup(VF1_RID, 3)
        refused = await root.irq.vf_msix_count(1, 1)
        return state, refused, await host.function_state(VF1_RID)
    state, refused, seen = run(body())
    assert (state.table_size, len(state.vectors)) == (2, 2)
    assert refused is False
    assert seen["msix_control"] == 0x8001
    assert len(seen["msix_table"]) == 2


def test_msix_setup_refusals():
    _model, _root, host = make_host(igb_params(vf_msix=None))

    async def body():
        await host.enable(1)
        await host.msix_setup(PF, 2)
        with pytest.raises(HostError, match="already enabled"):
            await host.msix_setup(PF, 2)
        with pytest.raises(HostError, match="01:10.0 has no MSI-X capability"):
            await host.msix_setup(VF1_RID, 1)
    run(body())


# -- Suspend and resume ---------------------------------------------------------------------------

def _program_every_function(host, root, *, vfs=8):
    """Enable ``vfs`` VFs; MSI-X on the PF and every VF but VF5; some masks, a Function Mask,
    Relaxed Ordering off in one VF: state worth restoring."""
    async def body():
        await host.enable(vfs)
        await host.msix_setup(PF, 10)
        for n in range(1, vfs + 1):
            if n != 5:
                await host.msix_setup(vf_rid(n), 3)
        await host.msix_mask(PF, 7)
        if vfs >= 3:
            await host.msix_mask(vf_rid(3), 2)
        pcie = host.vfs[1].pcie
        space = root.function(vf_rid(2))
        await space.write16(pcie + 8, await space.read16(pcie + 8) & ~0x0010)
    return body()


def test_suspend_resume_returns_every_function_to_its_state():
    model, root, host = make_host()
    rids = [PF] + [vf_rid(n) for n in range(1, 9)]

    async def body():
        await _program_every_function(host, root)
        before = {rid: await host.function_state(rid) for rid in rids}
        await host.suspend()
        asleep = [model.power_state(f) for f in range(9)]
        # In D3hot nothing decodes memory.
        unclaimed = [model.decode_memory(a)[0] for a in (PF_TABLE, vf_table(1), vf_table(8))]
        interrupt_d3 = await root.irq.interrupt(1, 0)
        start = len(root.transcript)
        await host.resume()
        resume = root.transcript[start:]
        after = {rid: await host.function_state(rid) for rid in rids}
        return before, asleep, unclaimed, interrupt_d3, resume, after
    before, asleep, unclaimed, interrupt_d3, resume, after = run(body())
    assert asleep == [3] * 9
    assert unclaimed == [False] * 3
    assert interrupt_d3 == "pending"            # no messages in D3hot
    # The PF's D3hot -> D0 (No_Soft_Reset 0) reset it and every VF: resume had work to do.
    assert ("pm_reset", 0, 0) in model.events
    assert host.warnings == []
    for rid in rids:
        assert after[rid] == before[rid], format_bdf(rid)
    # What was compared is worth comparing: masks, a Function Mask-free VF without MSI-X,
    # a changed Device Control, BME and Interrupt Disable.
    assert before[vf_rid(3)]["msix_table"][2][3] == 1
    assert before[PF]["msix_table"][7][3] == 1
    assert before[vf_rid(5)]["msix_control"] == 0x0002
    assert before[vf_rid(2)]["device_control"] & 0x0010 == 0
    assert before[vf_rid(1)]["command"] == 0x0004
    assert before[PF]["command"] & 0x0406 == 0x0406
    # VF1's vector 0, raised in D3hot, was pending; the PF's reset reset every VF, pending bits
    # included, so resume delivered nothing.
    assert not any(isinstance(t, MsiMessage) for t in resume)


def test_resume_order_follows_linux():
    """pci_pm_resume_noirq on the PF: PowerState D0 first, then pci_restore_state: PCIe
    control registers, the header down to Command, MSI-X, and only then sriov_restore_state
    (VF Enable | VF MSE last); then the VFs, each D0-checked and restored."""
    model, root, host = make_host()

    async def body():
        await _program_every_function(host, root, vfs=2)
        await host.suspend()
        start = len(root.transcript)
        await host.resume()
        return root.transcript[start:]
    txns = run(body())
    pm, msix = host.pf.pm, host.pf.msix
    sriov = host.sriov.cap
    config = [t for t in txns if isinstance(t, Transaction)]
    pf = [(t.op, t.offset, t.value) for t in config if t.rid == PF]
    assert pf[:3] == [("cfgrd", pm + 4, 0x0003), ("cfgwr", pm + 4, 0x0000),
                      ("cfgrd", pm + 4, 0x0000)]
    order = [(t.op, t.offset) for t in config if t.rid == PF and t.op == "cfgwr"]
    command = order.index(("cfgwr", 0x04))
    bar3 = order.index(("cfgwr", 0x1C))
    msix_on = order.index(("cfgwr", msix + 2))
    vf_enable = max(i for i, w in enumerate(order) if w == ("cfgwr", sriov + 8))
    assert bar3 < command < msix_on < vf_enable
    assert pf[-1] == ("cfgwr", sriov + 8, 0x0019)
    # After the PF, the VFs, in order.
    rids = [t.rid for t in config]
    first_vf = rids.index(VF1_RID)
    assert set(rids[:first_vf]) == {PF}
    assert max(i for i, r in enumerate(rids) if r == VF1_RID) < rids.index(vf_rid(2))
    assert set(rids[rids.index(vf_rid(2)):]) == {vf_rid(2)}
    assert ("pm_reset", 0, 0) in model.events


def test_suspend_order_vfs_then_pf():
    """pci_pm_suspend_noirq in reverse order of addition: the last VF first, the PF last; each
    function's state is saved before it goes to D3hot."""
    _model, root, host = make_host()

    async def body():
        await host.enable(3)
        start = len(root.transcript)
        await host.suspend()
        return root.transcript[start:]
    txns = run(body())
    d3 = [t.rid for t in txns if isinstance(t, Transaction) and t.op == "cfgwr"]
    assert d3 == [vf_rid(3), vf_rid(2), VF1_RID, PF]
    first_reads = [t.rid for t in txns if isinstance(t, Transaction) and t.offset == 0]
    assert first_reads == [vf_rid(3), vf_rid(2), VF1_RID, PF]


def test_suspend_resume_with_no_soft_reset():
    """No_Soft_Reset 1: D3hot -> D0 keeps everything; sriov_restore_state finds VF Enable set
    and stops; the state is as before."""
    model, root, host = make_host(igb_params(pm=PmParams(no_soft_reset=True),
                                             vf_pm=PmParams(no_soft_reset=True)))
    rids = [PF] + [vf_rid(n) for n in range(1, 5)]

    async def body():
        await _program_every_function(host, root, vfs=4)
        before = {rid: await host.function_state(rid) for rid in rids}
        await host.suspend()
        await host.resume()
        return before, {rid: await host.function_state(rid) for rid in rids}
    before, after = run(body())
    assert after == before
    assert not any(e[0] == "pm_reset" for e in model.events)


def test_suspend_resume_refusals():
    _model, _root, host = make_host()

    async def body():
        with pytest.raises(HostError, match="never enumerated"):
            await host.suspend()
        await host.enable(1)
        with pytest.raises(HostError, match="not suspended"):
            await host.resume()
        await host.suspend()
        with pytest.raises(HostError, match="already suspended"):
            await host.suspend()
    run(body())


def test_interrupts_after_resume_are_the_same_messages():
    model, root, host = make_host()

    async def body():
        await _program_every_function(host, root, vfs=3)
        root.irq.messages()
        first = [await root.irq.interrupt(f, 1) for f in (0, 1, 2, 3)]
        sent_before = root.irq.messages()
        await host.suspend()
        await host.resume()
        root.irq.messages()
        again = [await root.irq.interrupt(f, 1) for f in (0, 1, 2, 3)]
        return first, sent_before, again, root.irq.messages()
    first, sent_before, again, sent_after = run(body())
    assert first == again == ["sent"] * 4
    assert sent_after == sent_before
    assert sent_before[1] == (1, 0xFEE0_3000, 0x2B)          # VF1: data 0x2a..0x2c


# -- Drivers --------------------------------------------------------------------------------------

class _RecordingPort:
    """A memory port that records each access and answers every read as an internal one with
    QWORD 0x8877665544332211."""

    def __init__(self):
        self.calls = []

    async def access(self, addr, write, data=0, be=0xFF):
        self.calls.append((addr, write, data, be))
        return MemAccessResult(False, True, True, 1, 3, addr & 0x3FFF,
                               0 if write else 0x8877665544332211)


@pytest.mark.parametrize("addr, size, value, calls, result", [
    (0x1000, 8, 0, [(0x1000, False, 0, 0xFF)], 0x8877665544332211),
    (0x1004, 4, 0, [(0x1004, False, 0, 0xF0)], 0x88776655),
    (0x1000, 4, 0, [(0x1000, False, 0, 0x0F)], 0x44332211),
    (0x1006, 4, 0, [(0x1006, False, 0, 0xC0), (0x1008, False, 0, 0x03)], 0x22118877),
])
def test_memory_transaction_reads_by_qword(addr, size, value, calls, result):
    port = _RecordingPort()
    txn = run(memory_transaction(port, "memrd", addr, size))
    assert port.calls == calls
    assert (txn.status, txn.value, txn.internal, txn.function, txn.bar) == \
        ("SC", result, True, 1, 3)


def test_memory_transaction_writes_with_byte_enables():
    port = _RecordingPort()
    run(memory_transaction(port, "memwr", 0x100C, 4, 0x00000001))
    run(memory_transaction(port, "memwr", 0x1008, 8, 0x1_0000_0022))
    assert port.calls == [(0x100C, True, 0x1_0000_0000, 0xF0),
                          (0x1008, True, 0x1_0000_0022, 0xFF)]


def test_memory_transaction_unclaimed_and_user_memory():
    model = EndpointModel(igb_params())
    port = ModelMemoryPort(model)
    txn = run(memory_transaction(port, "memrd", 0x8004_0000, 4))
    assert (txn.status, txn.value, txn.function) == ("UR", 0xFFFF_FFFF, None)


def test_checked_ports_catch_disagreement():
    """InterruptPort and MemoryPort.access compare a design with the model."""
    model = EndpointModel(igb_params())

    class Liar:
        async def interrupt(self, function, vector):
            return "sent"

        def messages(self):
            return [(0, 0xFEE0_0000, 0x20)]

        async def access(self, addr, write, data=0, be=0xFF):
            return MemAccessResult(True, False, False, 0, 0, 0)

    irq = InterruptPort(Liar(), ModelInterruptPort(model))
    with pytest.raises(Mismatch, match="interrupt function 0 vector 0: design sent, model "
                                       "pending"):
        run(irq.interrupt(0, 0))
    with pytest.raises(Mismatch, match="MSI-X messages: design"):
        irq.messages()
    mem = MemoryPort(Liar(), model)
    assert mem.has_access
    with pytest.raises(Mismatch, match="design PF BAR0 \\+ 0x0 \\(claimed\\), model not "
                                       "claimed"):
        run(mem.access(0x8000_0000, False))
