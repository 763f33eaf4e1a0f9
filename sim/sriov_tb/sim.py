"""Running Amaranth simulations of the design: clock, testbenches, waveforms on request or failure.
"""

import os
import re
from pathlib import Path

from amaranth.sim import Simulator

__all__ = ["CLOCK_PERIOD", "simulate", "waves_dir"]

#: Simulated clock period in seconds (125 MHz, the ECP5 PCIe Gen2 x1 user clock).
CLOCK_PERIOD = 8e-9

#: Set this environment variable to a folder to get a VCD and GTKWave file of every simulation.
WAVES_ENV = "SRIOV_EP_WAVES"


def waves_dir():
    """Folder for waveforms written because a simulation failed or because they were asked for."""
    return Path(os.environ.get(WAVES_ENV) or "build/waves")


def _slug(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "sim"


def simulate(dut, make_testbench, *, name="sim", vcd=None, traces=(), waves_on_failure=True):
    """Simulate ``dut`` with the testbench that ``make_testbench()`` returns.

    ``make_testbench`` may also return a sequence: the testbench, then background testbenches
    (``add_testbench(..., background=True)``: user logic answering the design, say), which the
    simulation does not wait for. ``make_testbench`` is called again to build a fresh
    testbench (with fresh models) when the run is repeated to capture a waveform. A waveform is
    written when ``vcd`` names a file, when the ``SRIOV_EP_WAVES`` environment variable names a
    folder, or (``waves_on_failure``) when the testbench raises: the run is then repeated under
    a VCD writer into ``build/waves/<name>.vcd`` and the original exception is raised with the
    file named in a note.
    """
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    _add_testbenches(sim, make_testbench())
    if vcd is None and os.environ.get(WAVES_ENV):
        vcd = waves_dir() / f"{_slug(name)}.vcd"
    if vcd is not None:
        _run_with_vcd(sim, Path(vcd), traces)
        return
    try:
        sim.run()
    except Exception as exc:
        if not waves_on_failure:
            raise
        path = waves_dir() / f"{_slug(name)}.vcd"
        sim = Simulator(dut)
        sim.add_clock(CLOCK_PERIOD)
        _add_testbenches(sim, make_testbench())
        try:
            _run_with_vcd(sim, path, traces)
        except Exception:
            pass
        exc.add_note(f"waveform of the failing run: {path} (+ .gtkw)")
        raise


def _add_testbenches(sim, made):
    if isinstance(made, (tuple, list)):
        main, *background = made
    else:
        main, background = made, []
    sim.add_testbench(main)
    for testbench in background:
        sim.add_testbench(testbench, background=True)


def _run_with_vcd(sim, path, traces):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sim.write_vcd(str(path), str(path.with_suffix(".gtkw")), traces=traces):
        sim.run()
