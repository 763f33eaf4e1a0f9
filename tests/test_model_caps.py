"""Unit tests of the reference model's capability chains, PM, MSI-X and user windows
(``sriov_tb.model.EndpointModel``).

Expected values are literal numbers worked out by hand from the placement rule (the docstring of
``sriov_ep.caps.chain``), PCI PM 1.2 / PCIe Base §7.5.2 and §7.7.2 as digested in
``../shared/reference/device-spec.md`` §1, §2, §7, and the project's rules; none is computed
with the model's own formulas. The parameters are built here (the examples do not use VF PM /
MSI-X yet).
"""

from sriov_ep.params import Bar, EndpointParams, MsixParams, PmParams, UserCap
from sriov_tb.model import EndpointModel, MemoryResult

TYPE0 = False
PF = 0x0100                                     # PF 01:00.0
VF = {n: 0x0180 + 2 * (n - 1) for n in range(1, 9)}   # ARI: offset 0x80, stride 2

K = 1024
PF_BAR0 = 0xFE00_0000            # 128 KiB
PF_BAR3 = 0xFEB0_0000            # 16 KiB: MSI-X table at 0, PBA at 0x2000
VF_BAR0 = 0x1_0000_0000          # 16 KiB per VF
VF_BAR3 = 0x2_0000_0000          # 16 KiB per VF: MSI-X table at 0, PBA at 0x2000
APERTURE = 0x4000


def igb_params(**changes):
    """82576-like: PF 01:00.0, ARI at 0x100, SR-IOV at 0x160, 8 VFs; PF BAR0/1 128 KiB, BAR3
    16 KiB; VF BAR0 and VF BAR3 16 KiB 64-bit prefetchable. PF PM and MSI-X (10 vectors, table
    in BAR3 at 0, PBA at 0x2000); VF PM and MSI-X (3 vectors, up to 8, table in VF BAR3 at 0,
    PBA at 0x2000)."""
    values = dict(
        vendor_id=0x8086, device_id=0x10C9, revision_id=0x01, pf_rid=PF,
        pf_bars=(Bar(0, 128 * K), Bar(1, 128 * K), Bar(3, 16 * K)),
        ari_cap_offset=0x100, sriov_cap_offset=0x160, total_vfs=8, vf_device_id=0x10CA,
        first_vf_offset_ari=0x80, vf_stride_ari=2, first_vf_offset_non_ari=0x180,
        vf_stride_non_ari=2,
        vf_bars=(Bar(0, 16 * K, True, True), Bar(3, 16 * K, True, True)),
        pm=PmParams(),
        msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000),
        vf_pm=PmParams(),
        vf_msix=MsixParams(vectors=3, max_vectors=8, table_bar=3, table_offset=0, pba_bar=3,
                           pba_offset=0x2000),
    )
    values.update(changes)
    return EndpointParams(**values)


# -- Helpers -------------------------------------------------------------------------------------


def write(model, rid, offset, value, size=4):
    lane = offset % 4
    be = ((1 << size) - 1) << lane
    return model.config(TYPE0, rid, offset // 4, be, True, value << (8 * lane))


def read(model, rid, offset):
    status, data = model.config(TYPE0, rid, offset // 4, 0xF, False, 0)
    assert status == "SC", (hex(rid), hex(offset))
    return data


def walk(model, rid):
    """Walk the legacy list from 0x34 and the extended list from 0x100: [(offset, id)]."""
    legacy, ptr = [], read(model, rid, 0x34) & 0xFF
    while ptr:
        dword = read(model, rid, ptr)
        legacy.append((ptr, dword & 0xFF))
        ptr = dword >> 8 & 0xFF
        assert len(legacy) < 48
    extended, ptr = [], 0x100
    while ptr:
        dword = read(model, rid, ptr)
        extended.append((ptr, dword & 0xFFFF))
        ptr = dword >> 20
        assert len(extended) < 1000
    return legacy, extended


def setup_pf(model):
    """PF BAR0 and BAR3 programmed, Memory Space and Bus Master enabled."""
    write(model, PF, 0x10, PF_BAR0)
    write(model, PF, 0x1C, PF_BAR3)
    write(model, PF, 0x04, 0x0006, size=2)


def enable_vfs(model, num_vfs=4):
    """VF BAR0 = 0x1_0000_0000, VF BAR3 = 0x2_0000_0000, NumVFs, VF Enable + VF MSE + ARI."""
    write(model, PF, 0x184, 0x0000_0000)
    write(model, PF, 0x188, 0x0000_0001)
    write(model, PF, 0x190, 0x0000_0000)
    write(model, PF, 0x194, 0x0000_0002)
    write(model, PF, 0x170, num_vfs, size=2)
    write(model, PF, 0x168, 0x0019, size=2)


def mem_read(model, addr):
    return model.memory(addr, False)


def mem_write32(model, addr, value):
    """An aligned DWORD write: byte enables of the aligned QWORD containing it."""
    if addr % 8:
        return model.memory(addr, True, value << 32, 0xF0)
    return model.memory(addr, True, value, 0x0F)


def program_vector(model, table, vector, address, data, masked=False):
    """Message Address (64-bit), Data and Vector Control of one entry, DWORD by DWORD."""
    entry = table + 16 * vector
    mem_write32(model, entry + 0x0, address & 0xFFFF_FFFF)
    mem_write32(model, entry + 0x4, address >> 32)
    mem_write32(model, entry + 0x8, data)
    mem_write32(model, entry + 0xC, 1 if masked else 0)


def set_msix(model, rid, offset, enable, function_mask=False):
    """Write Message Control byte 1 (bit 15 Enable, bit 14 Function Mask) with a W8."""
    write(model, rid, offset + 3, (0x80 if enable else 0) | (0x40 if function_mask else 0), 1)


# -- Placement and the chains --------------------------------------------------------------------


def test_default_chain_pm_only():
    model = EndpointModel(EndpointParams())
    assert read(model, PF, 0x34) == 0x0000_0040
    assert read(model, PF, 0x40) == 0x0002_7C10         # PCIe, next 0x7C
    assert read(model, PF, 0x7C) == 0x0003_0001         # PM v3, next 0, no D1/D2
    assert read(model, PF, 0x80) == 0x0000_0000         # PMCSR: D0
    assert read(model, PF, 0x100) == 0x1401_000E        # ARI -> 0x140
    assert read(model, PF, 0x140) == 0x0001_0010        # SR-IOV, end
    assert walk(model, PF) == ([(0x40, 0x10), (0x7C, 0x01)], [(0x100, 0x0E), (0x140, 0x10)])


def test_no_pm_keeps_old_chain():
    model = EndpointModel(EndpointParams(pm=None, ari_cap_offset=0x140, sriov_cap_offset=0x100))
    assert read(model, PF, 0x40) == 0x0002_0010
    assert read(model, PF, 0x7C) == 0
    assert walk(model, PF) == ([(0x40, 0x10)], [(0x100, 0x10), (0x140, 0x0E)])


def test_igb_pf_and_vf_chains():
    model = EndpointModel(igb_params())
    assert walk(model, PF) == ([(0x40, 0x10), (0x7C, 0x01), (0x84, 0x11)],
                               [(0x100, 0x0E), (0x160, 0x10)])
    assert read(model, PF, 0x40) == 0x0002_7C10
    assert read(model, PF, 0x7C) == 0x0003_8401         # PM -> 0x84
    assert read(model, PF, 0x80) == 0x0000_0000
    assert read(model, PF, 0x84) == 0x0009_0011         # MSI-X, Table Size 9 (10 vectors), end
    assert read(model, PF, 0x88) == 0x0000_0003         # table: BAR3, offset 0
    assert read(model, PF, 0x8C) == 0x0000_2003         # PBA: BAR3, offset 0x2000
    assert read(model, PF, 0x90) == 0
    assert read(model, PF, 0x100) == 0x1601_000E
    assert read(model, PF, 0x160) == 0x0001_0010

    enable_vfs(model, 4)
    for n in (1, 4):
        assert walk(model, VF[n]) == ([(0x40, 0x10), (0x7C, 0x01), (0x84, 0x11)],
                                      [(0x100, 0x0E)])
        assert read(model, VF[n], 0x34) == 0x0000_0040
        assert read(model, VF[n], 0x40) == 0x0002_7C10
        assert read(model, VF[n], 0x7C) == 0x0003_8401
        assert read(model, VF[n], 0x84) == 0x0002_0011  # Table Size 2 (3 vectors)
        assert read(model, VF[n], 0x88) == 0x0000_0003  # VF BAR3, offset 0
        assert read(model, VF[n], 0x8C) == 0x0000_2003
        assert read(model, VF[n], 0x100) == 0x0001_000E


def test_fixed_pm_offset_and_user_caps_placement():
    params = EndpointParams(
        pm=PmParams(offset=0xC0),
        msix=MsixParams(vectors=4, table_bar=0, table_offset=0, pba_bar=0, pba_offset=0x100),
        pf_bars=(Bar(0, 4 * K),),
        user_caps=(UserCap("vsec", "legacy", 0x10, cap_id=0x09),
                   UserCap("blob", "range", 0x20, offset=0x200),
                   UserCap("ext", "extended", 0x20, cap_id=0x000B, version=2)),
    )
    model = EndpointModel(params)
    # Legacy: PCIe 0x40..0x7B, PM fixed at 0xC0..0xC7, MSI-X after PM (0xC8..0xD3), vsec after
    # MSI-X (0xD4). Extended: ARI 0x100, SR-IOV 0x140..0x17F, ext 0x180; the range is not linked.
    assert walk(model, PF) == ([(0x40, 0x10), (0xC0, 0x01), (0xC8, 0x11), (0xD4, 0x09)],
                               [(0x100, 0x0E), (0x140, 0x10), (0x180, 0x0B)])
    assert read(model, PF, 0x40) == 0x0002_C010
    assert read(model, PF, 0xC0) == 0x0003_C801
    assert read(model, PF, 0xC8) == 0x0003_D411         # 4 vectors
    assert read(model, PF, 0xCC) == 0x0000_0000         # table: BAR0 at 0
    assert read(model, PF, 0xD0) == 0x0000_0100         # PBA: BAR0 at 0x100
    assert read(model, PF, 0x7C) == 0


def test_user_caps_placement_around_a_range():
    params = EndpointParams(
        user_caps=(UserCap("vsec", "legacy", 0x10, cap_id=0x09),
                   UserCap("blob", "range", 0x20, offset=0x88),
                   UserCap("ext", "extended", 0x20, cap_id=0x000B, version=2)),
        vf_user_caps=(UserCap("vfext", "extended", 0x10, cap_id=0x0023),),
    )
    model = EndpointModel(params)
    # vsec would start at 0x84 (after PM 0x7C..0x83) but 0x84..0x93 overlaps the range
    # 0x88..0xA7: it goes to 0xA8. ext follows SR-IOV (0x140..0x17F): 0x180.
    assert walk(model, PF) == ([(0x40, 0x10), (0x7C, 0x01), (0xA8, 0x09)],
                               [(0x100, 0x0E), (0x140, 0x10), (0x180, 0x0B)])
    assert read(model, PF, 0x7C) == 0x0003_A801
    assert read(model, PF, 0x140) == 0x1801_0010        # SR-IOV -> 0x180
    assert read(model, PF, 0x180) == 0x0002_000B        # ext v2, end
    write(model, PF, 0x150, 1, size=2)                  # NumVFs (SR-IOV at 0x140)
    write(model, PF, 0x148, 0x0011, size=2)             # ARI + VF Enable: VF 1 at 01:00.1
    # VF chain: no PM, no MSI-X; ARI at 0x100 -> vfext after it at 0x108.
    assert walk(model, 0x0101) == ([(0x40, 0x10)], [(0x100, 0x0E), (0x108, 0x23)])
    assert read(model, 0x0101, 0x100) == 0x1081_000E
    assert read(model, 0x0101, 0x108) == 0x0001_0023


# -- Power Management ------------------------------------------------------------------------------


def test_pm_power_state_writes():
    model = EndpointModel(igb_params())
    for value in (1, 2):                                # D1 / D2 unsupported: ignored
        write(model, PF, 0x80, value, size=2)
        assert read(model, PF, 0x80) == 0x0000_0000
    write(model, PF, 0x80, 0xFFFF_FFFF)                 # only PowerState is writable
    assert read(model, PF, 0x80) == 0x0000_0003
    write(model, PF, 0x80, 0x0001, size=2)              # D1 from D3hot: unsupported, ignored
    assert read(model, PF, 0x80) == 0x0000_0003
    write(model, PF, 0x81, 0x00, size=1)                # byte 1 only: PowerState untouched
    assert read(model, PF, 0x80) == 0x0000_0003
    assert read(model, PF, 0x7C) == 0x0003_8401         # PMC is read-only
    write(model, PF, 0x7C, 0xFFFF_FFFF)
    assert read(model, PF, 0x7C) == 0x0003_8401

    model = EndpointModel(igb_params(pm=PmParams(d1=True, d2=True, no_soft_reset=True)))
    assert read(model, PF, 0x7C) == 0x0603_8401         # D1_Support, D2_Support
    assert read(model, PF, 0x80) == 0x0000_0008         # No_Soft_Reset
    for value in (1, 2, 3, 0, 2):
        write(model, PF, 0x80, value, size=2)
        assert read(model, PF, 0x80) == 0x0000_0008 | value


def test_pf_d3hot_gates_memory_not_config():
    model = EndpointModel(igb_params())
    setup_pf(model)
    assert model.decode_memory(PF_BAR0 + 0x10) == (True, 0, 0, 0x10)
    assert model.memory(PF_BAR0 + 0x10, False) == MemoryResult(True, False, False, 0, 0, 0x10, 0)
    write(model, PF, 0x80, 3, size=2)
    assert model.decode_memory(PF_BAR0 + 0x10) == (False, 0, 0, 0)
    assert model.memory(PF_BAR0 + 0x10, False) == MemoryResult(False, False, False, 0, 0, 0, 0)
    assert model.memory(PF_BAR3, False) == MemoryResult(False, False, False, 0, 0, 0, 0)
    assert read(model, PF, 0x00) == 0x10C9_8086         # config still works
    assert read(model, PF, 0x10) == PF_BAR0


def test_pf_d3hot_to_d0_resets_pf_and_vfs():
    model = EndpointModel(igb_params())
    write(model, PF, 0x0C, 0x10, size=1)
    setup_pf(model)
    enable_vfs(model, 4)
    assert read(model, VF[2], 0x00) == 0xFFFF_FFFF
    write(model, PF, 0x80, 3, size=2)
    assert model.config(TYPE0, VF[2], 0, 0xF, False, 0) == ("SC", 0xFFFF_FFFF)
    write(model, PF, 0x80, 0, size=2)
    # Like a PF FLR: header, PM itself, SR-IOV (VF Enable) back to reset; VFs gone.
    assert read(model, PF, 0x80) == 0x0000_0000
    assert read(model, PF, 0x04) == 0x0010_0000
    assert read(model, PF, 0x0C) == 0x0000_0000
    assert read(model, PF, 0x10) == 0x0000_0000
    # ARI Capable Hierarchy (0x10) stays: only a conventional reset clears it (LINK scope).
    assert read(model, PF, 0x168) == 0x0000_0010
    assert read(model, PF, 0x170) == 0x0000_0000
    assert model.config(TYPE0, VF[2], 0, 0xF, False, 0) == ("UR", 0)
    assert model.captured_bus == 0x01
    assert model.events[-2:] == [("pm_reset", 0, 0), ("vfs_reset", 0)]


def test_pf_d3hot_to_d0_no_soft_reset_keeps_state():
    model = EndpointModel(igb_params(pm=PmParams(no_soft_reset=True)))
    setup_pf(model)
    enable_vfs(model, 2)
    write(model, PF, 0x80, 3, size=2)
    write(model, PF, 0x80, 0, size=2)
    assert read(model, PF, 0x80) == 0x0000_0008
    assert read(model, PF, 0x04) == 0x0010_0006
    assert read(model, PF, 0x168) == 0x0000_0019
    assert model.decode_memory(PF_BAR0) == (True, 0, 0, 0)
    assert model.events == []


def test_vf_d3hot_gates_only_that_vf_and_resets_it():
    model = EndpointModel(igb_params())
    enable_vfs(model, 4)
    write(model, VF[2], 0x04, 0x0004, size=2)           # VF 2 Bus Master Enable
    write(model, VF[2], 0x80, 3, size=2)
    assert read(model, VF[2], 0x80) == 0x0000_0003
    assert read(model, VF[1], 0x80) == 0x0000_0000
    assert model.decode_memory(VF_BAR0 + APERTURE + 4) == (False, 0, 0, 0)
    assert model.memory(VF_BAR3 + APERTURE, False) == MemoryResult(False, False, False, 0, 0, 0)
    assert model.decode_memory(VF_BAR0 + 4) == (True, 1, 0, 4)
    assert model.decode_memory(VF_BAR0 + 2 * APERTURE) == (True, 3, 0, 0)
    write(model, VF[2], 0x80, 1, size=2)                # D1 unsupported: stays D3hot
    assert read(model, VF[2], 0x80) == 0x0000_0003
    write(model, VF[2], 0x80, 0, size=2)                # D3hot -> D0: VF 2 reset
    assert read(model, VF[2], 0x80) == 0x0000_0000
    assert read(model, VF[2], 0x04) == 0x0011_0000      # Bus Master Enable cleared
    assert model.events[-1] == ("pm_reset", 2, 0)
    assert read(model, PF, 0x168) == 0x0000_0019        # the PF and the other VFs untouched
    assert model.decode_memory(VF_BAR0 + APERTURE + 4) == (True, 2, 0, 4)


# -- MSI-X: table and PBA ------------------------------------------------------------------------


def test_pf_msix_table_access():
    model = EndpointModel(igb_params())
    setup_pf(model)
    # Reset: address/data 0, every vector masked, PBA 0.
    assert model.memory(PF_BAR3 + 0x08, False) == \
        MemoryResult(False, True, False, 0, 3, 0x08, 0x0000_0001_0000_0000)
    assert mem_read(model, PF_BAR3 + 0x0C).data == 0x0000_0001_0000_0000   # same QWORD
    assert mem_read(model, PF_BAR3 + 0x98).data == 0x0000_0001_0000_0000   # vector 9
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0
    # DWORD writes; address bits 1:0 read 0.
    assert mem_write32(model, PF_BAR3 + 0x10, 0xFEE0_0003) == \
        MemoryResult(False, True, False, 0, 3, 0x10, 0)
    mem_write32(model, PF_BAR3 + 0x14, 0x1234_5678)
    assert mem_read(model, PF_BAR3 + 0x10).data == 0x1234_5678_FEE0_0000
    # A QWORD write of Data + Vector Control; Vector Control keeps only bit 0.
    model.memory(PF_BAR3 + 0x18, True, 0xFFFF_FFFE_0000_4021, 0xFF)
    assert mem_read(model, PF_BAR3 + 0x18).data == 0x0000_0000_0000_4021
    model.memory(PF_BAR3 + 0x18, True, 0xFFFF_FFFF_FFFF_FFFF, 0x10)   # byte 12 only
    assert mem_read(model, PF_BAR3 + 0x18).data == 0x0000_0001_0000_4021
    model.memory(PF_BAR3 + 0x10, True, 0xAAAA_AAAA_BBBB_BBBB, 0x03)   # bytes 0-1 only
    assert mem_read(model, PF_BAR3 + 0x10).data == 0x1234_5678_FEE0_BBB8
    # The PBA is read-only; past the table (10 vectors = 0xA0 bytes) the user's BAR again.
    assert model.memory(PF_BAR3 + 0x2000, True, 0xFFFF_FFFF_FFFF_FFFF, 0xFF) == \
        MemoryResult(False, True, False, 0, 3, 0x2000, 0)
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0
    assert model.memory(PF_BAR3 + 0xA0, False) == MemoryResult(True, False, False, 0, 3, 0xA0, 0)
    assert model.memory(PF_BAR3 + 0x2008, False) == \
        MemoryResult(True, False, False, 0, 3, 0x2008, 0)
    assert model.memory(PF_BAR0 + 0x08, False) == MemoryResult(True, False, False, 0, 0, 0x08, 0)


def test_vf_msix_tables_are_per_vf():
    model = EndpointModel(igb_params())
    enable_vfs(model, 4)
    vf1, vf2 = VF_BAR3, VF_BAR3 + APERTURE
    program_vector(model, vf1, 0, 0xFEE0_1000, 0x0031)
    assert model.memory(vf1, False) == MemoryResult(False, True, True, 1, 3, 0, 0xFEE0_1000)
    assert model.memory(vf1 + 8, False).data == 0x0000_0000_0000_0031
    assert model.memory(vf2, False) == MemoryResult(False, True, True, 2, 3, 0, 0)
    assert model.memory(vf2 + 8, False).data == 0x0000_0001_0000_0000
    # Vectors 3..7 (Table Size 3 of max 8) read 0 and ignore writes, still the endpoint's.
    assert model.memory(vf1 + 0x38, False) == MemoryResult(False, True, True, 1, 3, 0x38, 0)
    mem_write32(model, vf1 + 0x30, 0xFEE0_2000)
    assert mem_read(model, vf1 + 0x30).data == 0
    # Past max_vectors (8 * 16 = 0x80): the user's BAR; VF BAR0 too.
    assert model.memory(vf1 + 0x80, False) == MemoryResult(True, False, True, 1, 3, 0x80, 0)
    assert model.memory(VF_BAR0 + APERTURE + 8, False) == \
        MemoryResult(True, False, True, 2, 0, 8, 0)
    assert model.memory(VF_BAR3 + 4 * APERTURE, False) == \
        MemoryResult(False, False, False, 0, 0, 0, 0)                   # VF 5: not enabled
    assert model.memory(vf2 + 0x2000, True, 0xFF, 0xFF).internal       # PBA: read-only
    assert mem_read(model, vf2 + 0x2000).data == 0


# -- MSI-X: delivery -----------------------------------------------------------------------------


def test_pf_msix_delivery():
    model = EndpointModel(igb_params())
    setup_pf(model)
    program_vector(model, PF_BAR3, 0, 0xFEE0_0000, 0x4021)
    program_vector(model, PF_BAR3, 1, 0x1_FEE0_1000, 0x4022, masked=True)
    program_vector(model, PF_BAR3, 2, 0xFEE0_2000, 0x4023)
    # MSI-X Enable 0: pending.
    assert model.interrupt(0, 0) == "pending"
    assert model.interrupt(0, 0) == "pending"
    assert model.interrupt(0, 2) == "pending"
    assert model.interrupt(0, 1) == "pending"
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0b111
    assert model.messages == []
    # Enable: the unmasked pending vectors go, lowest first; the masked one stays pending.
    set_msix(model, PF, 0x84, enable=True)
    assert read(model, PF, 0x84) == 0x8009_0011
    assert model.messages == [(0, 0xFEE0_0000, 0x4021, 0), (0, 0xFEE0_2000, 0x4023, 0)]
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0b010
    # Unmasking vector 1 sends it.
    mem_write32(model, PF_BAR3 + 0x1C, 0)
    assert model.messages[-1] == (0, 0x1_FEE0_1000, 0x4022, 0)
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0
    assert model.interrupt(0, 2) == "sent"
    assert model.messages[-1] == (0, 0xFEE0_2000, 0x4023, 0)
    assert len(model.messages) == 4
    # Function Mask.
    set_msix(model, PF, 0x84, enable=True, function_mask=True)
    assert read(model, PF, 0x84) == 0xC009_0011
    assert model.interrupt(0, 0) == "pending"
    set_msix(model, PF, 0x84, enable=True)
    assert model.messages[-1] == (0, 0xFEE0_0000, 0x4021, 0) and len(model.messages) == 5
    # Bus Master Enable off.
    write(model, PF, 0x04, 0x0002, size=2)
    assert model.interrupt(0, 2) == "pending"
    write(model, PF, 0x04, 0x0006, size=2)
    assert model.messages[-1] == (0, 0xFEE0_2000, 0x4023, 0) and len(model.messages) == 6
    # Masked vector, then Enable off: both pending; the mask clear alone sends nothing.
    mem_write32(model, PF_BAR3 + 0x0C, 1)
    assert model.interrupt(0, 0) == "pending"
    set_msix(model, PF, 0x84, enable=False)
    mem_write32(model, PF_BAR3 + 0x0C, 0)
    assert len(model.messages) == 6
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0b001
    set_msix(model, PF, 0x84, enable=True)
    assert len(model.messages) == 7
    # Out of range / no such function.
    assert model.interrupt(0, 10) == "dropped"
    assert model.interrupt(1, 0) == "dropped"           # VF 1: VF Enable 0
    assert len(model.messages) == 7
    assert model.interrupt(0, 9) == "pending"           # vector 9: masked since reset
    assert EndpointModel(EndpointParams()).interrupt(0, 0) == "dropped"     # no PF MSI-X


def test_pf_msix_d3hot_holds_messages_until_d0():
    model = EndpointModel(igb_params(pm=PmParams(no_soft_reset=True)))
    setup_pf(model)
    program_vector(model, PF_BAR3, 3, 0xFEE0_3000, 0x55)
    set_msix(model, PF, 0x84, enable=True)
    write(model, PF, 0x80, 3, size=2)
    assert model.interrupt(0, 3) == "pending"
    assert model.messages == []
    write(model, PF, 0x80, 0, size=2)                   # No_Soft_Reset: state kept, delivered
    assert model.messages == [(0, 0xFEE0_3000, 0x55, 0)]
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0


def test_pf_flr_resets_msix_control_but_keeps_address_data():
    model = EndpointModel(igb_params())
    setup_pf(model)
    program_vector(model, PF_BAR3, 0, 0xFEE0_0000, 0x4021)
    set_msix(model, PF, 0x84, enable=True, function_mask=True)
    assert model.interrupt(0, 0) == "pending"
    write(model, PF, 0x48, 0x8000, size=2)              # PF FLR
    assert read(model, PF, 0x84) == 0x0009_0011
    setup_pf(model)
    assert mem_read(model, PF_BAR3).data == 0x0000_0000_FEE0_0000
    assert mem_read(model, PF_BAR3 + 8).data == 0x0000_0001_0000_4021      # masked again
    assert mem_read(model, PF_BAR3 + 0x2000).data == 0
    model.reset()                                        # conventional reset: still kept
    setup_pf(model)
    assert mem_read(model, PF_BAR3).data == 0x0000_0000_FEE0_0000


def test_vf_msix_delivery_and_isolation():
    model = EndpointModel(igb_params())
    enable_vfs(model, 4)
    for n in (1, 2):
        program_vector(model, VF_BAR3 + (n - 1) * APERTURE, 0, 0xFEE0_0000 + n, 0x100 + n)
        write(model, VF[n], 0x04, 0x0004, size=2)       # Bus Master Enable
    set_msix(model, VF[1], 0x84, enable=True)
    assert read(model, VF[1], 0x84) == 0x8002_0011
    assert read(model, VF[2], 0x84) == 0x0002_0011      # per VF
    assert model.interrupt(1, 0) == "sent"
    assert model.interrupt(2, 0) == "pending"
    assert model.messages == [(1, 0xFEE0_0000, 0x101, 0)]
    assert mem_read(model, VF_BAR3 + APERTURE + 0x2000).data == 0b1
    assert mem_read(model, VF_BAR3 + 0x2000).data == 0
    set_msix(model, VF[2], 0x84, enable=True)
    assert model.messages[-1] == (2, 0xFEE0_0000, 0x102, 0)
    # A VF's Bus Master Enable gates it, the PF's does not.
    write(model, VF[1], 0x04, 0x0000, size=2)
    assert model.interrupt(1, 0) == "pending"
    assert model.interrupt(2, 0) == "sent"
    write(model, VF[1], 0x04, 0x0004, size=2)
    assert model.messages[-1] == (1, 0xFEE0_0000, 0x101, 0) and len(model.messages) == 4
    # No such VF, vector beyond the Table Size.
    assert model.interrupt(5, 0) == "dropped"
    assert model.interrupt(1, 3) == "dropped"
    assert EndpointModel(igb_params(vf_msix=None)).interrupt(1, 0) == "dropped"


def test_set_vf_msix_count():
    model = EndpointModel(igb_params())
    assert model.set_vf_msix_count(1, 2) is False       # VF Enable 0
    enable_vfs(model, 4)
    assert model.set_vf_msix_count(0, 2) is False
    assert model.set_vf_msix_count(5, 2) is False       # > NumVFs
    assert model.set_vf_msix_count(1, 9) is False       # > max_vectors
    assert model.set_vf_msix_count(1, -1) is False
    assert model.set_vf_msix_count(1, 8) is True
    assert read(model, VF[1], 0x84) == 0x0007_0011
    assert read(model, VF[2], 0x84) == 0x0002_0011
    assert model.interrupt(1, 7) == "pending"           # now within the table
    assert model.set_vf_msix_count(1, 0) is True        # 0: the default, 3
    assert read(model, VF[1], 0x84) == 0x0002_0011
    assert model.set_vf_msix_count(2, 1) is True
    assert read(model, VF[2], 0x84) == 0x0000_0011
    set_msix(model, VF[2], 0x84, enable=True)
    assert model.set_vf_msix_count(2, 4) is False       # MSI-X Enable 1
    assert read(model, VF[2], 0x84) == 0x8000_0011
    assert model.interrupt(2, 1) == "dropped"
    assert EndpointModel(igb_params(vf_msix=None)).set_vf_msix_count(1, 1) is False
    # Table Size follows into the table window.
    assert model.set_vf_msix_count(3, 5) is True
    mem_write32(model, VF_BAR3 + 2 * APERTURE + 0x48, 0x77)
    assert mem_read(model, VF_BAR3 + 2 * APERTURE + 0x48).data == 0x0000_0001_0000_0077


def test_vf_flr_resets_msix_but_keeps_table_size():
    model = EndpointModel(igb_params())
    enable_vfs(model, 4)
    table = VF_BAR3 + 2 * APERTURE                      # VF 3
    assert model.set_vf_msix_count(3, 5) is True
    program_vector(model, table, 4, 0xFEE0_4000, 0x44)
    write(model, VF[3], 0x04, 0x0004, size=2)
    set_msix(model, VF[3], 0x84, enable=True, function_mask=True)
    assert model.interrupt(3, 4) == "pending"
    write(model, VF[3], 0x48, 0x8000, size=2)           # VF FLR
    assert model.events[-1] == ("vf_flr", 3, 0)
    assert read(model, VF[3], 0x84) == 0x0004_0011      # Table Size 5 kept, Enable/Mask 0
    assert read(model, VF[3], 0x04) == 0x0011_0000
    assert mem_read(model, table + 0x40).data == 0x0000_0000_FEE0_4000
    assert mem_read(model, table + 0x48).data == 0x0000_0001_0000_0044   # masked again
    assert mem_read(model, table + 0x2000).data == 0
    # VF D3hot -> D0 keeps it too.
    write(model, VF[3], 0x80, 3, size=2)
    write(model, VF[3], 0x80, 0, size=2)
    assert read(model, VF[3], 0x84) == 0x0004_0011
    # VF Enable clear: back to the default.
    write(model, PF, 0x168, 0x0000, size=2)
    write(model, PF, 0x168, 0x0019, size=2)
    assert read(model, VF[3], 0x84) == 0x0002_0011
    # PF FLR too.
    assert model.set_vf_msix_count(3, 5) is True
    write(model, PF, 0x48, 0x8000, size=2)
    enable_vfs(model, 4)
    assert read(model, VF[3], 0x84) == 0x0002_0011


# -- User configuration windows ------------------------------------------------------------------


class Handler:
    """A small user: one dword store per (function, window, dword); records the writes."""

    def __init__(self):
        self.store = {}
        self.writes = []

    def read(self, function, window, dword):
        return self.store.get((function, window, dword), 0xC0DE_0000 | function << 8 | dword)

    def write(self, function, window, dword, be, data):
        self.writes.append((function, window, dword, be, data))
        old = self.read(function, window, dword)
        mask = sum(0xFF << (8 * i) for i in range(4) if be >> i & 1)
        self.store[(function, window, dword)] = (old & ~mask) | (data & mask)


def user_params():
    return EndpointParams(
        user_caps=(UserCap("vsec", "legacy", 0x10, cap_id=0x09),
                   UserCap("blob", "range", 0x20, offset=0x88),
                   UserCap("ext", "extended", 0x20, cap_id=0x000B, version=2)),
        vf_user_caps=(UserCap("vfvsec", "legacy", 0x08, cap_id=0x09),),
    )


def test_user_windows_with_handler():
    user = Handler()
    model = EndpointModel(user_params(), user=user)
    # vsec at 0xA8 (window 0), range at 0x88 (window 1), ext at 0x180 (window 2).
    assert read(model, PF, 0xA8) == 0xC0DE_0009         # ID 0x09, next 0; bits 31:16 user's
    assert read(model, PF, 0xAC) == 0xC0DE_0001
    assert read(model, PF, 0x88) == 0xC0DE_0000         # a range: every dword is the user's
    assert read(model, PF, 0xA4) == 0xC0DE_0007
    assert read(model, PF, 0x180) == 0x0002_000B        # extended header: the endpoint's
    assert read(model, PF, 0x184) == 0xC0DE_0001
    assert read(model, PF, 0x19C) == 0xC0DE_0007
    assert read(model, PF, 0x1A0) == 0                  # past the window
    write(model, PF, 0xA8, 0x1234_5678)                 # legacy dword 0: bytes 2-3 only
    assert user.writes == [(0, 0, 0, 0b1100, 0x1234_5678)]
    assert read(model, PF, 0xA8) == 0x1234_0009
    write(model, PF, 0xA8, 0xFFFF, size=2)              # bytes 0-1 only: handler not called
    write(model, PF, 0x180, 0xFFFF_FFFF)                # extended header: never passed
    assert len(user.writes) == 1
    write(model, PF, 0x88, 0xAABB, size=2)
    write(model, PF, 0x186, 0x5566, size=2)
    assert user.writes[1:] == [(0, 1, 0, 0b0011, 0x0000_AABB), (0, 2, 1, 0b1100, 0x5566_0000)]
    assert read(model, PF, 0x88) == 0xC0DE_AABB
    assert read(model, PF, 0x184) == 0x5566_0001
    # VFs: function n; a VF that does not exist is UR.
    write(model, PF, 0x150, 2, size=2)                  # NumVFs (SR-IOV at 0x140)
    write(model, PF, 0x148, 0x0011, size=2)             # ARI + VF Enable: VFs at 01:00.1, .2
    assert walk(model, 0x0102)[0] == [(0x40, 0x10), (0x7C, 0x09)]
    assert read(model, 0x0102, 0x7C) == 0xC0DE_0009
    assert read(model, 0x0102, 0x80) == 0xC0DE_0201
    write(model, 0x0101, 0x80, 0x99, size=1)
    assert user.writes[-1] == (1, 0, 1, 0b0001, 0x99)
    assert read(model, 0x0101, 0x80) == 0xC0DE_0199
    assert read(model, 0x0102, 0x80) == 0xC0DE_0201
    assert model.config(TYPE0, 0x0103, 0x7C // 4, 0xF, False, 0) == ("UR", 0)
    assert model.config(TYPE0, 0x0103, 0x80 // 4, 0xF, True, 1) == ("UR", 0)
    assert user.writes[-1] == (1, 0, 1, 0b0001, 0x99)


def test_user_windows_without_handler():
    model = EndpointModel(user_params())
    assert model.user is None
    assert read(model, PF, 0xA8) == 0x0000_0009
    assert read(model, PF, 0xAC) == 0
    assert read(model, PF, 0x88) == 0
    assert read(model, PF, 0x180) == 0x0002_000B
    write(model, PF, 0xAC, 0xFFFF_FFFF)                 # dropped
    assert read(model, PF, 0xAC) == 0
    model.user = Handler()                              # settable later
    assert read(model, PF, 0xAC) == 0xC0DE_0001
