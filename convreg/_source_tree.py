"""A loud warning when convreg is imported from a source tree whose compiled extensions
are not built (e.g. ``python -m convreg check`` run in the clone root after a
non-editable ``pip install .``: the clone's package shadows the installed one)."""

from __future__ import annotations

import glob
import os
import warnings


def warn_if_unbuilt() -> bool:
    """Warn once (at import) when the package sits in an unbuilt source tree."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    if not (os.path.isfile(os.path.join(root, "setup.py"))
            and os.path.isdir(os.path.join(root, "pyx"))):
        return False
    if glob.glob(os.path.join(here, "_pad.*")) and [
            p for p in glob.glob(os.path.join(here, "_pad.*")) if not p.endswith((".pyx", ".c"))]:
        return False
    warnings.warn(
        f"convreg is imported from the source tree {root}, whose compiled extensions are "
        "not built, so only the slow 'python' backend can run (an installed convreg, if "
        "any, is shadowed because this directory comes first on sys.path). Build in place "
        "with `pip install -e .`, or run from another directory.",
        RuntimeWarning, stacklevel=3)
    return True
