"""Bad input to every ``sriov-ep`` subcommand: one line on stderr, the documented exit status (2
for arguments, configurations, files and tools; 1 for a run that failed), never a traceback;
with ``--json`` the error is also a JSON record on stdout. A closed stdout (``... | head``) ends
every subcommand quietly. Run in-process through ``sriov_tb.cli.main`` and, for a few, as the
installed console script, which is where a real traceback would show. Files are written only
under ``tmp_path``.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from sriov_tb import cli
from sriov_tb.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IGB = str(EXAMPLES / "igb-82576.toml")


@pytest.fixture
def bad_files(tmp_path):
    """Files and folders the bad invocations name, under ``tmp_path``."""
    files = {
        "latin1": tmp_path / "latin1.toml",
        "folder": tmp_path / "a-folder",
        "plain": tmp_path / "plain.txt",
        "flr": tmp_path / "flr.script",
        "missing": tmp_path / "missing.toml",
    }
    text = Path(IGB).read_text()
    # 'Intel(R) 82576' written with a Latin-1 registered sign in a comment: not UTF-8.
    files["latin1"].write_bytes(b"# Intel\xae 82576\n" + text.encode())
    files["folder"].mkdir()
    files["plain"].write_text("not a folder\n")
    files["flr"].write_text("flr 01:10.0     # no VF is enabled: nothing answers there\n")
    return {name: str(path) for name, path in files.items()}


#: (id, argv with {placeholders} from bad_files, exit status, what stderr must say). Every
#: subcommand, and the reproductions of issue 14.
BAD = [
    ("no-command", [], 2, "the following arguments are required: command"),
    ("unknown-command", ["regmapp"], 2, "invalid choice: 'regmapp'"),
    ("unknown-option", ["regmap", IGB, "--bogus"], 2, "unrecognized arguments: --bogus"),
    ("regmap-no-config", ["regmap"], 2, "the following arguments are required: config"),
    ("regmap-not-utf8", ["regmap", "{latin1}"], 2,
     "(file): not UTF-8 text (TOML files are): byte 0xae on line 1 cannot be decoded"),
    ("regmap-missing", ["regmap", "{missing}"], 2, "(file): cannot read: No such file"),
    ("regmap-folder", ["regmap", "{folder}"], 2, "(file): cannot read: Is a directory"),
    ("regmap-function", ["regmap", IGB, "--function", "xf"], 2,
     "argument --function: invalid choice: 'xf'"),
    ("regmap-structure", ["regmap", IGB, "--structure", "acs"], 2, "no structure 'acs'"),
    ("sim-vcd-folder", ["sim", IGB, "--vcd", "{folder}"], 2, "is a folder; name a file in it"),
    ("sim-vcd-slash", ["sim", IGB, "--vcd", "{folder}/new/"], 2, "is a folder"),
    ("sim-vcd-empty", ["sim", IGB, "--vcd", ""], 2, "--vcd: the file name is empty"),
    ("sim-vcd-under-file", ["sim", IGB, "--vcd", "{plain}/x.vcd"], 2,
     "plain.txt is a file, not a folder"),
    ("sim-vcd-gtkw", ["sim", IGB, "--vcd", "{folder}/x.gtkw"], 2, "name the VCD"),
    ("sim-wave-from-verilator", ["sim", IGB, "--wave-from", "3", "--backend", "verilator"], 2,
     "--wave-from/--wave-to with the verilator backend need --vcd"),
    ("sim-backend", ["sim", IGB, "--backend", "vhdl"], 2, "invalid choice: 'vhdl'"),
    ("sim-page-size", ["sim", IGB, "--page-size", "5000"], 2,
     "argument --page-size: 5000 is not a power of two"),
    ("sim-page-size-text", ["sim", IGB, "--page-size", "4k"], 2, "'4k' is not a number"),
    ("sim-missing-script", ["sim", IGB, "{missing}"], 1, "missing.toml:0: cannot read"),
    ("sim-flr-nothing-there", ["sim", IGB, "{flr}"], 1,
     "flr 01:10.0: 01:10.0 did not answer (UR): no function there"),
    ("lspci-enable-negative", ["lspci", IGB, "--enable", "-1"], 2,
     "argument --enable: -1 is negative (expected 0..65535)"),
    ("lspci-enable-too-many", ["lspci", IGB, "--enable", "70000"], 2,
     "argument --enable: 70000 is out of range (0..65535)"),
    ("lspci-enable-text", ["lspci", IGB, "--enable", "four"], 2, "'four' is not a number"),
    ("lspci-enable-octal", ["lspci", IGB, "--enable", "010"], 2,
     "010 has a leading zero, which C reads as octal; write 10 for decimal"),
    ("lspci-enable-and-script", ["lspci", IGB, "--enable", "2", "--script", "{flr}"], 2,
     "argument --script: not allowed with argument --enable"),
    ("lspci-enable-above-totalvfs", ["lspci", IGB, "--enable", "9"], 1,
     "enable 9: EINVAL: cannot enable 9 VFs"),
    ("build-freq-zero", ["build", IGB, "--freq", "0", "-o", "{folder}"], 2,
     "--freq 0: must be a number of MHz in 1..1000"),
    ("build-freq-text", ["build", IGB, "--freq", "fast", "-o", "{folder}"], 2,
     "--freq 'fast' is not a number of MHz"),
    ("build-freq-nan", ["build", IGB, "--freq", "nan", "-o", "{folder}"], 2, "--freq nan: "),
    ("build-output-file", ["build", IGB, "-o", "{plain}"], 2, "plain.txt"),
    ("bench-what", ["bench", "speed"], 2, "invalid choice: 'speed'"),
    ("bench-sizes-text", ["bench", "area", "--sizes", "abc"], 2,
     "argument --sizes: 'abc' is not a number"),
    ("bench-sizes-zero", ["bench", "area", "--sizes", "8,0"], 2, "0 is out of range (1..65535)"),
    ("bench-sizes-empty-item", ["bench", "fmax", "--sizes", "8,,256"], 2, "has an empty item"),
    ("bench-sizes-empty", ["bench", "area", "--sizes", ""], 2, "expected TotalVFs values"),
    ("bench-sizes-with-config", ["bench", "area", "--config", IGB, "--sizes", "8"], 2,
     "bench area: --config measures that configuration"),
    ("bench-sizes-for-sim", ["bench", "sim", "--sizes", "8"], 2,
     "bench sim: --sizes is for bench area and fmax only"),
    ("bench-family-for-fmax", ["bench", "fmax", "--family", "xilinx"], 2,
     "--family is for bench area only"),
    ("bench-device-for-area", ["bench", "area", "--device", "LFE5UM-85F"], 2,
     "--device is for bench fmax only"),
    ("bench-config-missing", ["bench", "sim", "--config", "{missing}"], 2, "(file): cannot read"),
    ("cache-info-and-clear", ["cache", "--info", "--clear"], 2,
     "argument --clear: not allowed with argument --info"),
    ("bench-seeds-for-area", ["bench", "area", "--seeds", "1"], 2,
     "--seeds is for bench fmax only"),
    ("bench-seeds-empty-item", ["bench", "fmax", "--seeds", "1,,2"], 2,
     "expected placement seeds"),
    ("bench-seeds-twice", ["bench", "fmax", "--seeds", "1,1"], 2, "names a seed twice"),
    ("bench-seeds-zero", ["bench", "fmax", "--seeds", "0"], 2, "out of range (1..2147483647)"),
    ("regress-missing", ["regress", "{missing}"], 2,
     "no such file (and no built-in configuration of that name: max-vfs)"),
    ("regress-not-utf8", ["regress", "{latin1}"], 2, "(file): not UTF-8 text"),
    ("regress-count", ["regress", IGB, "--count", "0"], 2,
     "argument --count: 0: at least 1 operation"),
    ("regress-seed", ["regress", IGB, "--seed", "0x5eedz"], 2,
     "argument --seed: '0x5eedz' is not a number"),
    ("regress-vcd-two", ["regress", IGB, "max-vfs", "--vcd", "w.vcd"], 2,
     "--vcd: name one configuration"),
    ("regress-window-no-vcd", ["regress", IGB, "--wave-from", "10"], 2,
     "--wave-from/--wave-to need --vcd"),
]


def _argv(template, files):
    return [arg.format(**files) for arg in template]


def _one_error_line(err, status, says):
    """stderr is exactly one line, the error, saying ``says``."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert says in err, err
    prefix = err.split(": error: ", 1)[0]
    assert prefix.startswith("sriov-ep"), err
    if status == 2:
        assert ": error: " in err


@pytest.mark.parametrize("name, argv, status, says", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line(capsys, monkeypatch, tmp_path, bad_files, name, argv, status,
                               says):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(_argv(argv, bad_files))
    out, err = capsys.readouterr()
    assert code == status, (code, err)
    _one_error_line(err, status, says)
    if status == 2:         # refused before anything ran: no output, nothing left behind
        assert out == ""
        assert sorted(p.name for p in tmp_path.iterdir()) == before


JSON_BAD = [
    (["sim", IGB, "--vcd", "", "--json"], 2, "--vcd: the file name is empty"),
    (["sim", IGB, "--page-size", "4097", "--json"], 2, "4097 is not a power of two"),
    (["bench", "area", "--sizes", "abc", "--json"], 2, "'abc' is not a number"),
    (["sim", IGB, "{flr}", "--json"], 1, "did not answer (UR)"),
    (["cache", "--info", "--clear", "--json"], 2, "not allowed with argument --info"),
]


@pytest.mark.parametrize("argv, status, says", JSON_BAD,
                         ids=["vcd", "page-size", "sizes", "flr", "cache"])
def test_json_failure_is_a_record(capsys, monkeypatch, tmp_path, bad_files, argv, status, says):
    """With --json the error is also the last line of stdout, a JSON record."""
    monkeypatch.chdir(tmp_path)             # (where a failed run leaves its waveform)
    code = main(_argv(argv, bad_files))
    out, err = capsys.readouterr()
    assert code == status
    _one_error_line(err, status, says)
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1] == {"op": "error", "status": "fail" if status == 1 else "error",
                           "exit": status, "error": err.split(": error: ", 1)[1].rstrip("\n")}
    assert all(r["op"] in ("cfgrd", "cfgwr", "waveform") for r in records[:-1])


def test_numbers_in_c_notation():
    """--enable, --sizes and --page-size take numbers as scripts write them."""
    parse = cli.build_parser().parse_args
    assert parse(["lspci", IGB, "--enable", "0x4"]).enable == (4,)
    assert parse(["lspci", IGB, "--enable", "0b101"]).enable == (5,)
    assert parse(["lspci", IGB, "--enable", "0"]).enable == (0,)
    assert parse(["lspci", IGB, "--enable", "0x8,4"]).enable == (8, 4)     # one per PF
    assert parse(["bench", "area", "--sizes", "8, 0x100,65535"]).sizes == (8, 256, 65535)
    assert parse(["sim", IGB, "--page-size", "0x10000"]).page_size == 65536


def test_utf8_byte_order_mark_is_accepted(capsys, tmp_path):
    """A TOML file saved with a byte order mark (as some Windows editors do) reads as without."""
    bom = tmp_path / "igb-82576.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + Path(IGB).read_bytes())
    assert main(["regmap", str(bom), "--structure", "sriov"]) == 0
    with_bom = capsys.readouterr()
    assert main(["regmap", IGB, "--structure", "sriov"]) == 0
    plain = capsys.readouterr()
    assert with_bom.err == plain.err == ""
    assert with_bom.out.replace(str(bom), IGB) == plain.out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"sriov-ep {importlib.metadata.version('sriov-ep')}\n"


# -- The catch-all ------------------------------------------------------------------------------

def test_unexpected_error_is_one_line(capsys, monkeypatch):
    """A bug still ends in one line naming the exception and asking for a report; with
    SRIOV_EP_DEBUG set the traceback is there to report."""
    def broken(args):
        raise ZeroDivisionError("division by zero\nsecond line")
    monkeypatch.setattr(cli, "cmd_regmap", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert main(["regmap", IGB]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    _one_error_line(err, 2, "sriov-ep: error: unexpected ZeroDivisionError: division by zero "
                            "(+1 more lines) (a bug in sriov-ep: please report it")
    assert "SRIOV_EP_DEBUG=1 shows the traceback" in err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        main(["regmap", IGB])


def test_interrupt_is_one_line(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_sim", interrupted)
    assert main(["sim", IGB, "--json"]) == 130
    out, err = capsys.readouterr()
    assert err == "sriov-ep: interrupted\n"
    assert json.loads(out)["status"] == "interrupted"


def test_a_vcd_the_simulator_cannot_open_is_one_line(capsys, monkeypatch, tmp_path):
    """Past the checks (switched off here), the simulator's own failure to open the VCD is still
    one line: no traceback, no warning about the testbench coroutine that never ran."""
    monkeypatch.setattr(cli, "_check_vcd", lambda args: None)
    monkeypatch.setattr(cli, "_prepare_vcd", lambda text: None)
    assert main(["sim", IGB, "--vcd", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err == f"sriov-ep: error: {tmp_path}: Is a directory\n"


def test_an_error_leaves_no_unawaited_coroutine_warning(capsys, monkeypatch):
    """An error out of a simulator that never started its testbenches (their coroutines die
    with the error's frames) is still one line: Python's "coroutine ... was never awaited"
    warning would be a second."""
    async def testbench():
        pass

    def failing(args):
        pending = testbench()           # as a simulator holds its testbenches  # noqa: F841
        raise OSError(5, "Input/output error", "waves.vcd")
    monkeypatch.setattr(cli, "cmd_sim", failing)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["sim", IGB]) == 2
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr().err == "sriov-ep: error: waves.vcd: Input/output error\n"


# -- bench sim's default configuration -----------------------------------------------------------

def test_bench_sim_default_is_found_from_anywhere(capsys, monkeypatch, tmp_path):
    """`bench sim` without --config measures examples/nvme.toml of the source tree, whatever the
    working directory (the measurement itself is stubbed: it takes minutes)."""
    import sriov_tb.bench
    seen = []

    def sim_rows(params, *, config_name="", backends=()):
        seen.append((params.total_vfs, config_name, backends))
        return [{"backend": backends[0], "config": config_name, "transactions": 10,
                 "seconds": 1.0, "per_second": 10.0}]
    monkeypatch.setattr(sriov_tb.bench, "sim_rows", sim_rows)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "sim", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert seen == [(127, "nvme.toml", (backend,))
                    for backend in ("amaranth", "verilator", "native")]
    assert [json.loads(line)["backend"] for line in out.splitlines()] == ["amaranth",
                                                                           "verilator",
                                                                           "native"]
    monkeypatch.setattr(cli, "BENCH_SIM_CONFIG", tmp_path / "nvme.toml")
    assert main(["bench", "sim"]) == 2
    _one_error_line(capsys.readouterr().err, 2, "give --config TOML")


# -- As the installed console script -------------------------------------------------------------

def console_script():
    path = Path(sys.executable).parent / "sriov-ep"
    return str(path) if path.exists() else shutil.which("sriov-ep")


@pytest.fixture(scope="module")
def exe():
    path = console_script()
    assert path, "the sriov-ep console script is not installed (pip install -e .)"
    return path


SCRIPT_BAD = ["regmap-not-utf8", "sim-vcd-folder", "lspci-enable-negative", "bench-sizes-text",
              "build-freq-zero", "sim-flr-nothing-there"]


def test_console_script_errors(exe, tmp_path, bad_files):
    """A few of the above through the console script, side by side: exactly one line on
    stderr, no traceback, no Python warning."""
    cases = {b[0]: b for b in BAD if b[0] in SCRIPT_BAD}
    assert len(cases) == len(SCRIPT_BAD)
    procs = {name: subprocess.Popen([exe, *_argv(argv, bad_files)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for name, (_, argv, _, _) in cases.items()}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        _, _, status, says = cases[name]
        assert proc.returncode == status, (name, err)
        _one_error_line(err, status, says)
        assert "Warning" not in err


#: One invocation of every subcommand (and of the parser's own output), each cheap as long as
#: its output goes nowhere: with a closed pipe it stops at its first line.
PIPED = [
    ["regmap", IGB],
    ["sim", IGB],
    ["sim", IGB, "--json"],
    ["lspci", IGB, "--enable", "0"],
    ["build", IGB, "-o", "{folder}"],
    ["bench", "area", "--sizes", "8"],
    ["cache", "--json"],
    ["sim", "--help"],
    ["--version"],
]


def test_closed_stdout_ends_every_subcommand_quietly(exe, tmp_path, bad_files):
    """``sriov-ep ... | head``, with the reader gone before the first line: status 0, nothing
    on stderr (no BrokenPipeError, no 'Exception ignored' when Python flushes stdout at exit),
    nothing left in the working directory (no waveform of a "failed" run)."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)       # stdout buffered, as users have it
    before = sorted(p.name for p in tmp_path.iterdir())
    procs = []
    for argv in PIPED:
        proc = subprocess.Popen([exe, *_argv(argv, bad_files)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=tmp_path, env=env)
        proc.stdout.close()
        procs.append((argv, proc))
    for argv, proc in procs:
        _, err = proc.communicate(timeout=300)
        assert (proc.returncode, err.decode()) == (0, ""), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == before
