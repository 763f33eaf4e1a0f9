# amaranth: UnusedElaboratable=no
"""Random config and memory transactions on the sixteen-PF device (issue 10).

``examples/multi-pf/cpm5-16pf.toml`` as it is (16 PFs x 255 VFs, MSI-X in every PF and VF): the
RTL ``SriovEndpoint`` and the reference model (``sriov_tb.model.EndpointModel``) get the same
seeded sequence. Every config completion goes through a ``Scoreboard`` (and its latency through
``LatencyCheck``), every memory request through a ``MemoryPort`` (decode, PF, and the data of
MSI-X table and PBA reads), and the design's reset events (``vf_flr``, each PF's ``vfs_reset``)
must be the model's ``events``.

The PFs are first programmed with plain config writes: BAR0 and Command, System Page Size,
VF BAR0 with each PF's VF block right after the previous PF's, NumVFs (a different count in
each PF), ARI Capable Hierarchy in PF 0, then VF Enable and VF MSE. The random part is biased to
functions that exist and to the registers that matter with several PFs (see ``Stimulus``); it
also puts PFs back the way they were programmed now and then, so that most VFs stay alive.
The stimulus reads the model's state only (never the design's): the sequence depends on the
seed alone, and ``test_stimulus_reaches_interesting_states`` checks its coverage on the model.

Cost: the design is large for the Python simulator (1.3 ms of CPU per idle clock cycle, 4 to 5
ms while requests flow; about 55 ms per config request and 27 ms per memory request). The
reset's clear of 4080 VF state entries alone takes 8160 cycles, each VF Enable clear or PF reset
with VFs another 510. So the run is 450 config and 300 memory requests after the setup (about
55 s of CPU), not the 2000 and 1000 issue 10 names; ``run_random`` takes the counts (2000 and
1000 take about 165 s). No waveform is written on failure (set ``SRIOV_EP_WAVES`` to get one):
the message gives the seed and the number and text of the failing transaction.
"""

import random
from pathlib import Path

from test_endpoint import LatencyCheck, be_for

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import load_params
from sriov_tb.host import EndpointDriver, MemoryDriver, MemoryPort, ModelEndpointPort, Scoreboard
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

CPM5 = Path(__file__).resolve().parent.parent / "examples" / "multi-pf" / "cpm5-16pf.toml"

SEED = 0x5EED_0A10
CONFIG_TRANSACTIONS = 450
MEMORY_TRANSACTIONS = 300

TYPE0, TYPE1 = 0, 1
KIB = 1024
P, TOTAL_VFS = 16, 255

# The layout of cpm5-16pf.toml (its comments, and the capability lists the PF and VF walk to):
# PF: PCI Express at 0x40 (Device Control 0x48), PM at 0x7C (PMCSR 0x80), MSI-X at 0x84
# (Message Control 0x86), ARI 0x100, SR-IOV 0x140, ACS 0x180. VF: PCI Express at 0x40, MSI-X
# at 0x7C (Message Control 0x7E), ARI 0x100.
DEVCTL, PMCSR, PF_MSIX, VF_MSIX = 0x48, 0x80, 0x84, 0x7C
ARI, SRIOV, ACS = 0x100, 0x140, 0x180
CTRL, NUMVFS, PAGE, VF_BAR0 = SRIOV + 0x08, SRIOV + 0x10, SRIOV + 0x20, SRIOV + 0x24
VF_ENABLE, VF_MSE, ARI_HIERARCHY = 0x01, 0x08, 0x10
INITIATE_FLR = 0x8000
PF_BAR_SIZE, VF_BAR_SIZE = 64 * KIB, 4 * KIB
PF_TABLE, PF_PBA, PF_VECTORS = 0x8000, 0x9000, 4
VF_TABLE, VF_PBA, VF_VECTORS = 0x800, 0xC00, 2
PAGE_4K, PAGE_8K = 0x1, 0x2              # System Page Size values (supported: 0x553)

PF_MMIO = 0x8000_0000                    # PF k's BAR0 at PF_MMIO + k * 64 KiB
VF_MMIO = 0x20_0000_0000                 # PF 0's VF BAR0 block; the others follow


def vf_rid(k, n, ari):
    """VF n of PF k (function k of bus 1), from the offsets the example's comments give: ARI
    16 + 254k, non-ARI 0x100 + 254k, stride 1."""
    offset = 16 + 254 * k if ari else 0x100 + 254 * k
    return 0x0100 + k + offset + n - 1


class Plan:
    """What the setup programs into each PF: NumVFs (all different, 1 and 255 among them),
    System Page Size (8 KiB in a few PFs), the VF BAR0 blocks back to back."""

    def __init__(self, rng):
        counts = [1, TOTAL_VFS] + rng.sample(range(2, TOTAL_VFS), P - 2)
        rng.shuffle(counts)
        self.num_vfs = counts
        self.page = [PAGE_8K if rng.random() < 0.25 else PAGE_4K for _ in range(P)]
        self.aperture = [max(VF_BAR_SIZE, 4 * KIB * page) for page in self.page]
        self.pf_bar = [PF_MMIO + k * PF_BAR_SIZE for k in range(P)]
        self.vf_bar = []
        addr = VF_MMIO
        for k in range(P):
            addr = -(-addr // self.aperture[k]) * self.aperture[k]     # aligned up
            self.vf_bar.append(addr)
            addr += self.num_vfs[k] * self.aperture[k]

    def vf_end(self, k):
        return self.vf_bar[k] + self.num_vfs[k] * self.aperture[k]


def setup_writes(plan):
    """The config writes that program every PF: (k, offset, size, value)."""
    writes = [(0, CTRL, 2, ARI_HIERARCHY)]
    for k in range(P):
        # (BAR0's upper half is 0 after reset, and System Page Size 4 KiB)
        writes += [(k, 0x10, 4, plan.pf_bar[k]), (k, 0x04, 2, 0x0006)]
        if plan.page[k] != PAGE_4K:
            writes.append((k, PAGE, 4, plan.page[k]))
        writes += [(k, VF_BAR0, 4, plan.vf_bar[k] & 0xFFFF_FFFF),
                   (k, VF_BAR0 + 4, 4, plan.vf_bar[k] >> 32),
                   (k, NUMVFS, 2, plan.num_vfs[k]),
                   (k, CTRL, 2, VF_ENABLE | VF_MSE | (ARI_HIERARCHY if k == 0 else 0))]
    return writes


def _random_be(rng):
    r = rng.random()
    if r < 0.5:
        return 0xF
    if r < 0.6:
        return 0b0011
    if r < 0.7:
        return 0b1100
    if r < 0.85:
        return 1 << rng.randrange(4)
    return rng.randrange(16)


def _pick(rng, weighted):
    return rng.choices([c for c, _ in weighted], [w for _, w in weighted])[0]


class Stimulus:
    """Seeded config and memory requests, chosen from the model's state (read without side
    effects) so that they reach live functions and interesting registers.

    ``config()`` returns ``(type1, rid, offset, be, write, data, what)`` with ``offset``
    dword-aligned and ``data`` the dword on the wire; ``memory()`` returns ``(addr, write, data,
    be, what)``.
    """

    def __init__(self, rng, model, plan):
        self.rng, self.model, self.plan = rng, model, plan

    # -- Config requests -------------------------------------------------------------------------

    def config(self):
        rng, m = self.rng, self.model
        r = rng.random()
        if r < 0.06:
            fix = self._restore()
            if fix is not None:
                return fix
        k = rng.randrange(P)
        pf = m.pfs[k]
        if r < 0.45:
            return self._pf_request(k)
        if r < 0.90:
            live = pf.sriov.num_vfs if pf.sriov.vf_enable else 0
            if live and rng.random() < 0.85:
                n = rng.choice([1, live, rng.randint(1, live), rng.randint(1, live)])
            else:
                n = rng.choice([live + 1, TOTAL_VFS, rng.randint(1, TOTAL_VFS), 256])
            return self._vf_request(k, n)
        return self._stray_request()

    def _wire(self, type1, rid, offset, size, write, value, what):
        """A request of ``size`` bytes at byte ``offset`` (size 4: any byte enables)."""
        if size == 4:
            be = _random_be(self.rng) if write else 0xF
        else:
            be = be_for(offset, size)
        data = (value << 8 * (offset % 4)) & 0xFFFF_FFFF if write else 0
        return (type1, rid, offset & ~3, be, write, data, what)

    def _type_of(self, rid):
        # The VFs on buses other than the PFs' are reached with Type 1 requests; now and then
        # the wrong type.
        type1 = TYPE1 if rid >> 8 != 0x01 else TYPE0
        return type1 ^ (self.rng.random() < 0.03)

    def _pf_request(self, k):
        rng, pf = self.rng, self.model.pfs[k]
        plan = self.plan
        rid = 0x0100 + k
        write = rng.random() < 0.5
        reg = _pick(rng, [("header", 10), ("command", 6), ("bar", 6), ("devctl", 6),
                          ("flr", 1), ("pcie", 3), ("pm", 10), ("msix", 6), ("ari", 2),
                          ("ctrl", 8), ("numvfs", 5), ("page", 3), ("vf_bar", 6), ("sriov", 4),
                          ("acs", 2), ("any", 4)])
        size, value = 4, rng.getrandbits(32)
        if reg == "header":
            offset = 4 * rng.randrange(16)
        elif reg == "command":
            offset, size = 0x04, 2
            value = rng.choice([0x0006, 0x0006, 0x0004, 0x0002, 0x0000, rng.getrandbits(16)])
        elif reg == "bar":
            offset = rng.choice([0x10, 0x10, 0x14, 0x18])
            value = rng.choice([plan.pf_bar[k], plan.pf_bar[k], 0xFFFF_FFFF, 0,
                                rng.getrandbits(32)]) if offset == 0x10 else \
                rng.choice([0, 0, 0xFFFF_FFFF, rng.getrandbits(4)])
        elif reg == "devctl":
            offset = DEVCTL + rng.choice([0, 0, 2])
            size = 2
            value = rng.getrandbits(16) & ~INITIATE_FLR
        elif reg == "flr":
            offset, size, write = DEVCTL, 2, True
            value = INITIATE_FLR | rng.getrandbits(15)
        elif reg == "pcie":
            offset = 0x40 + 4 * rng.randrange(15)
        elif reg == "pm":
            offset, size = PMCSR, 2
            state = pf.pm_power_state
            if state == 0:
                value = rng.choice([0, 3, 3, 1, 2])
            else:
                value = rng.choice([3, 3, 3, 3, 3, 3, 0])    # D3hot -> D0 resets the PF
            value |= rng.choice([0, 0, 0x0100, 0x8000, rng.getrandbits(16) & ~3])
            if rng.random() < 0.2:
                offset, size = rng.choice([0x7C, PMCSR]), 4
                value = rng.getrandbits(32)
        elif reg == "msix":
            offset, size = PF_MSIX + 2, 2
            value = rng.choice([0x8000, 0xC000, 0x4000, 0, rng.getrandbits(16)])
            if rng.random() < 0.2:
                offset, size = rng.choice([PF_MSIX, PF_MSIX + 4, PF_MSIX + 8]), 4
        elif reg == "ari":
            offset = ARI + rng.choice([0, 4])
        elif reg == "ctrl":
            offset, size = CTRL, 2
            vfe = pf.sriov.vf_enable
            if rng.random() < 0.15:
                vfe = not vfe                                 # each clear sweeps 510 cycles
            value = int(vfe) | rng.choice([VF_MSE, VF_MSE, 0]) | \
                rng.choice([0, 0, ARI_HIERARCHY, rng.getrandbits(16) & ~0x9])
        elif reg == "numvfs":
            offset, size = NUMVFS, 2
            value = rng.choice([plan.num_vfs[k], plan.num_vfs[k], 0, 1, 254, TOTAL_VFS,
                                TOTAL_VFS + 1, 0xFFFF, rng.randrange(TOTAL_VFS + 1)])
        elif reg == "page":
            offset = PAGE
            value = rng.choice([plan.page[k], PAGE_4K, PAGE_8K, 0x10, 0x4, 0,
                                rng.getrandbits(32)])
        elif reg == "vf_bar":
            offset = rng.choice([VF_BAR0, VF_BAR0, VF_BAR0 + 4, VF_BAR0 + 8])
            if offset == VF_BAR0:
                value = rng.choice([plan.vf_bar[k] & 0xFFFF_FFFF, 0xFFFF_FFFF,
                                    rng.getrandbits(32)])
            elif offset == VF_BAR0 + 4:
                value = rng.choice([plan.vf_bar[k] >> 32, 0xFFFF_FFFF, rng.getrandbits(8)])
        elif reg == "sriov":
            offset = SRIOV + 4 * rng.randrange(16)
        elif reg == "acs":
            offset = ACS + rng.choice([0, 4])
        else:
            offset = 4 * rng.randrange(1024)
        return self._wire(TYPE0, rid, offset, size, write, value, f"PF {k} {reg}")

    def _vf_request(self, k, n):
        rng = self.rng
        rid = vf_rid(k, n, self.model.ari_capable_hierarchy)
        write = rng.random() < 0.5
        reg = _pick(rng, [("header", 10), ("command", 6), ("devctl", 6), ("flr", 3),
                          ("pcie", 3), ("msix", 6), ("ari", 2), ("any", 3)])
        size, value = 4, rng.getrandbits(32)
        if reg == "header":
            offset = 4 * rng.randrange(16)
        elif reg == "command":
            offset, size = 0x04, 2
            value = rng.choice([0x0004, 0x0006, 0, rng.getrandbits(16)])
        elif reg == "devctl":
            offset = DEVCTL + rng.choice([0, 0, 2])
            size = 2
            value = rng.getrandbits(16) & ~INITIATE_FLR
        elif reg == "flr":
            offset, size, write = DEVCTL, 2, True
            value = INITIATE_FLR | rng.getrandbits(15)
        elif reg == "pcie":
            offset = 0x40 + 4 * rng.randrange(15)
        elif reg == "msix":
            offset, size = VF_MSIX + 2, 2
            value = rng.choice([0x8000, 0xC000, 0x4000, 0, rng.getrandbits(16)])
            if rng.random() < 0.2:
                offset, size = rng.choice([VF_MSIX, VF_MSIX + 4, VF_MSIX + 8]), 4
        elif reg == "ari":
            offset = ARI + rng.choice([0, 4])
        else:
            offset = 4 * rng.randrange(1024)
        return self._wire(self._type_of(rid), rid, offset, size, write, value,
                          f"VF {n} of PF {k} {reg}")

    def _stray_request(self):
        """Routing IDs next to the device's: past the last PF, other buses and functions."""
        rng = self.rng
        rid = rng.choice([0x0110, 0x0010, 0x0000, 0x0200, 0x01FF, 0x10FF, 0x1100, 0x11EF,
                          0x11F0, 0xFFFF, rng.getrandbits(16), rng.getrandbits(16)])
        type1 = rng.random() < 0.5
        return self._wire(type1, rid, 4 * rng.randrange(64), 4, rng.random() < 0.3,
                          rng.getrandbits(32), "stray")

    def _restore(self):
        """One write that moves a PF back towards its programmed state (None if none is
        off)."""
        rng, m, plan = self.rng, self.model, self.plan
        for k in rng.sample(range(P), P):
            pf, s = m.pfs[k], m.pfs[k].sriov
            rid = 0x0100 + k

            def write(offset, size, value, what, rid=rid, k=k):
                return (TYPE0, rid, offset & ~3, be_for(offset, size), True,
                        value << 8 * (offset % 4), f"restore PF {k} {what}")
            if pf.pm_power_state != 0:
                return write(PMCSR, 2, 0, "D0")
            if pf.command & 0x6 != 0x6:
                return write(0x04, 2, 0x0006, "Command")
            if pf.bar_address[0] != plan.pf_bar[k]:
                if pf.bar_address[0] >> 32:
                    return write(0x14, 4, 0, "BAR0 upper")
                return write(0x10, 4, plan.pf_bar[k], "BAR0")
            if s.vf_enable:
                if not s.vf_mse:
                    return write(CTRL, 2, VF_ENABLE | VF_MSE, "VF MSE")
                continue
            if s.num_vfs != plan.num_vfs[k]:
                return write(NUMVFS, 2, plan.num_vfs[k], "NumVFs")
            if s.system_page_size != plan.page[k]:
                return write(PAGE, 4, plan.page[k], "System Page Size")
            if s.vf_bar_base(0) != plan.vf_bar[k]:
                if s.vf_bar_base(0) >> 32 != plan.vf_bar[k] >> 32:
                    return write(VF_BAR0 + 4, 4, plan.vf_bar[k] >> 32, "VF BAR0 upper")
                return write(VF_BAR0, 4, plan.vf_bar[k] & 0xFFFF_FFFF, "VF BAR0")
            return write(CTRL, 2, VF_ENABLE | VF_MSE, "VF Enable")
        return None

    # -- Memory requests -------------------------------------------------------------------------

    def odd_pf(self):
        """A PF that is not as programmed (one kind of difference drawn first: VFs enabled
        without VF MSE, VFs disabled, Memory Space Enable off, not in D0), or None."""
        kinds = [[k for k, pf in enumerate(self.model.pfs) if test(pf)] for test in (
            lambda pf: pf.sriov.vf_enable and not pf.sriov.vf_mse,
            lambda pf: not pf.sriov.vf_enable,
            lambda pf: pf.command & 0x2 == 0,
            lambda pf: pf.pm_power_state != 0)]
        kinds = [pfs for pfs in kinds if pfs]
        return self.rng.choice(self.rng.choice(kinds)) if kinds else None

    def memory(self):
        rng, m, plan = self.rng, self.model, self.plan
        k = self.odd_pf() if rng.random() < 0.35 else None
        k = rng.randrange(P) if k is None else k
        pf, s = m.pfs[k], m.pfs[k].sriov
        r = rng.random()
        if r < 0.30:
            base = rng.choice([plan.pf_bar[k], plan.pf_bar[k], pf.bar_address[0]])
            v = rng.randrange(PF_VECTORS + 1)
            offset = rng.choice([0, 8, PF_BAR_SIZE - 8, PF_BAR_SIZE - 4, PF_BAR_SIZE,
                                 PF_TABLE - 8, PF_TABLE + 16 * v, PF_TABLE + 16 * v + 8,
                                 PF_TABLE + 16 * v + 12, PF_TABLE + 16 * v + 4, PF_PBA,
                                 PF_PBA + 4, PF_PBA + 8, 4 * rng.randrange(PF_BAR_SIZE // 4)])
            addr, what = base + offset, f"PF {k} BAR0 + {offset:#x}"
        elif r < 0.75:
            live = s.num_vfs if s.vf_enable else 0
            if live and rng.random() < 0.85:
                n = rng.choice([1, live, rng.randint(1, live), rng.randint(1, live)])
            else:
                n = rng.choice([live + 1, TOTAL_VFS, rng.randint(1, TOTAL_VFS), 256])
            base = s.vf_bar_base(0) if rng.random() < 0.8 else plan.vf_bar[k]
            aperture = s.vf_bar_aperture(0)
            v = rng.randrange(VF_VECTORS + 1)
            offset = rng.choice([0, 4, aperture - 8, aperture - 4, VF_TABLE - 4,
                                 VF_TABLE + 16 * v, VF_TABLE + 16 * v + 8,
                                 VF_TABLE + 16 * v + 12, VF_PBA, VF_PBA + 4, VF_PBA + 8,
                                 VF_BAR_SIZE, 4 * rng.randrange(aperture // 4)])
            addr = base + (n - 1) * aperture + offset
            what = f"VF {n} of PF {k} BAR0 + {offset:#x}"
        elif r < 0.90:
            # Boundaries between the PFs' VF blocks and PF BARs, as planned.
            edge = rng.choice([plan.vf_bar[k], plan.vf_end(k), plan.pf_bar[k]])
            delta = rng.choice([-8, -4, 0, 4])
            addr, what = (edge + delta) % (1 << 64), f"edge {edge:#x} {delta:+d}"
        else:
            addr = rng.choice([rng.getrandbits(64), rng.getrandbits(32), VF_MMIO - 8,
                               PF_MMIO - 8, PF_MMIO + P * PF_BAR_SIZE, 0,
                               (1 << 64) - 8]) & ~3
            what = "stray"
        addr &= (1 << 64) - 4
        write = rng.random() < 0.35
        if write:
            be = rng.choice([0xFF, 0x0F, 0xF0, 0xF << (addr % 8), rng.randrange(256)])
            data = rng.choice([rng.getrandbits(64), 0, 1 << 32, rng.getrandbits(32) << 32])
        else:
            be, data = 0xFF, 0
        return (addr, write, data, be, what)


# -- The bench --------------------------------------------------------------------------------


class EventMonitor:
    """Background testbench: the design's reset events in the model's form, ``("vf_flr", n,
    k)`` and ``("vfs_reset", k)``, in the order they happen."""

    def __init__(self, dut):
        self.dut = dut
        self.events = []

    async def testbench(self, ctx):
        dut = self.dut
        pulses = [dut.pfs[k].vfs_reset for k in range(P)]
        while True:
            _, _, flr, *resets = await ctx.tick().sample(dut.vf_flr, *pulses)
            if flr.valid:
                self.events.append(("vf_flr", int(flr.vf), int(flr.pf)))
            self.events += [("vfs_reset", k) for k in range(P) if resets[k]]


class RandomBench:
    """The design behind checked ports: config requests through a ``LatencyCheck`` and a
    ``Scoreboard``, memory requests through a ``MemoryPort``, both against one model."""

    def __init__(self, ctx, dut, params, monitor):
        self.ctx, self.dut, self.params = ctx, dut, params
        self.model = EndpointModel(params)
        self.cfg = EndpointDriver(ctx, dut)
        self.port = LatencyCheck(self.cfg, dut.config_latency)
        self.board = Scoreboard(self.port, ModelEndpointPort(self.model))
        self.mem = MemoryPort(MemoryDriver(ctx, dut), self.model)
        self.monitor = monitor

    async def config(self, type1, rid, offset, be, write, data, *, wait=True):
        """One request through the scoreboard. ``wait``: first let the design finish clearing
        the VF state of the PF the model routes it to (a request meanwhile would get Request
        Retry Status, reissued by the driver: slower to simulate than waiting)."""
        kind, k, _ = self.model.route(type1, rid)
        if wait and kind is not None and self.ctx.get(self.dut.pfs[k].vf_reset_busy):
            await self.ctx.tick().until(~self.dut.pfs[k].vf_reset_busy)
        return await self.board.config(type1, rid, offset // 4, be, write, data)

    async def check_events(self):
        """The design's reset events so far are the model's (PM resets aside: the design's
        ``vfs_reset`` of a PF comes a few cycles after the completion)."""
        expected = [e for e in self.model.events if e[0] != "pm_reset"]
        for _ in range(8):
            if self.monitor.events == expected or len(self.monitor.events) > len(expected):
                break
            await self.ctx.tick()
        assert self.monitor.events == expected, (
            f"reset events: design {self.monitor.events[-4:]}, model {expected[-4:]}")

    async def memory(self, addr, write, data, be):
        got = await self.mem.access(addr, write, data, be)
        if not got.internal:
            assert got.cycles == self.dut.mem_decode_latency, f"decode took {got.cycles} cycles"
        return got


def run_random(seed, config_count, memory_count):
    params = load_params(CPM5)
    dut = SriovEndpoint(params)
    done = []

    def make_testbench():
        monitor = EventMonitor(dut)

        async def testbench(ctx):
            b = RandomBench(ctx, dut, params, monitor)
            await random_body(b, seed, config_count, memory_count)
            done.append(b)
        return testbench, monitor.testbench

    simulate(dut, make_testbench, name=f"test_random_multi_{seed:x}", waves_on_failure=False)
    assert done, "the testbench did not finish"
    return done[0]


def sequence(seed, model, config_count, memory_count):
    """The requests of one run: ``("config", type1, rid, offset, be, write, data, what)`` or
    ``("memory", addr, write, data, be, what)``, the setup writes first. Each one must be
    applied to ``model`` before the next is drawn."""
    rng = random.Random(seed)
    plan = Plan(rng)
    for k, offset, size, value in setup_writes(plan):
        yield ("config", TYPE0, 0x0100 + k, offset & ~3, be_for(offset, size), True,
               value << 8 * (offset % 4), f"setup PF {k}")
    for k in range(P):
        s = model.pfs[k].sriov
        assert (s.vf_enable, s.vf_mse, s.num_vfs) == (True, True, plan.num_vfs[k])
    assert model.ari_capable_hierarchy
    stim = Stimulus(rng, model, plan)
    kinds = ["config"] * config_count + ["memory"] * memory_count
    rng.shuffle(kinds)
    for kind in kinds:
        yield (kind, *(stim.config() if kind == "config" else stim.memory()))


def describe(txn):
    if txn[0] == "memory":
        _, addr, write, data, be, what = txn
        return (f"{'MWr' if write else 'MRd'} {addr:#018x} be {be:#04x} data {data:#018x} "
                f"[{what}]")
    _, type1, rid, offset, be, write, data, what = txn
    return (f"{'CfgWr' if write else 'CfgRd'}{type1} {rid:#06x} {offset:#05x} be {be:#x} "
            f"data {data:#010x} [{what}]")


async def random_body(b, seed, config_count, memory_count):
    model, dut = b.model, b.dut
    for index, txn in enumerate(sequence(seed, model, config_count, memory_count)):
        try:
            if txn[0] == "memory":
                await b.memory(*txn[1:5])
            else:
                # After the setup, every eighth request goes straight out, even into a PF's
                # VF state clear.
                straight = index % 8 == 0 and not txn[-1].startswith("setup")
                await b.config(*txn[1:7], wait=not straight)
            await b.check_events()
        except AssertionError as exc:
            raise AssertionError(f"seed {seed:#x}, transaction {index} ({describe(txn)}): "
                                 f"{exc}") from None
    # No interrupt was raised: no MSI-X message on either side.
    assert b.ctx.get(dut.msg.valid) == 0 and model.messages == [], f"seed {seed:#x}"
    for k in range(P):
        assert b.ctx.get(dut.pfs[k].num_vfs) == model.pfs[k].sriov.num_vfs, f"seed {seed:#x}"


def test_random_vs_model():
    """The setup, then 450 config and 300 memory requests on cpm5-16pf, design against
    model."""
    b = run_random(SEED, CONFIG_TRANSACTIONS, MEMORY_TRANSACTIONS)
    assert b.board.compared >= CONFIG_TRANSACTIONS
    assert b.mem.compared == MEMORY_TRANSACTIONS


def test_stimulus_reaches_interesting_states():
    """The bias works for the seed and counts above (on the model alone, which is fast): live
    VFs of every PF answer, PFs and VFs are reset (FLR, D3hot -> D0, VF Enable cleared) and
    brought back, MSI-X Enable and the tables and PBAs of PFs and VFs are reached, adjacent
    addresses decode to different PFs, memory requests reach the VF BARs of a PF without VF
    MSE and the BAR of a PF without Memory Space Enable or out of D0, and unclaimed requests
    are sent."""
    params = load_params(CPM5)
    model = EndpointModel(params)
    seen = {"vf_sc": set(), "type1_sc": 0, "ur": 0, "pf_flr": 0, "vf_flr": 0, "d3hot": 0,
            "vfe_cleared": set(), "vfe_back": 0, "pf_msix": 0, "vf_msix": 0, "internal": set(),
            "claimed_by": set(), "unclaimed": 0, "edge": 0, "mem_writes": 0,
            "vf_mse_off": 0, "pf_off": 0}
    decoded = {}
    for txn in sequence(SEED, model, CONFIG_TRANSACTIONS, MEMORY_TRANSACTIONS):
        if txn[0] == "memory":
            _, addr, write, data, be, _ = txn
            for pf in model.pfs:
                s = pf.sriov
                base, aperture = s.vf_bar_base(0), s.vf_bar_aperture(0)
                if s.vf_enable and not s.vf_mse and base <= addr < base + s.num_vfs * aperture:
                    seen["vf_mse_off"] += 1
                base = pf.bar_address[0]
                off = pf.command & 0x2 == 0 or pf.pm_power_state != 0
                if off and base <= addr < base + PF_BAR_SIZE:
                    seen["pf_off"] += 1
            res = model.memory(addr, write, data, be)
            who = (res.pf, res.vf) if res.claimed or res.internal else None
            decoded[addr] = who
            for near in (addr - 4, addr + 4):
                if near in decoded and decoded[near] != who and None not in (who,
                                                                            decoded[near]):
                    seen["edge"] += decoded[near][0] != who[0]
            if res.internal:
                seen["internal"].add((res.is_vf, res.offset >= (VF_PBA if res.is_vf
                                                                else PF_PBA)))
            if who is None:
                seen["unclaimed"] += 1
            else:
                seen["claimed_by"].add(res.pf)
            seen["mem_writes"] += write
            continue
        _, type1, rid, offset, be, write, data, _ = txn
        kind, k, n = model.route(type1, rid)
        vfe = [pf.sriov.vf_enable for pf in model.pfs]
        status, _ = model.config(type1, rid, offset // 4, be, write, data)
        if status == "UR":
            seen["ur"] += 1
            continue
        if kind == "VF":
            seen["vf_sc"].add(k)
            seen["type1_sc"] += type1
        if write and offset == DEVCTL and be & 0x2 and data & INITIATE_FLR:
            seen["pf_flr" if kind == "PF" else "vf_flr"] += 1
        for j, pf in enumerate(model.pfs):
            if vfe[j] and not pf.sriov.vf_enable:
                seen["vfe_cleared"].add(j)
            seen["vfe_back"] += pf.sriov.vf_enable and not vfe[j]
            seen["d3hot"] += pf.pm_power_state == 3
            seen["pf_msix"] += model.function_state(0, pf=j)["msix_enable"]
        if kind == "VF" and model.pfs[k].sriov.vf_enable and n <= model.pfs[k].sriov.num_vfs:
            seen["vf_msix"] += model.function_state(n, pf=k)["msix_enable"]
    print(seen)
    assert seen["vf_sc"] == set(range(P)), seen["vf_sc"]
    assert seen["type1_sc"] > 50 and seen["ur"] > 30
    assert seen["pf_flr"] >= 1 and seen["vf_flr"] >= 5 and seen["d3hot"] > 0
    assert len(seen["vfe_cleared"]) >= 2 and seen["vfe_back"] >= P + 2
    assert seen["pf_msix"] > 0 and seen["vf_msix"] > 0
    assert seen["internal"] == {(False, False), (False, True), (True, False), (True, True)}
    assert len(seen["claimed_by"]) == P and seen["unclaimed"] > 30
    assert seen["edge"] > 0 and seen["mem_writes"] > 50
    assert seen["vf_mse_off"] > 0 and seen["pf_off"] > 0
