"""User logic serving configuration space the user owns (``examples/user-caps.toml``).

``UserCaps`` answers the endpoint's user configuration port (``SriovEndpoint.ucfg_req`` /
``ucfg_res``) for two capabilities whose header dword the endpoint answers itself:

* the PF's Device Serial Number (PCI Express Base §7.9.3): +4 the serial number's low dword,
  +8 its high dword, both read-only (the ``serial`` parameter);
* every VF's Vendor-Specific Extended Capability (§7.9.5): +4 the VSEC header (VSEC ID 15:0,
  VSEC Rev 19:16, VSEC Length 31:20, read-only), +8 a scratch register (read-write with byte
  enables, one per VF), +0xC the VF's number (read-only: the function the endpoint named),
  +0x10 and +0x14 read 0.

The per-VF scratch registers live in a memory of TotalVFs 32-bit words (one block RAM for any
TotalVFs, like the endpoint's own VF state), not in flip-flops: the logic does not grow with
the number of VFs. A VF's scratch register returns to 0 when the VF is reset: on a VF FLR
(``vf_flr``) its word is cleared; when every VF is reset (``vfs_reset``: VF Enable cleared, PF
reset) the memory is swept, one word per cycle, and requests wait meanwhile.

Each request is answered 3 cycles after it is accepted (accept, read the memory, respond).
Writes to read-only registers, and everything outside the registers above, are ignored.

``UserCapsDevice`` is the whole device: ``SriovEndpoint`` and ``UserCaps`` connected, with every
other port of the endpoint exposed unchanged.

Run the example's test: ``python -m pytest tests/test_user_caps_example.py``.
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sriov_ep.endpoint import SriovEndpoint, UserConfigRequest, UserConfigResponse

__all__ = ["UserCaps", "UserCapsDevice", "DSN_CAP_ID", "VSEC_CAP_ID"]

DSN_CAP_ID  = 0x0003
VSEC_CAP_ID = 0x000B

# Dword offsets inside the windows (the endpoint sends dword 0, the header, nowhere).
DSN_SERIAL_LO, DSN_SERIAL_HI = 1, 2
VSEC_HEADER, VSEC_SCRATCH, VSEC_VF_NUMBER = 1, 2, 3


def _window_index(caps, name, cap_id, where):
    for n, cap in enumerate(caps):
        if cap.kind == "extended" and cap.cap_id == cap_id:
            return n, cap
    raise ValueError(f"{where} has no extended capability with ID {cap_id:#06x} ({name})")


class UserCaps(wiring.Component):
    """The user logic: a Device Serial Number in the PF, a VSEC in every VF.

    Parameters
    ----------
    params : EndpointParams
        Must have an extended capability with ID 0x0003 in ``user_caps`` and one with ID
        0x000B in ``vf_user_caps``.
    serial : int
        The 64-bit Device Serial Number.
    vsec_id, vsec_rev : int
        VSEC ID (16 bits) and VSEC Rev (4 bits) in the VSEC header.

    Members
    -------
    ucfg_req : In(stream.Signature(UserConfigRequest(params)))
    ucfg_res : Out(stream.Signature(UserConfigResponse))
        To be connected to the endpoint's ports of the same names.
    vf_flr : In(StructLayout({"valid": 1, "vf": range(TotalVFs + 1)}))
    vfs_reset : In(1)
        The endpoint's VF reset events.
    """

    def __init__(self, params, *, serial, vsec_id=0x0042, vsec_rev=1):
        if not 0 <= serial < 1 << 64:
            raise ValueError(f"serial: must be a 64-bit number, not {serial!r}")
        self._params = params
        self.serial = serial
        self.vsec_id = vsec_id
        self.vsec_rev = vsec_rev
        self.dsn_window, _ = _window_index(params.user_caps, "Device Serial Number",
                                           DSN_CAP_ID, "pf.capability")
        self.vsec_window, vsec = _window_index(params.vf_user_caps, "VSEC", VSEC_CAP_ID,
                                               "sriov.vf_capability")
        self.vsec_length = vsec.size
        super().__init__({
            "ucfg_req":  In(stream.Signature(UserConfigRequest(params))),
            "ucfg_res":  Out(stream.Signature(UserConfigResponse)),
            "vf_flr":    In(data.StructLayout({"valid": 1,
                                               "vf": range(params.total_vfs + 1)})),
            "vfs_reset": In(1),
        })

    def elaborate(self, platform):
        p = self._params
        m = Module()
        depth = max(2, p.total_vfs)
        m.submodules.scratch = scratch = Memory(shape=32, depth=depth, init=[])
        rd = scratch.read_port()
        wr = scratch.write_port(granularity=8)

        req = Signal.like(self.ucfg_req.payload)
        is_pf = req.function == 0
        dsn = is_pf & (req.window == self.dsn_window)
        vsec = ~is_pf & (req.window == self.vsec_window)
        vf_index = (req.function - 1)[:len(rd.addr)]

        # Sweep: clear every VF's scratch word (after reset, and when every VF is reset).
        sweep = Signal(init=1)
        sweep_addr = Signal(range(depth))
        with m.If(self.vfs_reset):
            m.d.sync += [sweep.eq(1), sweep_addr.eq(0)]
        with m.Elif(sweep):
            m.d.sync += sweep_addr.eq(sweep_addr + 1)
            with m.If(sweep_addr == depth - 1):
                m.d.sync += sweep.eq(0)

        m.d.comb += rd.addr.eq(vf_index)
        vsec_header = Cat(Const(self.vsec_id, 16), Const(self.vsec_rev, 4),
                          Const(self.vsec_length, 12))

        with m.FSM(name="ucfg"):
            with m.State("IDLE"):
                m.d.comb += self.ucfg_req.ready.eq(~sweep & ~self.vfs_reset)
                with m.If(self.ucfg_req.valid & self.ucfg_req.ready):
                    m.d.sync += req.eq(self.ucfg_req.payload)
                    m.next = "READ"
            with m.State("READ"):       # the scratch word of the addressed VF is read
                m.next = "RESPOND"
            with m.State("RESPOND"):
                m.d.comb += [self.ucfg_res.valid.eq(1), self.ucfg_res.payload.tag.eq(req.tag)]
                with m.If(dsn & (req.offset == DSN_SERIAL_LO)):
                    m.d.comb += self.ucfg_res.payload.data.eq(self.serial & 0xFFFF_FFFF)
                with m.Elif(dsn & (req.offset == DSN_SERIAL_HI)):
                    m.d.comb += self.ucfg_res.payload.data.eq(self.serial >> 32)
                with m.Elif(vsec & (req.offset == VSEC_HEADER)):
                    m.d.comb += self.ucfg_res.payload.data.eq(vsec_header)
                with m.Elif(vsec & (req.offset == VSEC_SCRATCH)):
                    m.d.comb += self.ucfg_res.payload.data.eq(rd.data)
                with m.Elif(vsec & (req.offset == VSEC_VF_NUMBER)):
                    m.d.comb += self.ucfg_res.payload.data.eq(req.function)
                with m.If(self.ucfg_res.ready):
                    m.next = "IDLE"

        # One write port: the sweep, a VF FLR, or a config write to the scratch register. (A VF
        # FLR is the completion of a config write to the VF's PCI Express capability, so it
        # never meets a user request.)
        scratch_we = Signal()
        m.d.comb += scratch_we.eq(self.ucfg_res.valid & self.ucfg_res.ready & req.write &
                                  vsec & (req.offset == VSEC_SCRATCH))
        with m.If(sweep):
            m.d.comb += [wr.addr.eq(sweep_addr), wr.data.eq(0), wr.en.eq(0b1111)]
        with m.Elif(self.vf_flr.valid):
            m.d.comb += [wr.addr.eq(self.vf_flr.vf - 1), wr.data.eq(0), wr.en.eq(0b1111)]
        with m.Elif(scratch_we):
            m.d.comb += [wr.addr.eq(vf_index), wr.data.eq(req.data), wr.en.eq(req.be)]
        return m


class UserCapsDevice(wiring.Component):
    """``SriovEndpoint`` with :class:`UserCaps` behind its user configuration port.

    Its ports are the endpoint's (see :class:`~sriov_ep.endpoint.SriovEndpoint`) except
    ``ucfg_req``/``ucfg_res``, which stay inside.
    """

    def __init__(self, params, *, serial, vsec_id=0x0042, vsec_rev=1):
        self.endpoint = SriovEndpoint(params)
        self.user = UserCaps(params, serial=serial, vsec_id=vsec_id, vsec_rev=vsec_rev)
        members = {name: member for name, member in self.endpoint.signature.members.items()
                   if name not in ("ucfg_req", "ucfg_res")}
        super().__init__(members)

    @property
    def params(self):
        return self.endpoint.params

    def elaborate(self, platform):
        m = Module()
        m.submodules.endpoint = ep = self.endpoint
        m.submodules.user = user = self.user
        wiring.connect(m, ep.ucfg_req, user.ucfg_req)
        wiring.connect(m, user.ucfg_res, ep.ucfg_res)
        m.d.comb += [user.vf_flr.valid.eq(ep.vf_flr.valid), user.vf_flr.vf.eq(ep.vf_flr.vf),
                     user.vfs_reset.eq(ep.pfs[0].vfs_reset)]
        for name, member in self.signature.members.items():
            outer, inner = getattr(self, name), getattr(ep, name)
            if member.is_signature:
                if member.flow == In:
                    wiring.connect(m, wiring.flipped(outer), inner)
                else:
                    wiring.connect(m, inner, wiring.flipped(outer))
            elif member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        return m
