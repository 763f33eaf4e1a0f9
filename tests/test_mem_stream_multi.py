"""Memory requests streamed back to back into a ``SriovEndpoint`` of several PFs, with
``mem_res.ready`` low for random stretches (``docs/multi-pf.md`` §7, §14).

The one-request-at-a-time drivers of the other multi-PF tests never have a second result behind a
held or slow one; here the memory path is kept full: requests offered in every cycle, results
held back by ``mem_res.ready``, MSI-X table and PBA reads (answered by the engine, several
cycles each) and, with a VF in D3hot, every VF claim waiting for a PowerState read. Checked:
one result per request, in order (address and tag echoed), a result not taken stays valid and
unchanged, each result as the reference model's ``memory`` (decode, and the QWORD of an
internal read), never sooner than ``mem_decode_latency`` and, with ``mem_res.ready`` high and
no slow request, exactly then and at one request per cycle.
"""

import random
from pathlib import Path

import pytest

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import PmParams, load_params
from sriov_tb.host import (
    EndpointDriver,
    MemAccessResult,
    ModelEndpointPort,
    Scoreboard,
    access_result,
    decode_result,
)
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).parent.parent / "examples" / "multi-pf"
KIB = 1024
SRIOV = 0x160                                     # the file's SR-IOV capability offset
PF_BAR3 = [0x8010_0000, 0x8020_0000]              # 16 KiB each: MSI-X table 0, PBA 0x2000
VF_BAR3 = [0x2_0000_0000, 0x2_0010_0000]          # 8 x 16 KiB each: the same layout per VF
PM_CAP_ID = 0x01


def params():
    """igb-82576-dual.toml with a PM capability on the VFs (so that VF claims can be slow)."""
    p = load_params(EXAMPLES / "igb-82576-dual.toml")
    return p.replace(pfs=tuple(pf.replace(vf_pm=PmParams()) for pf in p.pfs))


def vf_rid(k, n):
    """ARI: PF k's VF n at 0x0180 + k + 2(n - 1) (the file's layout comment)."""
    return 0x0180 + k + 2 * (n - 1)


def random_levels(rng, *, longest=6, high=0.5):
    """A 0/1 pattern of random stretches, as a function of the cycle."""
    pattern = []

    def level(cycle):
        while len(pattern) <= cycle:
            pattern.extend([rng.random() < high] * rng.randint(1, longest))
        return pattern[cycle]
    return level


def addresses(rng, count, *, msix=True):
    """Requests into both PFs' BAR3 and their VFs' BAR3 (the MSI-X table and PBA, if
    ``msix``, and the rest of the aperture), and outside every BAR."""
    out = []
    for _ in range(count):
        k = rng.randrange(2)
        kind = rng.randrange(4)
        base = PF_BAR3[k] if kind == 0 else VF_BAR3[k] + rng.randrange(8) * 16 * KIB
        if kind == 3:
            out.append(0x9000_0000 + 8 * rng.randrange(1 << 12))         # no BAR
        elif msix and rng.random() < 0.5:
            out.append(base + rng.choice([16 * rng.randrange(3) + 8 * rng.randrange(2), 0x2000]))
        else:
            out.append(base + 0x3000 + 8 * rng.randrange(0x100))         # past the PBA
    return out


async def stream(ctx, dut, addrs, ready):
    """Offer ``addrs`` (reads, tag = index) back to back; ``ready(cycle)`` drives
    ``mem_res.ready``. Returns ``[(payload, cycles from acceptance to transfer)]`` in order,
    the acceptance cycles, and the number of cycles a result was held back."""
    req, res = dut.mem_req, dut.mem_res
    layout = res.payload.shape()
    tag_mask = (1 << len(req.payload.tag)) - 1
    results, accepted, held = [], [], None
    i = cycle = held_cycles = last = 0
    while len(results) < len(addrs):
        if i < len(addrs):
            ctx.set(req.payload, {"addr": addrs[i], "write": 0, "tag": i & tag_mask,
                                  "data": 0, "be": 0xFF})
        ctx.set(req.valid, i < len(addrs))
        r = int(ready(cycle))
        ctx.set(res.ready, r)
        _, _, req_ready, res_valid, bits = \
            await ctx.tick().sample(req.ready, res.valid, res.payload.as_value())
        if held is not None:
            assert res_valid and bits == held, f"cycle {cycle}: a held result changed or left"
        held = bits if res_valid and not r else None
        held_cycles += held is not None
        if res_valid and r:
            assert len(results) < len(accepted), f"cycle {cycle}: a result for no request"
            results.append((layout.from_bits(bits), cycle - accepted[len(results)]))
            last = cycle
        if i < len(addrs) and req_ready:
            accepted.append(cycle)
            i += 1
        cycle += 1
        assert cycle - last < 200, \
            f"no result for 200 cycles: {len(results)} of {len(accepted)} accepted requests"
    ctx.set(req.valid, 0)
    ctx.set(res.ready, 1)
    for _ in range(dut.mem_decode_latency + 6):
        _, _, res_valid = await ctx.tick().sample(res.valid)
        assert not res_valid, "a result came for no request"
    return results, accepted, held_cycles


def check(dut, model, addrs, results, *, exact):
    tag_mask = (1 << len(dut.mem_req.payload.tag)) - 1
    latency = dut.mem_decode_latency
    for k, (addr, (res, took)) in enumerate(zip(addrs, results, strict=True)):
        decode_result(res, addr, 0, k & tag_mask, took)          # the request's echo
        got = access_result(res, False, took)
        want = MemAccessResult.of(model.memory(addr, False, 0, 0xFF))
        assert (got.key(write=False), got.pf) == (want.key(write=False), want.pf), \
            f"request {k} at {addr:#x}: design {got}, model {want}"
        assert took >= latency, f"request {k} at {addr:#x}: result after {took} cycles"
        if exact:
            assert took == latency, f"request {k} at {addr:#x}: result after {took} cycles"


@pytest.mark.parametrize("seed", [1, 2])
def test_stream_with_backpressure(seed):
    p = params()
    dut = SriovEndpoint(p)
    model = EndpointModel(p)
    done = []

    async def testbench(ctx):
        rng = random.Random(seed)
        board = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model))

        async def read(rid, offset):
            cpl = await board.config(0, rid, offset // 4, 0xF, False, 0)
            assert cpl.status == "SC"
            return cpl.data

        async def write(rid, offset, size, value):
            be = ((1 << size) - 1) << (offset % 4)
            cpl = await board.config(0, rid, offset // 4, be, True, value << (8 * (offset % 4)))
            assert (cpl.status, cpl.data) == ("SC", 0), (hex(rid), hex(offset))

        await write(0x0100, SRIOV + 0x08, 2, 0x0010)                          # ARI
        for k in range(2):
            rid = 0x0100 + k
            await write(rid, 0x1C, 4, PF_BAR3[k])
            await write(rid, 0x04, 2, 0x0006)
            await write(rid, SRIOV + 0x30, 4, VF_BAR3[k] & 0xFFFF_FFFF)
            await write(rid, SRIOV + 0x34, 4, VF_BAR3[k] >> 32)
            await write(rid, SRIOV + 0x10, 2, 8)
            await write(rid, SRIOV + 0x08, 2, 0x0019 if k == 0 else 0x0009)

        # Full rate: no MSI-X structure, every VF in D0, mem_res.ready high.
        addrs = addresses(rng, 120, msix=False)
        results, accepted, _ = await stream(ctx, dut, addrs, lambda cycle: 1)
        check(dut, model, addrs, results, exact=True)
        assert accepted == list(range(accepted[0], accepted[0] + len(addrs)))

        # Backpressure, and table and PBA reads in between.
        addrs = addresses(rng, 300)
        results, _, held = await stream(ctx, dut, addrs, random_levels(rng))
        check(dut, model, addrs, results, exact=False)
        assert held > 100, "the test held nothing back"
        assert sum(1 for res, _ in results if res.internal) > 50

        # PF 1's VF 3 in D3hot: every VF claim now reads its VF's PowerState first.
        rid = vf_rid(1, 3)
        offset = await read(rid, 0x34) & 0xFC
        while (await read(rid, offset)) & 0xFF != PM_CAP_ID:
            offset = await read(rid, offset) >> 8 & 0xFC
        await write(rid, offset + 4, 2, 0x0003)
        addrs = addresses(rng, 200) + [VF_BAR3[1] + 2 * 16 * KIB + 0x3000] * 4
        results, _, held = await stream(ctx, dut, addrs, random_levels(rng, high=0.7))
        assert held > 20, "the test held nothing back"
        check(dut, model, addrs, results, exact=False)
        assert not results[-1][0].claimed                    # VF 3 in D3hot claims nothing
        done.append(True)

    simulate(dut, lambda: testbench, name=f"test_mem_stream_multi_{seed}")
    assert done, "the testbench did not finish"
