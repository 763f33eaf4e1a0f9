# amaranth: UnusedElaboratable=no
"""Tests of the SR-IOV Extended Capability RTL (``sriov_ep.caps.sriov.SriovCapability``).

Expected register values are literal numbers taken from ``../shared/reference/sriov-spec.md``
(§1 register table, §3 VF BAR rules, §8 corner cases, the igb worked example) and from
``docs/sriov-capability-behaviour.md`` (the project's choices), never from
``sriov_capability_map`` (the RTL's own table). In addition, every access goes through
``CheckedPort``, so each read is also compared with the independent reference model
(``sriov_tb.model.SriovCapabilityModel``), and after every write the state the capability exports
to the decoders is compared with the model's properties.
"""

import asyncio
import random
from pathlib import Path

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module

from sriov_ep.caps.sriov import SriovCapability, sriov_capability_map
from sriov_ep.params import Bar, EndpointParams, ParamError, load_params
from sriov_tb.cfg import CheckedPort, ConfigSpace, ModelPort, RegisterPortDriver
from sriov_tb.linux import LinuxSriovDriver, SriovError, VfBarInfo
from sriov_tb.model import SriovCapabilityModel
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).parent.parent / "examples"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def igb():
    """examples/igb-82576.toml: 8 VFs, ARI 0x80/2, non-ARI 0x180/2, VF DID 0x10CA, VF BAR0 and
    VF BAR3 16 KiB 64-bit prefetchable, PF at 01:00.0, SR-IOV at 0x160."""
    return load_params(EXAMPLES / "igb-82576.toml")


def nvme():
    """examples/nvme.toml: 127 VFs, offset 1 / stride 1, VF BAR0 16 KiB 64-bit non-prefetchable."""
    return load_params(EXAMPLES / "nvme.toml")


def many_vfs():
    """examples/many-vfs.toml: 4000 VFs, pages 0x7FF, VF BAR0 64 KiB 64-bit prefetchable, VF BAR2
    4 KiB 32-bit, VF 10-Bit Tag Requester Supported."""
    return load_params(EXAMPLES / "many-vfs.toml")


# Configurations for the random sequences and the corner cases.

def cfg_ari_differs():
    """(a) ARI and non-ARI offset *and* stride differ; both Capabilities flags; FDL 4."""
    return EndpointParams(
        pf_rid=0x0304, total_vfs=16, vf_device_id=0xBEEF,
        first_vf_offset_ari=2, vf_stride_ari=3,
        first_vf_offset_non_ari=0x180, vf_stride_non_ari=4,
        ari_capable_hierarchy_preserved=True, vf_10bit_tag_requester_supported=True,
        vf_bars=(Bar(1, 8 * KiB), Bar(3, 1 * MiB, is_64bit=True, prefetchable=True)))


def cfg_bar64():
    """(b) 64-bit VF BARs, one of 8 GiB (above 4 GiB), plus a 32-bit BAR in slot 5."""
    return EndpointParams(
        total_vfs=4,
        vf_bars=(Bar(0, 8 * GiB, is_64bit=True, prefetchable=True),
                 Bar(2, 64 * KiB, is_64bit=True),
                 Bar(5, 4 * KiB)))


def cfg_pages():
    """(c) every page size 4K..8M supported, plus 4 GiB (bit 20) and 8 TiB (bit 31); small BARs,
    so most page changes move the apertures."""
    return EndpointParams(
        total_vfs=8, supported_page_sizes=0x8010_0FFF,
        vf_bars=(Bar(0, 16), Bar(1, 4 * KiB, is_64bit=True), Bar(4, 256 * KiB)))


def cfg_one_vf():
    """(d) TotalVFs = 1: VF Stride may be 0."""
    return EndpointParams(
        total_vfs=1, first_vf_offset_ari=1, vf_stride_ari=0,
        first_vf_offset_non_ari=0x80, vf_stride_non_ari=0,
        vf_bars=(Bar(2, 4 * KiB, is_64bit=True, prefetchable=True),))


def cfg_max_vfs():
    """(e) TotalVFs = 65535: the PF at 00:00.0, VFs 0x0001..0xFFFF."""
    return EndpointParams(
        pf_rid=0x0000, total_vfs=65535,
        first_vf_offset_ari=1, vf_stride_ari=1, first_vf_offset_non_ari=1, vf_stride_non_ari=1,
        vf_bars=(Bar(0, 4 * KiB), Bar(1, 64 * KiB, is_64bit=True, prefetchable=True)))


def cfg_no_vf_bars():
    return EndpointParams(total_vfs=2)


# -- Bench -----------------------------------------------------------------------------------


class Bench:
    """One SriovCapability and one model, every access applied to both and compared.

    Offsets of ``r``/``w`` are relative to the start of the capability.
    """

    def __init__(self, ctx, dut, model):
        self.ctx    = ctx
        self.dut    = dut
        self.model  = model
        self.params = dut.params
        self.port   = CheckedPort(RegisterPortDriver(ctx, dut.cfg), ModelPort(model))
        self.cfg    = ConfigSpace(self.port)
        # Slicing the VfBarState views is slow: do it once.
        self._bars  = [(dut.vf_bars[n].base, dut.vf_bars[n].aperture_log2)
                       for n in range(len(self.params.vf_bars))]

    async def r(self, offset, size=4):
        return await self.cfg.read(offset, size)

    async def w(self, offset, size, value):
        await self.cfg.write(offset, size, value)
        await self.settle()
        self.check_state()

    async def write_dword(self, dword, data, byte_en):
        await self.port.write_dword(dword, data, byte_en)
        await self.settle()
        self.check_state()

    async def settle(self):
        """One idle cycle: the exported VF BAR bases follow a System Page Size change one cycle
        later (documented on SriovCapability.vf_bars)."""
        await self.ctx.tick()

    async def dwords(self):
        return [await self.port.read_dword(d) for d in range(16)]

    async def pulse_reset(self):
        self.ctx.set(self.dut.reset, 1)
        await self.ctx.tick()
        self.ctx.set(self.dut.reset, 0)
        self.model.reset(keep_ari=True)
        await self.settle()
        self.check_state()

    def state(self):
        """The exported state, as plain ints; VF BARs as (base, aperture_log2) in params order."""
        get, dut = self.ctx.get, self.dut
        return {
            "vf_enable": get(dut.vf_enable), "vf_mse": get(dut.vf_mse),
            "ari_capable_hierarchy": get(dut.ari_capable_hierarchy), "num_vfs": get(dut.num_vfs),
            "first_vf_offset": get(dut.first_vf_offset), "vf_stride": get(dut.vf_stride),
            "system_page_size": get(dut.system_page_size),
            "vf_bars": [(get(base), get(aperture_log2)) for base, aperture_log2 in self._bars],
        }

    def model_state(self):
        m = self.model
        return {
            "vf_enable": int(m.vf_enable), "vf_mse": int(m.vf_mse),
            "ari_capable_hierarchy": int(m.ari_capable_hierarchy), "num_vfs": m.num_vfs,
            "first_vf_offset": m.first_vf_offset, "vf_stride": m.vf_stride,
            "system_page_size": m.system_page_size,
            "vf_bars": [(m.vf_bar_base(bar.index), m.vf_bar_aperture(bar.index).bit_length() - 1)
                        for bar in self.params.vf_bars],
        }

    def check_state(self):
        got, expected = self.state(), self.model_state()
        if got != expected:
            diff = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
            history = "\n".join(f"  {op} dword {dw:#x} data {d:#010x} be {be:#x}"
                                for op, dw, d, be in self.port.log[-8:])
            raise AssertionError(f"exported state differs from the model, (design, model): "
                                 f"{diff}; last accesses:\n{history}")


def run(params, body, *, name, next_offset=0):
    """Simulate SriovCapability(params) with ``await body(bench)`` as the testbench."""
    dut = SriovCapability(params, next_offset=next_offset)

    def make_testbench():
        async def testbench(ctx):
            bench = Bench(ctx, dut, SriovCapabilityModel(params, next_offset=next_offset))
            bench.check_state()
            await body(bench)
        return testbench

    simulate(dut, make_testbench, name=f"test_sriov_cap_{name}")


# -- Identity, reset values, write masks -------------------------------------------------------

IGB_RESET = [
    0x0001_0010,    # 0x00 ID 0x0010, version 1, next 0
    0x0000_0000,    # 0x04 no migration, ARI Preserved 0, 10-bit tag 0
    0x0000_0000,    # 0x08 Control 0 / Status 0
    0x0008_0008,    # 0x0C InitialVFs 8, TotalVFs 8
    0x0000_0000,    # 0x10 NumVFs 0, FDL 0 (PF 01:00.0)
    0x0002_0180,    # 0x14 non-ARI offset 0x180 (384), stride 2
    0x10CA_0000,    # 0x18 reserved, VF Device ID 0x10CA
    0x0000_0553,    # 0x1C Supported Page Sizes
    0x0000_0001,    # 0x20 System Page Size 4 KiB
    0x0000_000C,    # 0x24 VF BAR0 64-bit prefetchable
    0x0000_0000,    # 0x28 VF BAR1 (upper of BAR0)
    0x0000_0000,    # 0x2C VF BAR2 unimplemented
    0x0000_000C,    # 0x30 VF BAR3 64-bit prefetchable
    0x0000_0000,    # 0x34 VF BAR4 (upper of BAR3)
    0x0000_0000,    # 0x38 VF BAR5 unimplemented
    0x0000_0000,    # 0x3C VF Migration State Array Offset
]

NVME_RESET = [
    0x0001_0010, 0x0000_0000, 0x0000_0000,
    0x007F_007F,    # InitialVFs = TotalVFs = 127
    0x0000_0000,
    0x0001_0001,    # offset 1, stride 1
    0x0010_0000,    # VF Device ID 0x0010
    0x0000_0553, 0x0000_0001,
    0x0000_0004,    # VF BAR0 64-bit non-prefetchable
    0, 0, 0, 0, 0, 0,
]

MANY_VFS_RESET = [
    0x0001_0010,
    0x0000_0004,    # VF 10-Bit Tag Requester Supported
    0x0000_0000,
    0x0FA0_0FA0,    # 4000 VFs
    0x0000_0000,
    0x0001_0100,    # non-ARI offset 0x100, stride 1
    0x4001_0000,
    0x0000_07FF,
    0x0000_0001,
    0x0000_000C,    # VF BAR0 64-bit prefetchable
    0x0000_0000,
    0x0000_0000,    # VF BAR2 32-bit non-prefetchable: type bits 0
    0, 0, 0, 0,
]


@pytest.mark.parametrize("make, expected", [
    (igb, IGB_RESET), (nvme, NVME_RESET), (many_vfs, MANY_VFS_RESET)],
    ids=["igb", "nvme", "many-vfs"])
def test_reset_values(make, expected):
    async def body(b):
        assert await b.dwords() == expected
        assert b.state()["vf_enable"] == 0
        assert b.state()["num_vfs"] == 0
        assert b.state()["system_page_size"] == 1

    run(make(), body, name=f"reset_{make.__name__}")


def test_reset_state_igb():
    async def body(b):
        assert b.state() == {
            "vf_enable": 0, "vf_mse": 0, "ari_capable_hierarchy": 0, "num_vfs": 0,
            "first_vf_offset": 0x180, "vf_stride": 2, "system_page_size": 1,
            "vf_bars": [(0, 14), (0, 14)],
        }

    run(igb(), body, name="reset_state_igb")


@pytest.mark.parametrize("next_offset, header", [
    (0x000, 0x0001_0010), (0x100, 0x1001_0010), (0x1a0, 0x1A01_0010), (0xffc, 0xFFC1_0010)])
def test_header_next_offset(next_offset, header):
    async def body(b):
        assert await b.r(0x00) == header
        assert await b.r(0x00, 2) == 0x0010         # Capability ID
        assert (await b.r(0x02, 2)) & 0xF == 1      # version
        await b.w(0x00, 4, 0xFFFF_FFFF)
        await b.w(0x00, 4, 0x0000_0000)
        assert await b.r(0x00) == header

    run(igb(), body, name=f"header_{next_offset:x}", next_offset=next_offset)


# What a W32 of all ones, then a W32 of all zeros, to each dword from reset leaves (igb).
IGB_AFTER_ONES = [
    0x0001_0010, 0x0000_0000,
    0x0000_0019,    # VFE, MSE, ARI; bits 1, 2, 5 RO 0 here, 15:6 RsvdP; Status RW1C reads 0
    0x0008_0008,
    0x0000_0000,    # NumVFs 0xFFFF > TotalVFs: write ignored; FDL RO, 0x13 RsvdP
    0x0002_0180, 0x10CA_0000, 0x0000_0553,
    0x0000_0001,    # 0xFFFFFFFF is not one-hot: ignored
    0xFFFF_C00C,    # sizing: ~(16K-1) | type 0xC
    0xFFFF_FFFF,    # upper dword all ones (size <= 4 GiB)
    0x0000_0000,
    0xFFFF_C00C, 0xFFFF_FFFF,
    0x0000_0000, 0x0000_0000,
]
IGB_AFTER_ZEROS = [
    0x0001_0010, 0x0000_0000,
    0x0000_0010,    # VFE was 1 before the write: ARI Capable Hierarchy kept
    0x0008_0008, 0x0000_0000, 0x0002_0180, 0x10CA_0000, 0x0000_0553,
    0x0000_0001,    # 0 is not one-hot: ignored
    0x0000_000C, 0x0000_0000, 0x0000_0000, 0x0000_000C, 0x0000_0000, 0x0000_0000, 0x0000_0000,
]


def test_write_masks_igb():
    async def body(b):
        for dword in range(16):
            await b.pulse_reset()
            await b.write_dword(2, 0x0000_0000, 0xF)    # ARI Capable Hierarchy survives a reset
            await b.write_dword(dword, 0xFFFF_FFFF, 0xF)
            after = await b.dwords()
            assert after[dword] == IGB_AFTER_ONES[dword], f"dword {dword}"
            assert [v for d, v in enumerate(after) if d not in (dword, 5)] == \
                [v for d, v in enumerate(IGB_RESET) if d not in (dword, 5)], f"dword {dword}"
            await b.write_dword(dword, 0x0000_0000, 0xF)
            assert await b.port.read_dword(dword) == IGB_AFTER_ZEROS[dword], f"dword {dword}"
        # ARI Capable Hierarchy (set by the all-ones Control write) switches offset/stride.
        await b.pulse_reset()
        await b.write_dword(2, 0xFFFF_FFFF, 0xF)
        assert await b.r(0x14) == 0x0002_0080

    run(igb(), body, name="write_masks_igb")


def test_write_masks_many_vfs():
    async def body(b):
        await b.write_dword(2, 0xFFFF_FFFF, 0xF)
        assert await b.r(0x08) == 0x0000_0039           # VF 10-Bit Tag Requester Enable RW
        assert await b.r(0x14) == 0x0001_0001           # ARI pair 1 / 1
        await b.write_dword(2, 0x0000_0000, 0xF)
        assert await b.r(0x08) == 0x0000_0010
        await b.write_dword(2, 0x0000_0000, 0xF)
        assert await b.r(0x08) == 0x0000_0000
        for dword, ones in ((9, 0xFFFF_000C), (10, 0xFFFF_FFFF), (11, 0xFFFF_F000), (12, 0),
                            (13, 0), (14, 0)):
            await b.write_dword(dword, 0xFFFF_FFFF, 0xF)
            assert await b.port.read_dword(dword) == ones, f"dword {dword}"
        await b.w(0x10, 2, 4000)
        assert await b.r(0x10) == 0x0000_0FA0
        await b.w(0x10, 2, 4001)
        assert await b.r(0x10) == 0x0000_0FA0

    run(many_vfs(), body, name="write_masks_many_vfs")


# -- Corner cases of sriov-spec.md §8 --------------------------------------------------------------


def test_case01_ro_fields_ignore_writes():
    params = cfg_ari_differs()      # both Capabilities flags set, FDL 4, VF DID 0xBEEF
    expected = {
        0x00: 0x1001_0010,  # next offset 0x100
        0x04: 0x0000_0006,
        0x0C: 0x0010_0010,
        0x14: 0x0004_0180,
        0x18: 0xBEEF_0000,
        0x1C: 0x0000_0553,
        0x3C: 0x0000_0000,
    }

    async def body(b):
        expect = dict(expected)
        assert await b.r(0x10) == 0x0004_0000
        for ari in (0, 1):
            if ari:
                await b.w(0x08, 2, 0x0010)
                expect[0x14] = 0x0003_0002
            for offset in expect:
                for value in (0xFFFF_FFFF, 0x0000_0000, 0x5A5A_A5A5):
                    for be in (0xF, 0x1, 0x2, 0x4, 0x8, 0x3, 0xC):
                        await b.write_dword(offset // 4, value, be)
                    assert await b.r(offset) == expect[offset], f"{offset:#x}"
            # Function Dependency Link (0x12): RO, also by byte.
            for value in (0xFF, 0x00):
                await b.w(0x12, 1, value)
                await b.w(0x12, 2, value)
            assert await b.r(0x12, 1) == 0x04
            assert await b.r(0x14) == expect[0x14]
        assert b.state()["first_vf_offset"] == 2
        assert b.state()["vf_stride"] == 3

    run(params, body, name="case01", next_offset=0x100)


def test_case02_byte_enables():
    params = igb().replace(pf_rid=0x0105)           # FDL 0x05

    async def body(b):
        # W16 at 0x10 does not touch FDL (0x12); W32 at 0x10 neither, nor RsvdP 0x13.
        await b.w(0x10, 2, 3)
        assert await b.r(0x10) == 0x0005_0003
        await b.w(0x10, 4, 0xFFFF_0004)
        assert await b.r(0x10) == 0x0005_0004
        # Single bytes of NumVFs.
        await b.w(0x10, 1, 0x07)
        assert await b.r(0x10) == 0x0005_0007
        await b.w(0x11, 1, 0x00)
        assert await b.r(0x10) == 0x0005_0007
        await b.w(0x11, 1, 0x01)                    # would make 0x0107 > 8: ignored
        assert await b.r(0x10) == 0x0005_0007
        # No byte enabled: no change anywhere.
        before = await b.dwords()
        for dword in range(16):
            await b.write_dword(dword, 0xFFFF_FFFF, 0x0)
        assert await b.dwords() == before
        # W8 at 0x09 does not touch VFE/MSE/ARI (bits 7:0).
        await b.w(0x08, 2, 0x0019)
        assert await b.r(0x08) == 0x0000_0019
        await b.w(0x09, 1, 0xFF)
        assert await b.r(0x08) == 0x0000_0019
        await b.w(0x09, 1, 0x00)
        assert await b.r(0x08) == 0x0000_0019
        await b.w(0x08, 1, 0x00)                    # VFE was 1: ARI kept
        assert await b.r(0x08) == 0x0000_0010
        # A W32 at 0x08 writes Control and Status (RW1C) together.
        await b.w(0x08, 4, 0xFFFF_0009)
        assert await b.r(0x08) == 0x0000_0009
        assert b.state()["ari_capable_hierarchy"] == 0
        await b.w(0x0A, 2, 0xFFFF)
        assert await b.r(0x08) == 0x0000_0009
        await b.w(0x08, 2, 0x0000)
        # W8/W16 to part of a VF BAR leaves the rest.
        await b.w(0x24, 4, 0x8765_400C)
        assert await b.r(0x24) == 0x8765_400C
        await b.w(0x27, 1, 0x11)
        assert await b.r(0x24) == 0x1165_400C
        await b.w(0x24, 2, 0xFFFF)                  # bits 13:4 RO 0 (16 KiB), 3:0 type
        assert await b.r(0x24) == 0x1165_C00C
        await b.w(0x25, 1, 0x00)
        assert await b.r(0x24) == 0x1165_000C
        await b.w(0x26, 2, 0xABCD)
        assert await b.r(0x24) == 0xABCD_000C
        await b.w(0x28, 4, 0x0123_4567)
        await b.w(0x2B, 1, 0xFF)
        assert await b.r(0x28) == 0xFF23_4567
        await b.w(0x28, 2, 0x0000)
        assert await b.r(0x28) == 0xFF23_0000
        assert await b.r(0x24) == 0xABCD_000C
        assert b.state()["vf_bars"][0] == (0xFF23_0000_ABCD_0000, 14)
        # A dword-crossing W32 at 0x26: upper half of BAR0's low dword, lower half of BAR1.
        await b.w(0x26, 4, 0x5555_1234)
        assert await b.r(0x24) == 0x1234_000C
        assert await b.r(0x28) == 0xFF23_5555

    run(params, body, name="case02")


def test_case03_reserved_bits():
    async def body(b):
        await b.w(0x08, 2, 0xFFC0)                  # Control 15:6 RsvdP
        assert await b.r(0x08) == 0x0000_0000
        await b.w(0x08, 2, 0xFFE6)                  # + bits 1, 2 (no VFM), 5 (no 10-bit tag)
        assert await b.r(0x08) == 0x0000_0000
        await b.w(0x0A, 2, 0xFFFE)                  # Status 15:1 RsvdZ
        assert await b.r(0x08) == 0x0000_0000
        await b.w(0x13, 1, 0xFF)                    # RsvdP
        assert await b.r(0x10) == 0x0000_0000
        await b.w(0x18, 2, 0xFFFF)                  # RsvdP, VF DID kept
        assert await b.r(0x18) == 0x10CA_0000
        await b.w(0x18, 4, 0xFFFF_FFFF)
        assert await b.r(0x18) == 0x10CA_0000
        await b.w(0x18, 1, 0x5A)
        assert await b.r(0x18, 2) == 0x0000
        assert b.state()["vf_enable"] == 0

    run(igb(), body, name="case03")


def test_case04_numvfs_above_totalvfs():
    async def body(b):
        await b.w(0x10, 2, 3)
        for value in (9, 10, 0x0100, 0x8000, 0xFFFF):
            await b.w(0x10, 2, value)
            assert await b.r(0x10, 2) == 3, f"NumVFs write {value:#x}"
        await b.w(0x10, 4, 0x0000_0100)
        await b.w(0x10, 1, 0x09)
        assert await b.r(0x10, 2) == 3
        await b.w(0x10, 2, 8)                       # TotalVFs itself is fine
        assert await b.r(0x10, 2) == 8
        await b.w(0x08, 2, 0x0009)
        assert b.state()["num_vfs"] == 8
        assert b.state()["vf_enable"] == 1

    run(igb(), body, name="case04")


def test_case04_numvfs_up_to_65535():
    async def body(b):
        await b.w(0x10, 2, 0xFFFF)
        assert await b.r(0x10) == 0x0000_FFFF
        assert b.state()["num_vfs"] == 65535
        await b.w(0x10, 2, 0xFFFE)
        assert b.state()["num_vfs"] == 65534

    run(cfg_max_vfs(), body, name="case04_65535")


def test_case05_numvfs_write_while_vfe():
    async def body(b):
        await b.w(0x10, 2, 4)
        await b.w(0x08, 2, 0x0009)
        for value in (2, 0, 8):
            await b.w(0x10, 2, value)
            assert await b.r(0x10, 2) == 4
        await b.w(0x10, 1, 0)
        await b.w(0x10, 4, 0)
        assert await b.r(0x10, 2) == 4
        assert b.state()["num_vfs"] == 4
        await b.w(0x08, 2, 0x0000)
        await b.w(0x10, 2, 2)
        assert await b.r(0x10, 2) == 2

    run(igb(), body, name="case05")


def test_case06_vfe_with_numvfs_zero():
    async def body(b):
        await b.w(0x08, 2, 0x0001)
        assert await b.r(0x08) == 0x0000_0001
        assert (b.state()["vf_enable"], b.state()["num_vfs"]) == (1, 0)
        await b.w(0x10, 2, 4)                       # NumVFs locked while VFE = 1
        assert await b.r(0x10) == 0x0000_0000
        assert b.state()["num_vfs"] == 0

    run(igb(), body, name="case06")


def test_case07_vfe_and_mse_in_one_write():
    async def body(b):
        await b.w(0x10, 2, 4)
        await b.w(0x08, 2, 0x0019)                  # Linux: ctrl | VFE | MSE with ARI
        assert await b.r(0x08) == 0x0000_0019
        assert await b.r(0x14) == 0x0002_0080
        st = b.state()
        assert (st["vf_enable"], st["vf_mse"], st["ari_capable_hierarchy"]) == (1, 1, 1)
        assert (st["num_vfs"], st["first_vf_offset"], st["vf_stride"]) == (4, 0x80, 2)
        await b.w(0x08, 2, 0x0010)
        assert await b.r(0x08) == 0x0000_0010
        await b.w(0x08, 4, 0x0000_0009)             # W32 form, without ARI (VFE was 0)
        assert await b.r(0x08) == 0x0000_0009
        assert (b.state()["vf_enable"], b.state()["vf_mse"]) == (1, 1)

    run(igb(), body, name="case07")


def test_case12_vf_bar_write_while_enabled():
    async def body(b):
        await b.w(0x24, 4, 0x0000_000C)
        await b.w(0x28, 4, 0x0000_0001)
        await b.w(0x10, 2, 4)
        await b.w(0x08, 2, 0x0019)
        assert b.state()["vf_bars"][0] == (0x1_0000_0000, 14)
        # Accepted at once, decoders follow (behaviour doc item 7).
        await b.w(0x24, 4, 0x0000_800C)
        assert b.state()["vf_bars"][0] == (0x1_0000_8000, 14)
        await b.w(0x28, 4, 0x0000_0002)
        assert await b.r(0x24) == 0x0000_800C
        assert await b.r(0x28) == 0x0000_0002
        assert b.state()["vf_bars"][0] == (0x2_0000_8000, 14)
        assert b.state()["vf_enable"] == 1

    run(igb(), body, name="case12")


@pytest.mark.parametrize("make, ones, zeros", [
    (igb, [0xFFFF_C00C, 0xFFFF_FFFF, 0, 0xFFFF_C00C, 0xFFFF_FFFF, 0], [0xC, 0, 0, 0xC, 0, 0]),
    (nvme, [0xFFFF_C004, 0xFFFF_FFFF, 0, 0, 0, 0], [0x4, 0, 0, 0, 0, 0]),
    (many_vfs, [0xFFFF_000C, 0xFFFF_FFFF, 0xFFFF_F000, 0, 0, 0], [0xC, 0, 0, 0, 0, 0]),
    # 8 GiB 64-bit prefetchable, 64 KiB 64-bit, 4 KiB 32-bit in slot 5.
    (cfg_bar64, [0x0000_000C, 0xFFFF_FFFE, 0xFFFF_0004, 0xFFFF_FFFF, 0, 0xFFFF_F000],
     [0xC, 0, 0x4, 0, 0, 0]),
    (cfg_no_vf_bars, [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]),
], ids=["igb", "nvme", "many-vfs", "bar64", "no-bars"])
def test_case13_vf_bar_sizing(make, ones, zeros):
    async def body(b):
        # Linux's sequence per dword: read original, write ones, read mask, restore.
        for slot in range(6):
            offset = 0x24 + 4 * slot
            original = await b.r(offset)
            await b.w(offset, 4, 0xFFFF_FFFF)
            assert await b.r(offset) == ones[slot], f"VF BAR{slot}"
            await b.w(offset, 4, original)
            assert await b.r(offset) == original
        # All six at once, then zeros: only the type bits of the low dwords stay.
        for slot in range(6):
            await b.w(0x24 + 4 * slot, 4, 0xFFFF_FFFF)
        assert [await b.r(0x24 + 4 * s) for s in range(6)] == ones
        for slot in range(6):
            await b.w(0x24 + 4 * slot, 4, 0)
        assert [await b.r(0x24 + 4 * s) for s in range(6)] == zeros

    run(make(), body, name=f"case13_{make.__name__}")


def test_case14_64bit_upper_half():
    async def body(b):
        await b.w(0x28, 4, 0xDEAD_BEEF)             # 16 KiB: upper dword fully RW
        assert await b.r(0x28) == 0xDEAD_BEEF
        assert await b.r(0x24) == 0x0000_000C
        assert b.state()["vf_bars"][0] == (0xDEAD_BEEF_0000_0000, 14)
        await b.w(0x24, 4, 0xFFFF_FFFF)
        assert b.state()["vf_bars"][0] == (0xDEAD_BEEF_FFFF_C000, 14)
        await b.w(0x28, 4, 0x0000_0000)             # the upper slot has no type bits
        assert await b.r(0x28) == 0x0000_0000
        assert b.state()["vf_bars"][0] == (0x0000_0000_FFFF_C000, 14)

    run(igb(), body, name="case14_igb")


def test_case14_64bit_bar_above_4g():
    async def body(b):
        await b.w(0x28, 4, 0xFFFF_FFFF)             # 8 GiB: bit 32 read-only 0
        assert await b.r(0x28) == 0xFFFF_FFFE
        await b.w(0x28, 4, 0x0000_0003)
        assert await b.r(0x28) == 0x0000_0002
        await b.w(0x24, 4, 0xFFFF_FFFF)             # all low address bits read-only 0
        assert await b.r(0x24) == 0x0000_000C
        assert b.state()["vf_bars"][0] == (0x2_0000_0000, 33)
        await b.w(0x2C, 4, 0x1234_5678)             # the 64 KiB BAR2 (slots 2 and 3)
        await b.w(0x30, 4, 0x8000_0001)
        assert await b.r(0x2C) == 0x1234_0004
        assert await b.r(0x30) == 0x8000_0001
        assert b.state()["vf_bars"][1] == (0x8000_0001_1234_0000, 16)
        await b.w(0x34, 4, 0xFFFF_FFFF)             # slot 4: not implemented
        assert await b.r(0x34) == 0x0000_0000
        await b.w(0x38, 4, 0x8765_4321)             # 32-bit BAR5
        assert await b.r(0x38) == 0x8765_4000
        assert b.state()["vf_bars"][2] == (0x8765_4000, 12)

    run(cfg_bar64(), body, name="case14_above_4g")


def test_case15_vf_bar_smaller_than_page():
    async def body(b):
        # many-vfs: BAR0 64 KiB 64-bit at 0x24/0x28, BAR2 4 KiB 32-bit at 0x2C.
        await b.w(0x2C, 4, 0x1234_5000)
        assert await b.r(0x2C) == 0x1234_5000
        assert b.state()["vf_bars"] == [(0, 16), (0x1234_5000, 12)]
        await b.w(0x20, 4, 0x0000_0002)             # 8 KiB pages
        assert await b.r(0x2C) == 0x1234_4000
        assert b.state()["vf_bars"] == [(0, 16), (0x1234_4000, 13)]
        await b.w(0x20, 4, 0x0000_0010)             # 64 KiB pages
        assert await b.r(0x2C) == 0x1234_0000
        assert b.state()["vf_bars"] == [(0, 16), (0x1234_0000, 16)]
        await b.w(0x20, 4, 0x0000_0001)             # back to 4 KiB: cleared bits stay 0
        assert await b.r(0x2C) == 0x1234_0000
        assert b.state()["vf_bars"] == [(0, 16), (0x1234_0000, 12)]
        await b.w(0x2C, 4, 0x1234_5000)             # and are writable again
        assert await b.r(0x2C) == 0x1234_5000
        await b.w(0x20, 4, 0x0000_0400)             # 4 MiB pages: both BARs grow
        assert b.state()["vf_bars"] == [(0, 22), (0x1200_0000, 22)]
        for offset, ones in ((0x24, 0xFFC0_000C), (0x28, 0xFFFF_FFFF), (0x2C, 0xFFC0_0000)):
            await b.w(offset, 4, 0xFFFF_FFFF)
            assert await b.r(offset) == ones

    run(many_vfs(), body, name="case15")


def test_case15_page_size_at_least_4g():
    async def body(b):
        # cfg_pages: 16-byte 32-bit BAR0, 4 KiB 64-bit BAR1 (+ slot 2), 256 KiB 32-bit BAR4.
        await b.w(0x24, 4, 0xFFFF_FFFF)
        assert await b.r(0x24) == 0xFFFF_F000       # 16 bytes grow to one 4 KiB page
        await b.w(0x28, 4, 0xFFFF_FFFF)
        await b.w(0x2C, 4, 0xFFFF_FFFF)
        await b.w(0x34, 4, 0xFFFF_FFFF)
        assert b.state()["vf_bars"] == [(0xFFFF_F000, 12), (0xFFFF_FFFF_FFFF_F000, 12),
                                        (0xFFFC_0000, 18)]
        await b.w(0x20, 4, 0x0010_0000)             # bit 20: 4 GiB pages
        assert await b.r(0x24) == 0x0000_0000       # a 32-bit BAR has no RW bit left
        assert await b.r(0x28) == 0x0000_0004
        assert await b.r(0x2C) == 0xFFFF_FFFF
        assert b.state()["vf_bars"] == [(0, 32), (0xFFFF_FFFF_0000_0000, 32), (0, 32)]
        await b.w(0x20, 4, 0x8000_0000)             # bit 31: 8 TiB pages
        assert await b.r(0x2C) == 0xFFFF_F800
        assert b.state()["vf_bars"] == [(0, 43), (0xFFFF_F800_0000_0000, 43), (0, 43)]

    run(cfg_pages(), body, name="case15_4g")


def test_case16_bad_system_page_size():
    async def body(b):
        for value in (0x0000_0000, 0x0000_0003, 0x0000_0004, 0x0000_0800, 0x8000_0000,
                      0xFFFF_FFFF, 0x0000_0553):
            await b.w(0x20, 4, value)
            assert await b.r(0x20) == 0x0000_0001, f"System Page Size write {value:#x}"
        await b.w(0x20, 4, 0x0000_0002)
        assert await b.r(0x20) == 0x0000_0002
        await b.w(0x21, 1, 0x01)                    # merge 0x102: two bits
        assert await b.r(0x20) == 0x0000_0002
        await b.w(0x20, 1, 0x00)                    # merge 0: ignored
        assert await b.r(0x20) == 0x0000_0002
        await b.w(0x20, 1, 0x10)
        assert await b.r(0x20) == 0x0000_0010
        await b.w(0x22, 2, 0x0001)                  # merge 0x10010
        assert await b.r(0x20) == 0x0000_0010
        await b.w(0x20, 2, 0x0400)                  # 4 MiB
        assert await b.r(0x20) == 0x0000_0400
        assert b.state()["system_page_size"] == 0x400
        assert b.state()["vf_bars"] == [(0, 22), (0, 22)]

    run(igb(), body, name="case16")


def test_case17_page_size_while_vfe():
    async def body(b):
        await b.w(0x08, 2, 0x0001)
        await b.w(0x20, 4, 0x0000_0010)
        assert await b.r(0x20) == 0x0000_0001
        assert b.state()["vf_bars"] == [(0, 14), (0, 14)]
        await b.w(0x08, 2, 0x0000)
        await b.w(0x20, 4, 0x0000_0010)
        assert await b.r(0x20) == 0x0000_0010
        assert b.state()["vf_bars"] == [(0, 16), (0, 16)]

    run(igb(), body, name="case17")


def test_case18_ari_change_while_vfe():
    async def body(b):
        await b.w(0x08, 2, 0x0011)                  # VFE was 0: ARI taken
        assert await b.r(0x08) == 0x0000_0011
        await b.w(0x08, 2, 0x0000)                  # VFE was 1: ARI kept at 1
        assert await b.r(0x08) == 0x0000_0010
        await b.w(0x08, 2, 0x0000)
        assert await b.r(0x08) == 0x0000_0000
        await b.w(0x08, 2, 0x0001)
        await b.w(0x08, 2, 0x0011)                  # VFE already 1: ARI ignored
        assert await b.r(0x08) == 0x0000_0001
        assert await b.r(0x14) == 0x0002_0180
        await b.w(0x08, 2, 0x0010)                  # clears VFE, but VFE was 1: ARI ignored
        assert await b.r(0x08) == 0x0000_0000
        assert await b.r(0x14) == 0x0002_0180
        assert b.state()["first_vf_offset"] == 0x180
        await b.w(0x08, 2, 0x0010)
        assert await b.r(0x14) == 0x0002_0080
        assert b.state()["first_vf_offset"] == 0x80

    run(igb(), body, name="case18")


def test_case19_ari_capable_hierarchy_rw_in_only_pf():
    # A single-PF endpoint: the PF is the lowest-numbered PF, even at function 5, so the bit is
    # RW (behaviour doc item 3), not the read-only 0 of other PFs.
    params = cfg_ari_differs().replace(pf_rid=0x0305)

    async def body(b):
        assert await b.r(0x04) == 0x0000_0006       # ARI Capable Hierarchy Preserved = 1
        await b.w(0x08, 1, 0x10)
        assert await b.r(0x08) == 0x0000_0010
        assert b.state()["ari_capable_hierarchy"] == 1
        await b.w(0x08, 1, 0x00)
        assert await b.r(0x08) == 0x0000_0000
        assert b.state()["ari_capable_hierarchy"] == 0

    run(params, body, name="case19")


@pytest.mark.parametrize("make, non_ari, ari", [
    (igb, 0x0002_0180, 0x0002_0080),
    (nvme, 0x0001_0001, 0x0001_0001),
    (cfg_ari_differs, 0x0004_0180, 0x0003_0002),
    (cfg_one_vf, 0x0000_0080, 0x0000_0001),
], ids=["igb", "nvme", "ari-differs", "one-vf"])
def test_case20_offset_stride_after_numvfs_or_ari(make, non_ari, ari):
    params = make()
    total = params.total_vfs

    async def body(b):
        for ari_bit, expected in ((0, non_ari), (1, ari), (0, non_ari)):
            await b.w(0x08, 2, ari_bit << 4)
            assert await b.r(0x14) == expected
            for n in [*range(total, max(total - 10, 0), -1), 2, 1, 0]:
                if n > total:
                    continue
                await b.w(0x10, 2, n)
                got = await b.r(0x14)
                assert got == expected, f"NumVFs {n}, ARI {ari_bit}"
                if n >= 1:
                    assert got & 0xFFFF != 0
                if n >= 2:
                    assert got >> 16 != 0
                assert b.state()["first_vf_offset"] == expected & 0xFFFF
                assert b.state()["vf_stride"] == expected >> 16

    run(params, body, name=f"case20_{make.__name__}")


def test_case22_initial_vfs_differs_from_total_vfs(tmp_path):
    # The parameters refuse it ...
    for initial in (4, 0, 9):
        with pytest.raises(ParamError, match="sriov.initial_vfs") as info:
            EndpointParams(total_vfs=8, initial_vfs=initial)
        assert info.value.field == "sriov.initial_vfs"
    toml = (EXAMPLES / "igb-82576.toml").read_text().replace("initial_vfs = 8", "initial_vfs = 7")
    (tmp_path / "bad.toml").write_text(toml)
    with pytest.raises(ParamError, match="sriov.initial_vfs") as info:
        load_params(tmp_path / "bad.toml")
    assert info.value.field == "sriov.initial_vfs"

    # ... and Linux refuses to enable with EIO, shown on a model whose InitialVFs read is patched.
    params = igb()
    cap = params.sriov_cap_offset

    async def attempt(initial):
        model = SriovCapabilityModel(params)
        read = model.read
        model.read = lambda dword: (read(dword) & 0xFFFF_0000 | initial) if dword == 3 \
            else read(dword)
        driver = LinuxSriovDriver(ConfigSpace(ModelPort(model), base=cap), cap,
                                  pf_rid=params.pf_rid)
        await driver.init()
        await driver.assign_bars({0: 0x1_0000_0000, 3: 0x1_0002_0000})
        with pytest.raises(SriovError) as info:
            await driver.enable(4)
        assert info.value.errno == "EIO"
        # Nothing was enabled.
        assert (model.vf_enable, model.num_vfs, driver.enabled) == (False, 0, 0)
        # The unpatched register is what the RTL gives: InitialVFs == TotalVFs, enable works.
        model.read = read
        assert await driver.enable(4) == [0x0180, 0x0182, 0x0184, 0x0186]

    asyncio.run(attempt(7))
    asyncio.run(attempt(9))


def test_case23_vf_migration_status():
    async def body(b):
        assert await b.r(0x0A, 2) == 0x0000
        await b.w(0x0A, 2, 0x0001)                  # RW1C: a 1 clears (it is 0 already)
        await b.w(0x0A, 1, 0xFF)
        await b.w(0x08, 4, 0x0001_0000)
        await b.w(0x0A, 2, 0x0000)
        assert await b.r(0x08) == 0x0000_0000       # no VF Migration: stays 0
        assert b.state()["vf_enable"] == 0

    run(igb(), body, name="case23")


def test_case24_clearing_vfe():
    async def body(b):
        await b.w(0x10, 2, 4)
        await b.w(0x08, 2, 0x0019)
        assert (b.state()["vf_enable"], b.state()["num_vfs"]) == (1, 4)
        await b.w(0x08, 2, 0x0010)                  # Linux: ctrl & ~(VFE | MSE)
        st = b.state()
        assert (st["vf_enable"], st["vf_mse"], st["ari_capable_hierarchy"]) == (0, 0, 1)
        assert st["num_vfs"] == 4                   # NumVFs keeps its value
        assert await b.r(0x10) == 0x0000_0004
        assert await b.r(0x08) == 0x0000_0010
        await b.w(0x08, 2, 0x0019)                  # re-enable: the same 4 VFs
        assert (b.state()["vf_enable"], b.state()["num_vfs"]) == (1, 4)

    run(igb(), body, name="case24")


def test_case25_reset_input():
    async def body(b):
        await b.w(0x08, 2, 0x0010)
        await b.w(0x10, 2, 8)
        await b.w(0x20, 4, 0x0000_0010)
        await b.w(0x24, 4, 0xFFFF_FFFF)
        await b.w(0x28, 4, 0x1234_5678)
        await b.w(0x30, 4, 0x8000_000C)
        await b.w(0x08, 2, 0x0019)
        assert await b.dwords() != IGB_RESET
        await b.pulse_reset()
        # ARI Capable Hierarchy is kept (scope LINK): Control 0x10, the ARI offset/stride.
        ari_kept = IGB_RESET[:2] + [0x0000_0010] + IGB_RESET[3:5] + [0x0002_0080] + IGB_RESET[6:]
        assert await b.dwords() == ari_kept
        assert b.state() == {
            "vf_enable": 0, "vf_mse": 0, "ari_capable_hierarchy": 1, "num_vfs": 0,
            "first_vf_offset": 0x80, "vf_stride": 2, "system_page_size": 1,
            "vf_bars": [(0, 14), (0, 14)],
        }
        # Reset wins over a write in the same cycle.
        b.ctx.set(b.dut.reset, 1)
        await b.port.dut.write_dword(2, 0x0000_0019, 0xF)
        b.ctx.set(b.dut.reset, 0)
        assert await b.dwords() == ari_kept
        # Reset while VFE = 1 lifts the locks: NumVFs and page size writable again.
        await b.w(0x08, 2, 0x0001)
        await b.pulse_reset()
        await b.w(0x10, 2, 2)
        await b.w(0x20, 4, 0x0000_0002)
        assert await b.r(0x10) == 0x0000_0002
        assert await b.r(0x20) == 0x0000_0002

    run(igb(), body, name="case25")


class WithClockDomain(Elaboratable):
    """``dut`` under an explicit ``sync`` domain, so a testbench can drive the domain's reset."""

    def __init__(self, dut):
        self.dut    = dut
        self.domain = ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.dut = self.dut
        return m


def test_case25_clock_domain_reset():
    """Behaviour doc item 11: the clock domain's reset does what the ``reset`` input does."""
    params = igb()
    dut = SriovCapability(params)
    top = WithClockDomain(dut)

    def make_testbench():
        async def testbench(ctx):
            b = Bench(ctx, dut, SriovCapabilityModel(params))
            await b.w(0x08, 2, 0x0010)
            await b.w(0x10, 2, 8)
            await b.w(0x20, 4, 0x0000_0002)
            await b.w(0x24, 4, 0xFFFF_FFFF)
            await b.w(0x08, 2, 0x0019)
            ctx.set(top.domain.rst, 1)
            await ctx.tick()
            ctx.set(top.domain.rst, 0)
            b.model.reset()
            b.check_state()
            assert await b.dwords() == IGB_RESET
        return testbench

    simulate(top, make_testbench, name="test_sriov_cap_case25_domain_reset")


# -- Linux's SR-IOV enumeration and enable/disable/restore -----------------------------------------


LINUX_CASES = {
    # name: (params, ARI, (offset, stride) Linux must read, VF BAR addresses,
    #        RIDs of enable(4), nr of the second enable, RID of its last VF, max_vf_buses)
    "igb-ari": (igb, True, (0x80, 2), {0: 0x1_0000_0000, 3: 0x1_0002_0000},
                [0x0180, 0x0182, 0x0184, 0x0186], 8, 0x018E, 0x01),      # 01:10.0 .. 01:11.6
    "igb-non-ari": (igb, False, (0x180, 2), {0: 0x1_0000_0000, 3: 0x1_0002_0000},
                    [0x0280, 0x0282, 0x0284, 0x0286], 8, 0x028E, 0x02),  # 02:10.0 .. 02:11.6
    "nvme": (nvme, True, (1, 1), {0: 0x20_0000_0000},
             [0x0101, 0x0102, 0x0103, 0x0104], 100, 0x0164, 0x01),
    "max-vfs": (cfg_max_vfs, True, (1, 1), {0: 0x8000_0000, 1: 0x100_0000_0000},
                [0x0001, 0x0002, 0x0003, 0x0004], 65535, 0xFFFF, 0xFF),
}

LINUX_BARS = {
    "igb-ari": [VfBarInfo(0, 0x4000, True, True), VfBarInfo(3, 0x4000, True, True)],
    "igb-non-ari": [VfBarInfo(0, 0x4000, True, True), VfBarInfo(3, 0x4000, True, True)],
    "nvme": [VfBarInfo(0, 0x4000, True, False)],
    "max-vfs": [VfBarInfo(0, 0x1000, False, False), VfBarInfo(1, 0x10000, True, True)],
}


@pytest.mark.parametrize("name", [
    *(name for name in LINUX_CASES if name != "max-vfs"),
    # 65535 NumVFs writes during enumeration: about 25 s.
    pytest.param("max-vfs", marks=pytest.mark.slow),
])
def test_linux_sequence(name):
    make, ari, (offset, stride), addresses, rids4, nr, last_rid, max_bus = LINUX_CASES[name]
    params = make()
    cap, total = params.sriov_cap_offset, params.total_vfs

    async def body(b):
        cfg = ConfigSpace(b.port, base=cap)
        driver = LinuxSriovDriver(cfg, cap, pf_rid=params.pf_rid, ari=ari)

        # Enumeration.
        info = await driver.init()
        b.check_state()
        numvfs_writes = [data & 0xFFFF for op, dword, data, _be in b.port.log
                         if op == "wr" and dword == 4]
        assert numvfs_writes == [*range(total, 0, -1), 0]
        assert info.offsets_seen == [(n, offset, stride) for n in range(total, 0, -1)]
        assert (info.total_vfs, info.pgsz, info.offset, info.stride) == (total, 1, offset, stride)
        assert info.vf_device == params.vf_device_id
        assert info.bars == LINUX_BARS[name]
        assert info.max_vf_buses == max_bus
        assert b.state()["ari_capable_hierarchy"] == int(ari)
        assert b.state()["num_vfs"] == 0

        # Resource assignment.
        await driver.assign_bars(addresses)
        b.check_state()
        assert [base for base, _ in b.state()["vf_bars"]] == \
            [addresses[bar.index] for bar in params.vf_bars]

        # Enable, disable, enable again.
        rids = await driver.enable(4)
        assert rids == rids4
        b.check_state()
        st = b.state()
        assert (st["vf_enable"], st["vf_mse"], st["num_vfs"]) == (1, 1, 4)
        assert (st["first_vf_offset"], st["vf_stride"]) == (offset, stride)
        await driver.disable()
        b.check_state()
        assert (b.state()["vf_enable"], b.state()["vf_mse"], b.state()["num_vfs"]) == (0, 0, 0)
        assert b.state()["ari_capable_hierarchy"] == int(ari)
        rids = await driver.enable(nr)
        assert len(rids) == nr
        assert (rids[0], rids[-1]) == (rids4[0], last_rid)
        b.check_state()
        enabled = b.state()
        assert (enabled["vf_enable"], enabled["vf_mse"], enabled["num_vfs"]) == (1, 1, nr)

        # Reset, then sriov_restore_state brings everything back.
        await b.pulse_reset()
        assert b.state()["vf_enable"] == 0
        assert b.state()["num_vfs"] == 0
        await driver.restore()
        b.check_state()
        assert b.state() == enabled
        assert await cfg.read16(cap + 0x08) == (0x19 if ari else 0x09)
        assert await cfg.read16(cap + 0x10) == nr

    run(params, body, name=f"linux_{name}")


# -- Random byte-enabled sequences, RTL vs model -------------------------------------------------

RANDOM_CONFIGS = {
    "ari-differs": cfg_ari_differs,
    "bar64": cfg_bar64,
    "pages": cfg_pages,
    "one-vf": cfg_one_vf,
    "max-vfs": cfg_max_vfs,
    "igb": igb,
}

RANDOM_SEEDS = {
    "ari-differs": 0x5EED_0001,
    "bar64": 0x5EED_0002,
    "pages": 0x5EED_0003,
    "one-vf": 0x5EED_0004,
    "max-vfs": 0x5EED_0005,
    "igb": 0x5EED_0006,
}

RANDOM_TRANSACTIONS = 10_000

#: Dwords and their weights: mostly Control, NumVFs, System Page Size and the VF BARs.
_DWORD_WEIGHTS = {2: 20, 4: 15, 8: 12, 9: 6, 10: 6, 11: 6, 12: 6, 13: 6, 14: 6,
                  0: 1, 1: 1, 3: 1, 5: 1, 6: 1, 7: 1, 15: 1}


def _random_be(rng):
    r = rng.random()
    if r < 0.45:
        return 0xF
    if r < 0.55:
        return 0b0011
    if r < 0.60:
        return 0b1100
    if r < 0.75:
        return 1 << rng.randrange(4)
    return rng.randrange(16)                      # includes 0


def _random_data(rng, params, dword):
    total = params.total_vfs
    if dword == 2:                                # Control / Status
        if rng.random() < 0.1:
            return rng.getrandbits(32)
        low = rng.choice([0x19, 0x09, 0x01, 0x00, 0x10, 0x18, 0x11, 0x08, 0x39, 0x3F,
                          rng.getrandbits(6), rng.getrandbits(6)])
        return rng.choice([0, 0, 0, 1, 0xFFFF]) << 16 | low
    if dword == 4:                                # NumVFs / FDL / RsvdP
        n = rng.choice([0, 1, 2, total - 1, total, total, total + 1, total + 2, 0xFFFF,
                        rng.randrange(total + 1), rng.randrange(total + 1),
                        rng.getrandbits(16)]) & 0xFFFF
        return rng.choice([0, 0, rng.getrandbits(16)]) << 16 | n
    if dword == 8:                                # System Page Size
        supported = [b for b in range(32) if params.supported_page_sizes >> b & 1]
        unsupported = [b for b in range(32) if not params.supported_page_sizes >> b & 1]
        r = rng.random()
        if r < 0.55:
            return 1 << rng.choice(supported)
        if r < 0.70:
            return 1 << rng.choice(unsupported)
        if r < 0.75:
            return 0
        if r < 0.85:
            return 1 << rng.choice(supported) | 1 << rng.randrange(32)
        return rng.getrandbits(32)
    if 9 <= dword <= 14:                          # VF BARs
        r = rng.random()
        if r < 0.30:
            return 0xFFFF_FFFF
        if r < 0.40:
            return 0
        if r < 0.60:
            return rng.getrandbits(20) << 12 | rng.choice([0x0, 0x4, 0xC, 0x8])
        if r < 0.70:
            return rng.getrandbits(4)             # small upper halves
        return rng.getrandbits(32)
    return rng.choice([0xFFFF_FFFF, 0, rng.getrandbits(32)])


def random_transactions(rng, params, count):
    """Yield ("rd", dword) / ("wr", dword, data, be) / ("reset",) tuples."""
    dwords, weights = list(_DWORD_WEIGHTS), list(_DWORD_WEIGHTS.values())
    for _ in range(count):
        r = rng.random()
        if r < 0.003:
            yield ("reset",)
        elif r < 0.25:
            yield ("rd", rng.choices(dwords, weights)[0])
        else:
            dword = rng.choices(dwords, weights)[0]
            yield ("wr", dword, _random_data(rng, params, dword), _random_be(rng))


@pytest.mark.parametrize("name, seed", list(RANDOM_SEEDS.items()),
                         ids=[f"{name}-{seed:#x}" for name, seed in RANDOM_SEEDS.items()])
def test_random_vs_model(name, seed):
    params = RANDOM_CONFIGS[name]()

    async def body(b):
        rng = random.Random(seed)
        writes = 0
        for index, txn in enumerate(random_transactions(rng, params, RANDOM_TRANSACTIONS)):
            try:
                if txn[0] == "reset":
                    await b.pulse_reset()
                elif txn[0] == "rd":
                    await b.port.read_dword(txn[1])
                else:
                    _, dword, data, be = txn
                    await b.write_dword(dword, data, be)
                    await b.port.read_dword(dword)
                    writes += 1
                if index % 1000 == 999:
                    await b.dwords()
            except AssertionError as exc:
                txt = (f"({txn[0]} dword {txn[1]:#x} data {txn[2]:#010x} be {txn[3]:#06b})"
                       if txn[0] == "wr" else str(txn))
                raise AssertionError(f"config {name}, seed {seed:#x}, transaction {index} "
                                     f"{txt}: {exc}") from None
        assert writes > RANDOM_TRANSACTIONS // 2

    run(params, body, name=f"random_{name}_{seed:x}")


def test_random_generator_reaches_interesting_states():
    """The bias works for the seeds above: VFE and ARI toggle, VFs are enabled with NumVFs =
    TotalVFs, page sizes change and VF BARs are sized (checked on the model alone: it is fast)."""
    for name, seed in RANDOM_SEEDS.items():
        params = RANDOM_CONFIGS[name]()
        model = SriovCapabilityModel(params)
        seen = {"vfe": set(), "ari": set(), "enabled_total": False, "pages": set(),
                "sized": False, "be0": False}
        rng = random.Random(seed)
        for txn in random_transactions(rng, params, RANDOM_TRANSACTIONS):
            if txn[0] == "wr":
                model.write(*txn[1:])
                if 9 <= txn[1] <= 14 and txn[2:] == (0xFFFF_FFFF, 0xF) and model.read(txn[1]):
                    seen["sized"] = True
                seen["be0"] |= txn[3] == 0
            elif txn[0] == "reset":
                model.reset(keep_ari=True)
            seen["vfe"].add(model.vf_enable)
            seen["ari"].add(model.ari_capable_hierarchy)
            seen["pages"].add(model.system_page_size)
            if model.vf_enable and model.num_vfs == params.total_vfs:
                seen["enabled_total"] = True
        assert seen["vfe"] == {False, True}, name
        assert seen["ari"] == {False, True}, name
        assert seen["enabled_total"], name
        assert len(seen["pages"]) >= 4, name
        assert seen["sized"], name
        assert seen["be0"], name


# -- Construction errors -------------------------------------------------------------------------


@pytest.mark.parametrize("params", [None, {"total_vfs": 8}, "igb", 8])
def test_constructor_rejects_non_params(params):
    with pytest.raises(TypeError, match="EndpointParams"):
        SriovCapability(params)


@pytest.mark.parametrize("next_offset", [0x181, 0x0FE, 0x080, 0x004, 0x1000, -4])
def test_bad_next_offset(next_offset):
    with pytest.raises(ValueError, match="next_offset"):
        sriov_capability_map(igb(), next_offset)
    with pytest.raises(ValueError, match="next_offset"):
        SriovCapability(igb(), next_offset=next_offset)


@pytest.mark.parametrize("next_offset", [0, 0x100, 0xffc])
def test_good_next_offset(next_offset):
    assert sriov_capability_map(igb(), next_offset).size == 0x40
    assert SriovCapability(igb(), next_offset=next_offset).params == igb().pfs[0]
