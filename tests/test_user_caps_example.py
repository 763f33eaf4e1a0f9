# amaranth: UnusedElaboratable=no
"""The user-owned configuration space example: ``examples/user-caps.toml`` and
``examples/user_caps.py`` (``UserCapsDevice`` = ``SriovEndpoint`` + ``UserCaps``).

One simulation of the whole device, driven as Linux does (``LinuxHost`` through ``RootPort`` and
``EndpointDriver``): enable the VFs, read the PF's Device Serial Number and every VF's VSEC,
write the VFs' scratch registers, reset one VF, and dump the configuration spaces, which real
``lspci -F`` then decodes. Expected values are literal, from the TOML's comments and the spec:

* PF chain (examples/user-caps.toml): ARI 0x100 -> SR-IOV 0x140 -> DSN 0x180; the DSN header
  is ID 0x0003, version 1, next 0 (PCI Express Base §7.9.3);
* VF chain: ARI 0x100 -> VSEC 0x108; the VSEC header is ID 0x000B, version 1, next 0, and its
  VSEC header dword (+4) is VSEC ID 0x0042, Rev 1, Length 0x018 (§7.9.5): 0x0181_0042;
* VFs at 01:00.1 .. 01:00.4 (First VF Offset 1, VF Stride 1).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from test_lspci import lspci_exe

from sriov_ep.params import load_params
from sriov_tb.host import EndpointDriver, LinuxHost, RootPort
from sriov_tb.runner import format_dump
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIG = EXAMPLES / "user-caps.toml"

SERIAL = 0x0123_4567_89AB_CDEF
PF = 0x0100                              # 01:00.0
VFS = [0x0101, 0x0102, 0x0103, 0x0104]   # 01:00.1 .. 01:00.4
DSN, VSEC = 0x180, 0x108


def load_example():
    spec = importlib.util.spec_from_file_location("user_caps_example", EXAMPLES / "user_caps.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def dump(root, rid):
    space = root.function(rid)
    image = bytearray()
    for offset in range(0, 0x1000, 4):
        image += (await space.read32(offset)).to_bytes(4, "little")
    return bytes(image)


@pytest.fixture(scope="module")
def run():
    """Run the scenario once; returns ``{name: value}`` of everything read, and the dumps."""
    params = load_params(CONFIG)
    dut = load_example().UserCapsDevice(params, serial=SERIAL)
    seen = {"dumps": {}}

    def make_testbench():
        async def testbench(ctx):
            root = RootPort(EndpointDriver(ctx, dut, timeout=10_000), secondary_bus=1)
            host = LinuxHost(root, PF)
            rids = await host.enable(4)
            seen["vfs"] = list(rids)
            pf = root.function(PF)
            seen["pf_sriov_header"] = await pf.read32(0x140)
            seen["pf_dsn"] = [await pf.read32(DSN + 4 * n) for n in range(3)]
            await pf.write32(DSN + 4, 0xFFFF_FFFF)          # read-only: ignored
            await pf.write32(DSN, 0xFFFF_FFFF)              # the header too
            seen["pf_dsn_after_write"] = [await pf.read32(DSN + 4 * n) for n in range(3)]
            for n, rid in enumerate(VFS, 1):
                vf = root.function(rid)
                seen[f"vf{n}_ari_header"] = await vf.read32(0x100)
                seen[f"vf{n}_vsec"] = [await vf.read32(VSEC + 4 * k) for k in range(6)]
            for n, rid in enumerate(VFS, 1):                 # every VF its own value
                await root.function(rid).write32(VSEC + 8, 0x5CA7_C400 | n)
            await root.function(VFS[2]).write16(VSEC + 10, 0xBEEF)     # bytes 3:2 only
            await root.function(VFS[3]).write32(VSEC + 4, 0)            # VSEC header: RO
            await root.function(VFS[3]).write32(VSEC + 12, 0x77)        # VF number: RO
            seen["scratch"] = [await root.function(rid).read32(VSEC + 8) for rid in VFS]
            seen["vf4_ro"] = [await root.function(VFS[3]).read32(VSEC + 4 * k)
                              for k in (1, 3)]
            for rid in (PF, VFS[0], VFS[1]):
                seen["dumps"][rid] = await dump(root, rid)
            await host.flr(VFS[1])                           # VF2's scratch register resets
            seen["scratch_after_flr"] = [await root.function(rid).read32(VSEC + 8)
                                         for rid in VFS]
            await host.disable()                             # every VF resets
            await host.enable(4)
            seen["scratch_after_reenable"] = [await root.function(rid).read32(VSEC + 8)
                                              for rid in VFS]
        return testbench

    simulate(dut, make_testbench, name="user-caps-example")
    return seen


def test_vfs(run):
    assert run["vfs"] == VFS


def test_pf_chain_reaches_dsn(run):
    """SR-IOV at 0x140: ID 0x0010, version 1, next 0x180 (the DSN)."""
    assert run["pf_sriov_header"] == 0x1801_0010


def test_device_serial_number(run):
    """Header from the endpoint (ID 0x0003, v1, last), serial low then high dword from the user
    logic; writes change nothing."""
    assert run["pf_dsn"] == [0x0001_0003, 0x89AB_CDEF, 0x0123_4567]
    assert run["pf_dsn_after_write"] == [0x0001_0003, 0x89AB_CDEF, 0x0123_4567]


def test_vsec_in_every_vf(run):
    for n in range(1, 5):
        assert run[f"vf{n}_ari_header"] == 0x1081_000E     # ARI v1, next 0x108
        assert run[f"vf{n}_vsec"] == [0x0001_000B,          # VSEC v1, last
                                      0x0181_0042,          # Length 0x018, Rev 1, ID 0x0042
                                      0x0000_0000,          # scratch, after reset
                                      n,                    # the VF's number
                                      0, 0]


def test_scratch_registers(run):
    """Each VF keeps its own scratch value; a 2-byte write changes bytes 3:2 only; the
    read-only registers ignore writes."""
    assert run["scratch"] == [0x5CA7_C401, 0x5CA7_C402, 0xBEEF_C403, 0x5CA7_C404]
    assert run["vf4_ro"] == [0x0181_0042, 4]


def test_scratch_reset(run):
    """A VF FLR clears that VF's scratch register only; disabling the VFs clears them all."""
    assert run["scratch_after_flr"] == [0x5CA7_C401, 0, 0xBEEF_C403, 0x5CA7_C404]
    assert run["scratch_after_reenable"] == [0, 0, 0, 0]


@pytest.fixture(scope="module")
def lspci_blocks(run, tmp_path_factory):
    exe = lspci_exe()
    text = "".join(format_dump(rid, image, f"user-caps example function {rid & 0xff}")
                   for rid, image in run["dumps"].items())
    path = tmp_path_factory.mktemp("lspci") / "user-caps.txt"
    path.write_text(text)
    done = subprocess.run([exe, "-F", str(path), "-vvv"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    blocks = {}
    for block in done.stdout.strip("\n").split("\n\n"):
        blocks[block.split(" ", 1)[0]] = block
    return blocks


def test_lspci_device_serial_number(lspci_blocks):
    assert list(lspci_blocks) == ["01:00.0", "01:00.1", "01:00.2"]
    pf = lspci_blocks["01:00.0"]
    assert "\tCapabilities: [180 v1] Device Serial Number 01-23-45-67-89-ab-cd-ef" in pf
    assert "\tCapabilities: [140 v1] Single Root I/O Virtualization (SR-IOV)" in pf


def test_lspci_vendor_specific(lspci_blocks):
    for slot in ("01:00.1", "01:00.2"):
        vf = lspci_blocks[slot]
        assert ("\tCapabilities: [108 v1] Vendor Specific Information: ID=0042 Rev=1 Len=018 <?>"
                in vf), vf
        assert "Device Serial Number" not in vf
