"""The Linux host model, scripts and command line on devices of several PFs, run against the
reference model through the model-backed drivers (ModelEndpointPort, ModelMemoryPort,
ModelInterruptPort).

Configurations: examples/multi-pf/igb-82576-dual.toml (PFs 01:00.0 and 01:00.1, 8 VFs each;
ARI offset 0x80 / stride 2, non-ARI 0x180 / 2, so the PFs' VFs interleave: PF 0's VF n at
0x0180 + 2(n-1) or 0x0280 + 2(n-1), PF 1's one above; SR-IOV at 0x160, ACS at 0x1A0),
quad-pf.toml (PFs 01:00.0-3, 63 VFs each; ARI offset 4 + 62k, stride 1) and cpm5-16pf.toml
(16 PFs, 8..15 above function 7). Expected values are the files' documented layouts, Linux's
access sequences (drivers/pci/probe.c pci_scan_slot / next_fn, iov.c sriov_init, pci.c
pci_std_enable_acs, iommu.c pci_device_group) and the reference model.
"""

import asyncio
from pathlib import Path

import pytest

from sriov_ep.params import AcsParams, load_params
from sriov_tb.cli import CliError, _enable_counts, _num_vfs_per_pf, function_names, main
from sriov_tb.host import (
    BarMemories,
    HostError,
    LinuxHost,
    MemTransaction,
    ModelEndpointPort,
    ModelInterruptPort,
    ModelMemoryPort,
    MsiMessage,
    MsixTransaction,
    RootPort,
)
from sriov_tb.model import EndpointModel
from sriov_tb.script import ScriptError, check_pf_targets, parse_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "multi-pf"
DUAL = EXAMPLES / "igb-82576-dual.toml"
QUAD = EXAMPLES / "quad-pf.toml"
CPM5 = EXAMPLES / "cpm5-16pf.toml"

PF0, PF1 = 0x0100, 0x0101
SRIOV, ACS, ARI = 0x160, 0x1A0, 0x100


def load(path):
    return load_params(path)


def make_host(params, *, ari=True):
    model = EndpointModel(params)
    root = RootPort(ModelEndpointPort(model), secondary_bus=params.bus,
                    mem=ModelMemoryPort(model), irq=ModelInterruptPort(model))
    root.memories = BarMemories()
    host = LinuxHost(root, params.pfs[0].pf_rid, ari=ari)
    return model, root, host


def run(coro):
    return asyncio.run(coro)


def ops(root, step=None, rid=None):
    return [(t.op, t.rid, t.offset, t.size, t.status, t.value) for t in root.transcript
            if getattr(t, "rid", None) is not None and (step is None or t.step == step)
            and (rid is None or t.rid == rid)]


def vf_rids(first, stride, count):
    return [first + stride * i for i in range(count)]


# -- Enumeration ------------------------------------------------------------------------------

@pytest.mark.parametrize("ari", [True, False])
def test_dual_enumeration_order_and_probes(ari):
    """ARI: function 0's Next Function Number (1) leads to 01:00.1, whose NFN 0 ends the chain.
    Non-ARI: function 0's Multi-Function bit makes Linux probe functions 1..7; 2..7 answer UR."""
    params = load(DUAL)
    model, root, host = make_host(params, ari=ari)
    run(host.enumerate())
    assert [s.rid for s in host.pfs] == [PF0, PF1]
    assert [s.multi_function for s in host.pfs] == [True, True]
    ident = [(rid, status, value) for op, rid, off, size, status, value in ops(root)
             if op == "cfgrd" and off == 0 and size == 4]
    nfn = [(rid, value) for op, rid, off, size, _, value in ops(root)
           if op == "cfgrd" and off == ARI + 4 and size == 2]
    if ari:
        assert ident == [(PF0, "SC", 0x10C9_8086), (PF1, "SC", 0x10C9_8086)]
        assert nfn == [(PF0, 0x0100), (PF1, 0x0000)]
    else:
        assert ident == [(PF0, "SC", 0x10C9_8086), (PF1, "SC", 0x10C9_8086)] + \
            [(0x0100 | fn, "UR", 0xFFFF_FFFF) for fn in range(2, 8)]
        assert nfn == []
    assert host.ari_enabled is ari
    # Bus reservation: ARI VFs stay on bus 1, non-ARI ones reach bus 2.
    assert host.subordinate_bus == (1 if ari else 2)


def test_quad_enumeration_follows_the_chain():
    params = load(QUAD)
    model, root, host = make_host(params)
    run(host.enumerate())
    assert [s.rid for s in host.pfs] == [0x0100, 0x0101, 0x0102, 0x0103]
    nfn = [(rid, value >> 8) for op, rid, off, size, _, value in ops(root)
           if op == "cfgrd" and off == ARI + 4 and size == 2]
    assert nfn == [(0x0100, 1), (0x0101, 2), (0x0102, 3), (0x0103, 0)]


def test_probe_skips_a_vf_reading_vendor_ffff():
    """A probed function that is a VF completes with Vendor ID and Device ID 0xFFFF (SR-IOV
    §3.4.1.1-2): pci_bus_read_dev_vendor_id takes that as nothing there. Quad, ARI: PF 0's VF 1 is
    01:00.4."""
    params = load(QUAD)
    model, root, host = make_host(params)

    async def body():
        await host.enable(1, pf=0x0100)
        return await host._setup_function(0x0104, required=False)
    assert run(body()) is None
    assert ops(root, rid=0x0104)[-1] == ("cfgrd", 0x0104, 0, 4, "SC", 0xFFFF_FFFF)


@pytest.mark.parametrize("ari", [True, False])
def test_ari_bit_written_by_the_first_pf_only(ari):
    """sriov_init: the first PF writes SR-IOV Control = ARI Capable Hierarchy (with ARI), the
    second 0 (another PF is on the bus); the device's bit follows PF 0's write."""
    params = load(DUAL)
    model, root, host = make_host(params, ari=ari)
    run(host.enumerate())
    writes = [(rid, value) for op, rid, off, size, _, value in ops(root, "sriov_init")
              if op == "cfgwr" and off == SRIOV + 8]
    assert writes == [(PF0, 0x0010 if ari else 0), (PF1, 0)]
    assert model.ari.value is ari


def test_acs_enable_sequence():
    """pci_std_enable_acs: R16 ACS Capability, R16 ACS Control, W16 ACS Control with the
    implemented SV/RR/CR/UF bits: Capability 0 writes 0."""
    params = load(DUAL)
    model, root, host = make_host(params)
    run(host.enumerate())
    assert ops(root, "enable ACS") == [
        ("cfgrd", PF0, 0x1A4, 2, "SC", 0), ("cfgrd", PF0, 0x1A6, 2, "SC", 0),
        ("cfgwr", PF0, 0x1A6, 2, "SC", 0),
        ("cfgrd", PF1, 0x1A4, 2, "SC", 0), ("cfgrd", PF1, 0x1A6, 2, "SC", 0),
        ("cfgwr", PF1, 0x1A6, 2, "SC", 0)]


def test_acs_enable_sets_request_and_completion_redirect():
    """Capability RR | CR | Direct Translated P2P (0x4C): Linux enables RR and CR (0x0C), not
    DT (it is not one of pci_std_enable_acs's bits); the model keeps 0x0C."""
    params = load(DUAL)
    params = params.replace(pfs=tuple(pf.replace(acs=AcsParams(capability=0x4C))
                                      for pf in params.pfs))
    model, root, host = make_host(params)
    run(host.enumerate())
    writes = [(rid, value) for op, rid, off, _, _, value in ops(root, "enable ACS")
              if op == "cfgwr"]
    assert writes == [(PF0, 0x0C), (PF1, 0x0C)]
    assert [model.pf_read(ACS // 4 + 1, pf=k) for k in (0, 1)] == [0x000C_004C] * 2
    assert host.iommu_groups() == [[PF0], [PF1]]


def test_bars_do_not_overlap():
    """Every PF BAR and every PF's whole VF BAR block (TotalVFs apertures) is disjoint."""
    params = load(QUAD)
    model, root, host = make_host(params)
    run(host.enumerate())
    ranges = []
    for state in host.pfs:
        ranges += [(base, base + size) for base, size in state.info.bars.values()]
        for bar in state.sriov.info.bars:
            base = state.sriov.bar_addresses[bar.index]
            ranges.append((base, base + bar.size * state.sriov.info.total_vfs))
    assert len(ranges) == 8
    ranges.sort()
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))


# -- Enable, walk, disable ----------------------------------------------------------------------

def walk_all(model, host, root):
    """Every enabled function's dwords 0..0x1FF read through the host equal the model's."""
    async def body():
        for state in host.pfs:
            for n, vf in enumerate(state.vfs, start=1):
                space = root.function(vf.rid)
                for dword in range(0x200 // 4):
                    got = await space.read32(4 * dword)
                    assert got == model.vf_read(n, dword, pf=state.index), \
                        (hex(vf.rid), hex(4 * dword))
    run(body())


@pytest.mark.parametrize("ari, base", [(True, 0x0180), (False, 0x0280)])
def test_enable_8_and_3_and_walk(ari, base):
    params = load(DUAL)
    model, root, host = make_host(params, ari=ari)

    async def body():
        await host.enable(8, pf=PF0)
        await host.enable(3, pf=PF1)
        for vf in host.vfs:
            await host.walk_vf(vf.rid)
    run(body())
    assert [vf.rid for vf in host.pfs[0].vfs] == vf_rids(base, 2, 8)
    assert [vf.rid for vf in host.pfs[1].vfs] == vf_rids(base + 1, 2, 3)
    assert [model.pfs[k].sriov.num_vfs for k in (0, 1)] == [8, 3]
    type1 = base >> 8 != 1
    assert [model.route(type1, rid) for rid in (base, base + 1, base + 5, base + 7)] \
        == [("VF", 0, 1), ("VF", 1, 1), ("VF", 1, 3), (None, 0, 0)]
    # Every VF answers (SC), with Vendor ID and Device ID 0xFFFF.
    for vf in host.vfs:
        assert model.config(type1, vf.rid, 0, 0xF, False, 0) == ("SC", 0xFFFF_FFFF)
    walk_all(model, host, root)
    assert host.pf_function_of(base + 2) == (0, 2)
    assert host.pf_function_of(base + 3) == (1, 2)
    assert host.pf_function_of(base + 7) is None
    assert host.function_of(base + 3) == 2
    assert host.function_rid(3, 1) == base + 5 and host.function_rid(4, 1) is None


def test_quad_enable_every_pf():
    params = load(QUAD)
    model, root, host = make_host(params)

    async def body():
        for k, n in enumerate((63, 1, 0, 5)):
            if n:
                await host.enable(n, pf=0x0100 + k)
    run(body())
    firsts = [0x0104 + 63 * k for k in range(4)]         # PF k + 4 + 62k
    assert [s.vfs[0].rid if s.vfs else None for s in host.pfs] == \
        [firsts[0], firsts[1], None, firsts[3]]
    assert host.pfs[0].vfs[-1].rid == 0x0142
    walk_all(model, host, root)


def test_disable_one_pf_leaves_the_other():
    params = load(DUAL)
    model, root, host = make_host(params)

    async def body():
        await host.enable(8, pf=PF0)
        await host.enable(3, pf=PF1)
        await host.disable(PF0)
        return (await root.function(0x0181).status_of_read(0, 4),
                await root.function(0x0180).status_of_read(0, 4))
    kept, gone = run(body())
    assert kept == ("SC", 0xFFFF_FFFF)
    assert gone == ("UR", 0xFFFF_FFFF)
    assert [vf.rid for vf in host.vfs] == [0x0181, 0x0183, 0x0185]
    assert (model.pfs[0].sriov.vf_enable, model.pfs[1].sriov.vf_enable) == (False, True)
    assert model.pfs[1].sriov.num_vfs == 3


def test_flr_of_one_pf_restores_that_pf_only():
    params = load(DUAL)
    model, root, host = make_host(params)

    async def body():
        await host.enable(8, pf=PF0)
        await host.enable(3, pf=PF1)
        root.transcript.clear()
        await host.flr(PF1)
    run(body())
    written = {rid for op, rid, *_ in ops(root) if op == "cfgwr"}
    assert written == {PF1}
    assert (model.pfs[0].sriov.num_vfs, model.pfs[1].sriov.num_vfs) == (8, 3)
    assert model.pfs[1].sriov.vf_enable and model.ari.value
    assert model.events[-1] == ("vfs_reset", 1)


def test_set_numvfs_and_pf_checks():
    params = load(DUAL)
    model, root, host = make_host(params)

    async def body():
        await host.set_numvfs(PF1, 2)
        with pytest.raises(HostError, match="already enabled"):
            await host.set_numvfs(PF1, 3)
        with pytest.raises(HostError, match=r"01:10\.1 is not a PF \(PFs: 01:00\.0, "
                                            r"01:00\.1\)"):
            await host.set_numvfs(0x0181, 1)
        await host.set_numvfs(PF1, 0)
    run(body())
    assert not model.pfs[1].sriov.vf_enable


def test_memory_backing_per_pf():
    """PF 0's VF 1 and PF 1's VF 1 use the same VF BAR layout at different addresses: each has
    its own memory, keyed (pf, function, bar)."""
    params = load(DUAL)
    model, root, host = make_host(params)

    async def body():
        await host.enable(2, pf=PF0)
        await host.enable(2, pf=PF1)
        a0 = host.bar_address(0x0180, 0)
        a1 = host.bar_address(0x0181, 0)
        await host.mmio("memwr", a1 + 8, 4, 0x1234_5678)
        return a0, a1, await host.mmio("memrd", a0 + 8, 4), await host.mmio("memrd", a1 + 8, 4)
    a0, a1, r0, r1 = run(body())
    # Linux's VF BAR0 blocks: PF 0's at 0x1_0000_0000, PF 1's after both of PF 0's blocks.
    assert (a0, a1) == (0x1_0000_0000, 0x1_0004_0000)
    assert (r0.value, r0.pf, r1.value, r1.pf) == (0, 0, 0x1234_5678, 1)
    assert root.memories.mem == {(1, 1, 0): {8: 0x78, 9: 0x56, 10: 0x34, 11: 0x12}}
    assert str(r1) == "memrd 0x0000000100040008 4 SC 0x12345678 VF1 of 01:00.1 BAR0+0x8"


# -- IOMMU groups -----------------------------------------------------------------------------

def test_iommu_groups_with_acs():
    params = load(DUAL)
    model, root, host = make_host(params)
    run(host.enable(2, pf=PF0))
    run(host.enable(1, pf=PF1))
    assert host.iommu_groups() == [[PF0], [PF1], [0x0180], [0x0181], [0x0182]]


def test_iommu_groups_without_acs():
    """No ACS capability in a multi-function device: pci_acs_enabled fails for the PFs, which
    share a group; VFs stay alone."""
    params = load(DUAL)
    params = params.replace(pfs=tuple(pf.replace(acs=None) for pf in params.pfs))
    model, root, host = make_host(params)
    run(host.enable(1, pf=PF1))
    assert [s.acs_cap for s in host.pfs] == [None, None]
    assert host.iommu_groups() == [[PF0, PF1], [0x0181]]


def test_iommu_groups_with_a_redirect_not_enabled():
    params = load(DUAL)
    params = params.replace(pfs=tuple(pf.replace(acs=AcsParams(capability=0x04))
                                      for pf in params.pfs))
    model, root, host = make_host(params)
    run(host.enumerate())
    assert host.iommu_groups() == [[PF0], [PF1]]
    host.pfs[1].acs_ctrl = 0            # as if Linux had not enabled RR on PF 1
    host.pfs[0].acs_ctrl = 0
    assert host.iommu_groups() == [[PF0, PF1]]


# -- Interrupts and labels ----------------------------------------------------------------------

def test_message_labels_name_the_pf():
    params = load(DUAL)
    model, root, host = make_host(params)

    async def body():
        await host.enable(3, pf=PF1)
        await host.msix_setup(0x0183, 3)
        root.irq.messages()
        outcome = await root.irq.interrupt(2, 1, pf=1)
        return outcome, root.irq.messages()
    outcome, messages = run(body())
    assert outcome == "sent"
    assert messages == [(2, 0xFEE0_1000, 0x21, 1)]
    root.record_messages(messages)
    msg = root.transcript[-1]
    assert isinstance(msg, MsiMessage)
    assert str(msg) == ("msg 01:10.3 (VF 2 of 01:00.1) vector 1: MWr 0x00000000fee01000 data "
                        "0x00000021 from 01:10.3")
    assert msg.as_dict()["pf"] == "01:00.1"


def test_single_pf_labels_unchanged():
    txn = MsixTransaction(2, "01:10.2", 0, "pending")
    assert str(txn) == "msix 01:10.2 (VF 2) vector 0: pending"
    assert "pf" not in txn.as_dict()
    multi = MsixTransaction(2, "01:10.3", 0, "pending", pf=1, pf_bdf="01:00.1")
    assert str(multi) == "msix 01:10.3 (VF 2 of 01:00.1) vector 0: pending"
    mem = MemTransaction("memrd", 0x1000, 4, "SC", 0, None, 3, 0, 8)
    assert str(mem) == "memrd 0x0000000000001000 4 SC 0x00000000 VF3 BAR0+0x8"
    assert "pf" not in mem.as_dict()


# -- Scripts and command line -------------------------------------------------------------------

def test_script_enable_takes_a_pf():
    params = load(DUAL)
    pfs = [pf.pf_rid for pf in params.pfs]
    ok = parse_script("enable 01:00.1 3\ndisable 01:00.0\nflr 01:10.1\n", "ok.script")
    check_pf_targets(ok, pfs, "ok.script")
    bad = parse_script("enable 01:00.0 2\n\nenable 01:10.1 4\n", "bad.script")
    with pytest.raises(ScriptError) as info:
        check_pf_targets(bad, pfs, "bad.script")
    assert str(info.value) == ("bad.script:3: enable 01:10.1: not a PF of this device (its "
                               "PFs: 01:00.0, 01:00.1); enable takes a PF's BDF")


def test_cli_script_enable_of_a_vf_is_exit_1(tmp_path, capsys):
    script = tmp_path / "x.script"
    script.write_text("disable 01:10.0\n")
    assert main(["sim", str(DUAL), str(script)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sriov-ep: error: {script}:1: disable 01:10.0: not a PF of this device "
                   f"(its PFs: 01:00.0, 01:00.1); disable takes a PF's BDF"]


def test_enable_per_pf_parsing():
    params = load(DUAL)

    class Args:
        enable = None
    args = Args()
    assert _num_vfs_per_pf("8,4") == (8, 4)
    assert _num_vfs_per_pf("0x8") == (8,)
    assert _enable_counts(args, params) == [8, 8]
    args.enable = _num_vfs_per_pf("8,4")
    assert _enable_counts(args, params) == [8, 4]
    args.enable = _num_vfs_per_pf("5")
    assert _enable_counts(args, params) == [5, 5]
    args.enable = _num_vfs_per_pf("1,2,3")
    with pytest.raises(CliError, match=r"--enable 1,2,3: 3 values for 2 PFs"):
        _enable_counts(args, params)


def test_cli_enable_list_errors(capsys):
    assert main(["lspci", str(DUAL), "--enable", "8,,4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sriov-ep lspci: error: argument --enable: '8,,4' has an empty item "
                   "(expected one NumVFs per PF, e.g. 8,4) (see sriov-ep lspci --help)"]


@pytest.mark.parametrize("command", ["sim", "lspci"])
def test_no_ari_refuses_an_ari_only_device(command, capsys):
    assert main([command, str(CPM5), "--no-ari"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    high = ", ".join(f"01:01.{fn}" for fn in range(8))
    assert err[-1] == (f"sriov-ep: error: {CPM5}: --no-ari: PFs {high} are above function 7, "
                       f"which only an ARI hierarchy reaches (without ARI Forwarding Linux "
                       f"scans functions 0-7 of device 0 only); leave out --no-ari")
    assert all(line.startswith("sriov-ep: warning: ") for line in err[:-1])


def test_lspci_function_names():
    names = function_names(load(DUAL), ari=True)
    assert names[PF1] == "SR-IOV PF 01:00.1"
    assert names[0x0183] == "SR-IOV VF 2 of 01:00.1"
    assert names[0x018E] == "SR-IOV VF 8 of 01:00.0"
    assert len(names) == 18


def test_regmap_pf_choice(capsys):
    assert main(["regmap", str(DUAL), "--pf", "01:00.1", "--structure", "acs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"# Register map of {DUAL}: PF 01:00.1 (PF 1 of 2), TotalVFs 8")
    assert out[4].startswith("# PF 1 ACS Extended Capability at 0x1a0..0x1a7")
    assert main(["regmap", str(DUAL), "--pf", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sriov-ep: error: --pf 2: not a PF of {DUAL} (its PFs: 0 = 01:00.0, "
                   f"1 = 01:00.1)")
