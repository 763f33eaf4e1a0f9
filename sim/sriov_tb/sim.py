"""Running Amaranth simulations of the design: clock, testbenches, waveforms on request or failure.

Every waveform written here goes through :func:`sriov_tb.waves.finish`: transaction tracks
decoded from the dump (scope ``tb``), and a GTKWave save file with flat groups that opens on the
whole run or, after a failure, zoomed on it with markers (see :mod:`sriov_tb.waves`).
"""

import os
import re
from pathlib import Path

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib import data
from amaranth.sim import Simulator

from . import waves as wv

__all__ = ["WithReset", "CLOCK_PERIOD", "WAVES_ENV", "ENDPOINT_VIEW", "WaveSetup", "endpoint_view",
           "simulate", "waves_dir"]


class WithReset(Elaboratable):
    """``dut`` in a ``sync`` domain whose reset the testbench drives (``rst``): a conventional
    reset at any time, not only at the start."""

    def __init__(self, dut):
        self.dut = dut
        self.rst = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain()
        m.d.comb += cd.rst.eq(self.rst)
        m.submodules.dut = self.dut
        return m

#: Simulated clock period in seconds (125 MHz, the ECP5 PCIe Gen2 x1 user clock).
CLOCK_PERIOD = 8e-9

#: Set this environment variable to a folder to get a VCD and GTKWave file of every simulation.
WAVES_ENV = "SRIOV_EP_WAVES"

#: Scope Amaranth's simulator gives the design (and ``bench`` to testbench-only signals).
DESIGN_SCOPE = "bench.top"


def waves_dir():
    """Folder for waveforms written because a simulation failed or because they were asked for."""
    return Path(os.environ.get(WAVES_ENV) or "build/waves")


def _slug(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "sim"


#: What the save file shows of a :class:`sriov_ep.SriovEndpoint`, in reading order: (group,
#: [(path, label, format)]). A path is a port of the endpoint (``cfg_req.payload.rid``), a port
#: of a submodule (``decoder.target``), ``fsm:NAME`` (an FSM's state), ``tb.TRACK`` (a
#: transaction track) or ``bench.txn``.
ENDPOINT_VIEW = [
    ("transactions", [
        ("tb.failure", "FAILURE", "ascii"),
        ("tb.transaction", "transaction", "ascii"),
        ("tb.step", "script line / host step", "ascii"),
        ("bench.txn", "transaction number", "dec"),
        ("tb.cfg", "config port", "ascii"),
        ("tb.mem", "memory port", "ascii"),
        ("tb.msix", "MSI-X messages", "ascii"),
    ]),
    ("config_request", [
        ("clk", "clk", "bin"),
        ("cfg_req.valid", "valid", "bin"),
        ("cfg_req.ready", "ready", "bin"),
        ("cfg_req.payload.type1", "type1", "bin"),
        ("cfg_req.payload.rid", "rid", "hex"),
        ("cfg_req.payload.reg", "reg (dword)", "hex"),
        ("cfg_req.payload.be", "be", "hex"),
        ("cfg_req.payload.write", "write", "bin"),
        ("cfg_req.payload.data", "data", "hex"),
    ]),
    ("completion", [
        ("cfg_cpl.valid", "valid", "bin"),
        ("cfg_cpl.ready", "ready", "bin"),
        ("cfg_cpl.payload.status", "status", "hex"),
        ("cfg_cpl.payload.data", "data", "hex"),
    ]),
    ("decoder", [
        ("fsm:cfg", "request state", "ascii"),
        ("decoder.type1", "type1", "bin"),
        ("decoder.rid", "rid", "hex"),
        ("decoder.bus", "captured bus", "hex"),
        ("decoder.ari", "ari", "bin"),
        ("decoder.target", "target", "hex"),
        ("decoder.vf", "vf (1-based)", "dec"),
    ]),
    ("sriov_state", [
        ("pfs[0].vf_enable", "VF Enable", "bin"),
        ("pfs[0].vf_mse", "VF MSE", "bin"),
        ("ari_capable_hierarchy", "ARI Capable Hierarchy", "bin"),
        ("pfs[0].num_vfs", "NumVFs", "dec"),
        ("pfs[0].first_vf_offset", "First VF Offset", "hex"),
        ("pfs[0].vf_stride", "VF Stride", "hex"),
        ("pfs[0].vf_reset_busy", "VF state sweep", "bin"),
        ("pfs[0].memory_space_enable", "PF MSE", "bin"),
        ("pfs[0].power_state", "PF PowerState", "dec"),
    ]),
    ("memory_path", [
        ("mem_req.valid", "req valid", "bin"),
        ("mem_req.ready", "req ready", "bin"),
        ("mem_req.payload.addr", "addr", "hex"),
        ("mem_req.payload.write", "write", "bin"),
        ("mem_req.payload.be", "be", "hex"),
        ("mem_req.payload.data", "data", "hex"),
        ("fsm:mem", "router state", "ascii"),
        ("mem_res.valid", "res valid", "bin"),
        ("mem_res.ready", "res ready", "bin"),
        ("mem_res.payload.claimed", "claimed", "bin"),
        ("mem_res.payload.internal", "internal (MSI-X)", "bin"),
        ("mem_res.payload.is_vf", "is_vf", "bin"),
        ("mem_res.payload.vf", "vf", "dec"),
        ("mem_res.payload.bar", "bar", "dec"),
        ("mem_res.payload.offset", "offset", "hex"),
        ("mem_res.payload.data", "data", "hex"),
    ]),
    ("events", [
        ("pfs[0].flr", "PF reset", "bin"),
        ("vf_flr.valid", "VF reset", "bin"),
        ("vf_flr.vf", "VF reset: vf", "dec"),
        ("pfs[0].vfs_reset", "all VFs reset", "bin"),
        ("irq.valid", "irq valid", "bin"),
        ("irq.ready", "irq ready", "bin"),
        ("irq.payload.function", "irq function", "dec"),
        ("irq.payload.vector", "irq vector", "dec"),
        ("irq_dropped", "irq dropped", "bin"),
        ("msg.valid", "msg valid", "bin"),
        ("msg.ready", "msg ready", "bin"),
        ("msg.payload.function", "msg function", "dec"),
        ("msg.payload.addr", "msg addr", "hex"),
        ("msg.payload.data", "msg data", "hex"),
    ]),
]


def endpoint_view(dut):
    """:data:`ENDPOINT_VIEW` for ``dut``; on a device of several PFs the ``decoder`` group
    adds the PF index, ``sriov_state`` shows each PF's VF Enable, NumVFs, VF state sweep and
    PF MSE (labels ``PF k ...``), and ``events`` each PF's resets and the ``pf`` of the
    per-function ports."""
    pfs = len(getattr(dut, "pfs", ()))
    if pfs <= 1:
        return ENDPOINT_VIEW
    view = []
    for group, rows in ENDPOINT_VIEW:
        if group == "decoder":
            at = [path for path, _, _ in rows].index("decoder.vf")
            rows = rows[:at] + [("decoder.pf", "pf (PF index)", "dec")] + rows[at:]
        elif group == "sriov_state":
            rows = [("ari_capable_hierarchy", "ARI Capable Hierarchy", "bin")]
            for k in range(pfs):
                rows += [(f"pfs[{k}].vf_enable", f"PF {k} VF Enable", "bin"),
                         (f"pfs[{k}].num_vfs", f"PF {k} NumVFs", "dec"),
                         (f"pfs[{k}].vf_reset_busy", f"PF {k} VF state sweep", "bin"),
                         (f"pfs[{k}].memory_space_enable", f"PF {k} MSE", "bin")]
        elif group == "memory_path":
            at = [path for path, _, _ in rows].index("mem_res.payload.is_vf")
            rows = rows[:at] + [("mem_res.payload.pf", "pf", "dec")] + rows[at:]
        elif group == "events":
            rows = [(f"pfs[{k}].{name}", f"PF {k} {label}", "bin")
                    for k in range(pfs)
                    for name, label in (("flr", "reset"), ("vfs_reset", "all VFs reset"))]
            rows += [row for path, label, fmt in ENDPOINT_VIEW[-1][1]
                     if not path.startswith("pfs[")
                     for row in _with_pf(path, label, fmt)]
        view.append((group, rows))
    return view


def _with_pf(path, label, fmt):
    """An events row, preceded by its port's ``pf`` where the port names a function."""
    rows = []
    pf = {"vf_flr.vf": ("vf_flr.pf", "VF reset: pf"),
          "irq.payload.function": ("irq.payload.pf", "irq pf"),
          "msg.payload.function": ("msg.payload.pf", "msg pf")}.get(path)
    if pf is not None:
        rows.append((pf[0], pf[1], "dec"))
    rows.append((path, label, fmt))
    return rows


#: The streams whose handshakes become the ``tb.cfg``, ``tb.mem`` and ``tb.msix`` tracks.
ENDPOINT_STREAMS = ("cfg_req", "cfg_cpl", "mem_req", "mem_res", "msg")


def _is_endpoint(dut):
    return all(hasattr(dut, name) for name in ENDPOINT_STREAMS)


class WaveSetup:
    """What the waveforms of a simulation of ``dut`` show.

    For a :class:`sriov_ep.SriovEndpoint`: the transaction tracks and the groups of
    :data:`ENDPOINT_VIEW`; for any other design, the ``traces`` (a dict gives one group per key).
    ``window`` = (start, end), :class:`sriov_tb.waves.WaveBound` or None each, limits the dump.
    The bench signal :attr:`txn` holds the number of the transaction being driven (set by a
    :class:`sriov_tb.waves.Tracer` through :meth:`tracer`).
    """

    def __init__(self, dut, traces=(), *, window=(None, None)):
        self.dut = dut
        self.traces = traces
        self.window = window
        self.endpoint = _is_endpoint(dut)
        #: The groups of the save file (:func:`endpoint_view`), for an endpoint.
        self.view = endpoint_view(dut) if self.endpoint else []
        self.txn = Signal(32, name=wv.TXN_SIGNAL)
        #: The tracer of the latest run (:meth:`tracer`), which knows the failure.
        self.current = None
        self._keys = {}

    def tracer(self, ctx, *, label=None):
        """A :class:`sriov_tb.waves.Tracer` for a testbench run on ``ctx``."""
        self.current = wv.Tracer(lambda number: ctx.set(self.txn, number), label=label)
        return self.current

    # -- what write_vcd gets -----------------------------------------------------------------
    def vcd_traces(self):
        """The ``traces`` for ``write_vcd``: one group per signal the view and the ports need
        (so the names Amaranth gives them can be read back from its save file), the bench
        signal, and the caller's traces."""
        traces = {"bench.txn": self.txn}
        self._keys = {}
        if self.endpoint:
            paths = [path for _, rows in self.view for path, _, _ in rows]
            paths += [f"{s}.{m}" for s in ENDPOINT_STREAMS for m in ("valid", "ready", "payload")]
            for path in paths:
                found = self._split(path)
                if found is not None and found[0] not in self._keys:
                    base, sig, _ = found
                    self._keys[base] = key = f"s{len(self._keys)}"
                    traces[key] = sig
        if isinstance(self.traces, dict):
            for name, item in self.traces.items():
                traces[f"u.{name}"] = item
        elif self.traces:
            traces["u.traces"] = self.traces
        return traces

    def _split(self, path):
        """``(base path, signal, field)`` for ``path``: the signal holding it and, inside a
        struct, the field's dotted name; None if the design has no such port."""
        if path.startswith(("tb.", "fsm:", "bench.")) or path == "clk":
            return None
        obj = self.dut
        parts = path.split(".")
        for i, part in enumerate(parts):
            name, bracket, index = part.partition("[")
            obj = getattr(obj, name, None)
            if obj is None:
                return None
            if isinstance(obj, data.View) and (bracket or i < len(parts) - 1):
                # A field inside a port's layout: ``pfs[0].vf_enable`` is ``pfs`` + that.
                rest = ".".join(parts[i + 1:])
                inner = bracket + index + ("." + rest if rest and bracket else rest)
                return ".".join(parts[:i] + [name]), Value.cast(obj), inner
        try:
            value = Value.cast(obj)
        except TypeError:
            return None
        return (path, value, "") if isinstance(value, Signal) else None

    # -- reading the dump --------------------------------------------------------------------
    def _resolve(self, header, names, path):
        """The dump's variable name for ``path``, or None."""
        if path.startswith("tb.") or path == "bench.txn":
            return path
        if path == "clk":
            var = header.like(DESIGN_SCOPE, "clk")
            return var.name if var else None
        if path.startswith("fsm:"):
            var = header.like(DESIGN_SCOPE, f"{path[4:]}_state", type_="string")
            return var.name if var else None
        found = self._split(path)
        if found is None or found[0] not in self._keys:
            return None
        base, _, fld = found
        known = names.get(self._keys[base])
        if not known:
            return None
        if not fld:
            return known[0]
        scope, _, ref = known[0].rpartition(".")
        return f"{scope}.\\{ref}{'' if fld.startswith('[') else '.'}{fld}"

    def groups(self, header, names):
        """:func:`sriov_tb.waves.write_gtkw` groups."""
        groups = []
        if self.endpoint:
            for group, rows in self.view:
                items = []
                for path, label, fmt in rows:
                    name = self._resolve(header, names, path)
                    if name is not None:
                        items.append(wv.Item(name, label, fmt))
                groups.append((group, items))
        else:
            clk = header.like(DESIGN_SCOPE, "clk")
            if clk is not None:
                groups.append(("clock", [wv.Item(clk.name, "clk", "bin")]))
        for key, found in names.items():
            if key.startswith("u."):
                groups.append((key[2:], [wv.Item(n) for n in found]))
        return groups

    def ports(self, header, names):
        if not self.endpoint:
            return []
        layouts = {s: getattr(self.dut, s).payload.shape() for s in ENDPOINT_STREAMS}

        def name(stream, member):
            return self._resolve(header, names, f"{stream}.{member}") or f"?{stream}.{member}"
        return wv.endpoint_ports(name, layouts)

    def finish(self, raw, vcd, gtkw_names, *, failure=None):
        """Write ``vcd`` and its save file from the dump ``raw`` (see
        :func:`sriov_tb.waves.finish`); ``gtkw_names`` is the save file Amaranth wrote."""
        text = Path(gtkw_names).read_text() if Path(gtkw_names).is_file() else ""
        names = wv.amaranth_names(text)
        if Path(gtkw_names).is_file():
            os.unlink(gtkw_names)
        header = wv.read_header(raw)
        clk = header.like(DESIGN_SCOPE, "clk")
        tracer = self.current
        if failure is None and tracer is not None and tracer.failure is not None:
            failure = tracer.failure
        return wv.finish(raw, vcd, clock=clk.name if clk else "?", ports=self.ports(header, names),
                         groups=self.groups(header, names), txn_var="bench.txn",
                         tracer=tracer, failure=failure)


def simulate(dut, make_testbench, *, name="sim", vcd=None, traces=(), waves_on_failure=True,
             setup=None):
    """Simulate ``dut`` with the testbench that ``make_testbench()`` returns.

    ``make_testbench`` may also return a sequence: the testbench, then background testbenches
    (``add_testbench(..., background=True)``: user logic answering the design, say), which the
    simulation does not wait for. ``make_testbench`` is called again to build a fresh
    testbench (with fresh models) when the run is repeated to capture a waveform. A waveform is
    written when ``vcd`` names a file, when the ``SRIOV_EP_WAVES`` environment variable names a
    folder, or (``waves_on_failure``) when the testbench raises: the run is then repeated under
    a VCD writer into ``build/waves/<name>.vcd`` and the original exception is raised with the
    files and the command that opens them (at the failure) in a note.

    ``setup`` (a :class:`WaveSetup`, made from ``dut`` and ``traces`` if not given) says what the
    waveforms show and which window of the run they keep. Returns the
    :class:`sriov_tb.waves.WaveFiles` written, or None.
    """
    setup = setup if setup is not None else WaveSetup(dut, traces)
    if vcd is None and os.environ.get(WAVES_ENV):
        vcd = waves_dir() / f"{_slug(name)}.vcd"
    if vcd is not None:
        return _run_with_vcd(dut, make_testbench, Path(vcd), setup)
    sim = _simulator(dut, make_testbench)
    try:
        sim.run()
    except Exception as exc:
        if not waves_on_failure:
            raise
        path = waves_dir() / f"{_slug(name)}.vcd"
        failure = None
        if setup.current is not None and setup.current.failure is not None:
            failure = setup.current.failure
            # A long run: the dump keeps the transactions just before the failure (unless the
            # caller chose a window).
            if failure.txn > FAILURE_CONTEXT and setup.window == (None, None):
                setup.window = (wv.WaveBound(txn=failure.txn - FAILURE_CONTEXT), None)
        try:
            files = _run_with_vcd(dut, make_testbench, path, setup, failure=failure,
                                  reraise=False)
        except Exception as rerun:       # pragma: no cover - the note says what happened
            exc.add_note(f"(writing the waveform of the failing run failed: {rerun!r})")
            raise exc from None
        exc.waves = files
        exc.add_note(files.hint() if files is not None else
                     f"waveform of the failing run: {path} (+ .gtkw)")
        raise


#: Transactions of context a failure's waveform keeps before the failing one.
FAILURE_CONTEXT = 100


def _simulator(dut, make_testbench):
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    _add_testbenches(sim, make_testbench())
    return sim


def _add_testbenches(sim, made):
    if isinstance(made, (tuple, list)):
        main, *background = made
    else:
        main, background = made, []
    sim.add_testbench(main)
    for testbench in background:
        sim.add_testbench(testbench, background=True)


def _run_with_vcd(dut, make_testbench, path, setup, *, failure=None, reraise=True):
    """Run under a VCD writer into ``path`` (through the setup's window), then add the tracks
    and write the save file. An exception of the run is raised again after that (with the
    files in a note) when ``reraise``, else swallowed. Returns the WaveFiles."""
    # The simulator first: it elaborates the design, which is then "used" even if the folder
    # cannot be made (else Amaranth warns UnusedElaboratable when the design is collected).
    sim = _simulator(dut, make_testbench)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.name + ".raw")
    names = path.with_name(path.name + ".names.gtkw")
    start, end = setup.window
    error = None
    out = open(raw, "w")
    target = out
    if start is not None or end is not None:
        target = wv.WindowFilter(out, start=start, end=end, txn_var="bench.txn",
                                 lookback_fs=round(4 * CLOCK_PERIOD * 1e15))
    try:
        with sim.write_vcd(target, str(names), traces=setup.vcd_traces()):
            sim.run()
    except Exception as exc:
        error = exc
    finally:
        if not out.closed:
            target.close()
    if error is not None and failure is None and setup.current is not None:
        failure = setup.current.failure
    if error is not None and failure is None:
        failure = wv.Failure(0, wv._ascii(f"{type(error).__name__}: {error}".splitlines()[0]))
    files = setup.finish(raw, path, names, failure=failure)
    if error is not None and reraise:
        error.waves = files
        error.add_note(files.hint())
        raise error
    return files
