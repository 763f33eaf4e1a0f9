"""A host that reaches :class:`sriov_ep.tlp.SriovTlpEndpoint` through TLPs only.

:class:`TlpLink` plays both ends of the wrapper in an Amaranth testbench, one clock edge at a
time (:meth:`TlpLink.step`): the link partner on ``rx``/``tx`` (TLPs built and parsed as bytes by
:mod:`sriov_tb.tlp`, with a Requester ID and tags, completions matched to requests by tag) and
the user logic on ``req``/``cpl`` (memories behind every function's BARs, answering memory reads
with completions whose Completer ID the wrapper stamps). Streams may stall at random (a seeded
``random.Random``).

On top of it, drivers with the interfaces :func:`sriov_tb.runner.execute` takes, so the
existing scripts, scenarios and the Linux host model run over TLPs, every completion compared
with :class:`sriov_tb.model.EndpointModel` as on the other backends:

* :class:`TlpConfigDriver` (``config(type1, rid, reg, be, write, data)``): one CfgRd/CfgWr TLP
  per call, reissued on Request Retry Status; the completion's Completer ID, Requester ID, Tag,
  Byte Count, Lower Address and Length are checked against PCIe Base §2.2.9;
* :class:`TlpMemoryDriver` (``access(addr, write, data, be)`` and ``decode(addr, write)``):
  one MRd/MWr of the enabled bytes of a QWORD. Which function and BAR a request reached is what
  the wrapper tells the user logic (``req.func``, ``bar_id``, ``offset``); for the tables the
  endpoint serves itself (MSI-X), which never reach the user, the bench reads the endpoint's
  decode result inside the wrapper (``endpoint.mem_res``) for the BAR and offset, and checks
  the completion's data against it. Every completion's header is checked: a UR for an
  unclaimed read (Completer ID of PF 0), the function's own Completer ID for the rest.

:func:`run_ops_tlp` is :func:`sriov_tb.runner.run_ops` over the link (the ``tlp`` backend).
The transcripts are those of the other backends except ``cycles``, which here counts clock
edges from the one taking a request's last beat on ``rx`` to the one giving its completion's
last beat on ``tx`` (the user logic's one-cycle turnaround included for user memory reads).
"""

import copy
import random
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace

from amaranth.sim import Simulator

from . import tlp as T
from .cfg import Mismatch
from .host import MSG_QUIET, BarMemories, MemAccessResult, MemDecodeResult, reissue_on_rrs
from .tlp import CplStatus, Tlp, TlpType
from .tlp_rules import (
    Reaction,
    compare_reactions,
    payload_problem,
    predict_reaction,
    raw_beats,
    user_write,
)

__all__ = ["TlpLink", "TlpConfigDriver", "TlpMemoryDriver", "TlpInterruptDriver", "LinkError",
           "TlpRawDriver", "RawTlpTransaction",
           "run_ops_tlp", "check_completion_header", "HOST_RID", "CLOCK_PERIOD"]

#: The Requester ID the host uses: the Root Port at 00:00.0.
HOST_RID = 0x0000
#: Clock period of the simulation (8 ns, as :data:`sriov_tb.sim.CLOCK_PERIOD`).
CLOCK_PERIOD = 8e-9


class LinkError(Mismatch):
    """A TLP the link received breaks the specification or does not answer what was sent."""


def _int(value):
    return int(value)


class TlpLink:
    """Both ends of a :class:`SriovTlpEndpoint` in an Amaranth testbench.

    ``requester_id``: the host's Routing ID. ``tag_bits``: 8 or 10 (10-bit tags use values
    256..1023, as §2.2.6.2 asks of a requester using them). ``stall``: probability that a
    stream the bench controls (``tx.ready``, ``req.ready``, ``rx.valid``, ``cpl.valid``) is held
    off in a cycle, drawn from ``rng``. ``memories``: the user logic's :class:`BarMemories`.
    ``user_latency``: cycles the user logic takes before answering a read.
    """

    def __init__(self, ctx, dut, *, requester_id=HOST_RID, tag_bits=8, stall=0.0, rng=None,
                 memories=None, user_latency=0, timeout=100_000):
        if tag_bits not in (8, 10):
            raise ValueError(f"tag_bits: {tag_bits} is not 8 or 10")
        self.ctx = ctx
        self.dut = dut
        self.width = len(dut.rx.payload.data)
        self.requester_id = requester_id
        self.tag_bits = tag_bits
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.memories = memories if memories is not None else BarMemories()
        self.user_latency = user_latency
        self.timeout = timeout
        self.edge = 0
        self._next_tag = 0
        self._rx = deque()          # beats to send on rx
        self._rx_last = {}          # id(last beat) -> callback(edge)
        self._tx_beats = []
        self._req_beats = []
        self._cpl = deque()         # (ready_at_edge, beat) for the cpl stream
        self.completions = {}       # tag -> [(Tlp, edge)]
        self.received = []          # non-completion TLPs from tx: (Tlp, edge)
        self.user_requests = []     # (Tlp, sidebands dict, edge) the user logic got
        self.decodes = deque()      # endpoint.mem_res results seen: (payload view, edge)
        self.events = []            # (kind, pf, vf, edge) from rx_event
        self.rx_cpl_beats = []      # beats the wrapper handed to rx_cpl (always taken)
        self.rx_msgs = []           # (code, edge) of rx_msg pulses
        self.cfg_urs = []           # (rid, edge) of cfg_ur pulses
        self.outstanding = set()
        self.raw_tags = set()       # tags of raw TLPs (tlp ops) whose completions are taken

    # -- one clock edge --------------------------------------------------------------------

    def _hold(self):
        return self.stall and self.rng.random() < self.stall

    async def step(self):
        ctx, dut = self.ctx, self.dut
        rx_beat = self._rx[0] if self._rx and not self._hold() else None
        ctx.set(dut.rx.valid, rx_beat is not None)
        if rx_beat is not None:
            ctx.set(dut.rx.payload, rx_beat)
        ctx.set(dut.tx.ready, not self._hold())
        ctx.set(dut.req.ready, not self._hold())
        # Completions the link delivers go to the user's DMA engine (`rx_cpl`); this bench
        # issues no DMA, so it takes whatever comes and keeps it (``rx_cpl_beats``).
        ctx.set(dut.rx_cpl.ready, 1)
        cpl_beat = None
        if self._cpl and self._cpl[0][0] <= self.edge and not self._hold():
            cpl_beat = self._cpl[0][1]
        ctx.set(dut.cpl.valid, cpl_beat is not None)
        if cpl_beat is not None:
            ctx.set(dut.cpl.payload, cpl_beat)
        ep = dut.endpoint
        (_, _, rx_ready, tx_valid, tx_ready, tx_p, req_valid, req_ready, req_p, cpl_ready,
         dec_valid, dec_ready, dec_p, ev, rx_cpl_valid, rx_cpl_p, rx_msg, cfg_ur) = \
            await ctx.tick().sample(
                dut.rx.ready, dut.tx.valid, dut.tx.ready, dut.tx.payload, dut.req.valid,
                dut.req.ready, dut.req.payload, dut.cpl.ready, ep.mem_res.valid,
                ep.mem_res.ready, ep.mem_res.payload, dut.rx_event, dut.rx_cpl.valid,
                dut.rx_cpl.payload, dut.rx_msg, dut.cfg_ur)
        if rx_cpl_valid:
            self.rx_cpl_beats.append(rx_cpl_p)
        self.edge += 1
        if rx_msg.valid:
            self.rx_msgs.append((_int(rx_msg.code), self.edge))
        if cfg_ur.valid:
            self.cfg_urs.append((_int(cfg_ur.rid), self.edge))
        if rx_beat is not None and rx_ready:
            self._rx.popleft()
            done = self._rx_last.pop(id(rx_beat), None)
            if done is not None:
                done(self.edge)
        if cpl_beat is not None and cpl_ready:
            self._cpl.popleft()
        if tx_valid and tx_ready:
            self._take_tx(tx_p)
        if req_valid and req_ready:
            self._take_req(req_p)
        if dec_valid and dec_ready:
            self.decodes.append((SimpleNamespace(
                claimed=_int(dec_p.claimed), internal=_int(dec_p.internal),
                is_vf=_int(dec_p.is_vf), vf=_int(dec_p.vf), bar=_int(dec_p.bar),
                offset=_int(dec_p.offset), data=_int(dec_p.data),
                pf=_int(getattr(dec_p, "pf", 0))), self.edge))
        if ev.valid:
            kind = ev.kind
            kind = kind.value if hasattr(kind, "value") else int(kind)
            self.events.append((kind, _int(ev.func.pf), _int(ev.func.vf), self.edge))

    @staticmethod
    def _beat(p):
        return {"hdr": _int(p.hdr), "data": _int(p.data), "strb": _int(p.strb),
                "sop": _int(p.sop), "eop": _int(p.eop)}

    def _take_tx(self, p):
        beat = self._beat(p)
        if beat["sop"] and self._tx_beats:
            raise LinkError(f"tx: a new TLP (sop) began before the last one's eop "
                            f"(edge {self.edge})")
        if not beat["sop"] and not self._tx_beats:
            raise LinkError(f"tx: a beat without sop outside a TLP (edge {self.edge})")
        self._tx_beats.append(beat)
        if not beat["eop"]:
            return
        try:
            tlp = Tlp.from_beats(self._tx_beats)
        except ValueError as exc:
            raise LinkError(f"tx: the endpoint sent a TLP that does not decode: {exc}") \
                from None
        self._tx_beats = []
        if tlp.type.is_completion:
            if tlp.tag not in self.outstanding and tlp.tag not in self.raw_tags:
                raise LinkError(f"tx: completion with tag {tlp.tag:#x} that no request "
                                f"outstanding has: {tlp}")
            self.completions.setdefault(tlp.tag, []).append((tlp, self.edge))
        else:
            self.received.append((tlp, self.edge))

    def _take_req(self, p):
        beat = self._beat(p)
        side = {"bar_id": _int(p.bar_id), "pf": _int(p.func.pf), "vf": _int(p.func.vf),
                "offset": _int(p.offset)}
        if beat["sop"] and self._req_beats:
            raise LinkError("req: a new TLP (sop) began before the last one's eop")
        if self._req_beats and side != self._req_beats[0][1]:
            raise LinkError(f"req: sidebands changed inside a TLP: {self._req_beats[0][1]} "
                            f"then {side}")
        self._req_beats.append((beat, side))
        if not beat["eop"]:
            return
        tlp = Tlp.from_beats([b for b, _ in self._req_beats])
        self._req_beats = []
        self.user_requests.append((tlp, side, self.edge))
        self._serve(tlp, side)

    # -- the user logic --------------------------------------------------------------------

    def _serve(self, tlp, side):
        """Memories behind the BARs: writes store their enabled bytes; reads are answered with
        one CplD (Completer ID left 0: the wrapper stamps it from ``func``)."""
        key = (side["pf"], side["vf"], side["bar_id"])
        t = tlp.type
        if t in (TlpType.MWR32, TlpType.MWR64):
            user_write(self.memories, tlp, side)
            return
        if t not in (TlpType.MRD32, TlpType.MRD64):
            raise LinkError(f"req: the user logic got a {t.name}, which the wrapper must "
                            f"handle itself: {tlp}")
        first = T.read_lower_address(0, tlp.first_be) & 3
        nbytes = T.read_byte_count(tlp.length, tlp.first_be, tlp.last_be)
        value = self.memories.read(key[1], key[2], side["offset"] + first, nbytes, pf=key[0])
        cpl = T.completion(tlp, 0, data=value.to_bytes(nbytes, "little"))
        func = {"pf": side["pf"], "vf": side["vf"]}
        at = self.edge + self.user_latency
        for beat in cpl.beats(self.width):
            self._cpl.append((at, {**beat, "func": func}))

    # -- requests --------------------------------------------------------------------------

    def alloc_tag(self):
        span = 256 if self.tag_bits == 8 else 768
        base = 0 if self.tag_bits == 8 else 256
        for _ in range(span):
            tag = base + self._next_tag
            self._next_tag = (self._next_tag + 1) % span
            if tag not in self.outstanding:
                self.outstanding.add(tag)
                return tag
        raise LinkError("no free tag: every tag has a request outstanding")

    async def send(self, tlp):
        """Queue ``tlp`` on ``rx``; return the edge that took its last beat."""
        return await self.send_beats(tlp.beats(self.width), tlp)

    async def send_beats(self, beats, what):
        """Queue ``beats`` (one TLP, ``what`` names it in errors) on ``rx``; return the edge
        that took the last one."""
        taken = {}
        self._rx_last[id(beats[-1])] = lambda edge: taken.setdefault("edge", edge)
        self._rx.extend(beats)
        waited = 0
        while "edge" not in taken:
            await self.step()
            waited += 1
            if waited > self.timeout:
                raise TimeoutError(f"rx: {what} not taken after {self.timeout} cycles")
        return taken["edge"]

    async def completion(self, tag, *, timeout=None):
        """Step until a completion with ``tag`` arrives; return ``(Tlp, edge)``."""
        timeout = self.timeout if timeout is None else timeout
        waited = 0
        while not self.completions.get(tag):
            await self.step()
            waited += 1
            if waited > timeout:
                raise TimeoutError(f"no completion with tag {tag:#x} after {timeout} cycles")
        got = self.completions[tag].pop(0)
        if not self.completions[tag]:
            del self.completions[tag]
        self.outstanding.discard(tag)
        return got

    async def nonposted(self, build):
        """Send ``build(tag)`` with a fresh tag; return ``(request, completion, cycles)``."""
        tag = self.alloc_tag()
        tlp = build(tag)
        sent = await self.send(tlp)
        cpl, edge = await self.completion(tag)
        check_completion_header(tlp, cpl)
        return tlp, cpl, edge - sent

    async def idle(self, cycles):
        for _ in range(cycles):
            await self.step()

    async def settle(self, cycles=8):
        """Step until nothing is queued or in flight and ``cycles`` edges passed quietly."""
        quiet = 0
        waited = 0
        while quiet < cycles:
            busy = self._rx or self._cpl or self._tx_beats or self._req_beats
            await self.step()
            quiet = 0 if busy else quiet + 1
            waited += 1
            if waited > self.timeout:
                raise TimeoutError("the link did not go quiet")

    # -- what the endpoint's Routing IDs are (independent formula, from its live state) -----

    def routing_id(self, pf, vf):
        """Routing ID of VF ``vf`` (0: the PF) of PF ``pf``: ``bus << 8 | PF function number``
        plus First VF Offset + (vf - 1) * VF Stride (PCIe Base §9.3.3.9/10), from the values
        the endpoint exports."""
        d = self.dut
        params = d.params
        base = self.ctx.get(d.bus) << 8 | (params.pfs[pf].pf_rid & 0xFF)
        if vf == 0:
            return base
        state = d.pfs[pf]
        offset = self.ctx.get(state.first_vf_offset)
        stride = self.ctx.get(state.vf_stride)
        return (base + offset + (vf - 1) * stride) & 0xFFFF


def check_completion_header(req, cpl):
    """The completion ``cpl`` answers ``req`` (§2.2.9): Requester ID, Tag, TC, Attr, a type
    that fits the request, Length 1 and Byte Count 4 for config/IO, Lower Address 0 outside
    memory reads, the memory read formulas otherwise."""
    problems = cpl.violations()
    if cpl.tag != req.tag:
        problems.append(f"tag {cpl.tag:#x}, request's {req.tag:#x}")
    if cpl.requester_id != req.requester_id:
        problems.append(f"requester_id {cpl.requester_id:#06x}, request's {req.requester_id:#06x}")
    if (cpl.tc, cpl.attr) != (req.tc, req.attr):
        problems.append(f"TC/Attr {cpl.tc}/{cpl.attr}, request's {req.tc}/{req.attr}")
    t = req.type
    locked = t in (TlpType.MRDLK32, TlpType.MRDLK64)
    if locked != (cpl.type in (TlpType.CPLLK, TlpType.CPLDLK)):
        problems.append(f"{cpl.type.name} answers a {t.name}")
    reads = cpl.status == CplStatus.SC and t.is_read
    if reads != cpl.type.has_data:
        problems.append(f"{cpl.type.name} with status {cpl.status} for a {t.name}")
    if t.is_memory:
        bc = T.read_byte_count(req.length, req.first_be, req.last_be)
        la = T.read_lower_address(req.address, req.first_be)
        if (cpl.byte_count, cpl.lower_address) != (bc, la):
            problems.append(f"byte count/lower address {cpl.byte_count}/{cpl.lower_address:#x},"
                            f" expected {bc}/{la:#x}")
        if cpl.type.has_data and cpl.length != -(-((la & 3) + bc) // 4):
            problems.append(f"length {cpl.length} for {bc} bytes at lower address {la:#x}")
    elif not t.is_atomic:
        if (cpl.byte_count, cpl.lower_address) != (4, 0):
            problems.append(f"byte count/lower address {cpl.byte_count}/{cpl.lower_address:#x},"
                            f" expected 4/0")
        if cpl.type.has_data and cpl.length != 1:
            problems.append(f"length {cpl.length}, expected 1")
    if problems:
        raise LinkError(f"completion {cpl} of {req}: " + "; ".join(problems))


class TlpConfigDriver:
    """``config(type1, rid, reg, be, write, data)`` as CfgRd/CfgWr TLPs (a
    :class:`sriov_tb.host.EndpointDriver` over the link). The Completer ID must be the
    function addressed: its device/function number with the bus the endpoint captured
    (Type 0), or the whole Routing ID the request carried (Type 1, a VF beyond the PF's
    bus)."""

    def __init__(self, link, *, retry_rrs=True):
        self.link = link
        self.retry_rrs = retry_rrs
        self.rrs_retries = 0
        self.rrs_by_rid = {}
        self.sent = 0

    async def config(self, type1, rid, reg, be, write, data):
        link = self.link

        def build(tag):
            if write:
                return T.cfg_write(link.requester_id, tag, rid, reg, data, first_be=be,
                                   type1=bool(type1))
            return T.cfg_read(link.requester_id, tag, rid, reg, first_be=be,
                              type1=bool(type1))

        async def attempt():
            req, cpl, cycles = await link.nonposted(build)
            self.sent += 1
            # The function addressed, with the bus it captured (a Type 0 request before the
            # first CfgWr0 meets bus 0); a Type 1 request reaches a VF on another bus.
            expected = rid if type1 else link.ctx.get(link.dut.bus) << 8 | (rid & 0xFF)
            if cpl.completer_id != expected:
                raise LinkError(f"completion {cpl} of {req}: Completer ID "
                                f"{T.rid_str(cpl.completer_id)}, expected "
                                f"{T.rid_str(expected)}")
            value = int.from_bytes(cpl.data, "little") if cpl.type.has_data else 0
            return SimpleNamespace(status=cpl.status, data=value), cycles

        return await reissue_on_rrs(self, attempt, rid)


def _qword_request(addr, write, data, be):
    """(address, length, first_be, last_be, payload bytes) of one request for the enabled
    bytes ``be`` of the QWORD containing ``addr`` (``data``: its bytes, byte i at 8i+7:8i)."""
    base = addr & ~7
    lo, hi = be & 0xF, be >> 4 & 0xF
    raw = data.to_bytes(8, "little")
    if lo and hi:
        return base, 2, lo, hi, raw
    if hi:
        return base + 4, 1, hi, 0, raw[4:]
    if lo:
        return base, 1, lo, 0, raw[:4]
    at = addr & ~3                         # no byte enabled: a zero-length request
    return at, 1, 0, 0, bytes(4)


class TlpMemoryDriver:
    """``access(addr, write, data=0, be=0xFF)`` and ``decode(addr, write)`` as MRd/MWr TLPs (a
    :class:`sriov_tb.host.MemoryDriver` over the link)."""

    #: The wrapper logs an unclaimed MRd/MWr as an Unsupported Request in PF 0's Device Status
    #: (docs/tlp.md §2): :class:`sriov_tb.host.MemoryPort` tells the model of each.
    unclaimed_sets_urd = True

    def __init__(self, link):
        self.link = link

    async def decode(self, addr, write):
        res = await self.access(addr, write, 0, 0)
        if not res.answered:
            return MemDecodeResult(False, 0, 0, 0, res.cycles)
        return MemDecodeResult(True, res.function, res.bar, res.offset, res.cycles, res.pf)

    async def access(self, addr, write, data=0, be=0xFF):
        link = self.link
        at, length, first, last, payload = _qword_request(addr, write, data, be)
        kind = TlpType.MWR64 if at >> 32 else TlpType.MWR32
        if not write:
            kind = TlpType.MRD64 if at >> 32 else TlpType.MRD32
        users = len(link.user_requests)
        events = len(link.events)
        link.decodes.clear()

        def build(tag):
            return Tlp(kind, requester_id=link.requester_id, tag=tag, address=at, length=length,
                       first_be=first, last_be=last, data=payload if write else b"")

        if write:
            tlp = build(0)
            sent = await link.send(tlp)
            dec, cycles = await self._decoded(sent)
            if dec.claimed and not dec.internal:
                await self._until(lambda: len(link.user_requests) > users, "the user request")
                cycles = link.edge - sent
            elif not dec.claimed and not dec.internal:
                await self._until(lambda: len(link.events) > events, "the UR event")
                cycles = link.edge - sent
        else:
            tlp, cpl, cycles = await link.nonposted(build)
            dec, _ = await self._decoded(None)
        self._check(tlp, dec, users, events, cpl if not write else None, addr)
        offset = dec.offset + (addr - at) if (dec.claimed or dec.internal) else 0
        return MemAccessResult(bool(dec.claimed) and not dec.internal, bool(dec.internal),
                               bool(dec.is_vf), dec.vf, dec.bar, offset,
                               dec.data if dec.internal and not write else 0, cycles, dec.pf)

    async def _until(self, cond, what):
        waited = 0
        while not cond():
            await self.link.step()
            waited += 1
            if waited > self.link.timeout:
                raise TimeoutError(f"{what} did not come after {self.link.timeout} cycles")

    async def _decoded(self, sent):
        await self._until(lambda: self.link.decodes, "the endpoint's decode")
        dec, edge = self.link.decodes.popleft()
        return dec, (edge - sent if sent is not None else None)

    def _check(self, tlp, dec, users, events, cpl, addr):
        """What the wrapper did with ``tlp`` must fit the endpoint's decode ``dec``."""
        link = self.link
        got = link.user_requests[users:]
        evs = link.events[events:]
        pf, vf = dec.pf, dec.vf if dec.is_vf else 0
        what = "claimed" if dec.claimed else "internal" if dec.internal else "unclaimed"
        where = f"{tlp} (decoded {what} PF {pf} VF {vf} BAR {dec.bar} offset {dec.offset:#x})"
        if dec.claimed and not dec.internal:
            if len(got) != 1:
                raise LinkError(f"{where}: {len(got)} requests reached the user logic, not 1")
            utlp, side, _ = got[0]
            if utlp != tlp:
                raise LinkError(f"{where}: the user logic got {utlp}")
            if side != {"bar_id": dec.bar, "pf": pf, "vf": vf, "offset": dec.offset}:
                raise LinkError(f"{where}: sidebands {side}")
            if cpl is not None and cpl.completer_id != link.routing_id(pf, vf):
                raise LinkError(f"{where}: completion {cpl} should come from "
                                f"{T.rid_str(link.routing_id(pf, vf))}")
            return
        if got:
            raise LinkError(f"{where}: reached the user logic as {got[0][0]}")
        if dec.internal:
            if cpl is not None:
                rid = link.routing_id(pf, vf)
                if cpl.completer_id != rid:
                    raise LinkError(f"{where}: completion {cpl} should come from "
                                    f"{T.rid_str(rid)}")
                if cpl.status == CplStatus.SC:
                    lane = tlp.address & 4
                    want = (dec.data >> (8 * lane)).to_bytes(8, "little")[:4 * tlp.length]
                    start = T.read_lower_address(0, tlp.first_be) & 3
                    n = T.read_byte_count(tlp.length, tlp.first_be, tlp.last_be)
                    if cpl.data[start:start + n] != want[start:start + n]:
                        raise LinkError(f"{where}: completion data {cpl.data.hex()}, the "
                                        f"endpoint read {want.hex()}")
            return
        # Unclaimed: a read gets UR from PF 0; a write is dropped; both report UR.
        if not any(e[0] == 2 for e in evs):     # RxEvent.UR
            raise LinkError(f"{where}: no Unsupported Request event")
        if cpl is not None:
            rid = link.routing_id(0, 0)
            if cpl.status != CplStatus.UR or cpl.completer_id != rid:
                raise LinkError(f"{where}: completion {cpl}, expected UR from {T.rid_str(rid)}")


class TlpInterruptDriver:
    """The interrupt port of :class:`sriov_tb.host.InterruptDriver` over the link: requests go
    to the wrapper's ``irq`` (passed through to the endpoint), the MSI-X messages come out of
    ``tx`` as MWr TLPs and are taken from there (one DW, First DW BE 1111b, the Requester ID
    of the function that sent it, mapped back to its PF and VF number from the endpoint's
    First VF Offset and VF Stride). Outcomes as :class:`InterruptDriver`'s, decided
    ``quiet`` cycles after the last message (longer than there: the message crosses the
    wrapper's Routing ID lookup and transmit arbiter)."""

    def __init__(self, link, *, quiet=MSG_QUIET + 16):
        self.link = link
        self.quiet = quiet
        self._log = []
        self._seen = 0
        self._taken = 0
        dut = link.dut
        self._multi = dut.params.num_pfs > 1
        self._fn_width = len(dut.irq.payload.function)
        self._vec_width = len(dut.irq.payload.vector)
        self._pf_width = len(dut.irq.payload.pf) if hasattr(dut.irq.payload, "pf") else 0

    def _whose(self, rid):
        link = self.link
        for k in range(link.dut.params.num_pfs):
            for vf in range(link.ctx.get(link.dut.pfs[k].num_vfs) + 1):
                if link.routing_id(k, vf) == rid:
                    return k, vf
        raise LinkError(f"an MSI-X message came from {T.rid_str(rid)}, which is no function "
                        f"of the device")

    def _collect(self):
        """Messages that came out of tx since the last look."""
        new = []
        received = self.link.received
        while self._taken < len(received):
            tlp, _ = received[self._taken]
            self._taken += 1
            if tlp.type not in (TlpType.MWR32, TlpType.MWR64) or tlp.length != 1 \
                    or tlp.first_be != 0xF:
                raise LinkError(f"tx: {tlp} is not an MSI-X message (a 1 DW MWr, all bytes)")
            pf, vf = self._whose(tlp.requester_id)
            message = (vf, tlp.address, int.from_bytes(tlp.data, "little"))
            if self._multi:
                message += (pf,)
            new.append(message)
        self._log += new
        return new

    async def _until_quiet(self, on_message=None, on_dropped=None):
        quiet = 0
        waited = 0
        while quiet < self.quiet:
            await self.link.step()
            new = self._collect()
            if on_message is not None:
                for message in new:
                    on_message(message)
            if on_dropped is not None and self.link.ctx.get(self.link.dut.irq_dropped):
                on_dropped()
            quiet = 0 if new else quiet + 1
            waited += 1
            if waited > self.link.timeout:
                raise TimeoutError("MSI-X messages still coming")

    async def settle(self):
        await self._until_quiet()

    async def interrupt(self, function, vector, pf=0):
        if not (_fits(function, self._fn_width) and _fits(vector, self._vec_width)
                and (pf == 0 or (self._pf_width and _fits(pf, self._pf_width)))):
            return "dropped"
        link = self.link
        irq, ctx = link.dut.irq, link.ctx
        payload = {"function": function, "vector": vector}
        if self._pf_width:
            payload["pf"] = pf
        outcome = {"dropped": False, "sent": False}

        def on_message(message):
            if message[0] == function and (not self._multi or message[3] == pf):
                outcome["sent"] = True

        def on_dropped():
            outcome["dropped"] = True

        ctx.set(irq.payload, payload)
        ctx.set(irq.valid, 1)
        waited = 0
        while True:
            ready = ctx.get(irq.ready)
            await link.step()
            for message in self._collect():
                on_message(message)
            if ctx.get(link.dut.irq_dropped):
                on_dropped()
            waited += 1
            if ready:
                break
            if waited > link.timeout:
                raise TimeoutError("interrupt request not accepted")
        ctx.set(irq.valid, 0)
        await self._until_quiet(on_message, on_dropped)
        if outcome["dropped"]:
            return "dropped"
        return "sent" if outcome["sent"] else "pending"

    def messages(self):
        new = self._log[self._seen:]
        self._seen = len(self._log)
        return list(new)

    async def vf_msix_count(self, vf, count, pf=0):
        link = self.link
        port, ctx = link.dut.vf_msix_size, link.ctx
        done = link.dut.vf_msix_size_done
        if not (_fits(vf, len(port.payload.vf)) and _fits(count, len(port.payload.count))):
            return False
        payload = {"vf": vf, "count": count}
        if hasattr(port.payload, "pf"):
            payload["pf"] = pf
        elif pf:
            return False
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        accepted = False
        for _ in range(link.timeout):
            ready = ctx.get(port.ready)
            await link.step()
            if accepted and ctx.get(done.valid):
                return bool(ctx.get(done.ok))
            if ready and not accepted:
                accepted = True
                ctx.set(port.valid, 0)
        raise TimeoutError("VF Table Size request not done")


def _fits(value, width):
    return 0 <= value < (1 << width)


def _hex_dws(raw):
    return " ".join(raw[i:i + 4].hex() for i in range(0, len(raw), 4))


def _decoded(raw):
    """The codec's reading of ``raw``, or why it has none."""
    try:
        return str(Tlp.from_bytes(raw))
    except ValueError:
        return f"Fmt {raw[0] >> 5:03b}b Type {raw[0] & 0x1F:05b}b (no TLP type the codec knows)"


@dataclass
class RawTlpTransaction:
    """A raw TLP sent (``tlp`` op) and what came back: ``sent`` its bytes, ``decoded`` the
    codec's reading, ``rule`` what the prediction (:mod:`sriov_tb.tlp_rules`) said applies,
    ``reaction`` what the design did (a :class:`sriov_tb.tlp_rules.Reaction`), ``cycles`` from
    the edge taking its last beat on ``rx`` to the edge of the last thing it caused."""
    sent:     bytes
    decoded:  str
    rule:     str
    reaction: object
    cycles:   int | None
    step:     str = ""
    op:       str = "tlp"

    def as_dict(self):
        return {"op": self.op, "sent": self.sent.hex(), "decoded": self.decoded,
                "predicted": self.rule, **self.reaction.as_dict(), "cycles": self.cycles,
                "step": self.step}

    def __str__(self):
        return (f"tlp [{_hex_dws(self.sent)}] {self.decoded}: {self.reaction.describe()}"
                + (f"; {self.cycles} cycles" if self.cycles is not None else "")
                + (f"  [{self.step}]" if self.step else ""))


class TlpRawDriver:
    """Sends raw TLPs (the ``tlp`` script op) over ``link`` and gathers what they cause.

    :meth:`send_raw` waits until no PF is clearing its VF state (so no config request meets
    Request Retry Status), predicts the reaction with :func:`sriov_tb.tlp_rules.predict_reaction`
    (which keeps the model in step), puts the bytes on ``rx`` verbatim, steps the link until
    nothing happened for ``quiet`` edges, and compares. MSI-X messages on ``tx`` are handed to
    ``irq`` (a :class:`TlpInterruptDriver`), which the host compares with the model's as after
    any memory write.
    """

    def __init__(self, link, irq=None, *, quiet=64):
        self.link = link
        self.irq = irq
        self.quiet = quiet
        #: Raw TLPs whose reaction was compared with the prediction.
        self.compared = 0

    def _activity(self):
        link = self.link
        return (len(link.events), len(link.rx_msgs), len(link.user_requests),
                len(link.rx_cpl_beats), len(link.cfg_urs), len(link.received),
                sum(len(v) for v in link.completions.values()), len(link._tx_beats),
                len(link._req_beats), len(link._rx), len(link._cpl))

    async def _vf_state_clear(self):
        link = self.link
        for _ in range(link.timeout):
            if not any(link.ctx.get(link.dut.pfs[k].vf_reset_busy)
                       for k in range(link.dut.params.num_pfs)):
                return
            await link.step()
        raise TimeoutError("a PF is still clearing its VF state")

    async def send_raw(self, raw, model, memories=None, *, step=""):
        """Send ``raw``; return ``(RawTlpTransaction, problems)``: ``problems`` lists how the
        design's reaction differs from the prediction (empty: it does not). Raises
        :class:`LinkError` for bytes the bench cannot send (a payload that does not match
        Length)."""
        link = self.link
        problem = payload_problem(raw)
        if problem is not None:
            raise LinkError(f"cannot send this TLP: {problem}")
        await self._vf_state_clear()
        predicted = predict_reaction(raw, model, memories)
        tag = None
        if raw[0] & 0x1E != 0b01010:        # Type 0101x: a completion, which gets none
            dw0, dw1 = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
            tag = (dw0 >> 23 & 1) << 9 | (dw0 >> 19 & 1) << 8 | (dw1 >> 8 & 0xFF)
            link.raw_tags.add(tag)
        start = {"events": len(link.events), "msgs": len(link.rx_msgs),
                 "user": len(link.user_requests), "rx_cpl": len(link.rx_cpl_beats),
                 "cfg_ur": len(link.cfg_urs), "received": len(link.received)}
        before = link.completions.pop(tag, []) if tag is not None else []
        try:
            sent = await link.send_beats(raw_beats(raw, link.width), _hex_dws(raw))
            last = sent
            quiet = 0
            seen = self._activity()
            while quiet < self.quiet:
                await link.step()
                now = self._activity()
                if now != seen:
                    seen, quiet, last = now, 0, link.edge
                else:
                    quiet += 1
            if self.irq is not None:
                await self.irq.settle()     # MSI-X messages it caused (a table write)
        finally:
            if tag is not None:
                link.raw_tags.discard(tag)
        got = Reaction(
            completions=[t for t, _ in link.completions.pop(tag, [])] if tag is not None else [],
            events=[e[:3] for e in link.events[start["events"]:]],
            messages=[c for c, _ in link.rx_msgs[start["msgs"]:]],
            user=[(t, side) for t, side, _ in link.user_requests[start["user"]:]],
            forwarded=_tlps_of(link.rx_cpl_beats[start["rx_cpl"]:]),
            cfg_ur=[r for r, _ in link.cfg_urs[start["cfg_ur"]:]],
            tx_other=[t for t, _ in link.received[start["received"]:]])
        if before:
            link.completions[tag] = before
        problems = compare_reactions(predicted, got)
        self.compared += 1
        txn = RawTlpTransaction(raw, _decoded(raw), predicted.rule, got,
                                last - sent if last != sent else None, step)
        return txn, problems


def _tlps_of(beats):
    """The TLPs in a list of beats (payload views) taken from a stream."""
    out, current = [], []
    for p in beats:
        beat = TlpLink._beat(p)
        current.append(beat)
        if beat["eop"]:
            try:
                out.append(Tlp.from_beats(current))
            except ValueError as exc:
                raise LinkError(f"rx_cpl: a TLP that does not decode: {exc}") from None
            current = []
    return out


def run_ops_tlp(params, ops, *, filename="<script>", emit=None, json=False, ari=True,
                page_size=4096, dump_rids=None, dump_enabled=False, user=None,
                on_transaction=None, on_dump=None, vcd=None, wave_from=None, wave_to=None,
                waves_on_failure=False, data_width=64, stall=0.0, seed=0, tag_bits=8):
    """:func:`sriov_tb.runner.run_ops` with every request a TLP into
    :class:`sriov_ep.tlp.SriovTlpEndpoint` (Amaranth's simulator). Same arguments and outcome
    (a :class:`sriov_tb.runner.RunResult`; :class:`sriov_tb.runner.RunFailure`), plus
    ``data_width``, ``stall`` (the probability a stream stalls in a cycle, drawn from
    ``random.Random(seed)``) and ``tag_bits`` (8 or 10). ``vcd`` writes a plain VCD of the
    wrapper (no transaction tracks); the window options and ``waves_on_failure`` are ignored.
    """
    from sriov_ep.tlp import SriovTlpEndpoint

    from .host import user_config_responder
    from .runner import RunResult, check_ops, execute

    check_ops(ops, filename, raw_tlps=True)
    result = RunResult()
    dut = SriovTlpEndpoint(params, data_width=data_width)
    model_user = copy.deepcopy(user)

    async def testbench(ctx):
        link = TlpLink(ctx, dut, stall=stall, rng=random.Random(seed), tag_bits=tag_bits)
        cfg = TlpConfigDriver(link)
        irq = TlpInterruptDriver(link)
        try:
            await execute(params, ops, cfg_driver=cfg, mem_driver=TlpMemoryDriver(link),
                          irq_driver=irq,
                          idle=link.idle, result=result, filename=filename, emit=emit,
                          json=json, ari=ari, page_size=page_size, dump_rids=dump_rids,
                          dump_enabled=dump_enabled, user=model_user,
                          on_transaction=on_transaction, on_dump=on_dump,
                          raw_driver=TlpRawDriver(link, irq))
            await link.settle()
            irq._collect()      # every MWr out of tx must be an MSI-X message
            if irq.messages():
                raise LinkError(f"MSI-X messages after the last operation: {irq.messages()}")
        finally:
            result.rrs_retries = cfg.rrs_retries
            result.rrs_by_rid = dict(cfg.rrs_by_rid)

    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    sim.add_testbench(testbench)
    if user is not None:
        sim.add_testbench(user_config_responder(dut, copy.deepcopy(user)), background=True)
    if vcd is not None:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
    return result
