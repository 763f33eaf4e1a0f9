"""Real pciutils decodes what ``sriov-ep lspci`` dumps.

The PF's and VFs' configuration spaces, read from the simulated RTL after the Linux enable
sequence, are written in the ``lspci -xxxx`` format and fed to ``lspci -F FILE -vvv``. The
expected text is sriov-spec.md §6 (field formats, pciutils 3.9 vs newer IOVCap) with the values
of ``examples/*.toml`` and the addresses LinuxHost assigns (32-bit window from 0x8000_0000,
64-bit prefetchable window from 0x1_0000_0000).

The dumps come from the native backend (``--backend native``: the Verilator model of the
exported Verilog, built once per configuration in ``build/cache/native`` and shared with the
other native tests and the random regressions; the Amaranth simulator took 20-45 s of CPU per
dump set here), whose dumps tests/test_native.py shows to be the Amaranth backend's.

``lspci`` comes from pciutils, which CI installs: the tests skip when it is missing, except
when the ``CI`` environment variable is set, where they fail (likewise without the native
backend's tools).
"""

import contextlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sriov_tb.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: pciutils 3.8-3.10 print `Interrupt Message Number: 000`, 3.11 and later `IntMsgNum 0`.
IOVCAP_RE = (r"IOVCap:\tMigration- 10BitTagReq(?P<tag>[+-]) "
             r"(?:Interrupt Message Number: 000|IntMsgNum 0)")


def lspci_exe():
    exe = shutil.which("lspci")
    if exe is None:
        message = "lspci (pciutils) is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI must run these tests: install pciutils")
        pytest.skip(f"{message}: install pciutils to run these tests")
    return exe


def decode(tmp_path_factory, config, *args):
    """``sriov-ep lspci CONFIG ARGS`` into a file, then ``lspci -F FILE -vvv``: the device blocks
    as ``{slot: text}`` (in order)."""
    exe = lspci_exe()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["lspci", str(EXAMPLES / config), *args]) == 0
    path = tmp_path_factory.mktemp("lspci") / "dump.txt"
    path.write_text(out.getvalue())
    done = subprocess.run([exe, "-F", str(path), "-vvv"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Malformed" not in done.stderr
    blocks = {}
    for block in done.stdout.strip("\n").split("\n\n"):
        slot = block.split(" ", 1)[0]
        blocks[slot] = block
    return blocks


def section(block, header_re):
    """The lines of ``block`` from the capability header matching ``header_re`` up to the next
    capability header."""
    lines = block.splitlines()
    for n, line in enumerate(lines):
        if re.search(header_re, line):
            rest = []
            for more in lines[n + 1:]:
                if more.startswith("\tCapabilities:"):
                    break
                rest.append(more.strip())
            return rest
    raise AssertionError(f"no {header_re!r} in:\n{block}")


def line_matching(lines, pattern):
    found = [line for line in lines if re.search(pattern, line)]
    assert len(found) == 1, (pattern, lines)
    return found[0]


@pytest.fixture(scope="module")
def igb4(tmp_path_factory, native):
    return decode(tmp_path_factory, "igb-82576.toml", "--enable", "4", "--backend", "native")


def test_igb_functions(igb4):
    """The PF and VFs 1-4 at 01:10.0, .2, .4, .6 (ARI function 0x80 + 2(n-1) as device.function)."""
    assert list(igb4) == ["01:00.0", "01:10.0", "01:10.2", "01:10.4", "01:10.6"]


def test_igb_pf_header_and_pcie(igb4):
    pf = igb4["01:00.0"]
    first = pf.splitlines()[0]
    assert first.startswith("01:00.0 Ethernet controller:") and "(rev 01)" in first
    assert "Illegal Vendor ID" not in first
    assert re.search(r"^\tControl: I/O- Mem\+ BusMaster\+", pf, re.MULTILINE)
    assert re.search(r"^\tStatus: Cap\+", pf, re.MULTILINE)
    assert "\tRegion 0: Memory at 80000000 (32-bit, non-prefetchable)" in pf
    assert "\tRegion 1: Memory at 80020000 (32-bit, non-prefetchable)" in pf
    assert "\tRegion 3: Memory at 80040000 (32-bit, non-prefetchable)" in pf
    assert "\tCapabilities: [40] Express (v2) Endpoint, MSI 00" in pf
    devcap = section(pf, r"Express \(v2\) Endpoint")
    assert re.search(r"\bFLReset\+", line_matching(devcap, r"^ExtTag.*SlotPowerLimit"))
    assert re.search(r"RlxdOrd\+ .*NoSnoop\+ FLReset-", "\n".join(devcap))


def test_igb_ari_capability(igb4):
    pf = igb4["01:00.0"]
    assert "\tCapabilities: [100 v1] Alternative Routing-ID Interpretation (ARI)" in pf
    ari = section(pf, r"\[100 v1\] Alternative Routing-ID")
    assert ari == ["ARICap:\tMFVC- ACS-, Next Function: 0",
                   "ARICtl:\tMFVC- ACS-, Function Group: 0"]


def test_igb_sriov_capability(igb4):
    pf = igb4["01:00.0"]
    assert "\tCapabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)" in pf
    sriov = section(pf, r"\[160 v1\] Single Root I/O Virtualization \(SR-IOV\)")
    iovcap = line_matching(sriov, r"^IOVCap:")
    assert re.fullmatch(IOVCAP_RE, iovcap), iovcap
    iovctl = line_matching(sriov, r"^IOVCtl:").split()
    for flag in ("Enable+", "Migration-", "Interrupt-", "MSE+", "ARIHierarchy+"):
        assert flag in iovctl, iovctl
    assert line_matching(sriov, r"^IOVSta:") == "IOVSta:\tMigration-"
    assert ("Initial VFs: 8, Total VFs: 8, Number of VFs: 4, Function Dependency Link: 00"
            in sriov)
    assert "VF offset: 128, stride: 2, Device ID: 10ca" in sriov
    assert "Supported Page Size: 00000553, System Page Size: 00000001" in sriov
    # VF BAR0 and VF BAR3: 8 x 16 KiB each, 64-bit prefetchable, from 0x1_0000_0000.
    regions = [line for line in sriov if line.startswith("Region")]
    assert regions == ["Region 0: Memory at 0000000100000000 (64-bit, prefetchable)",
                       "Region 3: Memory at 0000000100020000 (64-bit, prefetchable)"]
    assert "VF Migration: offset: 00000000, BIR: 0" in sriov


def test_igb_vfs(igb4):
    """A VF's Vendor ID reads 0xFFFF, which lspci prints as `Illegal Vendor ID` (sriov-spec.md
    §6); each VF has the PCIe capability (FLR capable, Memory hard-wired 0) and ARI, no SR-IOV."""
    for slot in ("01:10.0", "01:10.2", "01:10.4", "01:10.6"):
        vf = igb4[slot]
        first = vf.splitlines()[0]
        assert first.startswith(f"{slot} Ethernet controller: Illegal Vendor ID Device ffff")
        assert "(rev 01)" in first
        assert re.search(r"^\tControl: I/O- Mem- BusMaster-", vf, re.MULTILINE)
        assert "\tCapabilities: [40] Express (v2) Endpoint, MSI 00" in vf
        assert "FLReset+" in vf
        assert "\tCapabilities: [100 v1] Alternative Routing-ID Interpretation (ARI)" in vf
        assert "SR-IOV" not in vf
        assert "Region" not in vf


def test_igb_pf_power_management(igb4):
    """examples/igb-82576.toml: PM version 3 right after the PCI Express capability (0x40 +
    0x3c = 0x7c), no D1/D2, no PME, No_Soft_Reset 0, in D0."""
    pf = igb4["01:00.0"]
    assert "\tCapabilities: [7c] Power Management version 3" in pf
    pm = section(pf, r"\[7c\] Power Management version 3")
    assert pm == ["Flags: PMEClk- DSI- D1- D2- AuxCurrent=0mA PME(D0-,D1-,D2-,D3hot-,D3cold-)",
                  "Status: D0 NoSoftRst- PME-Enable- DSel=0 DScale=0 PME-"]


def test_igb_pf_msix(igb4):
    """10 vectors (QEMU IGB_MSIX_VEC_NUM, the real part's TabSize=10), table at BAR3 + 0, PBA at
    BAR3 + 0x2000, after PM (0x7c + 8 = 0x84); the enable sequence leaves MSI-X off."""
    pf = igb4["01:00.0"]
    assert "\tCapabilities: [84] MSI-X: Enable- Count=10 Masked-" in pf
    assert section(pf, r"\[84\] MSI-X") == ["Vector table: BAR=3 offset=00000000",
                                             "PBA: BAR=3 offset=00002000"]


def test_igb_vf_msix_no_pm(igb4):
    """Every VF: 3 vectors (IGBVF_MSIX_VEC_NUM) in VF BAR3 (table 0, PBA 0x2000), right after the
    PCI Express capability since VFs have no PM (as QEMU's igbvf)."""
    for slot in ("01:10.0", "01:10.2", "01:10.4", "01:10.6"):
        vf = igb4[slot]
        assert "\tCapabilities: [7c] MSI-X: Enable- Count=3 Masked-" in vf
        assert section(vf, r"\[7c\] MSI-X") == ["Vector table: BAR=3 offset=00000000",
                                                 "PBA: BAR=3 offset=00002000"]
        assert "Power Management" not in vf


def test_igb_no_ari(tmp_path_factory, native):
    """--no-ari: ARI Capable Hierarchy stays 0, so First VF Offset is 384 and the VFs sit on
    bus 2 (02:10.0, 02:10.2)."""
    blocks = decode(tmp_path_factory, "igb-82576.toml", "--enable", "2", "--no-ari",
                    "--backend", "native")
    assert list(blocks) == ["01:00.0", "02:10.0", "02:10.2"]
    sriov = section(blocks["01:00.0"], r"\[160 v1\] Single Root I/O Virtualization")
    assert re.fullmatch(IOVCAP_RE, line_matching(sriov, r"^IOVCap:"))
    iovctl = line_matching(sriov, r"^IOVCtl:").split()
    assert "Enable+" in iovctl and "MSE+" in iovctl and "ARIHierarchy-" in iovctl
    assert "Initial VFs: 8, Total VFs: 8, Number of VFs: 2, Function Dependency Link: 00" \
        in sriov
    assert "VF offset: 384, stride: 2, Device ID: 10ca" in sriov
    for slot in ("02:10.0", "02:10.2"):
        assert "Illegal Vendor ID" in blocks[slot].splitlines()[0]


@pytest.fixture(scope="module")
def nvme2(tmp_path_factory, native):
    return decode(tmp_path_factory, "nvme.toml", "--enable", "2", "--backend", "native")


def test_nvme(nvme2):
    """nvme: SR-IOV at 0x120 after ARI at 0x100, 127 VFs at offset 1 stride 1 (01:00.1, 01:00.2),
    VF Device ID 0010, VF BAR0 64-bit non-prefetchable, placed after the PF's 16 KiB BAR0 in the
    32-bit window, 16 KiB aligned."""
    blocks = nvme2
    assert list(blocks) == ["01:00.0", "01:00.1", "01:00.2"]
    pf = blocks["01:00.0"]
    assert pf.splitlines()[0].startswith("01:00.0 Non-Volatile memory controller:")
    assert "\tRegion 0: Memory at 80000000 (64-bit, non-prefetchable)" in pf
    assert "\tCapabilities: [40] Express (v2) Endpoint, MSI 00" in pf
    assert "FLReset+" in pf
    ari = section(pf, r"\[100 v1\] Alternative Routing-ID")
    assert "ARICap:\tMFVC- ACS-, Next Function: 0" in ari
    sriov = section(pf, r"\[120 v1\] Single Root I/O Virtualization \(SR-IOV\)")
    assert re.fullmatch(IOVCAP_RE, line_matching(sriov, r"^IOVCap:"))
    iovctl = line_matching(sriov, r"^IOVCtl:").split()
    assert "Enable+" in iovctl and "MSE+" in iovctl and "ARIHierarchy+" in iovctl
    assert "Initial VFs: 127, Total VFs: 127, Number of VFs: 2, Function Dependency Link: 00" \
        in sriov
    assert "VF offset: 1, stride: 1, Device ID: 0010" in sriov
    assert "Supported Page Size: 00000553, System Page Size: 00000001" in sriov
    regions = [line for line in sriov if line.startswith("Region")]
    assert len(regions) == 1
    match = re.fullmatch(r"Region 0: Memory at ([0-9a-f]{16}) \(64-bit, non-prefetchable\)",
                         regions[0])
    assert match, regions
    address = int(match[1], 16)
    assert address % 0x4000 == 0 and 0x8000_4000 <= address < 1 << 32
    for slot in ("01:00.1", "01:00.2"):
        first = blocks[slot].splitlines()[0]
        assert first.startswith(f"{slot} Non-Volatile memory controller: Illegal Vendor ID")


def test_nvme_pm_and_msix(nvme2):
    """examples/nvme.toml: PM (No_Soft_Reset set, as QEMU's nvme) at 0x7c in the PF and the VFs;
    MSI-X at 0x84 with the table at BAR0 + 0x2000 and the PBA at BAR0 + 0x3000: 64 vectors in
    the PF (QEMU's 128 capped at 64), Table Size 1 in each VF (until the PF assigns more)."""
    for slot, count in (("01:00.0", 64), ("01:00.1", 1), ("01:00.2", 1)):
        block = nvme2[slot]
        assert "\tCapabilities: [7c] Power Management version 3" in block
        pm = section(block, r"\[7c\] Power Management version 3")
        assert pm == ["Flags: PMEClk- DSI- D1- D2- AuxCurrent=0mA "
                      "PME(D0-,D1-,D2-,D3hot-,D3cold-)",
                      "Status: D0 NoSoftRst+ PME-Enable- DSel=0 DScale=0 PME-"]
        assert f"\tCapabilities: [84] MSI-X: Enable- Count={count} Masked-" in block
        assert section(block, r"\[84\] MSI-X") == ["Vector table: BAR=0 offset=00002000",
                                                    "PBA: BAR=0 offset=00003000"]


# -- A device of several PFs ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def dual11(tmp_path_factory, native):
    """``sriov-ep lspci`` of the dual-PF 82576 (``examples/multi-pf/igb-82576-dual.toml``, on
    the native backend) with one VF enabled on each PF: ``(raw dump text, dump file, lspci
    blocks)``."""
    config = EXAMPLES / "multi-pf" / "igb-82576-dual.toml"
    exe = lspci_exe()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["lspci", str(config), "--enable", "1,1", "--backend", "native"]) == 0
    path = tmp_path_factory.mktemp("dual") / "dump.txt"
    path.write_text(out.getvalue())
    done = subprocess.run([exe, "-F", str(path), "-vvv"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Malformed" not in done.stderr
    blocks = {block.split(" ", 1)[0]: block for block in done.stdout.strip("\n").split("\n\n")}
    return out.getvalue(), path, blocks


def test_dual_dumps_every_pf_and_vf_in_rid_order(dual11):
    """PFs 01:00.0 and 01:00.1, then VF 1 of each (ARI: 0x0180 + k), as lspci sorts them."""
    raw, _, blocks = dual11
    heads = [line.split(" (sriov-ep")[0] for line in raw.splitlines()
             if re.match(r"[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] ", line)]
    assert heads == ["01:00.0 SR-IOV PF 01:00.0", "01:00.1 SR-IOV PF 01:00.1",
                     "01:10.0 SR-IOV VF 1 of 01:00.0", "01:10.1 SR-IOV VF 1 of 01:00.1"]
    assert list(blocks) == ["01:00.0", "01:00.1", "01:10.0", "01:10.1"]
    assert "Unknown header type" not in "".join(blocks.values())


def test_dual_pfs_acs_and_ari_chain(dual11):
    """Each PF: an ACS capability at 0x1a0 with Capability 0 (nothing to enable: Control 0);
    ARI Next Function Number 1 then 0; SR-IOV with one VF. VFs have no ACS."""
    _, _, blocks = dual11
    for k, nfn in ((0, 1), (1, 0)):
        pf = blocks[f"01:00.{k}"]
        assert pf.splitlines()[0].startswith(f"01:00.{k} Ethernet controller:")
        assert "\tCapabilities: [1a0 v1] Access Control Services" in pf
        flags = ("SrcValid- TransBlk- ReqRedir- CmpltRedir- UpstreamFwd- EgressCtrl- "
                 "DirectTrans-")
        assert section(pf, r"\[1a0 v1\] Access Control Services") == [
            f"ACSCap:\t{flags}", f"ACSCtl:\t{flags}"]
        assert section(pf, r"\[100 v1\] Alternative Routing-ID")[0] == \
            f"ARICap:\tMFVC- ACS-, Next Function: {nfn}"
        sriov = section(pf, r"\[160 v1\] Single Root I/O Virtualization")
        assert ("Initial VFs: 8, Total VFs: 8, Number of VFs: 1, Function Dependency Link: "
                f"0{k}") in sriov
        iovctl = line_matching(sriov, r"^IOVCtl:").split()
        # ARI Capable Hierarchy: PF 0's bit; RsvdP (reads 0) in PF 1.
        assert "Enable+" in iovctl and f"ARIHierarchy{'+' if k == 0 else '-'}" in iovctl
    for slot in ("01:10.0", "01:10.1"):
        assert "Access Control Services" not in blocks[slot]
        assert "Illegal Vendor ID" in blocks[slot].splitlines()[0]


def test_dual_header_type_multi_function(dual11):
    """pciutils' own reading of the dump (``setpci -A dump``): Header Type 0x80 (type 0,
    multi-function) in both PFs, 0x00 in the VFs; ACS Capability and Control 0."""
    _, path, _ = dual11
    exe = shutil.which("setpci")
    if exe is None:
        lspci_exe()                                     # (skips, or fails in CI)
        pytest.skip("setpci (pciutils) is not installed")

    def setpci(slot, *regs):
        done = subprocess.run([exe, "-A", "dump", "-O", f"dump.name={path}", "-s", slot,
                               *regs], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()
    for slot in ("01:00.0", "01:00.1"):
        assert setpci(slot, "HEADER_TYPE.B", "ECAP_ACS+4.W", "ECAP_ACS+6.W") == \
            ["80", "0000", "0000"]
    for slot in ("01:10.0", "01:10.1"):
        assert setpci(slot, "HEADER_TYPE.B") == ["00"]
