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

from sriov_ep.params import Bar, EndpointParams, MsixParams, PfParams, PmParams
from sriov_ep.vf_state import VfStateMemory, vf_state_layout, vf_state_ranges
from sriov_tb.sim import WithReset, simulate

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


# -- Several PFs: range sweeps ---------------------------------------------------------------
#
# With ``pf_ranges`` the memory clears each PF's range itself, in the cycles ``rw.hold`` leaves
# it, writing at most every other cycle. The testbench plays the endpoint: requests (a held
# read, held cycles, an optional held write-back) and queries only to PFs that are not busy,
# checked against a dictionary in which a clear zeroes the PF's entries at once.




def _contiguous(counts):
    """PF k's range starts after PFs 0..k-1's: ((base, count), ...)."""
    ranges, base = [], 0
    for count in counts:
        ranges.append((base, count))
        base += count
    return tuple(ranges)


def _bits(mask, pfs):
    return {k for k in range(pfs) if mask >> k & 1}


class _Bench:
    """Drives the memory like the endpoint and checks it against ``shadow``.

    ``step()`` runs one cycle: the request side, the queries and a clear (``clear``: a set of
    PFs) are set, the cycle ticks, then the answers due and ``busy``/``done`` are checked.
    """

    def __init__(self, ctx, top, ranges, rng, *, hold_noise=0.0, request_rate=0.5):
        self.ctx, self.top, self.dut = ctx, top, top.dut
        self.ranges, self.pfs, self.rng = ranges, len(ranges), rng
        self.hold_noise, self.request_rate = hold_noise, request_rate
        self.shadow = {a: 0 for base, count in ranges for a in range(base, base + count)}
        self.busy = set(range(self.pfs))        # the conventional reset clears every PF
        self.done_order = []
        self.cycle = 0
        self.plan = []              # the request in flight: (hold, addr, write, data) a cycle
        self.request_pf = None
        self.due = []               # (cycle, port, addr, expected)
        self.failures = []
        self.served_while_busy = 0  # requests whose read was answered while another PF was busy
        self.busy_prev = (1 << self.pfs) - 1
        self._live = {}

    def pf_of(self, addr):
        return next(k for k, (b, c) in enumerate(self.ranges) if b <= addr < b + c)

    def live(self, avoid=()):
        """Entries the endpoint may use now: those of PFs neither busy nor being cleared."""
        key = frozenset(self.busy) | frozenset(avoid)
        if key not in self._live:
            self._live[key] = [a for k, (base, count) in enumerate(self.ranges)
                               if k not in key for a in range(base, base + count)]
        return self._live[key]

    def fail(self, text):
        self.failures.append(f"cycle {self.cycle}: {text}")

    async def step(self, clear=(), queries=True, requests=True):
        ctx, dut, rng = self.ctx, self.dut, self.rng
        clear = set(clear)
        if clear & ({self.request_pf} if self.plan else set()):
            raise AssertionError("the testbench clears a PF with a request in flight")
        live = self.live(avoid=clear)
        if not self.plan and requests and live and rng.random() < self.request_rate:
            addr = rng.choice(live)
            length = rng.randint(1, 5)
            write = rng.random() < 0.7
            data = rng.randrange(1, 16)
            self.plan = ([(1, addr, 0, 0)] + [(1, addr, 0, 0)] * (length - 1) +
                         [(1, addr, write, data)])
            self.request_pf = self.pf_of(addr)
            self.due.append((self.cycle + 2, "rw", addr, self.shadow[addr]))
            if self.busy - {self.request_pf}:
                self.served_while_busy += 1
        if self.plan:
            hold, addr, write, data = self.plan.pop(0)
        else:
            # (what the request side leaves on the port when it does not use it)
            hold, addr, write, data = (rng.random() < self.hold_noise,
                                       rng.choice(list(self.shadow)), 0, rng.randrange(16))
        ctx.set(dut.rw.hold, hold)
        ctx.set(dut.rw.addr, addr)
        ctx.set(dut.rw.w_en, write)
        ctx.set(dut.rw.w_data.as_value(), data)
        if queries and live:
            hot = [addr] if addr in live else []
            for port, shift, mask in (("bme", 0, 1), ("pm", 1, 3)):
                q = rng.choice(hot + live) if rng.random() < 0.5 else rng.choice(live)
                ctx.set(getattr(dut, port).addr, q)
                self.due.append((self.cycle + 2, port, q, self.shadow[q] >> shift & mask))
        ctx.set(dut.clear, sum(1 << k for k in clear))
        await ctx.tick()
        self.cycle += 1
        if write:
            self.shadow[addr] = data
        for k in clear:
            base, count = self.ranges[k]
            for a in range(base, base + count):
                self.shadow[a] = 0
            self.busy.add(k)
        for _due, port, a, want in [d for d in self.due if d[0] == self.cycle]:
            got = (ctx.get(dut.rw.r_data.as_value()) if port == "rw"
                   else ctx.get(getattr(dut, port).data))
            if got != want:
                self.fail(f"{port} read of {a} (PF {self.pf_of(a)}) gave {got}, "
                          f"expected {want}")
        self.due = [d for d in self.due if d[0] > self.cycle]
        busy, done = ctx.get(dut.busy), ctx.get(dut.done)
        for k in clear:
            if not busy >> k & 1:
                self.fail(f"busy[{k}] low in the cycle after clear[{k}]")
        for k in range(self.pfs):
            was, now, pulse = self.busy_prev >> k & 1, busy >> k & 1, done >> k & 1
            if pulse != (was and not now):
                self.fail(f"done[{k}] = {pulse} with busy[{k}] {was} -> {now}")
            if now and k not in self.busy:
                self.fail(f"busy[{k}] high, but PF {k} was not cleared")
            if not now and k in self.busy:
                self.busy.discard(k)
                self.done_order.append(k)
        self.busy_prev = busy

    async def until_idle(self, limit, **kw):
        """Steps until no PF is busy and no request is in flight; returns the cycles taken."""
        start = self.cycle
        while self.busy or self.plan:
            if self.cycle - start > limit:
                self.fail(f"still busy ({sorted(self.busy)}) after {limit} cycles")
                break
            await self.step(**kw)
        while self.due:     # the last answers
            await self.step(requests=False, queries=False)
        return self.cycle - start

    async def fill(self):
        """Writes a random nonzero value to every entry, through held requests."""
        for addr in self.shadow:
            for hold, write in ((1, 0), (1, 1)):
                self.ctx.set(self.dut.rw.hold, hold)
                self.ctx.set(self.dut.rw.addr, addr)
                self.ctx.set(self.dut.rw.w_en, write)
                data = self.rng.randrange(1, 16)
                self.ctx.set(self.dut.rw.w_data.as_value(), data)
                await self.ctx.tick()
                self.cycle += 1
                if write:
                    self.shadow[addr] = data
        self.ctx.set(self.dut.rw.hold, 0)
        self.ctx.set(self.dut.rw.w_en, 0)

    async def read_all(self):
        """Reads every entry back through ``rw`` (held) and compares it with ``shadow``."""
        ctx, dut = self.ctx, self.dut
        for addr in self.shadow:
            ctx.set(dut.rw.hold, 1)
            ctx.set(dut.rw.addr, addr)
            ctx.set(dut.rw.w_en, 0)
            await ctx.tick().repeat(2)
            got = ctx.get(dut.rw.r_data.as_value())
            if got != self.shadow[addr]:
                self.fail(f"entry {addr} (PF {self.pf_of(addr)}) holds {got}, "
                          f"expected {self.shadow[addr]}")
        ctx.set(dut.rw.hold, 0)

    def check(self, seed=None):
        assert not self.failures, f"seed {seed}:\n" + "\n".join(self.failures[:10])


def _simulate_pfs(ranges, depth, body, name):
    dut = VfStateMemory(depth, LAYOUT, QUERIES, pf_ranges=ranges)
    top = WithReset(dut)

    def make():
        async def testbench(ctx):
            await body(ctx, top)
        return testbench

    simulate(top, make, name=name, waves_on_failure=False)


#: (ranges, depth): contiguous ranges in LUT RAM; in block RAM (the X/Y query copies; the
#: ranges cover part of the memory only, to keep the simulation short); on both sides of a
#: bank boundary.
PF_CONFIGS = {
    "lut": (_contiguous((5, 3, 7)), 15),
    "bram": (((0, 30), (30, 20), (500, 13)), 513),
    "banks": (((16380, 4), (16384, 6), (16390, 1)), 16391),
}


@pytest.mark.parametrize("config", PF_CONFIGS)
def test_range_sweeps_with_requests_and_queries(config):
    """Random requests and queries to PFs that are not busy, while random PFs are cleared:
    every answer, including queries in the cycles another PF's sweep writes, matches the
    dictionary, requests are served during other PFs' clears, and every clear finishes."""
    ranges, depth = PF_CONFIGS[config]
    seed = depth
    cycles = 2000

    async def body(ctx, top):
        rng = random.Random(seed)
        bench = _Bench(ctx, top, ranges, rng, hold_noise=0.2)
        await bench.until_idle(4 * len(bench.shadow) + 10, requests=False)
        await bench.fill()
        for _ in range(cycles):
            clear = set()
            idle_pfs = set(range(bench.pfs)) - ({bench.request_pf} if bench.plan else set())
            if idle_pfs and rng.random() < 0.01:
                clear = {rng.choice(sorted(idle_pfs))}
            await bench.step(clear=clear)
        await bench.until_idle(40 * len(bench.shadow) + 100)
        await bench.read_all()
        bench.check(seed)
        assert bench.served_while_busy > 20
        assert len(bench.done_order) >= 8

    _simulate_pfs(ranges, depth, body, f"vf-state-pfs-{config}")


@pytest.mark.parametrize("config", ["lut", "bram"])
def test_requests_to_one_pf_during_anothers_clear(config):
    """PF 0 is cleared while requests (one every few cycles, each a read and a write-back)
    and queries go to PF 1's and PF 2's VFs: they are served during the clear, their data stays,
    and PF 0's entries all read 0 after it."""
    ranges, depth = PF_CONFIGS[config]

    async def body(ctx, top):
        rng = random.Random(7)
        bench = _Bench(ctx, top, ranges, rng, request_rate=0.7)
        await bench.until_idle(4 * depth + 10, requests=False, queries=False)
        await bench.fill()
        await bench.step(clear={0}, requests=False)
        start = bench.cycle
        served = bench.served_while_busy
        while 0 in bench.busy and bench.cycle - start < 40 * ranges[0][1] + 100:
            await bench.step()
        assert 0 not in bench.busy
        assert bench.served_while_busy - served >= ranges[0][1] // 4
        await bench.until_idle(100)
        await bench.read_all()
        assert all(bench.shadow[a] == 0 for a in range(ranges[0][1]))
        bench.check()

    _simulate_pfs(ranges, depth, body, f"vf-state-yield-{config}")


@pytest.mark.parametrize("config", ["lut", "bram"])
def test_sweep_writes_every_other_cycle(config):
    """With the port free, PF k's range is clear 2 cycles per entry after the one before it:
    done[k] at cycle 2 * (T_0 + ... + T_k) after reset. Queries to other PFs every cycle of
    a clear answer right (two copies, one of which is free in every cycle)."""
    ranges, depth = PF_CONFIGS[config]

    async def body(ctx, top):
        rng = random.Random(3)
        bench = _Bench(ctx, top, ranges, rng)
        done_at = {}
        while bench.busy:
            await bench.step(requests=False, queries=False)
            for k in range(bench.pfs):
                if ctx.get(top.dut.done) >> k & 1:
                    done_at[k] = bench.cycle
        ends = [2 * sum(count for _b, count in ranges[:k + 1]) for k in range(len(ranges))]
        assert [done_at[k] for k in range(len(ranges))] == ends
        await bench.fill()
        # Clear PF 2 (then PF 0) with queries to the others in every cycle, and no requests.
        for pf in (2, 0):
            await bench.step(clear={pf}, requests=False)
            start = bench.cycle
            await bench.until_idle(4 * depth, requests=False)
            assert 2 * ranges[pf][1] <= bench.cycle - start <= 2 * ranges[pf][1] + 4
        await bench.read_all()
        bench.check()

    _simulate_pfs(ranges, depth, body, f"vf-state-rate-{config}")


def test_pending_mask_order_and_busy_per_pf():
    """The lowest pending PF is swept first once the current range ends; busy[k] is set from
    the cycle after clear[k] until PF k's range is done, and a PF asked for during its own
    sweep is swept again."""
    ranges, depth = _contiguous((4, 6, 5, 3)), 18

    async def body(ctx, top):
        bench = _Bench(ctx, top, ranges, random.Random(1))
        await bench.until_idle(100, requests=False)
        assert bench.done_order == [0, 1, 2, 3]
        bench.done_order.clear()
        # PFs 1 and 3 at once: 1 first; PF 0 asked for during PF 1's sweep comes before 3.
        await bench.step(clear={1, 3}, requests=False)
        assert ctx.get(top.dut.busy) == 0b1010
        await bench.step(requests=False)
        await bench.step(clear={0}, requests=False)
        assert ctx.get(top.dut.busy) == 0b1011
        await bench.until_idle(100, requests=False)
        assert bench.done_order == [1, 0, 3]
        bench.done_order.clear()
        # PF 2 asked for again while its range is swept: done once, after two sweeps.
        await bench.step(clear={2}, requests=False)
        for _ in range(4):
            await bench.step(requests=False)
        assert ctx.get(top.dut.busy) == 0b0100
        await bench.step(clear={2}, requests=False)
        start = bench.cycle
        await bench.until_idle(100, requests=False)
        assert bench.done_order == [2]
        assert bench.cycle - start >= 2 * 5
        bench.check()

    _simulate_pfs(ranges, depth, body, "vf-state-order")


@pytest.mark.parametrize("config", ["lut", "bram"])
def test_conventional_reset_clears_every_pf(config):
    """A reset in the middle of a PF's clear and a request: every PF is busy at once, the
    ranges are cleared in PF order, and every entry reads 0."""
    ranges, depth = PF_CONFIGS[config]

    async def body(ctx, top):
        bench = _Bench(ctx, top, ranges, random.Random(5), hold_noise=0.3)
        await bench.until_idle(8 * depth + 10, requests=False)
        await bench.fill()
        await bench.step(clear={1}, requests=False)
        while not bench.plan:
            await bench.step()
        await bench.step()
        ctx.set(top.rst, 1)         # (with a request's inputs still set)
        await ctx.tick()
        ctx.set(top.rst, 0)
        ctx.set(top.dut.rw.hold, 0)
        ctx.set(top.dut.rw.w_en, 0)
        bench.plan = []
        bench.busy_prev = ctx.get(top.dut.busy)
        assert bench.busy_prev == (1 << len(ranges)) - 1
        bench.busy = set(range(len(ranges)))
        bench.shadow = dict.fromkeys(bench.shadow, 0)
        bench.done_order.clear()
        bench.due.clear()
        await bench.until_idle(40 * depth + 100)
        assert bench.done_order == list(range(len(ranges)))
        await bench.read_all()
        bench.check()

    _simulate_pfs(ranges, depth, body, f"vf-state-rst-{config}")


def test_hold_keeps_the_sweep_off_the_port():
    """While ``rw.hold`` stays high the sweep writes nothing: the entries of the PF being
    cleared keep their data until the port is left to it."""
    ranges, depth = PF_CONFIGS["lut"]

    async def body(ctx, top):
        bench = _Bench(ctx, top, ranges, random.Random(2))
        await bench.until_idle(100, requests=False)
        await bench.fill()
        kept = dict(bench.shadow)
        ctx.set(top.dut.rw.hold, 1)
        ctx.set(top.dut.clear, 0b001)
        await ctx.tick()
        ctx.set(top.dut.clear, 0)
        await ctx.tick().repeat(30)
        assert ctx.get(top.dut.busy) == 0b001
        bench.shadow = kept
        bench.busy = set()
        await bench.read_all()          # (hold high throughout)
        bench.check()

    _simulate_pfs(ranges, depth, body, "vf-state-hold")


def test_pf_ranges_checked():
    with pytest.raises(ValueError, match="two or more PFs"):
        VfStateMemory(8, LAYOUT, QUERIES, pf_ranges=[(0, 8)])
    with pytest.raises(ValueError, match=r"pf_ranges\[1\]: \(4, 5\) is not a range"):
        VfStateMemory(8, LAYOUT, QUERIES, pf_ranges=[(0, 4), (4, 5)])
    with pytest.raises(ValueError, match=r"pf_ranges\[0\]: \(0, 0\)"):
        VfStateMemory(8, LAYOUT, QUERIES, pf_ranges=[(0, 0), (0, 8)])
    single = VfStateMemory(8, LAYOUT, QUERIES)
    assert "hold" not in single.rw.signature.members
    assert not hasattr(single, "busy")


def _two_pf_params(first, second):
    """PFs 01:00.0 and 01:00.1 with 4 VFs each, VF ranges apart in both layouts."""
    pfs = []
    for k, extra in enumerate((first, second)):
        pfs.append(PfParams(pf_rid=0x100 + k, total_vfs=4 + 2 * k,
                            first_vf_offset_ari=2 + 4 * k - k,
                            first_vf_offset_non_ari=0x100 + 4 * k - k, **extra))
    return EndpointParams(pfs=tuple(pfs))


def test_vf_state_layout_and_ranges_of_several_pfs():
    """The entry is the union of the PFs' per-VF fields (one PF's when their VF chains are
    equal); PF k's range starts after the TotalVFs of PFs 0..k-1."""
    msix = MsixParams(vectors=3, table_bar=0, table_offset=0, pba_bar=0, pba_offset=0x2000)
    bars = (Bar(0, 0x4000, True),)
    same = _two_pf_params({}, {})
    assert ({n: f.width for n, f in vf_state_layout(same)} ==
            {n: f.width for n, f in vf_state_layout(EndpointParams())})
    mixed = _two_pf_params({"vf_pm": PmParams()}, {"vf_bars": bars, "vf_msix": msix})
    assert {name: field.width for name, field in vf_state_layout(mixed)} == {
        "header_command_bus_master_enable": 1,
        "pcie_device_control_relaxed_ordering": 1,
        "pcie_device_control_no_snoop": 1,
        "pm_pmcsr_power_state": 2,
        "msix_message_control_table_size": 11,
        "msix_message_control_function_mask": 1,
        "msix_message_control_msix_enable": 1,
    }
    assert vf_state_ranges(mixed) == ((0, 4), (4, 6))
