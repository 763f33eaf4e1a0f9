"""The script operations for MSI-X and power management: msix, msix_enable, msix_count, suspend,
resume. Parsing (good lines and every refusal, naming file, line and problem) and execution
through sriov_tb.runner.execute with model-backed drivers (the reference model plays the design;
a second model checks it), so transcripts are the model's.

Configuration and addresses as in test_host_msix.py: the 82576-like NIC with PF MSI-X (10
vectors, BAR3 at 0x8004_0000) and VF MSI-X (3 vectors; VF n's table at
0x1_0002_0000 + (n-1) * 0x4000, PBA at + 0x2000); messages 0xFEE0_0000 | cpu << 12 with data =
host-wide vector number from 0x20 in setup order, cpu = (data - 0x20) % 4.
"""

import asyncio
import json
import re
from pathlib import Path

import pytest
from test_script import refuses as script_refuses

from sriov_ep.params import MsixParams, PmParams, load_params
from sriov_tb.host import ModelEndpointPort, ModelInterruptPort, ModelMemoryPort
from sriov_tb.model import EndpointModel
from sriov_tb.runner import RunFailure, RunResult, check_ops, execute
from sriov_tb.script import Op, parse_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def igb_params():
    msix = MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000)
    vf_msix = MsixParams(vectors=3, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000)
    return load_params(EXAMPLES / "igb-82576.toml").replace(msix=msix, vf_pm=PmParams(),
                                                            vf_msix=vf_msix)


def refuses(line, phrase, *, filename="irq.script", before=("idle 1",)):
    """test_script.refuses, with this file's default script name."""
    return script_refuses(line, phrase, filename=filename, before=before)


# -- Parsing ----------------------------------------------------------------------------------

def test_new_operations_parse():
    text = """\
msix 01:10.0 2
msix 01:00.0 0x9 == sent
msix 0000:01:10.2 0 == pending  # with a domain
msix 01:11.6 2047==dropped
msix_enable 01:10.0 3
msix_count 01:10.2 0
msix_count 01:10.2 2048
suspend
resume   # wake up
"""
    assert parse_script(text) == [
        Op("msix", 1, "msix 01:10.0 2", rid=0x0180, vector=2),
        Op("msix", 2, "msix 01:00.0 0x9 == sent", rid=0x0100, vector=9, outcome="sent"),
        Op("msix", 3, "msix 0000:01:10.2 0 == pending", rid=0x0182, vector=0,
           outcome="pending"),
        Op("msix", 4, "msix 01:11.6 2047==dropped", rid=0x018E, vector=2047,
           outcome="dropped"),
        Op("msix_enable", 5, "msix_enable 01:10.0 3", rid=0x0180, count=3),
        Op("msix_count", 6, "msix_count 01:10.2 0", rid=0x0182, count=0),
        Op("msix_count", 7, "msix_count 01:10.2 2048", rid=0x0182, count=2048),
        Op("suspend", 8, "suspend"),
        Op("resume", 9, "resume"),
    ]


@pytest.mark.parametrize("line, phrase", [
    ("msix", "msix takes BDF VECTOR [== OUTCOME], got 0 arguments (BDF is missing)"),
    ("msix 01:10.0", "msix takes BDF VECTOR [== OUTCOME], got 1 argument (VECTOR is missing)"),
    ("msix 01:10.0 1 2", "expected '==' before the expected value, got '2'"),
    ("msix 01:10.0 1 2 3 4", "msix takes BDF VECTOR [== OUTCOME], got 5 arguments "
                             "(unexpected '2' after VECTOR)"),
    ("msix 01:10.0 2048", "VECTOR 2048 is out of range (0..2047: an MSI-X table has at most "
                          "2048 entries)"),
    ("msix 01:10.0 x", "VECTOR 'x' is not a number"),
    ("msix 01:10.0 -1", "VECTOR '-1' is negative"),
    ("msix 01:10.0 010", "VECTOR '010' has a leading zero"),
    ("msix 1:2:3 1", "'1:2:3' is not a BDF"),
    ("msix 01:20.0 1", "device 0x20 is above 0x1f"),
    ("msix 0001:01:10.0 1", "domain 0001 is not 0000"),
    ("msix 01:10.0 1 ==", "'==' must be followed by the expected OUTCOME"),
    ("msix 01:10.0 1 == maybe", "OUTCOME 'maybe' is not one of sent, pending, dropped"),
    ("msix 01:10.0 1 == Sent", "OUTCOME 'Sent' is not one of sent, pending, dropped; outcomes "
                               "are lowercase"),
    ("msix 01:10.0 1 == 1", "OUTCOME '1' is not one of sent, pending, dropped"),
    ("msix 01:10.0 1 == sent sent", "unexpected 'sent' after the expected OUTCOME"),
    ("msix 01:10.0 == sent", "got 1 argument (VECTOR is missing before '==')"),
    ("msix_enable 01:10.0", "msix_enable takes BDF N, got 1 argument (N is missing)"),
    ("msix_enable 01:10.0 0", "N 0 is out of range (1..2048)"),
    ("msix_enable 01:10.0 2049", "N 2049 is out of range (1..2048)"),
    ("msix_enable 01:10.0 3 == 3", "msix_enable takes no expected value"),
    ("msix_count 01:10.0 2049", "COUNT 2049 is out of range (0..2048)"),
    ("msix_count 01:10.0", "msix_count takes BDF COUNT, got 1 argument (COUNT is missing)"),
    ("suspend now", "suspend takes no arguments, got 1 argument (unexpected 'now')"),
    ("resume 01:00.0 1", "resume takes no arguments, got 2 arguments (unexpected '01:00.0')"),
    ("resume == 1", "resume takes no expected value"),
    ("msix_enabel 01:10.0 3", "did you mean 'msix_enable'?"),
    ("MSIX 01:10.0 3", "operation names are lowercase"),
    ("suspnd", "did you mean 'suspend'?"),
])
def test_refusals(line, phrase):
    refuses(line, phrase)


# -- Execution on the model -------------------------------------------------------------------

def run_script(text, *, params=None, as_json=False, irq=True):
    """Run ``text`` through execute() with the model as the design; returns (lines, result)."""
    params = params or igb_params()
    ops = parse_script(text, "irq.script")
    check_ops(ops, "irq.script")
    design = EndpointModel(params)
    lines, result = [], RunResult()

    async def idle(cycles):
        pass

    asyncio.run(execute(params, ops, cfg_driver=ModelEndpointPort(design),
                        mem_driver=ModelMemoryPort(design),
                        irq_driver=ModelInterruptPort(design) if irq else None, idle=idle,
                        result=result, filename="irq.script", emit=lines.append, json=as_json))
    return lines, result


SCRIPT = """\
enable 01:00.0 2
msix 01:10.0 0                      # MSI-X not enabled yet: held pending
msix_enable 01:10.0 3               # ... and delivered when request_irq unmasks vector 0
msix 01:10.0 2 == sent
memwr 0x10002001c 4 1               # mask VF1 vector 1 (Vector Control)
msix 01:10.0 1 == pending
memrd 0x100022000 8 == 0x2          # VF1's PBA: vector 1 pending
memwr 0x10002001c 4 0               # unmask: delivered right after this write
memrd 0x100022000 8 == 0
memrd 0x100020010 8 == 0x00000000fee01000
msix 01:10.2 0 == pending           # VF2: MSI-X off
msix 01:10.0 3 == dropped           # beyond the Table Size
msix_count 01:10.2 2
msix 01:10.2 2 == dropped           # VF2 has 2 vectors now
cfgwr 01:10.0 0x04 2 0x0000         # VF1 Bus Master Enable off
msix 01:10.0 0 == pending
cfgwr 01:10.0 0x04 2 0x0004         # on again: the pending vector goes out
"""


def test_transcript_lines():
    lines, result = run_script(SCRIPT)
    tagged = [line for line in lines if "[line " in line]
    assert tagged == [
        "msix 01:10.0 (VF 1) vector 0: pending  [line 2]",
        "msix 01:10.0 (VF 1) vector 2: MWr 0x00000000fee02000 data 0x00000022 from 01:10.0"
        "  [line 4]",
        "memwr 0x000000010002001c 4 SC 0x00000001 VF1 BAR3+0x1c MSI-X  [line 5]",
        "msix 01:10.0 (VF 1) vector 1: pending  [line 6]",
        "memrd 0x0000000100022000 8 SC 0x0000000000000002 VF1 BAR3+0x2000 MSI-X  [line 7]",
        "memwr 0x000000010002001c 4 SC 0x00000000 VF1 BAR3+0x1c MSI-X  [line 8]",
        "msg 01:10.0 (VF 1) vector 1: MWr 0x00000000fee01000 data 0x00000021 from 01:10.0"
        "  [line 8]",
        "memrd 0x0000000100022000 8 SC 0x0000000000000000 VF1 BAR3+0x2000 MSI-X  [line 9]",
        "memrd 0x0000000100020010 8 SC 0x00000000fee01000 VF1 BAR3+0x10 MSI-X  [line 10]",
        "msix 01:10.2 (VF 2) vector 0: pending  [line 11]",
        "msix 01:10.0 (VF 1) vector 3: dropped  [line 12]",
        "msix_count 01:10.2 (VF 2) 2: accepted  [line 13]",
        "msix 01:10.2 (VF 2) vector 2: dropped  [line 14]",
        "cfgwr 01:10.0 0x004 2 SC 0x0000  [line 15]",
        "msix 01:10.0 (VF 1) vector 0: pending  [line 16]",
        "cfgwr 01:10.0 0x004 2 SC 0x0004  [line 17]",
        "msg 01:10.0 (VF 1) vector 0: MWr 0x00000000fee00000 data 0x00000020 from 01:10.0"
        "  [line 17]",
    ]
    # The vector raised at line 2 went out when msix_enable unmasked it (request_irq).
    setup = [line for line in lines if line.startswith("msg ") and "[msix_setup" in line]
    assert setup == ["msg 01:10.0 (VF 1) vector 0: MWr 0x00000000fee00000 data 0x00000020 "
                     "from 01:10.0  [msix_setup 01:10.0]"]
    assert len(result.transactions) == len(lines)


def test_json_records():
    lines, _ = run_script(SCRIPT, as_json=True)
    records = [json.loads(line) for line in lines]
    msix = [r for r in records if r["op"] in ("msix", "msix_count", "msg")]
    assert msix[:3] == [
        {"op": "msix", "bdf": "01:10.0", "function": 1, "vector": 0, "status": "pending",
         "addr": None, "data": None, "requester": None, "step": "line 2", "line": 2},
        {"op": "msg", "bdf": "01:10.0", "function": 1, "vector": 0, "addr": 0xFEE0_0000,
         "data": 0x20, "requester": "01:10.0", "step": "msix_setup 01:10.0", "line": 3},
        {"op": "msix", "bdf": "01:10.0", "function": 1, "vector": 2, "status": "sent",
         "addr": 0xFEE0_2000, "data": 0x22, "requester": "01:10.0", "step": "line 4",
         "line": 4},
    ]
    assert {"op": "msix_count", "bdf": "01:10.2", "function": 2, "count": 2,
            "status": "accepted", "step": "line 13", "line": 13} in msix
    mem = [r for r in records if r["op"] == "memwr" and r["line"] == 5]
    assert mem == [{"op": "memwr", "addr": 0x1_0002_001C, "size": 4, "status": "SC",
                    "value": 1, "cycles": None, "function": 1, "bar": 3, "offset": 0x1C,
                    "step": "line 5", "internal": True, "line": 5}]
    # Existing fields unchanged for config transactions.
    cfg = next(r for r in records if r["op"] == "cfgwr" and r["line"] == 15)
    assert cfg == {"op": "cfgwr", "bdf": "01:10.0", "offset": 4, "size": 2, "status": "SC",
                   "value": 0, "cycles": None, "step": "line 15", "line": 15}


def test_pf_interrupts_and_user_memory():
    """The PF's table is the endpoint's; the rest of BAR3 and BAR0 stay the user's memory."""
    lines, _ = run_script("""\
enable 01:00.0 1
msix_enable 01:00.0 10
msix 01:00.0 9 == sent
memwr 0x80040090 8 0x00000000fee0f000   # PF vector 9: another CPU, by hand
msix 01:00.0 9 == sent
memwr 0x80043000 4 0x12345678           # BAR3 beyond the PBA: the user's
memrd 0x80043000 4 == 0x12345678
memrd 0x80000010 4 == 0
""")
    tagged = [line for line in lines if "[line " in line]
    assert tagged == [
        "msix 01:00.0 (PF) vector 9: MWr 0x00000000fee01000 data 0x00000029 from 01:00.0"
        "  [line 3]",
        "memwr 0x0000000080040090 8 SC 0x00000000fee0f000 PF BAR3+0x90 MSI-X  [line 4]",
        "msix 01:00.0 (PF) vector 9: MWr 0x00000000fee0f000 data 0x00000029 from 01:00.0"
        "  [line 5]",
        "memwr 0x0000000080043000 4 SC 0x12345678 PF BAR3+0x3000  [line 6]",
        "memrd 0x0000000080043000 4 SC 0x12345678 PF BAR3+0x3000  [line 7]",
        "memrd 0x0000000080000010 4 SC 0x00000000 PF BAR0+0x10  [line 8]",
    ]


def test_suspend_resume_script():
    """A script suspends and resumes; the VFs' MSI-X comes back (config and table reads with
    expected values after resume, interrupts delivered as before)."""
    lines, _ = run_script("""\
enable 01:00.0 2
msix_enable 01:00.0 10
msix_enable 01:10.2 3
memwr 0x10002401c 4 1                  # VF2 vector 1 masked
suspend
cfgrd 01:00.0 0x04 2 == 0x0406         # config still answers in D3hot
memrd 0x80040000 4 == 0xffffffff       # but memory is not decoded
msix 01:10.2 0 == pending              # and nothing is sent
resume
cfgrd 01:10.2 0x04 2 == 0x0004
cfgrd 01:10.2 0x86 2 == 0x8002         # MSI-X Enable, Table Size 2
memrd 0x100024000 8 == 0x00000000fee02000
memrd 0x100024018 8 == 0x000000000000002b   # VF2 vector 1: data 0x2b, and unmasked: Linux
msix 01:10.2 2 == sent                 # restores its own Vector Control (msi_desc), not
msix 01:10.2 1 == sent                 # what a script wrote behind its back
""")
    tagged = [line for line in lines if "[line " in line]
    assert "msix 01:10.2 (VF 2) vector 0: pending  [line 8]" in tagged
    assert tagged[-2:] == [
        "msix 01:10.2 (VF 2) vector 2: MWr 0x00000000fee00000 data 0x0000002c from 01:10.2"
        "  [line 14]",
        "msix 01:10.2 (VF 2) vector 1: MWr 0x00000000fee03000 data 0x0000002b from 01:10.2"
        "  [line 15]",
    ]
    steps = {re.search(r"\[(\w+)", line)[1] for line in lines}
    assert {"suspend", "resume"} <= steps


@pytest.mark.parametrize("text, message", [
    ("enable 01:00.0 1\nmsix 01:10.0 0 == sent\n",
     "irq.script:2: msix 01:10.0 0 == sent: vector 0 was pending, expected sent"),
    ("enable 01:00.0 1\nmsix 01:10.2 0\n",
     "irq.script:2: msix 01:10.2 0: 01:10.2 is neither the PF nor an enabled VF"),
    ("msix 01:10.0 0\n",
     "irq.script:1: msix 01:10.0 0: 01:10.0 is neither the PF nor an enabled VF"),
    ("enable 01:00.0 1\nmsix_count 01:00.0 2\n",
     "irq.script:2: msix_count 01:00.0 2: 01:00.0 is the PF; msix_count sets a VF's Table "
     "Size"),
    ("enable 01:00.0 1\nmsix_enable 01:10.0 2\nmsix_enable 01:10.0 2\n",
     "irq.script:3: msix_enable 01:10.0 2: 01:10.0: MSI-X is already enabled (Linux: "
     "-EINVAL)"),
    ("resume\n", "irq.script:1: resume: not suspended"),
    ("suspend\n", "irq.script:1: suspend: nothing to suspend: the PF was never enumerated"),
    ("enable 01:00.0 1\nmemrd 0x100020008 8 == 0x1\n",
     "irq.script:2: memrd 0x100020008 8 == 0x1: read 0x0000000100000000, expected "
     "0x0000000000000001"),
    ("enable 01:00.0 1\nmemrd 0x10002002c 8\n",
     "irq.script:2: memrd 0x10002002c 8: memrd of 8 bytes at 0x10002002c runs past the end "
     "of the MSI-X structure it starts in"),
])
def test_failures_name_the_line(text, message):
    with pytest.raises(RunFailure) as info:
        run_script(text)
    assert str(info.value) == message


def test_msix_needs_an_interrupt_driver():
    with pytest.raises(RunFailure, match="irq.script:2: msix 01:10.0 0: msix needs an "
                                         "interrupt driver"):
        run_script("enable 01:00.0 1\nmsix 01:10.0 0\n", irq=False)
