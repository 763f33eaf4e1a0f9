# amaranth: UnusedElaboratable=no
"""Memory requests through the whole endpoint with the host programming it as Linux does.

``SriovEndpoint`` + ``LinuxHost`` (enumeration, BAR assignment, sriov_enable/disable/restore as in
sriov-spec.md §4.1 and §4.2) + ``MemoryPort``, which decodes every request on the design and on
the reference model (``EndpointModel.decode_memory``) and fails on any difference. On top of that
each decode is checked against literal numbers: the addresses LinuxHost assigns
(examples/scripts/igb-memory.script names them), the spec's VF BAR layout (sriov-spec.md §3: VF n
at base + (n-1) * A, A = max(BAR size, System Page Size)) and §8 cases 10-15 and 28.

Also here: VF isolation with a generated script (every enabled VF written, then all read back),
the example memory script's transcript, and the script-level refusals (a request crossing a 4 KiB
boundary, an access running past the end of its aperture). The decoder's own boundary sweeps,
latency and backpressure tests are in ``tests/test_bar_decode.py``.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import Bar, EndpointParams, load_params
from sriov_tb.cfg import ConfigSpace
from sriov_tb.host import (
    EndpointDriver,
    LinuxHost,
    MemoryDriver,
    MemoryPort,
    MemTransaction,
    ModelEndpointPort,
    RootPort,
    Scoreboard,
)
from sriov_tb.model import EndpointModel
from sriov_tb.runner import RunFailure, run_ops
from sriov_tb.script import ScriptError, load_script, parse_script
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IGB_MEMORY_SCRIPT = EXAMPLES / "scripts" / "igb-memory.script"

KiB, MiB = 1 << 10, 1 << 20
TOP64 = 1 << 64
MISS = (False, 0, 0, 0)
LATENCIES = (1, 2)

# igb-82576.toml: SR-IOV capability at 0x160.
IGB_CTRL, IGB_NUMVFS, IGB_PAGE = 0x168, 0x170, 0x180
IGB_VF_BAR0, IGB_VF_BAR3 = 0x184, 0x190          # low dwords; upper dwords at +4
PCI_COMMAND = 0x04
CMD_MEMORY, CMD_MASTER = 0x02, 0x04
PCIE_DEVCTL, DEVCTL_FLR = 0x48, 0x8000
# Where LinuxHost puts igb's BARs (mmio32 from 0x8000_0000, mmio64 from 0x1_0000_0000).
IGB_PF_BARS = {0: (0x8000_0000, 128 * KiB), 1: (0x8002_0000, 128 * KiB),
               3: (0x8004_0000, 16 * KiB)}
IGB_VF_BAR0_BASE, IGB_VF_BAR3_BASE = 0x1_0000_0000, 0x1_0002_0000


def VF(n, bar, offset):
    return (True, n, bar, offset)


def PF(bar, offset):
    return (True, 0, bar, offset)


def igb():
    """examples/igb-82576.toml without its MSI-X capabilities: here BAR3 of the PF and of every
    VF is plain user memory (the MSI-X tables and PBAs the endpoint serves there are tested in
    tests/test_endpoint_caps.py)."""
    return load_params(EXAMPLES / "igb-82576.toml").replace(msix=None, vf_msix=None)


def pages_config():
    """Eight VFs with a 16 KiB 64-bit and a 4 KiB 32-bit VF BAR and every page size from 4 KiB
    to 4 MiB (so 16 KiB is one); no PF BAR, so VF BAR2 is the first thing in mmio32."""
    return EndpointParams(total_vfs=8, supported_page_sizes=0x7FF, pf_bars=(),
                          vf_bars=(Bar(0, 16 * KiB, is_64bit=True, prefetchable=True),
                                   Bar(2, 4 * KiB)))


# -- The Linux-driven bench ----------------------------------------------------------------------


@dataclass
class Env:
    host:    LinuxHost
    pf:      ConfigSpace        # the PF's config space (recorded, scoreboarded)
    mem:     MemoryPort
    model:   EndpointModel
    latency: int

    async def decode(self, addr, write=False):
        """Decode on design and model (they must agree); the result must come ``latency``
        cycles (the endpoint's ``mem_decode_latency``) after the request was accepted."""
        result = await self.mem.decode(addr, write)
        if result.claimed and self.model._msix_internal(result.function, result.bar,
                                                        result.offset):
            # An MSI-X table or PBA access: the endpoint serves it, which takes longer.
            assert result.cycles > self.latency, (f"{addr:#x}: MSI-X access answered after "
                                                  f"{result.cycles} cycles")
        else:
            assert result.cycles == self.latency, (f"{addr:#x}: result after {result.cycles} "
                                                   f"cycles, not {self.latency}")
        return result.key()

    async def expect(self, cases):
        """``cases``: ``[(addr, (claimed, function, bar, offset))]``."""
        for k, (addr, want) in enumerate(cases):
            got = await self.decode(addr, write=bool(k & 1))
            assert got == want, f"{addr:#018x}: decoded {got}, expected {want}"


def run_linux(params, body, *, latency=1, page_size=4096, mmio32=0x8000_0000,
              mmio64=0x1_0000_0000, name="memory"):
    """Simulate SriovEndpoint(params, mem_latency=latency) with ``await body(env)``."""
    dut = SriovEndpoint(params, mem_latency=latency)

    def make_testbench():
        async def testbench(ctx):
            model = EndpointModel(params)
            board = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model))
            root = RootPort(board, secondary_bus=params.pf_rid >> 8)
            host = LinuxHost(root, params.pf_rid, page_size=page_size, mmio32=mmio32,
                             mmio64=mmio64)
            env = Env(host, root.function(params.pf_rid),
                      MemoryPort(MemoryDriver(ctx, dut), model), model,
                      dut.mem_decode_latency)
            await body(env)
            assert env.mem.compared > 0
        return testbench

    simulate(dut, make_testbench, name=f"test_memory_{name}")


# -- 2. Linux programs the BARs; VF MSE, VF Enable, NumVFs, page size, PF MSE ---------------------


@pytest.mark.parametrize("latency", LATENCIES)
def test_linux_igb_layout_and_decode(latency):
    """Linux's enumeration puts the PF BARs in mmio32 and the VF BARs (64-bit prefetchable) in
    mmio64 with room for TotalVFs; after enabling 4 VFs, VF n's BARi starts at
    base_i + (n-1) * 16 KiB and VF 5..8 do not decode (§8 case 11)."""
    async def body(env):
        await env.host.enumerate()
        assert env.host.pf.bars == IGB_PF_BARS
        assert env.host.sriov.bar_addresses == {0: IGB_VF_BAR0_BASE, 3: IGB_VF_BAR3_BASE}
        assert await env.pf.read32(IGB_PAGE) == 0x1                  # 4 KiB pages
        await env.expect([(IGB_VF_BAR0_BASE, MISS), (0x8000_0000, PF(0, 0))])
        await env.host.enable(4)
        await env.expect([
            (0x1_0000_0000, VF(1, 0, 0)), (0x1_0000_3FFF, VF(1, 0, 0x3FFF)),
            (0x1_0000_4000, VF(2, 0, 0)), (0x1_0000_8ABC, VF(3, 0, 0xABC)),
            (0x1_0000_FFFF, VF(4, 0, 0x3FFF)), (0x1_0001_0000, MISS),    # VF 5: not enabled
            (0x1_0001_FFFF, MISS),                                       # last byte of VF 8
            (0x1_0002_0000, VF(1, 3, 0)), (0x1_0002_C010, VF(4, 3, 0x10)),
            (0x1_0002_FFFF, VF(4, 3, 0x3FFF)), (0x1_0003_0000, MISS),
            (0x0_FFFF_FFFF, MISS), (0x0, MISS),                          # below / 32-bit alias
            (0x8000_0000, PF(0, 0)), (0x8001_FFFF, PF(0, 0x1FFFF)), (0x8002_0000, PF(1, 0)),
            (0x8004_3FFF, PF(3, 0x3FFF)), (0x8004_4000, MISS),
            (0x1_8000_0000, MISS),                                       # PF BAR0 + 4 GiB
        ])
    run_linux(igb(), body, latency=latency, name=f"igb_layout_{latency}")


@pytest.mark.parametrize("latency", LATENCIES)
def test_vf_mse_vf_enable_and_numvfs_changes(latency):
    """Decoding follows VF MSE, VF Enable and NumVFs from one request to the next (§8 cases 10
    and 11); NumVFs written while VF Enable is 1 changes nothing."""
    async def probe(env, vfs, pf_on=True):
        cases = [(IGB_VF_BAR0_BASE + (n - 1) * 0x4000 + 0x123,
                  VF(n, 0, 0x123) if n <= vfs else MISS) for n in range(1, 9)]
        cases += [(IGB_VF_BAR3_BASE + (n - 1) * 0x4000 + 0x3FFF,
                   VF(n, 3, 0x3FFF) if n <= vfs else MISS)
                  for n in sorted({1, vfs, vfs + 1}) if 1 <= n <= 8]
        cases.append((0x8000_0010, PF(0, 0x10) if pf_on else MISS))
        await env.expect(cases)

    async def body(env):
        host, pf = env.host, env.pf
        await host.enumerate()
        await probe(env, 0)
        await host.enable(4)
        await probe(env, 4)
        await pf.write16(IGB_CTRL, 0x0011)           # VF MSE off (VF Enable, ARI stay)
        await probe(env, 0)
        await pf.write16(IGB_CTRL, 0x0019)           # VF MSE on again
        await probe(env, 4)
        await pf.write16(IGB_NUMVFS, 8)              # ignored while VF Enable is 1
        assert await pf.read16(IGB_NUMVFS) == 4
        await probe(env, 4)
        await host.disable()                         # VFE and MSE off, NumVFs 0
        await probe(env, 0)
        await pf.write16(IGB_NUMVFS, 8)
        await pf.write16(IGB_CTRL, 0x0018)           # VF MSE alone: VF Enable is still 0
        await probe(env, 0)
        await pf.write16(IGB_CTRL, 0x0019)           # VF Enable with NumVFs 8
        await probe(env, 8)
        await pf.write16(IGB_CTRL, 0x0010)
        await probe(env, 0)
        await host.enable(2)                         # Linux: NumVFs 2, then VFE | MSE
        await probe(env, 2)
        await host.disable()
        await pf.write16(IGB_CTRL, 0x0019)           # VF Enable with NumVFs 0: no VF
        await probe(env, 0)
    run_linux(igb(), body, latency=latency, name=f"vf_mse_vfe_numvfs_{latency}")


PAGE_CASES = [
    # (configuration, host PAGE_SIZE, System Page Size Linux picks, aperture per VF BAR)
    pytest.param("igb", 4096, 0x1, {0: 16 * KiB, 3: 16 * KiB}, id="igb-4k"),
    # 0x553 has no 16 KiB page: the smallest supported size >= 16 KiB is 64 KiB.
    pytest.param("igb", 16384, 0x10, {0: 64 * KiB, 3: 64 * KiB}, id="igb-16k"),
    pytest.param("igb", 65536, 0x10, {0: 64 * KiB, 3: 64 * KiB}, id="igb-64k"),
    pytest.param("pages", 4096, 0x1, {0: 16 * KiB, 2: 4 * KiB}, id="pages-4k"),
    pytest.param("pages", 16384, 0x4, {0: 16 * KiB, 2: 16 * KiB}, id="pages-16k"),
    pytest.param("pages", 65536, 0x10, {0: 64 * KiB, 2: 64 * KiB}, id="pages-64k"),
]


@pytest.mark.parametrize("name,page_size,system_page_size,apertures", PAGE_CASES)
def test_linux_page_size_moves_apertures(name, page_size, system_page_size, apertures):
    """LinuxHost(page_size=P) writes the smallest supported System Page Size >= P; every VF BAR
    is then sized and decoded with A = max(size, page) (§3, §8 case 15): VF n at
    base + (n-1) * A, an offset past the BAR's own size stays in the same VF."""
    params = igb() if name == "igb" else pages_config()

    async def body(env):
        host = env.host
        await host.enumerate()
        assert await env.pf.read32(params.sriov_cap_offset + 0x20) == system_page_size
        assert {bar.index: bar.size for bar in host.sriov.info.bars} == apertures
        bases = host.sriov.bar_addresses
        if name == "igb":        # both 64-bit prefetchable: mmio64, TotalVFs apertures each
            assert bases == {0: 0x1_0000_0000, 3: 0x1_0000_0000 + 8 * apertures[0]}
        else:                    # VF BAR2 is 32-bit: mmio32
            assert bases == {0: 0x1_0000_0000, 2: 0x8000_0000}
        await host.enable(8)
        cases = []
        for bar, size in apertures.items():
            base = bases[bar]
            for n in (1, 2, 5, 8):
                start = base + (n - 1) * size
                cases += [(start, VF(n, bar, 0)), (start + size - 1, VF(n, bar, size - 1))]
            # igb's VF BAR3 follows VF BAR0 (all 8 VFs are enabled); nothing else is adjacent.
            below = VF(8, 0, apertures[0] - 1) if (name, bar) == ("igb", 3) else MISS
            after = VF(1, 3, 0) if (name, bar) == ("igb", 0) else MISS
            cases += [(base - 1, below), (base + 8 * size, after)]
            if bar == 2:         # 32-bit: its image 4 GiB up is nothing (above 0x1_0000_0000
                cases += [(base + (1 << 32), MISS), (base + (1 << 32) + size, MISS)]  # + 8 A)
            # 16 KiB into VF 1: past a 4 KiB BAR's size, inside its aperture only if A > 16 KiB.
            cases.append((base + 0x4000, VF(1, bar, 0x4000) if size > 0x4000 else
                          VF(2, bar, 0) if size == 0x4000 else VF(5, bar, 0)))
        await env.expect(cases)
    run_linux(params, body, page_size=page_size, name=f"page_{name}_{page_size}")


def test_system_page_size_written_directly_then_bars_reprogrammed():
    """System Page Size written by software while VF Enable is 1 is ignored; written with VF
    Enable 0 it grows every aperture at once, clearing the BAR address bits below it (capability
    behaviour item 7), so igb's two VF BARs overlap until the host re-programs them (the lower
    BAR wins, endpoint behaviour §5); a later smaller page keeps the addresses."""
    async def body(env):
        host, pf = env.host, env.pf
        await host.enumerate()
        await host.enable(4)
        await pf.write32(IGB_PAGE, 0x40)                      # 256 KiB, ignored: VFE is 1
        assert await pf.read32(IGB_PAGE) == 0x1
        await env.expect([(0x1_0000_4000, VF(2, 0, 0)), (0x1_0002_4000, VF(2, 3, 0))])

        await host.disable()
        await pf.write32(IGB_PAGE, 0x40)
        assert await pf.read32(IGB_PAGE) == 0x40
        # 0x1_0002_0000 loses bits 17:14: VF BAR3 now reads 0x1_0000_0000, as VF BAR0.
        assert await pf.read32(IGB_VF_BAR3) == 0x0000_000C
        assert await pf.read32(IGB_VF_BAR3 + 4) == 0x1
        assert await pf.read32(IGB_VF_BAR0) == 0x0000_000C
        await host.enable(4)                                  # Linux does not rewrite BARs
        await env.expect([
            (0x1_0000_0000, VF(1, 0, 0)), (0x1_0002_0000, VF(1, 0, 0x2_0000)),
            (0x1_0004_0000, VF(2, 0, 0)), (0x1_000F_FFFF, VF(4, 0, 0x3_FFFF)),
            (0x1_0010_0000, MISS)])

        await host.disable()
        await host.sriov.assign_bars({0: 0x2_0000_0000, 3: 0x2_0020_0000})   # 8 x 256 KiB each
        assert await pf.read32(IGB_VF_BAR3) == 0x0020_000C
        assert await pf.read32(IGB_VF_BAR3 + 4) == 0x2
        await host.enable(4)
        await env.expect([
            (0x1_0000_0000, MISS),
            (0x2_0000_0000, VF(1, 0, 0)), (0x2_0004_0000, VF(2, 0, 0)),
            (0x2_000F_FFFF, VF(4, 0, 0x3_FFFF)), (0x2_0010_0000, MISS),
            (0x2_0020_0000, VF(1, 3, 0)), (0x2_0023_FFFF, VF(1, 3, 0x3_FFFF)),
            (0x2_002C_0000, VF(4, 3, 0)), (0x2_002F_FFFF, VF(4, 3, 0x3_FFFF)),
            (0x2_0030_0000, MISS)])

        await host.disable()
        await pf.write32(IGB_PAGE, 0x1)                       # back to 4 KiB
        assert await pf.read32(IGB_VF_BAR3) == 0x0020_000C
        await host.enable(4)
        await env.expect([
            (0x2_0000_4000, VF(2, 0, 0)), (0x2_0000_FFFF, VF(4, 0, 0x3FFF)),
            (0x2_0001_0000, MISS), (0x2_0020_C000, VF(4, 3, 0)), (0x2_0021_0000, MISS)])
    run_linux(igb(), body, name="page_size_direct")


def test_pf_memory_space_enable():
    """PF Command MSE gates the PF BARs only: the VFs keep decoding (§8 case 28); VF MSE gates
    the VFs only."""
    pf_cases = [(0x8000_0000, PF(0, 0)), (0x8002_0004, PF(1, 4)), (0x8004_0008, PF(3, 8))]
    vf_cases = [(0x1_0000_4000, VF(2, 0, 0)), (0x1_0002_0000, VF(1, 3, 0))]

    def off(cases):
        return [(addr, MISS) for addr, _ in cases]

    async def body(env):
        await env.host.enumerate()
        await env.host.enable(2)
        assert await env.pf.read16(PCI_COMMAND) == CMD_MEMORY | CMD_MASTER
        await env.expect(pf_cases + vf_cases)
        await env.pf.write16(PCI_COMMAND, CMD_MASTER)             # PF MSE off
        await env.expect(off(pf_cases) + vf_cases)
        await env.pf.write16(PCI_COMMAND, CMD_MEMORY | CMD_MASTER)
        await env.expect(pf_cases + vf_cases)
        await env.pf.write16(IGB_CTRL, 0x0011)                    # VF MSE off
        await env.expect(pf_cases + off(vf_cases))
        await env.pf.write16(PCI_COMMAND, 0)                      # both off
        await env.expect(off(pf_cases) + off(vf_cases))
    run_linux(igb(), body, name="pf_mse")


def test_pf_flr_then_linux_restore():
    """After a PF FLR and Linux's restore (PF BARs, Command, sriov_restore_state) the same
    addresses decode as before; an FLR alone returns every BAR, PF MSE and the SR-IOV Control
    to reset, so nothing decodes."""
    cases = [(0x1_0000_0000, VF(1, 0, 0)), (0x1_0000_FFFF, VF(4, 0, 0x3FFF)),
             (0x1_0001_0000, MISS), (0x1_0002_4000, VF(2, 3, 0)), (0x8002_0000, PF(1, 0))]

    async def body(env):
        await env.host.enumerate()
        await env.host.enable(4)
        await env.expect(cases)
        await env.host.flr(env.host.pf_rid)                       # FLR + restore, as Linux
        await env.expect(cases)
        devctl = await env.pf.read16(PCIE_DEVCTL)
        await env.pf.write16(PCIE_DEVCTL, devctl | DEVCTL_FLR)    # FLR, no restore
        assert await env.pf.read16(PCI_COMMAND) == 0
        await env.expect([(addr, MISS) for addr, _ in cases] + [(0x0, MISS), (0x10, MISS)])
    run_linux(igb(), body, name="pf_flr")


@pytest.mark.parametrize("mmio64", [0x80_0000_0000, TOP64 - 0x40000],
                         ids=["512g", "top-of-2^64"])
def test_64bit_vf_bars_above_4g(mmio64):
    """64-bit VF BARs placed above 4 GiB decode with the full 64-bit address (§8 case 14); at the
    very top of the address space VF 8's last byte is 2**64 - 1 and nothing wraps to 0."""
    bar0, bar3 = mmio64, mmio64 + 0x20000

    async def body(env):
        await env.host.enumerate()
        assert env.host.sriov.bar_addresses == {0: bar0, 3: bar3}
        assert await env.pf.read32(IGB_VF_BAR0 + 4) == bar0 >> 32
        assert await env.pf.read32(IGB_VF_BAR3) == bar3 & 0xFFFF_FFFF | 0xC
        await env.host.enable(8)
        await env.expect([
            (bar0 - 1, MISS), (bar0, VF(1, 0, 0)), (bar0 + 0x1_C123, VF(8, 0, 0x123)),
            (bar3, VF(1, 3, 0)), (bar3 + 0x1_FFFF, VF(8, 3, 0x3FFF)),
            (bar0 & 0xFFFF_FFFF, MISS), (bar3 & 0xFFFF_FFFF, MISS),   # 32-bit aliases
            ((bar3 + 0x2_0000) % TOP64, MISS),                        # past VF 8, or wrapped
            (0x3FFF, MISS)])
    run_linux(igb(), body, mmio64=mmio64, name=f"above_4g_{mmio64:x}")


# -- 3. Isolation: each VF sees only its own data --------------------------------------------------


def isolation_script(count, bars, offsets, checks):
    """A script that enables ``count`` VFs, runs ``checks`` (lines that pin down where the host
    put the BARs), writes a distinct 8-byte value at ``offsets[bar]`` of every VF's every BAR,
    then reads them all back, and reads a never-written offset of each; and the memory
    transactions it must produce, as ``(line, op, addr, status, value, function, bar, offset)``.

    ``bars``: ``{bar: (base, aperture)}``."""
    lines, want = [f"enable 01:00.0 {count}", *checks], []

    def value(n, bar, offset):
        return 0x5A00_0000_0000_0000 | n << 32 | bar << 24 | offset

    targets = [(n, bar, offset) for n in range(1, count + 1) for bar in bars
               for offset in offsets[bar]]
    for op in ("memwr", "memrd"):
        for n, bar, offset in targets:
            base, size = bars[bar]
            addr = base + (n - 1) * size + offset
            v = value(n, bar, offset)
            lines.append(f"memwr {addr:#x} 8 {v:#x}" if op == "memwr"
                         else f"memrd {addr:#x} 8 == {v:#x}")
            want.append((len(lines), op, addr, "SC", v, n, bar, offset))
    for n in range(1, count + 1):
        for bar, (base, size) in bars.items():
            addr = base + (n - 1) * size + 0x800
            lines.append(f"memrd {addr:#x} 8 == 0")
            want.append((len(lines), "memrd", addr, "SC", 0, n, bar, 0x800))
    return "\n".join(lines) + "\n", want


#: ``mem_decode_latency`` of the endpoint run_ops simulates (BAR decoder latency 1, plus 1 for
#: the power-state check; VFs without PM) for accesses outside MSI-X tables.
RUN_OPS_LATENCY = 2


def check_transcript(result, want, cycles=RUN_OPS_LATENCY):
    got = [(int(t.step.split()[1]), t.op, t.addr, t.status, t.value, t.function, t.bar,
            t.offset) for t in result.transactions if isinstance(t, MemTransaction)]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w, f"transaction {g} != expected {w}"
    assert all(t.cycles == cycles for t in result.transactions
               if isinstance(t, MemTransaction))


def test_isolation_igb_all_vfs():
    """igb with all 8 VFs: a distinct value at the start, the middle and the end of each VF's
    BAR0 and BAR3; every read returns that VF's own value."""
    text, want = isolation_script(
        8, {0: (IGB_VF_BAR0_BASE, 0x4000), 3: (IGB_VF_BAR3_BASE, 0x4000)},
        {0: (0, 0x1FF8, 0x3FF8), 3: (0, 0x3FF8)},
        ["cfgrd 01:00.0 0x184 4 == 0x0000000c", "cfgrd 01:00.0 0x188 4 == 0x00000001",
         "cfgrd 01:00.0 0x190 4 == 0x0002000c", "cfgrd 01:00.0 0x194 4 == 0x00000001"])
    result = run_ops(igb(), parse_script(text, "isolation-igb.script"),
                     filename="isolation-igb.script")
    check_transcript(result, want)


def many_config():
    """256 VFs (ARI offset 1, stride 1: the last VF is 02:00.0, on the next bus), a 16 KiB
    64-bit VF BAR and a 4 KiB 32-bit one."""
    return EndpointParams(total_vfs=256, pf_bars=(Bar(0, 16 * KiB),),
                          vf_bars=(Bar(0, 16 * KiB, is_64bit=True, prefetchable=True),
                                   Bar(2, 4 * KiB)))


def test_isolation_256_vfs():
    """The same with 256 VFs: the start and the end of VF BAR0 and the start of VF BAR2."""
    # LinuxHost: VF BAR0 (256 x 16 KiB) at 0x1_0000_0000; the PF BAR at 0x8000_0000, then
    # VF BAR2 (256 x 4 KiB) aligned to one VF's 4 KiB, at 0x8000_4000. The script checks that.
    text, want = isolation_script(
        256, {0: (0x1_0000_0000, 0x4000), 2: (0x8000_4000, 0x1000)}, {0: (0, 0x3FF8), 2: (0,)},
        ["cfgrd 01:00.0 0x164 4 == 0x0000000c", "cfgrd 01:00.0 0x168 4 == 0x00000001",
         "cfgrd 01:00.0 0x16c 4 == 0x80004000"])
    result = run_ops(many_config(), parse_script(text, "isolation-256.script"),
                     filename="isolation-256.script")
    check_transcript(result, want)


# -- 5. Scripts ------------------------------------------------------------------------------------


# The memory transactions of examples/scripts/igb-memory.script, from its comments:
# (line, op, addr, size, status, value, function, bar, offset).
IGB_MEMORY_TRANSCRIPT = [
    (11, "memwr", 0x1_0000_0000, 4, "SC", 0x11111111, 1, 0, 0x0),
    (12, "memwr", 0x1_0000_4000, 4, "SC", 0x22222222, 2, 0, 0x0),
    (13, "memwr", 0x1_0000_C000, 8, "SC", 0x4444444444444444, 4, 0, 0x0),
    (14, "memwr", 0x1_0002_3010, 4, "SC", 0x33333333, 1, 3, 0x3010),
    (16, "memrd", 0x1_0000_0000, 4, "SC", 0x11111111, 1, 0, 0x0),
    (17, "memrd", 0x1_0000_4000, 4, "SC", 0x22222222, 2, 0, 0x0),
    (18, "memrd", 0x1_0000_8000, 4, "SC", 0x00000000, 3, 0, 0x0),
    (19, "memrd", 0x1_0000_C004, 4, "SC", 0x44444444, 4, 0, 0x4),
    (20, "memrd", 0x1_0002_3010, 4, "SC", 0x33333333, 1, 3, 0x3010),
    (21, "memrd", 0x1_0002_7010, 4, "SC", 0x00000000, 2, 3, 0x3010),
    (23, "memrd", 0x1_0001_0000, 4, "UR", 0xFFFFFFFF, None, None, None),
    (24, "memrd", 0x0_FFFF_FFFF, 1, "UR", 0xFF, None, None, None),
    (25, "memwr", 0x8000_0100, 4, "SC", 0xCAFEF00D, 0, 0, 0x100),
    (26, "memrd", 0x8000_0100, 4, "SC", 0xCAFEF00D, 0, 0, 0x100),
    (29, "memrd", 0x1_0000_0000, 4, "UR", 0xFFFFFFFF, None, None, None),
    (31, "memrd", 0x1_0000_0000, 4, "SC", 0x11111111, 1, 0, 0x0),
    (34, "memrd", 0x8000_0100, 4, "UR", 0xFFFFFFFF, None, None, None),
    (35, "memrd", 0x1_0000_4000, 4, "SC", 0x22222222, 2, 0, 0x0),
]


def test_igb_memory_script_transcript():
    """The example script runs clean (design and model agree on every completion and decode)
    and each memory transaction reached the function, BAR and offset its comment names, in
    the endpoint's ``mem_decode_latency`` (2: the BAR decoder's 1, and 1 for the power-state
    check)."""
    latency = RUN_OPS_LATENCY
    lines = []
    # (The example as it is, MSI-X included: the script stays out of the tables.)
    result = run_ops(load_params(EXAMPLES / "igb-82576.toml"), load_script(IGB_MEMORY_SCRIPT),
                     filename=str(IGB_MEMORY_SCRIPT), emit=lines.append)
    got = [(int(t.step.split()[1]), t.op, t.addr, t.size, t.status, t.value, t.function, t.bar,
            t.offset) for t in result.transactions if isinstance(t, MemTransaction)]
    assert got == IGB_MEMORY_TRANSCRIPT
    mem = [t for t in result.transactions if isinstance(t, MemTransaction)]
    assert all(t.cycles == latency for t in mem)
    assert result.compared >= len(result.transactions)     # every access was compared
    # The emitted text names the function and BAR of each claimed transaction.
    assert "memwr 0x0000000100023010 4 SC 0x33333333 VF1 BAR3+0x3010 2 cycles  [line 14]" \
        in lines
    assert "memrd 0x0000000080000100 4 UR 0xffffffff - 2 cycles  [line 34]" in lines


@pytest.mark.parametrize("line", [
    "memrd 0x100000ffc 8",                  # 4 bytes past the page
    "memwr 0x80000fff 2 0xbeef",            # one byte past
    "memrd 0xffffffffffffeffc 8",           # near the top of the address space
])
def test_access_crossing_4k_is_a_script_error(line):
    """A request crossing a 4 KiB boundary is refused before anything runs, naming file and line."""
    text = "# crossing\nenable 01:00.0 4\n" + line + "\n"
    emitted = []
    with pytest.raises(ScriptError) as info:
        run_ops(igb(), parse_script(text, "cross.script"), filename="cross.script",
                emit=emitted.append)
    assert info.value.filename == "cross.script" and info.value.line == 3
    assert str(info.value).startswith("cross.script:3: ")
    assert "crosses a 4 KiB boundary" in str(info.value)
    assert emitted == []                    # refused before the simulation started


def test_access_ending_at_4k_boundary_runs():
    text = "enable 01:00.0 4\nmemwr 0x100000ff8 8 0x0102030405060708\n" \
           "memrd 0x100000ffc 4 == 0x01020304\n"
    result = run_ops(igb(), parse_script(text))
    mem = [t for t in result.transactions if isinstance(t, MemTransaction)]
    assert [(t.function, t.bar, t.offset) for t in mem] == [(1, 0, 0xFF8), (1, 0, 0xFFC)]


def small_pf_bars_config():
    """Two 256-byte PF BARs (the only apertures smaller than a page, so the only ones an access
    within 4 KiB can run out of): LinuxHost puts them at 0x8000_0000 and 0x8000_0100."""
    return EndpointParams(total_vfs=2, pf_bars=(Bar(0, 0x100), Bar(1, 0x100)),
                          vf_bars=(Bar(0, 0x1000),))


@pytest.mark.parametrize("line", [
    "memrd 0x800000fc 8",                   # from PF BAR0 into PF BAR1
    "memwr 0x800001fe 4 0x1",               # from PF BAR1 into unclaimed space
])
def test_access_past_the_end_of_its_aperture_is_a_run_failure(line):
    text = ("enable 01:00.0 2\ncfgrd 01:00.0 0x10 4 == 0x80000000\n"
            "cfgrd 01:00.0 0x14 4 == 0x80000100\nmemrd 0x800000f8 8\nmemwr 0x800001fc 4 0x1\n"
            + line + "\n")
    with pytest.raises(RunFailure) as info:
        run_ops(small_pf_bars_config(), parse_script(text, "past.script"),
                filename="past.script")
    op, addr, size = line.split()[:3]
    assert str(info.value) == (f"past.script:6: {line}: {op} of {size} bytes at {addr} runs "
                               f"past the end of the aperture it starts in")
