"""A cocotb bench of your own on the exported Verilog (README: "Your own cocotb bench").

``run.py`` next to this file builds ``sriov_ep_top`` for ``examples/igb-82576.toml`` with
Verilator and runs the tests below under cocotb: ``python examples/cocotb_bench/run.py``.
The drivers (:mod:`sriov_tb.cocotb_bench`) pack and unpack the exported ports; the Linux host
model, the root port, the scoreboard and the reference model are the ones the Amaranth-simulator
benches use (``examples/amaranth_bench.py``).
"""

from pathlib import Path

import cocotb

from sriov_ep import load_params
from sriov_tb.cocotb_bench import CocotbConfigDriver, reset, start_clock
from sriov_tb.host import LinuxHost, ModelEndpointPort, RootPort, Scoreboard
from sriov_tb.model import EndpointModel

# cocotb imports this module with its own working directory (the test folder the runner
# names): find the configuration from this file, not from the working directory.
CONFIG = Path(__file__).resolve().parent.parent / "igb-82576.toml"


@cocotb.test()
async def enable_four_vfs(dut):                 # dut: sriov_ep_top from `sriov-ep build`
    params = load_params(CONFIG)
    start_clock(dut)
    await reset(dut)
    root = RootPort(CocotbConfigDriver(dut), secondary_bus=params.pf_rid >> 8)
    host = LinuxHost(root, params.pf_rid)
    vfs = await host.enable(4)                  # enumerate, sriov_init, assign BARs, enable
    assert await root.function(vfs[0]).read32(0x00) == 0xFFFF_FFFF


@cocotb.test()
async def every_completion_checked(dut):
    """The same host on a :class:`~sriov_tb.host.Scoreboard`: every configuration request
    goes to the design and to the reference model, and their completions must match."""
    params = load_params(CONFIG)
    start_clock(dut)
    await reset(dut)
    board = Scoreboard(CocotbConfigDriver(dut), ModelEndpointPort(EndpointModel(params)))
    root = RootPort(board, secondary_bus=params.pf_rid >> 8)
    host = LinuxHost(root, params.pf_rid)
    vfs = await host.enable(params.initial_vfs)
    for rid in vfs:
        await host.walk_vf(rid)                 # header, capability list, PCIe capability
    await host.flr(vfs[1])
    assert await root.function(vfs[1]).read16(0x04) == 0    # FLR cleared its Bus Master Enable
    await host.disable()
    assert await root.function(vfs[0]).read32(0x00) == 0xFFFF_FFFF      # UR: no VF any more
    dut._log.info("%d completions matched the reference model", board.compared)
