"""Your own logic around ``SriovEndpoint``, tested in Amaranth's simulator as Linux drives it.

Run it: ``python examples/amaranth_bench.py [CONFIG]`` (default ``examples/igb-82576.toml``,
found next to this file). It prints one line per step and exits 0 when every completion the
design gave matched the references, 1 on the first mismatch (with a waveform of the failing run
under ``build/waves/``, relative to the working directory).

The parts, top to bottom, each one a pattern to copy:

* **The device** (:class:`RegisterFileDevice`): ``SriovEndpoint`` plus user logic that answers
  the memory path. Every function (the PF and each VF) has :data:`REGISTERS` 64-bit read-write
  registers at the start of its BAR0, in one memory word per function (so the logic does not
  grow with TotalVFs). Requests come in on ``mmio_req`` (the endpoint's ``MemRequest`` layout),
  go through the endpoint's BAR decoder, and are completed on ``mmio_cpl``: MSI-X table and PBA
  accesses with the data the endpoint served, the registers with their bytes, the rest of a
  claimed BAR reads 0, anything unclaimed is Unsupported Request. A VF's registers return to 0
  when the VF is reset (``vf_flr``), every VF's when VF Enable clears or the PF resets
  (``vfs_reset``), the PF's on ``pf_flr``.
* **The references**: the project's :class:`~sriov_tb.model.EndpointModel` (configuration
  space, BAR decode, MSI-X tables; written from the spec, not from the RTL) and
  :class:`RegisterFileModel`, a few lines of Python saying what the user logic must do. The
  register model follows the endpoint model's reset events, so a VF FLR or a VF Enable clear
  issued by the host reaches it without the scenario saying so.
* **The drivers and checks**: configuration requests go through
  :class:`~sriov_tb.host.Scoreboard`, which sends each to the design and to the model and
  compares the completions; :class:`CheckedMmio` does the same for memory requests.
  :class:`~sriov_tb.host.LinuxHost` on a :class:`~sriov_tb.host.RootPort` enumerates the PF,
  sizes and assigns BARs, enables the VFs and resets functions as Linux does.
* **The scenario** (:func:`scenario`): what the test does, written as a driver writer would.

This file is run by ``tests/test_examples.py``.
"""

import argparse
import sys
from pathlib import Path

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sriov_ep import load_params
from sriov_ep.decode.bar import MemRequest
from sriov_ep.endpoint import Completion, ConfigRequest, SriovEndpoint
from sriov_ep.params import format_bdf
from sriov_tb.cfg import Mismatch
from sriov_tb.host import (
    EndpointDriver,
    HostError,
    LinuxHost,
    ModelEndpointPort,
    RootPort,
    Scoreboard,
    stream_transaction,
)
from sriov_tb.linux import SriovError
from sriov_tb.model import EndpointModel
from sriov_tb.sim import simulate

#: 64-bit registers per function, at the start of BAR :data:`REGISTER_BAR`.
REGISTERS = 4
REGISTER_BAR = 0

#: The completion of a memory request: Unsupported Request, the aligned QWORD a read returns
#: (byte i at bits 8i+7:8i; 0 for writes and UR), and the request's tag.
MmioCompletion = data.StructLayout({"ur": 1, "data": 64, "tag": 8})


# -- The device ----------------------------------------------------------------------------------

class RegisterFileDevice(wiring.Component):
    """``SriovEndpoint`` with a per-function register file behind its memory path.

    Members
    -------
    cfg_req : In(stream.Signature(ConfigRequest))
    cfg_cpl : Out(stream.Signature(Completion))
        The endpoint's configuration port, unchanged.
    mmio_req : In(stream.Signature(MemRequest()))
        A memory request: ``addr``, ``write``, ``tag``, and the aligned QWORD's ``data`` and
        byte enables ``be``.
    mmio_cpl : Out(stream.Signature(MmioCompletion))
        Its completion, in request order. A completion waits while registers are being cleared
        after a reset, so it never returns a value the reset has removed.
    """

    def __init__(self, params):
        if not any(b.index == REGISTER_BAR for b in params.pf_bars) or \
                not any(b.index == REGISTER_BAR for b in params.vf_bars):
            raise ValueError(f"the configuration needs a PF BAR{REGISTER_BAR} and a VF "
                             f"BAR{REGISTER_BAR} for the registers")
        self.params = params
        self.endpoint = SriovEndpoint(params)
        super().__init__({
            "cfg_req":  In(stream.Signature(ConfigRequest)),
            "cfg_cpl":  Out(stream.Signature(Completion)),
            "mmio_req": In(stream.Signature(MemRequest())),
            "mmio_cpl": Out(stream.Signature(MmioCompletion)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.endpoint = ep = self.endpoint
        wiring.connect(m, wiring.flipped(self.cfg_req), ep.cfg_req)
        wiring.connect(m, ep.cfg_cpl, wiring.flipped(self.cfg_cpl))
        # Requests go straight into the endpoint's decoder; its results come back in order.
        wiring.connect(m, wiring.flipped(self.mmio_req), ep.mem_req)

        # One word per function (0 the PF, n VF n) holding all its registers.
        functions = self.params.total_vfs + 1
        m.submodules.regs = regs = Memory(shape=64 * REGISTERS, depth=functions, init=[])
        wr = regs.write_port(granularity=8)
        # Transparent: a word cleared in one cycle reads as cleared in the next.
        rd = regs.read_port(transparent_for=(wr,))

        # -- Resets. An event may come at any cycle, so it is remembered until the write port
        # has done it. The sweep (every VF's word) also runs after `rst`, from the PF's word.
        pf_clear = Signal()
        vf_clear = Signal()
        vf_clear_fn = Signal(range(functions))
        sweep = Signal(init=1)
        sweep_fn = Signal(range(functions))
        with m.If(ep.pfs[0].flr):
            m.d.sync += pf_clear.eq(1)
        with m.Elif(pf_clear):
            m.d.sync += pf_clear.eq(0)
        with m.If(ep.vf_flr.valid):
            m.d.sync += [vf_clear.eq(1), vf_clear_fn.eq(ep.vf_flr.vf)]
        with m.Elif(vf_clear & ~pf_clear):
            m.d.sync += vf_clear.eq(0)
        with m.If(ep.pfs[0].vfs_reset & (~sweep | (sweep_fn > 1))):
            m.d.sync += [sweep.eq(1), sweep_fn.eq(1)]
        with m.Elif(sweep & ~pf_clear & ~vf_clear):
            m.d.sync += sweep_fn.eq(sweep_fn + 1)
            with m.If(sweep_fn == functions - 1):
                m.d.sync += sweep.eq(0)
        clearing = pf_clear | vf_clear | sweep

        # -- Completions: take the endpoint's decode, read the function's word, answer.
        res = Signal.like(ep.mem_res.payload)
        fn = Mux(res.is_vf, res.vf, 0)
        index = res.offset[3:3 + (REGISTERS - 1).bit_length()]
        in_registers = res.claimed & (res.bar == REGISTER_BAR) & (res.offset < 8 * REGISTERS)
        m.d.comb += rd.addr.eq(fn)
        reg_write = Signal()
        with m.FSM(name="mmio"):
            with m.State("IDLE"):
                m.d.comb += ep.mem_res.ready.eq(1)
                with m.If(ep.mem_res.valid):
                    m.d.sync += res.eq(ep.mem_res.payload)
                    m.next = "READ"
            with m.State("READ"):           # the memory reads the function's word
                m.next = "RESPOND"
            with m.State("RESPOND"):
                cpl = self.mmio_cpl.payload
                m.d.comb += [
                    self.mmio_cpl.valid.eq(~clearing),
                    cpl.ur.eq(~res.claimed & ~res.internal),
                    cpl.tag.eq(res.tag),
                ]
                with m.If(~res.write & res.internal):
                    m.d.comb += cpl.data.eq(res.data)
                with m.Elif(~res.write & in_registers):
                    m.d.comb += cpl.data.eq(rd.data.word_select(index, 64))
                with m.If(self.mmio_cpl.valid & self.mmio_cpl.ready):
                    m.d.comb += reg_write.eq(res.write & in_registers)
                    m.next = "IDLE"

        # -- The write port: resets first (a completion waits for them), then register writes.
        every_byte = (1 << (8 * REGISTERS)) - 1
        with m.If(pf_clear):
            m.d.comb += [wr.addr.eq(0), wr.data.eq(0), wr.en.eq(every_byte)]
        with m.Elif(vf_clear):
            m.d.comb += [wr.addr.eq(vf_clear_fn), wr.data.eq(0), wr.en.eq(every_byte)]
        with m.Elif(sweep):
            m.d.comb += [wr.addr.eq(sweep_fn), wr.data.eq(0), wr.en.eq(every_byte)]
        with m.Elif(reg_write):
            m.d.comb += [wr.addr.eq(fn), wr.data.eq(res.data.replicate(REGISTERS)),
                         wr.en.eq(res.be << (index * 8))]
        return m


# -- The references ------------------------------------------------------------------------------

class RegisterFileModel:
    """What the user logic must do, in Python: :data:`REGISTERS` QWORDs per function."""

    def __init__(self):
        self.regs = {}          # function -> [QWORD, ...]; absent: all 0
        self._seen = 0

    def reset(self, function):
        self.regs.pop(function, None)

    def follow(self, model):
        """Apply the resets the endpoint model reported since the last call: a VF's (FLR, or
        D3hot -> D0), the PF's D3hot -> D0, every VF's. (A PF FLR shows there only as every
        VF's reset: :meth:`Bench.flr` resets the PF's registers itself.)"""
        for event in model.events[self._seen:]:
            if event[0] in ("vf_flr", "pm_reset"):
                self.reset(event[1])
            elif event[0] == "vfs_reset":
                self.regs = {f: v for f, v in self.regs.items() if f == 0}
        self._seen = len(model.events)

    def complete(self, result, write, data, be):
        """The expected completion, ``(ur, read data)``, of a request the endpoint model decoded
        into ``result`` (an :class:`~sriov_tb.model.MemoryResult`)."""
        if result.internal:
            return False, 0 if write else result.data
        if not result.claimed:
            return True, 0
        if result.bar != REGISTER_BAR or result.offset >= 8 * REGISTERS:
            return False, 0
        regs = self.regs.setdefault(result.vf if result.is_vf else 0, [0] * REGISTERS)
        index = result.offset // 8
        if not write:
            return False, regs[index]
        mask = sum(0xFF << (8 * i) for i in range(8) if be >> i & 1)
        regs[index] = (regs[index] & ~mask) | (data & mask)
        return False, 0


class CheckedMmio:
    """Memory requests to the design and to the references; the completions must match."""

    def __init__(self, ctx, dut, model, regs):
        self.ctx, self.dut, self.model, self.regs = ctx, dut, model, regs
        self.tag = 0
        self.compared = 0

    async def access(self, addr, write, data=0, be=0xFF):
        """One request on the QWORD holding ``addr``; returns the read QWORD (all ones on UR)."""
        self.tag = (self.tag + 1) % 256
        cpl, _cycles = await stream_transaction(
            self.ctx, self.dut.mmio_req, self.dut.mmio_cpl,
            {"addr": addr, "write": write, "tag": self.tag, "data": data, "be": be},
            timeout=10_000, what="MMIO request")
        self.regs.follow(self.model)
        ur, value = self.regs.complete(self.model.memory(addr, write, data, be), write, data, be)
        got = (bool(cpl.ur), 0 if write else int(cpl.data), int(cpl.tag))
        self.compared += 1
        if got != (ur, value, self.tag):
            def show(ur, value, tag):
                return "UR" if ur else f"SC {value:#018x} tag {tag}"
            raise Mismatch(f"{'write' if write else 'read'} at {addr:#x} be {be:#04x}: design "
                           f"{show(*got)}, expected {show(ur, value, self.tag)}")
        return (1 << 64) - 1 if ur else value

    async def read(self, addr, size=8):
        lane = addr % 8
        qword = await self.access(addr, False, be=((1 << size) - 1) << lane)
        return (qword >> (8 * lane)) & ((1 << (8 * size)) - 1)

    async def write(self, addr, value, size=8):
        lane = addr % 8
        await self.access(addr, True, value << (8 * lane), ((1 << size) - 1) << lane)


# -- The scenario --------------------------------------------------------------------------------

class Bench:
    """The pieces a scenario uses: ``host`` (Linux), ``mmio`` (checked memory requests)."""

    def __init__(self, ctx, dut, params, log):
        self.params = params
        self.model = EndpointModel(params)
        self.regs = RegisterFileModel()
        self.config = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(self.model))
        self.root = RootPort(self.config, secondary_bus=params.pf_rid >> 8)
        self.host = LinuxHost(self.root, params.pf_rid)
        self.mmio = CheckedMmio(ctx, dut, self.model, self.regs)
        self.log = log

    def reg(self, rid, n):
        """Host address of register ``n`` of function ``rid``."""
        return self.host.bar_address(rid, REGISTER_BAR) + 8 * n

    async def flr(self, rid):
        await self.host.flr(rid)
        if rid == self.params.pf_rid:
            self.regs.reset(0)


def pattern(rid, n):
    return 0x5EED_0000_0000_0000 | rid << 16 | n


def check(got, expected, what):
    """A scenario's own expectation (the references check every completion already)."""
    if got != expected:
        raise Mismatch(f"{what}: read {got:#x}, expected {expected:#x}")


async def scenario(bench):
    p, host, mmio = bench.params, bench.host, bench.mmio
    vfs = await host.enable(p.initial_vfs)
    functions = [p.pf_rid, *vfs]
    bench.log(f"enabled {len(vfs)} VFs: {format_bdf(vfs[0])} .. {format_bdf(vfs[-1])}")

    for rid in functions:
        for n in range(REGISTERS):
            await mmio.write(bench.reg(rid, n), pattern(rid, n))
    for rid in functions:
        for n in range(REGISTERS):
            check(await mmio.read(bench.reg(rid, n)), pattern(rid, n), f"{format_bdf(rid)} reg {n}")
    bench.log(f"{REGISTERS} registers of the PF and each VF written and read back")

    vf = vfs[len(vfs) // 2]
    await mmio.write(bench.reg(vf, 1) + 4, 0xCAFE, size=2)           # bytes 5:4 only
    check(await mmio.read(bench.reg(vf, 1)),
          pattern(vf, 1) & ~0xFFFF_0000_0000 | 0xCAFE_0000_0000, "after a 2-byte write")
    check(await mmio.read(bench.reg(vf, 1) + 4, size=4),
          (pattern(vf, 1) >> 32) & 0xFFFF_0000 | 0xCAFE, "its upper dword")
    bench.log(f"byte enables: a 2-byte write to {format_bdf(vf)}'s register 1 changed 2 bytes")

    check(await mmio.read(bench.reg(vf, REGISTERS)), 0, "past the registers")
    check(await mmio.read(0x10), (1 << 64) - 1, "an address no BAR claims (UR)")
    if p.vf_msix is not None:                                          # the endpoint answers
        table = host.bar_address(vf, p.vf_msix.table_bar) + p.vf_msix.table_offset
        await mmio.read(table + 8)          # vector 0's Message Data and Vector Control
    bench.log("past the registers reads 0, an unclaimed address is UR, MSI-X by the endpoint")

    await bench.flr(vf)
    for rid in functions:
        for n in range(REGISTERS):
            await mmio.read(bench.reg(rid, n))
    check(await mmio.read(bench.reg(vf, 0)), 0, f"{format_bdf(vf)} after its FLR")
    bench.log(f"FLR of {format_bdf(vf)} cleared its registers and no other function's")

    gone = bench.reg(vfs[0], 0)
    await host.disable()
    check(await mmio.read(gone), (1 << 64) - 1, "a VF's register with VF Enable clear (UR)")
    check(await mmio.read(bench.reg(p.pf_rid, 0)), pattern(p.pf_rid, 0), "the PF's register")
    vfs = await host.enable(p.initial_vfs)
    for rid in vfs:
        check(await mmio.read(bench.reg(rid, 0)), 0, f"{format_bdf(rid)} after VF Enable")
    bench.log("VF Enable cleared (VFs answer UR) and set again: every VF's registers are 0, "
              "the PF's kept")

    await mmio.write(bench.reg(vfs[0], 0), 0x1234)
    await bench.flr(p.pf_rid)
    for rid in (p.pf_rid, *vfs):
        check(await mmio.read(bench.reg(rid, 0)), 0, f"{format_bdf(rid)} after the PF's FLR")
    bench.log("PF FLR (and Linux's restore): the PF's and every VF's registers are 0")


def run(params, *, log=print):
    """Simulate :func:`scenario`; return ``(config, memory)`` completions compared. Raises
    :class:`~sriov_tb.cfg.Mismatch` on the first difference."""
    dut = RegisterFileDevice(params)
    counts = {"runs": 0}

    def make_testbench():
        # Called again to rerun a failing simulation under a waveform writer: quietly.
        quiet = counts["runs"] > 0
        counts["runs"] += 1

        async def testbench(ctx):
            bench = Bench(ctx, dut, params, (lambda line: None) if quiet else log)
            await scenario(bench)
            counts["config"], counts["memory"] = bench.config.compared, bench.mmio.compared
        return testbench

    simulate(dut, make_testbench, name="amaranth_bench",
             traces={"config": [dut.cfg_req, dut.cfg_cpl], "mmio": [dut.mmio_req, dut.mmio_cpl]})
    return counts["config"], counts["memory"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default=Path(__file__).resolve().parent /
                        "igb-82576.toml", help="endpoint configuration (default: the 82576)")
    args = parser.parse_args(argv)
    params = load_params(args.config)
    try:
        config, memory = run(params)
    except (Mismatch, HostError, SriovError) as exc:
        print(f"amaranth_bench: FAIL: {type(exc).__name__}: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(f"amaranth_bench: {note}", file=sys.stderr)
        return 1
    print(f"amaranth_bench: PASS: {config} config and {memory} memory completions matched the "
          f"reference model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
