"""matplotlib is an optional extra (``pip install -e ".[plot]"``), imported only when something is drawn."""

from __future__ import annotations

from types import ModuleType

from seq2seq.errors import UserError


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` drawing to files (no display needed), or one line saying how to install it."""
    try:
        import matplotlib
    except ImportError as error:
        raise UserError('drawing PNGs needs matplotlib, not installed here: pip install -e ".[plot]"') from error
    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot
