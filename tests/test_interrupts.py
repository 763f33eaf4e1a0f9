# amaranth: UnusedElaboratable=no
"""MsixEngine: MSI-X tables, PBAs and message delivery against a model written from the rules.

The model (:class:`MsixModel`) follows the engine's contract as the MSI-X rules state it
(PCI Express Base §6.1.4.5, §7.7.2 and the engine's documented choices), not the RTL: it keeps
Mask bits as 1 = masked, tables per function and vector, and reads table and PBA DWORD by DWORD.
The bench drives the engine cycle by cycle, with backpressure on ``msg`` and ``tbl_res``, checks
that a stream's payload holds still until its handshake, and compares messages (an ordered list),
dropped-request pulses, table and PBA contents with the model.
"""

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Const, Mux

from sriov_ep import interrupts
from sriov_ep.interrupts import (
    MSG_LATENCY,
    TABLE_LATENCY,
    MsixEngine,
    MsixEntry,
    MsixPf,
    MsixState,
)
from sriov_tb.sim import simulate

# ------------------------------------------------------------------------------------------------
# The model


class _Function:
    def __init__(self, vectors, table_size):
        self.mask          = [1] * vectors
        self.pending       = [0] * vectors
        self.enable        = 0
        self.function_mask = 0
        self.bme           = 0
        self.d0            = 1
        self.table_size    = table_size


class MsixModel:
    """MSI-X of a PF and ``total_vfs`` VFs, one operation at a time."""

    def __init__(self, total_vfs, pf_vectors, vf_vectors):
        self.total_vfs, self.pf_vectors, self.vf_vectors = total_vfs, pf_vectors, vf_vectors
        self.max_vectors = max(pf_vectors, vf_vectors)
        self.num_vfs = 0
        self.vf_enable = 0
        # (function, vector) -> [address low, address high, data]; never reset.
        self.table = {}
        self.fn = [self._fresh(f) for f in range(self.total_vfs + 1)]

    def reserved(self, f):
        return self.pf_vectors if f == 0 else self.vf_vectors

    def has_msix(self, f):
        return f <= self.total_vfs and self.reserved(f) > 0

    def exists(self, f):
        return self.has_msix(f) and (f == 0 or (self.vf_enable and 1 <= f <= self.num_vfs))

    def _fresh(self, f):
        return _Function(self.max_vectors, max(self.reserved(f) - 1, 0))

    def reset_all(self):
        # VF entries only: the PF's MSI-X state survives VF Enable clearing.
        self.fn = [self.fn[0]] + [self._fresh(f) for f in range(1, self.total_vfs + 1)]

    def reset_fn(self, f):
        if f <= self.total_vfs:
            self.fn[f] = self._fresh(f)
        return []

    def deliverable(self, f):
        s = self.fn[f]
        return s.enable and not s.function_mask and s.bme and s.d0

    def _message(self, f, v):
        lo, hi, data = self.table.get((f, v), [0, 0, 0])
        return (f, (hi << 32) | (lo & ~3), data)

    def irq(self, f, v):
        """Messages sent and whether the request is dropped."""
        if not self.exists(f) or v > self.fn[f].table_size:
            return [], True
        s = self.fn[f]
        if self.deliverable(f) and not s.mask[v]:
            return [self._message(f, v)], False
        s.pending[v] = 1
        return [], False

    def ctrl(self, f, enable, function_mask, bme, d0):
        if f > self.total_vfs:
            return []
        s = self.fn[f]
        s.enable, s.function_mask, s.bme, s.d0 = enable, function_mask, bme, d0
        msgs = []
        if self.deliverable(f):
            for v in range(s.table_size + 1):
                if s.pending[v] and not s.mask[v]:
                    s.pending[v] = 0
                    msgs.append(self._message(f, v))
        return msgs

    def set_table_size(self, vf, size):
        if 1 <= vf <= self.total_vfs:
            s = self.fn[vf]
            s.table_size = size
            for v in range(size + 1, self.max_vectors):
                s.mask[v], s.pending[v] = 1, 0
        return []

    def _in_table(self, f, v):
        return self.has_msix(f) and v <= self.fn[f].table_size and v < self.reserved(f)

    def read_dword(self, f, pba, dword):
        if pba:
            if not self.has_msix(f) or dword > 1:
                return 0
            bits = sum(b << i for i, b in enumerate(self.fn[f].pending))
            return (bits >> (32 * dword)) & 0xFFFF_FFFF
        v, i = divmod(dword, 4)
        if not self._in_table(f, v):
            return 0
        if i == 3:
            return self.fn[f].mask[v]
        value = self.table.get((f, v), [0, 0, 0])[i]
        return value & ~3 if i == 0 else value

    def tbl(self, f, pba, offset, write, data, be):
        """The response and the messages sent."""
        qword = offset >> 3
        if not write:
            return (self.read_dword(f, pba, 2 * qword)
                    | self.read_dword(f, pba, 2 * qword + 1) << 32), []
        v = qword >> 1
        if pba or not self._in_table(f, v):
            return 0, []
        msgs = []
        for half in range(2):
            i = 2 * (qword & 1) + half
            lanes = (be >> (4 * half)) & 0xF
            if not lanes:
                continue
            new = (data >> (32 * half)) & 0xFFFF_FFFF
            if i == 3:
                if lanes & 1:
                    s = self.fn[f]
                    s.mask[v] = new & 1
                    # Clearing a Mask bit delivers a pending message (§6.1.4.5).
                    if not s.mask[v] and s.pending[v] and self.deliverable(f):
                        s.pending[v] = 0
                        msgs.append(self._message(f, v))
                continue
            entry = self.table.setdefault((f, v), [0, 0, 0])
            for byte in range(4):
                if lanes >> byte & 1:
                    m = 0xFF << (8 * byte)
                    entry[i] = (entry[i] & ~m) | (new & m)
        return 0, msgs


# ------------------------------------------------------------------------------------------------
# The bench

_PRIORITY = ["reset_fn", "ctrl", "table_size", "tbl_req", "irq"]


class Bench:
    """Cycle-by-cycle driver: presents requests, takes messages and responses with backpressure.

    ``msg_ready`` / ``res_ready``: probability that ``ready`` is high in a cycle (or a callable
    of the cycle number giving it).
    """

    TIMEOUT = 400

    def __init__(self, dut, ctx, *, rng=None, msg_ready=1.0, res_ready=1.0):
        self.dut, self.ctx = dut, ctx
        self.rng = rng or random.Random(0)
        self.msg_ready, self.res_ready = msg_ready, res_ready
        self.cycle = 0
        self.msgs = []          # (function, addr, data) in order
        self.responses = []
        self.dropped = 0
        self.accepted = []      # (stream name, cycle)
        self.msg_valid_cycles = []
        self.res_valid_cycles = []
        self._presented = {}
        self._held = {}         # stream -> payload offered last cycle and not taken

    def _ready(self, setting):
        if callable(setting):
            return int(setting(self.cycle))
        return int(self.rng.random() < setting)

    async def tick(self):
        dut, ctx = self.dut, self.ctx
        ctx.set(dut.msg.ready, self._ready(self.msg_ready))
        ctx.set(dut.tbl_res.ready, self._ready(self.res_ready))
        names = list(self._presented)
        streams = [getattr(dut, n) for n in names]
        _, _, mv, mr, mp, rv, rr, rp, drop, busy, *accepts = await ctx.tick().sample(
            dut.msg.valid, dut.msg.ready, dut.msg.payload,
            dut.tbl_res.valid, dut.tbl_res.ready, dut.tbl_res.payload,
            dut.irq_dropped, dut.busy, *(s.ready for s in streams))
        # Stream rule: an offered payload stays valid and unchanged until it is taken.
        for name, valid, ready, payload in (("msg", mv, mr, mp.as_value().value),
                                            ("tbl_res", rv, rr, rp.as_value().value)):
            held = self._held.pop(name, None)
            if held is not None:
                assert valid and payload == held, \
                    f"cycle {self.cycle}: {name} withdrew or changed an offered payload"
            if valid and not ready:
                self._held[name] = payload
        if mv:
            self.msg_valid_cycles.append(self.cycle)
        if rv:
            self.res_valid_cycles.append(self.cycle)
        if mv and mr:
            self.msgs.append((mp.function, mp.addr, mp.data))
        if rv and rr:
            self.responses.append(rp.data)
        self.dropped += drop
        for name, stream, ready in zip(names, streams, accepts, strict=True):
            if ready:
                assert not busy, f"cycle {self.cycle}: {name} accepted while busy"
                self.accepted.append((name, self.cycle))
                ctx.set(stream.valid, 0)
                del self._presented[name]
        self.cycle += 1
        return busy

    async def ticks(self, n):
        for _ in range(n):
            await self.tick()

    def present(self, name, **payload):
        stream = getattr(self.dut, name)
        assert name not in self._presented
        self.ctx.set(stream.payload, payload)
        self.ctx.set(stream.valid, 1)
        self._presented[name] = payload

    async def put(self, *requests):
        """Offer ``(name, payload)`` requests together; wait until all are taken. Return the
        names in the order the engine took them."""
        first = len(self.accepted)
        for name, payload in requests:
            self.present(name, **payload)
        for _ in range(self.TIMEOUT):
            if not self._presented:
                return [n for n, _ in self.accepted[first:]]
            await self.tick()
        raise AssertionError(f"cycle {self.cycle}: {sorted(self._presented)} never taken")

    async def until(self, condition, what):
        for _ in range(self.TIMEOUT):
            if condition():
                return
            await self.tick()
        raise AssertionError(f"cycle {self.cycle}: timed out waiting for {what}")

    async def wait_idle(self):
        """Wait for the end of a sweep (``busy`` low)."""
        for _ in range(self.TIMEOUT):
            if not await self.tick():
                return
        raise AssertionError("busy never fell")

    async def tbl(self, function, offset, *, pba=0, write=0, data=0, be=0xFF):
        count = len(self.responses)
        await self.put(("tbl_req", dict(function=function, pba=pba, offset=offset, write=write,
                                        data=data, be=be)))
        await self.until(lambda: len(self.responses) > count, "a tbl_res")
        return self.responses[count]

    async def read(self, function, offset, *, pba=0):
        return await self.tbl(function, offset, pba=pba)

    async def write(self, function, offset, data, be):
        return await self.tbl(function, offset, write=1, data=data, be=be)

    async def write_dword(self, function, offset, value):
        high = offset & 4
        await self.write(function, offset & ~7, value << (8 * high), 0xF0 if high else 0x0F)

    async def reset_all(self):
        self.ctx.set(self.dut.reset_all, 1)
        await self.tick()
        self.ctx.set(self.dut.reset_all, 0)

    def set_vfs(self, num_vfs, vf_enable=1):
        self.ctx.set(self.dut.num_vfs, num_vfs)
        self.ctx.set(self.dut.vf_enable, vf_enable)


class Checked:
    """A bench and a model driven together; every step is compared."""

    def __init__(self, bench, model):
        self.b, self.m = bench, model
        self.expected = []
        self.expected_dropped = 0

    async def set_vfs(self, num_vfs, vf_enable=1):
        # A request taken in the last cycle samples NumVFs one cycle later: let it.
        await self.b.ticks(2)
        self.b.set_vfs(num_vfs, vf_enable)
        self.m.num_vfs, self.m.vf_enable = num_vfs, vf_enable

    def _apply(self, name, p):
        m = self.m
        if name == "irq":
            msgs, dropped = m.irq(p["function"], p["vector"])
            self.expected_dropped += dropped
            return msgs
        if name == "ctrl":
            return m.ctrl(p["function"], p["enable"], p["function_mask"], p["bme"], p["d0"])
        if name == "table_size":
            return m.set_table_size(p["vf"], p["size"])
        if name == "reset_fn":
            return m.reset_fn(p["function"])
        raise AssertionError(name)

    async def settle(self, extra=12):
        """Wait for the expected messages, then a little longer for unexpected ones."""
        await self.b.until(lambda: len(self.b.msgs) >= len(self.expected)
                           and self.b.dropped >= self.expected_dropped, "expected messages")
        await self.b.ticks(extra)
        assert self.b.msgs == self.expected, (
            f"messages differ at position {_first_difference(self.b.msgs, self.expected)}:\n"
            f"  engine {self.b.msgs[-6:]}\n  model  {self.expected[-6:]}")
        assert self.b.dropped == self.expected_dropped, \
            f"{self.b.dropped} dropped pulses, expected {self.expected_dropped}"

    async def put(self, *requests):
        """Offer requests together: the engine must take them in priority order, and the model
        executes them in that order. Return the tbl_req's response, if there is one."""
        responses = len(self.b.responses)
        taken = await self.b.put(*requests)
        ordered = sorted(requests, key=lambda r: _PRIORITY.index(r[0]))
        assert taken == [n for n, _ in ordered], \
            f"cycle {self.b.cycle}: taken in order {taken}, expected {[n for n, _ in ordered]}"
        want = None
        for name, p in ordered:
            if name == "tbl_req":
                want, msgs = self.m.tbl(p["function"], p["pba"], p["offset"], p["write"],
                                        p["data"], p["be"])
                self.expected += msgs
                tbl = p
            else:
                self.expected += self._apply(name, p)
        if want is None:
            return None
        await self.b.until(lambda: len(self.b.responses) > responses, "a tbl_res")
        got = self.b.responses[responses]
        assert got == want, (
            f"cycle {self.b.cycle}: {'write' if tbl['write'] else 'read'} of "
            f"{'PBA' if tbl['pba'] else 'table'} f{tbl['function']} +{tbl['offset']:#x} "
            f"be {tbl['be']:#04x} data {tbl['data']:#018x}: {got:#018x}, model {want:#018x}")
        return got

    async def tbl(self, function, offset, *, pba=0, write=0, data=0, be=0xFF):
        return await self.put(("tbl_req", dict(function=function, pba=pba, offset=offset,
                                               write=write, data=data, be=be)))

    async def irq(self, function, vector):
        await self.put(("irq", dict(function=function, vector=vector)))

    async def ctrl(self, function, *, enable=1, function_mask=0, bme=1, d0=1):
        await self.put(("ctrl", dict(function=function, enable=enable,
                                     function_mask=function_mask, bme=bme, d0=d0)))

    async def set_table_size(self, vf, size):
        await self.put(("table_size", dict(vf=vf, size=size)))

    async def reset_fn(self, function):
        await self.put(("reset_fn", dict(function=function)))

    async def reset_all(self):
        # The model's reset is exact only once the engine is idle: wait for the messages due.
        await self.settle(extra=8)
        await self.b.reset_all()
        self.m.reset_all()
        await self.b.wait_idle()

    async def program(self, function, vector, addr, data, mask):
        await self.tbl(function, 16 * vector, write=1, data=addr, be=0xFF)
        await self.tbl(function, 16 * vector + 8, write=1, data=data | (mask << 32), be=0xFF)

    async def compare_all(self, functions=None):
        """Read every QWORD of the tables (up to the reserved size and one past) and PBAs."""
        m = self.m
        for f in functions if functions is not None else range(m.total_vfs + 1):
            for q in range(2 * (m.max_vectors + 1)):
                await self.tbl(f, 8 * q)
            await self.tbl(f, 0, pba=1)
            await self.tbl(f, 8, pba=1)


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def run(dut, body, *, name, waves_on_failure=True, seed=0, **bench_args):
    """Run ``body(bench)`` after the engine's first sweep. A rerun for a waveform starts from
    the same random state."""
    def make():
        async def testbench(ctx):
            bench = Bench(dut, ctx, rng=random.Random(seed), **bench_args)
            await bench.wait_idle()
            await body(bench)
        return testbench
    simulate(dut, make, name=name, waves_on_failure=waves_on_failure)


def checked_run(params, body, *, name, **bench_args):
    dut = MsixEngine(**params)

    async def wrapped(bench):
        c = Checked(bench, MsixModel(**params))
        await body(c)
        await c.settle()
    run(dut, wrapped, name=name, **bench_args)


SMALL = dict(total_vfs=5, pf_vectors=4, vf_vectors=3)

# ------------------------------------------------------------------------------------------------
# Parameters and interface


@pytest.mark.parametrize("kwargs, match", [
    (dict(total_vfs=0, pf_vectors=1, vf_vectors=1), r"total_vfs: must be an integer in 1\.\.65535"),
    (dict(total_vfs=65536, pf_vectors=1, vf_vectors=1), r"total_vfs: .* 1\.\.65535, not 65536"),
    (dict(total_vfs=2.0, pf_vectors=1, vf_vectors=1), r"total_vfs: must be an integer"),
    (dict(total_vfs=True, pf_vectors=1, vf_vectors=1), r"total_vfs: must be an integer"),
    (dict(total_vfs=4, pf_vectors=65, vf_vectors=1), r"pf_vectors: must be an integer in 0\.\.64"),
    (dict(total_vfs=4, pf_vectors=-1, vf_vectors=1), r"pf_vectors: .* 0\.\.64, not -1"),
    (dict(total_vfs=4, pf_vectors=1, vf_vectors=65), r"vf_vectors: must be an integer in 0\.\.64"),
    (dict(total_vfs=4, pf_vectors=0, vf_vectors=0), r"pf_vectors, vf_vectors: at least one"),
])
def test_parameters_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MsixEngine(**kwargs)


def test_interface():
    dut = MsixEngine(**SMALL)
    members = dict(dut.signature.members)
    assert set(members) == {"irq", "msg", "ctrl", "table_size", "reset_fn", "reset_all", "busy",
                            "tbl_req", "tbl_res", "num_vfs", "vf_enable", "irq_dropped"}

    def fields(stream):
        return {n: f.shape for n, f in stream.payload.shape()}

    fn = range(6)
    assert fields(dut.irq) == {"function": fn, "vector": 11}
    assert fields(dut.msg) == {"function": fn, "addr": 64, "data": 32}
    assert fields(dut.ctrl) == {"function": fn, "enable": 1, "function_mask": 1, "bme": 1, "d0": 1}
    assert fields(dut.table_size) == {"vf": fn, "size": 11}
    assert fields(dut.reset_fn) == {"function": fn}
    assert fields(dut.tbl_req) == {"function": fn, "pba": 1, "offset": 16, "write": 1,
                                   "data": 64, "be": 8}
    assert fields(dut.tbl_res) == {"data": 64}
    assert (len(dut.num_vfs), len(dut.vf_enable), len(dut.reset_all), len(dut.busy),
            len(dut.irq_dropped)) == (16, 1, 1, 1, 1)
    assert set(interrupts.__all__) >= {"MsixEngine", "IrqRequest", "MsixMessage", "MsixControl",
                                       "TableSizeUpdate", "FunctionReset", "TableRequest",
                                       "TableResponse", "MsixEntry", "MsixState"}


def test_single_pf_latencies_and_pfs_form():
    """The latencies of one PF are today's, and ``pfs=`` with one PF builds the same netlist
    as the flat sizes (no multi-PF stage)."""
    assert (MSG_LATENCY, TABLE_LATENCY) == (6, 7)
    flat = MsixEngine(total_vfs=5, pf_vectors=4, vf_vectors=3, vf_default_vectors=2)
    one = MsixEngine(pfs=[MsixPf(5, 4, 3, 2)])
    assert (one.msg_latency, one.table_latency, one.num_pfs) == (6, 7, 1)
    assert one.signature == flat.signature

    def netlist(dut):
        return [line for line in rtlil.convert(dut).splitlines() if "attribute \\src" not in line]
    assert netlist(one) == netlist(flat)


@pytest.mark.parametrize("total_vfs, bits", [(8, 2839), (256, 78479), (65535, 19988574)])
def test_memory_bits(total_vfs, bits):
    # 94 * (4 + TotalVFs * 3) table bits + (TotalVFs + 1) * (2 * 4 + 15) state bits.
    dut = MsixEngine(total_vfs=total_vfs, pf_vectors=4, vf_vectors=3)
    assert MsixEntry.size == 94 and MsixState(4).size == 23
    assert dut.memory_bits == bits


@pytest.mark.parametrize("params", [dict(total_vfs=1, pf_vectors=0, vf_vectors=1),
                                    dict(total_vfs=1, pf_vectors=1, vf_vectors=0),
                                    dict(total_vfs=3, pf_vectors=64, vf_vectors=64),
                                    dict(total_vfs=255, pf_vectors=4, vf_vectors=3)])
def test_elaborates(params):
    rtlil.convert(MsixEngine(**params))


# ------------------------------------------------------------------------------------------------
# Directed behaviour


def test_reset_state():
    """After the power-on sweep: Vector Control reads 1 (masked), PBA 0; past the table 0."""
    async def body(c):
        b = c.b
        for f in range(6):
            n = 4 if f == 0 else 3
            for v in range(n):
                assert await b.read(f, 16 * v + 8) == 1 << 32       # Data 0, Vector Control 1
                assert await b.read(f, 16 * v + 12) == 1 << 32      # offset bits 2:0 ignored
            assert await b.read(f, 16 * n + 8) == 0                 # past the table
            assert await b.read(f, 0, pba=1) == 0
        await c.compare_all()
    checked_run(SMALL, body, name="msix-reset-state")


def test_table_dword_qword_and_byte_enables():
    async def body(c):
        b = c.b
        f, v = 2, 1
        base = 16 * v
        # DWORD writes at every offset of the entry.
        await b.write_dword(f, base + 0, 0xFEE0_1003)
        await b.write_dword(f, base + 4, 0x0000_0001)
        await b.write_dword(f, base + 8, 0x0000_4321)
        await b.write_dword(f, base + 12, 0xFFFF_FFFE)        # reserved bits ignored; unmask
        assert await b.read(f, base) == 0x0000_0001_FEE0_1000   # Address bits 1:0 read 0
        assert await b.read(f, base + 8) == 0x0000_0000_0000_4321
        await b.write_dword(f, base + 12, 0x0000_0001)
        assert await b.read(f, base + 8) == 0x0000_0001_0000_4321
        # QWORD writes, and the model agrees on everything so far.
        c.m.tbl(f, 0, base, 1, 0x0000_0001_FEE0_1000, 0xFF)
        c.m.tbl(f, 0, base + 8, 1, 0x0000_0001_0000_4321, 0xFF)
        await c.tbl(f, base, write=1, data=0x1234_5678_9ABC_DEF3, be=0xFF)
        await c.tbl(f, base + 8, write=1, data=0xAAAA_AAAA_5555_5555, be=0xFF)
        assert await c.tbl(f, base) == 0x1234_5678_9ABC_DEF0
        assert await c.tbl(f, base + 8) == 0x0000_0000_5555_5555    # mask 0 (bit 32 of 0xAA..)
        # Every byte enable pattern, at both QWORDs of the entry.
        rng = random.Random(1)
        for be in range(256):
            for q in (0, 8):
                await c.tbl(f, base + q + rng.choice((0, 4)), write=1,
                            data=rng.getrandbits(64), be=be)
                await c.tbl(f, base + q)
        await c.compare_all([0, 1, 2, 3])
    checked_run(SMALL, body, name="msix-table-access")


def test_isolation():
    """VF 2's writes show nowhere else; the PF's nowhere in a VF."""
    async def body(c):
        for v in range(3):
            await c.program(2, v, 0xFEE0_0000 + 16 * v, 0x100 + v, mask=0)
        for v in range(4):
            await c.program(0, v, 0xABCD_0000 + 16 * v, 0x200 + v, mask=0)
        for f in (1, 3, 4, 5):
            for v in range(3):
                assert await c.tbl(f, 16 * v) == 0
                assert await c.tbl(f, 16 * v + 8) == 1 << 32
        assert await c.tbl(2, 16) == 0xFEE0_0010
        assert await c.tbl(2, 24) == 0x101
        assert await c.tbl(0, 48) == 0xABCD_0030
        await c.compare_all()
    checked_run(SMALL, body, name="msix-isolation")


def test_pba_read_only():
    async def body(c):
        await c.set_vfs(5)
        await c.irq(3, 0)
        await c.irq(3, 2)
        assert await c.tbl(3, 0, pba=1) == 0b101
        await c.tbl(3, 0, pba=1, write=1, data=0, be=0xFF)
        await c.tbl(3, 0, pba=1, write=1, data=(1 << 64) - 1, be=0xFF)
        assert await c.tbl(3, 0, pba=1) == 0b101
        assert await c.tbl(3, 8, pba=1) == 0                     # past the PBA
        assert await c.tbl(2, 0, pba=1) == 0
    checked_run(SMALL, body, name="msix-pba-read-only")


def test_irq_delivered():
    """A deliverable vector: the message is exact, MSG_LATENCY edges after acceptance."""
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        await c.program(4, 2, 0x0000_0012_FEE0_300C, 0xBEEF_0042, mask=0)
        await c.ctrl(4)
        await c.settle()
        await c.irq(4, 2)
        accepted = b.accepted[-1][1]
        await c.settle()
        assert b.msgs == [(4, 0x0000_0012_FEE0_300C, 0xBEEF_0042)]
        assert b.msg_valid_cycles[0] - accepted == MSG_LATENCY
        # The PF too, through its own table.
        await c.program(0, 3, 0xFEE0_0004, 0x77, mask=0)
        await c.ctrl(0)
        await c.irq(0, 3)
        await c.settle()
        assert b.msgs[-1] == (0, 0xFEE0_0004, 0x77)
    checked_run(SMALL, body, name="msix-irq-delivered")


def test_table_latency():
    async def body(c):
        b = c.b
        await c.tbl(1, 8)
        accepted = [cyc for name, cyc in b.accepted if name == "tbl_req"][-1]
        assert b.res_valid_cycles[-1] - accepted == TABLE_LATENCY
    checked_run(SMALL, body, name="msix-table-latency")


def test_pending_then_unmask_by_table_write():
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        await c.program(1, 1, 0xFEE0_0000, 0x11, mask=1)
        await c.ctrl(1)
        await c.irq(1, 1)
        await c.irq(1, 1)                                     # stays one pending bit
        await c.settle()
        assert b.msgs == []
        assert await c.tbl(1, 0, pba=1) == 0b10
        await c.tbl(1, 16 + 8, write=1, data=0, be=0xF0)      # clear Mask only
        await c.settle()
        assert b.msgs == [(1, 0xFEE0_0000, 0x11)]
        assert await c.tbl(1, 0, pba=1) == 0
        await c.tbl(1, 16 + 8, write=1, data=1 << 32, be=0xF0)   # masking again just masks
        await c.tbl(1, 16 + 8, write=1, data=0, be=0xF0)
        await c.settle()
        assert len(b.msgs) == 1
    checked_run(SMALL, body, name="msix-unmask-by-table-write")


@pytest.mark.parametrize("blocked", [dict(function_mask=1), dict(enable=0), dict(bme=0),
                                     dict(d0=0)])
def test_pending_then_delivered_by_ctrl(blocked):
    """Pending while the function is not deliverable; one message when it becomes so."""
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        for v in range(3):
            await c.program(5, v, 0xFEE0_0000 | v << 4, 0x50 + v, mask=0)
        await c.ctrl(5, **blocked)
        await c.irq(5, 2)
        await c.irq(5, 0)
        await c.irq(5, 2)
        await c.tbl(5, 8, write=1, data=0, be=0xF0)           # unmasking changes nothing
        await c.ctrl(5, **blocked)                            # nor does the same state again
        await c.settle()
        assert b.msgs == []
        assert await c.tbl(5, 0, pba=1) == 0b101
        await c.ctrl(5)
        await c.settle()
        assert b.msgs == [(5, 0xFEE0_0000, 0x50), (5, 0xFEE0_0020, 0x52)]   # lowest first
        assert await c.tbl(5, 0, pba=1) == 0
        await c.ctrl(5)
        await c.settle()
        assert len(b.msgs) == 2
    checked_run(SMALL, body, name=f"msix-ctrl-{next(iter(blocked))}")


def test_held_pending_while_bme_0():
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        await c.program(2, 0, 0xFEE0_0000, 0x20, mask=0)
        await c.ctrl(2, bme=0)
        for _ in range(3):
            await c.irq(2, 0)
        await c.tbl(2, 8, write=1, data=0, be=0xF0)
        await b.ticks(50)
        await c.settle()
        assert b.msgs == [] and await c.tbl(2, 0, pba=1) == 1
        await c.ctrl(2, bme=1)
        await c.settle()
        assert b.msgs == [(2, 0xFEE0_0000, 0x20)]
    checked_run(SMALL, body, name="msix-bme-0")


def test_dropped():
    async def body(c):
        b = c.b
        await c.set_vfs(3)
        await c.ctrl(1)
        await c.ctrl(4)
        await c.irq(1, 3)            # VF table size 3: vector 3 is past it
        await c.irq(0, 4)            # PF: 4 vectors
        await c.irq(1, 2047)
        await c.irq(4, 0)            # VF 4 does not exist (NumVFs 3)
        await c.irq(6, 0)            # not a function number at all
        await c.irq(7, 0)
        await c.settle()
        assert b.dropped == 6 and b.msgs == []
        await c.set_vfs(3, vf_enable=0)
        await c.irq(1, 0)
        await c.settle()
        assert b.dropped == 7
        assert await c.tbl(1, 0, pba=1) == 0 and await c.tbl(4, 0, pba=1) == 0
        await c.set_vfs(3)
        await c.irq(1, 0)            # now it exists: pending (masked)
        await c.settle()
        assert b.dropped == 7 and await c.tbl(1, 0, pba=1) == 1
    checked_run(SMALL, body, name="msix-dropped")


def test_no_pf_vectors():
    """pf_vectors = 0: the PF has no MSI-X; its interrupts drop, its table reads 0."""
    params = dict(total_vfs=2, pf_vectors=0, vf_vectors=2)

    async def body(c):
        await c.set_vfs(2)
        await c.ctrl(0)
        await c.irq(0, 0)
        await c.tbl(0, 0, write=1, data=(1 << 64) - 1, be=0xFF)
        assert await c.tbl(0, 8) == 0
        await c.program(1, 1, 0xFEE0_0000, 5, mask=0)
        await c.ctrl(1)
        await c.irq(1, 1)
        await c.settle()
        assert c.b.dropped == 1 and c.b.msgs == [(1, 0xFEE0_0000, 5)]
        await c.compare_all()
    checked_run(params, body, name="msix-no-pf-vectors")


def test_no_vf_vectors():
    params = dict(total_vfs=2, pf_vectors=3, vf_vectors=0)

    async def body(c):
        await c.set_vfs(2)
        await c.ctrl(1)
        await c.irq(1, 0)
        await c.program(0, 2, 0xFEE0_0000, 9, mask=0)
        await c.ctrl(0)
        await c.irq(0, 2)
        await c.settle()
        assert c.b.dropped == 1 and c.b.msgs == [(0, 0xFEE0_0000, 9)]
        await c.compare_all()
    checked_run(params, body, name="msix-no-vf-vectors")


def test_table_size():
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        await c.program(3, 2, 0xFEE0_0020, 0x32, mask=0)
        await c.set_table_size(3, 0)                          # one vector
        assert await c.tbl(3, 32) == 0 and await c.tbl(3, 40) == 0
        await c.tbl(3, 40, write=1, data=0, be=0xFF)          # ignored
        await c.tbl(3, 0, write=1, data=0x1234, be=0x0F)
        assert await c.tbl(3, 0) == 0x1234
        await c.ctrl(3)
        await c.irq(3, 1)
        await c.settle()
        assert b.dropped == 1
        await c.ctrl(3, enable=0)
        await c.set_table_size(3, 2)
        # Grown back: masked again, Address and Data kept (the table memory is not reset).
        assert await c.tbl(3, 40) == (1 << 32) | 0x32
        await c.set_table_size(0, 0)                          # the PF's is fixed
        assert await c.tbl(0, 56) == 1 << 32
        await c.compare_all()
    checked_run(SMALL, body, name="msix-table-size")


def test_reset_fn():
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        for f in (2, 3):
            await c.program(f, 0, 0xFEE0_0000 + f, f, mask=0)
            await c.program(f, 1, 0xFEE0_0100 + f, f, mask=1)
            await c.ctrl(f, function_mask=1)
            await c.irq(f, 0)
            await c.irq(f, 1)
        await c.set_table_size(2, 1)
        await c.reset_fn(2)
        assert await c.tbl(2, 0, pba=1) == 0
        assert await c.tbl(2, 8) == (1 << 32) | 2             # masked; Data kept
        assert await c.tbl(2, 40) == 1 << 32                  # table size back to 3
        await c.irq(2, 0)                                     # Enable is 0 again: pending
        await c.settle()
        assert b.msgs == [] and await c.tbl(2, 0, pba=1) == 1
        assert await c.tbl(3, 0, pba=1) == 0b11               # VF 3 untouched
        await c.ctrl(3)
        await c.settle()
        assert b.msgs == [(3, 0xFEE0_0000, 3)]            # Address bits 1:0 read 0
        await c.compare_all()
    checked_run(SMALL, body, name="msix-reset-fn")


def test_reset_all():
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        for f in range(6):
            await c.program(f, 0, 0xFEE0_0000 + 4 * f, f, mask=0)
            await c.ctrl(f, function_mask=1)
            await c.irq(f, 0)
        await c.settle()
        # busy for the sweep of 6 entries; nothing is taken meanwhile.
        await b.reset_all()
        c.m.reset_all()
        b.present("irq", function=1, vector=0)
        b.present("ctrl", function=1, enable=1, function_mask=0, bme=1, d0=1)
        busy = 0
        while await b.tick():
            busy += 1
        assert busy == 5 + 1, busy                            # IDLE -> SWEEP, then VFs 1..5
        await b.until(lambda: not b._presented, "requests taken")
        c.expected += c.m.ctrl(1, 1, 0, 1, 1)
        c.expected += c.m.irq(1, 0)[0]
        await c.settle()
        assert b.msgs == [] and await c.tbl(1, 0, pba=1) == 1     # masked again
        assert await c.tbl(0, 8) == 0               # the PF's entry is not swept: unmasked
        for f in range(1, 6):
            assert await c.tbl(f, 8) == (1 << 32) | f
        await c.compare_all()
    checked_run(SMALL, body, name="msix-reset-all")


def test_reset_all_during_scan():
    """reset_all while a scan waits on msg.ready: the scan finishes, then the sweep."""
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        for v in range(3):
            await c.program(1, v, 0xFEE0_0000 | v << 4, v, mask=0)
        await c.ctrl(1, bme=0)
        for v in range(3):
            await c.irq(1, v)
        b.msg_ready = 0.0
        await c.ctrl(1)
        await b.ticks(20)
        await b.reset_all()
        assert await b.tick()                                 # busy at once
        b.msg_ready = 1.0
        await c.settle()
        c.m.reset_all()
        await b.wait_idle()
        assert b.msgs == [(1, 0xFEE0_0000 | v << 4, v) for v in range(3)]
        await c.compare_all([1])
    checked_run(SMALL, body, name="msix-reset-all-during-scan")


def test_priority():
    """All five request streams offered in one cycle: reset_fn, ctrl, table_size, tbl_req, irq."""
    async def body(c):
        await c.set_vfs(5)
        await c.program(2, 0, 0xFEE0_0000, 7, mask=0)
        await c.ctrl(2, bme=0)
        await c.irq(2, 0)
        # ctrl delivers the pending vector before tbl_req and irq are taken; reset_fn of another
        # function comes first; the irq after ctrl is delivered at once.
        await c.put(("irq", dict(function=2, vector=0)),
                    ("tbl_req", dict(function=2, pba=1, offset=0, write=0, data=0, be=0xFF)),
                    ("table_size", dict(vf=3, size=0)),
                    ("ctrl", dict(function=2, enable=1, function_mask=0, bme=1, d0=1)),
                    ("reset_fn", dict(function=4)))
        await c.settle()
        assert c.b.msgs == [(2, 0xFEE0_0000, 7)] * 2
    checked_run(SMALL, body, name="msix-priority")


def test_64_vectors():
    """64 vectors: the whole PBA QWORD, vector 63, and the scan's lowest-first order."""
    params = dict(total_vfs=2, pf_vectors=64, vf_vectors=5)

    async def body(c):
        b = c.b
        await c.set_vfs(2)
        order = [63, 0, 31, 32, 1, 62]
        for v in order:
            await c.program(0, v, 0xFEE0_0000 | v << 2, v, mask=0)
        await c.ctrl(0, function_mask=1)
        for v in order:
            await c.irq(0, v)
        assert await c.tbl(0, 0, pba=1) == sum(1 << v for v in order)
        assert await c.tbl(0, 16 * 63 + 8) == 63
        assert await c.tbl(0, 16 * 64 + 8) == 0               # past the table
        await c.ctrl(0)
        await c.settle()
        assert b.msgs == [(0, 0xFEE0_0000 | v << 2, v) for v in sorted(order)]
        await c.irq(1, 4)
        await c.irq(1, 5)                                      # past VF 1's 5 vectors
        await c.settle()
        assert b.dropped == 1 and await c.tbl(1, 0, pba=1) == 1 << 4
        await c.compare_all([1, 2])
    checked_run(params, body, name="msix-64-vectors")


def test_backpressure():
    """msg.ready low for 100 cycles with a message offered, then random: nothing lost,
    duplicated or reordered, and the offered message holds still (the bench checks)."""
    async def body(c):
        b = c.b
        await c.set_vfs(5)
        for f in range(6):
            for v in range(3):
                await c.program(f, v, 0xFEE0_0000 | f << 8 | v << 4, f << 8 | v, mask=v == 1)
            await c.ctrl(f, bme=0)
            for v in range(3):
                await c.irq(f, v)
        b.msg_ready = 0.0
        await c.ctrl(0)
        await b.ticks(100)
        assert b.msgs == [] and b.msg_valid_cycles[0] > b.cycle - 100
        assert len(b.msg_valid_cycles) > 88     # the scan's first message: 11 edges after ctrl
        b.msg_ready = 0.3
        for f in range(1, 6):
            await c.ctrl(f)
        await c.tbl(0, 24, write=1, data=0, be=0xF0)
        for f in range(6):
            await c.irq(f, 2)
        await c.settle()
        assert len(b.msgs) == 6 * 2 + 1 + 6
    checked_run(SMALL, body, name="msix-backpressure")


# ------------------------------------------------------------------------------------------------
# Deep memories: the PF apart, the VF memories in slices and banks (sriov_ep.ram)


@pytest.mark.parametrize("width, depth, banks", [
    (94, 4, [(4, [94])]),                                          # one memory (LUT RAM)
    (94, 40, [(40, [18] * 5 + [4])]),
    (23, 600, [(600, [18, 5])]),
    (35, 2048, [(2048, [9, 9, 9, 8])]),
    (94, 2100, [(2100, [4] * 23 + [2])]),
    (5, 8192, [(8192, [2, 2, 1])]),
    (3, 16384, [(16384, [1, 1, 1])]),
    (2, 2 * 16384 + 700, [(16384, [1, 1]), (16384, [1, 1]), (700, [2])]),
])
def test_sliced_memory(width, depth, banks):
    """SlicedMemory against a dict: one cycle of read latency, read before write, in every
    slice and bank (the engine's tests above only reach its one-memory case)."""
    from amaranth.sim import Simulator

    from sriov_ep.ram import SlicedMemory

    dut = SlicedMemory(width, depth)
    assert dut.banks() == banks
    rng = random.Random(depth)
    # Bank and end boundaries, and a few others: addresses revisited often.
    addrs = sorted({a for a in (0, 1, 511, 512, 16383, 16384, 16385, 32767, 32768,
                                depth - 2, depth - 1) if 0 <= a < depth}
                   | {rng.randrange(depth) for _ in range(6)})
    ref = {}

    async def bench(ctx):
        for _ in range(400):
            addr, we, value = rng.choice(addrs), int(rng.random() < 0.4), rng.getrandbits(width)
            ctx.set(dut.addr, addr)
            ctx.set(dut.w_en, we)
            ctx.set(dut.w_data, value)
            await ctx.tick()
            # The entry read at this edge, as it was before the write (never written:
            # unspecified).
            if addr in ref:
                assert ctx.get(dut.r_data) == ref[addr], f"entry {addr}"
            if we:
                ref[addr] = value
        assert len(ref) == len(addrs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("params, functions", [
    # VF table 16392 entries: a bank of 16384 1-bit slices and one of 8 (LUT RAM); VF state
    # 2049 entries: 4-bit slices.
    (dict(total_vfs=2049, pf_vectors=4, vf_vectors=8), [0, 1, 2, 2047, 2048, 2049]),
    # VF table 2100 entries: 4-bit slices; VF state 35 bits x 700: 18-bit slices.
    (dict(total_vfs=700, pf_vectors=10, vf_vectors=3), [0, 1, 341, 699, 700]),
])
def test_deep_engine(monkeypatch, params, functions):
    """The engine with block RAM sized memories: tables, PBAs, delivery and resets at the first
    and last VFs and around the bank boundary, against the model."""
    monkeypatch.setattr(Bench, "TIMEOUT", 5000)         # the sweeps take TotalVFs + 1 cycles
    T = params["total_vfs"]

    async def body(c):
        b = c.b
        await c.set_vfs(T)
        for f in functions:
            for v in range(c.m.reserved(f)):
                await c.program(f, v, 0xFEE0_0000 | f << 6 | v << 2, f << 8 | v, mask=v == 1)
            await c.ctrl(f, bme=0)
            await c.irq(f, 0)
            await c.irq(f, 1)
        await c.compare_all(functions)
        for f in functions:
            await c.ctrl(f)                              # vector 0 delivered, 1 stays pending
        await c.settle()
        assert b.msgs == [(f, 0xFEE0_0000 | f << 6, f << 8) for f in functions]
        await c.reset_fn(functions[-2])
        await c.irq(functions[-1], 2)
        await c.reset_all()
        await c.compare_all(functions)
        assert await c.tbl(0, 0, pba=1) == 0b10                # the PF's state is not swept
    checked_run(params, body, name=f"msix-deep-{T}")


# ------------------------------------------------------------------------------------------------
# Random operations against the model


async def _random_ops(c, rng, ops):
    """``ops`` random groups of one to three requests offered together, each compared with the
    model: order taken, responses, messages (every 10 groups) and all contents (every 100)."""
    m = c.m
    nf = m.total_vfs + 1

    def request(name):
        if name == "irq":
            if rng.random() < 0.1:                   # past the table, or not a function
                return dict(function=rng.randrange(nf + 2),
                            vector=rng.choice((3, rng.randrange(2048))))
            f = rng.randrange(nf)
            return dict(function=f, vector=rng.randrange(m.reserved(f)))
        if name == "ctrl":
            on = [int(rng.random() < 0.8) for _ in range(4)]
            return dict(function=rng.randrange(nf), enable=on[0], function_mask=1 - on[1],
                        bme=on[2], d0=on[3])
        if name == "reset_fn":
            return dict(function=rng.randrange(nf))
        if name == "table_size":
            return dict(vf=rng.randrange(1, nf),
                        size=rng.choice((rng.randrange(m.vf_vectors),) + (m.vf_vectors - 1,) * 3))
        f = rng.randrange(nf)
        if rng.random() < 0.15:
            return dict(function=f, pba=1, offset=rng.choice((0, 4, 8)),
                        write=int(rng.random() < 0.2), data=rng.getrandbits(64), be=0xFF)
        v = rng.randrange(m.max_vectors + 1)
        half = int(rng.random() < 0.7)                  # mostly Data and Vector Control
        data = rng.getrandbits(64)
        if half and rng.random() < 0.75:
            data &= ~(1 << 32)                           # mostly unmasking writes
        return dict(function=f, pba=0, offset=16 * v + 8 * half + rng.choice((0, 4)),
                    write=int(rng.random() < 0.6), data=data,
                    be=rng.choice((0x0F, 0xF0, 0xF0, 0xFF, rng.randrange(256))))

    weights = {"irq": 10, "ctrl": 5, "tbl_req": 6, "reset_fn": 0.15, "table_size": 0.5}
    for step in range(ops):
        # Now and then fewer VFs, or none, for a short while.
        if rng.random() < (0.015 if m.vf_enable and m.num_vfs == nf - 1 else 0.2):
            await c.set_vfs(rng.choice((nf - 1, nf - 1, nf - 1, nf - 2, 1, 0)),
                            int(rng.random() < 0.8))
        if rng.random() < 0.007:
            await c.reset_all()
            continue
        # dict.fromkeys, not set: the order must not depend on string hashing (reproducible).
        names = dict.fromkeys(rng.choices(list(weights), list(weights.values()),
                                          k=rng.choice((1, 1, 2, 3))))
        reqs = [(name, request(name)) for name in names]
        # The caller's guarantee: a VF's Table Size changes only while its MSI-X is disabled.
        reqs = [(n, p) for n, p in reqs if n != "table_size" or not m.fn[p["vf"]].enable]
        if reqs:
            await c.put(*reqs)
        if step % 10 == 9:
            await c.settle(extra=4)
        if step % 100 == 99:
            await c.compare_all()
    await c.settle()
    await c.compare_all()


def _random_run(seed, ops=400, *, waves_on_failure=True):
    dut = MsixEngine(**SMALL)

    async def body(bench):
        rng = random.Random(seed)
        c = Checked(bench, MsixModel(**SMALL))
        await c.set_vfs(5)
        # Start programmed, with half the vectors unmasked, so that messages flow.
        for f in range(6):
            for v in range(4 if f == 0 else 3):
                await c.program(f, v, rng.getrandbits(62) << 2, rng.getrandbits(32),
                                mask=int(rng.random() < 0.25))
            await c.ctrl(f)
        await _random_ops(c, rng, ops)
        assert len(c.expected) >= ops // 16, f"{len(c.expected)} messages: too few to mean much"

    run(dut, body, name=f"msix-random-{seed}", waves_on_failure=waves_on_failure,
        seed=seed + 1000, msg_ready=0.6, res_ready=0.7)


# Seeds whose runs carry 45-80 messages; the run itself refuses one with fewer than 25.
@pytest.mark.parametrize("seed", [1, 3, 5])
def test_random_against_model(seed):
    _random_run(seed)


def test_checker_catches_a_broken_engine(monkeypatch):
    """The random test fails when the scan sends the highest pending vector but clears the
    lowest one's pending bit (a mis-wired priority encoder)."""
    def highest_set(bits):
        index = Const(0, max(1, (len(bits) - 1).bit_length()))
        for i in range(len(bits)):
            index = Mux(bits[i], i, index)
        return index
    monkeypatch.setattr(interrupts, "_lowest_set", highest_set)
    with pytest.raises(AssertionError, match="messages differ"):
        _random_run(1, waves_on_failure=False)
