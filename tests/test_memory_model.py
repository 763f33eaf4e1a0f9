"""Unit tests of memory-request decoding in the reference model
(``sriov_tb.model.EndpointModel.decode_memory``).

Expected values are literal numbers from ``../shared/reference/sriov-spec.md`` (§3 VF BARs,
§8 cases 10, 11 and 28, the igb-like worked example at its end) and ``docs/endpoint-behaviour.md``
§5; none is computed with the model's own formulas. The model is programmed only through
``config()``, with Type 0 writes to the PF at its Routing ID, as a host would.
"""

from pathlib import Path

import pytest

from sriov_ep.params import Bar, EndpointParams, load_params
from sriov_tb.model import EndpointModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TYPE0 = False
MISS = (False, 0, 0, 0)


def igb():
    """igb-82576.toml: PF 01:00.0 (RID 0x0100), SR-IOV at 0x160, TotalVFs 8. PF BAR0, BAR1 128 KiB
    and BAR3 16 KiB, all 32-bit; VF BAR0 and VF BAR3 16 KiB 64-bit prefetchable."""
    return EndpointModel(load_params(EXAMPLES / "igb-82576.toml"))


def custom(total_vfs=4, pf_bars=(), vf_bars=(), **kwargs):
    """A PF at 01:00.0 (RID 0x0100) with ARI at 0x100 and SR-IOV at 0x140."""
    return EndpointModel(EndpointParams(total_vfs=total_vfs, pf_bars=pf_bars, vf_bars=vf_bars,
                                        **kwargs))


def pf_write(model, offset, value, size=4, rid=0x0100):
    """A Type 0 config write of ``size`` bytes at byte ``offset`` of the PF (naturally aligned)."""
    lane = offset % 4
    be = ((1 << size) - 1) << lane
    assert model.config(TYPE0, rid, offset // 4, be, True, value << (8 * lane)) == ("SC", 0)


def pf_read(model, offset, rid=0x0100):
    status, data = model.config(TYPE0, rid, offset // 4, 0xF, False, 0)
    assert status == "SC"
    return data


# igb register offsets (SR-IOV capability at 0x160).
IGB_CONTROL  = 0x168
IGB_NUM_VFS  = 0x170
IGB_PAGE     = 0x180
IGB_VF_BAR0  = 0x184      # low dword; upper dword at 0x188
IGB_VF_BAR3  = 0x190      # low dword; upper dword at 0x194

# Register offsets of the custom endpoints (SR-IOV capability at 0x140).
CONTROL      = 0x148
NUM_VFS      = 0x150
PAGE         = 0x160
VF_BAR0      = 0x164      # VF BARi at 0x164 + 4*i

VFE_MSE_ARI = 0x0019
VFE_MSE     = 0x0009
VFE_ONLY    = 0x0001
MSE_ONLY    = 0x0008


def igb_programmed(num_vfs=4, control=VFE_MSE_ARI):
    """The spec's worked example: VF BAR0 = 0x1_0000_0000 (W32 0x0000000C, W32 0x00000001),
    W16 NumVFs, W16 Control = 0x0019. VF BAR3 is put at 0x1_0010_0000 so that it claims nothing
    near VF BAR0 (an unprogrammed BAR would decode at 0)."""
    model = igb()
    pf_write(model, IGB_VF_BAR0, 0x0000_000C)
    pf_write(model, IGB_VF_BAR0 + 4, 0x0000_0001)
    pf_write(model, IGB_VF_BAR3, 0x0010_000C)
    pf_write(model, IGB_VF_BAR3 + 4, 0x0000_0001)
    pf_write(model, IGB_NUM_VFS, num_vfs, size=2)
    pf_write(model, IGB_CONTROL, control, size=2)
    return model


# -- The igb-like worked example -----------------------------------------------------------------


def test_igb_worked_example_vf_bar0():
    model = igb_programmed()
    assert pf_read(model, IGB_VF_BAR0) == 0x0000_000C
    assert pf_read(model, IGB_VF_BAR0 + 4) == 0x0000_0001
    # VF n BAR0 = 0x1_0000_0000 + (n-1) * 0x4000.
    assert model.decode_memory(0x1_0000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    assert model.decode_memory(0x1_0000_8000) == (True, 3, 0, 0)
    assert model.decode_memory(0x1_0000_C000) == (True, 4, 0, 0)
    assert model.decode_memory(0x1_0000_1234) == (True, 1, 0, 0x1234)
    assert model.decode_memory(0x1_0000_3FFF) == (True, 1, 0, 0x3FFF)
    assert model.decode_memory(0x1_0000_7FFF) == (True, 2, 0, 0x3FFF)
    # Last byte of VF 4.
    assert model.decode_memory(0x1_0000_FFFF) == (True, 4, 0, 0x3FFF)
    # VF 5's range: not claimed.
    assert model.decode_memory(0x1_0001_0000) == MISS
    # base - 1: not claimed.
    assert model.decode_memory(0x0_FFFF_FFFF) == MISS
    # The low dword alone does not decode: the upper dword matters.
    assert model.decode_memory(0x0_0000_0000) == MISS
    assert model.decode_memory(0x2_0000_0000) == MISS


def test_igb_vf_bar3():
    model = igb_programmed()
    assert model.decode_memory(0x1_0010_0000) == (True, 1, 3, 0)
    assert model.decode_memory(0x1_0010_4000) == (True, 2, 3, 0)
    assert model.decode_memory(0x1_0010_ABCD) == (True, 3, 3, 0x2BCD)
    assert model.decode_memory(0x1_0010_FFFF) == (True, 4, 3, 0x3FFF)
    assert model.decode_memory(0x1_0011_0000) == MISS
    assert model.decode_memory(0x1_000F_FFFF) == MISS


def test_decoding_has_no_side_effects():
    model = igb_programmed()
    before = [model.pf_read(reg) for reg in range(1024)]
    for addr in (0, 0x1_0000_0000, 0x1_0001_0000, 0xFFFF_FFFF_FFFF_FFFF):
        model.decode_memory(addr)
    assert [model.pf_read(reg) for reg in range(1024)] == before
    assert model.events == []


# -- System Page Size ----------------------------------------------------------------------------


def test_system_page_size_64k_grows_the_aperture():
    model = igb()
    # With VF Enable 0: System Page Size = 0x10 (bit 4: 2^16 = 64 KiB), then the BAR.
    pf_write(model, IGB_PAGE, 0x0000_0010)
    assert pf_read(model, IGB_PAGE) == 0x0000_0010
    pf_write(model, IGB_VF_BAR0, 0x0000_000C)
    pf_write(model, IGB_VF_BAR0 + 4, 0x0000_0001)
    pf_write(model, IGB_VF_BAR3, 0x0000_000C)
    pf_write(model, IGB_VF_BAR3 + 4, 0x0000_0002)
    pf_write(model, IGB_NUM_VFS, 4, size=2)
    pf_write(model, IGB_CONTROL, VFE_MSE_ARI, size=2)
    # A = 0x10000: VF n at 0x1_0000_0000 + (n-1) * 0x10000.
    assert model.decode_memory(0x1_0000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0x1_0000_4000) == (True, 1, 0, 0x4000)   # VF 2 at 16 KiB pages
    assert model.decode_memory(0x1_0000_FFFF) == (True, 1, 0, 0xFFFF)
    assert model.decode_memory(0x1_0001_0000) == (True, 2, 0, 0)
    assert model.decode_memory(0x1_0002_0000) == (True, 3, 0, 0)
    assert model.decode_memory(0x1_0003_0000) == (True, 4, 0, 0)
    assert model.decode_memory(0x1_0003_FFFF) == (True, 4, 0, 0xFFFF)
    assert model.decode_memory(0x1_0004_0000) == MISS
    assert model.decode_memory(0x2_0003_8000) == (True, 4, 3, 0x8000)
    assert model.decode_memory(0x2_0004_0000) == MISS


def test_system_page_size_write_with_vf_enable_changes_nothing():
    model = igb_programmed()
    pf_write(model, IGB_PAGE, 0x0000_0010)                 # ignored: VF Enable is 1
    assert pf_read(model, IGB_PAGE) == 0x0000_0001
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    assert model.decode_memory(0x1_0001_0000) == MISS


# -- VF Enable / VF MSE gating (spec §8 case 10) ------------------------------------------------


def test_vf_mse_zero_claims_nothing():
    model = igb_programmed(control=0x0011)                  # VFE and ARI, VF MSE = 0
    for addr in (0x1_0000_0000, 0x1_0000_C000, 0x1_0010_0000, 0x0):
        assert model.decode_memory(addr) == MISS


def test_vf_enable_zero_claims_nothing():
    model = igb_programmed(control=MSE_ONLY)
    for addr in (0x1_0000_0000, 0x1_0000_C000, 0x1_0010_0000, 0x0):
        assert model.decode_memory(addr) == MISS


def test_vf_enable_and_mse_toggled():
    model = igb_programmed(control=0x0000)
    assert model.decode_memory(0x1_0000_4000) == MISS
    pf_write(model, IGB_CONTROL, VFE_ONLY, size=2)
    assert model.decode_memory(0x1_0000_4000) == MISS
    pf_write(model, IGB_CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    pf_write(model, IGB_CONTROL, VFE_ONLY, size=2)          # VF MSE back to 0
    assert model.decode_memory(0x1_0000_4000) == MISS
    pf_write(model, IGB_CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    pf_write(model, IGB_CONTROL, MSE_ONLY, size=2)          # VF Enable back to 0
    assert model.decode_memory(0x1_0000_4000) == MISS
    assert model.decode_memory(0x1_0000_0000) == MISS


def test_vf_enable_with_numvfs_zero_claims_nothing():
    model = igb_programmed(num_vfs=0)
    assert model.decode_memory(0x1_0000_0000) == MISS
    assert model.decode_memory(0x1_0010_0000) == MISS


def test_vf_bus_master_enable_does_not_matter():
    model = igb_programmed()
    # Command of VF 1 (01:10.0): Memory Space Enable is hard-wired 0, Bus Master Enable RW.
    assert model.config(TYPE0, 0x0180, 0x04 // 4, 0x3, True, 0x0006) == ("SC", 0)
    assert model.config(TYPE0, 0x0180, 0x04 // 4, 0xF, False, 0) == ("SC", 0x0011_0004)
    assert model.decode_memory(0x1_0000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)


# -- NumVFs < TotalVFs (spec §8 case 11) ----------------------------------------------------------


def test_between_numvfs_and_totalvfs_not_claimed():
    model = igb_programmed(num_vfs=2)
    assert model.decode_memory(0x1_0000_7FFF) == (True, 2, 0, 0x3FFF)
    # [base + NumVFs*A, base + TotalVFs*A) = [0x1_0000_8000, 0x1_0002_0000): nothing.
    for addr in (0x1_0000_8000, 0x1_0000_C000, 0x1_0001_0000, 0x1_0001_C000, 0x1_0001_FFFF,
                 0x1_0002_0000):
        assert model.decode_memory(addr) == MISS
    # NumVFs 8 (VF Enable must be 0 to change it): all of TotalVFs * A decodes.
    pf_write(model, IGB_CONTROL, 0x0000, size=2)
    pf_write(model, IGB_NUM_VFS, 8, size=2)
    pf_write(model, IGB_CONTROL, VFE_MSE_ARI, size=2)
    assert model.decode_memory(0x1_0000_8000) == (True, 3, 0, 0)
    assert model.decode_memory(0x1_0001_0000) == (True, 5, 0, 0)
    assert model.decode_memory(0x1_0001_C000) == (True, 8, 0, 0)
    assert model.decode_memory(0x1_0001_FFFF) == (True, 8, 0, 0x3FFF)
    assert model.decode_memory(0x1_0002_0000) == MISS


def test_numvfs_write_while_enabled_changes_nothing():
    model = igb_programmed(num_vfs=2)
    pf_write(model, IGB_NUM_VFS, 8, size=2)                 # ignored: VF Enable is 1
    assert model.decode_memory(0x1_0000_8000) == MISS


# -- PF BARs and PF Command Memory Space Enable (spec §8 case 28) --------------------------------


def igb_pf_bars(model):
    """PF BAR0 (128 KiB) at 0xFE00_0000, BAR1 (128 KiB) at 0xFE02_0000, BAR3 (16 KiB) at
    0xFE04_0000."""
    pf_write(model, 0x10, 0xFE00_0000)
    pf_write(model, 0x14, 0xFE02_0000)
    pf_write(model, 0x1C, 0xFE04_0000)


def test_pf_bars_need_pf_memory_space_enable():
    model = igb()
    igb_pf_bars(model)
    assert model.decode_memory(0xFE00_0000) == MISS        # Command MSE = 0 after reset
    pf_write(model, 0x04, 0x0002, size=2)                   # Memory Space Enable
    assert pf_read(model, 0x04) == 0x0010_0002
    assert model.decode_memory(0xFE00_0000) == (True, 0, 0, 0)
    assert model.decode_memory(0xFE00_0010) == (True, 0, 0, 0x10)
    assert model.decode_memory(0xFE01_FFFF) == (True, 0, 0, 0x1_FFFF)
    assert model.decode_memory(0xFE02_0000) == (True, 0, 1, 0)
    assert model.decode_memory(0xFE03_FFFF) == (True, 0, 1, 0x1_FFFF)
    assert model.decode_memory(0xFE04_0000) == (True, 0, 3, 0)
    assert model.decode_memory(0xFE04_3FFF) == (True, 0, 3, 0x3FFF)
    assert model.decode_memory(0xFE04_4000) == MISS
    assert model.decode_memory(0xFDFF_FFFF) == MISS
    # A 32-bit BAR never claims an address at or above 4 GiB (no aliasing of bits 63:32).
    assert model.decode_memory(0x1_FE00_0000) == MISS
    assert model.decode_memory(0xFFFF_FFFF_FE00_0000) == MISS
    pf_write(model, 0x04, 0x0000, size=2)
    assert model.decode_memory(0xFE00_0000) == MISS
    assert model.decode_memory(0xFE04_0000) == MISS


def test_pf_mse_zero_does_not_stop_the_vfs():
    model = igb_programmed()
    igb_pf_bars(model)
    pf_write(model, 0x04, 0x0002, size=2)
    assert model.decode_memory(0xFE00_0000) == (True, 0, 0, 0)
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    pf_write(model, 0x04, 0x0000, size=2)                   # PF Command MSE = 0
    assert model.decode_memory(0xFE00_0000) == MISS
    assert model.decode_memory(0x1_0000_4000) == (True, 2, 0, 0)
    assert model.decode_memory(0x1_0010_FFFF) == (True, 4, 3, 0x3FFF)


def test_pf_64bit_bar():
    model = custom(pf_bars=(Bar(0, 0x10_0000, is_64bit=True), Bar(2, 0x1_0000)))
    pf_write(model, 0x10, 0x0000_0000)
    pf_write(model, 0x14, 0x0000_0002)                      # BAR0 = 0x2_0000_0000
    pf_write(model, 0x18, 0xF000_0000)                      # BAR2 = 0xF000_0000
    pf_write(model, 0x04, 0x0002, size=2)
    assert pf_read(model, 0x10) == 0x0000_0004
    assert pf_read(model, 0x14) == 0x0000_0002
    assert model.decode_memory(0x2_0000_0000) == (True, 0, 0, 0)
    assert model.decode_memory(0x2_000F_FFFF) == (True, 0, 0, 0xF_FFFF)
    assert model.decode_memory(0x2_0010_0000) == MISS
    assert model.decode_memory(0x1_FFFF_FFFF) == MISS
    assert model.decode_memory(0x0_0000_0000) == MISS
    assert model.decode_memory(0xF000_8000) == (True, 0, 2, 0x8000)
    assert model.decode_memory(0xF001_0000) == MISS


def test_pf_64bit_bar_at_the_top():
    model = custom(pf_bars=(Bar(0, 0x1000, is_64bit=True),))
    pf_write(model, 0x10, 0xFFFF_F000)
    pf_write(model, 0x14, 0xFFFF_FFFF)
    pf_write(model, 0x04, 0x0002, size=2)
    assert model.decode_memory(0xFFFF_FFFF_FFFF_F000) == (True, 0, 0, 0)
    assert model.decode_memory(0xFFFF_FFFF_FFFF_FFFF) == (True, 0, 0, 0xFFF)
    assert model.decode_memory(0xFFFF_FFFF_FFFF_EFFF) == MISS
    assert model.decode_memory(0x0) == MISS


# -- No wrap-around ------------------------------------------------------------------------------


def test_32bit_vf_bar_crossing_4gib():
    # 256 MiB per VF, 32-bit, TotalVFs 16 (16 x 256 MiB = 4 GiB, the most a 32-bit BAR allows).
    model = custom(total_vfs=16, vf_bars=(Bar(0, 0x1000_0000),))
    pf_write(model, VF_BAR0, 0xC000_0000)
    assert pf_read(model, VF_BAR0) == 0xC000_0000
    pf_write(model, NUM_VFS, 8, size=2)
    pf_write(model, CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0xC000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0xD000_0000) == (True, 2, 0, 0)
    assert model.decode_memory(0xE000_0000) == (True, 3, 0, 0)
    assert model.decode_memory(0xF000_0000) == (True, 4, 0, 0)
    assert model.decode_memory(0xFFFF_FFFF) == (True, 4, 0, 0x0FFF_FFFF)
    # VFs 5..8 would lie at 0x1_0000_0000..0x1_3FFF_FFFF: a 32-bit BAR claims nothing there...
    for addr in (0x1_0000_0000, 0x1_1000_0000, 0x1_3FFF_FFFF, 0x1_4000_0000):
        assert model.decode_memory(addr) == MISS
    # ... and nothing wraps to 0..0x3FFF_FFFF either.
    for addr in (0x0, 0x1000_0000, 0x3FFF_FFFF):
        assert model.decode_memory(addr) == MISS
    assert model.decode_memory(0xBFFF_FFFF) == MISS


def test_32bit_vf_bar_page_size_pushes_vfs_past_4gib():
    # 4 KiB per VF, but System Page Size 1 GiB (bit 18) makes A = 0x4000_0000: 8 x 1 GiB.
    model = custom(total_vfs=8, vf_bars=(Bar(0, 0x1000),),
                   supported_page_sizes=0x0004_0553)
    pf_write(model, PAGE, 0x0004_0000)
    assert pf_read(model, PAGE) == 0x0004_0000
    pf_write(model, VF_BAR0, 0xFFFF_FFFF)
    assert pf_read(model, VF_BAR0) == 0xC000_0000           # sizing: ~(A-1) | type 0
    pf_write(model, VF_BAR0, 0x8000_0000)
    pf_write(model, NUM_VFS, 8, size=2)
    pf_write(model, CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0x8000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0xC000_0000) == (True, 2, 0, 0)
    assert model.decode_memory(0xFFFF_FFFF) == (True, 2, 0, 0x3FFF_FFFF)
    for addr in (0x1_0000_0000, 0x1_4000_0000, 0x2_7FFF_FFFF, 0x0, 0x4000_0000, 0x7FFF_FFFF):
        assert model.decode_memory(addr) == MISS


def test_64bit_vf_bar_near_the_top_does_not_wrap():
    # 1 MiB per VF, 64-bit, at 0xFFFF_FFFF_FFE0_0000: VFs 1 and 2 fit below 2**64, 3 and 4 don't.
    model = custom(total_vfs=4, vf_bars=(Bar(0, 0x10_0000, is_64bit=True),))
    pf_write(model, VF_BAR0, 0xFFE0_0000)
    pf_write(model, VF_BAR0 + 4, 0xFFFF_FFFF)
    assert pf_read(model, VF_BAR0) == 0xFFE0_0004
    pf_write(model, NUM_VFS, 4, size=2)
    pf_write(model, CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0xFFFF_FFFF_FFE0_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0xFFFF_FFFF_FFF0_0000) == (True, 2, 0, 0)
    assert model.decode_memory(0xFFFF_FFFF_FFFF_FFFF) == (True, 2, 0, 0xF_FFFF)
    # VFs 3 and 4 would be at 0..0x1F_FFFF modulo 2**64: not claimed.
    for addr in (0x0, 0x1, 0xF_FFFF, 0x10_0000, 0x1F_FFFF, 0x20_0000):
        assert model.decode_memory(addr) == MISS
    assert model.decode_memory(0xFFFF_FFFF_FFDF_FFFF) == MISS


# -- Overlapping BARs ----------------------------------------------------------------------------


def overlap_model():
    """PF BAR0 64 KiB, PF BAR1 4 KiB, VF BAR0 16 KiB, VF BAR2 16 KiB, all 32-bit; 4 VFs."""
    return custom(total_vfs=4, pf_bars=(Bar(0, 0x1_0000), Bar(1, 0x1000)),
                  vf_bars=(Bar(0, 0x4000), Bar(2, 0x4000)))


def test_pf_bar_beats_vf_bar():
    model = overlap_model()
    pf_write(model, 0x10, 0x8000_0000)                      # PF BAR0 0x8000_0000..0x8000_FFFF
    pf_write(model, VF_BAR0, 0x8000_0000)                   # VF BAR0 VF n at + (n-1)*0x4000
    pf_write(model, VF_BAR0 + 8, 0x9000_0000)               # VF BAR2 elsewhere
    pf_write(model, 0x14, 0xA000_0000)                      # PF BAR1 elsewhere
    pf_write(model, NUM_VFS, 4, size=2)
    pf_write(model, CONTROL, VFE_MSE, size=2)
    pf_write(model, 0x04, 0x0002, size=2)
    assert model.decode_memory(0x8000_0000) == (True, 0, 0, 0)
    assert model.decode_memory(0x8000_4010) == (True, 0, 0, 0x4010)
    assert model.decode_memory(0x8000_FFFF) == (True, 0, 0, 0xFFFF)
    # PF Memory Space Enable off: the VFs show through.
    pf_write(model, 0x04, 0x0000, size=2)
    assert model.decode_memory(0x8000_0000) == (True, 1, 0, 0)
    assert model.decode_memory(0x8000_4010) == (True, 2, 0, 0x10)
    assert model.decode_memory(0x8000_FFFF) == (True, 4, 0, 0x3FFF)


def test_lower_pf_bar_beats_higher():
    model = overlap_model()
    pf_write(model, 0x10, 0x8000_0000)                      # PF BAR0 0x8000_0000..0x8000_FFFF
    pf_write(model, 0x14, 0x8000_3000)                      # PF BAR1 inside it
    pf_write(model, 0x04, 0x0002, size=2)
    assert model.decode_memory(0x8000_3000) == (True, 0, 0, 0x3000)
    assert model.decode_memory(0x8000_3FFF) == (True, 0, 0, 0x3FFF)
    pf_write(model, 0x10, 0x7000_0000)                      # move BAR0 away
    assert model.decode_memory(0x8000_3000) == (True, 0, 1, 0)
    assert model.decode_memory(0x8000_3FFF) == (True, 0, 1, 0xFFF)


def test_lower_vf_bar_beats_higher():
    model = overlap_model()
    pf_write(model, VF_BAR0, 0x9000_8000)                   # VF BAR0: VF1 at 0x9000_8000
    pf_write(model, VF_BAR0 + 8, 0x9000_0000)               # VF BAR2: VF3 at 0x9000_8000
    pf_write(model, 0x10, 0xA000_0000)
    pf_write(model, 0x14, 0xB000_0000)
    pf_write(model, NUM_VFS, 4, size=2)
    pf_write(model, CONTROL, VFE_MSE, size=2)
    assert model.decode_memory(0x9000_0000) == (True, 1, 2, 0)
    assert model.decode_memory(0x9000_4000) == (True, 2, 2, 0)
    assert model.decode_memory(0x9000_8000) == (True, 1, 0, 0)
    assert model.decode_memory(0x9000_C123) == (True, 2, 0, 0x123)
    assert model.decode_memory(0x9001_4000) == (True, 4, 0, 0)
    assert model.decode_memory(0x9001_8000) == MISS


# -- BAR moves and resets ------------------------------------------------------------------------


def test_vf_bar_rewritten_while_decoding_is_followed():
    model = igb_programmed()
    pf_write(model, IGB_VF_BAR0 + 4, 0x0000_0003)           # VF BAR0 = 0x3_0000_0000
    assert model.decode_memory(0x1_0000_4000) == MISS
    assert model.decode_memory(0x3_0000_4000) == (True, 2, 0, 0)


def test_pf_flr_stops_all_decoding():
    model = igb_programmed()
    igb_pf_bars(model)
    pf_write(model, 0x04, 0x0002, size=2)
    assert model.decode_memory(0xFE00_0000) == (True, 0, 0, 0)
    assert model.decode_memory(0x1_0000_0000) == (True, 1, 0, 0)
    pf_write(model, 0x48, 0x8000, size=2)                   # Initiate FLR
    assert model.decode_memory(0xFE00_0000) == MISS
    assert model.decode_memory(0x1_0000_0000) == MISS
    assert model.decode_memory(0x0) == MISS


# -- Argument checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("addr", [-1, 1 << 64, True, 1.0, "0x1000", None])
def test_bad_address(addr):
    model = igb_programmed()
    with pytest.raises(ValueError):
        model.decode_memory(addr)


def test_full_address_range_accepted():
    model = igb()
    assert model.decode_memory(0) == MISS
    assert model.decode_memory(0xFFFF_FFFF_FFFF_FFFF) == MISS
