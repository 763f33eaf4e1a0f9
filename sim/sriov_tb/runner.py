"""Run transaction scripts and scenarios against the RTL, checked by the reference model."""

import copy
import json as jsonlib
from dataclasses import dataclass, field

from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import format_bdf

from .cfg import Mismatch
from .host import (
    BarMemories,
    EndpointDriver,
    HostError,
    InterruptDriver,
    InterruptPort,
    LinuxHost,
    MemoryDriver,
    MemoryPort,
    MemTransaction,
    ModelEndpointPort,
    ModelInterruptPort,
    MsixTransaction,
    RootPort,
    Scoreboard,
    SettledDriver,
    memory_transaction,
    user_config_responder,
)
from .linux import SriovError
from .model import EndpointModel
from .script import Op, ScriptError
from .sim import WaveSetup, simulate

__all__ = ["RunFailure", "RunResult", "builtin_scenario", "check_ops", "execute", "run_ops",
           "format_dump", "traces_of"]


class RunFailure(Exception):
    """A script or scenario failed: an expectation, a model mismatch, or the host gave up."""


@dataclass
class RunResult:
    transactions: list = field(default_factory=list)
    #: 4 KiB configuration space images read at the end, as ``{rid: bytes}`` (PF first).
    dumps: dict = field(default_factory=dict)
    compared: int = 0
    #: Config requests the design completed with Request Retry Status (it was clearing its VF
    #: state after a reset) and the driver reissued, as a Root Complex does.
    rrs_retries: int = 0
    #: The same per Routing ID (``{rid: retries}``), from the Amaranth backend.
    rrs_by_rid: dict = field(default_factory=dict)
    #: The waveform written (:class:`sriov_tb.waves.WaveFiles`), if one was asked for.
    waves: object = None


def builtin_scenario(params):
    """Enumerate, enable InitialVFs on each PF, walk every VF (as ops without a source file)."""
    ops = [Op("enable", 0, f"enable {format_bdf(pf.pf_rid)} {pf.initial_vfs}", rid=pf.pf_rid,
              count=pf.initial_vfs) for pf in params.pfs]
    ops.append(Op("walk", 0, "walk every VF", rid=params.pfs[0].pf_rid))
    return ops


def traces_of(dut):
    """Signals grouped for GTKWave: config request, completion, decoder, SR-IOV state,
    events. With several PFs the decoder group has ``pf`` and the SR-IOV state and events
    groups hold every PF's signals, in PF order."""
    dec = dut.decoder
    pfs = [dut.pfs[k] for k in range(len(dut.pfs))]
    if len(pfs) == 1:
        pf0 = pfs[0]
        decoder = [dec.type1, dec.rid, dec.bus, dec.ari, dec.target, dec.vf]
        state = [pf0.vf_enable, pf0.vf_mse, dut.ari_capable_hierarchy, pf0.num_vfs,
                 pf0.first_vf_offset, pf0.vf_stride, pf0.vf_reset_busy]
        events = [pf0.flr, dut.vf_flr, pf0.vfs_reset]
    else:
        decoder = [dec.type1, dec.rid, dec.bus, dec.ari, dec.target, dec.pf, dec.vf]
        state = [dut.ari_capable_hierarchy]
        events = [dut.vf_flr]
        for pf in pfs:
            state += [pf.vf_enable, pf.vf_mse, pf.num_vfs, pf.first_vf_offset, pf.vf_stride,
                      pf.vf_reset_busy]
            events += [pf.flr, pf.vfs_reset]
    return {
        "config_request": dut.cfg_req,
        "completion": dut.cfg_cpl,
        "decoder": decoder,
        "sriov_state": state,
        "events": events,
    }


def _labeller(host, pf_rids):
    """The wave tracks' name of a Routing ID: its function number, and on a device of several
    PFs ``(n, PF's BDF)`` for VF n (``VF 2 of 01:00.1``). A PF the host has not enumerated
    yet (``pf_rids``: the device's) is a PF all the same."""
    def label(rid):
        found = host.pf_function_of(rid)
        if found is None:
            return 0 if rid in pf_rids else None
        k, function = found
        pf_bdf = host.pf_bdf(k)
        return (function, pf_bdf) if function and pf_bdf is not None else function
    return label


def _transaction_record(txn, op):
    record = txn.as_dict()
    record["line"] = op.line
    return record


def check_ops(ops, filename="<script>", *, raw_tlps=False):
    """Refuse operations no backend can run (raises :class:`ScriptError`), and raw TLPs
    (``tlp``) unless ``raw_tlps`` (the ``tlp`` backend). A stimulus made during the run
    (``ops`` callable, see :func:`execute`) is its maker's to keep valid."""
    if callable(ops):
        return
    for op in ops:
        if op.kind == "tlp" and not raw_tlps:
            raise ScriptError(filename, op.line, "tlp: raw TLPs need --backend tlp")
        if op.kind in ("memrd", "memwr") and (op.addr & 0xfff) + op.size > 0x1000:
            raise ScriptError(filename, op.line, f"{op.kind} at {op.addr:#x} of {op.size} "
                                                 f"bytes crosses a 4 KiB boundary, which a PCIe "
                                                 f"request must not")


async def execute(params, ops, *, cfg_driver, mem_driver, idle, result, filename="<script>",
                  emit=None, json=False, ari=True, page_size=4096, dump_rids=None,
                  dump_enabled=False, irq_driver=None, user=None, on_transaction=None,
                  on_dump=None, tracer=None, raw_driver=None):
    """Run ``ops`` through a design reached by ``cfg_driver`` (``async config(...)``) and
    ``mem_driver`` (``async decode(addr, write)``), checking everything against a fresh
    :class:`EndpointModel`. ``idle(n)`` waits ``n`` clock cycles. Backend-independent: the
    Amaranth simulator and the cocotb bench both call it. Fills ``result``.

    ``on_transaction(txn)`` sees every record as it is made (a progress display);
    ``on_dump(rid, image)`` every function's configuration space as soon as it is read.

    With a ``mem_driver`` that has ``access`` (MSI-X tables), memory operations go through it;
    ``irq_driver`` (``interrupt``, ``messages``, ``vf_msix_count``) runs the ``msix`` ops, and
    the MSI-X messages it delivers are printed after the transaction that caused them. An
    ``irq_driver`` with ``settle()`` (an RTL driver) is called after every config and memory
    write, so that the messages a write caused are in before they are compared. ``user`` is the
    model's handler of the user configuration windows (the design's user logic is the caller's).
    ``tracer`` (a :class:`sriov_tb.waves.Tracer`) learns which transaction each request belongs
    to and what the host recorded, for the waveform's transaction tracks. ``raw_driver`` (a
    :class:`sriov_tb.tlp_host.TlpRawDriver`) runs the ``tlp`` ops.

    ``ops`` is a list of :class:`~sriov_tb.script.Op`, or a callable ``ops(host, root)`` that
    returns an iterable of them, made once the host exists: a stimulus that chooses each
    operation from the state the operations before it left (``root.model``, the
    :class:`EndpointModel` every completion is checked against; ``host``, the
    :class:`sriov_tb.host.LinuxHost`), as :mod:`sriov_tb.regress` does.
    """
    model = EndpointModel(params, user=user)
    if tracer is not None:
        cfg_driver = tracer.wrap(cfg_driver)
        mem_driver = tracer.wrap(mem_driver)
    if irq_driver is not None and hasattr(irq_driver, "settle"):
        cfg_driver = SettledDriver(cfg_driver, irq_driver.settle)
        mem_driver = SettledDriver(mem_driver, irq_driver.settle)
    board = Scoreboard(cfg_driver, ModelEndpointPort(model))
    current = {"op": Op("none", 0, "")}

    def record(txn):
        result.transactions.append(txn)
        if tracer is not None:
            tracer.record(txn, current["op"])
        if on_transaction is not None:
            on_transaction(txn)
        if emit is not None:
            if json:
                emit(jsonlib.dumps(_transaction_record(txn, current["op"])))
            else:
                emit(str(txn))

    root = RootPort(board, secondary_bus=params.bus, on_transaction=record)
    host = LinuxHost(root, params.pfs[0].pf_rid, ari=ari, page_size=page_size)
    if tracer is not None:
        tracer.label = _labeller(host, {pf.pf_rid for pf in params.pfs})
    root.mem = MemoryPort(mem_driver, model)
    root.memories = BarMemories()
    root.model = model
    root.raw = raw_driver
    if irq_driver is not None:
        root.irq = InterruptPort(irq_driver, ModelInterruptPort(model))
    for op in (ops(host, root) if callable(ops) else ops):
        current["op"] = op
        root.step = f"line {op.line}" if op.line else ""
        where = f"{filename}:{op.line}: " if op.line else ""
        try:
            await _run_op(idle, host, root, op)
        except (Mismatch, HostError, SriovError, _Unexpected) as exc:
            failure = RunFailure(f"{where}{op.text}: {exc}")
            if tracer is not None:
                tracer.fail(str(failure))
            raise failure from None
    current["op"] = Op("dump", 0, "dump")
    rids = list(dump_rids or [])
    if dump_enabled:
        pfs = [state.rid for state in host.pfs] or [pf.pf_rid for pf in params.pfs]
        rids = pfs + [vf.rid for vf in host.vfs]
        if len(pfs) > 1:
            rids.sort()                 # as lspci lists them: by Routing ID
    root.step = "dump"
    for rid in rids:
        space = root.function(rid)
        image = bytearray()
        for offset in range(0, 0x1000, 4):
            image += (await space.read32(offset)).to_bytes(4, "little")
        result.dumps[rid] = bytes(image)
        if on_dump is not None:
            on_dump(rid, result.dumps[rid])
    result.compared = board.compared + root.mem.compared \
        + (root.irq.compared if root.irq is not None else 0) \
        + (raw_driver.compared if raw_driver is not None else 0)
    return result


def run_ops(params, ops, *, filename="<script>", emit=None, json=False, vcd=None, ari=True,
            page_size=4096, dump_rids=None, dump_enabled=False, user=None, on_transaction=None,
            on_dump=None, wave_from=None, wave_to=None, waves_on_failure=True):
    """Run ``ops`` (from :func:`sriov_tb.script.parse_script`) against the RTL in Amaranth's
    simulator, checking every completion, memory decode, MSI-X table access, interrupt and
    message against :class:`EndpointModel`.

    ``user``: a handler of the user configuration windows (``read(function, window, dword)``,
    ``write(function, window, dword, be, data)``, as :class:`EndpointModel` takes it); the design
    gets a copy served by :func:`sriov_tb.host.user_config_responder`, the model another copy.
    Without one, nothing answers the design's user requests (they time out; the model reads 0).

    ``emit`` receives one output line per transaction (text, or JSON with ``json=True``).
    ``dump_rids`` lists functions whose 4 KiB configuration space is read at the end;
    ``dump_enabled`` adds the PF and every enabled VF. ``on_transaction`` and ``on_dump``: see
    :func:`execute`. Raises :class:`RunFailure`.

    Waveforms (:mod:`sriov_tb.waves`): ``vcd`` names a VCD to write (with a GTKWave save file
    beside it), limited to ``wave_from``..``wave_to`` (:class:`sriov_tb.waves.WaveBound`:
    transaction numbers or times) if given. On a failure without ``vcd`` (and with
    ``waves_on_failure``) the run is repeated to write ``build/waves/sriov-ep-sim.vcd``, marked
    at the failing transaction; the :class:`RunFailure` then has ``waves`` (a
    :class:`sriov_tb.waves.WaveFiles`) and a note with the command that opens them.
    """
    check_ops(ops, filename)
    result = RunResult()
    dut = SriovEndpoint(params)
    setup = WaveSetup(dut, window=(wave_from, wave_to))
    runs = []

    def make_testbench():
        result.transactions.clear()
        result.dumps.clear()
        # A repeat (to write the waveform of a failure) reports nothing again.
        first = not runs
        runs.append(True)

        model_user = copy.deepcopy(user)

        async def testbench(ctx):
            async def idle(cycles):
                await ctx.tick().repeat(cycles)

            cfg_driver = EndpointDriver(ctx, dut)
            try:
                await execute(params, ops, cfg_driver=cfg_driver,
                              mem_driver=MemoryDriver(ctx, dut), idle=idle, result=result,
                              filename=filename, emit=emit if first else None, json=json, ari=ari,
                              page_size=page_size, dump_rids=dump_rids, dump_enabled=dump_enabled,
                              irq_driver=InterruptDriver(ctx, dut), user=model_user,
                              on_transaction=on_transaction if first else None,
                              on_dump=on_dump if first else None, tracer=setup.tracer(ctx))
            except RunFailure:
                if vcd is not None or not first:
                    # The waveform goes on a little after the failure.
                    await idle(FAILURE_TAIL_CYCLES)
                raise
            finally:
                result.rrs_retries = cfg_driver.rrs_retries
                result.rrs_by_rid = dict(cfg_driver.rrs_by_rid)
        if user is None:
            return testbench
        return testbench, user_config_responder(dut, copy.deepcopy(user))

    result.waves = simulate(dut, make_testbench, name="sriov-ep-sim", vcd=vcd, setup=setup,
                            waves_on_failure=waves_on_failure)
    return result


#: Clock cycles a waveform goes on after a failed check.
FAILURE_TAIL_CYCLES = 16


class _Unexpected(Exception):
    pass


async def _run_op(idle, host, root, op):
    if op.kind in ("cfgrd", "cfgwr"):
        space = root.function(op.rid)
        if op.kind == "cfgrd":
            value = await space.read(op.offset, op.size)
            if op.value is not None and value != op.value:
                raise _Unexpected(f"read {value:#0{2 * op.size + 2}x}, expected "
                                  f"{op.value:#0{2 * op.size + 2}x}")
        else:
            await space.write(op.offset, op.size, op.value)
    elif op.kind in ("enable", "disable"):
        # As a write to the PF's sriov_numvfs file: 0 (or disable) disables.
        if root.model.num_pfs == 1:     # (one PF: the messages name it)
            if op.rid != host.pf_rid:
                raise _Unexpected(f"{format_bdf(op.rid)} is not the PF "
                                  f"({format_bdf(host.pf_rid)})")
            if op.kind == "enable" and op.count and host.sriov is not None \
                    and host.sriov.enabled:
                raise _Unexpected("VFs are already enabled (Linux answers EBUSY); disable first")
        try:
            await host.set_numvfs(op.rid, op.count if op.kind == "enable" else 0)
        except HostError as exc:
            raise _Unexpected(str(exc)) from None
    elif op.kind == "flr":
        await host.flr(op.rid)
    elif op.kind == "walk":
        for vf in list(host.vfs):
            await host.walk_vf(vf.rid)
    elif op.kind in ("memrd", "memwr") and getattr(root.mem, "has_access", False):
        await _run_memory_access(root, op, host.pf_bdf)
    elif op.kind in ("memrd", "memwr"):
        await _run_memory(root, op, host.pf_bdf)
    elif op.kind in _MSIX_KINDS:
        await _run_msix(host, root, op)
    elif op.kind == "idle":
        if op.count:
            await idle(op.count)
    elif op.kind == "tlp":
        await _run_raw_tlp(root, op)
    else:
        raise _Unexpected(f"operation {op.kind} is not supported")


async def _run_memory(root, op, pf_bdf=lambda k: None):
    """A memory op through the memory driver's ``decode`` only (the data from
    ``root.memories``); ``pf_bdf`` names the PF on a device of several PFs."""
    write = op.kind == "memwr"
    res = await root.mem.decode(op.addr, write)
    if res.claimed:
        pf = getattr(res, "pf", 0)
        last = root.model.route_memory(op.addr + op.size - 1)
        if last[:4] != (True, pf, res.function, res.bar):
            raise _Unexpected("the access runs past the end of the aperture it starts in")
        if write:
            root.memories.write(res.function, res.bar, res.offset, op.size, op.value, pf=pf)
            value = op.value
        else:
            value = root.memories.read(res.function, res.bar, res.offset, op.size, pf=pf)
        txn = MemTransaction(op.kind, op.addr, op.size, "SC", value, res.cycles, res.function,
                             res.bar, res.offset, root.step, pf=pf, pf_bdf=pf_bdf(pf))
    else:
        value = op.value if write else (1 << (8 * op.size)) - 1
        txn = MemTransaction(op.kind, op.addr, op.size, "UR", value, res.cycles, None, None,
                             None, root.step)
    root.record(txn)
    if not write and op.value is not None and value != op.value:
        raise _Unexpected(f"read {value:#0{2 * op.size + 2}x}, expected "
                          f"{op.value:#0{2 * op.size + 2}x}")


async def _run_memory_access(root, op, pf_bdf=None):
    """A memory op through the memory driver's ``access``: MSI-X table and PBA accesses are
    answered by the endpoint (and may deliver pending messages), the rest by ``root.memories``."""
    write = op.kind == "memwr"
    try:
        txn = await memory_transaction(root.mem, op.kind, op.addr, op.size,
                                       op.value if write else 0, memories=root.memories,
                                       step=root.step, pf_bdf=pf_bdf)
    except HostError as exc:
        raise _Unexpected(str(exc)) from None
    root.record(txn)
    if not write and op.value is not None and txn.value != op.value:
        raise _Unexpected(f"read {txn.value:#0{2 * op.size + 2}x}, expected "
                          f"{op.value:#0{2 * op.size + 2}x}")


async def _run_raw_tlp(root, op):
    """A raw TLP: sent by the backend's raw driver, its reaction compared with the prediction
    (:mod:`sriov_tb.tlp_rules`), then with the script's ``== EXPECT``."""
    from .tlp_rules import expectation_problem
    if getattr(root, "raw", None) is None:
        raise _Unexpected("raw TLPs need --backend tlp")
    txn, problems = await root.raw.send_raw(op.raw, root.model, root.memories, step=root.step)
    root.record(txn)
    if problems:
        raise Mismatch(f"the design's reaction differs from the prediction ({txn.rule}): "
                       + "; ".join(problems))
    problem = expectation_problem(op.outcome, op.expect_raw, txn.reaction)
    if problem is not None:
        raise _Unexpected(problem)


_MSIX_KINDS = ("msix", "msix_enable", "msix_count", "suspend", "resume")


async def _run_msix(host, root, op):
    """The MSI-X and power-management ops: an interrupt request from the user logic, a VF's
    Table Size from the PF side, a driver enabling MSI-X, system suspend and resume."""
    if op.kind == "suspend":
        await host.suspend()
        return
    if op.kind == "resume":
        await host.resume()
        return
    found = host.pf_function_of(op.rid)
    if found is None:
        which = "a PF" if len(host.pfs) > 1 else "the PF"
        raise _Unexpected(f"{format_bdf(op.rid)} is neither {which} nor an enabled VF")
    k, function = found
    if op.kind == "msix_enable":
        await host.msix_setup(op.rid, op.count)
        return
    if root.irq is None:
        raise _Unexpected(f"{op.kind} needs an interrupt driver, which this backend does not "
                          f"have yet")
    pf_bdf = host.pf_bdf(k)
    if op.kind == "msix_count":
        if function == 0:
            which = "a PF" if len(host.pfs) > 1 else "the PF"
            raise _Unexpected(f"{format_bdf(op.rid)} is {which}; msix_count sets a VF's Table "
                              f"Size")
        accepted = await root.irq.vf_msix_count(function, op.count, pf=k)
        root.record(MsixTransaction(function, format_bdf(op.rid), op.count,
                                    "accepted" if accepted else "refused", step=root.step,
                                    op="msix_count", pf=k, pf_bdf=pf_bdf))
        return
    outcome = await root.irq.interrupt(function, op.vector, pf=k)
    messages = root.irq.messages()
    # Messages are (function, addr, data), with the PF index as a fourth element when the
    # device has several PFs.
    own = [i for i, m in enumerate(messages) if m[0] == function and m[3:4] in ((), (k,))]
    txn = MsixTransaction(function, format_bdf(op.rid), op.vector, outcome, step=root.step,
                          pf=k, pf_bdf=pf_bdf)
    if outcome == "sent":
        if not own:
            raise _Unexpected(f"vector {op.vector} reported sent, but no message came")
        txn.addr, txn.data = messages.pop(own[0])[1:3]
    root.record(txn)
    root.record_messages(messages)
    if op.outcome is not None and outcome != op.outcome:
        raise _Unexpected(f"vector {op.vector} was {outcome}, expected {op.outcome}")


def format_dump(rid, image, description=""):
    """A function's configuration space in the ``lspci -xxxx`` format that ``lspci -F`` reads."""
    lines = [f"{format_bdf(rid)} {description}".rstrip() + " "]
    for offset in range(0, len(image), 16):
        chunk = " ".join(f"{b:02x}" for b in image[offset:offset + 16])
        lines.append(f"{offset:02x}: {chunk}" if offset < 0x100 else f"{offset:03x}: {chunk}")
    return "\n".join(lines) + "\n"
