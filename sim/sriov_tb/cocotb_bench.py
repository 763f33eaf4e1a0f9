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

import copy
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
from sriov_ep.endpoint import (
    ConfigRequest,
    InterruptRequest,
    MsixMessage,
    UserConfigRequest,
    UserConfigResponse,
    pf_index_width,
)
from sriov_ep.params import EndpointParams

from .host import (
    MSG_QUIET,
    access_result,
    decode_result,
    reissue_on_rrs,
    user_config_call,
)

__all__ = ["CLOCK_PERIOD_NS", "CocotbConfigDriver", "CocotbMemoryDriver",
           "CocotbInterruptDriver", "start_user_config_responder", "pack", "unpack",
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
    until ``cfg_req__ready`` goes high (at once: while the endpoint clears its per-VF state after
    reset, TotalVFs cycles, its config requests complete with Request Retry Status, which
    :class:`CocotbConfigDriver` reissues). Returns just after a rising edge of ``clk``.
    """
    clk = dut.clk
    for name in ("cfg_req__valid", "cfg_cpl__ready", "mem_req__valid", "mem_res__ready",
                 "vf_bme_query", "irq__valid", "msg__ready", "vf_msix_size__valid",
                 "ucfg_req__ready", "ucfg_res__valid"):
        if hasattr(dut, name):
            getattr(dut, name).value = 0
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
    high meanwhile). Request Retry Status completions are reissued as
    :class:`~sriov_tb.host.EndpointDriver` does (``retry_rrs``, ``rrs_retries``).
    """

    def __init__(self, dut, clk=None, *, timeout=1_000_000, retry_rrs=True):
        self.dut     = dut
        self.clk     = clk if clk is not None else _port(dut, "clk")
        self.timeout = timeout
        self.retry_rrs = retry_rrs
        self.rrs_retries = 0
        self.rrs_by_rid = {}
        self._req = _StreamPorts(dut, "cfg_req")
        self._cpl = _StreamPorts(dut, "cfg_cpl")
        _check_width(self._req.payload, ConfigRequest, "cfg_req__payload")
        _check_width(self._cpl.payload, CompletionLayout, "cfg_cpl__payload")

    async def config(self, type1, rid, reg, be, write, data):
        def attempt():
            return _stream_transaction(
                self.clk, self._req, self._cpl,
                pack(ConfigRequest, {"type1": type1, "rid": rid, "reg": reg, "be": be,
                                     "write": write, "data": data}),
                CompletionLayout, timeout=self.timeout, what="config request")
        return await reissue_on_rrs(self, attempt, rid)


class _TotalVfs:
    """Stands in for :class:`EndpointParams` of one PF in :func:`MemDecode` and the interrupt
    layouts, which only read total_vfs."""

    def __init__(self, total_vfs):
        self.total_vfs = total_vfs


def _num_pfs(params):
    return params.num_pfs if isinstance(params, EndpointParams) else 1


def _size_layout(params):
    """Layout of ``vf_msix_size``'s payload: ``pf`` (with several PFs), ``vf``, ``count``."""
    if _num_pfs(params) > 1:
        max_vfs = max(pf.total_vfs for pf in params.pfs)
        return data.StructLayout({"pf": pf_index_width(params), "vf": range(max_vfs + 1),
                                  "count": 12})
    return data.StructLayout({"vf": range(params.total_vfs + 1), "count": 12})


class CocotbMemoryDriver:
    """Drive ``mem_req``/``mem_res`` of the exported top: :class:`sriov_tb.host.MemoryDriver` for
    cocotb.

    ``await decode(addr, write)`` returns a :class:`sriov_tb.host.MemDecodeResult` whose
    ``cycles`` counts clock edges from the one accepting the request to the one transferring its
    result. The decode result layout needs TotalVFs: give ``params``, or it is found from the
    width of ``mem_res__payload`` (for one PF only: a device of several PFs needs ``params``).
    With several PFs the result's ``pf`` is the claiming function's PF index.
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
        res, cycles = await self._request(addr, write, 0, 0)
        return decode_result(res, addr, write, self.tag, cycles)

    async def access(self, addr, write, data=0, be=0xFF):
        """:meth:`sriov_tb.host.MemoryDriver.access`: one request on the aligned QWORD holding
        ``addr``, a :class:`sriov_tb.host.MemAccessResult`."""
        res, cycles = await self._request(addr, write, data, be)
        decode_result(res, addr, write, self.tag, cycles)
        return access_result(res, write, cycles)

    async def _request(self, addr, write, data, be):
        self.tag = (self.tag + 1) % (1 << self.tag_width)
        return await _stream_transaction(
            self.clk, self._req, self._res,
            pack(self.req_layout, {"addr": addr, "write": write, "tag": self.tag,
                                   "data": data, "be": be}),
            self.res_layout, timeout=self.timeout, what="memory request")


def _fits(value, width):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << width


class CocotbInterruptDriver:
    """Drive ``irq``, ``msg``, ``irq_dropped``, ``vf_msix_size`` and ``vf_msix_size_done`` of the
    exported top: :class:`sriov_tb.host.InterruptDriver` for cocotb, with the same calls and the
    same timing (``msg__ready`` high only during a call; :meth:`settle` after every write).

    The layouts need TotalVFs: give ``params``, or it is found from the width of
    ``irq__payload`` (for one PF only: a device of several PFs needs ``params``). With several
    PFs, :meth:`interrupt` and :meth:`vf_msix_count` take ``pf=k`` and :meth:`messages` gives
    ``(function, address, data, pf)``, as :class:`sriov_tb.host.InterruptDriver` does.
    """

    def __init__(self, dut, *, params=None, clk=None, quiet=MSG_QUIET, timeout=100_000):
        self.dut     = dut
        self.clk     = clk if clk is not None else _port(dut, "clk")
        self.quiet   = quiet
        self.timeout = timeout
        self._irq  = _StreamPorts(dut, "irq")
        self._msg  = _StreamPorts(dut, "msg")
        self._size = _StreamPorts(dut, "vf_msix_size")
        self._dropped = _port(dut, "irq_dropped")
        self._done    = _port(dut, "vf_msix_size_done")
        if params is None:
            fn_width = len(self._irq.payload) - 11
            params = _TotalVfs((1 << max(fn_width, 0)) - 1)
        self.irq_layout  = InterruptRequest(params)
        self.msg_layout  = MsixMessage(params)
        self.size_layout = _size_layout(params)
        self._multi = _num_pfs(params) > 1
        self._pf_width = pf_index_width(params) if self._multi else 0
        self.done_layout = data.StructLayout({"valid": 1, "ok": 1})
        _check_width(self._irq.payload, self.irq_layout, "irq__payload")
        _check_width(self._msg.payload, self.msg_layout, "msg__payload")
        _check_width(self._size.payload, self.size_layout, "vf_msix_size__payload")
        self._fn_width  = _layout(self.irq_layout)["function"].width
        self._vf_width  = _layout(self.size_layout)["vf"].width
        self._log  = []
        self._seen = 0

    async def _tick(self, *handles):
        """One rising edge with ``msg__ready`` as set: ``(message or None, irq_dropped,
        *values)``, sampled at the falling edge before it (a message taken is logged)."""
        await FallingEdge(self.clk)
        valid = int(self._msg.valid.value) and int(self._msg.ready.value)
        message = None
        if valid:
            p = unpack(self.msg_layout, self._msg.payload.value)
            message = (p.function, p.addr, p.data)
            if self._multi:
                message += (p.pf,)
        dropped = int(self._dropped.value)
        values = [int(h.value) for h in handles]
        await RisingEdge(self.clk)
        if message is not None:
            self._log.append(message)
        return (message, dropped, *values)

    async def _until_quiet(self, on_tick=None):
        quiet = waited = 0
        while quiet < self.quiet:
            message, dropped = await self._tick()
            if on_tick is not None:
                on_tick(message, dropped)
            quiet = 0 if message is not None else quiet + 1
            waited += 1
            if waited > self.timeout:
                raise TimeoutError(f"MSI-X messages still coming after {self.timeout} cycles")

    async def settle(self):
        self._msg.ready.value = 1
        await self._until_quiet()
        self._msg.ready.value = 0

    def _pf_fits(self, pf):
        return pf == 0 or (self._multi and _fits(pf, self._pf_width))

    async def interrupt(self, function, vector, pf=0):
        if not (_fits(function, self._fn_width) and _fits(vector, 11) and self._pf_fits(pf)):
            return "dropped"
        self._msg.ready.value = 1
        payload = {"function": function, "vector": vector}
        if self._multi:
            payload["pf"] = pf
        self._irq.payload.value = pack(self.irq_layout, payload)
        self._irq.valid.value = 1
        outcome = {"dropped": False, "sent": False}

        def note(message, dropped):
            outcome["dropped"] |= bool(dropped)
            if message is not None and message[0] == function \
                    and (not self._multi or message[3] == pf):
                outcome["sent"] = True

        waited = 0
        while True:
            message, dropped, ready = await self._tick(self._irq.ready)
            note(message, dropped)
            waited += 1
            if ready:
                break
            if waited > self.timeout:
                raise TimeoutError(f"interrupt request not accepted after {self.timeout} cycles")
        self._irq.valid.value = 0
        await self._until_quiet(on_tick=note)
        self._msg.ready.value = 0
        if outcome["dropped"]:
            return "dropped"
        return "sent" if outcome["sent"] else "pending"

    def messages(self):
        new = self._log[self._seen:]
        self._seen = len(self._log)
        return list(new)

    async def vf_msix_count(self, vf, count, pf=0):
        if not (_fits(vf, self._vf_width) and _fits(count, 12) and self._pf_fits(pf)):
            return False
        payload = {"vf": vf, "count": count}
        if self._multi:
            payload["pf"] = pf
        self._size.payload.value = pack(self.size_layout, payload)
        self._size.valid.value = 1
        accepted = False
        waited = 0
        while True:
            await FallingEdge(self.clk)
            ready = int(self._size.ready.value)
            done = unpack(self.done_layout, self._done.value)
            await RisingEdge(self.clk)
            if accepted and done.valid:
                return bool(done.ok)
            if ready and not accepted:
                accepted = True
                self._size.valid.value = 0
            waited += 1
            if waited > self.timeout:
                raise TimeoutError(f"VF Table Size request not done after {self.timeout} "
                                   f"cycles")


def start_user_config_responder(dut, handler, *, params, clk=None, latency=0):
    """Start (``cocotb.start_soon``) the user logic behind ``ucfg_req``/``ucfg_res``:
    :func:`sriov_tb.host.user_config_responder` for cocotb, calling ``handler.read`` /
    ``handler.write`` as the reference model does. Returns the task."""
    clk = clk if clk is not None else _port(dut, "clk")
    req, res = _StreamPorts(dut, "ucfg_req"), _StreamPorts(dut, "ucfg_res")
    req_layout = UserConfigRequest(params)
    _check_width(req.payload, req_layout, "ucfg_req__payload")
    _check_width(res.payload, UserConfigResponse, "ucfg_res__payload")

    async def serve():
        req.ready.value = 1
        while True:
            await FallingEdge(clk)
            valid = int(req.valid.value)
            if valid:
                p = unpack(req_layout, req.payload.value)
            await RisingEdge(clk)
            if not valid:
                continue
            req.ready.value = 0
            value = user_config_call(handler, p)
            for _ in range(latency):
                await RisingEdge(clk)
            res.payload.value = pack(UserConfigResponse, {"data": value, "tag": p.tag})
            res.valid.value = 1
            while True:
                await FallingEdge(clk)
                ready = int(res.ready.value)
                await RisingEdge(clk)
                if ready:
                    break
            res.valid.value = 0
            req.ready.value = 1

    return cocotb.start_soon(serve())


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
    ``result`` (a file for the pickled outcome: ``dumps``, ``compared``, ``rrs_retries`` and
    ``failure``, a ``(kind, message)`` pair or None). Each configuration-space dump also goes to the
    transactions file as soon as it is read (a ``dump`` line). The test itself passes whatever
    the job's outcome.

    The outcome's ``waves`` is what the waveform's transaction tracks need
    (:func:`sriov_tb.waves.annotate`): ``calls``, ``(number, start, end)`` in femtoseconds of
    simulated time for every config and memory driver call (from just after the clock edge it
    starts at to the edge that completes it), and the host's ``texts``, ``steps`` and ``failure``
    (a :class:`sriov_tb.waves.Failure` or None) of a :class:`sriov_tb.waves.Tracer`.
    """
    from cocotb.utils import get_sim_time

    from . import waves as wv
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
    outcome = {"dumps": {}, "compared": 0, "failure": None, "rrs_retries": 0}
    cfg_driver = CocotbConfigDriver(dut)
    calls = []
    running = {}

    def mark(number):
        # The tracer's bench signal: the times of each driver call instead.
        now = round(get_sim_time("fs"))
        if number:
            running["call"] = (number, now)
        elif "call" in running:
            started = running.pop("call")
            calls.append((started[0], started[1], now))

    tracer = wv.Tracer(mark)
    with open(job["transactions"], "w", buffering=1) as out:
        def emit(record):
            if os.path.exists(stop_path):
                raise _Stopped()
            txn = result.transactions[-1]
            out.write(_transaction_line(txn, json.loads(record)["line"]) + "\n")

        def dump(rid, image):
            out.write(json.dumps({"type": "dump", "rid": rid, "image": image.hex()}) + "\n")

        async def idle(cycles):
            await ClockCycles(dut.clk, cycles, rising=True)

        start_clock(dut)
        try:
            await reset(dut)
            user = options.get("user")
            if user is not None:        # the design's copy; execute gives the model the other
                start_user_config_responder(dut, copy.deepcopy(user), params=params)
            await execute(params, ops, cfg_driver=cfg_driver,
                          mem_driver=CocotbMemoryDriver(dut, params=params),
                          irq_driver=CocotbInterruptDriver(dut, params=params), idle=idle,
                          result=result, emit=emit, json=True, on_dump=dump, tracer=tracer,
                          **options)
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
    outcome["rrs_retries"] = cfg_driver.rrs_retries
    outcome["rrs_by_rid"] = dict(cfg_driver.rrs_by_rid)
    failure = tracer.failure
    if failure is None and outcome["failure"] is not None:
        kind, message = outcome["failure"]
        failure = wv.Failure(0, wv._ascii(f"{kind}: {message}".splitlines()[0]))
    outcome["waves"] = {"calls": calls, "texts": tracer.texts, "steps": tracer.steps,
                        "failure": failure}
    tmp = job["result"] + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(outcome, f)
    os.replace(tmp, job["result"])
