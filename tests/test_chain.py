"""Placement of capability structures (sriov_ep.caps.chain) and the parameters that place them.

Expected offsets are literal numbers worked out by hand from the placement rule in
``docs/endpoint-behaviour.md`` §6, not read back from the RTL's tables.
"""

import pytest

from sriov_ep.caps import pf_chain, vf_chain
from sriov_ep.caps.chain import Kind, PlacementError, Structure, place
from sriov_ep.params import (
    AcsParams,
    Bar,
    EndpointParams,
    MsixParams,
    ParamError,
    PfParams,
    PmParams,
    UserCap,
    params_from_dict,
)


def offsets(chain):
    return [(e.name, e.offset, e.placed.next_offset) for e in chain]


def igb_like(**changes):
    values = dict(
        pf_bars=(Bar(0, 0x20000), Bar(1, 0x20000), Bar(3, 0x4000)),
        vf_bars=(Bar(0, 0x4000, True, True), Bar(3, 0x4000, True, True)),
        ari_cap_offset=0x100, sriov_cap_offset=0x160,
        msix=MsixParams(vectors=10, table_bar=3, table_offset=0, pba_bar=3, pba_offset=0x2000),
        vf_pm=PmParams(),
        vf_msix=MsixParams(vectors=3, table_bar=3, table_offset=0, pba_bar=3,
                           pba_offset=0x2000))
    values.update(changes)
    return EndpointParams(**values)


def test_default_chain():
    p = EndpointParams()
    assert offsets(pf_chain(p)) == [("header", 0x00, 0), ("pcie", 0x40, 0x7C), ("pm", 0x7C, 0),
                                    ("ari", 0x100, 0x140), ("sriov", 0x140, 0)]
    assert offsets(vf_chain(p)) == [("header", 0x00, 0), ("pcie", 0x40, 0), ("ari", 0x100, 0)]


def test_igb_like_chain_with_user_caps():
    p = igb_like(user_caps=(UserCap("dsn", "extended", 12, cap_id=3),),
                 vf_user_caps=(UserCap("vsec", "extended", 0x18, cap_id=0xB),
                               UserCap("vendor", "legacy", 8, cap_id=0x09)))
    assert offsets(pf_chain(p)) == [
        ("header", 0x00, 0), ("pcie", 0x40, 0x7C), ("pm", 0x7C, 0x84), ("msix", 0x84, 0),
        ("ari", 0x100, 0x160), ("sriov", 0x160, 0x1A0), ("dsn", 0x1A0, 0)]
    assert offsets(vf_chain(p)) == [
        ("header", 0x00, 0), ("pcie", 0x40, 0x7C), ("pm", 0x7C, 0x84), ("msix", 0x84, 0x90),
        ("vendor", 0x90, 0), ("ari", 0x100, 0x108), ("vsec", 0x108, 0)]


def test_fixed_offsets_are_linked_in_ascending_order():
    p = igb_like(pm=PmParams(offset=0xC0), msix=MsixParams(10, 3, 0, 3, 0x2000, offset=0xA0))
    assert offsets(pf_chain(p))[:4] == [("header", 0, 0), ("pcie", 0x40, 0xA0),
                                        ("msix", 0xA0, 0xC0), ("pm", 0xC0, 0)]


def test_placed_structures_skip_fixed_ones():
    got = place([Structure("a", Kind.LEGACY, 8, 0x40, 1),
                 Structure("fixed", Kind.LEGACY, 8, 0x48, 2),
                 Structure("b", Kind.LEGACY, 12, None, 3),
                 Structure("r", Kind.RANGE, 16, 0x200)])
    assert [(pl.name, pl.offset, pl.next_offset) for pl in got] == [
        ("a", 0x40, 0x48), ("fixed", 0x48, 0x50), ("b", 0x50, 0), ("r", 0x200, 0)]


@pytest.mark.parametrize("structures, name, rule", [
    ([Structure("a", Kind.LEGACY, 8, 0x40), Structure("b", Kind.LEGACY, 8, 0x44)],
     "b", "overlaps a"),
    ([Structure("a", Kind.LEGACY, 8, 0x42)], "a", "dword-aligned"),
    ([Structure("a", Kind.LEGACY, 8, 0xFC)], "a", "must lie in 0x40..0xff"),
    ([Structure("a", Kind.EXTENDED, 8, 0x200)], "a", "starts at 0x100"),
    ([Structure("a", Kind.LEGACY, 6)], "a", "multiple of 4"),
    ([Structure("a", Kind.LEGACY, 0xC0), Structure("b", Kind.LEGACY, 4)], "b", "no room"),
])
def test_refused_placements_name_the_structure(structures, name, rule):
    with pytest.raises(PlacementError, match=rule) as info:
        place(structures)
    assert info.value.name == name


def test_params_refuse_overlap_naming_the_field():
    with pytest.raises(ParamError, match=r"pf.pm.offset: pm capability: 0x44..0x4b overlaps "
                                         r"pcie"):
        EndpointParams(pm=PmParams(offset=0x44))
    with pytest.raises(ParamError, match=r"pf.capability\[0\]: dsn capability: .*overlaps sriov"):
        EndpointParams(user_caps=(UserCap("dsn", "extended", 12, cap_id=3, offset=0x140),))


@pytest.mark.parametrize("changes, field, rule", [
    (dict(msix=MsixParams(65, 3, 0, 3, 0x2000)), "pf.msix.vectors", "0x1..0x40"),
    (dict(msix=MsixParams(10, 2, 0, 3, 0x2000)), "pf.msix.table_bar", "no BAR"),
    (dict(msix=MsixParams(10, 3, 4, 3, 0x2000)), "pf.msix.table_offset", "QWORD-aligned"),
    (dict(msix=MsixParams(10, 3, 0, 3, 0x80)), "pf.msix.pba_offset", "overlaps the table"),
    (dict(msix=MsixParams(10, 3, 0x3FF8, 3, 0x2000)), "pf.msix.table_offset", "does not fit"),
    (dict(vf_msix=MsixParams(3, 1, 0, 3, 0x2000)), "sriov.vf_msix.table_bar", "no VF BAR"),
    (dict(vf_msix=MsixParams(5, 3, 0, 3, 0x2000, max_vectors=4)), "sriov.vf_msix.vectors",
     "must not exceed max_vectors"),
    (dict(user_caps=(UserCap("1x", "extended", 12),)), "pf.capability[0].name", "letters"),
    (dict(user_caps=(UserCap("r", "range", 12),)), "pf.capability[0].offset", "fixed offset"),
    (dict(vf_pm=PmParams(d1="yes")), "sriov.vf_pm.d1", "true or false"),
])
def test_capability_parameters_refused(changes, field, rule):
    with pytest.raises(ParamError) as info:
        igb_like(**changes)
    assert info.value.field == field
    assert rule in info.value.rule


def test_toml_tables():
    doc = {
        "pf": {"bar": [{"index": 3, "size": "16K"}], "pm": {"no_soft_reset": True},
               "msix": {"vectors": 4, "table": {"bar": 3, "offset": 0},
                        "pba": {"bar": 3, "offset": 0x2000}},
               "capability": [{"name": "dsn", "kind": "extended", "id": 3, "size": 12}]},
        "sriov": {"total_vfs": 4, "vf_pm": True,
                  "vf_bar": [{"index": 0, "size": "16K", "width": 64}],
                  "vf_msix": {"vectors": 2, "max_vectors": 4, "table": {"bar": 0, "offset": 0},
                              "pba": {"bar": 0, "offset": 0x1000}}},
        "user_cfg_timeout": 64,
    }
    p = params_from_dict(doc)
    assert p.pm == PmParams(no_soft_reset=True)
    assert p.msix == MsixParams(4, 3, 0, 3, 0x2000)
    assert p.vf_msix == MsixParams(2, 0, 0, 0, 0x1000, max_vectors=4)
    assert p.vf_pm == PmParams() and p.user_cfg_timeout == 64
    assert p.user_caps == (UserCap("dsn", "extended", 12, cap_id=3),)
    doc["pf"]["pm"] = False
    assert params_from_dict(doc).pm is None
    doc["pf"]["msix"] = {"vectors": 4, "table": {"bar": 3}, "pba": {"bar": 3, "offset": 0}}
    with pytest.raises(ParamError, match=r"pf.msix.table.offset: is required"):
        params_from_dict(doc)
    doc["pf"]["msix"] = {"vectors": 4, "tabel": {}}
    with pytest.raises(ParamError, match=r"pf.msix.tabel: unknown key"):
        params_from_dict(doc)


# -- Chains of one PF of a device (docs/multi-pf.md §3) --------------------------------------------

def two_pfs(**changes):
    """PFs at 01:00.0 and 01:00.1, 4 VFs each at functions 2..9 (ARI) or 02:00.0.. (non-ARI)."""
    return EndpointParams(pfs=(
        PfParams(pf_rid=0x100, total_vfs=4, first_vf_offset_ari=2,
                 first_vf_offset_non_ari=0x100, **changes),
        PfParams(pf_rid=0x101, total_vfs=4, first_vf_offset_ari=5,
                 first_vf_offset_non_ari=0x103, **changes)))


def test_single_pf_forms_agree():
    p = igb_like()
    for chain in (pf_chain, vf_chain):
        one, indexed, lone = chain(p), chain(p, 0), chain(p.pfs[0])
        assert offsets(one) == offsets(indexed) == offsets(lone)
        assert [e.regmap for e in one] == [e.regmap for e in indexed] == [e.regmap for e in lone]


def test_acs_is_listed_after_sriov_and_before_user_caps():
    p = two_pfs(user_caps=(UserCap("dsn", "extended", 12, cap_id=3),))
    for k in range(2):
        assert offsets(pf_chain(p, k))[3:] == [
            ("ari", 0x100, 0x140), ("sriov", 0x140, 0x180), ("acs", 0x180, 0x188),
            ("dsn", 0x188, 0)]
        assert offsets(vf_chain(p, k)) == [("header", 0x00, 0), ("pcie", 0x40, 0),
                                           ("ari", 0x100, 0)]


def test_chain_of_a_pf_index_is_checked():
    p = two_pfs()
    with pytest.raises(IndexError, match="PFs 0..1"):
        pf_chain(p, 2)
    with pytest.raises(TypeError, match="2 PFs"):
        vf_chain(p)
    with pytest.raises(TypeError, match="EndpointParams"):
        pf_chain(p.pfs[1], 1)


def test_params_refuse_acs_overlap_naming_the_field():
    with pytest.raises(ParamError, match=r"pf.acs.offset: acs capability: 0x160..0x167 overlaps "
                                         r"sriov"):
        PfParams(acs=AcsParams(offset=0x160))
