"""The image's part of a prompt, in sequence 0: kept between questions, prepared before
one, and read from or written to the disk cache.

Every question's prompt is evaluated in two steps: the part up to the end of the image
(the system turn, the user turn's start, the image's embeddings), which is the same for
any question about the image, then the question's own tokens. The first step is done at
most once per image and model: :class:`PrefixKeeper` keeps it in sequence 0 after an
answer, does it ahead of the question when an image arrives (:meth:`PrefixKeeper.ensure`
from :meth:`LlamaBackend.prepare`), and reads it from the
:class:`~stagewise.models.inference.prefix_cache.PrefixCache` instead of encoding where an
entry exists. Since every path ends with the same cells in the same places, an answer is
the same whichever way its image got there.
"""

from __future__ import annotations

import hashlib
import time

from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.mtmd_prompt import TokenizedPrompt
from stagewise.models.inference.prefix_cache import PrefixCache, prefix_key
from stagewise.models.reasoning.search_backend import PrefixReport

__all__ = ["PrefixKeeper", "image_key"]

def image_key(image: PreparedImage) -> tuple[int, int, str]:
    """What identifies the pixels handed to libmtmd."""
    return image.width, image.height, hashlib.sha256(image.rgb).hexdigest()


class PrefixKeeper:
    """Which image's prompt start sequence 0 holds, and the way to get one there.

    Attributes:
        cache: The disk cache (None: none).
        last: How the last prefix got into sequence 0 (None before the first).
    """

    SEQ = 0

    def __init__(self, engine: Engine, cache: PrefixCache | None = None) -> None:
        self.engine = engine
        self.cache = cache
        self.last: PrefixReport | None = None
        self.cache_loads = 0
        self.cache_load_s = 0.0
        self._kept: tuple[object, ...] | None = None
        self._unsaved: tuple[dict[str, object], int, float] | None = None

    @property
    def kept(self) -> tuple[object, ...] | None:
        """The key of the prefix sequence 0 holds, or None."""
        return self._kept

    def holds(self, key: tuple[object, ...]) -> bool:
        return self._kept == key

    def forget(self) -> None:
        """Sequence 0 no longer holds a prefix (it was cleared, or a failure left it
        half-written)."""
        self._kept = None
        self._unsaved = None

    def ensure(self, prompt: TokenizedPrompt, key: tuple[object, ...], *,
               save_now: bool) -> PrefixReport:
        """Make sequence 0 hold ``prompt`` up to its image's end, and nothing else.

        Kept from before, it stays; else every sequence is cleared and it is read from
        the disk cache, or encoded (and written to the cache now with ``save_now``, or
        at :meth:`save` otherwise: a question's first token does not wait for the disk).

        Args:
            prompt: The prompt, its image in it.
            key: What identifies the prompt up to the image's end in memory (the image's
                :func:`image_key` and the chunks before it).
            save_now: Write an encode to the cache at once.

        Raises:
            Cancelled: The engine's cancel event was set; nothing is kept.
            EngineError: The encode failed; nothing is kept.
        """
        if self._kept == key and self.last is not None:
            self.last = PrefixReport("memory", 0.0, self.last.encode_s, self.last.saved)
            return self.last
        engine = self.engine
        self.forget()
        engine.clear()
        disk_key = prefix_key(engine, key[0], key[1:]) if self.cache is not None else None
        try:
            if self.cache is not None and disk_key is not None:
                hit = self.cache.load(engine, disk_key, self.SEQ)
                if hit is not None:
                    self._kept = key
                    self.cache_loads += 1
                    self.cache_load_s += hit.seconds
                    self.last = PrefixReport("cache", hit.seconds, hit.encode_s, True)
                    return self.last
            start = time.perf_counter()
            engine.eval_prefix(prompt, self.SEQ)
            seconds = time.perf_counter() - start
        except BaseException:
            engine.clear()
            raise
        self._kept = key
        saved = False
        if disk_key is not None:
            self._unsaved = (disk_key, prompt.shared_pos, seconds)
            if save_now:
                saved = self.save()
        self.last = PrefixReport("encoded", seconds, seconds, saved)
        return self.last

    @property
    def unsaved(self) -> bool:
        """An encode waits to be written to the cache (:meth:`save`)."""
        return self._unsaved is not None and self._kept is not None

    def save(self) -> bool:
        """Write the prefix encoded last to the cache, if it is not there yet and sequence
        0 holds it alone (call it after an answer, once the other sequences are gone)."""
        if self._unsaved is None or self.cache is None or self._kept is None:
            return False
        disk_key, n_pos, encode_s = self._unsaved
        self._unsaved = None
        saved = self.cache.save(self.engine, disk_key, self.SEQ, n_pos, encode_s)
        if saved and self.last is not None:
            self.last = PrefixReport(self.last.origin, self.last.seconds, self.last.encode_s,
                                     True)
        return saved
