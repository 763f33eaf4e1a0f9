"""Unit tests of the SR-IOV capability reference model (``sriov_tb.model``).

Expected values are literal numbers taken from ``../shared/reference/sriov-spec.md`` and
``docs/sriov-capability-behaviour.md``, not computed with the model's own formulas, so a slip in
the model shows up here rather than being mirrored.
"""

import pytest

from sriov_ep.params import Bar, EndpointParams
from sriov_tb.model import AriCapableHierarchy, SriovCapabilityModel

# -- Fixtures and access helpers -------------------------------------------------------------


def igb_params(**changes):
    """The igb-like worked example at the end of sriov-spec.md.

    TotalVFs = InitialVFs = 8, ARI offset 0x80 / stride 2, VF DID 0x10CA, VF BAR0 = 16 KiB
    64-bit prefetchable. The non-ARI pair is the 82576's (offset 384, stride 2).
    """
    values = dict(
        total_vfs=8, vf_device_id=0x10CA,
        first_vf_offset_ari=0x80, vf_stride_ari=2,
        first_vf_offset_non_ari=0x180, vf_stride_non_ari=2,
        vf_bars=(Bar(index=0, size=16 * 1024, is_64bit=True, prefetchable=True),),
    )
    values.update(changes)
    return EndpointParams(**values)


def small_bar_params(**changes):
    """A 4 KiB 32-bit non-prefetchable VF BAR2 and a 4 KiB 64-bit VF BAR4 (slots 4, 5)."""
    values = dict(
        total_vfs=4,
        vf_bars=(Bar(index=2, size=4096),
                 Bar(index=4, size=4096, is_64bit=True)),
    )
    values.update(changes)
    return EndpointParams(**values)


def write8(model, offset, value):
    """A 1-byte config write at byte ``offset`` of the capability."""
    lane = offset % 4
    model.write(offset // 4, value << (8 * lane), 1 << lane)


def write16(model, offset, value):
    """A 2-byte config write at byte ``offset`` (2-byte aligned)."""
    assert offset % 2 == 0
    lane = offset % 4
    model.write(offset // 4, value << (8 * lane), 0b11 << lane)


def write32(model, offset, value):
    model.write(offset // 4, value, 0b1111)


def read32(model, offset):
    return model.read(offset // 4)


def read16(model, offset):
    return (model.read(offset // 4) >> (8 * (offset % 4))) & 0xFFFF


def all_dwords(model):
    return [model.read(d) for d in range(16)]


# -- Header, read-only registers, reset values -------------------------------------------------


def test_header():
    assert read32(SriovCapabilityModel(igb_params()), 0x00) == 0x0001_0010
    assert read32(SriovCapabilityModel(igb_params(), next_offset=0x180), 0x00) == 0x1801_0010


def test_next_offset_checked():
    with pytest.raises(ValueError):
        SriovCapabilityModel(igb_params(), next_offset=0x181)
    with pytest.raises(ValueError):
        SriovCapabilityModel(igb_params(), next_offset=0x1000)


def test_reset_values_igb():
    model = SriovCapabilityModel(igb_params())
    assert all_dwords(model) == [
        0x0001_0010,  # 0x00 header, next 0
        0x0000_0000,  # 0x04 Capabilities: no migration, both flags 0
        0x0000_0000,  # 0x08 Control / Status
        0x0008_0008,  # 0x0C InitialVFs 8, TotalVFs 8
        0x0000_0000,  # 0x10 NumVFs 0, FDL 0 (PF at 01:00.0)
        0x0002_0180,  # 0x14 non-ARI offset 384, stride 2 (ARI Capable Hierarchy = 0)
        0x10CA_0000,  # 0x18 VF Device ID in bits 31:16
        0x0000_0553,  # 0x1C Supported Page Sizes
        0x0000_0001,  # 0x20 System Page Size = 4 KiB
        0x0000_000C,  # 0x24 VF BAR0: 64-bit prefetchable type bits only
        0x0000_0000,  # 0x28 VF BAR1: upper dword
        0, 0, 0, 0,   # 0x2C..0x38 unimplemented
        0x0000_0000,  # 0x3C VF Migration State Array Offset
    ]
    assert model.vf_enable is False
    assert model.vf_mse is False
    assert model.ari_capable_hierarchy is False
    assert model.num_vfs == 0
    assert model.system_page_size == 1
    assert model.first_vf_offset == 0x180
    assert model.vf_stride == 2
    assert model.vf_bar_base(0) == 0
    assert model.vf_bar_aperture(0) == 0x4000


def test_capabilities_flags_from_params():
    model = SriovCapabilityModel(igb_params(ari_capable_hierarchy_preserved=True))
    assert read32(model, 0x04) == 0x0000_0002
    model = SriovCapabilityModel(igb_params(vf_10bit_tag_requester_supported=True))
    assert read32(model, 0x04) == 0x0000_0004


def test_fdl_reads_pf_function_number():
    model = SriovCapabilityModel(igb_params(pf_rid=0x0102))
    assert read32(model, 0x10) == 0x0002_0000


def test_read_only_registers_ignore_writes():
    model = SriovCapabilityModel(igb_params(ari_capable_hierarchy_preserved=True), 0x200)
    before = all_dwords(model)
    for offset in (0x00, 0x04, 0x0C, 0x14, 0x18, 0x1C, 0x3C):
        write32(model, offset, 0xFFFF_FFFF)
        write32(model, offset, 0x0000_0000)
    assert all_dwords(model) == before


def test_reserved_bits():
    model = SriovCapabilityModel(igb_params())
    # Control bits 15:6 RsvdP, bits 2:1 RO 0 (no migration), bit 5 RO 0 (no 10-bit tag
    # support); Status bits 15:1 RsvdZ.
    write32(model, 0x08, 0xFFFF_FFFF)
    assert read32(model, 0x08) == 0x0000_0019
    write16(model, 0x08, 0x0000)                 # NumVFs is only writable with VF Enable 0
    # Byte 0x13 RsvdP, FDL RO.
    write32(model, 0x10, 0xFFFF_0003)
    assert read32(model, 0x10) == 0x0000_0003
    # Bytes 0x18-0x19 RsvdP.
    write16(model, 0x18, 0xFFFF)
    assert read32(model, 0x18) == 0x10CA_0000


def test_10bit_tag_requester_enable_rw_when_supported():
    model = SriovCapabilityModel(igb_params(vf_10bit_tag_requester_supported=True))
    write32(model, 0x08, 0xFFFF_FFFF)
    assert read32(model, 0x08) == 0x0000_0039
    write16(model, 0x08, 0x0000)                 # VFE was 1: the ARI bit keeps its value
    assert read32(model, 0x08) == 0x0000_0010
    write16(model, 0x08, 0x0000)
    assert read32(model, 0x08) == 0x0000_0000


def test_status_rw1c():
    model = SriovCapabilityModel(igb_params())
    # Nothing in the design sets VF Migration Status; set the field to exercise the RW1C rule.
    model.vf_migration_status = True
    assert read32(model, 0x08) == 0x0001_0000
    write16(model, 0x0A, 0x0000)        # writing 0 has no effect
    assert read32(model, 0x08) == 0x0001_0000
    write32(model, 0x08, 0x0000_0009)   # bit 16 clear in a W32: Status untouched
    assert read32(model, 0x08) == 0x0001_0009
    model.write(0x08 // 4, 0x0001_0000, 0b0011)  # the 1 is in a disabled byte: no effect
    assert read32(model, 0x08) == 0x0001_0000
    write32(model, 0x08, 0x0001_0009)   # W32 at 0x08 writes Control and clears Status
    assert read32(model, 0x08) == 0x0000_0009


def test_access_arguments_checked():
    model = SriovCapabilityModel(igb_params())
    with pytest.raises(ValueError):
        model.read(16)
    with pytest.raises(ValueError):
        model.write(-1, 0, 0xF)
    with pytest.raises(ValueError):
        model.write(2, 0, 0x10)
    with pytest.raises(ValueError):
        model.write(2, 1 << 32, 0xF)


# -- Control: VFE, MSE, ARI Capable Hierarchy, byte enables -------------------------------------


def test_w8_at_control_byte1_leaves_bits_7_0():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0019)
    write8(model, 0x09, 0x00)
    assert read32(model, 0x08) == 0x0000_0019
    write8(model, 0x09, 0xFF)
    assert read32(model, 0x08) == 0x0000_0019


def test_vfe_and_mse_in_one_write():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x10, 4)
    write16(model, 0x08, 0x0009)
    assert (model.vf_enable, model.vf_mse) == (True, True)
    write16(model, 0x08, 0x0000)
    assert (model.vf_enable, model.vf_mse) == (False, False)
    # Clearing VF Enable keeps NumVFs.
    assert model.num_vfs == 4


def test_vfe_with_zero_num_vfs_accepted():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0001)
    assert model.vf_enable is True
    assert model.num_vfs == 0


def test_ari_switches_offset_and_stride():
    model = SriovCapabilityModel(igb_params())
    assert read32(model, 0x14) == 0x0002_0180
    write16(model, 0x08, 0x0010)
    assert model.ari_capable_hierarchy is True
    assert read32(model, 0x14) == 0x0002_0080
    assert (model.first_vf_offset, model.vf_stride) == (0x80, 2)
    # Offset and stride do not depend on NumVFs.
    for n in (8, 1, 0):
        write16(model, 0x10, n)
        assert read32(model, 0x14) == 0x0002_0080
    write16(model, 0x08, 0x0000)
    assert read32(model, 0x14) == 0x0002_0180


def test_ari_write_ignored_while_vfe():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0001)                 # VFE, ARI 0
    write16(model, 0x08, 0x0019)                 # ARI ignored, MSE taken
    assert read32(model, 0x08) == 0x0000_0009
    assert read32(model, 0x14) == 0x0002_0180
    # Clearing VFE and setting ARI in one write: VF Enable was 1 before the write -> ignored.
    write16(model, 0x08, 0x0010)
    assert read32(model, 0x08) == 0x0000_0000
    write16(model, 0x08, 0x0010)
    assert read32(model, 0x08) == 0x0000_0010
    # While enabled, clearing ARI is ignored too.
    write16(model, 0x08, 0x0019)                 # VFE was 0: ARI (already 1), VFE, MSE
    write16(model, 0x08, 0x0009)
    assert read32(model, 0x08) == 0x0000_0019
    assert read32(model, 0x14) == 0x0002_0080


def test_ari_bit_link_scope():
    """docs/multi-pf.md §4: a function-level reset keeps ARI Capable Hierarchy."""
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0019)
    model.reset(keep_ari=True)                   # PF FLR / D3hot -> D0
    assert read32(model, 0x08) == 0x0000_0010
    assert read32(model, 0x14) == 0x0002_0080
    model.reset()                                # conventional reset
    assert read32(model, 0x08) == 0x0000_0000
    assert read32(model, 0x14) == 0x0002_0180


def test_ari_bit_shared_and_rsvdp_outside_owner():
    """Two PFs' capabilities on one device bit: RW in the owner, RsvdP in the other."""
    pfs = []
    ari = AriCapableHierarchy(lambda: any(m.vf_enable for m in pfs))
    pfs += [SriovCapabilityModel(igb_params(), ari=ari, owns_ari=True),
            SriovCapabilityModel(igb_params(), ari=ari, owns_ari=False)]
    owner, other = pfs
    write16(other, 0x08, 0x0010)                 # RsvdP: ignored
    assert (read32(other, 0x08), read32(owner, 0x08)) == (0, 0)
    write16(owner, 0x08, 0x0010)
    assert (read32(owner, 0x08), read32(other, 0x08)) == (0x0000_0010, 0x0000_0000)
    assert read32(other, 0x14) == 0x0002_0080    # the other PF's offsets follow it
    write16(other, 0x08, 0x0001)                 # VF Enable in the other PF holds the bit
    write16(owner, 0x08, 0x0000)
    assert read32(owner, 0x08) == 0x0000_0010
    owner.reset()                                # the device's bit: a PF reset never clears it
    other.reset()
    assert ari.value is True


# -- NumVFs -----------------------------------------------------------------------------------


def test_num_vfs_range():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x10, 3)
    assert read16(model, 0x10) == 3
    write16(model, 0x10, 9)                      # > TotalVFs: whole write ignored
    assert read16(model, 0x10) == 3
    write16(model, 0x10, 0xFFFF)
    assert read16(model, 0x10) == 3
    write16(model, 0x10, 8)                      # == TotalVFs: fine
    assert model.num_vfs == 8
    write16(model, 0x10, 0)
    assert model.num_vfs == 0


def test_num_vfs_byte_merge_checked_against_total_vfs():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x10, 3)
    write8(model, 0x11, 0x01)                    # result 0x0103 > 8: ignored
    assert model.num_vfs == 3
    write8(model, 0x10, 0x05)                    # result 0x0005
    assert model.num_vfs == 5


def test_num_vfs_ignored_while_vfe():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x10, 2)
    write16(model, 0x08, 0x0001)
    write16(model, 0x10, 4)
    assert model.num_vfs == 2
    write16(model, 0x08, 0x0000)
    write16(model, 0x10, 4)
    assert model.num_vfs == 4


def test_w16_at_num_vfs_leaves_fdl():
    model = SriovCapabilityModel(igb_params(pf_rid=0x0102))
    model.write(0x10 // 4, 0xFFFF_0005, 0b0011)
    assert read32(model, 0x10) == 0x0002_0005
    write32(model, 0x10, 0xFFFF_0006)
    assert read32(model, 0x10) == 0x0002_0006


# -- System Page Size ---------------------------------------------------------------------------


def test_page_size_accepts_one_supported_bit():
    model = SriovCapabilityModel(igb_params())
    write32(model, 0x20, 0x0000_0010)            # 64 KiB
    assert read32(model, 0x20) == 0x0000_0010
    assert model.system_page_size == 0x10
    write32(model, 0x20, 0x0000_0400)            # 4 MiB, highest mandatory size
    assert read32(model, 0x20) == 0x0000_0400
    write32(model, 0x20, 0x0000_0001)
    assert read32(model, 0x20) == 0x0000_0001


@pytest.mark.parametrize("value", [
    0x0000_0000,    # no bit
    0x0000_0003,    # two bits (4K and 8K, both supported)
    0x0000_0004,    # 16 KiB: not in 0x553
    0x8000_0000,    # not supported
])
def test_page_size_bad_values_ignored(value):
    model = SriovCapabilityModel(igb_params())
    write32(model, 0x20, 0x0000_0002)
    write32(model, 0x20, value)
    assert read32(model, 0x20) == 0x0000_0002


def test_page_size_byte_merge_checked():
    model = SriovCapabilityModel(igb_params())
    write8(model, 0x21, 0x01)                    # result 0x0101: two bits -> ignored
    assert read32(model, 0x20) == 0x0000_0001
    write8(model, 0x20, 0x00)                    # result 0: ignored
    assert read32(model, 0x20) == 0x0000_0001
    write8(model, 0x20, 0x40)                    # result 0x40 = 256 KiB
    assert read32(model, 0x20) == 0x0000_0040


def test_page_size_ignored_while_vfe():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0001)
    write32(model, 0x20, 0x0000_0002)
    assert read32(model, 0x20) == 0x0000_0001
    write16(model, 0x08, 0x0000)
    write32(model, 0x20, 0x0000_0002)
    assert read32(model, 0x20) == 0x0000_0002


def test_page_size_extra_supported_bit():
    model = SriovCapabilityModel(igb_params(supported_page_sizes=0x557))
    write32(model, 0x20, 0x0000_0004)            # 16 KiB, supported here
    assert read32(model, 0x20) == 0x0000_0004


# -- VF BARs ----------------------------------------------------------------------------------


def test_igb_worked_example():
    model = SriovCapabilityModel(igb_params())
    # Linux sizing: all ones to each dword, read back.
    write32(model, 0x24, 0xFFFF_FFFF)
    write32(model, 0x28, 0xFFFF_FFFF)
    assert read32(model, 0x24) == 0xFFFF_C00C
    assert read32(model, 0x28) == 0xFFFF_FFFF
    # Program 0x1_0000_0000.
    write32(model, 0x24, 0x0000_000C)
    write32(model, 0x28, 0x0000_0001)
    assert read32(model, 0x24) == 0x0000_000C
    assert read32(model, 0x28) == 0x0000_0001
    assert model.vf_bar_base(0) == 0x1_0000_0000
    assert model.vf_bar_aperture(0) == 0x4000
    write16(model, 0x10, 4)
    write16(model, 0x08, 0x0019)
    assert read32(model, 0x08) == 0x0000_0019
    assert (model.vf_enable, model.vf_mse, model.ari_capable_hierarchy) == (True, True, True)
    assert model.num_vfs == 4
    assert (model.first_vf_offset, model.vf_stride) == (0x80, 2)
    assert read32(model, 0x14) == 0x0002_0080


def test_vf_bar_slot_queries():
    model = SriovCapabilityModel(igb_params())
    assert model.vf_bar_aperture(1) is None      # upper half of BAR0
    assert model.vf_bar_base(1) is None
    for slot in (2, 3, 4, 5):
        assert model.vf_bar_aperture(slot) is None
        assert model.vf_bar_base(slot) is None


def test_unimplemented_vf_bars_read_0_and_ignore_writes():
    model = SriovCapabilityModel(igb_params())
    for offset in (0x2C, 0x30, 0x34, 0x38):
        write32(model, offset, 0xFFFF_FFFF)
        assert read32(model, offset) == 0


def test_32bit_bar_sizing_and_programming():
    model = SriovCapabilityModel(small_bar_params())
    assert read32(model, 0x2C) == 0x0000_0000    # VF BAR2: 32-bit non-prefetchable
    write32(model, 0x2C, 0xFFFF_FFFF)
    assert read32(model, 0x2C) == 0xFFFF_F000
    write32(model, 0x2C, 0x8000_5000)
    assert read32(model, 0x2C) == 0x8000_5000
    assert model.vf_bar_base(2) == 0x8000_5000
    # Bits below 4 KiB are read-only 0.
    write32(model, 0x2C, 0x8000_5FFF)
    assert read32(model, 0x2C) == 0x8000_5000
    # 64-bit non-prefetchable VF BAR4/5.
    assert read32(model, 0x34) == 0x0000_0004
    write32(model, 0x34, 0xFFFF_FFFF)
    write32(model, 0x38, 0xFFFF_FFFF)
    assert read32(model, 0x34) == 0xFFFF_F004
    assert read32(model, 0x38) == 0xFFFF_FFFF
    assert model.vf_bar_base(4) == 0xFFFF_FFFF_FFFF_F000


def test_vf_bar_partial_writes():
    model = SriovCapabilityModel(igb_params())
    write32(model, 0x24, 0x1234_C00C)
    write32(model, 0x28, 0x0000_0001)
    write16(model, 0x26, 0xABCD)                 # upper half of the low dword
    assert read32(model, 0x24) == 0xABCD_C00C
    write8(model, 0x25, 0x00)                    # byte 1: bits 15:14 are RW
    assert read32(model, 0x24) == 0xABCD_000C
    write8(model, 0x24, 0xF3)                    # byte 0: address bits RO 0, type bits RO
    assert read32(model, 0x24) == 0xABCD_000C
    write8(model, 0x2B, 0x56)                    # top byte of the upper dword
    assert read32(model, 0x28) == 0x5600_0001
    assert model.vf_bar_base(0) == 0x5600_0001_ABCD_0000


def test_vf_bar_write_accepted_while_enabled():
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x10, 2)
    write16(model, 0x08, 0x0009)
    write32(model, 0x24, 0x8000_000C)
    write32(model, 0x28, 0x0000_0000)
    assert model.vf_bar_base(0) == 0x8000_0000


def test_aperture_grows_with_page_size():
    model = SriovCapabilityModel(small_bar_params())
    write32(model, 0x20, 0x0000_0002)            # 8 KiB pages, 4 KiB BARs
    assert model.vf_bar_aperture(2) == 0x2000
    assert model.vf_bar_aperture(4) == 0x2000
    write32(model, 0x2C, 0xFFFF_FFFF)
    assert read32(model, 0x2C) == 0xFFFF_E000
    write32(model, 0x34, 0xFFFF_FFFF)
    assert read32(model, 0x34) == 0xFFFF_E004
    write32(model, 0x20, 0x0000_0400)            # 4 MiB pages
    assert model.vf_bar_aperture(2) == 0x40_0000
    assert read32(model, 0x2C) == 0xFFC0_0000
    # Aperture of a BAR larger than the page is its size.
    model = SriovCapabilityModel(igb_params())
    write32(model, 0x20, 0x0000_0002)
    assert model.vf_bar_aperture(0) == 0x4000
    write32(model, 0x24, 0xFFFF_FFFF)
    assert read32(model, 0x24) == 0xFFFF_C00C


def test_page_size_growth_clears_address_bits():
    model = SriovCapabilityModel(small_bar_params())
    write32(model, 0x2C, 0x8000_3000)
    write32(model, 0x34, 0x0000_7004)
    write32(model, 0x38, 0x0000_0002)
    write32(model, 0x20, 0x0000_0002)            # 8 KiB
    assert read32(model, 0x2C) == 0x8000_2000
    assert model.vf_bar_base(2) == 0x8000_2000
    assert read32(model, 0x34) == 0x0000_6004
    assert read32(model, 0x38) == 0x0000_0002
    assert model.vf_bar_base(4) == 0x2_0000_6000
    write32(model, 0x20, 0x0000_0001)            # back to 4 KiB: bits do not come back
    assert read32(model, 0x2C) == 0x8000_2000
    assert read32(model, 0x34) == 0x0000_6004
    # A rejected page-size write clears nothing.
    write32(model, 0x2C, 0x8000_3000)
    write32(model, 0x20, 0x0000_0003)
    assert read32(model, 0x2C) == 0x8000_3000


def test_page_size_above_4gib_reaches_upper_dword():
    # Bit 21 = 2^33 bytes = 8 GiB pages.
    model = SriovCapabilityModel(igb_params(supported_page_sizes=0x553 | 1 << 21))
    write32(model, 0x24, 0x0000_000C)
    write32(model, 0x28, 0x0000_0003)            # 0x3_0000_0000
    write32(model, 0x20, 0x0020_0000)
    assert model.vf_bar_aperture(0) == 0x2_0000_0000
    assert model.vf_bar_base(0) == 0x2_0000_0000
    write32(model, 0x24, 0xFFFF_FFFF)
    write32(model, 0x28, 0xFFFF_FFFF)
    assert read32(model, 0x24) == 0x0000_000C
    assert read32(model, 0x28) == 0xFFFF_FFFE


def test_64bit_bar_larger_than_4gib():
    model = SriovCapabilityModel(igb_params(
        vf_bars=(Bar(index=0, size=8 << 30, is_64bit=True, prefetchable=True),)))
    write32(model, 0x24, 0xFFFF_FFFF)
    write32(model, 0x28, 0xFFFF_FFFF)
    assert read32(model, 0x24) == 0x0000_000C
    assert read32(model, 0x28) == 0xFFFF_FFFE


# -- Reset and a Linux-like sequence ------------------------------------------------------------


def test_reset_restores_every_register():
    params = igb_params(vf_10bit_tag_requester_supported=True)
    model = SriovCapabilityModel(params, next_offset=0x1C0)
    fresh = all_dwords(SriovCapabilityModel(params, next_offset=0x1C0))
    write32(model, 0x20, 0x0000_0002)
    write32(model, 0x24, 0x1234_C00C)
    write32(model, 0x28, 0x5678_9ABC)
    write16(model, 0x10, 8)
    write16(model, 0x08, 0x0039)
    model.vf_migration_status = True
    assert all_dwords(model) != fresh
    model.reset()
    assert all_dwords(model) == fresh
    assert read32(model, 0x08) == 0x0000_0000
    assert read32(model, 0x10) == 0x0000_0000
    assert read32(model, 0x20) == 0x0000_0001
    assert read32(model, 0x24) == 0x0000_000C
    assert read32(model, 0x28) == 0x0000_0000
    assert read32(model, 0x14) == 0x0002_0180
    assert model.vf_bar_base(0) == 0


def test_linux_enumeration_sequence():
    """sriov-spec.md section 4.1: ARI, page size, VF BAR sizing, descending NumVFs."""
    model = SriovCapabilityModel(igb_params())
    write16(model, 0x08, 0x0010)
    assert read16(model, 0x0E) == 8
    assert read32(model, 0x1C) == 0x0000_0553
    write32(model, 0x20, 0x0000_0001)
    sizes = []
    for i in range(6):
        offset = 0x24 + 4 * i
        original = read32(model, offset)
        write32(model, offset, 0xFFFF_FFFF)
        sizes.append(read32(model, offset))
        write32(model, offset, original)
    assert sizes == [0xFFFF_C00C, 0xFFFF_FFFF, 0, 0, 0, 0]
    assert read16(model, 0x1A) == 0x10CA
    for nr in range(8, 0, -1):
        write16(model, 0x10, nr)
        assert model.num_vfs == nr
        assert (read16(model, 0x14), read16(model, 0x16)) == (0x80, 2)
    write16(model, 0x10, 0)
    assert model.num_vfs == 0
