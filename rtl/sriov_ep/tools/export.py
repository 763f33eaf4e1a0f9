"""Verilog export of the endpoint."""

from amaranth.back import verilog

from ..endpoint import SriovEndpoint

__all__ = ["TOP_NAME", "to_verilog"]

#: Module name of the exported top; submodules are named ``sriov_ep_top.<child>``.
TOP_NAME = "sriov_ep_top"


def to_verilog(params, *, name=TOP_NAME, top=None):
    """Verilog text of ``top`` (default: :class:`SriovEndpoint` for ``params``).

    Source locations are left out (``emit_src=False``): they would embed paths of this machine.
    """
    top = top if top is not None else SriovEndpoint(params)
    return verilog.convert(top, name=name, emit_src=False)
