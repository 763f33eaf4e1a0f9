"""EndpointParams, Bar and the TOML loader: every rule refuses a bad value with a message that
names the field (as spelled in TOML) and the rule."""

import copy
import datetime
import math
import re
import warnings
from pathlib import Path

import pytest

from sriov_ep.params import (
    MANDATORY_PAGE_SIZES,
    Bar,
    ConfigNote,
    EndpointParams,
    ParamError,
    first_unreachable_vf,
    format_bdf,
    load_params,
    params_from_dict,
    parse_bdf,
)
from sriov_tb.cli import main as cli_main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# A valid TOML document that the file-level tests below extend.
MINIMAL_TOML = """\
[pf]
address = "01:00.0"

[sriov]
total_vfs = 4
"""


def refuses(field, phrase, **kwargs):
    """Assert that ``EndpointParams(**kwargs)`` raises a ParamError naming ``field`` and whose
    rule contains ``phrase``."""
    with pytest.raises(ParamError) as info:
        EndpointParams(**kwargs)
    check_error(info.value, field, phrase)
    return info.value


def check_error(exc, field, phrase, source=None):
    assert exc.field == field
    assert phrase in exc.rule, exc.rule
    prefix = f"{source}: " if source else ""
    assert str(exc).startswith(f"{prefix}{field}: "), str(exc)
    assert phrase in str(exc)


def write_toml(tmp_path, text, name="endpoint.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def toml_refuses(tmp_path, text, field, phrase):
    path = write_toml(tmp_path, text)
    with pytest.raises(ParamError) as info:
        load_params(path)
    check_error(info.value, field, phrase, source=str(path))
    return info.value


# -- Defaults and derived values ----------------------------------------------------------------

def test_defaults_are_valid():
    p = EndpointParams()
    assert p.initial_vfs == p.total_vfs == 8
    assert p.function_dependency_link == 0
    assert p.supported_page_sizes == MANDATORY_PAGE_SIZES == 0x553


def test_initial_vfs_defaults_to_total_vfs():
    assert EndpointParams(total_vfs=100).initial_vfs == 100


def test_fdl_defaults_to_own_function_number():
    assert EndpointParams(pf_rid=0x0103).function_dependency_link == 3
    # An ARI function number uses all eight low bits.
    assert EndpointParams(pf_rid=0x01A5).function_dependency_link == 0xA5


def test_bar_lists_become_tuples():
    p = EndpointParams(pf_bars=[Bar(0, 4096)], vf_bars=[Bar(0, 4096)])
    assert p.pf_bars == (Bar(0, 4096),)
    assert p.vf_bars == (Bar(0, 4096),)


def test_derived_accessors():
    p = EndpointParams(first_vf_offset_ari=0x80, vf_stride_ari=2,
                       first_vf_offset_non_ari=0x180, vf_stride_non_ari=4,
                       vf_bars=(Bar(0, 0x4000, is_64bit=True, prefetchable=True),
                                Bar(3, 0x1000)))
    assert (p.first_vf_offset(True), p.vf_stride(True)) == (0x80, 2)
    assert (p.first_vf_offset(False), p.vf_stride(False)) == (0x180, 4)
    assert p.vf_bar(0).size == 0x4000
    assert p.vf_bar(1) is None          # the upper half of BAR0 is not a BAR of its own
    assert p.vf_bar(3).size == 0x1000
    assert p.vf_bar(5) is None


@pytest.mark.parametrize("total_vfs, width", [(1, 1), (2, 2), (7, 3), (8, 4), (255, 8),
                                              (256, 9), (4000, 12), (0xffff, 16)])
def test_vf_number_width(total_vfs, width):
    p = EndpointParams(pf_rid=0x0000, total_vfs=total_vfs, first_vf_offset_non_ari=1)
    assert p.vf_number_width == width


def test_bar_properties():
    bar64 = Bar(2, 0x10000, is_64bit=True, prefetchable=True)
    assert bar64.slots == (2, 3)
    assert bar64.type_bits == 0b1100
    assert bar64.size_log2 == 16
    bar32 = Bar(5, 16)
    assert bar32.slots == (5,)
    assert bar32.type_bits == 0
    assert bar32.size_log2 == 4
    assert Bar(0, 1 << 20, prefetchable=True).type_bits == 0b1000


def test_replace_revalidates():
    p = EndpointParams()
    assert p.replace(vf_device_id=0x10CA).vf_device_id == 0x10CA
    with pytest.raises(ParamError, match=r"^sriov\.total_vfs: must be in 0x1\.\.0xffff"):
        p.replace(total_vfs=0)


def test_replace_lets_defaulted_fields_follow():
    p = EndpointParams()
    q = p.replace(total_vfs=16)
    assert q.total_vfs == q.initial_vfs == 16
    r = p.replace(pf_rid=0x0102)
    assert r.function_dependency_link == 2
    # Explicitly changed fields are still checked against each other.
    with pytest.raises(ParamError, match="InitialVFs must equal TotalVFs"):
        p.replace(total_vfs=16, initial_vfs=8)


def test_param_error_is_value_error_and_keeps_parts():
    exc = ParamError("sriov.total_vfs", "some rule")
    assert isinstance(exc, ValueError)
    assert str(exc) == "sriov.total_vfs: some rule"
    located = exc.with_source("x.toml")
    assert (located.field, located.rule, located.source) == ("sriov.total_vfs", "some rule",
                                                             "x.toml")
    assert str(located) == "x.toml: sriov.total_vfs: some rule"


# -- PF identity ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0x0000])
def test_vendor_id_zero(value):
    refuses("pf.vendor_id", "is not a valid Vendor ID", vendor_id=value)


@pytest.mark.parametrize("value", [0xFFFF, 0x10000, -1])
def test_vendor_id_out_of_range(value):
    refuses("pf.vendor_id", "must be in 0x0..0xfffe", vendor_id=value)


@pytest.mark.parametrize("value", ["0x8086", 0x8086 * 1.0, True, None])
def test_vendor_id_not_an_integer(value):
    refuses("pf.vendor_id", "must be an integer", vendor_id=value)


@pytest.mark.parametrize("kwarg, field, limit", [
    ("device_id", "pf.device_id", 0xffff),
    ("revision_id", "pf.revision_id", 0xff),
    ("class_code", "pf.class_code", 0xff_ffff),
    ("subsystem_vendor_id", "pf.subsystem_vendor_id", 0xffff),
    ("subsystem_id", "pf.subsystem_id", 0xffff),
    ("pf_rid", "pf.address", 0xffff),
    ("vf_device_id", "sriov.vf_device_id", 0xffff),
])
def test_identity_field_ranges(kwarg, field, limit):
    if kwarg != "pf_rid":       # a PF at 0xffff leaves no routing ID for its VFs
        EndpointParams(**{kwarg: limit})
    refuses(field, f"must be in 0x0..{limit:#x}", **{kwarg: limit + 1})
    refuses(field, f"must be in 0x0..{limit:#x}", **{kwarg: -1})
    refuses(field, "must be an integer", **{kwarg: str(limit)})


def test_pf_rid_not_an_integer_is_a_param_error():
    # Not a TypeError from deriving the Function Dependency Link.
    refuses("pf.address", "must be an integer", pf_rid="01:00.0")
    refuses("pf.address", "must be an integer", pf_rid=256.0)


# -- BARs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, kwarg", [("pf.bar", "pf_bars"), ("sriov.vf_bar", "vf_bars")])
def test_64bit_bar_in_slot_5(prefix, kwarg):
    refuses(f"{prefix}[0].index", "a 64-bit BAR cannot be in slot 5",
            **{kwarg: (Bar(5, 4096, is_64bit=True),)})
    EndpointParams(**{kwarg: (Bar(4, 4096), Bar(5, 4096))})     # a 32-bit BAR in slot 5 is fine
    EndpointParams(**{kwarg: (Bar(4, 4096, is_64bit=True),)})


@pytest.mark.parametrize("prefix, kwarg", [("pf.bar", "pf_bars"), ("sriov.vf_bar", "vf_bars")])
def test_overlapping_bars(prefix, kwarg):
    exc = refuses(f"{prefix}[1].index", "BAR slot 1 is already used by",
                  **{kwarg: (Bar(0, 4096, is_64bit=True), Bar(1, 4096))})
    assert f"{prefix}[0]" in exc.rule
    refuses(f"{prefix}[1].index", "BAR slot 2 is already used by",
            **{kwarg: (Bar(2, 4096), Bar(2, 8192))})
    refuses(f"{prefix}[1].index", "BAR slot 3 is already used by",
            **{kwarg: (Bar(2, 4096, is_64bit=True), Bar(3, 4096, is_64bit=True))})
    EndpointParams(**{kwarg: (Bar(0, 4096, is_64bit=True), Bar(2, 4096))})


@pytest.mark.parametrize("prefix, kwarg", [("pf.bar", "pf_bars"), ("sriov.vf_bar", "vf_bars")])
def test_bars_out_of_order(prefix, kwarg):
    refuses(prefix, "BARs must be listed in ascending slot order",
            **{kwarg: (Bar(3, 4096), Bar(0, 4096))})


@pytest.mark.parametrize("size", [3 * 4096, 0x4001, 24, 0x7fff_ffff])
def test_bar_size_not_power_of_two(size):
    refuses("sriov.vf_bar[1].size", "must be a power of two",
            vf_bars=(Bar(0, 4096), Bar(2, size)))


@pytest.mark.parametrize("size", [8, 1, 0, -16])
def test_bar_size_below_16(size):
    refuses("pf.bar[0].size", "a memory BAR is at least 16 bytes", pf_bars=(Bar(0, size),))


def test_bar_size_16_accepted():
    EndpointParams(pf_bars=(Bar(0, 16),))


def test_bar_size_not_an_integer():
    refuses("pf.bar[0].size", "must be an integer", pf_bars=(Bar(0, "16K"),))
    refuses("pf.bar[0].size", "must be an integer", pf_bars=(Bar(0, 4096.0),))


def test_32bit_bar_size_limit():
    EndpointParams(pf_bars=(Bar(0, 1 << 31),))
    refuses("pf.bar[0].size", "a 32-bit BAR is at most 0x80000000", pf_bars=(Bar(0, 1 << 32),))
    EndpointParams(pf_bars=(Bar(0, 1 << 32, is_64bit=True),))


def test_64bit_bar_size_limit():
    EndpointParams(pf_bars=(Bar(0, 1 << 63, is_64bit=True),))
    refuses("pf.bar[0].size", "a 64-bit BAR is at most 0x8000000000000000",
            pf_bars=(Bar(0, 1 << 64, is_64bit=True),))


@pytest.mark.parametrize("index", [6, -1])
def test_bar_index_out_of_range(index):
    refuses("sriov.vf_bar[0].index", "must be in 0x0..0x5", vf_bars=(Bar(index, 4096),))


def test_bar_index_not_an_integer():
    refuses("sriov.vf_bar[0].index", "must be an integer", vf_bars=(Bar("0", 4096),))


def test_bar_flags_must_be_bool():
    refuses("pf.bar[0].is_64bit", "must be true or false", pf_bars=(Bar(0, 4096, is_64bit=1),))
    refuses("pf.bar[0].prefetchable", "must be true or false",
            pf_bars=(Bar(0, 4096, prefetchable="yes"),))


def test_bars_must_be_a_tuple_of_bar():
    refuses("pf.bar", "must be a tuple of Bar", pf_bars=Bar(0, 4096))
    refuses("sriov.vf_bar[1]", "must be a Bar", vf_bars=(Bar(0, 4096), (2, 4096)))


def test_vf_bar_span_32bit():
    # 4096 VFs x 1 MiB is exactly 4 GiB: fits. One more VF does not.
    EndpointParams(total_vfs=4096, vf_bars=(Bar(0, 1 << 20),))
    exc = refuses("sriov.vf_bar[1].size", "does not fit a 32-bit address space",
                  total_vfs=4097, vf_bars=(Bar(0, 4096), Bar(1, 1 << 20)))
    assert "TotalVFs (4097)" in exc.rule
    EndpointParams(total_vfs=4097, vf_bars=(Bar(0, 1 << 20, is_64bit=True),))


def test_vf_bar_span_64bit():
    refuses("sriov.vf_bar[0].size", "does not fit a 64-bit address space",
            total_vfs=3, vf_bars=(Bar(0, 1 << 63, is_64bit=True),))


# -- Capability placement ---------------------------------------------------------------------

@pytest.mark.parametrize("kwarg, field", [("sriov_cap_offset", "sriov.cap_offset"),
                                          ("ari_cap_offset", "sriov.ari_cap_offset")])
def test_cap_offset_below_extended_space(kwarg, field):
    refuses(field, "must lie in extended configuration space", **{kwarg: 0xC0})


def test_sriov_cap_offset_above_0xfc0():
    EndpointParams(sriov_cap_offset=0xFC0)
    refuses("sriov.cap_offset", "must lie in extended configuration space, 0x100..0xfc0",
            sriov_cap_offset=0xFC4)


def test_ari_cap_offset_above_0xff8():
    EndpointParams(sriov_cap_offset=0x100, ari_cap_offset=0xFF8)
    refuses("sriov.ari_cap_offset", "must lie in extended configuration space, 0x100..0xff8",
            sriov_cap_offset=0x100, ari_cap_offset=0xFFC)


@pytest.mark.parametrize("kwarg, field", [("sriov_cap_offset", "sriov.cap_offset"),
                                          ("ari_cap_offset", "sriov.ari_cap_offset")])
@pytest.mark.parametrize("offset", [0x162, 0x141, 0x103])
def test_cap_offset_not_dword_aligned(kwarg, field, offset):
    refuses(field, "must be dword-aligned", **{kwarg: offset})


@pytest.mark.parametrize("kwarg, field", [("sriov_cap_offset", "sriov.cap_offset"),
                                          ("ari_cap_offset", "sriov.ari_cap_offset")])
def test_cap_offset_beyond_config_space(kwarg, field):
    refuses(field, "must be in 0x0..0xfff", **{kwarg: 0x1000})
    refuses(field, "must be an integer", **{kwarg: "0x100"})


@pytest.mark.parametrize("ari, sriov", [(0x100, 0x104), (0x13C, 0x100), (0x100, 0x100),
                                        (0x120, 0x100)])
def test_ari_and_sriov_overlap(ari, sriov):
    refuses("sriov.cap_offset", "overlaps the ARI capability",
            ari_cap_offset=ari, sriov_cap_offset=sriov)


@pytest.mark.parametrize("ari, sriov", [(0x100, 0x108), (0x140, 0x100), (0x100, 0xFC0)])
def test_ari_and_sriov_adjacent(ari, sriov):
    EndpointParams(ari_cap_offset=ari, sriov_cap_offset=sriov)


def test_neither_cap_at_0x100():
    refuses("sriov.ari_cap_offset", "one extended capability must sit at 0x100",
            ari_cap_offset=0x150, sriov_cap_offset=0x160)


# -- TotalVFs, InitialVFs ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 65536])
def test_total_vfs_out_of_range(value):
    refuses("sriov.total_vfs", "must be in 0x1..0xffff", total_vfs=value)


def test_total_vfs_limits_accepted():
    EndpointParams(total_vfs=1)
    EndpointParams(total_vfs=0xffff, pf_rid=0x0000, first_vf_offset_ari=1,
                   first_vf_offset_non_ari=1)


def test_initial_vfs_above_total_vfs():
    exc = refuses("sriov.initial_vfs", "must not exceed TotalVFs", total_vfs=8, initial_vfs=9)
    assert "InitialVFs (9)" in exc.rule


def test_initial_vfs_below_total_vfs():
    refuses("sriov.initial_vfs", "without VF Migration Capable, InitialVFs must equal TotalVFs",
            total_vfs=8, initial_vfs=4)


def test_initial_vfs_out_of_range():
    refuses("sriov.initial_vfs", "must be in 0x0..0xffff", initial_vfs=-1)
    refuses("sriov.initial_vfs", "must be an integer", initial_vfs=8.0)


# -- First VF Offset, VF Stride ---------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ari", "non_ari"])
def test_zero_first_vf_offset(mode):
    refuses(f"sriov.first_vf_offset.{mode}", "First VF Offset must not be 0",
            **{f"first_vf_offset_{mode}": 0})


@pytest.mark.parametrize("mode", ["ari", "non_ari"])
def test_zero_stride_with_several_vfs(mode):
    refuses(f"sriov.vf_stride.{mode}", "VF Stride must not be 0 when TotalVFs > 1",
            total_vfs=2, **{f"vf_stride_{mode}": 0})


def test_zero_stride_with_one_vf_accepted():
    p = EndpointParams(total_vfs=1, vf_stride_ari=0, vf_stride_non_ari=0)
    assert p.vf_stride(True) == p.vf_stride(False) == 0


@pytest.mark.parametrize("mode", ["ari", "non_ari"])
def test_offset_and_stride_ranges(mode):
    refuses(f"sriov.first_vf_offset.{mode}", "must be in 0x0..0xffff",
            **{f"first_vf_offset_{mode}": 0x10000})
    refuses(f"sriov.vf_stride.{mode}", "must be in 0x0..0xffff", **{f"vf_stride_{mode}": -1})
    refuses(f"sriov.vf_stride.{mode}", "must be an integer", **{f"vf_stride_{mode}": "1"})


@pytest.mark.parametrize("mode", ["ari", "non_ari"])
def test_last_vf_rid_beyond_16_bits(mode):
    # PF 0xff00 + offset 0x80 + 127 * 1 = 0xffff: the last routing ID there is.
    fits = {"pf_rid": 0xFF00, "total_vfs": 128, f"first_vf_offset_{mode}": 0x80,
            f"vf_stride_{mode}": 1}
    other = "non_ari" if mode == "ari" else "ari"
    fits |= {f"first_vf_offset_{other}": 1, f"vf_stride_{other}": 1}
    EndpointParams(**fits)
    exc = refuses(f"sriov.first_vf_offset.{mode}", "does not fit in 16 bits",
                  **(fits | {"total_vfs": 129}))
    assert "0x10000" in exc.rule
    refuses(f"sriov.first_vf_offset.{mode}", "does not fit in 16 bits",
            **(fits | {f"vf_stride_{mode}": 2}))


# -- Supported Page Sizes, Function Dependency Link, flags --------------------------------------

@pytest.mark.parametrize("bit", [0, 1, 4, 6, 8, 10])
def test_supported_page_sizes_missing_mandatory_bit(bit):
    value = MANDATORY_PAGE_SIZES & ~(1 << bit)
    exc = refuses("sriov.supported_page_sizes", "must include the mandatory page sizes 0x553",
                  supported_page_sizes=value)
    assert f"missing {1 << bit:#x}" in exc.rule


def test_supported_page_sizes_extra_bits_accepted():
    assert EndpointParams(supported_page_sizes=0xFFFF_FFFF).supported_page_sizes == 0xFFFF_FFFF


def test_supported_page_sizes_range():
    refuses("sriov.supported_page_sizes", "must be in 0x0..0xffffffff",
            supported_page_sizes=1 << 32)


def test_fdl_not_own_function():
    exc = refuses("sriov.function_dependency_link", "must be the PF's own function number",
                  pf_rid=0x0100, function_dependency_link=1)
    assert "(0x0)" in exc.rule
    refuses("sriov.function_dependency_link", "must be the PF's own function number (0x3)",
            pf_rid=0x0103, function_dependency_link=0)


def test_fdl_range():
    refuses("sriov.function_dependency_link", "must be in 0x0..0xff",
            function_dependency_link=0x100)


@pytest.mark.parametrize("kwarg", ["ari_capable_hierarchy_preserved",
                                   "vf_10bit_tag_requester_supported"])
def test_capability_flags_must_be_bool(kwarg):
    refuses(f"sriov.{kwarg}", "must be true or false", **{kwarg: 1})
    assert getattr(EndpointParams(**{kwarg: True}), kwarg) is True


# -- clock_mhz --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 0.5, 1000.5, 1001, -125, math.nan, math.inf, "125", True,
                                   None])
def test_clock_mhz_refused(value):
    refuses("clock_mhz", "must be a number of MHz in 1..1000", clock_mhz=value)


@pytest.mark.parametrize("value", [1, 62.5, 125, 250.0, 1000])
def test_clock_mhz_accepted(value):
    assert EndpointParams(clock_mhz=value).clock_mhz == value


# -- TOML: examples ---------------------------------------------------------------------------

def test_examples_exist():
    assert {p.name for p in EXAMPLES.glob("*.toml")} >= {"igb-82576.toml", "nvme.toml",
                                                        "many-vfs.toml"}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_loads(path):
    p = load_params(path)
    assert isinstance(p, EndpointParams)
    assert path.read_text().startswith("#"), "each example starts with a comment header"


def test_igb_example_values():
    p = load_params(EXAMPLES / "igb-82576.toml")
    assert (p.vendor_id, p.device_id, p.class_code) == (0x8086, 0x10C9, 0x020000)
    assert p.pf_rid == 0x0100
    assert (p.total_vfs, p.initial_vfs, p.vf_device_id) == (8, 8, 0x10CA)
    assert (p.first_vf_offset(True), p.vf_stride(True)) == (0x80, 2)
    assert (p.first_vf_offset(False), p.vf_stride(False)) == (0x180, 2)
    assert p.ari_cap_offset == 0x100
    assert p.vf_bars == (Bar(0, 0x4000, is_64bit=True, prefetchable=True),
                         Bar(3, 0x4000, is_64bit=True, prefetchable=True))
    assert p.pf_bars[0] == Bar(0, 128 * 1024)
    assert p.pf_bars[-1] == Bar(3, 16 * 1024)


def test_nvme_example_values():
    p = load_params(EXAMPLES / "nvme.toml")
    assert p.class_code == 0x010802
    assert p.total_vfs == 127
    assert p.first_vf_offset(True) == p.first_vf_offset(False) == 1
    assert p.vf_stride(True) == p.vf_stride(False) == 1
    assert p.vf_bars == (Bar(0, 0x4000, is_64bit=True, prefetchable=False),)


def test_many_vfs_example_values():
    p = load_params(EXAMPLES / "many-vfs.toml")
    assert p.total_vfs == 4000
    assert (p.first_vf_offset(True), p.vf_stride(True)) == (1, 1)
    assert (p.first_vf_offset(False), p.vf_stride(False)) == (0x100, 1)
    last_vf = p.pf_rid + p.first_vf_offset(False) + (p.total_vfs - 1) * p.vf_stride(False)
    assert (last_vf >> 8) - (p.pf_rid >> 8) > 8, "VFs spread over many buses"
    assert p.supported_page_sizes & MANDATORY_PAGE_SIZES == MANDATORY_PAGE_SIZES
    assert p.supported_page_sizes != MANDATORY_PAGE_SIZES
    assert p.vf_bar(0) == Bar(0, 0x10000, is_64bit=True, prefetchable=True)
    assert p.vf_bar(2) == Bar(2, 0x1000)


# -- TOML: file-level errors --------------------------------------------------------------------

def test_minimal_toml_loads(tmp_path):
    p = load_params(write_toml(tmp_path, MINIMAL_TOML))
    assert p.total_vfs == p.initial_vfs == 4
    assert p.pf_rid == 0x0100


def test_load_accepts_str_path(tmp_path):
    assert load_params(str(write_toml(tmp_path, MINIMAL_TOML))).total_vfs == 4


def test_toml_syntax_error_names_file_and_line(tmp_path):
    path = write_toml(tmp_path, MINIMAL_TOML + "vf_device_id 0x10CA\n")
    with pytest.raises(ParamError) as info:
        load_params(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "line 6" in message, message


def test_missing_file_names_file(tmp_path):
    path = tmp_path / "nonexistent.toml"
    with pytest.raises(ParamError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "cannot read" in info.value.rule


def test_error_message_starts_with_file_path(tmp_path):
    path = write_toml(tmp_path, MINIMAL_TOML.replace("total_vfs = 4", "total_vfs = 0"))
    with pytest.raises(ParamError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: sriov.total_vfs: ")
    assert info.value.source == str(path)


@pytest.mark.parametrize("text, field, phrase", [
    ("colour = 1\n" + MINIMAL_TOML, "colour", "unknown top-level key"),
    (MINIMAL_TOML.replace("[sriov]", "vendor = 0x8086\n[sriov]"), "pf.vendor", "unknown key"),
    (MINIMAL_TOML + "totalvfs = 8\n", "sriov.totalvfs", "unknown key"),
    (MINIMAL_TOML + "[[sriov.vf_bar]]\nindex = 0\nsize = 4096\nprefetch = true\n",
     "sriov.vf_bar[0].prefetch", "unknown key"),
])
def test_unknown_key_names_itself(tmp_path, text, field, phrase):
    toml_refuses(tmp_path, text, field, phrase)


@pytest.mark.parametrize("width", ["16", "\"64\"", "true", "128"])
def test_bad_bar_width(tmp_path, width):
    text = MINIMAL_TOML + f"[[sriov.vf_bar]]\nindex = 0\nsize = 4096\nwidth = {width}\n"
    toml_refuses(tmp_path, text, "sriov.vf_bar[0].width", "must be 32 or 64")


@pytest.mark.parametrize("size", ["\"16X\"", "\"K\"", "\"16 K M\"", "\"-16K\"", "\"0x4000\"",
                                  "16384.0", "true"])
def test_bad_size_string(tmp_path, size):
    text = MINIMAL_TOML + f"[[sriov.vf_bar]]\nindex = 0\nsize = {size}\n"
    toml_refuses(tmp_path, text, "sriov.vf_bar[0].size", "must be a byte count")


@pytest.mark.parametrize("size, value", [
    ("\"16K\"", 16 << 10), ("\"1M\"", 1 << 20), ("\"4k\"", 4096), ("\"64KiB\"", 64 << 10),
    ("\"2 MB\"", 2 << 20), ("\"1G\"", 1 << 30), ("\"16\"", 16), ("\"128B\"", 128),
    ("16384", 16384), ("0x4000", 0x4000),
])
def test_size_strings_parse(tmp_path, size, value):
    text = MINIMAL_TOML + f"[[sriov.vf_bar]]\nindex = 0\nsize = {size}\nwidth = 64\n"
    assert load_params(write_toml(tmp_path, text)).vf_bars[0].size == value


def test_size_string_then_checked(tmp_path):
    text = MINIMAL_TOML + "[[pf.bar]]\nindex = 0\nsize = \"3K\"\n"
    toml_refuses(tmp_path, text, "pf.bar[0].size", "must be a power of two")


def test_bar_defaults_in_toml(tmp_path):
    text = MINIMAL_TOML + "[[sriov.vf_bar]]\nindex = 2\nsize = \"8K\"\n"
    assert load_params(write_toml(tmp_path, text)).vf_bars == (Bar(2, 8192),)


@pytest.mark.parametrize("key", ["index", "size"])
def test_bar_key_required(tmp_path, key):
    entry = {"index": "index = 0\n", "size": "size = 4096\n"}
    text = MINIMAL_TOML + "[[pf.bar]]\n" + "".join(v for k, v in entry.items() if k != key)
    toml_refuses(tmp_path, text, f"pf.bar[0].{key}", "is required")


def test_bar_list_shape(tmp_path):
    toml_refuses(tmp_path, MINIMAL_TOML + "vf_bar = 5\n", "sriov.vf_bar",
                 "must be an array of tables")
    toml_refuses(tmp_path, MINIMAL_TOML + "vf_bar = [1]\n", "sriov.vf_bar[0]", "must be a table")


def test_rules_report_toml_names(tmp_path):
    # Overlapping VF BARs from a file: the message uses the TOML path of the second BAR.
    text = MINIMAL_TOML + ("[[sriov.vf_bar]]\nindex = 0\nsize = \"16K\"\nwidth = 64\n"
                           "[[sriov.vf_bar]]\nindex = 1\nsize = \"16K\"\n")
    toml_refuses(tmp_path, text, "sriov.vf_bar[1].index", "is already used by sriov.vf_bar[0]")
    text = MINIMAL_TOML + "first_vf_offset = { ari = 1, non_ari = 0 }\n"
    toml_refuses(tmp_path, text, "sriov.first_vf_offset.non_ari", "must not be 0")
    text = MINIMAL_TOML.replace("[sriov]", "[sriov]\ncap_offset = 0x13E")
    toml_refuses(tmp_path, text, "sriov.cap_offset", "must be dword-aligned")
    text = "clock_mhz = 2000\n" + MINIMAL_TOML
    toml_refuses(tmp_path, text, "clock_mhz", "must be a number of MHz")


@pytest.mark.parametrize("value", ["1", "{ ari = 1 }", "{ ari = 1, non_ari = 2, extra = 3 }"])
def test_mode_pair_shape(tmp_path, value):
    toml_refuses(tmp_path, MINIMAL_TOML + f"vf_stride = {value}\n", "sriov.vf_stride",
                 "must be a table with exactly the keys ari and non_ari")


def test_mode_pair_maps_to_fields(tmp_path):
    text = MINIMAL_TOML + ("first_vf_offset = { ari = 0x80, non_ari = 0x180 }\n"
                           "vf_stride = { ari = 2, non_ari = 4 }\n")
    p = load_params(write_toml(tmp_path, text))
    assert (p.first_vf_offset_ari, p.first_vf_offset_non_ari) == (0x80, 0x180)
    assert (p.vf_stride_ari, p.vf_stride_non_ari) == (2, 4)


def test_sriov_table_required(tmp_path):
    toml_refuses(tmp_path, "[pf]\naddress = \"01:00.0\"\n", "sriov",
                 "a [sriov] table is required")


def test_pf_must_be_a_table(tmp_path):
    toml_refuses(tmp_path, "pf = 5\n[sriov]\ntotal_vfs = 4\n", "pf", "must be a table")


@pytest.mark.parametrize("address, phrase", [
    ("\"1:0:0\"", "is not a BDF"),
    ("\"01:00.8\"", "is not a BDF"),
    ("\"01:20.0\"", "device number 0x20 is above 0x1f"),
    ("0x0100", "must be a string \"BB:DD.F\""),
])
def test_bad_pf_address(tmp_path, address, phrase):
    text = MINIMAL_TOML.replace("\"01:00.0\"", address)
    toml_refuses(tmp_path, text, "pf.address", phrase)


def test_pf_address_sets_rid_and_fdl(tmp_path):
    text = MINIMAL_TOML.replace("01:00.0", "3a:02.5")
    p = load_params(write_toml(tmp_path, text))
    assert p.pf_rid == 0x3A15
    assert p.function_dependency_link == 0x15


def test_params_from_dict_without_file():
    p = params_from_dict({"name": "x", "description": "y", "clock_mhz": 100,
                          "pf": {"address": "02:00.0", "vendor_id": 0x10EE},
                          "sriov": {"total_vfs": 2}})
    assert (p.pf_rid, p.vendor_id, p.total_vfs, p.clock_mhz) == (0x0200, 0x10EE, 2, 100)
    with pytest.raises(ParamError, match=re.escape("pf.vendor_id: 0x0000 is not a valid")):
        params_from_dict({"pf": {"vendor_id": 0}, "sriov": {}})


# -- TOML: identity fields left to their defaults ---------------------------------------------

#: Sets the four identity fields (PF Vendor and Device ID, TotalVFs, VF Device ID) and nothing
#: else that matters here.
IDENTITY_TOML = """\
[pf]
vendor_id = 0x10EE
device_id = 0x9038

[sriov]
total_vfs = 4
vf_device_id = 0x9039
"""

IDENTITY_LINES = {"pf.vendor_id": "vendor_id = 0x10EE\n", "pf.device_id": "device_id = 0x9038\n",
                  "sriov.total_vfs": "total_vfs = 4\n",
                  "sriov.vf_device_id": "vf_device_id = 0x9039\n"}


def test_only_sriov_table_is_noted(tmp_path):
    """A file holding only ``[sriov]`` still loads (the defaults apply), and each identity field
    it leaves out comes back as a note naming the file and the field."""
    path = write_toml(tmp_path, "[sriov]\n")
    notes = []
    p = load_params(path, notes=notes)
    assert (p.vendor_id, p.device_id, p.total_vfs, p.vf_device_id) == (0x1234, 0x0001, 8, 0x0002)
    assert [str(note) for note in notes] == [
        f"{path}: pf.vendor_id: not set: Vendor ID defaults to the placeholder 0x1234; set it "
        f"for your device",
        f"{path}: pf.device_id: not set: Device ID defaults to the placeholder 0x0001; set it "
        f"for your device",
        f"{path}: sriov.total_vfs: not set: TotalVFs defaults to the placeholder 8; set it for "
        f"your device",
        f"{path}: sriov.vf_device_id: not set: VF Device ID defaults to the placeholder 0x0002; "
        f"set it for your device",
    ]
    assert [(note.field, note.source) for note in notes] == \
        [(field, str(path)) for field in IDENTITY_LINES]
    assert all(isinstance(note, ConfigNote) for note in notes)


@pytest.mark.parametrize("left_out", sorted(IDENTITY_LINES))
def test_each_identity_field_left_out_is_noted(tmp_path, left_out):
    text = IDENTITY_TOML.replace(IDENTITY_LINES[left_out], "")
    assert text != IDENTITY_TOML
    notes = []
    load_params(write_toml(tmp_path, text), notes=notes)
    assert [note.field for note in notes] == [left_out]


def test_identity_fields_set_give_no_notes(tmp_path):
    notes = []
    p = load_params(write_toml(tmp_path, IDENTITY_TOML), notes=notes)
    assert notes == []
    assert (p.vendor_id, p.device_id, p.total_vfs, p.vf_device_id) == (0x10EE, 0x9038, 4,
                                                                       0x9039)


def test_identity_field_set_to_its_default_value_is_not_noted(tmp_path):
    """What counts is whether the file says it, not the value."""
    text = IDENTITY_TOML.replace("0x10EE", "0x1234").replace("total_vfs = 4", "total_vfs = 8")
    notes = []
    load_params(write_toml(tmp_path, text), notes=notes)
    assert notes == []


def test_notes_are_not_python_warnings(tmp_path):
    """Loading a partial file from Python is quiet, even with warnings as errors: the notes go
    only to a list the caller asks for."""
    path = write_toml(tmp_path, "[sriov]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_params(path).total_vfs == 8
        assert load_params(path, notes=[]).total_vfs == 8


def test_no_notes_for_a_refused_file(tmp_path):
    notes = []
    with pytest.raises(ParamError):
        load_params(write_toml(tmp_path, "[sriov]\ntotal_vfs = 0\n"), notes=notes)
    assert notes == []


def test_params_from_dict_notes_have_no_source():
    notes = []
    params_from_dict({"pf": {"vendor_id": 0x10EE, "device_id": 1}, "sriov": {"total_vfs": 2}},
                     notes=notes)
    assert [str(note) for note in notes] == [
        "sriov.vf_device_id: not set: VF Device ID defaults to the placeholder 0x0002; set it for "
        "your device"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_set_every_identity_field(path):
    notes = []
    load_params(path, notes=notes)
    assert notes == []


def test_python_construction_keeps_its_defaults():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = EndpointParams()
    assert (p.vendor_id, p.device_id, p.total_vfs, p.vf_device_id) == (0x1234, 0x0001, 8, 0x0002)


# -- TOML: strict types -------------------------------------------------------------------------

#: A document that sets every key the loader knows (each leaf once), valid as it stands.
FULL_DOC = {
    "name": "full", "description": "every key", "clock_mhz": 125, "user_cfg_timeout": 64,
    "pf": {
        "address": "01:00.0", "vendor_id": 0x10EE, "device_id": 0x9038, "revision_id": 1,
        "class_code": 0x020000, "subsystem_vendor_id": 0x10EE, "subsystem_id": 7,
        "bar": [{"index": 0, "size": "64K", "width": 64, "prefetchable": False}],
        "pm": {"d1": False, "d2": True, "no_soft_reset": False, "offset": 0x80},
        "msix": {"vectors": 4, "max_vectors": 4, "offset": 0x90,
                 "table": {"bar": 0, "offset": 0x2000}, "pba": {"bar": 0, "offset": 0x3000}},
        "capability": [{"name": "dsn", "kind": "extended", "id": 3, "version": 1, "size": 12,
                        "offset": 0x200}],
    },
    "sriov": {
        "ari_cap_offset": 0x100, "cap_offset": 0x140, "total_vfs": 4, "initial_vfs": 4,
        "vf_device_id": 0x9039, "first_vf_offset": {"ari": 1, "non_ari": 1},
        "vf_stride": {"ari": 1, "non_ari": 1}, "supported_page_sizes": 0x553,
        "function_dependency_link": 0, "ari_capable_hierarchy_preserved": False,
        "vf_10bit_tag_requester_supported": True,
        "vf_bar": [{"index": 0, "size": "16K", "width": 64, "prefetchable": True}],
        "vf_pm": {"d1": False, "d2": False, "no_soft_reset": True, "offset": 0x80},
        "vf_msix": {"vectors": 1, "max_vectors": 4, "offset": 0x90,
                    "table": {"bar": 0, "offset": 0x2000}, "pba": {"bar": 0, "offset": 0x3000}},
        "vf_capability": [{"name": "vsec", "kind": "extended", "id": 0xB, "version": 1,
                           "size": "24", "offset": 0x108}],
    },
}


def _leaves(node, path=""):
    """``(TOML path, keys)`` of every scalar in ``node``: ``pf.bar[0].size``."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        name = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if isinstance(value, (dict, list)):
            for sub, keys in _leaves(value, name):
                yield sub, (key, *keys)
        else:
            yield name, (key,)


FULL_LEAVES = dict(_leaves(FULL_DOC))

#: What each kind of leaf must be, as the refusal says it, and values of other TOML types.
_STRING = ("must be a string", [5, True, 5.0, ["x"]])
_INTEGER = ("must be an integer", [16.0, True, False, "16", [16], {"a": 16},
                                   datetime.date(2024, 1, 1)])
_BOOLEAN = ("must be true or false", [1, 0, 1.0, "true"])
_SIZE = ("must be a byte count", [4096.0, True, [4096]])
_WIDTH = ("must be 32 or 64", [64.0, 32.0, True, "64"])
_NUMBER = ("must be a number of MHz", [True, "125", [125]])


def _kind(path, value):
    last = path.rsplit(".", 1)[-1]
    if last == "size":
        return _SIZE
    if last == "width":
        return _WIDTH
    if path == "clock_mhz":
        return _NUMBER
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, str):
        return _STRING
    return _INTEGER


def _replaced(doc, keys, value):
    doc = copy.deepcopy(doc)
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return doc


def _toml_type(value):
    """The TOML type of ``value`` as the refusal names it."""
    if isinstance(value, bool):
        return "a boolean"
    for kind, name in ((int, "an integer"), (float, "a float"), (str, "a string"),
                       (list, "an array"), (dict, "a table"), (datetime.date, "a date/time")):
        if isinstance(value, kind):
            return name
    raise AssertionError(value)


def test_full_doc_loads():
    p = params_from_dict(FULL_DOC)
    assert (p.msix.table_offset, p.vf_msix.max_vectors, p.vf_user_caps[0].size) == \
        (0x2000, 4, 24)
    # 4 top-level keys; pf: 7 scalars, bar 4, pm 4, msix 7, capability 6; sriov: 5 scalars,
    # the offset/stride pairs 4, 4 flags and links, vf_bar 4, vf_pm 4, vf_msix 7,
    # vf_capability 6: every key the loader knows.
    assert len(FULL_LEAVES) == 4 + (7 + 4 + 4 + 7 + 6) + (5 + 4 + 4 + 4 + 4 + 7 + 6) == 66


@pytest.mark.parametrize("path", sorted(FULL_LEAVES))
def test_every_field_refuses_other_types(path):
    """Each leaf of a full document, given a value of each other TOML type (``64.0`` for an
    integer, ``true`` where an integer or a string goes, ``1`` where a boolean goes, ...), is
    refused naming the TOML path, the type it needs and the type it got."""
    keys = FULL_LEAVES[path]
    phrase, wrong_values = _kind(path, _get(FULL_DOC, keys))
    for value in wrong_values:
        with pytest.raises(ParamError) as info:
            params_from_dict(_replaced(FULL_DOC, keys, value))
        assert info.value.field == path, (value, str(info.value))
        assert phrase in info.value.rule, (value, str(info.value))
        assert f"not {_toml_type(value)}" in info.value.rule, (value, str(info.value))


def _get(doc, keys):
    for key in keys:
        doc = doc[key]
    return doc


@pytest.mark.parametrize("text, field, phrase", [
    ("name = 5\n" + MINIMAL_TOML, "name", "must be a string, not an integer (5)"),
    ("description = true\n" + MINIMAL_TOML, "description", "must be a string, not a boolean"),
    (MINIMAL_TOML.replace("[sriov]", "vendor_id = true\n[sriov]"), "pf.vendor_id",
     "must be an integer, not a boolean (true)"),
    (MINIMAL_TOML.replace("total_vfs = 4", "total_vfs = 4.0"), "sriov.total_vfs",
     "must be an integer, not a float (4.0)"),
    (MINIMAL_TOML + "[[sriov.vf_bar]]\nindex = 0\nsize = 4096\nwidth = 64.0\n",
     "sriov.vf_bar[0].width", "must be 32 or 64 (an integer), not a float (64.0)"),
    (MINIMAL_TOML + "[[sriov.vf_bar]]\nindex = 0\nsize = 4096\nprefetchable = 1\n",
     "sriov.vf_bar[0].prefetchable", "must be true or false (a boolean), not an integer (1)"),
    (MINIMAL_TOML + "[[pf.capability]]\nname = 5\nkind = \"extended\"\nsize = 8\n",
     "pf.capability[0].name", "must be a string, not an integer (5)"),
    (MINIMAL_TOML + "[[sriov.vf_capability]]\nname = \"r\"\nkind = \"range\"\nsize = 8\n"
                    "offset = 0x400\nid = 1.5\n",
     "sriov.vf_capability[0].id", "must be an integer, not a float (1.5)"),
    (MINIMAL_TOML + "vf_bar = [{ index = 0, size = \"4K\" }]\n[sriov.vf_msix]\nvectors = 1\n"
                    "table = { bar = 0, offset = 0 }\npba = { bar = 0.0, offset = 0x800 }\n",
     "sriov.vf_msix.pba.bar", "must be an integer, not a float (0.0)"),
    (MINIMAL_TOML + "vf_pm = 1\n", "sriov.vf_pm",
     "must be a table, or true (the default capability) or false (none), not an integer (1)"),
])
def test_wrong_type_in_file_names_file_field_and_type(tmp_path, text, field, phrase):
    toml_refuses(tmp_path, text, field, phrase)


def test_python_booleans_are_not_integers():
    """``True`` is an ``int`` in Python; where the parameters want a number it is refused."""
    refuses("sriov.total_vfs", "must be an integer, not a boolean (true)", total_vfs=True)
    refuses("pf.bar[0].index", "must be an integer, not a boolean (false)",
            pf_bars=(Bar(False, 4096),))


# -- Reachability without ARI -----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("nvme", 8),            # offset 1 / stride 1: VF 8 is 0x0108 = 01:01.0 (its own comment)
    ("igb-82576", None),    # non-ARI offset 0x180: VFs at 02:10.0.., reached by Type 1
    ("many-vfs", None),     # non-ARI offset 0x100: the next bus
    ("user-caps", None),    # 4 VFs: 01:00.1 .. 01:00.4, all device 0
])
def test_first_unreachable_vf_of_examples(name, expected):
    p = load_params(EXAMPLES / f"{name}.toml")
    assert first_unreachable_vf(p) == expected
    assert first_unreachable_vf(p, ari=False) == expected
    assert first_unreachable_vf(p, ari=True) is None


@pytest.mark.parametrize("pf_rid, offset, stride, total_vfs, expected", [
    (0x0100, 1, 1, 7, None),        # 01:00.1 .. 01:00.7
    (0x0100, 1, 1, 8, 8),           # VF 8 at 01:01.0
    (0x0100, 7, 1, 2, 2),           # 01:00.7, then 01:01.0
    (0x0100, 8, 1, 1, 1),           # 01:01.0 at once
    (0x0100, 2, 3, 4, 3),           # 01:00.2, 01:00.5, 01:01.0
    (0x0118, 1, 1, 1, 1),           # PF 01:03.0: VF 1 is 01:03.1, device 3
    (0x0100, 0x100, 1, 300, None),  # all on buses 02 and 03
    (0x01F8, 8, 1, 4, None),        # PF 01:1f.0: VF 1 is 02:00.0, on the next bus
    (0x0100, 0xFF, 1, 2, 1),        # 01:1f.7: device 31
])
def test_first_unreachable_vf(pf_rid, offset, stride, total_vfs, expected):
    p = EndpointParams(pf_rid=pf_rid, first_vf_offset_non_ari=offset, vf_stride_non_ari=stride,
                       total_vfs=total_vfs)
    assert first_unreachable_vf(p) == expected


# -- The command line prints the notes and the reachability warning -----------------------------

def run_cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_identity_notes_as_warnings(capsys, tmp_path):
    path = write_toml(tmp_path, "[sriov]\n")
    code, out, err = run_cli(capsys, "regmap", path, "--structure", "ari", "--function", "pf")
    assert code == 0 and out.startswith(f"# Register map of {path}: PF 01:00.0, TotalVFs 8\n")
    assert err.splitlines() == [
        f"sriov-ep: warning: {path}: pf.vendor_id: not set: Vendor ID defaults to the "
        f"placeholder 0x1234; set it for your device",
        f"sriov-ep: warning: {path}: pf.device_id: not set: Device ID defaults to the "
        f"placeholder 0x0001; set it for your device",
        f"sriov-ep: warning: {path}: sriov.total_vfs: not set: TotalVFs defaults to the "
        f"placeholder 8; set it for your device",
        f"sriov-ep: warning: {path}: sriov.vf_device_id: not set: VF Device ID defaults to the "
        f"placeholder 0x0002; set it for your device",
    ]


def test_cli_example_loads_quietly(capsys):
    code, _, err = run_cli(capsys, "regmap", EXAMPLES / "user-caps.toml", "--structure", "ari")
    assert (code, err) == (0, "")


@pytest.mark.parametrize("name, no_ari, warning", [
    ("nvme", True, "VF 8 (01:01.0) is device 1 on the PF's bus"),
    ("nvme", False, None),
    ("igb-82576", True, None),
])
def test_cli_sim_warns_of_unreachable_vfs(capsys, tmp_path, name, no_ari, warning):
    """``sim --no-ari`` on a configuration whose non-ARI VFs sit at devices other than 0 on the
    PF's bus names the first one (a one-line script: the warning comes before the run)."""
    script = tmp_path / "idle.script"
    script.write_text("idle 1\n")
    config = EXAMPLES / f"{name}.toml"
    code, out, err = run_cli(capsys, "sim", config, script, *(["--no-ari"] if no_ari else []))
    assert code == 0 and out.endswith("all match\n")
    if warning is None:
        assert err == ""
    else:
        (line,) = err.splitlines()
        assert line.startswith(f"sriov-ep: warning: {config}: with --no-ari, {warning}; ")
        assert "a Downstream Port without ARI Forwarding passes config requests to device 0 " \
            "only" in line


@pytest.mark.parametrize("no_ari", [True, False])
def test_cli_lspci_warns_of_unreachable_vfs(capsys, no_ari):
    """``lspci --no-ari`` warns as ``sim`` does."""
    config = EXAMPLES / "nvme.toml"
    code, out, err = run_cli(capsys, "lspci", config, "--enable", "0",
                             *(["--no-ari"] if no_ari else []))
    assert code == 0 and out.startswith("01:00.0")
    if no_ari:
        (line,) = err.splitlines()
        assert line.startswith(f"sriov-ep: warning: {config}: with --no-ari, VF 8 (01:01.0) ")
    else:
        assert err == ""


# -- parse_bdf / format_bdf -------------------------------------------------------------------

@pytest.mark.parametrize("text, rid", [
    ("00:00.0", 0x0000), ("01:00.0", 0x0100), ("01:10.0", 0x0180), ("01:11.6", 0x018E),
    ("02:10.0", 0x0280), ("ff:1f.7", 0xFFFF), ("3A:02.5", 0x3A15), ("0000:01:00.1", 0x0101),
    ("1:2.3", 0x0113), ("  01:00.0\n", 0x0100),
])
def test_parse_bdf(text, rid):
    assert parse_bdf(text) == rid


@pytest.mark.parametrize("text", ["", "01:00", "01.00.0", "01:00.8", "001:00.0", "01:000.0",
                                  "01:20.0", "01:ff.0", "g1:00.0", "0:01:00.0"])
def test_parse_bdf_refuses(text):
    with pytest.raises(ValueError):
        parse_bdf(text)


def test_format_bdf_is_lspci_notation():
    assert format_bdf(0x0100) == "01:00.0"
    assert format_bdf(0xFFFF) == "ff:1f.7"
    assert format_bdf(0x3A15) == "3a:02.5"


@pytest.mark.parametrize("fn", [0x00, 0x01, 0x07, 0x08, 0x80, 0x8E, 0xA5, 0xFF])
def test_ari_function_numbers(fn):
    # lspci writes ARI function number fn as device fn >> 3, function fn & 7.
    text = format_bdf(0x0100 | fn)
    assert text == f"01:{fn >> 3:02x}.{fn & 7}"
    assert parse_bdf(text) == 0x0100 | fn


def test_bdf_round_trip_every_rid():
    for rid in range(0x10000):
        assert parse_bdf(format_bdf(rid)) == rid
