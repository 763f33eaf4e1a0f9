"""Parameters of a multi-PF device: the rules between PFs (docs/multi-pf.md §2), the ``[[pf]]``
TOML form with ``like`` (§1) and the multi-PF example files (§12)."""

import copy
import itertools
import random
import re
import tomllib
from pathlib import Path

import pytest
from test_params import FULL_DOC, FULL_LEAVES, _kind, _replaced

from sriov_ep.params import (
    AcsParams,
    Bar,
    EndpointParams,
    ParamError,
    PfParams,
    first_unreachable_vf,
    load_params,
    params_from_dict,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MULTI = EXAMPLES / "multi-pf"


def bdf(rid):
    """lspci's BB:DD.F, written out here rather than taken from sriov_ep.params."""
    return f"{rid >> 8:02x}:{(rid >> 3) & 31:02x}.{rid & 7}"


def pf(fn, total_vfs=4, ari=None, non_ari=None, bus=1, **kw):
    """PF at function ``fn`` of ``bus``; ``ari`` / ``non_ari`` are (offset, stride) pairs. By
    default its VFs (up to 16) sit apart from any other PF's made here: ARI offset 0x40 + 15 fn,
    non-ARI 0x100 + 15 fn, stride 1, so VF 1 is PF 0's Routing ID + 0x40 (or 0x100) + 16 fn."""
    off_a, stride_a = ari or (0x40 + 15 * fn, 1)
    off_n, stride_n = non_ari or (0x100 + 15 * fn, 1)
    return PfParams(pf_rid=bus << 8 | fn, total_vfs=total_vfs, first_vf_offset_ari=off_a,
                    vf_stride_ari=stride_a, first_vf_offset_non_ari=off_n,
                    vf_stride_non_ari=stride_n, **kw)


def refuses(pfs, field, *phrases):
    with pytest.raises(ParamError) as info:
        EndpointParams(tuple(pfs))
    assert info.value.field == field, str(info.value)
    for phrase in phrases:
        assert phrase in info.value.rule, str(info.value)
    assert str(info.value).startswith(f"{field}: ")
    return info.value


# -- Rules 1-5: count, addresses, links ------------------------------------------------------------

def test_two_pfs_accepted():
    p = EndpointParams((pf(0), pf(1)))
    assert (p.num_pfs, p.vf_entries, p.bus, p.multi_function) == (2, 8, 1, True)
    assert all(x.acs == AcsParams() for x in p.pfs)


def test_sixteen_pfs_accepted_seventeen_refused():
    # One VF each, right after the last PF: PF k's VF at 0x100 + 17 + k (ARI), 0x200 + k.
    pfs = [pf(k, total_vfs=1, ari=(17, 1), non_ari=(0x100, 1)) for k in range(17)]
    assert EndpointParams(tuple(pfs[:16])).num_pfs == 16
    refuses(pfs, "pf", "at most 16 PFs (got 17)")


def test_two_pfs_at_one_function():
    refuses([pf(0), pf(1), pf(1)], "pf[2].address", "01:00.1 is also the address of pf[1]")


def test_pfs_not_in_ascending_order():
    refuses([pf(0), pf(2), pf(1)], "pf[2].address", "ascending function number",
            "01:00.1 comes after PF 01:00.2 (pf[1])")


def test_pfs_on_two_buses():
    refuses([pf(0), pf(1, bus=2)], "pf[1].address", "02:00.1 is not on bus 01",
            "share one bus")


def test_no_pf_at_function_0():
    refuses([pf(1), pf(2)], "pf[0].address", "one must be function 0", "01:00.1")


def test_single_pf_need_not_be_function_0():
    assert EndpointParams((pf(5),)).pf_rid == 0x0105


def test_function_dependency_link_names_a_pf():
    refuses([pf(0), pf(1, function_dependency_link=2)], "pf[1].sriov.function_dependency_link",
            "0x2 in PF 01:00.1 (pf[1]) is not the function number of a PF", "(0x0, 0x1)")


def test_function_dependency_link_to_another_pf_accepted():
    p = EndpointParams((pf(0, function_dependency_link=1), pf(1, function_dependency_link=0)))
    assert [x.function_dependency_link for x in p.pfs] == [1, 0]


def test_single_pf_link_rule_unchanged():
    with pytest.raises(ParamError, match=r"^sriov\.function_dependency_link: must be the PF's "
                                         r"own function number \(0x0\)"):
        EndpointParams((pf(0, function_dependency_link=1),))


def test_ari_capable_hierarchy_preserved_only_in_pf_0():
    assert EndpointParams((pf(0, ari_capable_hierarchy_preserved=True), pf(1))).pfs[0] \
        .ari_capable_hierarchy_preserved
    refuses([pf(0), pf(1), pf(2, ari_capable_hierarchy_preserved=True)],
            "pf[2].sriov.ari_capable_hierarchy_preserved",
            "only PF 01:00.0 (pf[0])", "PF 01:00.2 (pf[2]) that bit is RsvdP")


# -- Rule 7: no two functions at one Routing ID ----------------------------------------------------

def test_vf_on_a_later_pf():
    """PF 1's VF 3 (0x0101 + 2 + 2 = 0x0105) is PF 01:00.5 (pf[2])."""
    e = refuses([pf(0, total_vfs=8, ari=(0x10, 1)), pf(1, total_vfs=8, ari=(2, 1)),
                 pf(5, total_vfs=8, ari=(0x20, 1))],
                "pf[1].sriov.first_vf_offset.ari")
    assert e.rule.startswith("with ARI Capable Hierarchy set, VF 3 of PF 01:00.1 (01:00.5) is "
                             "PF 01:00.5 (pf[2], once NumVFs reaches 3 in pf[1])"), e.rule


def test_vf_on_a_vf_in_ari_only():
    # PF 0: 0x0110, 0x0112, 0x0114, 0x0116; PF 1: 0x0114, ...: PF 1's VF 1 is PF 0's VF 3.
    e = refuses([pf(0, ari=(0x10, 2)), pf(1, ari=(0x13, 1))], "pf[1].sriov.first_vf_offset.ari")
    assert "VF 1 of PF 01:00.1 (01:02.4) is VF 3 of PF 01:00.0 (once NumVFs reaches 1 in " \
           "pf[1] and 3 in pf[0])" in e.rule, e.rule


def test_vf_on_a_vf_in_non_ari_only():
    # Non-ARI PF 0: 0x0200..0x0203; PF 1 at offset 0xFF: 0x0200, its VF 1 on PF 0's VF 1.
    e = refuses([pf(0, non_ari=(0x100, 1)), pf(1, non_ari=(0xFF, 1))],
                "pf[1].sriov.first_vf_offset.non_ari")
    assert "ARI Capable Hierarchy clear, VF 1 of PF 01:00.1 (02:00.0) is VF 1 of PF 01:00.0" \
        in e.rule, e.rule


def test_clash_only_when_both_pfs_are_full():
    """PF 0's VF 4 and PF 1's VF 4 coincide and nothing else does: a host gets there only with
    NumVFs = TotalVFs in both, and it is refused all the same."""
    a = pf(0, ari=(0x10, 3))                    # 0x0110, 0x0113, 0x0116, 0x0119
    b = pf(1, ari=(0x0C, 4))                    # 0x010D, 0x0111, 0x0115, 0x0119
    e = refuses([a, b], "pf[1].sriov.first_vf_offset.ari")
    assert "VF 4 of PF 01:00.1 (01:03.1) is VF 4 of PF 01:00.0 (once NumVFs reaches 4 in " \
           "pf[1] and 4 in pf[0])" in e.rule, e.rule
    assert EndpointParams((a, b.replace(total_vfs=3))).vf_entries == 7
    assert EndpointParams((a.replace(total_vfs=3), b)).vf_entries == 7


def test_zero_stride_single_vf():
    refuses([pf(0, total_vfs=1, ari=(5, 0)), pf(1, total_vfs=1, ari=(4, 0))],
            "pf[1].sriov.first_vf_offset.ari", "VF 1 of PF 01:00.1 (01:00.5) is VF 1 of PF 01:00.0")


def test_last_vf_past_16_bits_names_the_pf_in_toml():
    doc = {"pf": [{"address": "01:00.0", "sriov": {"total_vfs": 2}},
                  {"like": 0, "address": "01:00.1",
                   "sriov": {"first_vf_offset": {"ari": 0xFFFF, "non_ari": 0x100}}}]}
    with pytest.raises(ParamError) as info:
        params_from_dict(doc)
    assert info.value.field == "pf[1].sriov.first_vf_offset.ari"
    assert "does not fit in 16 bits" in info.value.rule


# -- Rule 7 against brute force --------------------------------------------------------------------

def _random_device(rng):
    count = rng.randint(2, 4)
    functions = [0] + sorted(rng.sample(range(1, 12), count - 1))
    pfs = []
    for fn in functions:
        total = rng.randint(1, 4)
        pairs = []
        for _ in range(2):
            stride = rng.randint(0, 3) if total == 1 else rng.randint(1, 3)
            pairs.append((rng.randint(1, 20), stride))
        pfs.append(pf(fn, total_vfs=total, ari=pairs[0], non_ari=pairs[1]))
    return pfs


def _brute_force_clash(pfs):
    """The layouts in which some NumVFs tuple puts two functions at one Routing ID."""
    clashes = set()
    for layout in (0, 1):
        for numvfs in itertools.product(*(range(x.total_vfs + 1) for x in pfs)):
            rids = [x.pf_rid for x in pfs]
            for x, m in zip(pfs, numvfs, strict=True):
                off, stride = ((x.first_vf_offset_non_ari, x.vf_stride_non_ari),
                               (x.first_vf_offset_ari, x.vf_stride_ari))[layout]
                rids += [x.pf_rid + off + i * stride for i in range(m)]
            if len(set(rids)) != len(rids):
                clashes.add("ari" if layout else "non_ari")
                break
    return clashes


def test_rule_7_matches_brute_force():
    """200 random small devices (seeded): refused exactly when some NumVFs tuple, in some layout,
    puts two functions at one Routing ID; the refusal names a layout where that happens."""
    rng = random.Random(10)
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(200):
        pfs = _random_device(rng)
        clashes = _brute_force_clash(pfs)
        try:
            EndpointParams(tuple(pfs))
        except ParamError as exc:
            assert clashes, (pfs, str(exc))
            layout = exc.field.rsplit(".", 1)[1]
            # ARI is checked first: the error names it whenever it clashes.
            assert layout == ("ari" if "ari" in clashes else "non_ari"), str(exc)
            outcomes["refused"] += 1
        else:
            assert not clashes, pfs
            outcomes["accepted"] += 1
    assert min(outcomes.values()) >= 40, outcomes


# -- TOML: the [[pf]] form -------------------------------------------------------------------------

def _as_array(doc):
    """The ``[[pf]]`` rewrite of a single-PF document: one PF table holding its [pf.sriov]."""
    doc = copy.deepcopy(doc)
    doc["pf"] = [dict(doc.get("pf", {}), sriov=doc.pop("sriov"))]
    return doc


def _new_name(field):
    """Where the ``[[pf]]`` form reports what the single-PF form reports as ``field``."""
    if field.startswith("sriov"):
        return f"pf[0].{field}"
    if field.startswith("pf"):
        return f"pf[0]{field[2:]}"
    return field


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_legacy_example_equals_its_array_rewrite(path):
    doc = tomllib.loads(path.read_text())
    notes, array_notes = [], []
    assert params_from_dict(doc, notes=notes) == params_from_dict(_as_array(doc),
                                                                   notes=array_notes)
    assert notes == array_notes == []


def test_full_doc_equals_its_array_rewrite():
    assert params_from_dict(FULL_DOC) == params_from_dict(_as_array(FULL_DOC))


@pytest.mark.parametrize("path", sorted(FULL_LEAVES))
def test_array_form_names_fields_with_pf_index(path):
    """Each wrong-typed leaf of the full document, in its ``[[pf]]`` rewrite, is refused naming
    ``pf[0].<field>`` (or the same top-level key) with the same rule."""
    keys = FULL_LEAVES[path]
    _phrase, wrong_values = _kind(path, _get(FULL_DOC, keys))
    value = wrong_values[0]
    with pytest.raises(ParamError) as legacy:
        params_from_dict(_replaced(FULL_DOC, keys, value))
    with pytest.raises(ParamError) as array:
        params_from_dict(_as_array(_replaced(FULL_DOC, keys, value)))
    assert legacy.value.field == path
    assert array.value.field == _new_name(path)
    assert array.value.rule == legacy.value.rule


def _get(doc, keys):
    for key in keys:
        doc = doc[key]
    return doc


@pytest.mark.parametrize("legacy_field, changes", [
    ("sriov.vf_bar[0].size", {"sriov": {"vf_bar": [{"index": 0, "size": 24}]}}),
    ("pf.msix.table.bar", {"pf": {"msix": {"vectors": 1, "table": {"bar": 2, "offset": 0},
                                           "pba": {"bar": 0, "offset": 0x800}}}}),
    ("sriov.function_dependency_link", {"sriov": {"function_dependency_link": 3}}),
    ("sriov.first_vf_offset.non_ari", {"sriov": {"first_vf_offset": {"ari": 1,
                                                                     "non_ari": 0}}}),
    ("pf.address", {"pf": {"address": "01:20.0"}}),
])
def test_rule_errors_renamed_in_array_form(legacy_field, changes):
    doc = {"pf": {"address": "01:00.0", "bar": [{"index": 0, "size": "4K"}]},
           "sriov": {"total_vfs": 2}}
    for table, values in changes.items():
        doc[table].update(values)
    with pytest.raises(ParamError) as legacy:
        params_from_dict(doc)
    with pytest.raises(ParamError) as array:
        params_from_dict(_as_array(doc))
    assert legacy.value.field == legacy_field
    assert array.value.field == _new_name(legacy_field)
    assert array.value.rule == legacy.value.rule


TWO_PFS = """\
[[pf]]
address = "01:00.0"
vendor_id = 0x10EE
device_id = 0x9038
[pf.sriov]
total_vfs = 4
vf_device_id = 0x9039
first_vf_offset = { ari = 2, non_ari = 0x100 }
vf_stride = { ari = 2, non_ari = 2 }
[[pf.sriov.vf_bar]]
index = 0
size = "16K"
width = 64

[[pf]]
like = 0
address = "01:00.1"
"""


def test_like_copies_an_earlier_pf(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(TWO_PFS)
    notes = []
    p = load_params(path, notes=notes)
    assert notes == []
    a, b = p.pfs
    assert (b.pf_rid, b.vendor_id, b.total_vfs, b.vf_bars) == (0x0101, 0x10EE, 4, a.vf_bars)
    # Function Dependency Link: each PF's own default, not copied (pf[0] does not set it).
    assert (a.function_dependency_link, b.function_dependency_link) == (0, 1)
    assert [b.vf_rid(n, True) for n in (1, 4)] == [0x0103, 0x0109]   # between PF 0's VFs
    assert b == a.replace(pf_rid=0x0101)


def test_like_merges_tables_and_replaces_arrays():
    doc = {"pf": [
        {"address": "01:00.0", "pm": {"d1": True},
         "bar": [{"index": 0, "size": "4K"}, {"index": 2, "size": "8K"}],
         "sriov": {"total_vfs": 2, "vf_device_id": 7, "vf_stride": {"ari": 4, "non_ari": 4},
                   "first_vf_offset": {"ari": 0x10, "non_ari": 0x100}}},
        {"like": 0, "address": "01:00.1", "pm": {"d2": True}, "bar": [{"index": 1, "size": "64K"}],
         "sriov": {"first_vf_offset": {"ari": 0x20}}},
        {"like": 1, "address": "01:00.2", "sriov": {"total_vfs": 1,
                                                    "first_vf_offset": {"non_ari": 0x200}}},
    ]}
    original = copy.deepcopy(doc)
    a, b, c = params_from_dict(doc).pfs
    assert doc == original                              # the document is not changed
    assert (b.pm.d1, b.pm.d2) == (True, True)           # [pf.pm] merged key by key
    assert b.pf_bars == (Bar(1, 0x10000),)              # [[pf.bar]] replaced whole
    assert (b.first_vf_offset_ari, b.first_vf_offset_non_ari) == (0x20, 0x100)
    assert (b.total_vfs, b.vf_device_id) == (2, 7)
    # pf[2] is like pf[1] as resolved: its d2, its BARs, its ARI offset.
    assert (c.pm.d2, c.pf_bars, c.first_vf_offset_ari, c.first_vf_offset_non_ari,
            c.total_vfs) == (True, b.pf_bars, 0x20, 0x200, 1)


@pytest.mark.parametrize("items, field, phrase", [
    ([{"like": 0, "sriov": {}}], "pf[0].like", "pf[0] has no earlier PF to copy (got 0)"),
    ([{"sriov": {}}, {"like": 1, "address": "01:00.1"}], "pf[1].like",
     "must be the index of an earlier PF, 0..0 (got 1)"),
    ([{"sriov": {}}, {"like": -1}], "pf[1].like", "earlier PF, 0..0 (got -1)"),
    ([{"sriov": {}}, {"like": "0"}], "pf[1].like", "must be an integer (the index of an "
                                                   "earlier PF), not a string (\"0\")"),
    ([{"sriov": {}}, {"like": True}], "pf[1].like", "not a boolean (true)"),
])
def test_like_refusals(items, field, phrase):
    with pytest.raises(ParamError) as info:
        params_from_dict({"pf": items})
    assert info.value.field == field
    assert phrase in info.value.rule, info.value.rule


@pytest.mark.parametrize("doc, field, phrase", [
    ({"pf": [{"sriov": {}}], "sriov": {}}, "sriov", "with [[pf]], each PF has its own "
                                                     "[pf.sriov]"),
    ({"pf": []}, "pf", "at least one PF"),
    ({"pf": [{"sriov": {}}, 5]}, "pf[1]", "must be a table, not an integer (5)"),
    ({"pf": [{"address": "01:00.0"}]}, "pf[0].sriov", "a [pf.sriov] table is required"),
    ({"pf": [{"sriov": 5}]}, "pf[0].sriov", "is required, not an integer (5)"),
    ({"pf": [{"sriov": {"colour": 1}}]}, "pf[0].sriov.colour", "unknown key"),
    ({"pf": [{"colour": 1, "sriov": {}}]}, "pf[0].colour", "unknown key"),
    ({"pf": [{"sriov": {}}] * 17}, "pf", "at most 16 PFs (got 17)"),
    ({"pf": 5, "sriov": {}}, "pf", "must be a table ([pf]) or an array of tables ([[pf]])"),
    ({"pf": {"sriov": {}}}, "pf.sriov", "[pf.sriov] goes with an array of PFs"),
    ({"pf": [{"sriov": {}, "acs": 1}]}, "pf[0].acs", "must be a table, or true"),
    ({"pf": [{"sriov": {}, "acs": {"capability": 1}}]}, "pf[0].acs.capability",
     "not for an endpoint function"),
    ({"pf": [{"sriov": {}, "acs": {"egress": 1}}]}, "pf[0].acs.egress", "unknown key"),
])
def test_array_form_refusals(doc, field, phrase):
    with pytest.raises(ParamError) as info:
        params_from_dict(doc)
    assert info.value.field == field, str(info.value)
    assert phrase in info.value.rule, info.value.rule


def test_device_rule_errors_from_toml():
    doc = {"pf": [{"address": "01:00.0", "sriov": {}},
                  {"like": 0, "address": "01:00.0"}]}
    with pytest.raises(ParamError, match=re.escape("pf[1].address: 01:00.0 is also the address "
                                                   "of pf[0]")):
        params_from_dict(doc)
    doc["pf"][1]["address"] = "01:00.1"       # same offsets: PF 1's VFs on PF 0's, shifted by 1
    with pytest.raises(ParamError) as info:
        params_from_dict(doc)
    assert info.value.field == "pf[0].sriov.first_vf_offset.ari"     # PF 0's VF 1 is 01:00.1
    assert "VF 1 of PF 01:00.0 (01:00.1) is PF 01:00.1 (pf[1]" in info.value.rule


def test_acs_keys():
    doc = {"pf": [{"address": "01:00.0", "acs": {"capability": 0x4c, "offset": 0x400},
                   "sriov": {"total_vfs": 4, "vf_stride": {"ari": 4, "non_ari": 4},
                             "first_vf_offset": {"ari": 0x10, "non_ari": 0x100}}},
                  {"like": 0, "address": "01:00.1", "acs": False},
                  {"like": 0, "address": "01:00.2", "acs": True}]}
    a, b, c = params_from_dict(doc).pfs
    assert a.acs == AcsParams(0x4c, 0x400)
    assert (b.acs, c.acs) == (None, AcsParams())
    single = params_from_dict({"pf": [{"sriov": {}}]})
    assert single.acs is None                  # auto: no ACS for a single PF


def _notes(doc):
    notes = []
    params_from_dict(doc, notes=notes)
    return [(note.field, note.message) for note in notes]


def test_identity_notes_name_the_pf():
    doc = {"pf": [{"vendor_id": 0x10EE, "device_id": 1,
                   "sriov": {"total_vfs": 2, "vf_device_id": 3,
                             "vf_stride": {"ari": 4, "non_ari": 4},
                             "first_vf_offset": {"ari": 0x10, "non_ari": 0x100}}},
                  {"like": 0, "address": "01:00.1"},
                  {"address": "01:00.2", "device_id": 5,
                   "sriov": {"vf_device_id": 6,
                             "first_vf_offset": {"ari": 1, "non_ari": 0x180}}}]}
    notes = _notes(doc)
    # pf[1] has every identity field through like = 0; pf[2] lacks two.
    assert [field for field, _ in notes] == ["pf[2].vendor_id", "pf[2].sriov.total_vfs"]
    assert notes[0][1] == "not set: Vendor ID defaults to the placeholder 0x1234; set it for " \
                          "your device"


def test_acs_false_note_only_with_several_pfs():
    one = {"pf": [{"vendor_id": 2, "device_id": 1, "acs": False,
                   "sriov": {"total_vfs": 2, "vf_device_id": 3,
                             "vf_stride": {"ari": 4, "non_ari": 4},
                             "first_vf_offset": {"ari": 0x10, "non_ari": 0x100}}}]}
    assert _notes(one) == []
    two = copy.deepcopy(one)
    two["pf"].append({"like": 0, "address": "01:00.1", "acs": {}})
    notes = _notes(two)
    assert [field for field, _ in notes] == ["pf[0].acs"]
    assert "Linux then puts all PFs in one IOMMU group" in notes[0][1]


def test_pfs_above_function_7_are_noted():
    base = {"vendor_id": 2, "device_id": 1, "sriov": {"total_vfs": 1, "vf_device_id": 3,
                                                      "first_vf_offset": {"ari": 0x20,
                                                                          "non_ari": 0x100}}}
    doc = {"pf": [base, {"like": 0, "address": "01:01.0"}, {"like": 0, "address": "01:01.2"}]}
    notes = _notes(doc)
    assert [field for field, _ in notes] == ["pf[1].address"]
    assert "01:01.0 (pf[1]), 01:01.2 (pf[2])" in notes[0][1]
    assert "only an ARI hierarchy reaches them" in notes[0][1]
    doc["pf"][1:] = [{"like": 0, "address": "01:00.7"}]
    assert _notes(doc) == []


# -- Reachability per PF ---------------------------------------------------------------------------

def test_first_unreachable_vf_per_pf():
    # Non-ARI: PF 0's VFs 01:00.2 .. 01:00.5; PF 1's 01:00.6, 01:00.7, 01:01.0 (VF 3), ...
    p = EndpointParams((pf(0, non_ari=(2, 1)), pf(1, non_ari=(5, 1))))
    assert first_unreachable_vf(p) is None
    assert first_unreachable_vf(p, pf=0) is None
    assert first_unreachable_vf(p, pf=1) == 3
    assert first_unreachable_vf(p, pf=1, ari=True) is None
    assert first_unreachable_vf(p.pfs[1]) == 3
    with pytest.raises(ValueError):
        first_unreachable_vf(p.pfs[1], pf=1)
    single = EndpointParams(total_vfs=8, first_vf_offset_non_ari=1)
    assert first_unreachable_vf(single) == first_unreachable_vf(single.pfs[0]) == 8


# -- Example files ---------------------------------------------------------------------------------

MULTI_NAMES = ["igb-82576-dual", "quad-pf", "cpm5-16pf"]

#: "#   ARI      PF 01:00.0: VF1 0x0180 = 01:10.0, VF8 0x018E = 01:11.6"
_LAYOUT_RE = re.compile(r"^#\s+(ARI|non-ARI)\s+PF ([0-9a-f]{2}:[0-9a-f]{2}\.[0-7]): "
                        r"VF1 (0x[0-9A-Fa-f]{4}) = (\S+), VF(\d+) (0x[0-9A-Fa-f]{4}) = (\S+)$",
                        re.MULTILINE)


def test_multi_pf_examples_exist():
    assert sorted(path.stem for path in MULTI.glob("*.toml")) == sorted(MULTI_NAMES)


@pytest.mark.parametrize("name, pfs, total_vfs, ari_only", [
    ("igb-82576-dual", 2, 8, False),
    ("quad-pf", 4, 63, False),
    ("cpm5-16pf", 16, 255, True),
])
def test_multi_pf_example_loads(name, pfs, total_vfs, ari_only):
    notes = []
    p = load_params(MULTI / f"{name}.toml", notes=notes)
    assert p.num_pfs == pfs
    assert [x.pf_rid for x in p.pfs] == [0x0100 + k for k in range(pfs)]
    assert all(x.total_vfs == total_vfs for x in p.pfs)
    assert p.vf_entries == pfs * total_vfs
    assert p.ari_only == ari_only
    assert [note.field for note in notes] == (["pf[8].address"] if ari_only else [])
    assert all(x.acs == AcsParams() for x in p.pfs)
    assert all(x.function_dependency_link == k for k, x in enumerate(p.pfs))


@pytest.mark.parametrize("name", MULTI_NAMES)
def test_multi_pf_example_layout_comments(name):
    """The first and last VF of each PF in both layouts, as the file's comment writes them,
    follow from the PF's Routing ID, offset and stride (PCIe Base §9.3.3.9-10); and every
    function of the device has a Routing ID of its own at NumVFs = TotalVFs."""
    path = MULTI / f"{name}.toml"
    p = load_params(path)
    lines = _LAYOUT_RE.findall(path.read_text())
    assert len(lines) == 2 * p.num_pfs
    seen = set()
    for layout, pf_bdf, first, first_bdf, last_n, last, last_bdf in lines:
        ari = layout == "ARI"
        k = [bdf(x.pf_rid) for x in p.pfs].index(pf_bdf)
        x = p.pfs[k]
        assert (k, ari) not in seen
        seen.add((k, ari))
        off, stride = (x.first_vf_offset_ari, x.vf_stride_ari) if ari else \
            (x.first_vf_offset_non_ari, x.vf_stride_non_ari)
        assert int(last_n) == x.total_vfs
        assert int(first, 16) == x.pf_rid + off
        assert int(last, 16) == x.pf_rid + off + (x.total_vfs - 1) * stride
        assert (first_bdf, last_bdf) == (bdf(int(first, 16)), bdf(int(last, 16)))
    for ari in (False, True):
        rids = [x.pf_rid for x in p.pfs]
        for x in p.pfs:
            off, stride = (x.first_vf_offset_ari, x.vf_stride_ari) if ari else \
                (x.first_vf_offset_non_ari, x.vf_stride_non_ari)
            rids += [x.pf_rid + off + i * stride for i in range(x.total_vfs)]
        assert len(set(rids)) == len(rids) and max(rids) <= 0xFFFF


def test_dual_82576_literals():
    p = load_params(MULTI / "igb-82576-dual.toml")
    a, b = p.pfs
    assert (a.vendor_id, a.device_id, a.vf_device_id, a.revision_id) == (0x8086, 0x10C9,
                                                                         0x10CA, 0x01)
    assert (a.msix.vectors, a.vf_msix.vectors) == (10, 3)
    assert (a.first_vf_offset_ari, a.vf_stride_ari, a.first_vf_offset_non_ari,
            a.vf_stride_non_ari) == (0x80, 2, 0x180, 2)
    assert b == a.replace(pf_rid=0x0101)
    # Interleaved: PF 0's VFs at even functions from 01:10.0, PF 1's at the odd ones.
    assert [b.vf_rid(n, True) - a.vf_rid(n, True) for n in range(1, 9)] == [1] * 8
    # The single-PF example is PF 0 of the dual one, but for its explicit FDL and ACS.
    single = load_params(EXAMPLES / "igb-82576.toml")
    assert single.pfs[0] == a.replace(acs=None)


@pytest.mark.parametrize("name, ari, first, last", [
    ("quad-pf", True, 0x0104, 0x01FF),      # functions 4..255 of bus 01
    ("quad-pf", False, 0x0200, 0x02FB),
    ("cpm5-16pf", True, 0x0110, 0x10FF),    # 16 buses
    ("cpm5-16pf", False, 0x0200, 0x11EF),
])
def test_contiguous_examples_fill_one_block(name, ari, first, last):
    p = load_params(MULTI / f"{name}.toml")
    rids = sorted(x.vf_rid(n, ari) for x in p.pfs for n in range(1, x.total_vfs + 1))
    assert rids == list(range(first, last + 1))


def test_cpm5_small_vf_resources():
    p = load_params(MULTI / "cpm5-16pf.toml")
    assert all(x.vf_bars == (Bar(0, 4096, True, True),) and x.vf_msix.vectors == 2
               for x in p.pfs)
