# amaranth: UnusedElaboratable=no
"""Tests of memory-request decoding: ``sriov_ep.decode.bar.VfBarDecoder`` on its own and inside
``sriov_ep.endpoint.SriovEndpoint``.

Every decode is compared with an expectation written here from the spec's formula, not with the
design's or the model's arithmetic: VF n's BAR i occupies ``[base_i + (n-1)*A_i, base_i + n*A_i)``
with ``A_i = max(size_i, System Page Size)`` (sriov-spec.md §3, §8 cases 10-15;
docs/sriov-capability-behaviour.md item 7), only VFs 1..NumVFs decode, only while VF Enable and VF
MSE are set, a 32-bit BAR never claims an address at or above 4 GiB and nothing wraps past 2**32
or 2**64; PF BARs decode while the PF's Command Memory Space Enable is set and win over VF BARs,
and earlier BARs win over later ones (docs/endpoint-behaviour.md §5). Through the endpoint, every
result is also compared with the reference model (``EndpointModel.decode_memory``), whose state
is programmed by the same configuration writes (compared by a ``Scoreboard``).

The decoder's state inputs are driven directly with values the SR-IOV capability can produce:
bases aligned to their aperture, apertures ``max(BAR size, a supported page size)``.

Also here: the result channel's latency and backpressure (requests back to back, ``res.ready``
held low for random stretches), for both latencies, on the decoder and on the endpoint.
Linux-driven scenarios, isolation and scripts are in ``tests/test_memory.py``.
"""

import bisect
import random
import zlib
from collections import namedtuple
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from sriov_ep.caps.sriov import VfBarState
from sriov_ep.decode.bar import MemDecode, MemRequest, PfBarState, VfBarDecoder
from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import MANDATORY_PAGE_SIZES, Bar, EndpointParams, load_params
from sriov_tb.host import EndpointDriver, ModelEndpointPort, RootPort, Scoreboard
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TOP32, TOP64 = 1 << 32, 1 << 64
MISS = (False, 0, 0, 0)
LATENCIES = (1, 2)
#: Cycles the tests wait after changing the decoder's state inputs directly (a configuration
#: write that changes them takes CONFIG_LATENCY = 7 cycles to complete).
STATE_SETTLE = 3

# SR-IOV capability registers (offsets within the capability, sriov-spec.md §1).
SRIOV_CTRL, SRIOV_NUM_VF, SRIOV_SYS_PGSIZE, SRIOV_BAR = 0x08, 0x10, 0x20, 0x24
CTRL_VFE, CTRL_MSE = 0x01, 0x08
PCI_COMMAND, PCI_COMMAND_MEMORY = 0x04, 0x02


# -- Configurations ------------------------------------------------------------------------------


@cache
def config(name):
    """The endpoint parameters of configuration ``name``."""
    if name in ("igb-82576", "nvme", "many-vfs"):
        return load_params(EXAMPLES / f"{name}.toml")
    if name == "bar32":
        # Only 32-bit BARs; page sizes up to 4 GiB (bit 20) and 8 TiB (bit 31, the largest).
        return EndpointParams(
            total_vfs=16, supported_page_sizes=MANDATORY_PAGE_SIZES | 1 << 20 | 1 << 31,
            pf_bars=(Bar(0, 4 * KiB), Bar(2, 1 * MiB)),
            vf_bars=(Bar(0, 4 * KiB), Bar(1, 16 * KiB, prefetchable=True), Bar(4, 1 * MiB)))
    if name == "huge":
        # The largest aperture a VF BAR can have: 2**63 bytes per VF, two VFs fill 2**64.
        return EndpointParams(
            total_vfs=2, supported_page_sizes=MANDATORY_PAGE_SIZES | 1 << 31,
            pf_bars=(Bar(0, 16 * KiB, is_64bit=True),),
            vf_bars=(Bar(0, 1 << 63, is_64bit=True, prefetchable=True),))
    if name == "all-pages":
        # Every page size 4 KiB .. 8 TiB supported: 32 possible apertures per BAR.
        return EndpointParams(
            total_vfs=1000, supported_page_sizes=0xFFFF_FFFF,
            pf_bars=(Bar(0, 64 * KiB),),
            vf_bars=(Bar(0, 4 * KiB, is_64bit=True), Bar(2, 4 * KiB)))
    raise KeyError(name)


@dataclass(frozen=True)
class State:
    """What the decoder sees: the SR-IOV and PF state, with one base per BAR (in the order of
    ``params.vf_bars`` / ``params.pf_bars``)."""
    name:      str
    page_bit:  int          # System Page Size = 1 << page_bit, i.e. 2**(12 + page_bit) bytes
    num_vfs:   int
    vf_bases:  tuple
    pf_bases:  tuple
    vf_enable: bool = True
    vf_mse:    bool = True
    pf_mse:    bool = True

    def describe(self):
        return (f"{self.name} (page 2**{12 + self.page_bit}, NumVFs {self.num_vfs}, VFE "
                f"{int(self.vf_enable)}, VF MSE {int(self.vf_mse)}, PF MSE {int(self.pf_mse)}, "
                f"VF bases {', '.join(hex(b) for b in self.vf_bases)}, PF bases "
                f"{', '.join(hex(b) for b in self.pf_bases)})")


IGB_LINUX = dict(vf_bases=(0x1_0000_0000, 0x1_0002_0000),
                 pf_bases=(0x8000_0000, 0x8002_0000, 0x8004_0000))

STATES = {
    # PF BAR0/1 128 KiB, BAR3 16 KiB (32-bit); VF BAR0 and BAR3 16 KiB (64-bit); TotalVFs 8.
    "igb-82576": [
        # Where LinuxHost puts everything (examples/scripts/igb-memory.script).
        State("linux", 0, 4, **IGB_LINUX),
        # 64 KiB pages; VF BAR0 runs across 4 GiB (VFs 1-4 below, 5-8 above).
        State("64k-across-4g", 4, 8, vf_bases=(0xFFFC_0000, 0x7_FFF8_0000),
              pf_bases=(0xFFE0_0000, 0xFFE2_0000, 0xFFE4_0000)),
        # The largest supported page (4 MiB); VF BAR0 3 apertures below 2**64: VFs 4-8 would lie
        # past the top and claim nothing, not even wrapped round to address 0.
        State("4m-top", 10, 8, vf_bases=(TOP64 - 3 * 4 * MiB, TOP64 - 16 * 4 * MiB),
              pf_bases=(0x8000_0000, 0x8002_0000, 0x8004_0000)),
        State("numvfs-0", 0, 0, **IGB_LINUX),
        State("vf-mse-off", 0, 8, vf_mse=False, **IGB_LINUX),
        State("vf-enable-off", 0, 8, vf_enable=False, **IGB_LINUX),
        State("pf-mse-off", 0, 2, pf_mse=False, **IGB_LINUX),
    ],
    # PF BAR0 16 KiB 64-bit; VF BAR0 16 KiB 64-bit; TotalVFs 127.
    "nvme": [
        State("above-4g", 0, 127, vf_bases=(0x12_3400_0000,), pf_bases=(0xFFFF_C000,)),
        State("256k-partial", 6, 100, vf_bases=(1 << 47,), pf_bases=(TOP64 - 16 * KiB,)),
        State("1m-top", 8, 127, vf_bases=(TOP64 - 50 * MiB,), pf_bases=(0x4000,)),
    ],
    # PF BAR0 1 MiB 64-bit, BAR4 64 KiB 32-bit; VF BAR0 64 KiB 64-bit, VF BAR2 4 KiB 32-bit;
    # TotalVFs 4000; page sizes 4 KiB .. 4 MiB.
    "many-vfs": [
        State("linux", 0, 4000, vf_bases=(0x1_0000_0000, 0x9000_0000),
              pf_bases=(0x8000_0000, 0x8010_0000)),
        # 2 MiB pages: the 32-bit VF BAR2 from 2 GiB holds VFs 1-1024 below 4 GiB, VFs 1025-3000
        # would lie above; the 64-bit VF BAR0 holds 1000 apertures below 2**64.
        State("2m-past-tops", 9, 3000, vf_bases=(TOP64 - 1000 * 2 * MiB, 0x8000_0000),
              pf_bases=(0x7000_0000, 0x7010_0000)),
        # 16 KiB pages (not a mandatory size): BAR2's aperture grows to 16 KiB, BAR0's stays.
        State("16k-partial", 2, 1234, vf_bases=(0x100_0000_0000, 0xC000_0000),
              pf_bases=(0xFF_FFF0_0000, 0xFFFF_0000)),
    ],
    # PF BAR0 4 KiB, BAR2 1 MiB; VF BAR0 4 KiB, BAR1 16 KiB, BAR4 1 MiB; all 32-bit; 16 VFs.
    "bar32": [
        State("low", 0, 16, vf_bases=(0x4000_0000, 0x4010_0000, 0x5000_0000),
              pf_bases=(0x3000_0000, 0x3010_0000)),
        # VF BAR0's 8 KiB apertures from 4 GiB - 40 KiB: VFs 1-5 fit below 4 GiB.
        State("8k-past-4g", 1, 16, vf_bases=(TOP32 - 5 * 8 * KiB, 0x4010_0000, 0x5000_0000),
              pf_bases=(0x3000_0000, 0x3010_0000)),
        # VF BAR4 from 4 GiB - 3 MiB (VFs 1-3 fit); VF BAR1's 16 apertures end where it starts,
        # PF BAR0 ends where VF BAR1 starts: adjacent ranges.
        State("1m-past-4g", 0, 16, vf_bases=(0x4000_0000, TOP32 - 3 * MiB - 256 * KiB,
                                             TOP32 - 3 * MiB),
              pf_bases=(TOP32 - 3 * MiB - 260 * KiB, TOP32 - 5 * MiB)),
        # 4 GiB pages: every VF BAR's address bits are read-only 0, so all three bases are 0 and
        # VF 1 of each covers all of 0..4 GiB: VF BAR0 wins, the PF BARs win over it.
        State("4g-page", 20, 16, vf_bases=(0, 0, 0), pf_bases=(0x1000, 0x10_0000)),
        # 8 TiB pages (the largest page size): the same, PF decoding off.
        State("8t-page", 31, 5, vf_bases=(0, 0, 0), pf_bases=(0x1000, 0x10_0000), pf_mse=False),
    ],
    # PF BAR0 16 KiB 64-bit; VF BAR0 2**63 bytes 64-bit; TotalVFs 2.
    "huge": [
        # VF 1 covers the lower half of the address space except the PF BAR, VF 2 the upper half.
        State("at-0", 0, 2, vf_bases=(0,), pf_bases=(0x1234_4000,)),
        # 8 TiB pages (aperture still 2**63): VF 1 is the upper half, VF 2 would be past 2**64.
        State("at-2^63", 31, 2, vf_bases=(1 << 63,), pf_bases=(TOP64 - 16 * KiB,)),
        State("one-vf", 10, 1, vf_bases=(0,), pf_bases=(1 << 63,), pf_mse=False),
    ],
    # PF BAR0 64 KiB; VF BAR0 4 KiB 64-bit, VF BAR2 4 KiB 32-bit; TotalVFs 1000; all page sizes.
    "all-pages": [
        # 8 TiB apertures: five fit below 2**64; the 32-bit VF BAR2 (base 0) is VF 1 over 4 GiB.
        State("8t-page", 31, 1000, vf_bases=(TOP64 - 5 * (1 << 43), 0), pf_bases=(0x8000_0000,)),
        # 2 GiB apertures: the 32-bit VF BAR2 from 2 GiB holds only VF 1.
        State("2g-page", 19, 1000, vf_bases=(1 << 40, 0x8000_0000), pf_bases=(0x1_0000,)),
        State("128k-page", 5, 600, vf_bases=(0x1_0000_0000, 0x8000_0000),
              pf_bases=(0x7FFF_0000,)),
    ],
}

CONFIG_NAMES = list(STATES)
#: Configurations small enough to visit every aperture edge in the default run.
FULL_EDGES = {"igb-82576", "nvme", "bar32", "huge"}


def aperture(bar, page_bit):
    """Bytes per VF: max(BAR size, System Page Size) (capability behaviour item 7)."""
    return max(bar.size, 1 << (12 + page_bit))


def check_state(params, state):
    """The state must be one the endpoint can be in (else the test, not the design, is wrong)."""
    assert params.supported_page_sizes >> state.page_bit & 1, state.name
    assert 0 <= state.num_vfs <= params.total_vfs, state.name
    assert len(state.vf_bases) == len(params.vf_bars), state.name
    assert len(state.pf_bases) == len(params.pf_bars), state.name
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        top = TOP64 if bar.is_64bit else TOP32
        assert 0 <= base < top and base % aperture(bar, state.page_bit) == 0, (state.name, bar)
    for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
        top = TOP64 if bar.is_64bit else TOP32
        assert 0 <= base < top and base % bar.size == 0, (state.name, bar)


def test_states_are_reachable():
    """Every state used below is one the capability can produce: page sizes supported, bases
    aligned to their aperture and within their BAR's width, and every aperture_log2 one of
    max(size, supported page size)."""
    for name, states in STATES.items():
        params = config(name)
        for state in states:
            check_state(params, state)


# -- The expectation: the spec's formula, written out ---------------------------------------------


def expected(params, state, addr):
    """``(claimed, function, bar, offset)`` for ``addr`` from the spec formulas."""
    if state.pf_mse:
        for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
            if base <= addr < base + bar.size:
                return (True, 0, bar.index, addr - base)
    if state.vf_enable and state.vf_mse:
        for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
            if not bar.is_64bit and addr >= TOP32:
                continue
            size = aperture(bar, state.page_bit)
            # starts[n - 1] = base + (n - 1) * A: where VF n's range starts, n = 1..NumVFs.
            starts = range(base, base + state.num_vfs * size, size)
            n = bisect.bisect_right(starts, addr)
            if n and addr < starts[n - 1] + size:
                return (True, n, bar.index, addr - starts[n - 1])
    return MISS


# -- Addresses -------------------------------------------------------------------------------------


def edge_ks(params, state, rng):
    """Aperture indices k whose edges base + k*A get the closer look: the first ones, those
    around NumVFs and TotalVFs, and a random sample."""
    total, num = params.total_vfs, state.num_vfs
    ks = {0, 1, 2, 3, num - 1, num, num + 1, total - 1, total, total + 1}
    ks |= set(rng.sample(range(total + 2), min(40, total + 2)))
    return sorted(k for k in ks if 0 <= k <= total + 1)


def edge_addresses(params, state, rng, *, every):
    """The boundaries of every BAR in ``state``: base - 1 and base, the aperture edges
    base + k*A - 1 and base + k*A (so NumVFs*A, TotalVFs*A and the last byte; every k from 0 to
    TotalVFs + 1 when ``every``, else a sample), and around a sample of them the byte after, the
    4 GiB aliases of 32-bit BARs and the addresses a range wrapped past 2**32 or 2**64 would
    reach; the 4 GiB edges and the top of the address space."""
    out = {0, 1, TOP32 - 1, TOP32, TOP32 + 1, TOP64 - 2, TOP64 - 1}
    for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
        for edge in (base, base + bar.size):
            out |= {edge - 1, edge, edge + 1}
        out |= {base + bar.size // 2, base + TOP32, base + bar.size - 1 + TOP32}
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        size = aperture(bar, state.page_bit)
        if every:
            for k in range(params.total_vfs + 2):
                out |= {base + k * size - 1, base + k * size}
        for k in edge_ks(params, state, rng):
            edge = base + k * size
            out |= {edge - 1, edge, edge + 1, edge % TOP64, (edge - 1) % TOP64}
            if not bar.is_64bit:
                out |= {edge % TOP32, (edge - 1) % TOP32, edge + TOP32, edge - 1 + TOP32}
        for n in (1, state.num_vfs, params.total_vfs):
            out.add(base + (n - 1) * size + size // 2)
    return sorted(a for a in out if 0 <= a < TOP64)


def random_addresses(params, state, rng, *, per_aperture=2, most=150):
    """Random addresses in and around every VF aperture (up to ``most`` apertures per BAR,
    always including the first, those near NumVFs and the last), in every PF BAR, and anywhere."""
    out = []
    total, num = params.total_vfs, state.num_vfs
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        size = aperture(bar, state.page_bit)
        ns = range(1, total + 2)
        if len(ns) > most:
            ns = sorted({1, 2, max(1, num - 1), num + 1, total, total + 1}
                        | set(rng.sample(ns, most)))
        for n in ns:
            start = base + (n - 1) * size
            near = min(size, 256)
            for _ in range(per_aperture):
                out.append(start + rng.randrange(size))
            out += [start + rng.randrange(near), start + size - 1 - rng.randrange(near),
                    start - 1 - rng.randrange(near)]
    for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
        out += [base + rng.randrange(bar.size) for _ in range(8)]
    out += [rng.randrange(TOP64) for _ in range(40)] + [rng.randrange(TOP32) for _ in range(40)]
    return [a for a in out if 0 <= a < TOP64]


def page_sweep(params, state, *, step=0x1000, margin=4):
    """Every ``step`` (and the byte before it) across each VF BAR's whole TotalVFs space,
    ``margin`` steps either side."""
    out = set()
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        end = base + params.total_vfs * aperture(bar, state.page_bit)
        for a in range(base - margin * step, end + margin * step + 1, step):
            out |= {a - 1, a}
    return sorted(a for a in out if 0 <= a < TOP64)


#: One batch of decodes: the state, the addresses, the design's results, the model's results
#: (through the endpoint only), and the stream statistics (cycles a result was held, the cycles
#: that accepted a request).
Run = namedtuple("Run", "state addresses results model held_cycles accept_cycles")


def seed_for(*words):
    return zlib.crc32(" ".join(map(str, words)).encode())


# -- A pipelined driver of a decode stream ---------------------------------------------------------


class DecodeStream:
    """Push memory requests into a decode stream back to back and collect the results.

    Works on ``VfBarDecoder.req``/``res`` and on ``SriovEndpoint.mem_req``/``mem_res``. ``valid``
    stays high while requests remain (a new payload in the cycle after each acceptance) unless
    ``offer(cycle)`` says to leave a gap; ``ready(cycle)`` gives ``res.ready`` (default: always).
    At every clock edge it checks the result channel's rules: a result not taken stays valid and
    unchanged at the next edge, and no request is accepted while a result is held (nor refused
    while none is).
    After the run: one result per request, in order (address, write and tag), each ``latency``
    cycles after its acceptance when ``res.ready`` was high in between, never sooner.
    """

    def __init__(self, ctx, req, res, latency):
        self.ctx      = ctx
        self.req      = req
        self.res      = res
        self.latency  = latency
        self.req_bits = req.payload.as_value()
        self.res_bits = res.payload.as_value()
        req_layout = req.payload.shape()
        self.tag_mask = (1 << req_layout["tag"].width) - 1
        self._req_shift = {name: field.offset for name, field in req_layout}
        self._res_fields = [(name, field.offset, (1 << field.width) - 1)
                            for name, field in res.payload.shape()]
        #: Statistics of the last run.
        self.held_cycles = 0
        self.accept_cycles = []

    def unpack(self, bits):
        return {name: (bits >> offset) & mask for name, offset, mask in self._res_fields}

    async def run(self, addresses, *, ready=None, offer=None, timeout=None):
        """Decode ``addresses`` (request k has write = k & 1 and tag = k modulo the tag range);
        return the results as ``(claimed, function, bar, offset)`` tuples, in order."""
        ctx, req, res = self.ctx, self.req, self.res
        shift = self._req_shift
        n = len(addresses)
        timeout = timeout or 50 * n + 100
        accepted, results, ready_log = [], [], []
        held, presenting, i, cycle = None, False, 0, 0
        self.held_cycles = 0
        while len(results) < n:
            if i < n and (presenting or offer is None or offer(cycle)):
                presenting = True
                ctx.set(self.req_bits, addresses[i] << shift["addr"] | (i & 1) << shift["write"]
                        | (i & self.tag_mask) << shift["tag"])
                ctx.set(req.valid, 1)
            else:
                ctx.set(req.valid, 0)
            r = 1 if ready is None else int(ready(cycle))
            ctx.set(res.ready, r)
            _, _, req_ready, res_valid, bits = \
                await ctx.tick().sample(req.ready, res.valid, self.res_bits)
            if held is not None:
                assert res_valid, f"cycle {cycle}: a result was withdrawn before it was taken"
                assert bits == held, (f"cycle {cycle}: a held result changed: "
                                      f"{self.unpack(held)} -> {self.unpack(bits)}")
            held = None
            # The pipeline moves whenever its result register is empty or being emptied: no
            # request waits while no result does.
            assert req_ready or (res_valid and not r), (f"cycle {cycle}: req.ready is low with "
                                                        f"no result held")
            if res_valid and not r:
                assert not req_ready, f"cycle {cycle}: req.ready is high while a result is held"
                held = bits
                self.held_cycles += 1
            if presenting and req_ready:
                accepted.append(cycle)
                presenting = False
                i += 1
            if res_valid and r:
                results.append((cycle, bits))
            ready_log.append(r)
            cycle += 1
            assert cycle < timeout, (f"{len(results)} of {n} results after {cycle} cycles "
                                     f"({len(accepted)} requests accepted)")
        ctx.set(req.valid, 0)
        ctx.set(res.ready, 1)
        for _ in range(self.latency + 2):
            _, _, res_valid = await ctx.tick().sample(res.valid)
            assert not res_valid, "a result came for no request"
        self.accept_cycles = accepted

        out = []
        for k, (done, bits) in enumerate(results):
            f = self.unpack(bits)
            want = (addresses[k], k & 1, k & self.tag_mask)
            got = (f["addr"], f["write"], f["tag"])
            assert got == want, (f"result {k} (cycle {done}) is for addr {got[0]:#x} write "
                                 f"{got[1]} tag {got[2]}, expected addr {want[0]:#x} write "
                                 f"{want[1]} tag {want[2]}: a result was lost, duplicated or "
                                 f"reordered")
            took = done - accepted[k]
            assert took >= self.latency, f"request {k}: result after {took} cycles"
            if all(ready_log[accepted[k] + 1:accepted[k] + self.latency + 1]):
                assert took == self.latency, (f"request {k} (addr {addresses[k]:#x}): result "
                                              f"after {took} cycles with res.ready high, not "
                                              f"{self.latency}")
            if not f["claimed"]:
                out.append(MISS)
            else:
                assert f["is_vf"] == (f["vf"] != 0), f"addr {addresses[k]:#x}: {f}"
                out.append((True, f["vf"], f["bar"], f["offset"]))
        return out


# -- Running the decoder alone and the endpoint ----------------------------------------------------


def set_decoder_state(ctx, dut, params, state):
    """Drive the decoder's state inputs (the arrays are set whole: slicing views is slow)."""
    packed = 0
    for n, (bar, base) in enumerate(zip(params.vf_bars, state.vf_bases, strict=True)):
        log2 = aperture(bar, state.page_bit).bit_length() - 1
        packed |= (base << VfBarState["base"].offset
                   | log2 << VfBarState["aperture_log2"].offset) << (n * VfBarState.size)
    if params.vf_bars:
        ctx.set(dut.vf_bars.as_value(), packed)
    if params.pf_bars:
        ctx.set(dut.pf_bars.as_value(), sum(base << (PfBarState.size * n)
                                            for n, base in enumerate(state.pf_bases)))
    ctx.set(dut.vf_enable, state.vf_enable)
    ctx.set(dut.vf_mse, state.vf_mse)
    ctx.set(dut.num_vfs, state.num_vfs)
    ctx.set(dut.pf_mse, state.pf_mse)


def run_decoder(params, latency, batches, *, name, tag_width=8, ready=None, offer=None):
    """Decode ``batches`` (``[(state, addresses)]``) on a VfBarDecoder alone; return a
    :data:`Run` per batch."""
    dut = VfBarDecoder(params, latency=latency, tag_width=tag_width)
    assert dut.latency == latency
    out = []

    def make_testbench():
        out.clear()

        async def testbench(ctx):
            stream = DecodeStream(ctx, dut.req, dut.res, latency)
            for state, addresses in batches:
                set_decoder_state(ctx, dut, params, state)
                # The state inputs change only on configuration writes, which take several
                # cycles: the decoder may register them. Leave it those cycles.
                await ctx.tick().repeat(STATE_SETTLE)
                results = await stream.run(addresses, ready=ready, offer=offer)
                out.append(Run(state, addresses, results, None, stream.held_cycles,
                               stream.accept_cycles))
        return testbench

    simulate(dut, make_testbench, name=name)
    return out


async def program(pf, params, state):
    """Put the endpoint in ``state`` with configuration writes to the PF (``pf``: its config
    space), as Linux would, reading the registers back on the way. The last two writes (PF
    Command, SR-IOV Control) switch decoding on: the caller's memory requests follow them at once,
    so the decode must follow a configuration write by the time it completes."""
    cap = params.sriov_cap_offset
    await pf.write16(cap + SRIOV_CTRL, 0)     # VF Enable 0: page size and NumVFs writable
    await pf.write32(cap + SRIOV_SYS_PGSIZE, 1 << state.page_bit)
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        reg = cap + SRIOV_BAR + 4 * bar.index
        await pf.write32(reg, base & 0xFFFF_FFF0 | bar.type_bits)
        if bar.is_64bit:
            await pf.write32(reg + 4, base >> 32)
    await pf.write16(cap + SRIOV_NUM_VF, state.num_vfs)
    for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
        reg = 0x10 + 4 * bar.index
        await pf.write32(reg, base & 0xFFFF_FFF0 | bar.type_bits)
        if bar.is_64bit:
            await pf.write32(reg + 4, base >> 32)

    # The registers hold what was meant (a wrong state would make the test meaningless).
    assert await pf.read32(cap + SRIOV_SYS_PGSIZE) == 1 << state.page_bit
    assert await pf.read16(cap + SRIOV_NUM_VF) == state.num_vfs
    for bar, base in zip(params.vf_bars, state.vf_bases, strict=True):
        reg = cap + SRIOV_BAR + 4 * bar.index
        assert await pf.read32(reg) == base & 0xFFFF_FFF0 | bar.type_bits, state.name
        if bar.is_64bit:
            assert await pf.read32(reg + 4) == base >> 32, state.name
    for bar, base in zip(params.pf_bars, state.pf_bases, strict=True):
        reg = 0x10 + 4 * bar.index
        assert await pf.read32(reg) == base & 0xFFFF_FFF0 | bar.type_bits, state.name
        if bar.is_64bit:
            assert await pf.read32(reg + 4) == base >> 32, state.name

    await pf.write16(PCI_COMMAND, PCI_COMMAND_MEMORY if state.pf_mse else 0)
    await pf.write16(cap + SRIOV_CTRL, (CTRL_VFE if state.vf_enable else 0)
                     | (CTRL_MSE if state.vf_mse else 0))


def run_endpoint(params, latency, batches, *, name, ready=None, offer=None):
    """Program each state of ``batches`` into a SriovEndpoint through config writes (checked
    against the model by a Scoreboard), decode its addresses on ``mem_req``/``mem_res``; return
    a :data:`Run` per batch.

    MSI-X is left out: its tables are served by the endpoint, off this pipeline (they are
    tested in test_endpoint_caps.py); every other request goes through at one per cycle,
    ``mem_decode_latency`` cycles after acceptance."""
    params = params.replace(msix=None, vf_msix=None)
    dut = SriovEndpoint(params, mem_latency=latency)
    out = []

    def make_testbench():
        out.clear()

        async def testbench(ctx):
            model = EndpointModel(params)
            board = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model))
            pf = RootPort(board, secondary_bus=params.pf_rid >> 8).function(params.pf_rid)
            stream = DecodeStream(ctx, dut.mem_req, dut.mem_res, dut.mem_decode_latency)
            for state, addresses in batches:
                await program(pf, params, state)
                results = await stream.run(addresses, ready=ready, offer=offer)
                out.append(Run(state, addresses, results,
                               [model.decode_memory(a) for a in addresses],
                               stream.held_cycles, stream.accept_cycles))
        return testbench

    simulate(dut, make_testbench, name=name)
    return out


def show(result):
    if not result[0]:
        return "not claimed"
    who = f"VF{result[1]}" if result[1] else "PF"
    return f"{who} BAR{result[2]} + {result[3]:#x}"


def check(params, runs, where, *, seed=None):
    """Compare every result (and model result, if any) with the spec expectation."""
    problems = []
    for run in runs:
        assert len(run.results) == len(run.addresses)
        for k, (addr, got) in enumerate(zip(run.addresses, run.results, strict=True)):
            want = expected(params, run.state, addr)
            if got != want:
                problems.append(f"{run.state.name}: {addr:#018x}: design {show(got)}, "
                                f"expected {show(want)}")
            if run.model is not None and run.model[k] != want:
                problems.append(f"{run.state.name}: {addr:#018x}: model {show(run.model[k])}, "
                                f"expected {show(want)}")
    if problems:
        states = "\n".join(f"  {run.state.describe()}" for run in runs)
        seed_note = f" (seed {seed})" if seed is not None else ""
        raise AssertionError(f"{where}{seed_note}: {len(problems)} wrong decodes:\n  "
                             + "\n  ".join(problems[:20]) + f"\nstates:\n{states}")


def claimed_kinds(runs):
    """Which (function is VF, bar) pairs and misses the runs produced: proof the addresses hit
    something."""
    seen = set()
    for run in runs:
        for result in run.results:
            seen.add("miss" if not result[0] else ("vf" if result[1] else "pf", result[2]))
    return seen


# -- 1. The decoder alone ------------------------------------------------------------------------


def test_decoder_parameters():
    params = config("igb-82576")
    assert VfBarDecoder(params).latency == 1
    assert VfBarDecoder(params, latency=2).latency == 2
    with pytest.raises(ValueError, match="latency: must be 1 or 2"):
        VfBarDecoder(params, latency=3)
    with pytest.raises(ValueError, match="tag_width"):
        VfBarDecoder(params, tag_width=65)
    with pytest.raises(TypeError, match="EndpointParams"):
        VfBarDecoder(object())
    # Layouts: a request is addr, write, tag, and a write's QWORD data and byte enables; a
    # result carries them back.
    assert MemRequest(5).size == 64 + 1 + 5 + 64 + 8
    fields = dict(MemDecode(params, 5))
    assert fields["tag"].width == 5 and fields["addr"].width == 64
    assert fields["data"].width == 64 and fields["be"].width == 8
    assert fields["internal"].width == 1
    assert fields["offset"].width == 64 and fields["vf"].width == 4     # VF numbers 0..8


def decoder_params():
    for name in CONFIG_NAMES:
        for latency in LATENCIES:
            yield pytest.param(name, latency, id=f"{name}-lat{latency}")


@pytest.mark.parametrize("name,latency", list(decoder_params()))
def test_decoder_edges(name, latency):
    """Every boundary of every BAR, in every state of the configuration."""
    params = config(name)
    seed = seed_for("edges", name)
    rng = random.Random(seed)
    batches = [(s, edge_addresses(params, s, rng, every=name in FULL_EDGES))
               for s in STATES[name]]
    runs = run_decoder(params, latency, batches, name=f"bar-decoder-edges-{name}-{latency}")
    check(params, runs, f"VfBarDecoder(latency={latency}) {name}", seed=seed)
    assert {"miss", ("vf", params.vf_bars[0].index)} <= claimed_kinds(runs)


@pytest.mark.parametrize("name,latency", list(decoder_params()))
def test_decoder_random(name, latency):
    """Random addresses in and around every aperture."""
    params = config(name)
    seed = seed_for("random", name)
    rng = random.Random(seed)
    batches = [(s, random_addresses(params, s, rng)) for s in STATES[name]]
    runs = run_decoder(params, latency, batches, name=f"bar-decoder-random-{name}-{latency}")
    check(params, runs, f"VfBarDecoder(latency={latency}) {name}", seed=seed)


def sweep_params():
    for name, state, latency, fast in (
            ("igb-82576", "linux", 1, True), ("igb-82576", "linux", 2, True),
            ("igb-82576", "64k-across-4g", 2, True), ("nvme", "above-4g", 1, True),
            ("nvme", "256k-partial", 2, False), ("bar32", "low", 1, False),
            ("bar32", "1m-past-4g", 2, False)):
        yield pytest.param(name, state, latency, id=f"{name}-{state}-lat{latency}",
                           marks=() if fast else (pytest.mark.slow,))


def state_named(name, state_name):
    return next(s for s in STATES[name] if s.name == state_name)


@pytest.mark.parametrize("name,state_name,latency", list(sweep_params()))
def test_decoder_page_sweep(name, state_name, latency):
    """Every 4 KiB page (first and last byte) across a VF BAR's whole TotalVFs space and a
    little beyond."""
    params = config(name)
    state = state_named(name, state_name)
    runs = run_decoder(params, latency, [(state, page_sweep(params, state))],
                       name=f"bar-decoder-sweep-{name}-{state_name}-{latency}")
    check(params, runs, f"VfBarDecoder(latency={latency}) {name} page sweep")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["many-vfs", "all-pages"])
def test_decoder_every_edge_large(name):
    """Every aperture edge of the large configurations (the default run samples them); the
    states alternate between the two latencies."""
    params = config(name)
    rng = random.Random(0)
    for k, state in enumerate(STATES[name]):
        latency = LATENCIES[k % 2]
        runs = run_decoder(params, latency, [(state, edge_addresses(params, state, rng,
                                                                    every=True))],
                           name=f"bar-decoder-every-{name}-{state.name}")
        check(params, runs, f"VfBarDecoder(latency={latency}) {name}")


# -- 2. Through the endpoint, against the spec and the reference model ----------------------------


def endpoint_params():
    for name in CONFIG_NAMES:
        for latency in LATENCIES:
            # many-vfs clears 4000 VF states whenever VF Enable falls: one latency by default.
            slow = name == "many-vfs" and latency == 2
            yield pytest.param(name, latency, id=f"{name}-lat{latency}",
                               marks=(pytest.mark.slow,) if slow else ())


@pytest.mark.parametrize("name,latency", list(endpoint_params()))
def test_endpoint_edges_and_random(name, latency):
    """The same boundaries plus random addresses through SriovEndpoint, programmed by config
    writes; design, model and spec expectation must agree."""
    params = config(name)
    seed = seed_for("endpoint", name)
    rng = random.Random(seed)
    batches = [(s, edge_addresses(params, s, rng, every=name in FULL_EDGES)
                + random_addresses(params, s, rng, per_aperture=1, most=60))
               for s in STATES[name]]
    runs = run_endpoint(params, latency, batches, name=f"endpoint-decode-{name}-{latency}")
    check(params, runs, f"SriovEndpoint(mem_latency={latency}) {name}", seed=seed)


@pytest.mark.parametrize("name,state_name", [
    pytest.param("nvme", "above-4g", id="nvme-above-4g"),
    pytest.param("bar32", "1m-past-4g", id="bar32-1m-past-4g", marks=pytest.mark.slow)])
def test_endpoint_page_sweep(name, state_name):
    """Every 4 KiB page across the VF BAR space through the endpoint (design, model, spec)."""
    params = config(name)
    state = state_named(name, state_name)
    runs = run_endpoint(params, 1, [(state, page_sweep(params, state))],
                        name=f"endpoint-sweep-{name}-{state_name}")
    check(params, runs, f"SriovEndpoint {name} page sweep")


# -- 4. Latency and backpressure ----------------------------------------------------------------


def random_levels(seed, *, longest=12, high=0.5):
    """A 0/1 pattern of random stretches (1..``longest`` cycles), as a function of the cycle."""
    rng = random.Random(seed)
    pattern = []

    def level(cycle):
        while len(pattern) <= cycle:
            pattern.extend([rng.random() < high] * rng.randint(1, longest))
        return pattern[cycle]
    return level


@pytest.mark.parametrize("latency", LATENCIES)
def test_decoder_latency_full_throughput(latency):
    """With res.ready high: one request accepted every cycle, each result exactly ``latency``
    cycles after its acceptance edge (VfBarDecoder.latency)."""
    params = config("igb-82576")
    state = state_named("igb-82576", "64k-across-4g")
    addresses = random_addresses(params, state, random.Random(1))
    runs = run_decoder(params, latency, [(state, addresses)], name=f"bar-decoder-lat-{latency}")
    run = runs[0]
    first = run.accept_cycles[0]
    assert run.accept_cycles == list(range(first, first + len(addresses)))
    assert run.held_cycles == 0
    check(params, runs, f"latency {latency}")


BACKPRESSURE_SEEDS = (11, 12, 13)


@pytest.mark.parametrize("latency", LATENCIES)
@pytest.mark.parametrize("seed", BACKPRESSURE_SEEDS)
@pytest.mark.parametrize("gaps", [False, True], ids=["back-to-back", "with-gaps"])
def test_decoder_backpressure(latency, seed, gaps):
    """res.ready low for random stretches while requests stream in: no result lost, duplicated
    or reordered, results stable while held, req.ready low meanwhile (checked every cycle by
    DecodeStream), decodes still right. A 3-bit tag wraps often; the address tells requests
    apart."""
    params = config("igb-82576")
    state = state_named("igb-82576", "64k-across-4g")
    addresses = random_addresses(params, state, random.Random(seed))[:600]
    runs = run_decoder(params, latency, [(state, addresses)], tag_width=3,
                       ready=random_levels(seed), offer=random_levels(~seed) if gaps else None,
                       name=f"bar-decoder-backpressure-{latency}-{seed}")
    assert runs[0].held_cycles > 50, "the test held nothing back"
    check(params, runs, f"backpressure latency {latency}", seed=seed)


@pytest.mark.parametrize("latency", LATENCIES)
def test_endpoint_backpressure(latency):
    """The same through SriovEndpoint's mem_req/mem_res, checked against the model too."""
    params = config("nvme")
    state = state_named("nvme", "256k-partial")
    seed = 21 + latency
    addresses = random_addresses(params, state, random.Random(seed), per_aperture=1)[:500]
    runs = run_endpoint(params, latency, [(state, addresses)], ready=random_levels(seed),
                        name=f"endpoint-backpressure-{latency}")
    check(params, runs, f"endpoint backpressure latency {latency}", seed=seed)


@pytest.mark.parametrize("latency", LATENCIES)
def test_decoder_idle_after_reset(latency):
    """No result appears without a request, whatever the state inputs say."""
    params = config("igb-82576")
    dut = VfBarDecoder(params, latency=latency)

    async def testbench(ctx):
        set_decoder_state(ctx, dut, params, state_named("igb-82576", "linux"))
        ctx.set(dut.req.payload.addr, 0x1_0000_0000)     # valid stays low
        ctx.set(dut.res.ready, 0)
        for _ in range(8):
            _, _, valid, ready = await ctx.tick().sample(dut.res.valid, dut.req.ready)
            assert not valid and ready

    simulate(dut, lambda: testbench, name=f"bar-decoder-idle-{latency}")
