"""Waveforms a user can read: transaction tracks, a GTKWave save file that opens on the work,
and dumps limited to a window.

Every VCD the project writes goes through :func:`finish`:

* **Transaction tracks.** The handshakes of the endpoint's ports are decoded from the dump
  itself (a request is accepted at the rising clock edge where ``valid`` and ``ready`` were
  high, its answer transferred at the edge where the answer's ``valid`` and ``ready`` were
  high), and text-valued variables (GTKWave's ``string`` type) are added to the VCD, in scope
  ``tb``, holding each transaction's text from its acceptance edge to its completion edge:

  - ``tb.transaction``: the host's transaction in the user's words, numbered as the output lines
    of ``sriov-ep sim`` (``#12 CfgRd 01:10.0 VF 1 @0x000 4B -> SC 0x10ca8086``);
  - ``tb.step``: the script line and the Linux host model's step that issued it
    (``line 3: enable 01:00.0 4 [sriov_init]``);
  - ``tb.cfg``, ``tb.mem``: each request on the config and memory ports as the port carries it
    (``CfgRd0 01:10.0 reg 0x000 be f -> SC 0x10ca8086``, ``MRd 0x80000010 be 0f -> VF 2 BAR0
    +0x10``), for any bench, with or without the host model;
  - ``tb.msix``: each MSI-X message the endpoint sends, at its handshake;
  - ``tb.failure``: on a failed check, the failure over the failing transaction.

  The tracks come from the dump, so they sit exactly on the design's time axis on every
  backend. The host side only says which transaction a handshake belongs to: in Amaranth's
  simulator a bench signal ``bench.txn`` holds the transaction number while its driver call
  runs (:class:`Tracer`); a bench that cannot add a signal to the dump (cocotb under
  Verilator) gives the calls' times instead (``calls`` of :func:`annotate`).

* **Decoded state as text.** Amaranth writes enums and FSM states as text already
  (``cfg_state`` reads ``EXECUTE/6``); :func:`annotate` can add text twins of numeric variables
  (``derived``) for dumps that have only numbers.

* **A save file that opens on the work** (:func:`write_gtkw`): flat groups in reading order
  (``transactions``, ``config_request``, ``completion``, ``decoder``, ``sriov_state``,
  ``memory_path``, ``events``), only signals the dump has, the whole run in view or, after a
  failure, the view zoomed on the failing transaction with the primary marker and markers A and B
  at its acceptance and completion.

* **Windows** (:class:`WindowFilter`): a dump limited to transactions ``N..M`` or to a time
  range, filtered while it is written, so a long run does not write gigabytes.

* **FST** (:func:`run_with_fst`, :func:`to_fst`): the finished VCD, tracks included, converted
  by GTKWave's ``vcd2fst``, with the same save file pointing at the FST; any backend.

GTKWave reads ``\\x20`` in a string value as a space (checked with GTKWave 3.3.118); pyvcd's
reader hands the escaped text back as it is (:func:`unescape`).
"""

import errno
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["TRACK_SCOPE", "WaveBound", "parse_bound", "Header", "read_header", "Channel",
           "Port", "endpoint_ports", "Handshake", "Span", "Failure", "Annotation", "scan",
           "annotate", "WindowFilter", "write_gtkw", "gtkw_zoom", "Tracer", "WaveFiles",
           "finish", "open_command", "unescape", "escape", "VCD2FST", "FST_HINT",
           "find_vcd2fst", "to_fst", "run_with_fst"]

#: Scope of the variables this module adds to a dump.
TRACK_SCOPE = "tb"

#: Name of the bench signal holding the current transaction number (Amaranth's simulator puts
#: testbench-only signals in scope ``bench``).
TXN_SIGNAL = "txn"

#: Clock cycles shown before and after the failing transaction when the view zooms on it.
FAILURE_MARGIN_CYCLES = 6

#: GTKWave window the save file asks for, and the part of it the waves get (the rest is the
#: signal list).
GTKW_SIZE = (1600, 900)
GTKW_SIGNALS_WIDTH = 380
#: Pixels GTKWave 3.3 leaves for the waves in that window (measured: 920 at 1600x900 with the
#: signal tree open); the zoom is chosen for this width.
_GTKW_WAVE_WIDTH = 900


# -- Text -------------------------------------------------------------------------------------

def escape(text):
    """A string value as a VCD ``s`` change writes it (pyvcd's escapes, which GTKWave reads)."""
    return text.translate({9: "\\t", 10: "\\n", 13: "\\r", 32: "\\x20", 92: "\\\\"})


def unescape(text):
    """The text of a VCD string value (``\\x20`` and friends undone)."""
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[tnr\\])",
                  lambda m: {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(
                      m.group(1), None) or chr(int(m.group(1)[1:], 16)), text)


def _ascii(text):
    return text.encode("ascii", "replace").decode("ascii")


def _bdf(rid):
    return f"{rid >> 8:02x}:{(rid >> 3) & 0x1f:02x}.{rid & 7}"


def _who(function, pf_bdf=None):
    """``PF``, ``VF 2``; with ``pf_bdf`` (a device of several PFs) ``PF 01:00.1``, ``VF 2 of
    01:00.1``. ``function`` may be a label ``(function, pf_bdf)``."""
    if isinstance(function, tuple):
        function, pf_bdf = function
    if function is None:
        return "(no function)"
    if function == 0:
        return "PF" if pf_bdf is None else f"PF {pf_bdf}"
    return f"VF {function}" + (f" of {pf_bdf}" if pf_bdf is not None else "")


def _port_who(fields, is_vf, vf):
    """Who a port's payload names; ``of PF k`` when it has a ``pf`` field (several PFs)."""
    pf = getattr(fields, "pf", None)
    if pf is None:
        return f"VF {vf}" if is_vf else "PF"
    return f"VF {vf} of PF {pf}" if is_vf else f"PF {pf}"


# -- Window bounds ----------------------------------------------------------------------------

_UNITS = {"fs": 1, "ps": 10**3, "ns": 10**6, "us": 10**9, "ms": 10**12, "s": 10**15}


@dataclass(frozen=True)
class WaveBound:
    """One end of a dump window: a transaction number (``txn``) or a time in femtoseconds."""
    txn:  int | None = None
    time: int | None = None

    def __str__(self):
        return f"transaction {self.txn}" if self.txn is not None else f"{self.time} fs"


def parse_bound(text):
    """``--wave-from``/``--wave-to``: ``N`` (transaction number, as ``sim`` numbers its output
    lines from 1) or a time with a unit (``12us``, ``2500 ns``, ``1.5ms``)."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        number = int(text)
        if number < 1:
            raise ValueError(f"{text}: transactions are numbered from 1")
        return WaveBound(txn=number)
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(fs|ps|ns|us|ms|s)", text)
    if not m:
        raise ValueError(f"{text!r}: give a transaction number (17) or a time with a unit "
                         f"(12us, 2500ns)")
    return WaveBound(time=round(float(m.group(1)) * _UNITS[m.group(2)]))


# -- VCD header -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Var:
    id:    str
    type:  str
    size:  int
    name:  str              # dotted scope path and reference, without a bit range
    range: str = ""         # "[63:0]" as declared (Verilator), else ""

    @property
    def gtkw_name(self):
        """The name GTKWave's save files use."""
        if self.range:
            return self.name + self.range
        if self.size > 1 and self.type not in ("string", "real"):
            return f"{self.name}[{self.size - 1}:0]"
        return self.name


@dataclass
class Header:
    text:        str                            # up to and including "$enddefinitions $end"
    vars:        dict = field(default_factory=dict)     # name -> Var (first declaration)
    by_id:       dict = field(default_factory=dict)     # id -> [Var]
    unit_fs:     int = 1                        # femtoseconds per VCD time unit

    def find(self, name):
        return self.vars.get(name)

    def like(self, scope, base, *, type_=None):
        """The variable ``scope.base`` or, where Amaranth renamed it apart, ``scope.base$N``
        (the first, or the first of type ``type_``)."""
        exact = self.vars.get(f"{scope}.{base}")
        if exact is not None and (type_ is None or exact.type == type_):
            return exact
        pattern = re.compile(re.escape(f"{scope}.{base}") + r"\$\d+")
        for name, var in self.vars.items():
            if pattern.fullmatch(name) and (type_ is None or var.type == type_):
                return var
        return None

    def fresh_ids(self, count):
        """``count`` identifiers no variable uses."""
        ids = []
        n = 0
        while len(ids) < count:
            candidate = f"~tb{n}"
            if candidate not in self.by_id:
                ids.append(candidate)
            n += 1
        return ids


def _parse_header(text):
    header = Header(text)
    tokens = text.split()
    scope = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "$scope":
            scope.append(tokens[i + 2])
            i = tokens.index("$end", i) + 1
        elif tok == "$upscope":
            scope.pop()
            i = tokens.index("$end", i) + 1
        elif tok == "$var":
            end = tokens.index("$end", i)
            type_, size, ident, ref = tokens[i + 1:i + 5]
            rng = "".join(tokens[i + 5:end])
            var = Var(ident, type_, int(size), ".".join([*scope, ref]), rng)
            header.vars.setdefault(var.name, var)
            header.by_id.setdefault(ident, []).append(var)
            i = end + 1
        elif tok == "$timescale":
            end = tokens.index("$end", i)
            m = re.fullmatch(r"(\d+)\s*(fs|ps|ns|us|ms|s)", "".join(tokens[i + 1:end]))
            if m:
                header.unit_fs = int(m.group(1)) * _UNITS[m.group(2)]
            i = end + 1
        elif tok.startswith("$") and tok != "$end":
            i = tokens.index("$end", i) + 1 if "$end" in tokens[i:] else len(tokens)
        else:
            i += 1
    return header


def _split_header(stream):
    """Read the header lines of an open VCD; returns (header text, first body line or "")."""
    lines = []
    for line in stream:
        lines.append(line)
        if "$enddefinitions" in line:
            return "".join(lines), ""
    return "".join(lines), ""


def read_header(path):
    """The :class:`Header` of the VCD at ``path``."""
    with open(path) as f:
        text, _ = _split_header(f)
    return _parse_header(text)


def _change(line):
    """``(id, value)`` of a value change line, or None (timestamps, keywords)."""
    c = line[:1]
    if c in "01xzXZ" and len(line) > 1:
        return line[1:].rstrip("\n"), line[0]
    if c in "bBrRs":
        value, _, ident = line.rstrip("\n").partition(" ")
        return ident, value[1:]
    return None


def _int(value):
    """Integer of a VCD value (``x``/``z`` bits read as 0)."""
    try:
        return int(value, 2)
    except ValueError:
        return int(re.sub(r"[^01]", "0", value) or "0", 2)


# -- Ports ------------------------------------------------------------------------------------

def _unpack(layout, word):
    layout = data.Layout.cast(layout)
    fields = {}
    for name, fld in layout:
        value = (word >> fld.offset) & ((1 << fld.width) - 1)
        if not isinstance(fld.shape, data.Layout):
            shape = Shape.cast(fld.shape)
            if shape.signed and value >> (fld.width - 1):
                value -= 1 << fld.width
        fields[name] = value
    return type("Fields", (), fields)


@dataclass(frozen=True)
class Channel:
    """One stream of a port in a dump: the names of its ``valid``, ``ready`` and ``payload``
    variables and the payload's layout."""
    valid:   str
    ready:   str
    payload: str
    layout:  object


@dataclass(frozen=True)
class Port:
    """A request/answer port (``res`` None: a one-way stream, shown as events)."""
    track:    str
    req:      Channel
    res:      Channel | None
    describe: object        # (req fields, res fields or None) -> text


def describe_cfg(req, res):
    kind = ("CfgWr" if req.write else "CfgRd") + ("1" if req.type1 else "0")
    text = f"{kind} {_bdf(req.rid)} reg {req.reg:#05x} be {req.be:x}"
    if req.write:
        text += f" data {req.data:#010x}"
    if res is not None:
        status = {0: "SC", 1: "UR", 2: "RRS"}.get(res.status, f"status {res.status}")
        text += f" -> {status}"
        if not req.write and res.status == 0:
            text += f" {res.data:#010x}"
    return text


def describe_mem(req, res):
    text = f"{'MWr' if req.write else 'MRd'} {req.addr:#x} be {req.be:02x}"
    if req.write:
        text += f" data {req.data:#018x}"
    if res is not None:
        who = _port_who(res, res.is_vf, res.vf)
        if res.internal:
            text += f" -> MSI-X {who} BAR{res.bar} +{res.offset:#x}"
            if not req.write:
                text += f" data {res.data:#018x}"
        elif res.claimed:
            text += f" -> {who} BAR{res.bar} +{res.offset:#x}"
        else:
            text += " -> not claimed"
    return text


def describe_msg(req, _res):
    who = _port_who(req, req.function != 0, req.function)
    return f"MSI-X from {who}: MWr {req.addr:#x} data {req.data:#010x}"


def endpoint_ports(names, layouts):
    """The config, memory and MSI-X message ports of :class:`sriov_ep.SriovEndpoint`.

    ``names(stream, member)`` gives the dump's variable name of ``cfg_req``'s ``valid`` and so
    on; ``layouts`` maps ``cfg_req``, ``cfg_cpl``, ``mem_req``, ``mem_res``, ``msg`` to their
    payload layouts. A port whose variables the dump lacks is left out.
    """
    def channel(stream):
        return Channel(names(stream, "valid"), names(stream, "ready"), names(stream, "payload"),
                       layouts[stream])
    return [Port("cfg", channel("cfg_req"), channel("cfg_cpl"), describe_cfg),
            Port("mem", channel("mem_req"), channel("mem_res"), describe_mem),
            Port("msix", channel("msg"), None, describe_msg)]


# -- Scanning a dump ----------------------------------------------------------------------------

@dataclass
class Handshake:
    """One request and its answer as the dump shows them (times in VCD units)."""
    port:     str
    index:    int               # 0-based, per port, within the dump
    accept:   int
    complete: int | None        # None: no answer before the dump ends
    req:      object
    res:      object = None
    txn:      int = 0           # transaction number it belongs to (0: unknown)


@dataclass
class Span:
    """A text on a track from ``start`` to ``end`` (VCD units)."""
    track: str
    start: int
    end:   int
    text:  str


@dataclass
class Failure:
    """A failed check: the transaction it happened in (0: none known) and the message."""
    txn:     int
    message: str
    text:    str = ""           # the transaction's description, if known


@dataclass
class Annotation:
    """What :func:`annotate` found and added."""
    header:     Header
    start:      int = 0         # first and last time of the dump (VCD units)
    end:        int = 0
    period:     int = 0         # clock period (VCD units), 0 if unknown
    handshakes: list = field(default_factory=list)
    spans:      list = field(default_factory=list)
    failure:    Failure | None = None
    #: (start, end) of the failing transaction's first handshake, if the dump has it.
    failure_at: tuple | None = None

    def spans_of(self, track):
        return [s for s in self.spans if s.track == track]


def _txn_lookup(calls):
    """A function time -> transaction number from ``calls``: (number, start, end) sorted."""
    starts = [c[1] for c in calls]

    def lookup(t):
        import bisect
        i = bisect.bisect_right(starts, t - 1) - 1          # start < t
        while i >= 0:
            number, start, end = calls[i]
            if start < t <= end:
                return number
            if end < t:
                return 0
            i -= 1
        return 0
    return lookup


def scan(path, *, clock, ports, txn_var=None, calls=None):
    """Decode the handshakes of ``ports`` (a list of :class:`Port`) in the VCD at ``path``,
    sampled at the rising edges of the variable named ``clock``.

    The transaction a handshake belongs to is the value the variable ``txn_var`` had just
    before its acceptance edge, or, with ``calls`` ((number, start, end) in VCD units, from a
    bench that cannot add a variable), the call that was running then.
    Returns ``(header, handshakes, (first time, last time), clock period)``.
    """
    with open(path) as f:
        text, _ = _split_header(f)
        header = _parse_header(text)
        clk = header.find(clock)
        if clk is None:
            return header, [], (0, 0), 0
        watch = {}
        live = []
        for port in ports:
            chans = [port.req] + ([port.res] if port.res is not None else [])
            vars_ = [header.find(n) for c in chans for n in (c.valid, c.ready, c.payload)]
            if all(v is not None for v in vars_):
                live.append((port, [v.id for v in vars_]))
                for v in vars_:
                    watch[v.id] = True
        txn = header.find(txn_var) if txn_var else None
        lookup = _txn_lookup(calls) if calls is not None else None
        values = {}
        counts = {p.track: 0 for p, _ in live}
        open_ = {}
        handshakes = []
        edges = []
        first = last = None
        block = []
        now = 0
        dumping = False

        def close_block(t, changes):
            nonlocal first
            clk_edge = False
            for ident, value in changes:
                if ident == clk.id and value == "1" and values.get(clk.id, "0") != "1":
                    clk_edge = True
            if clk_edge and first is not None:
                edges.append(t)
                for port, ids in live:
                    v = [values.get(i, "0") for i in ids]
                    # The answer to the open request first: a new request cannot be taken at
                    # the edge that transfers the previous answer.
                    if port.res is not None and _int(v[3]) and _int(v[4]) \
                            and port.track in open_:
                        h = open_.pop(port.track)
                        h.complete = t
                        h.res = _unpack(port.res.layout, _int(v[5]))
                        handshakes.append(h)
                    if _int(v[0]) and _int(v[1]):
                        h = Handshake(port.track, counts[port.track], t, None,
                                      _unpack(port.req.layout, _int(v[2])), None, _number(t))
                        counts[port.track] += 1
                        if port.res is None:
                            h.complete = t
                            handshakes.append(h)
                        else:
                            open_[port.track] = h
            for ident, value in changes:
                values[ident] = value
            if first is None:
                first = t

        def _number(t):
            if lookup is not None:
                return lookup(t)
            if txn is not None:
                return _int(values.get(txn.id, "0"))
            return 0

        for line in f:
            if line.startswith("#"):
                if dumping or block:
                    close_block(now, block)
                block = []
                now = int(line[1:])
                dumping = True
                last = now
                continue
            ch = _change(line)
            if ch is not None:
                block.append(ch)
        close_block(now, block)
    for h in open_.values():
        handshakes.append(h)
    handshakes.sort(key=lambda h: h.accept)
    period = 0
    if len(edges) >= 2:
        diffs = sorted(b - a for a, b in zip(edges, edges[1:], strict=False))
        period = diffs[len(diffs) // 2]
    return header, handshakes, (first or 0, last or 0), period


# -- Adding tracks ----------------------------------------------------------------------------

def _merge(src, dst, header, spans, *, derived=(), end=None):
    """Copy the VCD ``src`` to ``dst`` with the text tracks ``spans`` (each track a string
    variable in scope ``tb``) and the ``derived`` text twins ``(source name, track, table)``."""
    tracks = sorted({s.track for s in spans} | {d[1] for d in derived})
    ids = dict(zip(tracks, header.fresh_ids(len(tracks)), strict=True))
    twins = {}
    for source, track, table in derived:
        var = header.find(source)
        if var is not None:
            twins.setdefault(var.id, []).append((ids[track], table))
    events = {}
    for s in spans:
        events.setdefault(s.start, []).append((1, ids[s.track], s.text))
        events.setdefault(s.end, []).append((0, ids[s.track], ""))
    times = sorted(events)
    decl = [f"$scope module {TRACK_SCOPE} $end\n"]
    decl += [f"$var string 1 {ids[t]} {t} $end\n" for t in tracks]
    decl.append("$upscope $end\n")

    def lines_at(t):
        # At one time a track's end comes before another span's start on it.
        out = {}
        for _order, ident, text in sorted(events.pop(t), key=lambda e: e[0]):
            out[ident] = text
        return [f"s{escape(_ascii(text))} {ident}\n" for ident, text in out.items()]

    def twin_lines(ident, value):
        return [f"s{escape(table.get(_int(value), f'{_int(value)}'))} {tid}\n"
                for tid, table in twins.get(ident, ())]

    with open(src) as fin, open(dst, "w") as fout:
        text, _ = _split_header(fin)
        cut = text.rindex("$enddefinitions")
        fout.write(text[:cut] + "".join(decl) + text[cut:])
        init = [f"s {ids[t]}\n" for t in tracks]
        pos = 0
        wrote_init = False
        for line in fin:
            if line.startswith("#"):
                t = int(line[1:])
                while pos < len(times) and times[pos] < t:
                    if times[pos] in events:
                        fout.write(f"#{times[pos]}\n")
                        fout.writelines(lines_at(times[pos]))
                    pos += 1
                fout.write(line)
                if not wrote_init:
                    fout.writelines(init)
                    wrote_init = True
                if pos < len(times) and times[pos] == t:
                    fout.writelines(lines_at(t))
                    pos += 1
                continue
            if line.startswith("$dumpvars") and not wrote_init:
                fout.write(line)
                fout.writelines(init)
                wrote_init = True
                continue
            fout.write(line)
            if twins:
                ch = _change(line)
                if ch is not None and ch[0] in twins:
                    fout.writelines(twin_lines(*ch))
        while pos < len(times):
            if times[pos] in events:
                fout.write(f"#{times[pos]}\n")
                fout.writelines(lines_at(times[pos]))
            pos += 1


def _transaction_spans(handshakes, texts, steps, failure, end):
    """Spans of ``tb.transaction``, ``tb.step`` and ``tb.failure`` from the handshakes."""
    spans = []
    step_run = None
    for h in handshakes:
        if h.port == "msix" or not h.txn:
            continue
        stop = h.complete if h.complete is not None else end
        text = texts.get(h.txn)
        if text is None and failure is not None and h.txn == failure.txn:
            text = failure.text
        if text is not None:
            spans.append(Span("transaction", h.accept, stop, f"#{h.txn} {text}"))
        if failure is not None and h.txn == failure.txn:
            spans.append(Span("failure", h.accept, stop, f"FAILED #{h.txn}: {failure.message}"))
        step = steps.get(h.txn)
        if step:
            if step_run is not None and step_run.text == step:
                step_run.end = stop
            else:
                step_run = Span("step", h.accept, stop, step)
                spans.append(step_run)
    return spans


def annotate(src, dst, *, clock, ports, txn_var=None, calls=None, texts=None, steps=None,
             failure=None, derived=()):
    """Write ``dst``: the VCD ``src`` with transaction tracks (see the module's doc).

    ``texts`` and ``steps`` map transaction numbers to their text and step; ``failure`` (a
    :class:`Failure`) adds the ``tb.failure`` track. Returns an :class:`Annotation`.
    """
    header, handshakes, (start, end), period = scan(src, clock=clock, ports=ports,
                                                    txn_var=txn_var, calls=calls)
    spans = []
    for h in handshakes:
        port = next(p for p in ports if p.track == h.port)
        stop = h.complete if h.complete is not None else end
        if h.port == "msix":
            stop = h.accept + (period or 1)
        spans.append(Span(h.port, h.accept, stop, port.describe(h.req, h.res)))
    spans += _transaction_spans(handshakes, texts or {}, steps or {}, failure, end)
    result = Annotation(header, start, end, period, handshakes, spans, failure)
    if failure is not None and failure.txn:
        own = [h for h in handshakes if h.txn == failure.txn and h.port != "msix"]
        if own:
            h = own[0]
            result.failure_at = (h.accept, h.complete if h.complete is not None else end)
    _merge(src, dst, header, spans, derived=derived, end=end)
    result.header = read_header(dst)
    return result


# -- Windows ----------------------------------------------------------------------------------

class WindowFilter:
    """A text file to give a VCD writer (``Simulator.write_vcd``): writes the header to ``out``,
    then only the changes inside the window, opening with the state of every variable at the
    window's start (``$dumpvars``).

    The window starts at ``start`` and ends after ``end`` (:class:`WaveBound`, either may be
    None): a transaction bound watches the bench variable ``txn_var`` (the window opens when it
    first holds a number >= ``start.txn``, and closes when it first holds a number above
    ``end.txn``), a time bound the timestamps. ``lookback`` time units before the start are kept.
    """

    def __init__(self, out, *, start=None, end=None, txn_var=None, lookback_fs=0):
        self.out = out
        self.name = getattr(out, "name", "window.vcd")
        self.start = start
        self.end = end
        self.txn_var = txn_var
        self.lookback_fs = lookback_fs
        self._pending = ""
        self._header = []
        self._in_header = True
        self._state = "before"
        self._values = {}
        self._blocks = deque()          # (time, [lines]) kept for the lookback
        self._block = None
        self._txn_id = None
        self._unit = 1
        self._written = 0
        self.opened_at = None
        self.closed_at = None

    # file protocol
    def write(self, text):
        self._pending += text
        if "\n" not in self._pending:
            return len(text)
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line + "\n")
        return len(text)

    def tell(self):
        return self._written

    def flush(self):
        self.out.flush()

    def close(self):
        if self._pending:
            self._line(self._pending + "\n")
            self._pending = ""
        self._end_block()
        if self._state == "before" and self.start is None:
            self._open()
        self.out.close()

    def _emit(self, lines):
        for line in lines:
            self.out.write(line)
            self._written += len(line)

    def _line(self, line):
        if self._in_header:
            self._header.append(line)
            self._emit([line])
            if "$enddefinitions" in line:
                self._in_header = False
                header = _parse_header("".join(self._header))
                self._unit = header.unit_fs
                if self.txn_var is not None:
                    var = header.find(self.txn_var)
                    self._txn_id = var.id if var is not None else None
            return
        if line.startswith("#"):
            self._end_block()
            self._block = (int(line[1:]), [])
            return
        if line.startswith("$") and self._block is None:
            return                      # $dumpvars / $end before the first timestamp
        if self._block is None:
            self._block = (0, [])
        if line.startswith("$"):
            return
        self._block[1].append(line)

    def _txn_in(self, block):
        """The bench's transaction number at the end of ``block`` if it changed there (one
        call's end and the next one's start often share a timestamp)."""
        if self._txn_id is None:
            return None
        number = None
        for line in block:
            ch = _change(line)
            if ch is not None and ch[0] == self._txn_id:
                number = _int(ch[1])
        return number

    def _end_block(self):
        if self._block is None:
            return
        t, lines = self._block
        self._block = None
        if self._state == "before":
            limit = t - self.lookback_fs // self._unit
            while self._blocks and self._blocks[0][0] < limit:
                _, old = self._blocks.popleft()
                self._apply(old)
            self._blocks.append((t, lines))
            if self._starts(t, lines):
                self._open()
        elif self._state == "inside":
            if self._ends(t, lines):
                self._state = "after"
                self.closed_at = t
                self._emit([f"#{t}\n"])
                return
            self._emit([f"#{t}\n"] + lines)

    def _apply(self, lines):
        for line in lines:
            ch = _change(line)
            if ch is not None:
                self._values[ch[0]] = line

    def _starts(self, t, lines):
        if self.start is None:
            return True
        if self.start.time is not None:
            return t * self._unit >= self.start.time
        number = self._txn_in(lines)
        return number is not None and number >= self.start.txn

    def _ends(self, t, lines):
        if self.end is None:
            return False
        if self.end.time is not None:
            return t * self._unit > self.end.time
        number = self._txn_in(lines)
        return number is not None and number > self.end.txn

    def _open(self):
        self._state = "inside"
        if not self._blocks:
            return
        t0 = self._blocks[0][0]
        self.opened_at = t0
        self._emit([f"#{t0}\n", "$dumpvars\n", *self._values.values(), "$end\n"])
        first = True
        while self._blocks:
            t, lines = self._blocks.popleft()
            if not first:
                self._emit([f"#{t}\n"])
            self._emit(lines)
            first = False


# -- GTKWave save file --------------------------------------------------------------------------

def gtkw_zoom(span, width=_GTKW_WAVE_WIDTH):
    """GTKWave's zoom value showing ``span`` time units across ``width`` pixels.

    GTKWave 3.3 shows 0.005 * 2**-zoom time units per pixel (measured: zoom -20 gives 5242.88
    units per pixel); the zoom is rounded down so the span fits."""
    per_pixel = max(span, 1) / width
    return math.floor(math.log2(0.005 / per_pixel))


@dataclass(frozen=True)
class Item:
    """One row of the save file: a variable name, the label it gets and how values show."""
    name:  str
    alias: str | None = None
    fmt:   str = "hex"


def write_gtkw(path, vcd_path, header, groups, *, view=None, marker=None, a=None, b=None,
               comment=None, zoom_span=None):
    """A GTKWave save file for the VCD at ``vcd_path``: ``groups`` is a list of ``(name,
    [Item])`` written as flat groups in that order, rows whose variable ``header`` lacks left
    out; ``view`` (start, end) in VCD units is what the window shows (``zoom_span``, if given,
    the time the window's width spans instead of ``end - start``); ``marker`` the primary
    marker, ``a``/``b`` named markers A and B; ``comment`` a highlighted line at the top."""
    from vcd.gtkw import GTKWSave
    with open(path, "w") as f:
        save = GTKWSave(f)
        save.comment("sriov-ep waveform view (sriov_tb.waves)")
        save.dumpfile(str(Path(vcd_path).resolve()))
        save.savefile(str(Path(path).resolve()))
        save.size(*GTKW_SIZE)
        save.signals_width(GTKW_SIGNALS_WIDTH)
        save.sst_expanded(True)
        start, end = view if view is not None else (0, 0)
        save.timestart(start)
        named = {}
        if a is not None:
            named["a"] = a
        if b is not None:
            named["b"] = b
        save.zoom_markers(gtkw_zoom(zoom_span if zoom_span else end - start),
                          marker if marker is not None else -1, **named)
        if comment:
            save.blank(_ascii(comment), highlight=True)
        for name, items in groups:
            rows = [(header.find(i.name), i) for i in items]
            rows = [(var, i) for var, i in rows if var is not None]
            if not rows:
                continue
            with save.group(name):
                for var, item in rows:
                    fmt = item.fmt
                    if var.type == "string":
                        fmt = "ascii" if fmt == "hex" else fmt
                    save.trace(var.gtkw_name, alias=item.alias,
                               datafmt=fmt if var.size > 1 or fmt == "ascii" else "bin")
    return path


# -- Names in Amaranth dumps ----------------------------------------------------------------------

def amaranth_names(gtkw_text):
    """Names the Amaranth simulator gave the traced signals: ``{key: [names]}``, from the
    GTKWave save file it writes for ``traces={key: signal, ...}`` (each key a group there).
    Bit ranges are cut off."""
    names = {}
    stack = []
    flags = 0
    for line in gtkw_text.splitlines():
        if line.startswith("@"):
            flags = int(line[1:], 16)
            continue
        if line.startswith("-"):
            label = line[1:]
            if flags & 0x800000:            # group begin
                stack.append(label)
            elif flags & 0x1000000:         # group end
                stack.pop()
            continue
        if line[:1] in ("[", "*", "") or not stack:
            continue
        names.setdefault(stack[0], []).append(re.sub(r"\[\d+:\d+\]$", "", line.strip()))
    return names


# -- The bench side -----------------------------------------------------------------------------

class Tracer:
    """Tells a dump which transaction each handshake belongs to, and remembers what the host
    said about each transaction.

    Wrap the config and memory drivers with :meth:`wrap`: every call sets ``mark(number)``
    before driving the port and ``mark(0)`` after, where ``number`` is the transaction the host
    will record next (:meth:`next_number`). ``mark`` sets the bench signal ``bench.txn`` in
    Amaranth's simulator, or records the call's times under cocotb. :meth:`record` is the root
    port's ``on_transaction``; :meth:`fail` notes the failure.
    """

    def __init__(self, mark=None, *, label=None):
        self.mark = mark or (lambda number: None)
        self.label = label or (lambda rid: None)
        self.texts = {}
        self.steps = {}
        self.count = 0
        self.pending = []           # (kind, args) of calls since the last record
        self.last_with_calls = 0
        self.failure = None
        self.op = None

    def next_number(self):
        return self.count + 1

    def wrap(self, driver):
        return _TracedDriver(driver, self)

    def record(self, txn, op=None):
        """The host recorded transaction ``txn`` (the next number)."""
        self.count += 1
        number = self.count
        self.texts[number] = describe_transaction(txn, self.label)
        step = getattr(txn, "step", "") or ""
        op = op if op is not None else self.op
        where = ""
        if op is not None and getattr(op, "text", ""):
            where = f"line {op.line}: {op.text}" if op.line else op.text
        if step and step != f"line {getattr(op, 'line', None)}":
            where = f"{where} [{step}]" if where else step
        self.steps[number] = where
        if self.pending:
            self.last_with_calls = number
        self.pending = []

    def fail(self, message):
        """The run failed with ``message``: the failing transaction is the one whose requests
        went out without being recorded (a completion the model disagreed with), else the last
        one recorded with requests (an expectation on its value)."""
        if self.pending:
            number = self.next_number()
            text = " + ".join(_describe_call(kind, args) for kind, args in self.pending)
        else:
            number = self.last_with_calls
            text = self.texts.get(number, "")
        self.failure = Failure(number, _ascii(message), text)
        return self.failure


class _TracedDriver:
    def __init__(self, driver, tracer):
        self._driver = driver
        self._tracer = tracer

    def __getattr__(self, name):
        if name == "access":        # traced, if the driver has it (else AttributeError)
            getattr(self._driver, name)
            return self._access
        return getattr(self._driver, name)

    async def _call(self, kind, args, coro):
        tracer = self._tracer
        tracer.pending.append((kind, args))
        tracer.mark(tracer.next_number())
        try:
            return await coro
        finally:
            tracer.mark(0)

    async def config(self, type1, rid, reg, be, write, data):
        return await self._call("config", (type1, rid, reg, be, write, data),
                                self._driver.config(type1, rid, reg, be, write, data))

    async def decode(self, addr, write):
        return await self._call("decode", (addr, write), self._driver.decode(addr, write))

    async def _access(self, addr, write, data=0, be=0xFF):
        return await self._call("access", (addr, write, data, be),
                                self._driver.access(addr, write, data, be))


def _describe_call(kind, args):
    if kind == "config":
        type1, rid, reg, be, write, data = args
        text = (f"{'CfgWr' if write else 'CfgRd'}{int(type1)} {_bdf(rid)} @{4 * reg:#05x} "
                f"be {be:x}")
        return text + (f" data {data:#010x}" if write else "")
    addr, write = args[0], args[1]
    return f"{'MWr' if write else 'MRd'} {addr:#x}"


def describe_transaction(txn, label=None):
    """A transaction (:class:`sriov_tb.host.Transaction`, ``MemTransaction``, ...) in the
    user's words: ``CfgRd 01:10.0 VF 1 @0x000 4B -> SC 0x10ca8086``,
    ``MWr 0x80002000 4B 0x00000001 -> PF BAR3+0x2000 MSI-X SC``.

    ``label(rid)`` names a config transaction's function: None, the function number (0 a PF, n
    VF n), or ``(n, PF's BDF)`` on a device of several PFs (``VF 2 of 01:00.1``). A memory
    transaction with ``pf_bdf`` names the PF the same way (``PF 01:00.1 BAR0+0x0``)."""
    op = getattr(txn, "op", "")
    if op in ("cfgrd", "cfgwr"):
        function = label(txn.rid) if label is not None else None
        digits = 2 * txn.size
        text = (f"{'CfgRd' if op == 'cfgrd' else 'CfgWr'} {_bdf(txn.rid)} {_who(function)} "
                f"@{txn.offset:#05x} {txn.size}B")
        if op == "cfgwr":
            return text + f" 0x{txn.value:0{digits}x} -> {txn.status}"
        return text + f" -> {txn.status} 0x{txn.value:0{digits}x}"
    if op in ("memrd", "memwr"):
        digits = 2 * txn.size
        text = f"{'MRd' if op == 'memrd' else 'MWr'} {txn.addr:#x} {txn.size}B"
        if op == "memwr":
            text += f" 0x{txn.value:0{digits}x}"
        if txn.function is None:
            where = "not claimed"
        else:
            where = f"{_who(txn.function, getattr(txn, 'pf_bdf', None))} " \
                f"BAR{txn.bar}+{txn.offset:#x}" \
                + (" MSI-X" if getattr(txn, "internal", False) else "")
        text += f" -> {where} {txn.status}"
        if op == "memrd":
            text += f" 0x{txn.value:0{digits}x}"
        return text
    return _ascii(str(txn).split("  [")[0])


# -- Putting it together ----------------------------------------------------------------------

@dataclass
class WaveFiles:
    """What :func:`finish` wrote."""
    vcd:        Path
    gtkw:       Path
    annotation: Annotation
    failure:    Failure | None = None

    @property
    def command(self):
        return open_command(self.vcd, self.gtkw)

    def hint(self):
        """One line saying what the waves show and how to open them."""
        ann = self.annotation
        if self.failure is not None:
            what = f"transaction {self.failure.txn}" if self.failure.txn else "the failure"
            if self.failure.text:
                what += f" ({self.failure.text})"
            where = ""
            if ann.failure_at is not None:
                where = f" at {_format_time(ann.failure_at[0] * ann.header.unit_fs)}"
            return f"waveform of the failure, {what}{where}, marked: {self.command}"
        return f"waveform: {self.command}"


def _format_time(fs):
    for unit in ("s", "ms", "us", "ns", "ps"):
        if fs >= _UNITS[unit]:
            return f"{fs / _UNITS[unit]:g} {unit}"
    return f"{fs} fs"


def open_command(vcd, gtkw):
    """The shell command that opens a dump with its save file."""
    return f"gtkwave {shlex.quote(str(vcd))} {shlex.quote(str(gtkw))}"


def finish(raw, vcd, *, clock, ports, groups, txn_var=None, calls=None, tracer=None,
           failure=None, derived=(), keep_raw=False):
    """Turn the dump ``raw`` into ``vcd`` (with tracks) and its save file (``vcd`` with suffix
    ``.gtkw``); returns :class:`WaveFiles`. ``groups`` is :func:`write_gtkw`'s, naming the
    ``tb`` tracks as ``tb.transaction`` and so on. ``tracer`` gives the transaction texts and,
    with ``failure`` unset, its own failure."""
    vcd = Path(vcd)
    gtkw = vcd.with_suffix(".gtkw")
    if failure is None and tracer is not None:
        failure = tracer.failure
    ann = annotate(raw, vcd, clock=clock, ports=ports, txn_var=txn_var, calls=calls,
                   texts=tracer.texts if tracer is not None else None,
                   steps=tracer.steps if tracer is not None else None,
                   failure=failure, derived=derived)
    if not keep_raw and Path(raw) != vcd:
        os.unlink(raw)
    view = (ann.start, ann.end)
    marker = a = b = zoom_span = None
    comment = None
    if failure is not None:
        margin = FAILURE_MARGIN_CYCLES * (ann.period or 1)
        if ann.failure_at is not None:
            a, b = ann.failure_at
        else:
            a = b = ann.end
        marker = a
        view = (max(ann.start, a - margin), min(ann.end, b + margin))
        if view[1] <= view[0]:
            view = (max(ann.start, a - margin), a + margin)
        # Short: GTKWave widens the signal list to fit it. The message is on tb.failure.
        comment = (f"FAILED at transaction {failure.txn}: markers A..B" if failure.txn
                   else "FAILED at the end of the dump")
        # GTKWave falls back to the start of the dump when the window would run past its end:
        # then the window ends at the end of the dump.
        zoom_span = view[1] - view[0]
        span = 0.005 * 2 ** -gtkw_zoom(zoom_span) * 920
        if view[0] + span > ann.end:
            view = (max(ann.start, int(ann.end - span)), view[1])
    write_gtkw(gtkw, vcd, ann.header, groups, view=view, marker=marker, a=a, b=b,
               comment=comment, zoom_span=zoom_span)
    return WaveFiles(vcd, gtkw, ann, failure)


# -- FST ----------------------------------------------------------------------------------------

#: GTKWave's converter from VCD to FST (Debian package gtkwave).
VCD2FST = "vcd2fst"

#: What installs it.
FST_HINT = "apt-get install gtkwave"

_DUMPFILE = re.compile(r"^\[(dumpfile|savefile)\] .*$", re.M)
_DUMPFILE_STAMP = re.compile(r"^\[dumpfile_(mtime|size)\] .*\n", re.M)


def find_vcd2fst():
    """The path of ``vcd2fst``; raises :class:`sriov_ep.tools.synth.ToolMissing` naming what
    installs it."""
    from sriov_ep.tools.synth import ToolMissing
    path = shutil.which(VCD2FST)
    if path is None:
        raise ToolMissing(f"writing an FST needs GTKWave's {VCD2FST}, which is not on PATH: "
                          f"{FST_HINT}")
    return path


def to_fst(files, fst, *, tool=None):
    """Convert the VCD of ``files`` (a :class:`WaveFiles`, tracks included) into the FST
    ``fst`` with ``vcd2fst`` (``tool``, default :func:`find_vcd2fst`); its save file is written
    beside it (suffix ``.gtkw``), the same rows, groups, view and markers, naming the FST.
    The VCD and its save file are removed. Returns the new :class:`WaveFiles` (``vcd`` is the
    FST). FST keeps variable names, scopes, types (the tracks' ``string`` variables) and
    times, so the save file's rows are found in it as in the VCD."""
    fst = Path(fst)
    gtkw = fst.with_suffix(".gtkw")
    if gtkw == fst:
        raise ValueError(f"{fst}: an FST's GTKWave save file goes next to it with the suffix "
                         f".gtkw; name the FST {fst.with_suffix('.fst')}")
    tool = tool if tool is not None else find_vcd2fst()
    fst.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([tool, str(files.vcd), str(fst)], capture_output=True, text=True)
    if done.returncode or not fst.is_file():
        said = (done.stderr or done.stdout).strip().splitlines()
        raise OSError(errno.EIO, f"{VCD2FST} could not convert {files.vcd} (exit "
                                 f"{done.returncode}{': ' + said[-1] if said else ''})", str(fst))
    text = Path(files.gtkw).read_text()
    text = _DUMPFILE_STAMP.sub("", text)
    where = {"dumpfile": fst, "savefile": gtkw}
    text = _DUMPFILE.sub(lambda m: f'[{m.group(1)}] "{where[m.group(1)].resolve()}"', text)
    gtkw.write_text(text)
    for old in (Path(files.vcd), Path(files.gtkw)):
        if old.resolve() not in (fst.resolve(), gtkw.resolve()):
            old.unlink(missing_ok=True)
    return WaveFiles(fst, gtkw, files.annotation, files.failure)


def run_with_fst(run, fst, **options):
    """``run(vcd=..., **options)`` (a backend's ``run_ops`` given everything but its
    waveform), writing the FST ``fst`` and its save file instead of a VCD: the run writes its
    VCD with the tracks into a temporary folder beside ``fst``, then :func:`to_fst` converts it.
    The result's ``waves`` (or, on a failure, the exception's, and the note naming them) are
    the FST's. ``vcd2fst`` is looked for first: a missing one raises
    :class:`sriov_ep.tools.synth.ToolMissing` before anything runs."""
    tool = find_vcd2fst()
    fst = Path(fst)
    fst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sriov-ep-waves-", dir=fst.parent))
    try:
        try:
            result = run(vcd=tmp / fst.with_suffix(".vcd").name, **options)
        except Exception as exc:
            files = getattr(exc, "waves", None)
            if files is not None:
                exc.waves = to_fst(files, fst, tool=tool)
                notes = getattr(exc, "__notes__", None)
                if notes is not None:
                    exc.__notes__ = [exc.waves.hint() if note == files.hint() else note
                                     for note in notes]
            raise
        if result.waves is not None:
            result.waves = to_fst(result.waves, fst, tool=tool)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
