"""What lives when a model has loaded is left out of later full collections.

``bench/gui_latency.py`` measures what this buys (a full collection in the window of a 3B
model: 43 ms, 1.3 ms frozen); here the real window loads the tiny model through real
llama.cpp.
"""

from __future__ import annotations

import gc
import weakref

from stagewise.desktop.heap import freeze_long_lived
from stagewise.models.storage.app_settings import AppSettings


class Node:
    """A reference cycle's member (only the cycle collector frees it)."""

    def __init__(self) -> None:
        self.me = self


def test_a_loaded_window_leaves_its_long_lived_objects_out_of_full_collections(
        tiny_pair, make_window):
    window = make_window(AppSettings(model=tiny_pair.model, mmproj=tiny_pair.mmproj))
    frozen = gc.get_freeze_count()
    # the modules, the window's wrappers and the model's tables: a full collection walks
    # only what came after them
    assert frozen > 10_000
    assert len(gc.get_objects()) < frozen / 4
    assert window.loaded is not None


def test_garbage_goes_before_the_freeze_and_a_frozen_cycle_at_the_next_one():
    before = Node()
    gone_before = weakref.ref(before)
    del before
    kept = Node()
    frozen_cycle = weakref.ref(kept)

    freeze_long_lived()
    assert gone_before() is None  # garbage when frozen: collected, not frozen

    del kept  # a cycle that became garbage while frozen
    gc.collect()
    assert frozen_cycle() is not None  # a full collection does not walk frozen objects
    freeze_long_lived()
    assert frozen_cycle() is None  # the next freeze lets it go first
