"""What the ``sriov-ep`` subcommands share, kept apart from the parser and the commands of
:mod:`sriov_tb.cli` so that the modules with subcommands of their own (:mod:`sriov_tb.regress`,
:mod:`sriov_tb.formal`) use it without importing the command line: the one-line error, loading
a configuration, the simulation backends, the progress bars and the waveform notice.
"""

import argparse
import json
import sys
import threading

from sriov_ep.params import format_bdf, load_params

__all__ = ["BACKENDS", "CliError", "Progress", "ReaderGone", "RunProgress", "backend_starting",
           "load_config", "print_waves", "progress_wanted", "runner_for", "wave_bound"]


class CliError(Exception):
    """A problem the command line reports in one line; ``status`` is the exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


class ReaderGone(BaseException):
    """Whoever read stdout went away (``sriov-ep sim ... | head``). Not an :class:`Exception`:
    it is no failure of a run, and code that handles a run's failures (a simulator repeating
    the run to write its waveform) must let it through."""


# -- Progress ------------------------------------------------------------------------------------

def progress_wanted(args):
    """Progress bars go to stderr only when a person watches it: a terminal, and not JSON."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not getattr(args, "json", False)


class Progress:
    """A progress bar on stderr (tqdm), or nothing when ``enabled`` is false.

    The bar is redrawn every second, so its clock moves during a long step with no news (a
    Verilator build, a synthesis run). :meth:`write` prints a line of output to stdout; while a
    bar is drawn on the same terminal it goes above the bar.
    """

    #: Least seconds between two redraws.
    MININTERVAL = 0.2

    def __init__(self, enabled, desc="", *, total=None, unit=""):
        self.bar = None
        self._stop = threading.Event()
        if not enabled:
            return
        from tqdm import tqdm
        self._tqdm = tqdm
        self.bar = tqdm(desc=desc, total=total, unit=unit, file=sys.stderr, leave=False,
                        dynamic_ncols=True, mininterval=self.MININTERVAL,
                        bar_format=self.BAR_FORMAT if total is not None
                        else self.COUNT_FORMAT)
        self._ticker = threading.Thread(target=self._tick, name="sriov-ep-progress", daemon=True)
        self._ticker.start()

    @property
    def enabled(self):
        return self.bar is not None

    def _tick(self):
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def write(self, text, *, flush=False):
        try:
            if self.bar is not None and sys.stdout.isatty():
                self._tqdm.write(text, file=sys.stdout)
            else:
                print(text, flush=flush)
        except BrokenPipeError:
            raise ReaderGone() from None

    #: How a count without a total is drawn, and a bar (tqdm's default shows seconds per item
    #: when slow).
    COUNT_FORMAT = "{desc}: {n_fmt}{unit} [{elapsed}, {rate_noinv_fmt}{postfix}]"
    BAR_FORMAT = ("{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} [{elapsed}<{remaining}, "
                  "{rate_noinv_fmt}{postfix}]")

    def phase(self, desc, *, total=None, unit=""):
        """Start counting something else: a bar if ``total`` is known, else a count."""
        if self.bar is not None:
            self.bar.set_description_str(desc, refresh=False)
            self.bar.total = total
            self.bar.unit = unit
            self.bar.bar_format = self.BAR_FORMAT if total is not None else self.COUNT_FORMAT
            self.bar.reset(total)

    def advance(self, n=1, note=None):
        if self.bar is not None:
            if self.bar.total is not None and self.bar.n + n > self.bar.total:
                self.bar.total = self.bar.n + n
            if note is not None:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            if self.bar.total is not None:      # a bar counts rare things: show each
                self.bar.refresh()

    def describe(self, desc):
        if self.bar is not None:
            self.bar.set_description_str(desc)

    def close(self):
        if self.bar is not None:
            self._stop.set()
            self._ticker.join()
            self.bar.close()
            self.bar = None


class RunProgress(Progress):
    """Progress of a transaction run: the step it is at (Linux's: enumerate, sriov_init, enable
    N, ...; a script's line) with the transactions so far, then the VFs walked, then the
    functions dumped. Fed by the runner's ``on_transaction`` and ``on_dump`` hooks."""

    def __init__(self, enabled, *, starting, walks=None, dumps=None):
        super().__init__(enabled, starting, unit=" transactions")
        self.walks = walks
        self.dumps = dumps
        self._phase = "run"
        self._step = None

    def transaction(self, txn):
        if self.bar is None:
            return
        step = getattr(txn, "step", "") or ""
        if step.startswith("walk "):
            if self._phase != "walk":
                self._phase = "walk"
                self.phase("walk VFs", total=self.walks, unit=" VFs")
            if step != self._step:
                self._step = step
                self.advance(note=step[len("walk "):])
        elif step == "dump":
            if self._phase != "dump":
                self._phase = "dump"
                self.phase("dump", total=self.dumps, unit=" functions")
            rid = getattr(txn, "rid", None)
            if isinstance(rid, int) and rid != self._step:
                self._step = rid            # the function being read
                self.bar.set_postfix_str(format_bdf(rid), refresh=False)
        else:
            if self._phase != "run":
                self._phase = "run"
                self.phase(step, unit=" transactions")
            if step != self._step:
                self._step = step
                self.bar.set_description_str(step or "run", refresh=False)
            bdf = getattr(txn, "rid", None)
            self.advance(note=format_bdf(bdf) if isinstance(bdf, int) else None)

    def dumped(self, rid):
        if self.bar is not None:
            if self._phase != "dump":
                self._phase = "dump"
                self.phase("dump", total=self.dumps, unit=" functions")
            self.advance()


# -- Configurations and backends ---------------------------------------------------------------

def load_config(path):
    """:func:`load_params`, printing what the file leaves to placeholder defaults (vendor and
    device IDs, TotalVFs, VF Device ID) as ``sriov-ep: warning: ...`` lines on stderr."""
    notes = []
    params = load_params(path, notes=notes)
    for note in notes:
        print(f"sriov-ep: warning: {note}", file=sys.stderr)
    return params


BACKENDS = ("amaranth", "verilator", "native", "tlp")


def runner_for(backend):
    """The ``run_ops`` of a simulation backend."""
    if backend == "verilator":
        from .cosim import run_ops_verilator
        return run_ops_verilator
    if backend == "native":
        from .native import run_ops_native
        return run_ops_native
    if backend == "tlp":
        from .tlp_host import run_ops_tlp
        return run_ops_tlp
    from .runner import run_ops
    return run_ops


def backend_starting(backend):
    """What a run does before its first transaction."""
    return {"verilator": "building the Verilator model",
            "native": "building the native model"}.get(backend, "building the simulation")


# -- Waveforms --------------------------------------------------------------------------------

def wave_bound(text):
    from .waves import parse_bound
    try:
        return parse_bound(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def print_waves(waves, json_mode):
    """Say where the waveform of a failed run is and the command that opens it there."""
    if json_mode:
        kind = "fst" if str(waves.vcd).endswith(".fst") else "vcd"   # (the dump's format)
        print(json.dumps({"op": "waveform", kind: str(waves.vcd), "gtkw": str(waves.gtkw),
                          "command": waves.command, "transaction": waves.failure.txn
                          if waves.failure is not None else None}))
    else:
        print(f"# {waves.hint()}")
