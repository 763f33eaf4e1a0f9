"""VfStateMemory: both ports against a dictionary, with reads colliding with writes.

The memory's contract (its docstring): a read at ``addr`` in cycle t answers in cycle t + 2 with
the entry as it was before any write in cycle t; writes come at most every other cycle. The
Bus Master Enable port is built from two copies written a cycle apart, so the collisions are
the interesting part: every read here is issued in a cycle that writes, the cycle after, or
neither, at the same address or another.
"""

import random

import pytest

from sriov_ep.endpoint import VfState, VfStateMemory
from sriov_tb.sim import simulate


def _run(depth, cycles, seed, hot):
    """Random traffic; ``hot`` addresses take most reads and writes so that they collide."""
    rng = random.Random(seed)
    dut = VfStateMemory(depth)
    shadow = {}
    failures = []

    def pick():
        return rng.choice(hot) if rng.random() < 0.7 else rng.randrange(depth)

    async def testbench(ctx):
        pending = []        # (cycle due, port, addr, expected)
        last_write = -2
        for cycle in range(cycles):
            write = cycle - last_write > 1 and rng.random() < 0.4
            w_addr = pick()
            w_data = rng.randrange(8)
            rw_addr = w_addr if write or rng.random() < 0.5 else pick()
            q_addr = rng.choice((w_addr, rw_addr, pick()))
            ctx.set(dut.rw.addr, rw_addr)
            ctx.set(dut.rw.w_data.as_value(), w_data)
            ctx.set(dut.rw.w_en, write)
            ctx.set(dut.bme.addr, q_addr)
            # Before this cycle's write, as the contract says.
            pending.append((cycle + 2, "rw", rw_addr, shadow.get(rw_addr, 0)))
            pending.append((cycle + 2, "bme", q_addr, shadow.get(q_addr, 0) & 1))
            await ctx.tick()
            if write:
                shadow[rw_addr] = w_data
                last_write = cycle
            for due, port, addr, want in [p for p in pending if p[0] == cycle + 1]:
                got = (ctx.get(dut.rw.r_data.as_value()) if port == "rw"
                       else ctx.get(dut.bme.data))
                if got != want:
                    failures.append(f"cycle {due}: {port} read of {addr} gave {got}, "
                                    f"expected {want}")
            pending = [p for p in pending if p[0] > cycle + 1]
        assert not failures, f"seed {seed}:\n" + "\n".join(failures[:10])

    simulate(dut, lambda: testbench, name=f"vf-state-memory-{depth}-{seed}",
             waves_on_failure=False)


@pytest.mark.parametrize("depth", [2, 8, 256, 512, 513, 40000])
def test_reads_see_the_entry_before_the_cycles_write(depth):
    """Random reads on both ports, every cycle, against writes at most every other cycle.
    512 and 513 straddle VfStateMemory.DISTRIBUTED_DEPTH (one Bus Master Enable copy or the two
    copies X and Y); 40000 entries make three banks (two full, one partial)."""
    assert VfStateMemory.DISTRIBUTED_DEPTH == 512
    hot = sorted({0, 1, depth - 1, min(depth - 1, 16383), min(depth - 1, 16384)})
    _run(depth, cycles=1500, seed=depth, hot=hot)


def test_vf_state_layout():
    """Bit 0 of an entry is Bus Master Enable: the bme port answers with that bit."""
    layout = VfState.as_shape()
    assert layout.size == 3
    assert layout["bus_master_enable"].offset == 0
