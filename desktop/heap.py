"""Python's cycle collector and the window's frame budget.

A full collection walks every container object the process tracks, holding the GIL, in
whichever thread happened to trigger it: the window waits for it even when the engine
thread runs it. Once the window is up and a model loaded the process tracks about 90,000
(Qt's wrappers, the modules, the model's tables), and a full collection took 36 ms on a
quiet 2-core machine, two frames at 60 Hz (``bench/gui_latency.py`` measures it). Nearly
all of them live as long as the window, so :func:`freeze_long_lived` moves them out of
the collector's walk once a model has loaded (:func:`gc.freeze`): later collections walk
only what came since. Reference counting still frees a frozen object; only a reference
cycle among them waits, for the next call, which lets them go first.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived"]


def freeze_long_lived() -> int:
    """Collect what is garbage now, then leave everything still alive out of later
    collections; returns how many objects that is (:func:`gc.get_freeze_count`)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
