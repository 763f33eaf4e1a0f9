# amaranth: UnusedElaboratable=no
"""VfStateMemory: both ports against a dictionary, with reads colliding with writes.

The memory's contract (its docstring): a read at ``addr`` in cycle t answers in cycle t + 2 with
the entry as it was before any write in cycle t; writes come at most every other cycle. Each
query port (here ``bme`` and ``pm``) is built from two copies written a cycle apart, so the
collisions are the interesting part: every read here is issued in a cycle that writes, the
cycle after, or neither, at the same address or another.
"""

import random

import pytest
from amaranth.lib import data

from sriov_ep.params import Bar, EndpointParams, MsixParams, PmParams
from sriov_ep.vf_state import VfStateMemory, vf_state_layout
from sriov_tb.sim import simulate

#: An entry of four bits: bit 0 read by the ``bme`` query, bits 2:1 by the ``pm`` query.
LAYOUT = data.StructLayout({"bme": 1, "ps": 2, "other": 1})
QUERIES = {"bme": ("bme",), "pm": ("ps",)}


def _run(depth, cycles, seed, hot):
    """Random traffic; ``hot`` addresses take most reads and writes so that they collide."""
    rng = random.Random(seed)
    dut = VfStateMemory(depth, LAYOUT, QUERIES)
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
            w_data = rng.randrange(16)
            rw_addr = w_addr if write or rng.random() < 0.5 else pick()
            q_addr = rng.choice((w_addr, rw_addr, pick()))
            p_addr = rng.choice((w_addr, rw_addr, pick()))
            ctx.set(dut.rw.addr, rw_addr)
            ctx.set(dut.rw.w_data.as_value(), w_data)
            ctx.set(dut.rw.w_en, write)
            ctx.set(dut.bme.addr, q_addr)
            ctx.set(dut.pm.addr, p_addr)
            # Before this cycle's write, as the contract says.
            pending.append((cycle + 2, "rw", rw_addr, shadow.get(rw_addr, 0)))
            pending.append((cycle + 2, "bme", q_addr, shadow.get(q_addr, 0) & 1))
            pending.append((cycle + 2, "pm", p_addr, shadow.get(p_addr, 0) >> 1 & 3))
            await ctx.tick()
            if write:
                shadow[rw_addr] = w_data
                last_write = cycle
            for due, port, addr, want in [p for p in pending if p[0] == cycle + 1]:
                got = (ctx.get(dut.rw.r_data.as_value()) if port == "rw"
                       else ctx.get(getattr(dut, port).data))
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
    """The entry holds every per-VF field of the VF chain, named structure_register_field."""
    params = EndpointParams(
        vf_bars=(Bar(0, 0x4000, True),), vf_pm=PmParams(),
        vf_msix=MsixParams(vectors=3, table_bar=0, table_offset=0, pba_bar=0,
                           pba_offset=0x2000))
    layout = vf_state_layout(params)
    assert {name: field.width for name, field in layout} == {
        "header_command_bus_master_enable": 1,
        "pcie_device_control_relaxed_ordering": 1,
        "pcie_device_control_no_snoop": 1,
        "pm_pmcsr_power_state": 2,
        "msix_message_control_table_size": 11,
        "msix_message_control_function_mask": 1,
        "msix_message_control_msix_enable": 1,
    }
    assert {name for name, _ in vf_state_layout(EndpointParams())} == {
        "header_command_bus_master_enable", "pcie_device_control_relaxed_ordering",
        "pcie_device_control_no_snoop"}


def test_query_must_name_fields_of_the_layout():
    with pytest.raises(ValueError, match="query bme: nope is not a field of the layout"):
        VfStateMemory(8, LAYOUT, {"bme": ("nope",)})
