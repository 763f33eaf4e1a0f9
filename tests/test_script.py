"""Transaction scripts: good scripts parse to the expected operations; every malformed line is
refused with a ScriptError naming the file, the line and what is wrong."""

from pathlib import Path

import pytest

from sriov_ep.params import load_params
from sriov_tb.script import KINDS, Op, ScriptError, load_script, parse_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def refuses(line, phrase, *, filename="walk.script", before=("idle 1",)):
    """Assert that ``line``, preceded by the good lines ``before``, is refused at its own line
    number with a message containing ``phrase``."""
    text = "\n".join([*before, line]) + "\n"
    with pytest.raises(ScriptError) as info:
        parse_script(text, filename)
    exc = info.value
    number = len(before) + 1
    assert (exc.filename, exc.line) == (filename, number)
    assert phrase in exc.problem, exc.problem
    assert str(exc) == f"{filename}:{number}: {exc.problem}"
    return exc


# -- Good scripts ---------------------------------------------------------------------------------

def test_every_operation():
    text = """\
cfgrd 01:00.0 0x00 4 == 0x10c98086
cfgrd 01:00.0 0x04 2
cfgwr 01:00.0 0x04 2 0x0006
enable 01:00.0 4
disable 01:00.0
flr 01:10.2
idle 100
memrd 0xfe000000 4 == 0xdeadbeef
memrd 0x100000000 8
memwr 0xfe000008 8 0x0123456789abcdef
"""
    assert parse_script(text) == [
        Op("cfgrd", 1, "cfgrd 01:00.0 0x00 4 == 0x10c98086", rid=0x0100, offset=0, size=4,
           value=0x10c98086),
        Op("cfgrd", 2, "cfgrd 01:00.0 0x04 2", rid=0x0100, offset=4, size=2),
        Op("cfgwr", 3, "cfgwr 01:00.0 0x04 2 0x0006", rid=0x0100, offset=4, size=2, value=6),
        Op("enable", 4, "enable 01:00.0 4", rid=0x0100, count=4),
        Op("disable", 5, "disable 01:00.0", rid=0x0100),
        Op("flr", 6, "flr 01:10.2", rid=0x0182),
        Op("idle", 7, "idle 100", count=100),
        Op("memrd", 8, "memrd 0xfe000000 4 == 0xdeadbeef", addr=0xfe000000, size=4,
           value=0xdeadbeef),
        Op("memrd", 9, "memrd 0x100000000 8", addr=1 << 32, size=8),
        Op("memwr", 10, "memwr 0xfe000008 8 0x0123456789abcdef", addr=0xfe000008, size=8,
           value=0x0123456789abcdef),
    ]


def test_comments_blank_lines_and_whitespace():
    text = ("# a walk\n"
            "\n"
            "   \t\n"
            "  idle   5   # wait a little\n"
            "#idle 6\n"
            "flr 01:00.0# no space before the comment\n"
            "cfgrd\t01:00.0\t0\t4\t==\t0  # tabs\n")
    ops = parse_script(text)
    assert [(op.kind, op.line, op.text) for op in ops] == [
        ("idle", 4, "idle   5"),
        ("flr", 6, "flr 01:00.0"),
        ("cfgrd", 7, "cfgrd\t01:00.0\t0\t4\t==\t0"),
    ]
    assert ops[2].value == 0


def test_empty_script():
    assert parse_script("") == []
    assert parse_script("# nothing\n\n  # at all\n") == []


def test_crlf_line_ends():
    ops = parse_script("idle 1\r\n\r\nidle 2\r\n")
    assert [(op.line, op.count, op.text) for op in ops] == [(1, 1, "idle 1"), (3, 2, "idle 2")]


@pytest.mark.parametrize("token, value", [
    ("0", 0), ("7", 7), ("4096", 4096), ("0x0", 0), ("0x1f", 0x1f), ("0x1F", 0x1f),
    ("0XAbC", 0xabc), ("0x0004", 4), ("0b0", 0), ("0b101", 5), ("0B11", 3),
    ("10000000", 10_000_000),
])
def test_numbers(token, value):
    assert parse_script(f"idle {token}")[0].count == value


def test_number_bases_in_every_field():
    op = parse_script("cfgwr 01:00.0 0b1000 0x2 65535")[0]
    assert (op.offset, op.size, op.value) == (8, 2, 0xffff)
    op = parse_script("memrd 18446744073709551608 0b1000 == 0XFFFFFFFFFFFFFFFF")[0]
    assert (op.addr, op.size, op.value) == ((1 << 64) - 8, 8, (1 << 64) - 1)


@pytest.mark.parametrize("bdf, rid", [
    ("00:00.0", 0x0000), ("01:00.0", 0x0100), ("1:0.0", 0x0100), ("ff:1f.7", 0xffff),
    ("FF:1F.7", 0xffff), ("0a:0B.3", 0x0a5b), ("0000:01:00.0", 0x0100),
    # ARI function numbers as lspci writes them: device f >> 3, function f & 7.
    ("01:10.0", 0x0180), ("01:10.6", 0x0186), ("01:11.0", 0x0188),
])
def test_bdfs(bdf, rid):
    assert parse_script(f"flr {bdf}")[0].rid == rid


def test_expected_value_written_against_the_operator():
    assert parse_script("cfgrd 01:00.0 0 4 ==0x10C98086")[0].value == 0x10c98086
    assert parse_script("memrd 0 1 ==0xff")[0].value == 0xff


@pytest.mark.parametrize("line, field, value", [
    ("cfgrd 01:00.0 0xffc 4", "offset", 0xffc),
    ("cfgrd 01:00.0 0xfff 1", "offset", 0xfff),
    ("cfgrd 01:00.0 0xffe 2 == 0xffff", "value", 0xffff),
    ("cfgwr 01:00.0 0 4 0xffffffff", "value", 0xffffffff),
    ("cfgwr 01:00.0 3 1 255", "value", 255),
    ("enable 01:00.0 0", "count", 0),
    ("enable 01:00.0 65535", "count", 65535),
    ("idle 0", "count", 0),
    ("idle 10000000", "count", 10_000_000),
    ("memrd 0xffffffffffffffff 1", "addr", (1 << 64) - 1),
    ("memrd 0xfffffffffffffff8 8", "addr", (1 << 64) - 8),
    ("memrd 3 4", "addr", 3),                       # memory alignment is not checked here
    ("memwr 0 1 0xff", "value", 0xff),
])
def test_limits_accepted(line, field, value):
    assert getattr(parse_script(line)[0], field) == value


def test_unused_fields_are_none():
    op = parse_script("idle 3")[0]
    assert (op.rid, op.offset, op.size, op.value, op.addr) == (None,) * 5
    op = parse_script("cfgrd 01:00.0 0 4")[0]
    assert (op.value, op.count, op.addr) == (None,) * 3


def test_ops_are_frozen():
    op = parse_script("idle 3")[0]
    with pytest.raises(AttributeError):
        op.count = 4


# -- Files ----------------------------------------------------------------------------------------

def test_load_script(tmp_path):
    path = tmp_path / "walk.script"
    path.write_text("# walk\nidle 2\nflr 01:00.0\n")
    assert load_script(path) == [Op("idle", 2, "idle 2", count=2),
                                 Op("flr", 3, "flr 01:00.0", rid=0x0100)]
    assert load_script(str(path)) == load_script(path)


def test_load_script_names_the_file_in_errors(tmp_path):
    path = tmp_path / "bad.script"
    path.write_text("idle 1\n\nidle x\n")
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert (info.value.filename, info.value.line) == (str(path), 3)
    assert str(info.value).startswith(f"{path}:3: CYCLES 'x' is not a number")


def test_missing_file(tmp_path):
    path = tmp_path / "missing.script"
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert (info.value.filename, info.value.line) == (str(path), 0)
    assert str(info.value) == f"{path}:0: cannot read: No such file or directory"


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(ScriptError) as info:
        load_script(tmp_path)
    assert (info.value.filename, info.value.line) == (str(tmp_path), 0)
    assert info.value.problem.startswith("cannot read: ")


def test_not_utf8(tmp_path):
    path = tmp_path / "binary.script"
    path.write_bytes(b"idle 1\nidle 2\nidle \xff\n")
    with pytest.raises(ScriptError) as info:
        load_script(path)
    assert info.value.line == 3
    assert "not UTF-8 text: byte 0xff" in info.value.problem


def test_default_filename():
    with pytest.raises(ScriptError) as info:
        parse_script("idle x")
    assert str(info.value).startswith("<script>:1: ")


# -- Malformed lines ------------------------------------------------------------------------------

def test_first_error_wins():
    with pytest.raises(ScriptError) as info:
        parse_script("idle 1\nidle x\nidle y\n", "w.script")
    assert str(info.value) == ("w.script:2: CYCLES 'x' is not a number (expected decimal, "
                               "0x hex or 0b binary)")


@pytest.mark.parametrize("line, phrase", [
    ("cfgrdd 01:00.0 0 4", "unknown operation 'cfgrdd' (expected one of cfgrd, cfgwr, enable, "
                           "disable, flr, idle, memrd, memwr, msix, msix_enable, msix_count, "
                           "suspend, resume, tlp)"),
    ("cfgrdd 01:00.0 0 4", "did you mean 'cfgrd'?"),
    ("CFGRD 01:00.0 0 4", "operation names are lowercase"),
    ("Idle 1", "unknown operation 'Idle'"),
    ("reset", "unknown operation 'reset'"),
    ("01:00.0 cfgrd 0 4", "unknown operation '01:00.0'"),
    ("== 5", "unknown operation '=='"),
])
def test_unknown_operation(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("cfgrd", "cfgrd takes BDF OFFSET SIZE [== VALUE], got 0 arguments (BDF is missing)"),
    ("cfgrd 01:00.0", "got 1 argument (OFFSET is missing)"),
    ("cfgrd 01:00.0 0", "cfgrd takes BDF OFFSET SIZE [== VALUE], got 2 arguments "
                        "(SIZE is missing)"),
    ("cfgwr 01:00.0 0 4", "cfgwr takes BDF OFFSET SIZE VALUE, got 3 arguments (VALUE is missing)"),
    ("enable 01:00.0", "enable takes BDF N, got 1 argument (N is missing)"),
    ("enable", "enable takes BDF N, got 0 arguments (BDF is missing)"),
    ("disable", "disable takes BDF, got 0 arguments (BDF is missing)"),
    ("flr", "flr takes BDF, got 0 arguments (BDF is missing)"),
    ("idle", "idle takes CYCLES, got 0 arguments (CYCLES is missing)"),
    ("memrd 0", "memrd takes ADDR SIZE [== VALUE], got 1 argument (SIZE is missing)"),
    ("memwr 0 4", "memwr takes ADDR SIZE VALUE, got 2 arguments (VALUE is missing)"),
])
def test_missing_arguments(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("cfgwr 01:00.0 0 4 5 6", "cfgwr takes BDF OFFSET SIZE VALUE, got 5 arguments "
                              "(unexpected '6' after VALUE)"),
    ("enable 01:00.0 4 now", "got 3 arguments (unexpected 'now' after N)"),
    ("disable 01:00.0 01:00.1", "unexpected '01:00.1' after BDF"),
    ("flr 01:10.2 please", "flr takes BDF, got 2 arguments (unexpected 'please' after BDF)"),
    ("idle 5 6", "idle takes CYCLES, got 2 arguments (unexpected '6' after CYCLES)"),
    ("memwr 0 4 5 6", "unexpected '6' after VALUE"),
    ("cfgrd 01:00.0 0 4 == 5 6", "unexpected '6' after the expected VALUE"),
    ("memrd 0 4 == 5 == 5", "unexpected '==' after the expected VALUE"),
    ("cfgrd 01:00.0 0 4 5 6 7", "cfgrd takes BDF OFFSET SIZE [== VALUE], got 6 arguments "
                                "(unexpected '5' after SIZE)"),
])
def test_trailing_junk(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("cfgrd 01:00.0 0 4 0x10c98086", "expected '==' before the expected value, got '0x10c98086'"),
    ("cfgrd 01:00.0 0 4 = 5", "expected '==' before the expected value, got '='"),
    ("cfgrd 01:00.0 0 4 is 5", "expected '==' before the expected value, got 'is'"),
    ("memrd 0 4 0", "expected '==' before the expected value, got '0'"),
    ("cfgrd 01:00.0 0 4 ==", "'==' must be followed by the expected VALUE"),
    ("memrd 0 4 ==", "'==' must be followed by the expected VALUE"),
    ("cfgrd 01:00.0 0 == 5", "got 2 arguments (SIZE is missing before '==')"),
    ("cfgrd 01:00.0 0 4 5 == 6", "got 4 arguments (expected '==' after SIZE, got '5')"),
    ("cfgwr 01:00.0 0 4 == 6", "cfgwr takes no expected value ('==' is for reads"),
    ("memwr 0 4 == 6", "memwr takes no expected value"),
    ("idle 4 == 4", "idle takes no expected value"),
])
def test_expected_value_syntax(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("idle zz", "CYCLES 'zz' is not a number"),
    ("cfgrd 01:00.0 zz 4", "OFFSET 'zz' is not a number (expected decimal, 0x hex or 0b binary)"),
    ("cfgrd 01:00.0 0 four", "SIZE 'four' is not a number"),
    ("cfgrd 01:00.0 0 4 == 0xzz", "VALUE '0xzz' is not a number"),
    ("cfgwr 01:00.0 0 4 0x", "VALUE '0x' is not a number"),
    ("enable 01:00.0 0b102", "N '0b102' is not a number"),
    ("memrd 0xfe00000g 4", "ADDR '0xfe00000g' is not a number"),
    ("idle 1.5", "CYCLES '1.5' is not a number"),
    ("idle 10u", "CYCLES '10u' is not a number"),
    ("idle +5", "CYCLES '+5' is not a number"),
    ("idle \uff15", "CYCLES '\uff15' is not a number"),     # a fullwidth digit 5
    ("idle 010", "CYCLES '010' has a leading zero, which C reads as octal; write 10 for "
                 "decimal, or 0x8 if you meant C octal"),
    ("idle 08", "CYCLES '08' has a leading zero, which C reads as octal; write 8 for decimal"),
    ("cfgrd 01:00.0 00 4", "OFFSET '00' has a leading zero"),
    ("idle 0o17", "CYCLES '0o17': octal is not accepted"),
    ("idle 1_000", "CYCLES '1_000': underscores are not allowed in numbers"),
    ("memrd 0xfe00_0000 4", "ADDR '0xfe00_0000': underscores are not allowed"),
    ("cfgrd 01:00.0 -4 4", "OFFSET '-4' is negative; numbers are unsigned"),
    ("idle " + "9" * 5000, "is too large"),
])
def test_bad_numbers(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("flr 01:20.0", "'01:20.0' is not a BDF: device 0x20 is above 0x1f (ARI function f is "
                    "written as device f>>3, function f&7)"),
    ("flr 01:ff.0", "'01:ff.0' is not a BDF: device 0xff is above 0x1f"),
    ("flr 01:00.8", "'01:00.8' is not a BDF: function 8 is above 7"),
    ("flr 01:00.x", "'01:00.x' is not a BDF: function 'x' is not a single digit 0-7"),
    ("flr 01:00.07", "function '07' is not a single digit 0-7"),
    ("flr 100:00.0", "'100:00.0' is not a BDF: bus '100' is not 1-2 hex digits"),
    ("flr :00.0", "bus '' is not 1-2 hex digits"),
    ("flr 01:g0.0", "'01:g0.0' is not a BDF: device 'g0' is not 1-2 hex digits"),
    ("flr 01:123.0", "device '123' is not 1-2 hex digits"),
    ("flr 0:01:00.0", "'0:01:00.0' is not a BDF: domain '0' is not 4 hex digits"),
    ("flr 0001:01:00.0", "'0001:01:00.0': domain 0001 is not 0000"),
    ("flr 0100", "'0100' is not a BDF (expected BB:DD.F as lspci writes it, e.g. 01:00.0)"),
    ("flr 01.00.0", "'01.00.0' is not a BDF (expected BB:DD.F"),
    ("flr 01:00", "'01:00' is not a BDF"),
    ("cfgrd 0x100 0 4", "'0x100' is not a BDF"),
    ("enable 01:0.0.0 4", "'01:0.0.0' is not a BDF"),
    ("disable 01:00.0:", "'01:00.0:' is not a BDF"),
])
def test_bad_bdfs(line, phrase):
    refuses(line, phrase)


@pytest.mark.parametrize("line, phrase", [
    ("cfgrd 01:00.0 0x1000 4", "OFFSET 0x1000 is outside config space (0..0xfff)"),
    ("cfgwr 01:00.0 4096 1 0", "OFFSET 4096 is outside config space"),
    ("cfgrd 01:00.0 0 3", "SIZE must be 1, 2 or 4, got 3"),
    ("cfgrd 01:00.0 0 8", "SIZE must be 1, 2 or 4, got 8"),
    ("cfgrd 01:00.0 0 0", "SIZE must be 1, 2 or 4, got 0"),
    ("memrd 0 3", "SIZE must be 1, 2, 4 or 8, got 3"),
    ("memwr 0 16 0", "SIZE must be 1, 2, 4 or 8, got 16"),
    ("cfgrd 01:00.0 0x3 2", "OFFSET 0x3 with SIZE 2 is not naturally aligned"),
    ("cfgwr 01:00.0 0x2 4 0", "OFFSET 0x2 with SIZE 4 is not naturally aligned"),
    ("cfgrd 01:00.0 0xffe 4", "OFFSET 0xffe with SIZE 4 is not naturally aligned"),
    ("cfgwr 01:00.0 0 1 0x1ff", "VALUE 0x1ff does not fit in 1 byte (0..0xff)"),
    ("cfgwr 01:00.0 0 2 65536", "VALUE 65536 does not fit in 2 bytes (0..0xffff)"),
    ("cfgrd 01:00.0 0 4 == 0x100000000", "VALUE 0x100000000 does not fit in 4 bytes"),
    ("memwr 0 8 0x10000000000000000", "VALUE 0x10000000000000000 does not fit in 8 bytes"),
    ("memrd 0 1 == 0b100000000", "VALUE 0b100000000 does not fit in 1 byte"),
    ("enable 01:00.0 65536", "N 65536 is out of range (0..65535)"),
    ("enable 01:00.0 0x10000", "N 0x10000 is out of range"),
    ("idle 10000001", "CYCLES 10000001 is out of range (0..10000000)"),
    ("memrd 0x10000000000000000 4", "ADDR 0x10000000000000000 does not fit in 64 bits"),
    ("memrd 0xfffffffffffffffe 4", "memrd of 4 bytes at ADDR 0xfffffffffffffffe runs past the "
                                   "end of the 64-bit address space"),
    ("memwr 0xffffffffffffffff 2 0", "runs past the end of the 64-bit address space"),
])
def test_out_of_range(line, phrase):
    refuses(line, phrase)


def test_long_tokens_are_shortened_in_messages():
    exc = refuses("idle 0x" + "g" * 200, "is not a number")
    assert len(exc.problem) < 120


def test_error_carries_file_and_line():
    exc = ScriptError("a.script", 7, "something is wrong")
    assert (exc.filename, exc.line, exc.problem) == ("a.script", 7, "something is wrong")
    assert str(exc) == "a.script:7: something is wrong"


def test_kinds():
    assert KINDS == ("cfgrd", "cfgwr", "enable", "disable", "flr", "idle", "memrd", "memwr",
                     "msix", "msix_enable", "msix_count", "suspend", "resume", "tlp")


# -- The example script ---------------------------------------------------------------------------

def test_igb_walk_example():
    ops = load_script(EXAMPLES / "scripts" / "igb-walk.script")
    steps = [(op.kind, op.rid, op.offset, op.size, op.value, op.count) for op in ops]
    assert steps == [
        ("cfgrd", 0x0100, 0x00, 4, 0x10c98086, None),
        ("enable", 0x0100, None, None, None, 4),
        ("cfgrd", 0x0180, 0x00, 4, 0xffffffff, None),
        ("cfgrd", 0x0182, 0x04, 2, 0x0000, None),
        ("cfgwr", 0x0182, 0x04, 2, 0x0004, None),
        ("cfgrd", 0x0182, 0x04, 2, 0x0004, None),
        ("flr", 0x0182, None, None, None, None),
        ("cfgrd", 0x0182, 0x04, 2, 0x0000, None),
        ("cfgrd", 0x0188, 0x00, 4, 0xffffffff, None),
        ("disable", 0x0100, None, None, None, None),
    ]


def test_igb_walk_example_matches_its_config():
    """The Routing IDs in the example are the ones igb-82576.toml gives its PF and VFs."""
    params = load_params(EXAMPLES / "igb-82576.toml")
    ops = load_script(EXAMPLES / "scripts" / "igb-walk.script")
    pf = params.pf_rid
    assert ops[0].rid == pf
    assert ops[0].value == params.device_id << 16 | params.vendor_id

    def vf(n):
        return pf + params.first_vf_offset_ari + (n - 1) * params.vf_stride_ari

    assert [op.rid for op in ops] == [pf, pf, vf(1), vf(2), vf(2), vf(2), vf(2), vf(2), vf(5), pf]
    assert ops[1].count == 4 < 5 <= params.total_vfs     # VF5 exists but is not enabled


# -- Raw TLPs (tlp HEX... [== EXPECT]) -----------------------------------------------------------

#: CfgRd0 00:00.0 tag 01 -> 01:00.0 register 0 (PCIe Base §2.2.7: Fmt 000 Type 00100, Length 1).
CFGRD0_HEX = "04000001 0000010f 01000000"
CFGRD0_BYTES = bytes.fromhex("04000001" "0000010f" "01000000")


@pytest.mark.parametrize("line, fields", [
    (f"tlp {CFGRD0_HEX}", {}),
    ("tlp 04 00 00 01 00 00 01 0f 01 00 00 00", {}),           # any grouping
    ("tlp 040000010000010f01000000", {}),
    ("tlp 0x04000001 0X0000010F 01000000", {}),                  # 0x prefixes, either case
    (f"tlp {CFGRD0_HEX} == none", {"outcome": "none"}),
    (f"tlp {CFGRD0_HEX} == SC", {"outcome": "SC"}),
    (f"tlp {CFGRD0_HEX} == UR", {"outcome": "UR"}),
    (f"tlp {CFGRD0_HEX} == CA", {"outcome": "CA"}),
    (f"tlp {CFGRD0_HEX} == RRS", {"outcome": "RRS"}),
    (f"tlp {CFGRD0_HEX}==RRS", {"outcome": "RRS"}),
    (f"tlp {CFGRD0_HEX} == 4a000001 00000004 00000100 8680c910",
     {"expect_raw": bytes.fromhex("4a000001" "00000004" "00000100" "8680c910")}),
])
def test_raw_tlp(line, fields):
    (op,) = parse_script(line + "   # a comment\n")
    assert op == Op("tlp", 1, line, raw=CFGRD0_BYTES, **fields)


def test_raw_tlp_limits():
    # A 4 DW header (Fmt bit 0) and 1024 payload DWs: the largest TLP.
    words = "60000000 000000ff 00000001 00000000 " + "00000000 " * 1024
    (op,) = parse_script(f"tlp {words}")
    assert len(op.raw) == 4 * (4 + 1024)


@pytest.mark.parametrize("line, phrase", [
    ("tlp", "HEX is missing (the TLP's bytes in hex, e.g. 04000001 0000010f 01000000)"),
    ("tlp == SC", "HEX is missing"),
    ("tlp 04000001 0000010f 0100000g", "HEX word '0100000g' is not hex digits (a TLP's bytes in "
                                       "hex, optionally 0x-prefixed)"),
    ("tlp 0x 04000001 0000010f 01000000", "HEX word '0x' is not hex digits"),
    ("tlp -4000001 0000010f 01000000", "HEX word '-4000001' is not hex digits"),
    ("tlp 0400001 0000010f 01000000", "HEX word '0400001' has an odd number of hex digits (7); "
                                      "each byte is two digits"),
    ("tlp 04000001 0000010f 010000", "HEX is 11 bytes, not a whole number of DWs (a multiple of "
                                     "4 bytes)"),
    ("tlp 04000001 0000010f", "HEX is 2 DWs; a TLP header is at least 3 DWs"),
    ("tlp 04000001", "HEX is 1 DW; a TLP header is at least 3 DWs"),
    ("tlp 20000001 0000010f 01000000", "HEX is 3 DWs, but Fmt 001b (bit 0 set) says a 4 DW "
                                       "header"),
    ("tlp 40000000 000000ff 00000000 " + "00000000 " * 1025,
     "HEX has 1025 payload DWs after its 3 DW header; a TLP carries at most 1024"),
    (f"tlp {CFGRD0_HEX} ==", "'==' must be followed by EXPECT: none, SC, UR, CA, RRS or the "
                             "bytes in hex"),
    (f"tlp {CFGRD0_HEX} == SC == UR", "'==' appears twice"),
    (f"tlp {CFGRD0_HEX} == ur", "EXPECT 'ur': write UR (none, SC, UR, CA, RRS are written so)"),
    (f"tlp {CFGRD0_HEX} == None", "EXPECT 'None': write none"),
    (f"tlp {CFGRD0_HEX} == SC UR", "EXPECT word 'SC' is not hex digits"),
    (f"tlp {CFGRD0_HEX} == 4a000001 00000004", "EXPECT is 2 DWs; a TLP header is at least 3 DWs"),
    (f"tlp {CFGRD0_HEX} == 4a00000", "EXPECT word '4a00000' has an odd number of hex digits"),
    (f"tlp {CFGRD0_HEX} == 4a 00", "EXPECT is 2 bytes, not a whole number of DWs"),
    (f"tlp {CFGRD0_HEX} == done", "EXPECT word 'done' is not hex digits"),
])
def test_bad_raw_tlps(line, phrase):
    refuses(line, phrase)
