"""Unit tests of the whole-endpoint reference model (``sriov_tb.model.EndpointModel``).

Expected values are literal numbers taken from ``../shared/reference/sriov-spec.md`` (§2, §7,
§8 and the igb-like worked example at its end), ``docs/endpoint-behaviour.md`` and the comments of
``examples/*.toml``; none is computed with the model's own formulas.
"""

from pathlib import Path

import pytest

from sriov_ep.params import Bar, EndpointParams, load_params
from sriov_tb.model import EndpointModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TYPE0, TYPE1 = False, True
RESET_VF = {"bus_master_enable": False, "relaxed_ordering": True, "no_snoop": True}


def igb():
    """igb-82576.toml: PF 01:00.0, ARI at 0x100, SR-IOV at 0x160, 8 VFs, ARI offset 0x80 stride
    2, non-ARI offset 0x180 stride 2; PF BAR0/1 128 KiB, BAR3 16 KiB (32-bit); VF BAR0 and VF
    BAR3 16 KiB 64-bit prefetchable."""
    return EndpointModel(load_params(EXAMPLES / "igb-82576.toml"))


def many_vfs():
    """many-vfs.toml: PF 81:00.0, ARI at 0x100, SR-IOV at 0x140, 4000 VFs; ARI offset 1 stride
    1, non-ARI offset 0x100 stride 1; PF BAR0 1 MiB 64-bit, BAR4 64 KiB 32-bit."""
    return EndpointModel(load_params(EXAMPLES / "many-vfs.toml"))


# -- Access helpers: byte offsets, like software, turned into dword requests ---------------------


def pf_write(model, offset, value, size=4, rid=0x0100):
    """A Type 0 config write of ``size`` bytes to the PF at byte ``offset`` (naturally aligned);
    ``rid`` is the request's target (bus 01, devfn 00 by default)."""
    lane = offset % 4
    be = ((1 << size) - 1) << lane
    return model.config(TYPE0, rid, offset // 4, be, True, value << (8 * lane))


def pf_cfg_read(model, offset, rid=0x0100):
    """A Type 0 config read of the dword at byte ``offset`` of the PF, through routing."""
    return model.config(TYPE0, rid, offset // 4, 0xF, False, 0)


def write(model, type1, rid, offset, value, size=4):
    lane = offset % 4
    be = ((1 << size) - 1) << lane
    return model.config(type1, rid, offset // 4, be, True, value << (8 * lane))


def read(model, type1, rid, offset):
    return model.config(type1, rid, offset // 4, 0xF, False, 0)


def enable_igb_ari(model, num_vfs=4):
    """As in the spec's worked example: W16 NumVFs = 4, W16 Control = 0x0019 (VFE, MSE, ARI).
    The writes come from bus 01, so the PF captures bus 1."""
    assert pf_write(model, 0x160 + 0x10, num_vfs, size=2) == ("SC", 0)
    assert pf_write(model, 0x160 + 0x08, 0x0019, size=2) == ("SC", 0)


def enable_igb_non_ari(model, num_vfs=8):
    """NumVFs, then Control = 0x0009 (VFE, MSE; ARI Capable Hierarchy 0)."""
    assert pf_write(model, 0x160 + 0x10, num_vfs, size=2) == ("SC", 0)
    assert pf_write(model, 0x160 + 0x08, 0x0009, size=2) == ("SC", 0)


def pf_space(model):
    return [model.pf_read(reg) for reg in range(1024)]


def ext_cap_chain(read_dword):
    """Walk the extended capability list from 0x100 as pciutils does: (offset, header) pairs."""
    chain, offset, seen = [], 0x100, set()
    while offset:
        assert offset not in seen, "loop in the extended capability list"
        seen.add(offset)
        header = read_dword(offset // 4)
        assert header != 0xFFFF_FFFF
        assert header != 0
        chain.append((offset, header))
        offset = (header >> 20) & 0xFFC
    return chain


# -- The igb-like worked example at the end of sriov-spec.md -------------------------------------


def test_igb_worked_example_ari():
    model = igb()
    # VF BAR sizing through the PF's config space (SR-IOV at 0x160: VF BAR0 at 0x184).
    assert pf_write(model, 0x184, 0xFFFF_FFFF) == ("SC", 0)
    assert pf_write(model, 0x188, 0xFFFF_FFFF) == ("SC", 0)
    assert pf_cfg_read(model, 0x184) == ("SC", 0xFFFF_C00C)
    assert pf_cfg_read(model, 0x188) == ("SC", 0xFFFF_FFFF)
    # Program 0x1_0000_0000.
    pf_write(model, 0x184, 0x0000_000C)
    pf_write(model, 0x188, 0x0000_0001)
    assert model.sriov.vf_bar_base(0) == 0x1_0000_0000
    enable_igb_ari(model)
    assert model.captured_bus == 0x01
    assert pf_cfg_read(model, 0x168) == ("SC", 0x0000_0019)
    assert pf_cfg_read(model, 0x174) == ("SC", 0x0002_0080)     # offset 0x80, stride 2
    # VF n RID = 0x0180 + 2(n-1): 01:10.0, 01:10.2, 01:10.4, 01:10.6.
    assert model.decode(TYPE0, 0x0180) == ("VF", 1)
    assert model.decode(TYPE0, 0x0182) == ("VF", 2)
    assert model.decode(TYPE0, 0x0184) == ("VF", 3)
    assert model.decode(TYPE0, 0x0186) == ("VF", 4)
    assert model.decode(TYPE0, 0x0181) == (None, 0)             # between VFs (stride 2)
    assert model.decode(TYPE0, 0x0100) == ("PF", 0)
    assert model.vf_rid(1) == 0x0180
    assert model.vf_rid(4) == 0x0186
    # Dword 0 of 01:10.0 completes successfully with 0xFFFFFFFF.
    assert read(model, TYPE0, 0x0180, 0x00) == ("SC", 0xFFFF_FFFF)
    # 01:11.0 (would-be VF 5) -> UR.
    assert model.decode(TYPE0, 0x0188) == (None, 0)
    assert read(model, TYPE0, 0x0188, 0x00) == ("UR", 0)
    assert write(model, TYPE0, 0x0188, 0x04, 0x0004) == ("UR", 0)
    # The VFs are on the PF's own bus: a Type 1 request for bus 01 reaches nothing.
    assert model.decode(TYPE1, 0x0180) == (None, 0)
    assert read(model, TYPE1, 0x0180, 0x00) == ("UR", 0)


def test_igb_non_ari_82576():
    # Real 82576 (pciutils tests/cap-pcie-2), ARIHierarchy-: offset 384 (0x180), stride 2.
    model = igb()
    enable_igb_non_ari(model, num_vfs=8)
    assert pf_cfg_read(model, 0x174) == ("SC", 0x0002_0180)
    # VF1 = 0x0280 = 02:10.0, VF2 = 02:10.2 = 0x0282, VF8 = 0x028E = 02:11.6: Type 1 requests.
    assert model.decode(TYPE1, 0x0280) == ("VF", 1)
    assert model.decode(TYPE1, 0x0282) == ("VF", 2)
    assert model.decode(TYPE1, 0x028E) == ("VF", 8)
    assert model.decode(TYPE1, 0x0290) == (None, 0)
    assert read(model, TYPE1, 0x0280, 0x00) == ("SC", 0xFFFF_FFFF)
    assert read(model, TYPE1, 0x0282, 0x00) == ("SC", 0xFFFF_FFFF)
    # A Type 0 request with devfn 0x80 is for bus 01 (bus field not compared): nothing there.
    assert model.decode(TYPE0, 0x0180) == (None, 0)
    assert read(model, TYPE0, 0x0180, 0x00) == ("UR", 0)
    assert model.decode(TYPE0, 0x0280) == (None, 0)
    # A Type 1 request never reaches the PF.
    assert model.decode(TYPE1, 0x0100) == (None, 0)
    assert model.decode(TYPE1, 0x0200) == (None, 0)


def test_vfs_need_vf_enable_and_numvfs():
    model = igb()
    pf_write(model, 0x170, 4, size=2)                       # NumVFs 4, VF Enable still 0
    assert model.decode(TYPE1, 0x0280) == (None, 0)
    pf_write(model, 0x168, 0x0001, size=2)                  # VF Enable
    assert model.decode(TYPE1, 0x0280) == ("VF", 1)
    assert model.decode(TYPE1, 0x0286) == ("VF", 4)
    assert model.decode(TYPE1, 0x0288) == (None, 0)         # VF 5 > NumVFs
    assert model.decode(TYPE1, 0x027E) == (None, 0)         # below VF 1


def test_vf_enable_with_numvfs_zero():
    model = igb()
    pf_write(model, 0x168, 0x0001, size=2)
    for rid in (0x0280, 0x0282, 0x028E):
        assert model.decode(TYPE1, rid) == (None, 0)


# -- Bus number capture --------------------------------------------------------------------------


def test_bus_capture_moves_the_vfs():
    model = igb()
    assert model.captured_bus == 0
    # Configure with requests carrying bus 0: the PF stays at 00:00.0.
    pf_write(model, 0x170, 2, size=2, rid=0x0000)
    pf_write(model, 0x168, 0x0009, size=2, rid=0x0000)     # VFE, MSE, non-ARI
    assert model.captured_bus == 0
    assert model.pf_rid == 0x0000
    # Non-ARI: VF1 = 0x0000 + 0x180 = 01:10.0, VF2 = 01:10.2.
    assert model.decode(TYPE1, 0x0180) == ("VF", 1)
    assert model.decode(TYPE1, 0x0182) == ("VF", 2)
    assert model.decode(TYPE1, 0x0680) == (None, 0)
    # A Type 0 write (Cache Line Size) to the PF on bus 5 moves everything to bus 5.
    assert pf_write(model, 0x0C, 0x10, size=1, rid=0x0500) == ("SC", 0)
    assert model.captured_bus == 0x05
    assert model.pf_rid == 0x0500
    assert model.decode(TYPE1, 0x0680) == ("VF", 1)         # 06:10.0
    assert model.decode(TYPE1, 0x0682) == ("VF", 2)
    assert model.decode(TYPE1, 0x0180) == (None, 0)         # below the PF's RID now
    assert model.decode(TYPE1, 0x0500) == (None, 0)         # the PF's own bus
    assert read(model, TYPE1, 0x0680, 0x00) == ("SC", 0xFFFF_FFFF)


def test_bus_capture_ari_same_bus():
    model = igb()
    pf_write(model, 0x170, 4, size=2, rid=0x0000)
    pf_write(model, 0x168, 0x0019, size=2, rid=0x0000)
    # Type 0: the bus field is not compared, so any bus reaches VF 1 at devfn 0x80.
    assert model.decode(TYPE0, 0x0080) == ("VF", 1)
    assert model.decode(TYPE0, 0x0780) == ("VF", 1)
    # A Type 0 write reaching a VF captures nothing.
    assert write(model, TYPE0, 0x0780, 0x04, 0x0004, size=2) == ("SC", 0)
    assert model.captured_bus == 0
    assert model.vf_state(1)["bus_master_enable"] is True
    # A UR write captures nothing either.
    assert write(model, TYPE0, 0x0703, 0x04, 0x0004, size=2) == ("UR", 0)
    assert model.captured_bus == 0
    # A PF read captures nothing.
    assert pf_cfg_read(model, 0x00, rid=0x0300) == ("SC", 0x10C9_8086)
    assert model.captured_bus == 0
    # A PF write with byte enables 0 is still a write the PF claims: it captures.
    assert model.config(TYPE0, 0x0300, 1, 0b0000, True, 0xFFFF_FFFF) == ("SC", 0)
    assert model.captured_bus == 0x03
    assert model.pf_read(1) == 0x0010_0000                  # and changed nothing
    # VFs are on bus 3 now; Type 1 for bus 3 reaches nothing.
    assert model.decode(TYPE0, 0x0080) == ("VF", 1)
    assert model.decode(TYPE1, 0x0380) == (None, 0)


def test_pf_function_number_not_zero():
    # PF at 01:00.2 (devfn 0x02); non-ARI offset 0x100 stride 1 (defaults).
    model = EndpointModel(EndpointParams(pf_rid=0x0102, total_vfs=4))
    assert model.decode(TYPE0, 0x0102) == ("PF", 0)
    assert model.decode(TYPE0, 0x0100) == (None, 0)
    assert model.decode(TYPE0, 0x0502) == ("PF", 0)
    pf_write(model, 0x140 + 0x10, 4, size=2, rid=0x0102)
    pf_write(model, 0x140 + 0x08, 0x0001, size=2, rid=0x0102)
    assert model.pf_rid == 0x0102
    # VF1 = 0x0102 + 0x100 = 0x0202 (02:00.2), VF4 = 0x0205.
    assert model.decode(TYPE1, 0x0202) == ("VF", 1)
    assert model.decode(TYPE1, 0x0205) == ("VF", 4)
    assert model.decode(TYPE1, 0x0201) == (None, 0)
    assert model.decode(TYPE1, 0x0206) == (None, 0)


def test_stride_zero_single_vf():
    model = EndpointModel(EndpointParams(total_vfs=1, vf_stride_ari=0, vf_stride_non_ari=0))
    pf_write(model, 0x140 + 0x10, 1, size=2)
    pf_write(model, 0x140 + 0x08, 0x0001, size=2)
    assert model.decode(TYPE1, 0x0200) == ("VF", 1)
    assert model.decode(TYPE1, 0x0201) == (None, 0)
    assert model.decode(TYPE1, 0x01FF) == (None, 0)


def test_decode_has_no_side_effects():
    model = igb()
    enable_igb_ari(model)
    before = (pf_space(model), model.captured_bus, list(model.events))
    for rid in (0x0100, 0x0180, 0x0188, 0x0500, 0x0780, 0xFFFF):
        model.decode(TYPE0, rid)
        model.decode(TYPE1, rid)
    assert (pf_space(model), model.captured_bus, list(model.events)) == before


# -- Large VF counts -----------------------------------------------------------------------------


def test_many_vfs_routing():
    model = many_vfs()
    pf_write(model, 0x150, 4000, size=2, rid=0x8100)        # NumVFs (SR-IOV at 0x140)
    pf_write(model, 0x148, 0x0019, size=2, rid=0x8100)      # VFE, MSE, ARI
    assert model.captured_bus == 0x81
    # ARI: offset 1, stride 1: 81:00.1 .. 90:14.0 (0x8101..0x90A0).
    assert model.decode(TYPE0, 0x8101) == ("VF", 1)
    assert model.decode(TYPE0, 0x81FF) == ("VF", 255)
    assert model.decode(TYPE1, 0x8200) == ("VF", 256)
    assert model.decode(TYPE1, 0x90A0) == ("VF", 4000)
    assert model.decode(TYPE1, 0x90A1) == (None, 0)
    assert model.decode(TYPE1, 0x8101) == (None, 0)         # own bus via Type 1
    # non-ARI: offset 0x100: VF1 = 0x8200 = 82:00.0, VF4000 = 0x919F = 91:13.7.
    pf_write(model, 0x148, 0x0010, size=2, rid=0x8100)      # clear VFE (ARI kept, latched)
    pf_write(model, 0x148, 0x0000, size=2, rid=0x8100)      # now ARI clears
    pf_write(model, 0x148, 0x0009, size=2, rid=0x8100)
    assert model.decode(TYPE0, 0x8101) == (None, 0)
    assert model.decode(TYPE1, 0x8200) == ("VF", 1)
    assert model.decode(TYPE1, 0x919F) == ("VF", 4000)
    assert model.decode(TYPE1, 0x91A0) == (None, 0)
    # Per-VF state of VF 4000.
    assert write(model, TYPE1, 0x919F, 0x04, 0x0004, size=2) == ("SC", 0)
    assert read(model, TYPE1, 0x919F, 0x04) == ("SC", 0x0011_0004)
    assert model.vf_state(4000)["bus_master_enable"] is True
    assert model.vf_state(3999) == RESET_VF


def test_65535_vfs_are_cheap():
    params = EndpointParams(pf_rid=0x0000, total_vfs=65535, first_vf_offset_non_ari=1,
                            vf_stride_non_ari=1)
    model = EndpointModel(params)
    pf_write(model, 0x150, 0xFFFF, size=2, rid=0x0000)
    pf_write(model, 0x148, 0x0001, size=2, rid=0x0000)
    assert model.decode(TYPE1, 0xFFFF) == ("VF", 65535)
    assert model.decode(TYPE0, 0x0001) == ("VF", 1)
    assert model.vf_state(65535) == RESET_VF
    write(model, TYPE1, 0xFFFF, 0x04, 0x0004, size=1)
    assert model.vf_state(65535)["bus_master_enable"] is True
    assert read(model, TYPE1, 0xFFFF, 0x00) == ("SC", 0xFFFF_FFFF)


# -- PF configuration space ----------------------------------------------------------------------


def test_pf_header_reset_values_igb():
    model = igb()
    expected = {
        0x00: 0x10C9_8086,      # Vendor 8086, Device 10C9
        0x04: 0x0010_0000,      # Status: Capabilities List
        0x08: 0x0200_0001,      # class 02 00 00, revision 01
        0x0C: 0x0000_0000,      # Header Type 0x00
        0x10: 0x0000_0000, 0x14: 0x0000_0000, 0x18: 0x0000_0000,
        0x1C: 0x0000_0000, 0x20: 0x0000_0000, 0x24: 0x0000_0000,
        0x28: 0x0000_0000,
        0x2C: 0x0000_0000,      # subsystem IDs 0
        0x30: 0x0000_0000,
        0x34: 0x0000_0040,      # Capabilities Pointer
        0x38: 0x0000_0000,
        0x3C: 0x0000_0100,      # Interrupt Pin INTA
    }
    for offset, value in expected.items():
        assert model.pf_read(offset // 4) == value, hex(offset)
        assert pf_cfg_read(model, offset) == ("SC", value)


def test_pf_header_nvme_ids():
    model = EndpointModel(load_params(EXAMPLES / "nvme.toml"))
    assert model.pf_read(0x00 // 4) == 0x0010_1B36
    assert model.pf_read(0x08 // 4) == 0x0108_0202
    assert model.pf_read(0x2C // 4) == 0x1100_1AF4


def test_pf_header_write_masks():
    model = igb()
    pf_write(model, 0x04, 0xFFFF_FFFF)
    assert model.pf_read(0x04 // 4) == 0x0010_0546     # bits 1, 2, 6, 8, 10; Status unchanged
    pf_write(model, 0x04, 0x0000, size=2)
    assert model.pf_read(0x04 // 4) == 0x0010_0000
    pf_write(model, 0x05, 0xFF, size=1)                 # byte 1 only: bits 8 and 10
    assert model.pf_read(0x04 // 4) == 0x0010_0500
    pf_write(model, 0x0C, 0xFFFF_FFFF)
    assert model.pf_read(0x0C // 4) == 0x0000_00FF      # only Cache Line Size
    pf_write(model, 0x3C, 0xFFFF_FFFF)
    assert model.pf_read(0x3C // 4) == 0x0000_01FF      # Interrupt Line RW, Pin 01
    pf_write(model, 0x3C, 0x0000_0000)
    assert model.pf_read(0x3C // 4) == 0x0000_0100
    # Read-only header dwords ignore writes.
    for offset in (0x00, 0x08, 0x28, 0x2C, 0x30, 0x34, 0x38):
        before = model.pf_read(offset // 4)
        pf_write(model, offset, 0xFFFF_FFFF)
        pf_write(model, offset, 0x0000_0000)
        assert model.pf_read(offset // 4) == before, hex(offset)


def test_pf_status_rw1c():
    model = igb()
    model.status_rw1c = 0x0100      # nothing sets it; poke the field to exercise RW1C
    assert model.pf_read(1) == 0x0110_0000
    pf_write(model, 0x04, 0x0000_0000)                  # writing 0 does nothing
    assert model.pf_read(1) == 0x0110_0000
    model.config(TYPE0, 0x0100, 1, 0b0011, True, 0x0100_0000)   # 1 in a disabled byte
    assert model.pf_read(1) == 0x0110_0000
    pf_write(model, 0x06, 0x0100, size=2)
    assert model.pf_read(1) == 0x0010_0000
    model.device_status_rw1c = 0x0005
    assert model.pf_read(0x48 // 4) == 0x0005_2810
    pf_write(model, 0x4A, 0x0001, size=2)
    assert model.pf_read(0x48 // 4) == 0x0004_2810


def test_pf_bar_sizing_igb():
    model = igb()
    for offset in range(0x10, 0x28, 4):
        pf_write(model, offset, 0xFFFF_FFFF)
    assert [model.pf_read(offset // 4) for offset in range(0x10, 0x28, 4)] == [
        0xFFFE_0000,    # BAR0 128 KiB, 32-bit non-prefetchable
        0xFFFE_0000,    # BAR1 128 KiB
        0x0000_0000,    # BAR2 not implemented (the 82576's I/O BAR is left out)
        0xFFFF_C000,    # BAR3 16 KiB
        0x0000_0000,
        0x0000_0000,
    ]
    pf_write(model, 0x10, 0xF7A0_0000)
    assert model.pf_read(0x10 // 4) == 0xF7A0_0000
    pf_write(model, 0x10, 0x1234_5678)
    assert model.pf_read(0x10 // 4) == 0x1234_0000      # bits 16:0 RO 0 (128 KiB)
    pf_write(model, 0x13, 0xAB, size=1)                 # one byte: the rest stays
    assert model.pf_read(0x10 // 4) == 0xAB34_0000


def test_pf_bar_64bit():
    model = many_vfs()
    for offset in range(0x10, 0x28, 4):
        pf_write(model, offset, 0xFFFF_FFFF, rid=0x8100)
    assert [model.pf_read(offset // 4) for offset in range(0x10, 0x28, 4)] == [
        0xFFF0_0004,    # BAR0 1 MiB, 64-bit non-prefetchable
        0xFFFF_FFFF,    # BAR1: its upper dword, all RW
        0x0000_0000,
        0x0000_0000,
        0xFFFF_0000,    # BAR4 64 KiB, 32-bit
        0x0000_0000,
    ]
    pf_write(model, 0x10, 0x0000_0000, rid=0x8100)
    pf_write(model, 0x14, 0x0000_0020, rid=0x8100)
    assert model.pf_read(0x10 // 4) == 0x0000_0004
    assert model.pf_read(0x14 // 4) == 0x0000_0020
    assert model.bar_address[0] == 0x20_0000_0000


def test_pf_bar_above_4gib():
    params = EndpointParams(pf_bars=(Bar(index=2, size=8 << 30, is_64bit=True,
                                         prefetchable=True),))
    model = EndpointModel(params)
    assert model.pf_read(0x18 // 4) == 0x0000_000C
    pf_write(model, 0x18, 0xFFFF_FFFF)
    pf_write(model, 0x1C, 0xFFFF_FFFF)
    assert model.pf_read(0x18 // 4) == 0x0000_000C
    assert model.pf_read(0x1C // 4) == 0xFFFF_FFFE      # bit 32 (8 GiB = 2^33) RO 0


def test_pcie_capability_values():
    model = igb()
    assert model.pf_read(0x34 // 4) == 0x0000_0040
    assert [model.pf_read(reg) for reg in range(0x40 // 4, 0x80 // 4)] == [
        0x0002_7C10,    # 0x40 Cap ID 0x10, Next 0x7C (PM), version 2 Endpoint
        0x1000_8000,    # 0x44 Device Capabilities: FLR, RBER, 128 B
        0x0000_2810,    # 0x48 Device Control reset 0x2810, Device Status 0
        0x0000_0012,    # 0x4C Link Capabilities 5.0 GT/s x1
        0x0012_0000,    # 0x50 Link Control 0, Link Status 5.0 GT/s x1
        0, 0, 0, 0,     # 0x54-0x63 Slot and Root
        0x0000_0000,    # 0x64 Device Capabilities 2
        0x0000_0000,    # 0x68 Device Control 2 / Status 2
        0x0000_0006,    # 0x6C Link Capabilities 2
        0x0000_0002,    # 0x70 Link Control 2 / Status 2
        0, 0,           # 0x74-0x7B Slot 2
        0x0003_8401,    # 0x7C PM capability: Cap ID 0x01, Next 0x84 (MSI-X), PMC version 3
    ]
    # MSI-X at 0x84: Cap ID 0x11, Next 0, Table Size 9 (10 vectors); table in BAR3 at 0, PBA
    # in BAR3 at 0x2000.
    assert [model.pf_read(reg) for reg in range(0x84 // 4, 0x90 // 4)] == [
        0x0009_0011, 0x0000_0003, 0x0000_2003]


def test_pcie_capability_write_masks():
    model = igb()
    pf_write(model, 0x48, 0x7FFF, size=2)       # everything but Initiate FLR
    assert model.pf_read(0x48 // 4) == 0x0000_78FF
    pf_write(model, 0x48, 0x0000, size=2)
    assert model.pf_read(0x48 // 4) == 0x0000_0000
    pf_write(model, 0x49, 0x28, size=1)
    assert model.pf_read(0x48 // 4) == 0x0000_2800
    pf_write(model, 0x4A, 0xFFFF, size=2)       # Device Status: RW1C never set, RO
    assert model.pf_read(0x48 // 4) == 0x0000_2800
    pf_write(model, 0x50, 0xFFFF_FFFF)
    assert model.pf_read(0x50 // 4) == 0x0012_00CB  # ASPM, RCB, CCC, ES
    # Read-only PCIe capability dwords ignore writes.
    for offset in (0x40, 0x44, 0x4C, 0x54, 0x64, 0x68, 0x6C, 0x70, 0x74, 0x78):
        before = model.pf_read(offset // 4)
        pf_write(model, offset, 0xFFFF_FFFF)
        pf_write(model, offset, 0x0000_0000)
        assert model.pf_read(offset // 4) == before, hex(offset)
    assert model.events == []


def test_unimplemented_pf_dwords_read_zero_and_ignore_writes():
    model = igb()
    # 0x90..0xFF (after PM at 0x7C and MSI-X at 0x84) and everything in 0x100..0xFFF outside
    # ARI (0x100-0x107) and SR-IOV (0x160-0x19F).
    regs = [r for r in range(0x90 // 4, 1024)
            if not 0x100 <= r * 4 < 0x108 and not 0x160 <= r * 4 < 0x1A0]
    for reg in regs:
        model.config(TYPE0, 0x0100, reg, 0xF, True, 0xFFFF_FFFF)
    assert all(model.pf_read(reg) == 0 for reg in regs)
    # Linux: 0x100 must not read 0xFFFFFFFF, and 0x200..0xF00 must not mirror dword 0.
    assert model.pf_read(0x100 // 4) != 0xFFFF_FFFF
    assert all(model.pf_read(off // 4) == 0 for off in range(0x200, 0x1000, 0x100))


# -- Extended capability chain -------------------------------------------------------------------


def test_extended_capability_chain_igb():
    model = igb()
    assert ext_cap_chain(model.pf_read) == [
        (0x100, 0x1601_000E),   # ARI, next 0x160
        (0x160, 0x0001_0010),   # SR-IOV, next 0 ends the list
    ]
    assert model.pf_read(0x104 // 4) == 0x0000_0000
    pf_write(model, 0x100, 0xFFFF_FFFF)
    pf_write(model, 0x104, 0xFFFF_FFFF)                 # ARI is read-only
    assert model.pf_read(0x100 // 4) == 0x1601_000E
    assert model.pf_read(0x104 // 4) == 0x0000_0000


def test_extended_capability_chain_sriov_first():
    model = EndpointModel(EndpointParams(sriov_cap_offset=0x100, ari_cap_offset=0x140))
    assert ext_cap_chain(model.pf_read) == [
        (0x100, 0x1401_0010),   # SR-IOV, next 0x140
        (0x140, 0x0001_000E),   # ARI, next 0
    ]


def test_extended_capability_chain_nvme_and_many_vfs():
    model = EndpointModel(load_params(EXAMPLES / "nvme.toml"))
    assert ext_cap_chain(model.pf_read) == [(0x100, 0x1201_000E), (0x120, 0x0001_0010)]
    model = many_vfs()
    assert ext_cap_chain(model.pf_read) == [(0x100, 0x1401_000E), (0x140, 0x0001_0010)]


def test_sriov_capability_through_pf_space():
    model = igb()
    assert [model.pf_read(reg) for reg in range(0x160 // 4, 0x1A0 // 4)] == [
        0x0001_0010, 0x0000_0000, 0x0000_0000, 0x0008_0008,
        0x0000_0000, 0x0002_0180, 0x10CA_0000, 0x0000_0553,
        0x0000_0001, 0x0000_000C, 0x0000_0000, 0x0000_0000,
        0x0000_000C, 0x0000_0000, 0x0000_0000, 0x0000_0000,
    ]


# -- VF configuration space ----------------------------------------------------------------------


def test_vf_config_space_values():
    model = igb()
    enable_igb_ari(model)
    expected = {
        0x00: 0xFFFF_FFFF, 0x04: 0x0011_0000, 0x08: 0x0200_0001, 0x0C: 0x0000_0000,
        0x10: 0, 0x14: 0, 0x18: 0, 0x1C: 0, 0x20: 0, 0x24: 0, 0x28: 0,
        0x2C: 0x0000_0000, 0x30: 0, 0x34: 0x0000_0040, 0x38: 0, 0x3C: 0x0000_0000,
        0x40: 0x0002_7C10, 0x44: 0x1000_8000, 0x48: 0x0000_0810, 0x4C: 0x0000_0012,
        0x50: 0x0012_0000, 0x54: 0, 0x58: 0, 0x5C: 0, 0x60: 0, 0x64: 0, 0x68: 0,
        0x6C: 0x0000_0006, 0x70: 0x0000_0002, 0x74: 0, 0x78: 0,
        # MSI-X: Cap ID 0x11, Next 0, Table Size 2 (3 vectors); VF BAR3 at 0, PBA at 0x2000.
        0x7C: 0x0002_0011, 0x80: 0x0000_0003, 0x84: 0x0000_2003, 0x88: 0,
        0x100: 0x0001_000E, 0x104: 0x0000_0000,
        0x160: 0,   # no SR-IOV capability in a VF
    }
    for offset, value in expected.items():
        assert model.vf_read(3, offset // 4) == value, hex(offset)
        assert read(model, TYPE0, 0x0184, offset) == ("SC", value), hex(offset)
    assert ext_cap_chain(lambda reg: model.vf_read(1, reg)) == [(0x100, 0x0001_000E)]
    nvme = EndpointModel(load_params(EXAMPLES / "nvme.toml"))
    assert nvme.vf_read(1, 0x08 // 4) == 0x0108_0202
    assert nvme.vf_read(1, 0x2C // 4) == 0x1100_1AF4


def test_vf_read_only_registers_ignore_writes():
    model = igb()
    enable_igb_ari(model)
    before = [model.vf_read(2, reg) for reg in range(1024)]
    # (Command, Device Control and MSI-X Message Control have writable bits: below.)
    for reg in range(1024):
        if reg not in (0x04 // 4, 0x48 // 4, 0x7C // 4):
            assert model.config(TYPE0, 0x0182, reg, 0xF, True, 0xFFFF_FFFF) == ("SC", 0)
    assert [model.vf_read(2, reg) for reg in range(1024)] == before
    # MSI-X Message Control: only MSI-X Enable (bit 15) and Function Mask (bit 14).
    write(model, TYPE0, 0x0182, 0x7C, 0xFFFF_FFFF)
    assert model.vf_read(2, 0x7C // 4) == 0xC002_0011
    write(model, TYPE0, 0x0182, 0x7C, 0x0000_0000)
    assert model.vf_read(2, 0x7C // 4) == 0x0002_0011
    assert model.vf_state(2) == RESET_VF
    # Command: only Bus Master Enable; Memory Space Enable is hard-wired 0.
    write(model, TYPE0, 0x0182, 0x04, 0xFFFF_FFFF)
    assert model.vf_read(2, 1) == 0x0011_0004
    # Device Control: only bits 4 and 11 (bit 15 not set here); Device Status RO 0.
    write(model, TYPE0, 0x0182, 0x48, 0xFFFF_7FFF)
    assert model.vf_read(2, 0x48 // 4) == 0x0000_0810
    write(model, TYPE0, 0x0182, 0x48, 0x0000, size=2)
    assert model.vf_read(2, 0x48 // 4) == 0x0000_0000
    assert model.vf_state(2) == {"bus_master_enable": True, "relaxed_ordering": False,
                                 "no_snoop": False}
    write(model, TYPE0, 0x0182, 0x49, 0x08, size=1)         # byte 1 only: No Snoop
    assert model.vf_read(2, 0x48 // 4) == 0x0000_0800
    assert model.events == []


def test_vf_bus_master_enable_per_vf():
    model = igb()
    enable_igb_ari(model)
    assert write(model, TYPE0, 0x0182, 0x04, 0x0004, size=2) == ("SC", 0)
    assert read(model, TYPE0, 0x0182, 0x04) == ("SC", 0x0011_0004)
    assert read(model, TYPE0, 0x0180, 0x04) == ("SC", 0x0011_0000)
    assert model.vf_state(2) == {"bus_master_enable": True, "relaxed_ordering": True,
                                 "no_snoop": True}
    for n in (1, 3, 4):
        assert model.vf_state(n) == RESET_VF
    # Byte enable 0 or byte 1 only: Bus Master Enable (byte 0) unchanged.
    model.config(TYPE0, 0x0182, 1, 0b0000, True, 0)
    model.config(TYPE0, 0x0182, 1, 0b0010, True, 0)
    assert model.vf_state(2)["bus_master_enable"] is True
    # The PF's Command is separate.
    assert model.pf_read(1) == 0x0010_0000
    write(model, TYPE0, 0x0182, 0x04, 0x0000, size=2)
    assert model.vf_state(2) == RESET_VF


def test_vf_flr_resets_that_vf_only():
    model = igb()
    enable_igb_ari(model)
    write(model, TYPE0, 0x0182, 0x04, 0x0004, size=2)       # VF2 BME
    write(model, TYPE0, 0x0182, 0x48, 0x0000, size=2)       # VF2 RO and NS off
    write(model, TYPE0, 0x0184, 0x04, 0x0004, size=2)       # VF3 BME
    # A 1 in bit 15 without byte 1 enabled is not an FLR.
    assert model.config(TYPE0, 0x0182, 0x48 // 4, 0b0001, True, 0x0000_8000) == ("SC", 0)
    assert model.events == []
    # W16 0x8000 at 0x48 of VF2: Initiate FLR.
    assert write(model, TYPE0, 0x0182, 0x48, 0x8000, size=2) == ("SC", 0)
    assert model.events == [("vf_flr", 2, 0)]
    assert model.vf_state(2) == RESET_VF
    assert model.vf_read(2, 0x48 // 4) == 0x0000_0810       # bit 15 reads 0
    assert model.vf_read(2, 0x04 // 4) == 0x0011_0000
    assert model.vf_state(3)["bus_master_enable"] is True
    # W8 0x80 at 0x49 of VF3 (together with a cleared No Snoop: the FLR wins).
    assert write(model, TYPE0, 0x0184, 0x49, 0x80, size=1) == ("SC", 0)
    assert model.events == [("vf_flr", 2, 0), ("vf_flr", 3, 0)]
    assert model.vf_state(3) == RESET_VF
    # Nothing else moved.
    assert model.pf_read(0x168 // 4) == 0x0000_0019
    assert model.pf_read(0x170 // 4) == 0x0000_0004


def test_vf_enable_clear_resets_vf_state():
    model = igb()
    enable_igb_ari(model)
    write(model, TYPE0, 0x0180, 0x04, 0x0004, size=2)
    write(model, TYPE0, 0x0186, 0x48, 0x0000, size=2)
    # A Control write that keeps VF Enable at 1 resets nothing.
    pf_write(model, 0x168, 0x0011, size=2)                  # MSE off, VFE stays
    assert model.events == []
    assert model.vf_state(1)["bus_master_enable"] is True
    # Clear VF Enable (ARI bit kept, as Linux does).
    pf_write(model, 0x168, 0x0010, size=2)
    assert model.events == [("vfs_reset", 0)]
    assert read(model, TYPE0, 0x0180, 0x04) == ("UR", 0)
    for n in range(1, 9):
        assert model.vf_state(n) == RESET_VF
    assert model.pf_read(0x170 // 4) == 0x0000_0004        # NumVFs keeps its value
    # Clearing it again is no transition.
    pf_write(model, 0x168, 0x0010, size=2)
    assert model.events == [("vfs_reset", 0)]
    # Re-enabled VFs start from reset values.
    pf_write(model, 0x168, 0x0019, size=2)
    assert read(model, TYPE0, 0x0180, 0x04) == ("SC", 0x0011_0000)
    assert read(model, TYPE0, 0x0186, 0x48) == ("SC", 0x0000_0810)
    # A W32 at 0x168 clearing VFE also counts.
    pf_write(model, 0x168, 0x0000_0000)
    assert model.events == [("vfs_reset", 0), ("vfs_reset", 0)]


def test_pf_flr():
    model = igb()
    pf_write(model, 0x10, 0xF7A0_0000)
    pf_write(model, 0x184, 0x0000_000C)
    pf_write(model, 0x188, 0x0000_0001)
    pf_write(model, 0x180, 0x0000_0002)                     # System Page Size 8 KiB
    enable_igb_ari(model)
    pf_write(model, 0x04, 0x0546, size=2)
    pf_write(model, 0x0C, 0x10, size=1)
    pf_write(model, 0x3C, 0x0B, size=1)
    pf_write(model, 0x48, 0x50FF, size=2)
    pf_write(model, 0x50, 0x00C3, size=2)
    write(model, TYPE0, 0x0182, 0x04, 0x0004, size=2)
    assert model.pf_read(0x48 // 4) == 0x0000_50FF
    assert model.captured_bus == 0x01
    # A 1 in bit 15 without byte 1 enabled is no FLR.
    model.config(TYPE0, 0x0100, 0x48 // 4, 0b0001, True, 0x0000_8000)
    assert model.events == []
    assert model.pf_read(0x04 // 4) == 0x0010_0546
    # Initiate FLR with a W16 at 0x48 from bus 1.
    assert pf_write(model, 0x48, 0xA8FF, size=2) == ("SC", 0)
    assert model.events == [("vfs_reset", 0)]
    assert model.pf_read(0x04 // 4) == 0x0010_0000
    assert model.pf_read(0x0C // 4) == 0x0000_0000
    assert model.pf_read(0x10 // 4) == 0x0000_0000
    assert model.pf_read(0x3C // 4) == 0x0000_0100
    # PCIe Base §6.6.2: an FLR keeps the settings that control the Link: Max_Payload_Size
    # (Device Control 7:5, written 0b111) and ASPM Control, Common Clock Configuration and
    # Extended Synch (Link Control 0x00C3); the rest of Device Control is back to 0x2810.
    assert model.pf_read(0x48 // 4) == 0x0000_28F0
    assert model.pf_read(0x50 // 4) == 0x0012_00C3
    assert model.pf_read(0x168 // 4) == 0x0000_0010         # VFE, MSE 0; ARI kept
    assert model.pf_read(0x170 // 4) == 0x0000_0000         # NumVFs 0
    assert model.pf_read(0x180 // 4) == 0x0000_0001         # System Page Size 4 KiB
    assert model.pf_read(0x184 // 4) == 0x0000_000C         # VF BAR0 type bits only
    assert model.pf_read(0x188 // 4) == 0x0000_0000
    assert model.vf_state(2) == RESET_VF
    assert read(model, TYPE0, 0x0182, 0x00) == ("UR", 0)
    assert model.captured_bus == 0x01                       # survives the FLR
    # W8 0x80 at 0x49 from bus 2 is an FLR too (and captures bus 2).
    assert pf_write(model, 0x49, 0x80, size=1, rid=0x0200) == ("SC", 0)
    assert model.events == [("vfs_reset", 0), ("vfs_reset", 0)]
    assert model.captured_bus == 0x02
    # A conventional reset returns the Link settings too.
    model.reset()
    assert model.pf_read(0x48 // 4) == 0x0000_2810
    assert model.pf_read(0x50 // 4) == 0x0012_0000


def test_conventional_reset():
    model = igb()
    enable_igb_ari(model)
    pf_write(model, 0x04, 0x0006, size=2)
    write(model, TYPE0, 0x0180, 0x04, 0x0004, size=2)
    write(model, TYPE0, 0x0180, 0x48, 0x8000, size=2)
    write(model, TYPE0, 0x0182, 0x04, 0x0004, size=2)
    events = list(model.events)
    model.reset()
    assert model.captured_bus == 0
    assert model.events == events                           # neither cleared nor appended
    assert model.pf_read(0x04 // 4) == 0x0010_0000
    assert model.pf_read(0x168 // 4) == 0x0000_0000
    assert model.vf_state(2) == RESET_VF
    fresh = igb()
    assert pf_space(model) == pf_space(fresh)


# -- Unsupported requests ------------------------------------------------------------------------


def test_ur_changes_nothing():
    model = igb()
    enable_igb_ari(model)
    write(model, TYPE0, 0x0182, 0x04, 0x0004, size=2)
    before = (pf_space(model), model.captured_bus, list(model.events),
              [model.vf_state(n) for n in range(1, 9)])
    requests = [
        (TYPE0, 0x0701),    # devfn 01: neither the PF nor a VF, bus 7 would be captured
        (TYPE0, 0x0181),    # between VF1 and VF2
        (TYPE0, 0x0188),    # VF 5 > NumVFs
        (TYPE0, 0x018E),    # VF 8 > NumVFs
        (TYPE1, 0x0100),    # Type 1 to the PF's own bus
        (TYPE1, 0x0182),    # Type 1 to the PF's own bus (VF2's RID)
        (TYPE1, 0x0282),    # nothing on bus 2 in ARI mode
    ]
    for type1, rid in requests:
        for reg in (0x00, 0x04 // 4, 0x0C // 4, 0x48 // 4, 0x168 // 4, 0x170 // 4):
            assert model.config(type1, rid, reg, 0xF, True, 0xFFFF_FFFF) == ("UR", 0)
            assert model.config(type1, rid, reg, 0xF, False, 0) == ("UR", 0)
    after = (pf_space(model), model.captured_bus, list(model.events),
             [model.vf_state(n) for n in range(1, 9)])
    assert after == before
    # With VF Enable 0 no VF answers, and a would-be VF FLR does nothing.
    pf_write(model, 0x168, 0x0010, size=2)
    assert model.config(TYPE0, 0x0182, 0x48 // 4, 0b0010, True, 0x0000_8000) == ("UR", 0)
    assert model.events == [("vfs_reset", 0)]


def test_byte_enable_zero_read_returns_dword():
    model = igb()
    assert model.config(TYPE0, 0x0100, 0, 0b0000, False, 0) == ("SC", 0x10C9_8086)


# -- Argument checks -----------------------------------------------------------------------------


def test_arguments_checked():
    model = igb()
    with pytest.raises(ValueError):
        model.config(TYPE0, 0x0100, 1024, 0xF, False, 0)
    with pytest.raises(ValueError):
        model.config(TYPE0, 0x0100, 0, 0x10, True, 0)
    with pytest.raises(ValueError):
        model.config(TYPE0, 0x0100, 0, 0xF, True, 1 << 32)
    with pytest.raises(ValueError):
        model.config(TYPE0, 0x10000, 0, 0xF, False, 0)
    with pytest.raises(ValueError):
        model.pf_read(-1)
    with pytest.raises(ValueError):
        model.vf_read(0, 0)
    with pytest.raises(ValueError):
        model.vf_state(9)
