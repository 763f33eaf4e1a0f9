"""Verilog export of the endpoint."""

from amaranth.back import verilog

from ..endpoint import SriovEndpoint

__all__ = ["TOP_NAME", "TIMESCALE", "to_verilog"]

#: Module name of the exported top; submodules are named ``sriov_ep_top.<child>``.
TOP_NAME = "sriov_ep_top"

#: The ``timescale`` directive that heads the exported Verilog and the wrapper
#: (:mod:`sriov_ep.tools.wrapper`). The design has no delays; the directive keeps a simulator
#: from running it at its default precision (Icarus: 1 s) and Verilator from refusing a mix of
#: modules with and without one (TIMESCALEMOD).
TIMESCALE = "1ns / 1ps"


def to_verilog(params, *, name=TOP_NAME, top=None):
    """Verilog text of ``top`` (default: :class:`SriovEndpoint` for ``params``), headed by
    `` `timescale`` :data:`TIMESCALE`.

    Source locations are left out (``emit_src=False``): they would embed paths of this machine.
    """
    top = top if top is not None else SriovEndpoint(params)
    return f"`timescale {TIMESCALE}\n" + verilog.convert(top, name=name, emit_src=False)
