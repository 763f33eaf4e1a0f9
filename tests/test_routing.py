# amaranth: UnusedElaboratable=no
"""Tests of Routing-ID decoding: which function a configuration request reaches.

* ``exact_divider`` (the decoder's exact division by VF Stride), exhaustively;
* ``RoutingIdDecoder`` simulated on its own, all 65536 Routing IDs of Type 0 and Type 1 requests
  compared with ``EndpointModel.decode`` (the independent reference) in several configurations
  and SR-IOV states; the model is put in each state through its public ``config`` interface;
* the whole ``SriovEndpoint``, through its config channels with a ``Scoreboard``: sampled sweeps
  after a Linux-like enable, spec §8 cases 8 and 21, and bus-number capture
  (``docs/endpoint-behaviour.md`` §1).

Besides the model, every test checks literal facts taken from ``../shared/reference/
sriov-spec.md`` (§2, §8, the igb worked example) and the comments of ``examples/*.toml``: where
VF 1 and the last VF sit, which requests are UR. Those are not computed with the model's formulas.

The exhaustive decoder sweeps cost about 1.5 s per 65536 requests in Amaranth's simulator
(3 s per configuration and state, both types): ``FAST_SWEEPS`` run by default, the other
configuration/state pairs are marked slow. The endpoint sweeps of many-vfs (Linux's sriov_init
alone is 12000 requests there) run the exported Verilog on the native backend
(docs/native-backend.md). A failing sweep writes no waveform (131072 steps of a combinational
block): its message lists the Routing IDs that differ.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from amaranth.hdl import Cat

from sriov_ep.decode.routing import RoutingIdDecoder, Target, exact_divider, needs_divider
from sriov_ep.endpoint import SriovEndpoint
from sriov_ep.params import EndpointParams, format_bdf, load_params
from sriov_tb.host import EndpointDriver, LinuxHost, ModelEndpointPort, RootPort, Scoreboard
from sriov_tb.model import EndpointModel
from sriov_tb.native import NativeConfigDriver
from sriov_tb.sim import simulate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

TYPE0, TYPE1 = False, True

# SR-IOV capability registers (byte offsets in the capability) and Control bits.
SRIOV_CTRL, SRIOV_NUM_VF, SRIOV_OFFSET_STRIDE = 0x08, 0x10, 0x14
CTRL_VFE, CTRL_MSE, CTRL_ARI = 0x01, 0x08, 0x10

VF_ID_DWORD = 0xFFFF_FFFF           # an enabled VF's Vendor/Device ID dword (spec §8 case 9)
VF_COMMAND_RESET = 0x0011_0000      # VF Command 0, Status: Capabilities List, Immediate Readiness
VF_DEVCTL_RESET = 0x0000_0810       # VF Device Control: Relaxed Ordering and No Snoop set


def igb():
    return load_params(EXAMPLES / "igb-82576.toml")


def nvme():
    return load_params(EXAMPLES / "nvme.toml")


def many_vfs():
    return load_params(EXAMPLES / "many-vfs.toml")


def stride3_stride5():
    """PF 03:00.4 (function 4, not 0); ARI offset 2 stride 3, non-ARI offset 0x17C stride 5:
    neither stride is a power of two, and the two pairs differ."""
    return EndpointParams(pf_rid=0x0304, total_vfs=200,
                          first_vf_offset_ari=2, vf_stride_ari=3,
                          first_vf_offset_non_ari=0x17C, vf_stride_non_ari=5)


def all_rids_vfs():
    """TotalVFs 65535 with the PF at 00:00.0, offset 1 stride 1: VF 65535 is RID 0xFFFF."""
    return EndpointParams(pf_rid=0x0000, total_vfs=65535,
                          first_vf_offset_ari=1, vf_stride_ari=1,
                          first_vf_offset_non_ari=1, vf_stride_non_ari=1)


def stride255():
    """PF 12:03.1 (devfn 0x19); ARI offset 7 stride 255 over almost the whole RID space, so the
    divider sees large dividends; non-ARI offset 0x100 stride 6."""
    return EndpointParams(pf_rid=0x1219, total_vfs=239,
                          first_vf_offset_ari=7, vf_stride_ari=255,
                          first_vf_offset_non_ari=0x100, vf_stride_non_ari=6)


def one_vf_stride0():
    """TotalVFs 1 with VF Stride 0 (legal only then): VF 1 is PF + offset, nothing else."""
    return EndpointParams(pf_rid=0x0200, total_vfs=1,
                          first_vf_offset_ari=1, vf_stride_ari=0,
                          first_vf_offset_non_ari=0x100, vf_stride_non_ari=0)


@dataclass(frozen=True)
class RouteConfig:
    """One routing configuration: parameters, ARI Capable Hierarchy, a NumVFs below TotalVFs,
    and literal ``(type1, rid, n)`` facts "VF n is reached by this request" from the spec or the
    example's comments (checked whenever VF n is enabled)."""
    name:    str
    params:  object = field(repr=False)
    ari:     bool
    partial: int
    anchors: tuple = ()
    #: Bus the PF is written on (captured), if not that of ``params.pf_rid``.
    bus:     int | None = None

    @property
    def pf_rid(self):
        """The PF's Routing ID once the bus is captured."""
        bus = self.params.pf_rid >> 8 if self.bus is None else self.bus
        return bus << 8 | (self.params.pf_rid & 0xFF)


CONFIGS = {c.name: c for c in [
    # (a) spec §2: "PF 01:00.0, ARIHierarchy-, offset 0x180 stride 2 -> VF1 = 02:10.0,
    # VF2 = 02:10.2"; igb-82576.toml: VF8 = 0x028E = 02:11.6.
    RouteConfig("igb-nonari", igb(), False, 5,
                ((TYPE1, 0x0280, 1), (TYPE1, 0x0282, 2), (TYPE1, 0x0288, 5),
                 (TYPE1, 0x028E, 8))),
    # (b) spec worked example: "VF n RID = 0x0180 + 2(n-1): 01:10.0 ... 01:10.6"; VF8 = 01:11.6.
    RouteConfig("igb-ari", igb(), True, 4,
                ((TYPE0, 0x0180, 1), (TYPE0, 0x0182, 2), (TYPE0, 0x0186, 4),
                 (TYPE0, 0x0188, 5), (TYPE0, 0x018E, 8))),
    # (c) nvme.toml: "VFs are 0x0101..0x017F".
    RouteConfig("nvme", nvme(), True, 100,
                ((TYPE0, 0x0101, 1), (TYPE0, 0x0164, 100), (TYPE0, 0x017F, 127))),
    # (d) many-vfs.toml: ARI "0x8101..0x90A0"; non-ARI "VF1 is 0x8200 ... VF4000 is 0x919F".
    RouteConfig("many-vfs-ari", many_vfs(), True, 3000,
                ((TYPE0, 0x8101, 1), (TYPE0, 0x81FF, 255), (TYPE1, 0x8200, 256),
                 (TYPE1, 0x8CB8, 3000), (TYPE1, 0x90A0, 4000))),
    RouteConfig("many-vfs-nonari", many_vfs(), False, 1000,
                ((TYPE1, 0x8200, 1), (TYPE1, 0x85E7, 1000), (TYPE1, 0x919F, 4000))),
    # (e) VF n = 0x0304 + 2 + 3(n-1) with ARI; 0x0304 + 0x17C + 5(n-1) without.
    RouteConfig("stride3-ari", stride3_stride5(), True, 150,
                ((TYPE0, 0x0306, 1), (TYPE0, 0x0309, 2), (TYPE0, 0x03FF, 84),
                 (TYPE1, 0x0402, 85), (TYPE1, 0x055B, 200))),
    RouteConfig("stride5-nonari", stride3_stride5(), False, 150,
                ((TYPE1, 0x0480, 1), (TYPE1, 0x0485, 2), (TYPE1, 0x0863, 200))),
    # (f) VF n = n.
    RouteConfig("65535-vfs", all_rids_vfs(), True, 40000,
                ((TYPE0, 0x0001, 1), (TYPE0, 0x00FF, 255), (TYPE1, 0x0100, 256),
                 (TYPE1, 0x9C40, 40000), (TYPE1, 0xFFFF, 65535))),
    # VF n = 0x1220 + 255(n-1).
    RouteConfig("stride255-ari", stride255(), True, 100,
                ((TYPE0, 0x1220, 1), (TYPE1, 0x131F, 2), (TYPE1, 0xFF32, 239))),
    # VF 1 = 0x0201; the "partial" state is VF Enable with NumVFs 0 (spec §8 case 6).
    RouteConfig("one-vf-stride0", one_vf_stride0(), True, 0, ((TYPE0, 0x0201, 1),)),
    # The PF written on bus 0xFF, 16-bit RIDs run out: VF 1 = 0xFF19 + 7 = 0xFF20, VF 2 would be
    # 0x1001F (doc §1: computed without wrap-around, so there is no VF 2, nor any VF at 0x001F).
    RouteConfig("stride255-ari-bus-ff", stride255(), True, 100,
                ((TYPE0, 0xFF20, 1), (TYPE1, 0x001F, None), (TYPE1, 0x0019, None)), bus=0xFF),
    # Non-ARI: VF 1 would be 0xFF19 + 0x100 = 0x10019: no VF at all.
    RouteConfig("stride6-nonari-bus-ff", stride255(), False, 100,
                ((TYPE1, 0x0019, None), (TYPE1, 0x001F, None)), bus=0xFF),
]}

#: SR-IOV states: (VF Enable, NumVFs). "disabled" has NumVFs = TotalVFs written but VF Enable 0.
STATES = ("disabled", "partial", "full")

#: Decoder sweeps that run by default; the rest are marked slow.
FAST_SWEEPS = {(name, "partial") for name in
               ("igb-nonari", "igb-ari", "nvme", "many-vfs-ari", "many-vfs-nonari",
                "stride3-ari", "stride5-nonari", "65535-vfs", "one-vf-stride0",
                "stride255-ari-bus-ff")} | {("igb-nonari", "disabled"), ("65535-vfs", "full")}


def state_values(cfg, state):
    """``(vf_enable, num_vfs)`` of ``state``."""
    total = cfg.params.total_vfs
    return {"disabled": (False, total), "partial": (True, cfg.partial),
            "full": (True, total)}[state]


def kind(type1):
    return "Type 1" if type1 else "Type 0"


# -- 1. exact_divider ------------------------------------------------------------------------


@pytest.mark.parametrize("stride", list(range(1, 41)) + [255, 256, 1000, 4095, 32768, 65535])
def test_exact_divider_for_all_16bit_dividends(stride):
    """The divisibility test and the quotient, against Python's % and // for every d."""
    shift, inverse, limit = exact_divider(stride, 16)
    bits = 16 - shift
    wrong = []
    for d in range(1 << 16):
        t = ((d >> shift) * inverse) % (1 << bits)
        exact = d % (1 << shift) == 0 and t <= limit
        if exact != (d % stride == 0) or (exact and t != d // stride):
            wrong.append(d)
    assert not wrong, f"stride {stride}: wrong for {len(wrong)} values of d, first {wrong[:5]}"


def test_exact_divider_literal_values():
    # 3 * 0xAAAB = 0x20001, 1 modulo 2**16; 6 = 2 * 3: one shift, then 3 modulo 2**15.
    assert exact_divider(3, 16) == (0, 0xAAAB, 0x5555)
    assert exact_divider(6, 16) == (1, 0x2AAB, 0x2AAA)
    assert exact_divider(8, 16) == (3, 1, 0x1FFF)


@pytest.mark.parametrize("stride", [0, -1, 1 << 16])
def test_exact_divider_rejects_out_of_range_stride(stride):
    with pytest.raises(ValueError, match="stride must be in 1..65535"):
        exact_divider(stride, 16)


def test_needs_divider():
    assert not needs_divider(igb())               # stride 2 both ways
    assert not needs_divider(one_vf_stride0())    # stride 0
    assert needs_divider(stride3_stride5())
    assert needs_divider(stride255())


# -- 2. RoutingIdDecoder, all 65536 Routing IDs -------------------------------------------------


def pf_w16(model, rid, offset, value):
    """A 16-bit Type 0 config write to the PF at byte ``offset``, target ``rid``."""
    lane = offset % 4
    return model.config(TYPE0, rid, offset // 4, 0b11 << lane, True, value << (8 * lane))


def configure_model(model, cfg, vf_enable, num_vfs):
    """Put the model in the state through config requests, as Linux would: W16 Control = ARI
    (sriov_init), W16 NumVFs, then W16 Control = VFE | MSE | ARI. The first write, a Type 0
    write to the PF, captures the PF's bus."""
    cap = cfg.params.sriov_cap_offset
    pf = cfg.pf_rid
    ari = CTRL_ARI if cfg.ari else 0
    ctrl = ari | (CTRL_VFE | CTRL_MSE if vf_enable else 0)
    assert pf_w16(model, pf, cap + SRIOV_CTRL, ari) == ("SC", 0)
    assert pf_w16(model, pf, cap + SRIOV_NUM_VF, num_vfs) == ("SC", 0)
    assert pf_w16(model, pf, cap + SRIOV_CTRL, ctrl) == ("SC", 0)
    # Read back through the same interface: the writes took effect.
    assert model.config(TYPE0, pf, (cap + SRIOV_CTRL) // 4, 0xF, False, 0) == ("SC", ctrl)
    status, value = model.config(TYPE0, pf, (cap + SRIOV_NUM_VF) // 4, 0xF, False, 0)
    assert (status, value & 0xFFFF) == ("SC", num_vfs)
    assert model.captured_bus == pf >> 8


_TARGET_NAMES = {Target.NONE.value: None, Target.PF.value: "PF", Target.VF.value: "VF"}
_TARGET_CODES = {None: Target.NONE.value, "PF": Target.PF.value, "VF": Target.VF.value}


def sweep_decoder(cfg, state):
    """Simulate the decoder alone over every (type, RID) and compare with the model."""
    p = cfg.params
    vf_enable, num_vfs = state_values(cfg, state)
    dut = RoutingIdDecoder(p)
    where = f"{cfg.name}/{state} (ARI {int(cfg.ari)}, VF Enable {int(vf_enable)}, NumVFs " \
            f"{num_vfs}, TotalVFs {p.total_vfs})"
    target_width = len(dut.target.as_value())
    seen = {}

    def make_testbench():
        model = EndpointModel(p)
        configure_model(model, cfg, vf_enable, num_vfs)
        # Expected (target code | vf << 2) per type and RID, from the reference model.
        expected = {}
        for type1 in (TYPE0, TYPE1):
            row = []
            for rid in range(1 << 16):
                name, n = model.decode(type1, rid)
                row.append(_TARGET_CODES[name] | n << target_width)
            expected[type1] = row
        seen.clear()

        async def testbench(ctx):
            # One Type 0 write to the PF: the captured bus is where the PF is.
            ctx.set(dut.type1, 0)
            ctx.set(dut.rid, cfg.pf_rid)
            ctx.set(dut.capture, 1)
            await ctx.tick()
            ctx.set(dut.capture, 0)
            assert ctx.get(dut.bus) == cfg.pf_rid >> 8, where
            ctx.set(dut.ari, cfg.ari)
            ctx.set(dut.vf_enable, vf_enable)
            ctx.set(dut.num_vfs, num_vfs)
            # vf_index rides above target and vf: it must be vf - 1 wherever a VF is decoded.
            result = Cat(dut.target.as_value(), dut.vf, dut.vf_index)
            mask = (1 << target_width) - 1
            code_bits = target_width + len(dut.vf)
            vf_code = _TARGET_CODES["VF"]
            for type1 in (TYPE0, TYPE1):
                ctx.set(dut.type1, type1)
                row = expected[type1]
                got_row = []
                bad_index = []
                for rid in range(1 << 16):
                    ctx.set(dut.rid, rid)
                    got = ctx.get(result)
                    code = got & ((1 << code_bits) - 1)
                    if code & mask == vf_code and got >> code_bits != (code >> target_width) - 1:
                        bad_index.append(rid)
                    got_row.append(code)
                assert not bad_index, (f"{where}: vf_index is not vf - 1 for {kind(type1)} "
                                       f"Routing IDs {[hex(r) for r in bad_index[:10]]}")
                if got_row != row:
                    bad = [rid for rid in range(1 << 16) if got_row[rid] != row[rid]]

                    def show(code):
                        name = _TARGET_NAMES.get(code & mask, f"?{code & mask}")
                        return f"{name} {code >> target_width}" if name == "VF" else \
                            f"{name} (vf {code >> target_width})"
                    lines = [f"  {kind(type1)} {rid:#06x} ({format_bdf(rid)}): design "
                             f"{show(got_row[rid])}, model {show(row[rid])}"
                             for rid in bad[:10]]
                    raise AssertionError(f"{where}: {len(bad)} {kind(type1)} Routing IDs "
                                         f"decode differently:\n" + "\n".join(lines))
                # Keep what the design decoded, for the model-independent checks below.
                seen[type1] = got_row
        return testbench

    simulate(dut, make_testbench, name=f"routing-sweep-{cfg.name}-{state}",
             waves_on_failure=False)
    return seen, target_width, vf_enable, num_vfs


def sweep_params():
    for name in CONFIGS:
        for state in STATES:
            marks = () if (name, state) in FAST_SWEEPS else (pytest.mark.slow,)
            yield pytest.param(name, state, id=f"{name}-{state}", marks=marks)


@pytest.mark.parametrize("name, state", list(sweep_params()))
def test_decoder_all_routing_ids_match_model(name, state):
    cfg = CONFIGS[name]
    seen, width, vf_enable, num_vfs = sweep_decoder(cfg, state)
    mask = (1 << width) - 1
    pf_bus, pf_fn = cfg.pf_rid >> 8, cfg.pf_rid & 0xFF

    # Model-independent facts. The PF: every Type 0 request with its devfn (any bus field),
    # never a Type 1 request.
    pf_hits = [rid for rid, code in enumerate(seen[TYPE0]) if code & mask == Target.PF.value]
    assert pf_hits == [bus << 8 | pf_fn for bus in range(256)]
    assert not [rid for rid, code in enumerate(seen[TYPE1]) if code & mask == Target.PF.value]
    # Each enabled VF is reached by 256 Type 0 RIDs (its devfn, any bus field) when it sits on
    # the PF's bus, else by exactly one Type 1 RID; a Type 1 request for the PF's bus reaches
    # nothing. No other VF number appears, nor one whose RID (spec §2 formula) is past 0xFFFF.
    hits = {}
    for type1 in (TYPE0, TYPE1):
        for rid, code in enumerate(seen[type1]):
            if code & mask == Target.VF.value:
                hits.setdefault(code >> width, []).append((type1, rid))
            else:
                assert code >> width == 0, f"{kind(type1)} {rid:#06x}: vf must be 0"
            if type1 and rid >> 8 == pf_bus:
                assert code == Target.NONE.value, f"Type 1 {rid:#06x} on the PF's bus"
    enabled = range(1, num_vfs + 1) if vf_enable else range(0)
    assert sorted(hits) == [n for n in enabled if vf_rid(cfg, n) <= 0xFFFF]
    for n, where in hits.items():
        if where[0][0] == TYPE0:
            devfn = where[0][1] & 0xFF
            assert where == [(TYPE0, bus << 8 | devfn) for bus in range(256)], f"VF {n}"
        else:
            assert len(where) == 1 and where[0][1] >> 8 != pf_bus, f"VF {n}: {where}"
    # Literal VF positions from the spec / the example's comments.
    for type1, rid, n in cfg.anchors:
        code = seen[type1][rid]
        if n is not None and n in enabled:
            assert code == Target.VF.value | n << width, f"{kind(type1)} {rid:#06x}: VF {n}"
        else:
            assert code == Target.NONE.value, f"{kind(type1)} {rid:#06x}: VF {n} not enabled"


# -- 3. The whole endpoint: sampled sweeps, spec §8 cases 8 and 21 ------------------------------


def vf_rid(cfg, n):
    """RID of VF n from the spec's formula (spec §2), without wrap-around: may exceed 0xFFFF."""
    p = cfg.params
    return cfg.pf_rid + p.first_vf_offset(cfg.ari) + (n - 1) * p.vf_stride(cfg.ari)


def sample_rids(cfg, num_vfs, seed):
    """RIDs near every boundary of the VF layout, bus boundaries, and random RIDs."""
    p = cfg.params
    points = [cfg.pf_rid, vf_rid(cfg, 1), vf_rid(cfg, max(1, num_vfs)),
              vf_rid(cfg, num_vfs + 1), vf_rid(cfg, p.total_vfs), vf_rid(cfg, p.total_vfs + 1)]
    points += [rid for _type1, rid, _n in cfg.anchors]
    rids = set()
    for point in points:
        rids.update(r for r in range(point - 4, point + 5) if 0 <= r <= 0xFFFF)
    first_bus = cfg.pf_rid >> 8
    last_bus = min(0xFF, vf_rid(cfg, p.total_vfs) >> 8)
    for bus in range(max(0, first_bus - 1), min(0xFF, last_bus + 1) + 1):
        for devfn in (0x00, 0x01, 0x02, 0x07, 0x08, p.pf_rid & 0xFF, 0xFE, 0xFF):
            rids.add(bus << 8 | devfn)
    rng = random.Random(seed)
    lo, hi = vf_rid(cfg, 1), min(0xFFFF, vf_rid(cfg, p.total_vfs))
    rids.update(rng.randint(lo, hi) for _ in range(250))       # in the VF range
    rids.update(rng.randint(0, 0xFFFF) for _ in range(250))    # anywhere
    return sorted(rids)


class Bench:
    """An endpoint, its model and a scoreboard in one testbench, with short-hand accesses."""

    def __init__(self, ctx, dut, model):
        self.ctx   = ctx
        self.dut   = dut
        self.model = model
        self.sb    = Scoreboard(EndpointDriver(ctx, dut), ModelEndpointPort(model))

    async def read(self, type1, rid, reg=0):
        cpl = await self.sb.config(type1, rid, reg, 0xF, False, 0)
        return cpl.status, cpl.data

    async def write(self, type1, rid, reg, data, be=0xF):
        cpl = await self.sb.config(type1, rid, reg, be, True, data)
        return cpl.status, cpl.data

    async def w16(self, rid, offset, value, type1=TYPE0):
        lane = offset % 4
        return await self.write(type1, rid, offset // 4, value << (8 * lane), 0b11 << lane)

    async def enable(self, params, rid, ari, num_vfs):
        """sriov_init's Control write, then what sriov_enable does: W16 NumVFs, read offset and
        stride, W16 Control = VFE | MSE (| ARI). Type 0 writes to ``rid`` (the PF)."""
        cap = params.sriov_cap_offset
        ctrl = CTRL_ARI if ari else 0
        assert await self.w16(rid, cap + SRIOV_CTRL, ctrl) == ("SC", 0)
        assert await self.w16(rid, cap + SRIOV_NUM_VF, num_vfs) == ("SC", 0)
        status, _ = await self.read(TYPE0, rid, (cap + SRIOV_OFFSET_STRIDE) // 4)
        assert status == "SC"
        assert await self.w16(rid, cap + SRIOV_CTRL, ctrl | CTRL_VFE | CTRL_MSE) == ("SC", 0)

    async def disable(self, params, rid, ari):
        cap = params.sriov_cap_offset
        assert await self.w16(rid, cap + SRIOV_CTRL, CTRL_ARI if ari else 0) == ("SC", 0)

    def bus(self):
        """The design's captured bus; it must equal the model's."""
        bus = self.ctx.get(self.dut.bus)
        assert bus == self.model.captured_bus, (f"captured bus: design {bus:#04x}, model "
                                                f"{self.model.captured_bus:#04x}")
        return bus


class NativeBench(Bench):
    """:class:`Bench` on the native backend (the exported Verilog of the same design under
    Verilator, docs/native-backend.md), for the sweeps whose Linux enumeration alone is 12000
    requests. Only the config channels are reached: :meth:`bus` is the model's captured bus, the
    one every completion was compared against; the design's shows in the routing itself (with
    ARI a Type 0 request reaches the VFs on the captured bus only, and a Type 1 request for that
    bus reaches nothing)."""

    def __init__(self, rtl, model):
        self.rtl   = rtl
        self.model = model
        self.sb    = Scoreboard(NativeConfigDriver(rtl), ModelEndpointPort(model))

    def bus(self):
        return self.model.captured_bus


def run_endpoint(params, body, name, native=None):
    """Simulate ``SriovEndpoint(params)`` with ``await body(bench)`` as the testbench; with
    ``native`` (the conftest fixture) run its exported Verilog on the native backend instead."""
    if native is not None:
        with native.model(params) as rtl:
            native.complete(body(NativeBench(rtl, EndpointModel(params))))
        return
    dut = SriovEndpoint(params)

    def make_testbench():
        model = EndpointModel(params)

        async def testbench(ctx):
            await body(Bench(ctx, dut, model))
        return testbench

    simulate(dut, make_testbench, name=name)


ENDPOINT_SWEEPS = [
    pytest.param("igb-nonari", id="igb-nonari"),
    pytest.param("igb-ari", id="igb-ari"),
    pytest.param("nvme", id="nvme"),
    # Strides that are not powers of two: the endpoint's three-stage decoder.
    pytest.param("stride3-ari", id="stride3-ari"),
    pytest.param("stride5-nonari", id="stride5-nonari"),
    pytest.param("stride255-ari", id="stride255-ari"),
    # Linux's sriov_init walks NumVFs from 4000 down to 1 (12000 requests): on the native
    # backend.
    pytest.param("many-vfs-ari", id="many-vfs-ari"),
    pytest.param("many-vfs-nonari", id="many-vfs-nonari"),
]

#: Sweeps run on the native backend.
NATIVE_SWEEPS = {"many-vfs-ari", "many-vfs-nonari"}


@pytest.mark.parametrize("name", ENDPOINT_SWEEPS)
def test_endpoint_sampled_sweep_after_linux_enable(name, request):
    cfg = CONFIGS[name]
    native = request.getfixturevalue("native") if name in NATIVE_SWEEPS else None
    p = cfg.params
    rids = sample_rids(cfg, cfg.partial, seed=sum(map(ord, name)))
    results = {}

    async def body(bench):
        root = RootPort(bench.sb, secondary_bus=p.pf_rid >> 8)
        host = LinuxHost(root, p.pf_rid, ari=cfg.ari)
        await host.enumerate()
        await host.sriov.enable(cfg.partial)
        assert bench.bus() == p.pf_rid >> 8
        for rid in rids:
            for type1 in (TYPE0, TYPE1):
                results[type1, rid] = await bench.read(type1, rid)
        assert bench.bus() == p.pf_rid >> 8

    run_endpoint(p, body, f"routing-endpoint-{name}", native=native)
    # Model-independent: the PF answers its ID at its devfn, the literal VF positions.
    ident = p.vendor_id | p.device_id << 16
    assert results[TYPE0, p.pf_rid] == ("SC", ident)
    assert results[TYPE1, p.pf_rid] == ("UR", 0)
    for type1, rid, n in cfg.anchors:
        expected = ("SC", VF_ID_DWORD) if n is not None and n <= cfg.partial else ("UR", 0)
        assert results[type1, rid] == expected, f"{kind(type1)} {format_bdf(rid)}: VF {n}"
    # Every sampled request was either an SC or a UR with data 0.
    assert all(status == "SC" or data == 0 for status, data in results.values())


def test_case21_vf_rid_carries_into_bus():
    """Spec §8 case 21: a VF RID beyond devfn 255 carries into the bus number. Such a VF is
    reached by a Type 1 request for that bus; a Type 0 request with the same devfn lands on the
    PF's bus, where it is another VF (or nothing), never that one."""
    p = many_vfs()      # PF 81:00.0, ARI offset 1 stride 1: VF n = 0x8100 + n

    async def body(bench):
        pf = p.pf_rid
        await bench.enable(p, pf, True, 4000)
        # VF 4000 = 0x90A0 (many-vfs.toml), on bus 0x90: reached by Type 1.
        assert await bench.read(TYPE1, 0x90A0) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x90A1) == ("UR", 0)
        # Give VF 4000 state of its own: Bus Master Enable.
        assert await bench.write(TYPE1, 0x90A0, 1, 0x0004, be=0b0001) == ("SC", 0)
        assert await bench.read(TYPE1, 0x90A0, 1) == ("SC", VF_COMMAND_RESET | 0x0004)
        # Type 0 with devfn 0xA0, whatever the bus field: target 81:A0, VF 0xA0 = 160, which
        # still has Bus Master Enable 0.
        for rid in (0x90A0, 0x81A0, 0x00A0):
            assert await bench.read(TYPE0, rid, 1) == ("SC", VF_COMMAND_RESET)
        # A Type 1 request for the PF's own bus reaches nothing.
        assert await bench.read(TYPE1, 0x81A0) == ("UR", 0)
        # The carry itself: VF 255 = 81:FF (Type 0), VF 256 = 82:00 (Type 1); a Type 0 request
        # with devfn 0x00 is the PF.
        assert await bench.read(TYPE0, 0x81FF) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x8200) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x81FF) == ("UR", 0)
        assert await bench.read(TYPE0, 0x8200) == ("SC", 0x4000_1234)
        assert await bench.read(TYPE1, 0x8200, 1) == ("SC", VF_COMMAND_RESET)
        assert bench.bus() == 0x81

    run_endpoint(p, body, "routing-case21-many-vfs")

    q = igb()           # PF 01:00.0, non-ARI offset 0x180 stride 2: VFs 02:10.0 .. 02:11.6

    async def body_igb(bench):
        await bench.enable(q, q.pf_rid, False, 8)
        assert await bench.read(TYPE1, 0x0280) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x028E) == ("SC", VF_ID_DWORD)
        # The same devfns as Type 0 requests are on bus 01, where there is no VF.
        for rid in (0x0280, 0x028E, 0x0180, 0x018E):
            assert await bench.read(TYPE0, rid) == ("UR", 0)
            assert await bench.write(TYPE0, rid, 1, 0x0004) == ("UR", 0)
        assert await bench.read(TYPE1, 0x0280, 1) == ("SC", VF_COMMAND_RESET)
        assert await bench.read(TYPE1, 0x028E, 1) == ("SC", VF_COMMAND_RESET)
        assert bench.bus() == 0x01

    run_endpoint(q, body_igb, "routing-case21-igb")


def test_case08_absent_or_disabled_vf_is_ur():
    """Spec §8 case 8: a config request to VF n > NumVFs, or to any VF while VF Enable is 0,
    reaches no function: UR (data 0), and a write changes nothing."""
    p = igb()           # ARI: VF n = 01:10.0 + 2(n-1), the spec's worked example
    pf = p.pf_rid
    cap = p.sriov_cap_offset
    vfs = [0x0180 + 2 * (n - 1) for n in range(1, 9)]

    async def poke(bench, rid):
        """Writes a live VF would take: Initiate FLR, then Bus Master Enable and Relaxed
        Ordering / No Snoop off (last, so that an FLR cannot hide them). All must be UR."""
        assert await bench.read(TYPE0, rid) == ("UR", 0)
        assert await bench.write(TYPE0, rid, 0x48 // 4, 0x0000_8000, be=0b0011) == ("UR", 0)
        assert await bench.write(TYPE0, rid, 1, 0x0000_0004) == ("UR", 0)
        assert await bench.write(TYPE0, rid, 0x48 // 4, 0x0000_0000, be=0b0011) == ("UR", 0)

    async def untouched(bench, rid):
        assert await bench.read(TYPE0, rid) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE0, rid, 1) == ("SC", VF_COMMAND_RESET)
        assert await bench.read(TYPE0, rid, 0x48 // 4) == ("SC", VF_DEVCTL_RESET)

    async def body(bench):
        # VF Enable 0 with NumVFs 8 written: every VF is absent.
        assert await bench.w16(pf, cap + SRIOV_CTRL, CTRL_ARI) == ("SC", 0)
        assert await bench.w16(pf, cap + SRIOV_NUM_VF, 8) == ("SC", 0)
        for rid in vfs:
            await poke(bench, rid)
            assert await bench.read(TYPE1, rid | 0x0200) == ("UR", 0)
        # Enabling now shows every VF at its reset state: the writes did nothing. (VF Enable has
        # never been 1, so no VF-state clear happened in between.)
        assert await bench.w16(pf, cap + SRIOV_CTRL, CTRL_ARI | CTRL_VFE | CTRL_MSE) == ("SC", 0)
        for rid in vfs:
            await untouched(bench, rid)

        # NumVFs 4 (the worked example): "any config request to 01:11.0 (would-be VF 5) -> UR".
        await bench.disable(p, pf, True)
        await bench.enable(p, pf, True, 4)
        for rid in vfs[4:]:
            await poke(bench, rid)
        # The enabled VFs and the PF did not see those writes.
        for rid in vfs[:4]:
            await untouched(bench, rid)
        assert await bench.read(TYPE0, pf, 1) == ("SC", 0x0010_0000)
        # A live VF does take the same write.
        assert await bench.write(TYPE0, vfs[3], 1, 0x0000_0004) == ("SC", 0)
        assert await bench.read(TYPE0, vfs[3], 1) == ("SC", VF_COMMAND_RESET | 0x0004)
        assert bench.bus() == 0x01

    run_endpoint(p, body, "routing-case08")


# -- 4. Bus-number capture -------------------------------------------------------------------


def test_pf_reached_before_any_write_on_bus_0():
    """After reset the captured bus is 0; a Type 0 request reaches the PF whatever its bus
    field says (the bus field of a Type 0 request is not compared), a Type 1 never does."""
    p = igb()
    ident = 0x10C9_8086

    async def body(bench):
        assert bench.bus() == 0
        for rid in (0x0000, 0x0100, 0x5500, 0xFF00):
            assert await bench.read(TYPE0, rid) == ("SC", ident)
        assert await bench.read(TYPE0, 0x0001) == ("UR", 0)
        # Type 1: for bus 0 (ours now) nothing; for the PF's devfn on another bus nothing.
        for rid in (0x0000, 0x0100, 0x5500):
            assert await bench.read(TYPE1, rid) == ("UR", 0)
        assert bench.bus() == 0       # reads never capture

    run_endpoint(p, body, "routing-bus-after-reset")


@pytest.mark.parametrize("ari", [False, True], ids=["nonari", "ari"])
def test_type0_write_to_bus5_moves_vf_rids(ari):
    p = igb()

    async def body(bench):
        await bench.enable(p, 0x0100, ari, 8)
        assert bench.bus() == 0x01
        if ari:     # VFs on the PF's bus: 01:10.0 .. 01:11.6
            assert await bench.read(TYPE0, 0x0180) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE1, 0x0680) == ("UR", 0)
        else:       # VFs on the next bus: 02:10.0 .. 02:11.6
            assert await bench.read(TYPE1, 0x0280) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE1, 0x068E) == ("UR", 0)
        # A Type 0 write reaching the PF with bus 5: Interrupt Line, harmless.
        assert await bench.write(TYPE0, 0x0500, 0x3C // 4, 0x0000_000B, be=0b0001) == ("SC", 0)
        assert bench.bus() == 0x05
        assert await bench.read(TYPE0, 0x0500, 0x3C // 4) == ("SC", 0x0000_010B)
        if ari:     # still devfn 0x80.., now 05:10.0 ..; bus 1 is no longer ours
            assert await bench.read(TYPE0, 0x0580) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE0, 0x058E) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE1, 0x0180) == ("UR", 0)
            assert await bench.read(TYPE1, 0x0580) == ("UR", 0)
        else:       # 06:10.0 .. 06:11.6; the old 02:10.0 is gone
            assert await bench.read(TYPE1, 0x0680) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE1, 0x068E) == ("SC", VF_ID_DWORD)
            assert await bench.read(TYPE1, 0x0280) == ("UR", 0)
            assert await bench.read(TYPE1, 0x028E) == ("UR", 0)
        # The PF: bus 1 now only as a Type 0 (bus field ignored); Type 1 to bus 1 is a foreign
        # bus whose devfn 00 is not a VF.
        assert await bench.read(TYPE0, 0x0100) == ("SC", 0x10C9_8086)
        assert await bench.read(TYPE1, 0x0100) == ("UR", 0)
        # A zero-byte-enable Type 0 write to the PF captures too (it reaches the PF).
        assert await bench.write(TYPE0, 0x0700, 0x3C // 4, 0xFFFF_FFFF, be=0) == ("SC", 0)
        assert bench.bus() == 0x07
        assert await bench.read(TYPE0, 0x0700, 0x3C // 4) == ("SC", 0x0000_010B)

    run_endpoint(p, body, f"routing-bus5-{'ari' if ari else 'nonari'}")


def test_type0_write_to_vf_does_not_capture():
    p = igb()

    async def body(bench):
        await bench.enable(p, 0x0100, True, 8)
        assert bench.bus() == 0x01
        # Type 0 write to VF 1 (devfn 0x80) with bus field 7: reaches VF 1, captures nothing.
        assert await bench.write(TYPE0, 0x0780, 1, 0x0000_0004, be=0b0001) == ("SC", 0)
        assert bench.bus() == 0x01
        assert await bench.read(TYPE0, 0x0180, 1) == ("SC", VF_COMMAND_RESET | 0x0004)
        # The VFs did not move: VF 8 is still 01:11.6, nothing appeared at 07:xx by Type 1.
        assert await bench.read(TYPE0, 0x018E) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x0780) == ("UR", 0)
        await bench.disable(p, 0x0100, True)
        # Non-ARI: VFs on bus 2, reached by Type 1; a Type 1 write to one captures nothing.
        await bench.enable(p, 0x0100, False, 8)
        assert await bench.write(TYPE1, 0x0282, 1, 0x0000_0004, be=0b0001) == ("SC", 0)
        assert bench.bus() == 0x01
        assert await bench.read(TYPE1, 0x0282, 1) == ("SC", VF_COMMAND_RESET | 0x0004)
        assert await bench.read(TYPE1, 0x0280) == ("SC", VF_ID_DWORD)

    run_endpoint(p, body, "routing-vf-write-no-capture")


def test_ur_writes_do_not_capture():
    p = igb()

    async def body(bench):
        # Bus 1 captured, VF Enable 0 (NumVFs 8 written, ARI).
        cap = p.sriov_cap_offset
        assert await bench.w16(0x0100, cap + SRIOV_CTRL, CTRL_ARI) == ("SC", 0)
        assert await bench.w16(0x0100, cap + SRIOV_NUM_VF, 8) == ("SC", 0)
        assert bench.bus() == 0x01
        ur_writes = [
            (TYPE0, 0x0703),    # no function at devfn 03
            (TYPE0, 0x0980),    # VF 1's devfn while VF Enable is 0
            (TYPE1, 0x0900),    # the PF's devfn, but Type 1: never the PF
            (TYPE1, 0x0100),    # Type 1 for our own bus
        ]
        for type1, rid in ur_writes:
            assert await bench.write(type1, rid, 0x3C // 4, 0x0000_0022, be=0b0001) \
                == ("UR", 0), f"{kind(type1)} {format_bdf(rid)}"
            assert bench.bus() == 0x01, f"{kind(type1)} {format_bdf(rid)}"
        # Enabled, a write to VF 9's devfn (beyond TotalVFs) and to a Type 1 RID past VF 8.
        assert await bench.w16(0x0100, cap + SRIOV_CTRL, CTRL_ARI | CTRL_VFE) == ("SC", 0)
        for type1, rid in [(TYPE0, 0x0990), (TYPE0, 0x0981), (TYPE1, 0x0290)]:
            assert await bench.write(type1, rid, 0x3C // 4, 0x0000_0022, be=0b0001) \
                == ("UR", 0), f"{kind(type1)} {format_bdf(rid)}"
            assert bench.bus() == 0x01
        # Nothing moved and nothing was written.
        assert await bench.read(TYPE0, 0x0180) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE0, 0x0100, 0x3C // 4) == ("SC", 0x0000_0100)

    run_endpoint(p, body, "routing-ur-write-no-capture")


def test_vf_rids_past_ffff_do_not_wrap():
    """Doc §1: VF RIDs are computed without wrap-around. With the PF written on bus 0xFF, VF n of
    many-vfs (ARI offset 1 stride 1) is 0xFF00 + n: VF 255 is FF:FF.7, VF 256 and up do not
    exist; in particular nothing answers on bus 00, where a 16-bit sum would put them."""
    p = many_vfs()

    async def body(bench):
        await bench.enable(p, 0xFF00, True, 4000)
        assert bench.bus() == 0xFF
        assert await bench.read(TYPE0, 0xFF00) == ("SC", 0x4000_1234)
        assert await bench.read(TYPE0, 0xFF01) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE0, 0xFFFF) == ("SC", VF_ID_DWORD)
        for rid in (0x0000, 0x0001, 0x00FF, 0x0100, 0x0F9F, 0x0FA0):
            assert await bench.read(TYPE1, rid) == ("UR", 0), format_bdf(rid)
            assert await bench.write(TYPE1, rid, 1, 0x0000_0004) == ("UR", 0), format_bdf(rid)
        # Written on bus 0x81 again, the VFs come back to 81:00.1 .. 90:14.0.
        assert await bench.write(TYPE0, 0x8100, 0x3C // 4, 0, be=0) == ("SC", 0)
        assert bench.bus() == 0x81
        assert await bench.read(TYPE1, 0x90A0) == ("SC", VF_ID_DWORD)
        assert await bench.read(TYPE1, 0x90A0, 1) == ("SC", VF_COMMAND_RESET)
        assert await bench.read(TYPE1, 0xFF01) == ("UR", 0)

    run_endpoint(p, body, "routing-no-wrap")
