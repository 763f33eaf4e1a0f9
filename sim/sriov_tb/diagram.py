"""Timing diagrams (WaveDrom, rendered to SVG) of transactions in a dump written by
:mod:`sriov_tb.waves`: the clock, the handshakes, the payload fields with their values, the
endpoint's request state, and the transaction's text as the title and on its own row.

One column per clock cycle: a column shows the values after the rising edge that starts it (a
handshake is taken at the edge that ends the column where ``valid`` and ``ready`` are both
high). Payload fields read ``x`` while their stream's ``valid`` is low. The rows come from the
variables the dump has, by the names :mod:`sriov_tb.sim` (Amaranth) gives them.
"""

import json

from . import waves as wv

__all__ = ["CFG_ROWS", "MEM_ROWS", "diagram", "render", "sample", "wave"]

#: Rows of a config transaction: (label, variable suffix in scope bench.top, kind, valid row).
#: kind: "clk", "bit", "bdf", "hex", "text".
CFG_ROWS = [
    ("clk", "clk", "clk", None),
    ("cfg_req.valid", "cfg_req__valid", "bit", None),
    ("cfg_req.ready", "cfg_req__ready", "bit", None),
    ("rid (BDF)", "\\cfg_req__payload.rid", "bdf", "cfg_req__valid"),
    ("type1", "\\cfg_req__payload.type1", "hex", "cfg_req__valid"),
    ("reg (dword)", "\\cfg_req__payload.reg", "hex", "cfg_req__valid"),
    ("be", "\\cfg_req__payload.be", "hex", "cfg_req__valid"),
    ("write", "\\cfg_req__payload.write", "hex", "cfg_req__valid"),
    ("data", "\\cfg_req__payload.data", "hex", "cfg_req__valid"),
    ("request state", "cfg_state", "text", None),
    ("decoder.target", "decoder.target", "text", None),
    ("decoder.vf", "decoder.vf", "hex", None),
    ("cfg_cpl.valid", "cfg_cpl__valid", "bit", None),
    ("cfg_cpl.ready", "cfg_cpl__ready", "bit", None),
    ("status", "\\cfg_cpl__payload.status", "text", "cfg_cpl__valid"),
    ("cpl data", "\\cfg_cpl__payload.data", "hex", "cfg_cpl__valid"),
]

#: Rows of a memory transaction.
MEM_ROWS = [
    ("clk", "clk", "clk", None),
    ("mem_req.valid", "mem_req__valid", "bit", None),
    ("mem_req.ready", "mem_req__ready", "bit", None),
    ("addr", "\\mem_req__payload.addr", "hex", "mem_req__valid"),
    ("write", "\\mem_req__payload.write", "hex", "mem_req__valid"),
    ("be", "\\mem_req__payload.be", "hex", "mem_req__valid"),
    ("router state", "mem_state", "text", None),
    ("mem_res.valid", "mem_res__valid", "bit", None),
    ("mem_res.ready", "mem_res__ready", "bit", None),
    ("claimed", "\\mem_res__payload.claimed", "hex", "mem_res__valid"),
    ("internal", "\\mem_res__payload.internal", "hex", "mem_res__valid"),
    ("is_vf", "\\mem_res__payload.is_vf", "hex", "mem_res__valid"),
    ("vf", "\\mem_res__payload.vf", "hex", "mem_res__valid"),
    ("bar", "\\mem_res__payload.bar", "hex", "mem_res__valid"),
    ("offset", "\\mem_res__payload.offset", "hex", "mem_res__valid"),
]

SCOPE = "bench.top"


def sample(path, names, clock, start, end):
    """Values of the variables ``names`` after each rising edge of ``clock`` in
    [``start``, ``end``] (VCD units): ``(edge times, {name: [value per edge]})``; values are
    the VCD's text (binary digits, or a string's unescaped text)."""
    header = wv.read_header(path)
    ids = {}
    for name in names:
        var = header.find(name)
        if var is not None:
            ids.setdefault(var.id, []).append(name)
    clk = header.find(clock)
    values = {}
    times = []
    rows = {name: [] for name in names}
    with open(path) as f:
        wv._split_header(f)
        now = None
        block = []

        def close(t, changes):
            edge = any(i == clk.id and v == "1" and values.get(clk.id) != "1"
                       for i, v in changes)
            for ident, value in changes:
                values[ident] = value
            if edge and start <= t <= end:
                times.append(t)
                for ident, found in ids.items():
                    for name in found:
                        rows[name].append(values.get(ident))

        for line in f:
            if line.startswith("#"):
                if now is not None:
                    close(now, block)
                    if now > end:
                        break
                now, block = int(line[1:]), []
                continue
            ch = wv._change(line)
            if ch is not None:
                block.append(ch)
        else:
            if now is not None:
                close(now, block)
    return times, rows


def _display(kind, value):
    if value is None:
        return None
    if kind == "text":
        return wv.unescape(value).split("/")[0] or None
    if kind == "number":            # a transaction's text: its number (the title has the rest)
        return wv.unescape(value).split(" ")[0] or None
    number = wv._int(value)
    if kind == "bdf":
        return wv._bdf(number)
    return f"{number:#x}"


def _wave_row(label, kind, values, valid=None):
    """A WaveDrom row: ``wave`` characters and ``data`` labels, one column per value."""
    if kind == "clk":
        return {"name": label, "wave": "p" + "." * (len(values) - 1)}
    wave, labels, last = "", [], object()
    for i, value in enumerate(values):
        if kind == "bit":
            ch = "x" if value is None else str(wv._int(value) & 1)
            wave += "." if ch == last else ch
            last = ch
            continue
        if valid is not None and not wv._int(valid[i] or "0"):
            shown = None
        else:
            shown = _display(kind, value)
        if shown is None:
            wave += "." if last is None else "x"
            last = None
        elif shown == last:
            wave += "."
        else:
            wave += "="
            labels.append(shown)
            last = shown
    row = {"name": label, "wave": wave}
    if labels:
        row["data"] = labels
    return row


def diagram(path, annotation, txn, *, margin=2, title=None):
    """The WaveDrom source (a dict) of transaction ``txn`` (its number, as ``sim`` prints them)
    in the annotated dump ``path``: the cycles from its first acceptance to its last
    completion, ``margin`` cycles either side."""
    own = [h for h in annotation.handshakes if h.txn == txn and h.port in ("cfg", "mem")]
    if not own:
        raise ValueError(f"transaction {txn} has no config or memory request in {path}")
    text = next((s.text for s in annotation.spans_of("transaction")
                 if s.text.startswith(f"#{txn} ")), f"#{txn}")
    step = next((s.text for s in annotation.spans_of("step")
                 if s.start <= own[0].accept <= s.end), "")
    period = annotation.period or 1
    first = own[0].accept - margin * period - period
    last = max(h.complete or annotation.end for h in own) + margin * period
    rows_spec = CFG_ROWS if own[0].port == "cfg" else MEM_ROWS
    names = [f"{SCOPE}.{suffix}" for _, suffix, _, _ in rows_spec]
    names += [f"{SCOPE}.{v}" for *_, v in rows_spec if v]
    names += [f"{wv.TRACK_SCOPE}.transaction"]
    times, rows = sample(path, sorted(set(names)), f"{SCOPE}.clk", first, last)
    signal = []
    for label, suffix, kind, valid in rows_spec:
        values = rows.get(f"{SCOPE}.{suffix}")
        if not values or len(values) != len(times):
            continue
        row = _wave_row(label, kind, values,
                        rows.get(f"{SCOPE}.{valid}") if valid else None)
        signal.append(row)
    track = rows.get(f"{wv.TRACK_SCOPE}.transaction") or []
    if len(track) == len(times):
        signal.append({})
        signal.append(_wave_row("transaction", "number", track))
    # Arrows from each acceptance to its completion.
    edges = []
    req_row = next(i for i, r in enumerate(signal) if r.get("name", "").endswith("req.valid"))
    res_row = next(i for i, r in enumerate(signal) if r.get("name", "").endswith(
        ("cpl.valid", "res.valid")))
    marks = {req_row: ["."] * len(times), res_row: ["."] * len(times)}
    for n, h in enumerate(own[:13]):
        a, b = chr(ord("a") + 2 * n), chr(ord("b") + 2 * n)
        # The column before an edge is the one whose values that edge takes.
        ia = _column(times, h.accept)
        ib = _column(times, h.complete if h.complete is not None else times[-1])
        if ia is None or ib is None:
            continue
        marks[req_row][ia] = a
        marks[res_row][ib] = b
        cycles = round((h.complete - h.accept) / period) if h.complete is not None else "?"
        edges.append(f"{a}~>{b} {cycles} cycles")
    for i, mark in marks.items():
        signal[i]["node"] = "".join(mark)
    head = title or text
    # Wide enough columns for the longest value (WaveDrom: 20 px per column and hscale).
    longest = max((len(d) for row in signal for d in row.get("data", ())), default=0)
    src = {"signal": signal, "edge": edges,
           "head": {"text": wv._ascii(head), "tick": 0},
           "config": {"hscale": max(2, min(6, -(-(longest * 7 + 8) // 20)))}}
    if step:
        src["foot"] = {"text": wv._ascii(step)}
    return src


def _column(times, t):
    """The column whose values the edge at ``t`` samples (the one before it)."""
    for i, edge in enumerate(times):
        if edge >= t:
            return max(i - 1, 0)
    return None


def render(source, path):
    """Render WaveDrom ``source`` to the SVG file ``path`` (PyPI ``wavedrom``, offline)."""
    import wavedrom
    svg = wavedrom.render(json.dumps(source))
    svg.saveas(str(path))
    return path


def wave(params, ops, txn, svg, *, filename="<script>", vcd=None, ari=True, page_size=4096,
         margin=2):
    """Simulate ``ops`` (Amaranth's simulator, dumping only around transaction ``txn``) and
    render that transaction's timing diagram to ``svg``. The dump goes to ``vcd`` (default:
    ``build/waves/<svg's name>.vcd``; a GTKWave save file beside it). Returns ``(svg, source,
    WaveFiles)``; raises :class:`sriov_tb.runner.RunFailure` if the run fails first."""
    from .runner import run_ops
    from .sim import waves_dir
    vcd = vcd if vcd is not None else waves_dir() / (wv.Path(svg).stem + ".vcd")
    result = run_ops(params, ops, filename=filename, vcd=vcd, ari=ari, page_size=page_size,
                     wave_from=wv.WaveBound(txn=txn), wave_to=wv.WaveBound(txn=txn + 1))
    if txn > len(result.transactions):
        raise ValueError(f"the run has {len(result.transactions)} transactions, not {txn}")
    source = diagram(result.waves.vcd, result.waves.annotation, txn, margin=margin)
    render(source, svg)
    return svg, source, result.waves
