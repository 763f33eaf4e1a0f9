"""Raw TLPs (`tlp HEX... [== EXPECT]` script lines) on the tlp backend.

The TLPs are literals written from the header layouts of PCIe Base §2.2 (DW0: Fmt 31:29,
Type 28:24, EP 14, Length 9:0; requests' DW1: Requester ID 31:16, Tag 15:8, Last DW BE 7:4,
First DW BE 3:0; config DW2: Bus 31:24, Device 23:19, Function 18:16, Register 11:2;
completions' DW1: Completer ID 31:16, Status 15:13, Byte Count 11:0, DW2: Requester ID 31:16,
Tag 15:8, Lower Address 6:0). Every run compares the wrapper's reaction with the prediction of
`sriov_tb.tlp_rules` (written from docs/tlp.md §2) and the model; the expected bytes and
statuses here are the spec's.

The runs share scripts: one Amaranth run of the TLP wrapper costs seconds.
"""

import json
from pathlib import Path

import pytest

from sriov_ep.params import load_params
from sriov_tb import tlp_rules
from sriov_tb.cli import main
from sriov_tb.runner import RunFailure
from sriov_tb.script import parse_script
from sriov_tb.tlp import Tlp
from sriov_tb.tlp_host import run_ops_tlp

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
IGB = str(EXAMPLES / "igb-82576.toml")

# -- literals (PCIe Base §2.2) -------------------------------------------------------------------
# CfgRd0 00:00.0 tag 01 -> 01:00.0 register 0 (Vendor ID / Device ID), all bytes.
CFGRD0 = "04000001 0000010f 01000000"
# Its CplD before any config write (no bus captured, §2.2.6.2: Completer 00:00.0): Fmt 010
# Type 01010 Length 1; Byte Count 4; Requester 00:00.0 tag 01 Lower Address 0; igb's IDs.
CFGRD0_CPLD = "4a000001 00000004 00000100 8680c910"
# CfgWr0 tag 02 -> 01:00.0 register 1 (Command), First DW BE 0011b, data 0x0002 (Memory
# Space Enable), bytes in address order.
CFGWR0_COMMAND = "44000001 00000203 01000004 02000000"
# CfgRd0 with Length 2 (Last DW BE 0): malformed, §2.2.7.
CFGRD0_LEN2 = "04000002 0000030f 01000000"
# IORd (Fmt 000 Type 00010) tag 04 of I/O address 0x1000.
IORD = "02000001 0000040f 00001000"
# Msg (Fmt 001 Type 10rrr), 4 DW: Vendor_Defined Type 0 (0x7E) routed by ID (010) to 01:00.0.
MSG_VENDOR0 = "32000000 0000007e 01000000 00000000"
# An Ignored Message (0x41), routing 100 (local).
MSG_IGNORED = "34000000 00000041 00000000 00000000"
# PM_PME_Turn_Off (0x19), broadcast from the Root Complex (011).
MSG_PME_TURN_OFF = "33000000 00000019 00000000 00000000"
# MWr32 with EP (DW0 bit 14) of one DW at 0x80000100 (PF BAR0 + 0x100 once assigned).
MWR_POISONED = "40004001 0000000f 80000100 deadbeef"
# MRdLk32 (Type 00001) tag 05 at 0x80000000.
MRDLK = "01000001 0000050f 80000000"
# FetchAdd32 (Fmt 010 Type 01100), 32-bit operand (Length 1) tag 06 at 0x80000000.
FETCHADD = "4c000001 00000600 80000000 00000001"
# A CplD from 00:00.0 to 01:00.0 tag 07 (nobody's request): forwarded to rx_cpl.
CPLD_UNASKED = "4a000001 00000004 01000700 12345678"
# MRd32 of 2 DW at 0x80000ffc: crosses a 4 KiB boundary, malformed (§2.2.7).
MRD_4K = "00000002 000008ff 80000ffc"

# After `enable 01:00.0 2` (the host's BARs: PF BAR0 0x80000000, BAR3 (MSI-X) 0x80040000,
# VF BAR0 0x1_0000_0000 + (n-1) x 0x4000):
# MWr64 (Fmt 011) of 2 DW, both BEs 1111b, tag 09, to VF1 BAR0 + 0x40.
MWR64_VF1 = "60000002 000009ff 00000001 00000040 11223344 55667788"
# MRd32 tag 0a of PF BAR0 + 0x100 (the user logic's memory, written 0xcafef00d before), and the
# CplD the user logic gives (Completer 01:00.0 stamped by the wrapper, Byte Count 4).
MRD_PF_BAR0 = "00000001 00000a0f 80000100"
MRD_PF_BAR0_CPLD = "4a000001 01000004 00000a00 0df0feca"
# MRd32 tag 0b of the PF's MSI-X table entry 0 Vector Control (BAR3 + 0xc): masked at reset
# (bit 0, PCIe Base §7.7.2.5), served by the endpoint: CplD Lower Address 0x0c.
MRD_MSIX_CTRL = "00000001 00000b0f 8004000c"
MRD_MSIX_CTRL_CPLD = "4a000001 01000004 00000b0c 01000000"
# MRd32 of 4 DW of the MSI-X table (a whole entry): not one aligned DW or QWORD, CA.
MRD_MSIX_ENTRY = "00000004 00000cff 80040000"
# MRd32 / MWr32 of an address nobody claims.
MRD_UNCLAIMED = "00000001 00000d0f 70000000"
MWR_UNCLAIMED = "40000001 0000000f 70000000 12345678"
# MRd32 of 4 DW of PF BAR0 + 0x100 (longer than a QWORD: the user logic answers).
MRD_PF_BAR0_4DW = "00000004 00000eff 80000100"
# MWr32 of 0 to the PF's MSI-X entry 0 Vector Control (BAR3 + 0xc): unmasks vector 0.
MWR_MSIX_UNMASK = "40000001 0000000f 8004000c 00000000"

SCRIPT = f"""\
tlp {CFGRD0} == {CFGRD0_CPLD}
tlp {CFGWR0_COMMAND} == SC
cfgrd 01:00.0 0x04 2 == 0x0002
tlp {CFGRD0_LEN2} == none
tlp {IORD} == UR
cfgrd 01:00.0 0x4a 2 == 0x0008
cfgwr 01:00.0 0x4a 2 0x0008
tlp {MSG_VENDOR0} == none
cfgrd 01:00.0 0x4a 2 == 0x0008
tlp {MSG_IGNORED} == none
tlp {MSG_PME_TURN_OFF} == none
tlp {MWR_POISONED} == none
tlp {MRDLK} == UR
tlp {FETCHADD} == UR
tlp {CPLD_UNASKED} == none
tlp {MRD_4K} == none
enable 01:00.0 2
memwr 0x80000100 4 0xcafef00d
tlp {MWR64_VF1} == none
memrd 0x100000040 8 == 0x8877665544332211
tlp {MRD_PF_BAR0} == {MRD_PF_BAR0_CPLD}
tlp {MRD_MSIX_CTRL} == {MRD_MSIX_CTRL_CPLD}
tlp {MRD_MSIX_ENTRY} == CA
tlp {MRD_UNCLAIMED} == UR
tlp {MWR_UNCLAIMED} == none
tlp {MRD_PF_BAR0_4DW} == SC
msix_enable 01:00.0 2
memwr 0x8004000c 4 1
msix 01:00.0 0 == pending
tlp {MWR_MSIX_UNMASK}
"""


def h(text):
    return bytes.fromhex(text.replace(" ", ""))


@pytest.fixture(scope="module")
def igb():
    return load_params(IGB)


def run(params, text, **options):
    lines = []
    result = run_ops_tlp(params, parse_script(text, "raw.script"), filename="raw.script",
                         emit=lines.append, json=True, **options)
    return result, [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def records(igb):
    """The shared run of SCRIPT: {script line: [records]}."""
    result, recs = run(igb, SCRIPT)
    by_line = {}
    for rec in recs:
        by_line.setdefault(rec["line"], []).append(rec)
    return result, by_line


def raw_record(records, line):
    recs = [r for r in records[1][line] if r["op"] == "tlp"]
    assert len(recs) == 1
    return recs[0]


# -- beats -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [CFGRD0, CFGWR0_COMMAND, MSG_VENDOR0, MWR64_VF1,
                                  "40000009 000000ff 80000000 " + " ".join(["01020304"] * 9)])
@pytest.mark.parametrize("width", [64, 128, 256])
def test_raw_beats_are_the_codecs(text, width):
    """The beats built from raw bytes are those the codec builds from the decoded TLP."""
    raw = h(text)
    assert tlp_rules.raw_beats(raw, width) == Tlp.from_bytes(raw).beats(width)


# -- the shared run: each TLP got the predicted reaction and met its EXPECT ------------------------

def test_config_read_exact_bytes(records):
    rec = raw_record(records, 1)
    assert rec["completions"] == [h(CFGRD0_CPLD).hex()]
    assert rec["sent"] == h(CFGRD0).hex()
    assert rec["decoded"].startswith("CFGRD0 00:00.0 tag 0x1 -> 01:00.0")


def test_config_write_keeps_the_model_in_step(records):
    """The CfgWr0 executed on the design and the model: the normal cfgrd after it (compared
    with the model) reads Memory Space Enable; its Cpl comes from the captured bus 01."""
    rec = raw_record(records, 2)
    (cpl,) = rec["completions"]
    assert cpl == "0a000000" "01000004" "00000200"
    assert records[1][3][0]["value"] == 0x0002


def test_malformed_config_nothing_back(records):
    rec = raw_record(records, 4)
    assert rec["completions"] == [] and rec["events"] == [{"kind": "MALFORMED", "pf": 0, "vf": 0}]


def test_io_read_ur_sets_urd_in_pf0(records):
    rec = raw_record(records, 5)
    # Cpl (Fmt 000 Type 01010) from 01:00.0, status UR (001), Byte Count 4, tag 04.
    assert rec["completions"] == ["0a000000" "01002004" "00000400"]
    assert rec["events"] == [{"kind": "UR", "pf": 0, "vf": 0}]
    # Device Status bit 3 (Unsupported Request Detected), cleared by the cfgwr of line 7,
    # set again by the unsupported message of line 8.
    assert records[1][6][0]["value"] & 0x8
    assert records[1][9][0]["value"] & 0x8


def test_messages(records):
    vendor0, ignored, turn_off = (raw_record(records, n) for n in (8, 10, 11))
    assert vendor0["events"] == [{"kind": "UR", "pf": 0, "vf": 0}]
    assert vendor0["completions"] == [] and vendor0["rx_msg"] == []
    assert ignored["events"] == [] and ignored["rx_msg"] == [] and ignored["completions"] == []
    assert turn_off["rx_msg"] == [0x19] and turn_off["events"] == []


def test_poisoned_write_locked_read_atomic(records):
    poisoned, locked, atomic = (raw_record(records, n) for n in (12, 13, 14))
    assert poisoned["events"] == [{"kind": "POISONED", "pf": 0, "vf": 0}]
    assert poisoned["user"] == [] and poisoned["completions"] == []
    # CplLk (Type 01011), UR, Byte Count 4 (one DW read), Lower Address 0.
    assert locked["completions"] == ["0b000000" "01002004" "00000500"]
    # Cpl UR, Byte Count 4: the operand size of a 32-bit FetchAdd (§2.2.9).
    assert atomic["completions"] == ["0a000000" "01002004" "00000600"]


def test_completion_forwarded(records):
    rec = raw_record(records, 15)
    assert rec["forwarded"] == [h(CPLD_UNASKED).hex()] and rec["completions"] == []


def test_4k_crossing_read_malformed(records):
    rec = raw_record(records, 16)
    assert rec["events"] == [{"kind": "MALFORMED", "pf": 0, "vf": 0}] and rec["completions"] == []


def test_memory(records):
    write = raw_record(records, 19)
    assert write["user"] == [{"bar_id": 0, "pf": 0, "vf": 1, "offset": 0x40,
                              "tlp": h(MWR64_VF1).hex()}]
    assert records[1][20][0]["value"] == 0x8877665544332211     # the host's memory kept in step
    assert raw_record(records, 21)["completions"] == [h(MRD_PF_BAR0_CPLD).hex()]
    assert raw_record(records, 22)["completions"] == [h(MRD_MSIX_CTRL_CPLD).hex()]
    entry = raw_record(records, 23)
    # Cpl CA (100) from 01:00.0, Byte Count 16, and MSIX_ABORT naming PF 0.
    assert entry["completions"] == ["0a000000" "01008010" "00000c00"]
    assert entry["events"] == [{"kind": "MSIX_ABORT", "pf": 0, "vf": 0}]
    assert raw_record(records, 24)["completions"] == ["0a000000" "01002004" "00000d00"]
    assert raw_record(records, 25)["events"] == [{"kind": "UR", "pf": 0, "vf": 0}]
    long = raw_record(records, 26)
    (cpl,) = long["completions"]
    assert cpl.startswith("4a000004" "01000010" "00000e00" "0df0feca")


ZEROS = " ".join(["00000000"] * 33)
#: Unusual TLPs, each with the reaction docs/tlp.md §2 gives it (checked by the prediction).
UNUSUAL = f"""\
tlp 36000000 00000041 00000000 00000000 == none     # Msg, reserved routing 110b, Ignored code
tlp 80000000 00000000 00000000 == none              # Fmt 100b: a TLP prefix, malformed
tlp 1b000001 0000010f 01000000 == none              # TCfgRd (Type 11011b, deprecated): malformed
tlp 30000000 00000019 00000000 00000000 == none     # PM_PME_Turn_Off routed to the RC: rx_msg
tlp 00000000 00000000 00000000 == none              # MRd Length 0 (1024 DW) at 0: 4 KiB ok, BEs 0
tlp 0a000000 01002004 00000400 == none              # Cpl UR: forwarded
tlp 0b000000 01002004 00000400 == none              # CplLk UR: forwarded
tlp 44004001 00000203 01000004 06000000 == UR       # poisoned CfgWr0 of Command: not executed
cfgrd 01:00.0 0x04 2 == 0x0000
tlp 42004001 0000040f 00001000 12345678 == UR       # poisoned IOWr: UR, POISONED, no URD
cfgrd 01:00.0 0x4a 2 == 0x0000
tlp 4e000002 00000600 80000000 00000001 00000002 == 0a000000 00002004 00000600  # CAS32, BC 4
tlp 4d000001 00000600 80000000 00000001 == UR       # Swap32
tlp 04880001 0000010f 01000000 == SC                # 10-bit tag 0x301 (T9 bit 23, T8 bit 19)
enable 01:00.0 2
tlp 04000001 00001f0f 01800000 == SC                # CfgRd0 of VF1 (01:10.0, ARI)
tlp 20000001 0000200f 00000000 80000100 == SC       # MRd64 below 4 GiB: accepted, claimed
tlp 00000001 00002100 80000100 == SC                # zero-length read (First DW BE 0)
tlp 40000002 000000ff 80040000 aabbccdd 11223344 == none    # MSI-X entry 0 address: a QWORD
memrd 0x80040000 8 == 0x44332211ddccbba8            # (Message Address bits 1:0 read 0)
tlp 74000001 00000050 00000000 00000000 00000000 == none    # Set_Slot_Power_Limit MsgD
tlp 73000021 00000050 00000000 00000000 {ZEROS} == none     # MsgD of 33 DW: malformed
tlp 40000021 000000ff 80000100 {ZEROS} == none              # MWr of 33 DW: malformed
tlp 40000020 000000ff 80000100 {" ".join(["01020304"] * 32)} == none   # MWr of 32 DW: claimed
tlp 4a000021 00000004 01000700 {ZEROS} == none              # CplD of 33 DW: malformed
tlp 00000003 00000f8f 80000100 == none              # Last DW BE 1000b: not contiguous
tlp 00000002 00000f3c 80000100 == SC                # QWORD-aligned Length 2: any nonzero BEs
memrd 0x80000106 1 == 0x03                          # byte 2 of DW 1
"""


def test_unusual_tlps_at_128_bits(igb):
    """Every line's reaction is the predicted one (the run fails otherwise), at a 128-bit
    payload width; a few spec facts checked here as well."""
    _, recs = run(igb, UNUSUAL, data_width=128)
    raw = {r["line"]: r for r in recs if r["op"] == "tlp"}
    assert raw[2]["events"] == raw[3]["events"] == [{"kind": "MALFORMED", "pf": 0, "vf": 0}]
    assert raw[4]["rx_msg"] == [0x19]
    assert raw[6]["forwarded"] == ["0a0000000100200400000400"]
    assert raw[10]["events"] == [{"kind": "POISONED", "pf": 0, "vf": 0}]
    assert raw[14]["completions"][0].startswith("4a880001")     # the 10-bit tag comes back
    assert raw[24]["user"][0]["offset"] == 0x100


def test_msix_message_after_a_raw_table_write(records):
    """Unmasking a pending vector with a raw MWr sends its message (PCIe Base §6.8.2): it
    comes back on tx, and the host compared it with the model's (the msg record after it)."""
    rec = raw_record(records, 30)
    (message,) = rec["tx_other"]
    (msg,) = [r for r in records[1][30] if r["op"] == "msg"]
    mwr = Tlp.from_bytes(h(message))
    assert (mwr.address, int.from_bytes(mwr.data, "little")) == (msg["addr"], msg["data"])
    assert mwr.requester_id == 0x0100 and rec["completions"] == []


# -- failures --------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, says", [
    (f"tlp {CFGRD0} == none", "expected nothing to come back, came CPLD"),
    (f"tlp {IORD} == SC", "expected a completion with status SC, came CPL"),
    (f"tlp {CFGRD0} == 4a000001 00000004 00000100 8680c911",
     "expected 4a000001000000040000010086" "80c911 to come back, came CPLD"),
    (f"tlp {CFGRD0_LEN2} == UR", "expected a completion with status UR, came nothing"),
])
def test_a_wrong_expectation_fails_naming_the_line(igb, line, says):
    with pytest.raises(RunFailure) as info:
        run(igb, f"idle 1\n{line}\nidle 1\n")
    assert str(info.value).startswith(f"raw.script:2: {line}: ")
    assert says in str(info.value)


@pytest.mark.parametrize("line, says", [
    ("tlp 40000002 0000000f 70000000 12345678", "payload is 1 DW but Length says 2"),
    ("tlp 00000001 0000000f 70000000 12345678", "Fmt 000b says no data, but 1 payload DW"),
])
def test_payload_not_matching_length_is_refused(igb, line, says):
    with pytest.raises(RunFailure) as info:
        run(igb, f"idle 1\n{line}\n")
    assert str(info.value).startswith(f"raw.script:2: {line}: cannot send this TLP")
    assert says in str(info.value)


def _no_urd(reaction, model, rule):
    reaction.events.append((tlp_rules.UR, 0, 0))
    reaction.rule = rule


@pytest.mark.parametrize("patch, script, says", [
    # A prediction that takes 0x41 for unsupported: the design drops it silently.
    (("SILENT_MESSAGES", ()), f"tlp {MSG_IGNORED}",
     "rx_event: predicted rx_event UR PF 0, came nothing"),
    # A prediction without the 4 KiB rule: it expects a UR completion, the design drops it.
    (("_memory_malformed", lambda tlp, words: None), f"tlp {MRD_4K}",
     "completion: predicted CPL from 00:00.0 to 00:00.0 tag 0x8 status UR"),
    # A prediction that does not set URD in the model: the next Device Status read differs.
    (("_ur", _no_urd), f"tlp {IORD}\ncfgrd 01:00.0 0x4a 2", "design SC 0x0008"),
])
def test_the_prediction_catches_a_different_design(igb, monkeypatch, patch, script, says):
    """The design does what docs/tlp.md says; a prediction that says otherwise fails the run,
    so a design that departs from the rules would too."""
    monkeypatch.setattr(tlp_rules, *patch)
    with pytest.raises(RunFailure) as info:
        run(igb, script)
    assert says in str(info.value)
    if "cfgrd" not in script:
        assert "the design's reaction differs from the prediction" in str(info.value)


# -- the command line ------------------------------------------------------------------------------

def test_example_script_runs(capsys):
    script = str(EXAMPLES / "scripts" / "raw-tlps.txt")
    assert main(["sim", IGB, script, "--backend", "tlp", "--json"]) == 0
    out = capsys.readouterr().out
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    raw = [r for r in recs if r.get("op") == "tlp"]
    assert len(raw) == sum(1 for line in Path(script).read_text().splitlines()
                           if line.startswith("tlp "))
    assert all("predicted" in r and "completions" in r for r in raw)


@pytest.mark.parametrize("backend", ["amaranth", "verilator", "native"])
def test_other_backends_refuse_raw_tlps(capsys, tmp_path, backend):
    script = tmp_path / "raw.script"
    script.write_text(f"idle 1\ntlp {CFGRD0}\n")
    argv = ["sim", IGB, str(script)] + (["--backend", backend] if backend != "amaranth" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{script}:2: tlp: raw TLPs need --backend tlp" in err


def test_bad_raw_line_from_the_command_line(capsys, tmp_path):
    script = tmp_path / "raw.script"
    script.write_text("tlp 04000001 0000010f\n")
    assert main(["sim", IGB, str(script), "--backend", "tlp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{script}:1: HEX is 2 DWs; a TLP header is at least 3 DWs" in err


# -- Plain memory operations on the tlp backend: the wrapper's URD -------------------------------

UNCLAIMED_URD = """\
enable 01:00.0 1
memrd 0x70000000 4
cfgrd 01:00.0 0x4a 2 == 0x0008
cfgwr 01:00.0 0x4a 2 0x0008
cfgrd 01:00.0 0x4a 2 == 0x0000
memwr 0x70000000 4 0x12345678
cfgrd 01:00.0 0x4a 2 == 0x0008
"""


def test_unclaimed_memory_sets_urd_in_the_model_too(igb, monkeypatch):
    """An unclaimed ``memrd``/``memwr`` (no BAR at 0x70000000) sets Unsupported Request
    Detected (Device Status bit 3, at 0x4a: the PCI Express capability is at 0x40) in PF 0
    through the wrapper; the model learns it from its own decode (``MemoryPort``), so the
    Device Status reads agree, RW1C clear included. Without that the first read mismatches."""
    run(igb, UNCLAIMED_URD)
    from sriov_tb.tlp_host import TlpMemoryDriver
    monkeypatch.setattr(TlpMemoryDriver, "unclaimed_sets_urd", False)
    with pytest.raises(RunFailure, match=r"raw\.script:3: cfgrd 01:00\.0 0x4a .*design SC "
                                         r"0x00082810, model SC 0x00002810"):
        run(igb, UNCLAIMED_URD)
