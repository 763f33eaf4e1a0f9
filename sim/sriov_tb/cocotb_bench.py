"""cocotb drivers for the exported Verilog top (:func:`sriov_ep.tools.export.to_verilog`).

The exported module ``sriov_ep_top`` has one port per signature member, stream members joined
with ``__``: ``cfg_req__payload`` (the :class:`~sriov_ep.endpoint.ConfigRequest` struct as one
vector), ``cfg_req__valid``, ``cfg_req__ready``, ``cfg_cpl__payload``/``valid``/``ready``,
``mem_req__payload``/``valid``/``ready``, ``mem_res__payload``/``valid``/``ready``, ``clk`` and
``rst``. Payload vectors are packed and unpacked through the project's ``amaranth.lib.data``
layouts (:func:`pack`, :func:`unpack`), never through bit positions written here.

:class:`CocotbConfigDriver` and :class:`CocotbMemoryDriver` have the interface and the cycle
counting of :class:`sriov_tb.host.EndpointDriver` and :class:`sriov_tb.host.MemoryDriver`, so
:func:`sriov_tb.runner.execute` runs unchanged on top of them. For your own bench::

    import cocotb
    from sriov_tb.cocotb_bench import CocotbConfigDriver, reset, start_clock

    @cocotb.test()
    async def read_ids(dut):            # the PF at 01:00.0
        start_clock(dut)
        await reset(dut)
        cfg = CocotbConfigDriver(dut)
        cpl = await cfg.config(type1=0, rid=0x0100, reg=0, be=0xf, write=0, data=0)
        assert cpl.status == "SC"

Build ``sriov_ep_top`` with :func:`sriov_tb.cosim.build`, or with your own
``cocotb_tools.runner`` call (``timescale=("1ns", "1ps")``: the export has no ``timescale``).

Timing convention: a driver call starts and ends just after a rising edge of ``clk``. Inputs
are set there; outputs are sampled at the falling edge before the next rising edge, when they
hold the values that edge acts on. That is what Amaranth's ``ctx.tick().sample(...)`` returns,
so the cycle counts equal those of the Amaranth-simulator drivers.

The module also holds the cocotb test that :func:`sriov_tb.cosim.run_ops_verilator` runs
(:func:`run_job`): it is not exported, so ``from sriov_tb.cocotb_bench import *`` in your own
test module does not pick it up.
"""

import enum as pyenum
import json
import os
import pickle
import traceback
from types import SimpleNamespace

import cocotb
from amaranth.hdl import Shape
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from sriov_ep.decode.bar import MemDecode, MemRequest
from sriov_ep.endpoint import Completion as CompletionLayout
from sriov_ep.endpoint import CompletionStatus, ConfigRequest

from .host import Completion, decode_result

__all__ = ["CLOCK_PERIOD_NS", "CocotbConfigDriver", "CocotbMemoryDriver", "pack", "unpack",
           "reset", "start_clock"]

#: Clock period the cosimulation uses (8 ns, as :data:`sriov_tb.sim.CLOCK_PERIOD`).
CLOCK_PERIOD_NS = 8



# -- Payload packing ---------------------------------------------------------------------------

def _layout(layout):
    return data.Layout.cast(layout)


def pack(layout, values):
    """The integer of a payload vector: ``values`` (a mapping of field name to value) placed at
    the offsets of ``layout`` (a :class:`~amaranth.lib.data.StructLayout` or a ``data.Struct``
    class). Enum members give their value; nested struct fields take a mapping. Fields left out
    are 0; unknown names raise :class:`KeyError`.
    """
    layout = _layout(layout)
    known = {name for name, _ in layout}
    for name in values:
        if name not in known:
            raise KeyError(f"{name!r} is not a field of {layout!r}")
    word = 0
    for name, field in layout:
        if name not in values:
            continue
        value = values[name]
        if isinstance(field.shape, data.Layout):
            value = pack(field.shape, value)
        elif isinstance(value, pyenum.Enum):
            value = value.value
        word |= (int(value) & ((1 << field.width) - 1)) << field.offset
    return word


def unpack(layout, word):
    """Split a payload integer into a ``SimpleNamespace`` of its fields (nested layouts give
    nested namespaces; signed fields are sign-extended; enum fields stay integers)."""
    layout = _layout(layout)
    word = int(word)
    fields = {}
    for name, field in layout:
        value = (word >> field.offset) & ((1 << field.width) - 1)
        if isinstance(field.shape, data.Layout):
            value = unpack(field.shape, value)
        else:
            shape = Shape.cast(field.shape)
            if shape.signed and value >> (field.width - 1):
                value -= 1 << field.width
        fields[name] = value
    return SimpleNamespace(**fields)


def _port(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(f"the design has no port {name!r}: is it sriov_ep_top from "
                             f"sriov_ep.tools.export.to_verilog?") from None


def _check_width(handle, layout, name):
    size = _layout(layout).size
    if len(handle) != size:
        raise ValueError(f"{name} is {len(handle)} bits wide, its layout {size}: the bench and "
                         f"the design disagree (tag_width or TotalVFs?)")


def start_clock(dut, period_ns=CLOCK_PERIOD_NS):
    """Start the clock on ``dut.clk``."""
    clock = Clock(dut.clk, period_ns, unit="ns")
    clock.start()
    return clock


async def reset(dut, *, cycles=4, timeout=1_000_000):
    """Hold ``rst`` high for ``cycles`` clock cycles with every request channel idle, then wait
    until ``cfg_req__ready`` goes high (the endpoint clears its per-VF state after reset, which
    takes TotalVFs cycles). Returns just after a rising edge of ``clk``.
    """
    clk = dut.clk
    dut.cfg_req__valid.value = 0
    dut.cfg_cpl__ready.value = 0
    dut.mem_req__valid.value = 0
    dut.mem_res__ready.value = 0
    dut.vf_bme_query.value = 0
    dut.rst.value = 1
    await ClockCycles(clk, cycles, rising=True)
    dut.rst.value = 0
    waited = 0
    while True:
        await FallingEdge(clk)
        ready = int(dut.cfg_req__ready.value)
        await RisingEdge(clk)
        if ready:
            return
        waited += 1
        if waited > timeout:
            raise TimeoutError(f"cfg_req__ready still low {timeout} cycles after reset")


class _StreamPorts:
    """The ``payload``, ``valid`` and ``ready`` ports of an exported stream ``<name>__*``."""

    def __init__(self, dut, name):
        self.payload = _port(dut, f"{name}__payload")
        self.valid   = _port(dut, f"{name}__valid")
        self.ready   = _port(dut, f"{name}__ready")


async def _stream_transaction(clk, req, res, word, res_layout, *, timeout, what):
    """Send ``word`` on ``req``, take one payload from ``res``: ``(unpacked, cycles)``.

    Inputs change just after a rising edge and outputs are read at the falling edge, which is
    the value the rising edge samples: ``cycles`` counts edges as
    :func:`sriov_tb.host.stream_transaction` does.
    """
    req.payload.value = word
    req.valid.value = 1
    res.ready.value = 1
    waited = 0
    while True:
        await FallingEdge(clk)
        ready = int(req.ready.value)
        await RisingEdge(clk)
        if ready:
            break
        waited += 1
        if waited > timeout:
            raise TimeoutError(f"{what} not accepted after {timeout} cycles")
    req.valid.value = 0
    cycles = 0
    while True:
        cycles += 1
        await FallingEdge(clk)
        valid = int(res.valid.value)
        if valid:
            response = unpack(res_layout, res.payload.value)
        await RisingEdge(clk)
        if valid:
            break
        if cycles > timeout:
            raise TimeoutError(f"no response to the {what} after {timeout} cycles")
    res.ready.value = 0
    return response, cycles


class CocotbConfigDriver:
    """Drive ``cfg_req``/``cfg_cpl`` of the exported top: :class:`sriov_tb.host.EndpointDriver`
    for cocotb.

    ``await config(type1, rid, reg, be, write, data)`` returns a
    :class:`sriov_tb.host.Completion` whose ``cycles`` counts clock edges from the one that
    accepted the request to the one that transferred the completion (``cfg_cpl__ready`` is held
    high meanwhile).
    """

    def __init__(self, dut, clk=None, *, timeout=1_000_000):
        self.dut     = dut
        self.clk     = clk if clk is not None else _port(dut, "clk")
        self.timeout = timeout
        self._req = _StreamPorts(dut, "cfg_req")
        self._cpl = _StreamPorts(dut, "cfg_cpl")
        _check_width(self._req.payload, ConfigRequest, "cfg_req__payload")
        _check_width(self._cpl.payload, CompletionLayout, "cfg_cpl__payload")

    async def config(self, type1, rid, reg, be, write, data):
        payload, cycles = await _stream_transaction(
            self.clk, self._req, self._cpl,
            pack(ConfigRequest, {"type1": type1, "rid": rid, "reg": reg, "be": be,
                                 "write": write, "data": data}),
            CompletionLayout, timeout=self.timeout, what="config request")
        status = "SC" if payload.status == CompletionStatus.SC.value else "UR"
        return Completion(status, payload.data, cycles)


class _TotalVfs:
    """Stands in for :class:`EndpointParams` in :func:`MemDecode`, which only reads total_vfs."""

    def __init__(self, total_vfs):
        self.total_vfs = total_vfs


class CocotbMemoryDriver:
    """Drive ``mem_req``/``mem_res`` of the exported top: :class:`sriov_tb.host.MemoryDriver` for
    cocotb.

    ``await decode(addr, write)`` returns a :class:`sriov_tb.host.MemDecodeResult` whose
    ``cycles`` counts clock edges from the one accepting the request to the one transferring its
    result. The decode result layout needs TotalVFs: give ``params``, or it is found from the
    width of ``mem_res__payload``.
    """

    def __init__(self, dut, tag_width=8, *, params=None, clk=None, timeout=100_000):
        self.dut       = dut
        self.clk       = clk if clk is not None else _port(dut, "clk")
        self.timeout   = timeout
        self.tag_width = tag_width
        self.tag       = 0
        self._req = _StreamPorts(dut, "mem_req")
        self._res = _StreamPorts(dut, "mem_res")
        self.req_layout = MemRequest(tag_width)
        _check_width(self._req.payload, self.req_layout, "mem_req__payload")
        if params is None:
            # Only the VF number's width depends on TotalVFs: find it from the port width.
            vf_width = len(self._res.payload) - MemDecode(_TotalVfs(0), tag_width).size
            params = _TotalVfs((1 << max(vf_width, 0)) - 1)
        self.res_layout = MemDecode(params, tag_width)
        _check_width(self._res.payload, self.res_layout, "mem_res__payload")

    async def decode(self, addr, write):
        self.tag = (self.tag + 1) % (1 << self.tag_width)
        res, cycles = await _stream_transaction(
            self.clk, self._req, self._res,
            pack(self.req_layout, {"addr": addr, "write": write, "tag": self.tag}),
            self.res_layout, timeout=self.timeout, what="memory request")
        return decode_result(res, addr, write, self.tag, cycles)


# -- The test that sriov_tb.cosim runs ---------------------------------------------------------

class _Stopped(Exception):
    pass


def _transaction_line(txn, line):
    """One transaction for the parent: its class, its fields and the script line it came from."""
    fields = {name: getattr(txn, name) for name in txn.__dataclass_fields__}
    return json.dumps({"type": type(txn).__name__, "fields": fields, "line": line})


@cocotb.test()
async def run_job(dut):
    """Run the job named by ``$SRIOV_EP_COSIM_JOB`` (written by :mod:`sriov_tb.cosim`).

    The job is a pickled dict: ``params``, ``ops``, ``options`` (keyword arguments of
    :func:`sriov_tb.runner.execute`), ``transactions`` (a file to append one JSON line per
    transaction to, as it happens), ``stop`` (a file whose existence asks the run to stop) and
    ``result`` (a file for the pickled outcome: ``dumps``, ``compared`` and ``failure``, a
    ``(kind, message)`` pair or None). The test itself passes whatever the job's outcome.
    """
    from .cosim import JOB_ENV
    from .runner import RunFailure, RunResult, execute

    path = os.environ.get(JOB_ENV)
    if not path:
        raise RuntimeError(f"{JOB_ENV} is not set: this test is run by sriov_tb.cosim")
    with open(path, "rb") as f:
        job = pickle.load(f)
    params, ops, options = job["params"], job["ops"], job["options"]
    stop_path = job["stop"]

    result = RunResult()
    outcome = {"dumps": {}, "compared": 0, "failure": None}
    with open(job["transactions"], "w", buffering=1) as out:
        def emit(record):
            if os.path.exists(stop_path):
                raise _Stopped()
            txn = result.transactions[-1]
            out.write(_transaction_line(txn, json.loads(record)["line"]) + "\n")

        async def idle(cycles):
            await ClockCycles(dut.clk, cycles, rising=True)

        start_clock(dut)
        try:
            await reset(dut)
            await execute(params, ops, cfg_driver=CocotbConfigDriver(dut),
                          mem_driver=CocotbMemoryDriver(dut, params=params), idle=idle,
                          result=result, emit=emit, json=True, **options)
        except RunFailure as exc:
            outcome["failure"] = ("RunFailure", str(exc))
        except _Stopped:
            outcome["failure"] = ("Stopped", "stopped by the caller")
        except TimeoutError as exc:
            outcome["failure"] = ("TimeoutError", str(exc))
        except Exception as exc:
            outcome["failure"] = (type(exc).__name__,
                                  "".join(traceback.format_exception(exc)).rstrip())
    outcome["dumps"] = dict(result.dumps)
    outcome["compared"] = result.compared
    tmp = job["result"] + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(outcome, f)
    os.replace(tmp, job["result"])
