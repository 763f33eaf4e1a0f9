"""Waveform debugging (sriov_tb.waves, sriov_tb.diagram): transaction tracks on the design's time
axis, the GTKWave save file, dump windows, the waveform of a failure, WaveDrom diagrams.

The dumps are read back with pyvcd's reader (a VCD parser independent of the code that wrote
them); handshakes are found from the dumped ``valid``/``ready`` signals at the rising clock
edges, and each transaction's text must hold exactly from its acceptance edge to its completion
edge. A real GTKWave (Debian's, under ``xvfb-run``) loads a dump with its save file. Files go to
``tmp_path`` only.
"""

import bisect
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from vcd.reader import TokenKind, tokenize

from sriov_ep.params import format_bdf, load_params
from sriov_tb import waves as wv
from sriov_tb.cli import main
from sriov_tb.diagram import diagram, render
from sriov_tb.runner import RunFailure, run_ops
from sriov_tb.script import parse_script

ROOT = Path(__file__).resolve().parent.parent
IGB = ROOT / "examples" / "igb-82576.toml"

#: Config and memory reads and writes, a UR read, an unclaimed memory read, an MSI-X table
#: write (answered by the endpoint itself).
SCRIPT = """\
cfgrd 01:00.0 0x00 4 == 0x10c98086
enable 01:00.0 1
cfgrd 01:10.0 0x04 2 == 0x0000
cfgwr 01:10.0 0x04 2 0x0004
memwr 0x100000000 4 0x11111111
memrd 0x100000000 4 == 0x11111111
memrd 0x100010000 4 == 0xffffffff
cfgrd 01:11.0 0x00 4 == 0xffffffff
"""

#: Line 3 expects the wrong value: the run fails there.
FAILING = """\
enable 01:00.0 1
cfgrd 01:10.0 0x08 4
cfgrd 01:10.0 0x00 2 == 0x1234
cfgrd 01:00.0 0x00 4
"""


# -- Reading a VCD (pyvcd's reader) -------------------------------------------------------------

class Dump:
    """Every variable's changes: ``names`` full name -> id, ``changes`` id -> [(time, value)]
    (strings unescaped), ``end`` the last time."""

    def __init__(self, path):
        self.names, self.types, self.changes, self.sizes = {}, {}, {}, {}
        scope, now, self.end = [], 0, 0
        text = Path(path).read_bytes()
        # Amaranth names some internal signals "$signal", Verilator its port scope "$rootio";
        # pyvcd's reader takes a name starting with "$" for a keyword: read it as the escaped
        # identifier "\\$signal".
        cut = text.index(b"$enddefinitions")
        # Struct fields: Amaranth escapes "\\port.field", Verilator writes "port.field".
        escaped = {m.decode() for m in re.findall(rb"\$var \S+ \d+ \S+ \\(\S+)", text[:cut])}
        text = re.sub(rb"(\$var \S+ \d+ \S+ |\$scope \S+ )\$", rb"\1\\$", text[:cut]) \
            + text[cut:]
        with io.BytesIO(text) as f:
            for tok in tokenize(f):
                if tok.kind is TokenKind.SCOPE:
                    scope.append(tok.data.ident)
                elif tok.kind is TokenKind.UPSCOPE:
                    scope.pop()
                elif tok.kind is TokenKind.VAR:
                    ref = tok.data.reference
                    if "." in ref and ref in escaped:       # an escaped struct field
                        ref = "\\" + ref
                    name = ".".join([*scope, ref])
                    self.names[name] = tok.data.id_code         # the last declaration
                    self.types[tok.data.id_code] = tok.data.type_.value
                    self.sizes[tok.data.id_code] = tok.data.size
                elif tok.kind is TokenKind.CHANGE_TIME:
                    now = self.end = tok.data
                elif tok.kind in (TokenKind.CHANGE_SCALAR, TokenKind.CHANGE_VECTOR,
                                  TokenKind.CHANGE_STRING):
                    value = tok.data.value
                    if tok.kind is TokenKind.CHANGE_STRING:
                        value = wv.unescape(value)
                    elif isinstance(value, str):
                        value = int(value) if value in "01" else 0
                    self.changes.setdefault(tok.data.id_code, []).append((now, value))

    def series(self, name):
        return self.changes.get(self.names[name], [])

    def before(self, name, t):
        """The value just before time ``t`` (what a clock edge at ``t`` samples)."""
        series = self.series(name)
        i = bisect.bisect_left([c[0] for c in series], t) - 1
        return series[i][1] if i >= 0 else None

    def segments(self, name):
        """``[(start, end, text)]`` over which a string variable holds a non-empty text."""
        out, series = [], self.series(name)
        for (t, value), nxt in zip(series, series[1:] + [(self.end, None)], strict=True):
            if value and nxt[0] > t:
                if out and out[-1][1] == t and out[-1][2] == value:
                    out[-1] = (out[-1][0], nxt[0], value)
                else:
                    out.append((t, nxt[0], value))
        return out

    def rising_edges(self, clock):
        series = self.series(clock)
        return [t for (t, v), (_, p) in zip(series[1:], series, strict=False) if v == 1 and p == 0]


def handshakes(dump, scope, req, res, txn_var):
    """``[(transaction number, accept, complete)]`` of a request/answer stream pair, from the
    dumped valid/ready at the rising edges (number None without ``txn_var``)."""
    found, open_ = [], None
    for t in dump.rising_edges(f"{scope}.clk"):
        if open_ is not None and dump.before(f"{scope}.{res}__valid", t) \
                and dump.before(f"{scope}.{res}__ready", t):
            found.append((*open_, t))
            open_ = None
        if dump.before(f"{scope}.{req}__valid", t) and dump.before(f"{scope}.{req}__ready", t):
            open_ = (dump.before(txn_var, t) if txn_var else None, t)
    return found


def expected_text(number, txn, label):
    """The transaction's text as the README documents it, from the transcript's record."""
    if txn.op in ("cfgrd", "cfgwr"):
        who = {None: "(no function)", 0: "PF"}.get(label(txn.rid), f"VF {label(txn.rid)}")
        head = (f"#{number} {'CfgRd' if txn.op == 'cfgrd' else 'CfgWr'} {format_bdf(txn.rid)} "
                f"{who} @{txn.offset:#05x} {txn.size}B")
        value = f"0x{txn.value:0{2 * txn.size}x}"
        return f"{head} {value} -> {txn.status}" if txn.op == "cfgwr" \
            else f"{head} -> {txn.status} {value}"
    value = f"0x{txn.value:0{2 * txn.size}x}"
    where = "not claimed" if txn.function is None else \
        f"{'PF' if txn.function == 0 else f'VF {txn.function}'} BAR{txn.bar}+{txn.offset:#x}" \
        + (" MSI-X" if txn.internal else "")
    text = f"#{number} {'MRd' if txn.op == 'memrd' else 'MWr'} {txn.addr:#x} {txn.size}B"
    if txn.op == "memwr":
        return f"{text} {value} -> {where} {txn.status}"
    return f"{text} -> {where} {txn.status} {value}"


# -- Runs shared by the tests -------------------------------------------------------------------

@pytest.fixture(scope="module")
def params():
    return load_params(IGB)


@pytest.fixture(scope="module")
def passing(tmp_path_factory, params):
    """The script, with a full dump."""
    vcd = tmp_path_factory.mktemp("passing") / "run.vcd"
    lines = []
    result = run_ops(params, parse_script(SCRIPT, "ok.script"), filename="ok.script",
                     emit=lines.append, vcd=vcd)
    return result, lines, Dump(vcd)


@pytest.fixture(scope="module")
def failing(tmp_path_factory, params):
    """The failing script, with no dump asked for: the run writes one on its own."""
    folder = tmp_path_factory.mktemp("failing")
    lines = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.delenv("SRIOV_EP_WAVES", raising=False)
        with pytest.raises(RunFailure) as info:
            run_ops(params, parse_script(FAILING, "bad.script"), filename="bad.script",
                    emit=lines.append)
    exc = info.value
    return exc, lines, folder, Dump(folder / exc.waves.vcd)


def _label(params, vfs):
    pf = params.pf_rid

    def label(rid):
        if rid == pf:
            return 0
        for n in range(1, vfs + 1):
            if rid == params.vf_rid(n, ari=True):
                return n
        return None
    return label


# -- Transaction tracks -------------------------------------------------------------------------

def test_each_transaction_text_spans_exactly_acceptance_to_completion(passing, params):
    result, lines, dump = passing
    scope = "bench.top"
    got = dump.segments("tb.transaction")
    expected = []
    label = _label(params, 1)
    for req, res in (("cfg_req", "cfg_cpl"), ("mem_req", "mem_res")):
        for number, accept, complete in handshakes(dump, scope, req, res, "bench.txn"):
            txn = result.transactions[number - 1]
            expected.append((accept, complete, expected_text(number, txn, label)))
    expected.sort()
    assert len(expected) == len(lines) + 1          # the first read was retried once (RRS)
    assert got == expected
    # Every transaction of the transcript is on the track, in order.
    numbers = sorted({int(text.split()[0][1:]) for *_, text in got})
    assert numbers == list(range(1, len(result.transactions) + 1))


def test_step_track_names_script_line_and_host_step(passing):
    _, _, dump = passing
    steps = [text for *_, text in dump.segments("tb.step")]
    assert steps[0] == "line 1: cfgrd 01:00.0 0x00 4 == 0x10c98086"
    assert "line 2: enable 01:00.0 1 [enumerate]" in steps
    assert "line 2: enable 01:00.0 1 [sriov_init]" in steps
    assert "line 2: enable 01:00.0 1 [enable 1]" in steps
    assert steps[-1] == "line 8: cfgrd 01:11.0 0x00 4 == 0xffffffff"


def test_port_tracks_and_decoded_state(passing):
    _, _, dump = passing
    cfg = [text for *_, text in dump.segments("tb.cfg")]
    assert cfg[0] == "CfgRd0 01:00.0 reg 0x000 be f -> RRS"         # the PF was still busy
    assert cfg[1] == "CfgRd0 01:00.0 reg 0x000 be f -> SC 0x10c98086"
    assert cfg[-1] == "CfgRd0 01:11.0 reg 0x000 be f -> UR"
    mem = [text for *_, text in dump.segments("tb.mem")]
    assert mem[-2] == "MRd 0x100000000 be 0f -> VF 1 BAR0 +0x0"
    assert mem[-1] == "MRd 0x100010000 be 0f -> not claimed"
    # Amaranth writes the FSM state, the decoder's target and the status as text.
    states = {v.split("/")[0] for _, v in dump.series("bench.top.cfg_state")}
    assert {"IDLE", "DECODE", "EXECUTE", "COMPLETE"} <= states
    assert {v for _, v in dump.series("bench.top.decoder.target")} >= {"PF", "VF", "NONE"}


# -- Save file ------------------------------------------------------------------------------------

def gtkw_rows(path):
    """``(groups in order, trace names, [timestart], zoom, markers)`` of a save file."""
    groups, names, zoom, markers, start = [], [], None, None, None
    flags = 0
    for line in Path(path).read_text().splitlines():
        if line.startswith("@"):
            flags = int(line[1:], 16)
        elif line.startswith("-") and flags & 0x800000:
            groups.append(line[1:])
        elif line.startswith("*"):
            zoom, *rest = line[1:].split()
            zoom, markers = float(zoom), [int(x) for x in rest]
        elif line.startswith("[timestart]"):
            start = int(line.split()[1])
        elif line and line[0] not in "[-@*":
            names.append(re.sub(r"^\+\{[^}]*\} ", "", line))
    return groups, names, start, zoom, markers


def _gtkw_names(vcd):
    """The dump's variables as GTKWave's save files name them (``name[msb:0]`` for vectors)."""
    dump = Dump(vcd)
    return {name + (f"[{dump.sizes[i] - 1}:0]" if dump.sizes[i] > 1
                    and dump.types[i] not in ("string", "real") else "")
            for name, i in dump.names.items()}


def test_save_file_shows_whole_run_in_reading_order(passing):
    result, _, dump = passing
    groups, names, start, zoom, markers = gtkw_rows(result.waves.gtkw)
    assert groups == ["transactions", "config_request", "completion", "decoder", "sriov_state",
                      "memory_path", "events"]
    dumped = _gtkw_names(result.waves.vcd)
    assert names and set(names) <= dumped, set(names) - dumped
    assert {"tb.transaction", "tb.step", "tb.cfg", "tb.mem", "bench.top.cfg_state"} <= set(names)
    assert start == 0 and markers[0] == -1                      # no failure: no marker
    # GTKWave shows 0.005 * 2**-zoom time units per pixel: the run fits in 1000 pixels.
    assert 0.005 * 2 ** -zoom * 1000 >= dump.end
    assert 0.005 * 2 ** -zoom * 1000 < 2 * dump.end


# -- A failure ------------------------------------------------------------------------------------

def test_failure_writes_marked_waves_on_its_own(failing):
    exc, lines, folder, dump = failing
    files = exc.waves
    assert files.vcd == Path("build/waves/sriov-ep-sim.vcd")
    assert (folder / files.vcd).is_file() and (folder / files.gtkw).is_file()
    number = len(lines)                         # the failing read was printed, then checked
    assert lines[-1].startswith("cfgrd 01:10.0 0x000 2 SC 0xffff")
    assert files.failure.txn == number
    note = exc.__notes__[-1]
    assert f"transaction {number} (CfgRd 01:10.0 VF 1 @0x000 2B -> SC 0xffff)" in note
    assert note.endswith(f"gtkwave {files.vcd} {files.gtkw}")
    # The failure's text is on tb.failure exactly over the failing transaction.
    (accept, complete), = [(a, c) for n, a, c in
                           handshakes(dump, "bench.top", "cfg_req", "cfg_cpl", "bench.txn")
                           if n == number]
    assert dump.segments("tb.failure") == [(accept, complete, f"FAILED #{number}: {exc}")]
    # ... and the save file's markers: primary and A at acceptance, B at completion, the view
    # around it.
    _, names, start, zoom, markers = gtkw_rows(folder / files.gtkw)
    assert markers[:3] == [accept, accept, complete]
    assert start <= accept
    assert start + 0.005 * 2 ** -zoom * 1000 >= complete
    assert set(names) <= _gtkw_names(folder / files.vcd)


def test_failure_of_any_simulate_testbench(tmp_path, monkeypatch, params):
    """A bench of its own (no host model) that fails: the waveform still has the port tracks
    and the save file marks where the run stopped."""
    from sriov_ep.endpoint import SriovEndpoint
    from sriov_tb.host import EndpointDriver
    from sriov_tb.sim import simulate
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRIOV_EP_WAVES", raising=False)
    dut = SriovEndpoint(params)

    def make():
        async def testbench(ctx):
            cfg = EndpointDriver(ctx, dut)
            cpl = await cfg.config(0, 0x0100, 0, 0xF, 0, 0)
            assert cpl.data == 0x1234, "wrong ID"
        return testbench

    with pytest.raises(AssertionError) as info:
        simulate(dut, make, name="own-bench")
    files = info.value.waves
    dump = Dump(tmp_path / files.vcd)
    assert [t for *_, t in dump.segments("tb.cfg")][-1] == \
        "CfgRd0 01:00.0 reg 0x000 be f -> SC 0x10c98086"
    _, _, _, _, markers = gtkw_rows(tmp_path / files.gtkw)
    assert markers[0] == dump.end                   # where the testbench raised
    assert f"gtkwave {files.vcd} {files.gtkw}" in info.value.__notes__[-1]


# -- Windows --------------------------------------------------------------------------------

def test_window_by_transaction_number(tmp_path, params, passing):
    result, _, full = passing
    vcd = tmp_path / "window.vcd"
    run_ops(params, parse_script(SCRIPT, "ok.script"), vcd=vcd,
            wave_from=wv.parse_bound("5"), wave_to=wv.parse_bound("7"))
    dump = Dump(vcd)
    numbers = [int(t.split()[0][1:]) for *_, t in dump.segments("tb.transaction")]
    assert numbers == [5, 6, 7]
    # The same texts at the same times as in the full dump.
    assert dump.segments("tb.transaction") == [s for s in full.segments("tb.transaction")
                                               if int(s[2].split()[0][1:]) in (5, 6, 7)]
    assert vcd.stat().st_size < Path(result.waves.vcd).stat().st_size / 3


def test_window_by_time(tmp_path, passing):
    result, _, full = passing
    first, last = full.segments("tb.transaction")[40][:2]
    out = tmp_path / "cut.vcd"
    with open(result.waves.vcd) as src:
        window = wv.WindowFilter(open(out, "w"), start=wv.WaveBound(time=first),
                                 end=wv.WaveBound(time=last))
        for line in src:
            window.write(line)
        window.close()
    dump = Dump(out)
    assert dump.segments("tb.transaction")[0][2] == full.segments("tb.transaction")[40][2]
    assert all(first <= t <= last for ch in dump.changes.values() for t, _ in ch[1:])


def test_bounds():
    assert wv.parse_bound("17") == wv.WaveBound(txn=17)
    assert wv.parse_bound("12us") == wv.WaveBound(time=12 * 10**9)
    assert wv.parse_bound("2500 ns") == wv.WaveBound(time=2500 * 10**6)
    for bad in ("0", "12 parsecs", "-3"):
        with pytest.raises(ValueError):
            wv.parse_bound(bad)


# -- WaveDrom -------------------------------------------------------------------------------------

def _svg_texts(path):
    return [wv.unescape(t).replace("&gt;", ">")
            for t in re.findall(r"<tspan[^>]*>([^<]*)</tspan>", Path(path).read_text())]


@pytest.mark.parametrize("op", ["cfgrd", "memrd"])
def test_wavedrom_diagram_labels_match_the_transaction(tmp_path, passing, params, op):
    result, lines, dump = passing
    number = max(i for i, t in enumerate(result.transactions, 1) if t.op == op)
    txn = result.transactions[number - 1]
    source = diagram(result.waves.vcd, result.waves.annotation, number)
    svg = render(source, tmp_path / "t.svg")
    texts = _svg_texts(svg)
    title = expected_text(number, txn, _label(params, 1))
    assert source["head"]["text"] == title and title in texts
    assert f"{txn.cycles} cycles" in texts                  # the arrow: acceptance -> completion
    assert f"#{number}" in texts
    if op == "cfgrd":
        assert format_bdf(txn.rid) in texts and "UR" in texts
    else:
        assert f"{txn.addr:#x}" in texts
    assert "clk" in texts and any(n.endswith("valid") for n in texts)


# -- GTKWave ------------------------------------------------------------------------------------

GTKWAVE_TCL = """\
puts "SIGNALS: [gtkwave::getDisplayedSignals]"
puts "MARKER: [gtkwave::getMarker]"
puts "A: [gtkwave::getNamedMarker A]"
puts "B: [gtkwave::getNamedMarker B]"
puts "WINDOW: [gtkwave::getWindowStartTime] [gtkwave::getWindowEndTime]"
puts "FAILURE: [gtkwave::getTraceValueAtMarkerFromName FAILURE]"
puts "TRANSACTION: [gtkwave::getTraceValueAtMarkerFromName transaction]"
puts "STATE: [gtkwave::getTraceValueAtMarkerFromName {request state}]"
gtkwave::/File/Quit
"""


def test_gtkwave_loads_the_failure_waves(failing, tmp_path):
    if not (shutil.which("gtkwave") and shutil.which("xvfb-run")):
        pytest.skip("needs Debian's gtkwave and xvfb (apt-get install gtkwave xvfb; .ci/run "
                    "installs them)")
    exc, _, folder, dump = failing
    files = exc.waves
    script = tmp_path / "check.tcl"
    script.write_text(GTKWAVE_TCL)
    run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x900x24", "gtkwave", "-S",
                          str(script), str(folder / files.vcd), str(folder / files.gtkw)],
                         capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert not re.search(r"error|unknown|could not|not found", out, re.IGNORECASE), out
    facts = dict(re.findall(r"^([A-Z]+): (.*)$", run.stdout, re.MULTILINE))
    _, names, *_ = gtkw_rows(folder / files.gtkw)
    shown = facts["SIGNALS"].split()
    assert names == shown
    accept, complete = files.annotation.failure_at
    assert (int(facts["MARKER"]), int(facts["A"]), int(facts["B"])) == (accept, accept, complete)
    start, end = map(int, facts["WINDOW"].split())
    assert start <= accept and end >= complete              # zoomed on the failure
    assert end - start < 40 * files.annotation.period
    assert facts["FAILURE"] == f"FAILED #{files.failure.txn}: {exc}"
    assert facts["TRANSACTION"] == f"#{files.failure.txn} CfgRd 01:10.0 VF 1 @0x000 2B -> " \
                                   f"SC 0xffff"
    assert facts["STATE"] == "DECODE/1"         # the edge after acceptance (values by label)


# -- Command line ---------------------------------------------------------------------------

def test_cli_failure_prints_the_command_and_wave_draws(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SRIOV_EP_WAVES", raising=False)
    script = tmp_path / "bad.script"
    script.write_text(FAILING)
    assert main(["sim", str(IGB), str(script)]) == 1
    out, err = capsys.readouterr()
    hint = out.splitlines()[-1]
    assert re.fullmatch(r"# waveform of the failure, transaction \d+ \(CfgRd 01:10.0 VF 1 @0x000 "
                        r"2B -> SC 0xffff\) at [\d.]+ us, marked: gtkwave "
                        r"build/waves/sriov-ep-sim.vcd build/waves/sriov-ep-sim.gtkw", hint), hint
    assert err.startswith("sriov-ep: error: ")
    ok = tmp_path / "ok.script"
    ok.write_text(SCRIPT)
    assert main(["wave", str(IGB), str(ok), "-t", "6", "-o", "d/six.svg"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("d/six.svg: #6 CfgWr 01:00.0 PF @0x004 2B 0x0000 -> SC")  # Command off
    assert "#6" in _svg_texts(tmp_path / "d" / "six.svg")
    assert main(["sim", str(IGB), str(ok), "--wave-from", "x"]) == 2


def _needs_vcd2fst():
    if not (shutil.which("vcd2fst") and shutil.which("gtkwave") and shutil.which("xvfb-run")):
        pytest.skip("needs Debian's gtkwave (vcd2fst) and xvfb (apt-get install gtkwave xvfb; "
                    ".ci/run installs them)")


def test_cli_fst_failure_opens_in_gtkwave_marked(tmp_path, monkeypatch, capsys):
    """``sim --fst`` (the Amaranth backend): the failing run's waves, tracks included, as an FST
    and its save file; GTKWave loads the pair and shows every row, the markers on the failing
    transaction and the tracks' texts at the marker, as for the VCD. No VCD is left behind."""
    _needs_vcd2fst()
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "bad.script"
    script.write_text(FAILING)
    fst = tmp_path / "w" / "bad.fst"
    assert main(["sim", str(IGB), "bad.script", "--fst", str(fst)]) == 1
    out, err = capsys.readouterr()
    hint = out.splitlines()[-1]
    assert hint.endswith(f"marked: gtkwave {fst} {fst.with_suffix('.gtkw')}")
    number = int(re.match(r"# waveform of the failure, transaction (\d+) ", hint)[1])
    assert err.startswith("sriov-ep: error: bad.script:3:")
    assert sorted(p.name for p in fst.parent.iterdir()) == ["bad.fst", "bad.gtkw"]
    assert not (tmp_path / "build").exists()        # (not the failure's own VCD either)
    gtkw = fst.with_suffix(".gtkw")
    assert f'[dumpfile] "{fst}"' in gtkw.read_text()
    _, names, _, _, markers = gtkw_rows(gtkw)
    check = tmp_path / "check.tcl"
    check.write_text(GTKWAVE_TCL)
    run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x900x24", "gtkwave", "-S",
                          str(check), str(fst), str(gtkw)], capture_output=True, text=True,
                         timeout=120)
    shown = run.stdout + run.stderr
    assert run.returncode == 0, shown
    assert "FSTLOAD" in shown
    assert not re.search(r"error|unknown|could not|not found", shown, re.IGNORECASE), shown
    facts = dict(re.findall(r"^([A-Z]+): (.*)$", run.stdout, re.MULTILINE))
    assert facts["SIGNALS"].split() == names
    assert [int(facts["MARKER"]), int(facts["A"]), int(facts["B"])] == markers[:3]
    assert facts["FAILURE"] == (f"FAILED #{number}: bad.script:3: cfgrd 01:10.0 0x00 2 == "
                                f"0x1234: read 0xffff, expected 0x1234")
    assert facts["TRANSACTION"] == f"#{number} CfgRd 01:10.0 VF 1 @0x000 2B -> SC 0xffff"


def test_fst_of_a_failure_is_named_in_its_note(tmp_path, params):
    """``run_with_fst`` around a failing run: the exception's waves and the note that says how
    to open them name the FST, not the VCD it was made from."""
    _needs_vcd2fst()
    fst = tmp_path / "f.fst"
    with pytest.raises(RunFailure) as info:
        wv.run_with_fst(lambda **more: run_ops(params, parse_script(FAILING, "bad.script"),
                                               filename="bad.script", **more), fst)
    files = info.value.waves
    assert (files.vcd, files.gtkw) == (fst, fst.with_suffix(".gtkw"))
    assert info.value.__notes__[-1].endswith(f"marked: gtkwave {fst} {fst.with_suffix('.gtkw')}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.fst", "f.gtkw"]


def test_cli_fst_errors(tmp_path, monkeypatch, capsys):
    """``--fst`` without GTKWave's vcd2fst, with ``--vcd``, or naming a folder: one line
    each, exit 2, nothing run."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    fst = tmp_path / "x.fst"
    assert main(["sim", str(IGB), "--fst", str(fst)]) == 2
    assert capsys.readouterr().err == ("sriov-ep: error: writing an FST needs GTKWave's "
                                       "vcd2fst, which is not on PATH: apt-get install gtkwave\n")
    assert main(["sim", str(IGB), "--fst", str(fst), "--vcd", str(tmp_path / "x.vcd")]) == 2
    assert "argument --vcd: not allowed with argument --fst" in capsys.readouterr().err
    assert main(["sim", str(IGB), "--fst", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"sriov-ep: error: --fst {tmp_path}: is a folder; name a "
                                       f"file in it, e.g. {tmp_path / 'sim.fst'}\n")
    assert main(["sim", str(IGB), "--fst", str(tmp_path / "x.gtkw")]) == 2
    assert "name the FST" in capsys.readouterr().err
    assert main(["sim", str(IGB), "--backend", "native", "--wave-from", "3"]) == 2
    assert "need --vcd or --fst" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_calls_instead_of_a_bench_signal(tmp_path, passing):
    """A bench that cannot add a signal to the dump (cocotb under Verilator) gives the times of
    its driver calls: the tracks are the same. A numeric variable gets a text twin."""
    result, _, dump = passing
    series = dump.series("bench.txn")
    calls = []
    for (t, number), (t_next, _) in zip(series, series[1:] + [(dump.end, 0)], strict=True):
        if number and t_next > t:
            if calls and calls[-1][0] == number and calls[-1][2] == t:
                calls[-1] = (number, calls[-1][1], t_next)
            else:
                calls.append((number, t, t_next))
    ann = result.waves.annotation
    out = tmp_path / "calls.vcd"
    wv.annotate(result.waves.vcd, out, clock="bench.top.clk", ports=_ports(result), calls=calls,
                texts={n: t.split(" ", 1)[1] for n, t in
                       ((int(s.text.split()[0][1:]), s.text) for s in
                        ann.spans_of("transaction"))},
                derived=[("bench.top.\\cfg_cpl__payload.data", "cpl_data_text",
                          {0x10C98086: "82576 PF ID"})])
    again = Dump(out)
    # (the dump had tracks already: the new ones are declared after them, under the same names)
    assert again.names["tb.transaction"] != dump.names["tb.transaction"]
    assert again.segments("tb.transaction") == dump.segments("tb.transaction")
    assert "82576 PF ID" in {t for *_, t in again.segments("tb.cpl_data_text")}


def _ports(result):
    # The endpoint's payload layouts (tag width 8, its default), without making an endpoint
    # that would never be elaborated (Amaranth warns UnusedElaboratable).
    from sriov_ep.decode.bar import MemDecode, MemRequest
    from sriov_ep.endpoint import Completion, ConfigRequest, MsixMessage
    params = load_params(IGB)
    layouts = {"cfg_req": ConfigRequest, "cfg_cpl": Completion, "mem_req": MemRequest(8),
               "mem_res": MemDecode(params, 8), "msg": MsixMessage(params)}
    header = wv.read_header(result.waves.vcd)

    def name(stream, member):
        var = header.like("bench.top", f"{stream}__{member}")
        return var.name if var else "?"
    return wv.endpoint_ports(name, layouts)


# -- Verilator ----------------------------------------------------------------------------------

#: Config reads only (one request each, but the first, retried while the PF is busy after reset).
READS = """\
cfgrd 01:00.0 0x00 4 == 0x10c98086
cfgrd 01:00.0 0x04 2
cfgrd 01:00.0 0x08 4
cfgrd 01:00.0 0x10 4
cfgrd 01:00.0 0x2c 2
cfgrd 01:11.0 0x00 4 == 0xffffffff
"""


@pytest.mark.slow
def test_verilator_dump_has_the_same_tracks(tmp_path, params, cosim_toolchain):
    """The Verilator backend (cocotb) writes the same tracks: its bench gives the times of its
    driver calls instead of a bench signal. Costs a traced Verilator build the first time (about
    1-2 minutes of CPU, then cached in build/cache like the other co-simulation builds) and
    about 5 s a run."""
    from sriov_tb import cosim
    vcd = tmp_path / "v" / "run.vcd"
    ops = parse_script(READS, "reads.script")
    result = cosim.run_ops_verilator(params, ops, filename="reads.script", vcd=vcd,
                                     build_dir=cosim.default_build_dir())
    assert result.waves.vcd == vcd and result.waves.gtkw == vcd.with_suffix(".gtkw")
    dump = Dump(vcd)
    scope = "sriov_ep_top"
    # Number the config handshakes from the dump itself: a Request Retry Status completion
    # (status 2) is reissued as the same transaction.
    expected, number = [], 1
    label = _label(params, 0)
    for _, accept, complete in handshakes(dump, scope, "cfg_req", "cfg_cpl", None):
        txn = result.transactions[number - 1]
        expected.append((accept, complete, expected_text(number, txn, label)))
        if dump.before(f"{scope}.\\cfg_cpl__payload.status", complete) != 2:
            number += 1
    assert number - 1 == len(result.transactions) == len(ops)
    assert len(expected) > len(ops)                 # the retry is on the track too
    assert dump.segments("tb.transaction") == expected
    # The same texts as the Amaranth simulator's run of the script.
    amaranth = run_ops(params, ops, vcd=tmp_path / "a.vcd")
    assert [t for *_, t in dump.segments("tb.transaction")] == \
        [t for *_, t in Dump(amaranth.waves.vcd).segments("tb.transaction")]
    steps = [t for *_, t in dump.segments("tb.step")]
    assert steps[0] == "line 1: cfgrd 01:00.0 0x00 4 == 0x10c98086" and len(steps) == len(ops)
    # Enums as text (from the Verilog's enum_value attributes); the save file names only
    # variables of the dump.
    assert {t for *_, t in dump.segments("tb.cfg_cpl__payload_status")} >= {"SC", "UR", "RRS"}
    groups, names, start, _, markers = gtkw_rows(result.waves.gtkw)
    assert groups[:3] == ["transactions", "config_request", "completion"]
    assert names and set(names) <= _gtkw_names(vcd), set(names) - _gtkw_names(vcd)
    assert {"tb.transaction", "tb.step", "tb.cfg", "tb.cfg_cpl__payload_status"} <= set(names)
    assert start == 0 and markers[0] == -1
    # Real GTKWave reads the dump (Verilator's own has names it stops at) and shows every row.
    if shutil.which("gtkwave") and shutil.which("xvfb-run"):
        script = tmp_path / "check.tcl"
        script.write_text(GTKWAVE_TCL)
        run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x900x24", "gtkwave", "-S",
                              str(script), str(vcd), str(result.waves.gtkw)],
                             capture_output=True, text=True, timeout=120)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out
        assert not re.search(r"error|unknown|could not|not found", out, re.IGNORECASE), out
        assert re.search(r"^SIGNALS: (.*)$", run.stdout, re.MULTILINE).group(1).split() == names


@pytest.mark.slow
def test_verilator_failure_writes_waves_by_itself(tmp_path, monkeypatch, capsys,
                                                 cosim_toolchain):
    """``sim --backend verilator`` without ``--vcd``: a failed check repeats the run on the
    traced model and prints the command that opens the waves at the failure, as the Amaranth
    backend does (same traced build as the test above, from build/cache)."""
    config = Path(__file__).resolve().parent.parent / "examples" / "igb-82576.toml"
    script = tmp_path / "bad.script"
    script.write_text("cfgrd 01:00.0 0x00 4\ncfgrd 01:00.0 0x00 4 == 0x12345678\n")
    monkeypatch.chdir(tmp_path)
    assert main(["sim", str(config), str(script), "--backend", "verilator"]) == 1
    out = capsys.readouterr().out
    (hint,) = [line for line in out.splitlines() if line.startswith("# waveform of the failure")]
    assert "transaction 2 (CfgRd 01:00.0 PF @0x000 4B -> SC 0x10c98086)" in hint
    assert hint.endswith("gtkwave build/waves/sriov-ep-sim.vcd build/waves/sriov-ep-sim.gtkw")
    assert (tmp_path / "build" / "waves" / "sriov-ep-sim.gtkw").is_file()
    assert "FAILED at transaction 2" in (tmp_path / "build/waves/sriov-ep-sim.gtkw").read_text()
