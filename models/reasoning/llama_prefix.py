"""The image's part of a prompt, in sequence 0: kept between questions, prepared before
one, and read from or written to the disk cache.

Every question's prompt is evaluated in three steps: the part up to the end of the image
(the system turn, the user turn's start, the image's embeddings), which is the same for
any question about the image; then the text every question has after the image (a
prompted model's stage instruction: the *after* tokens, none for a native model); then the
question's own tokens. The first two are done at most once per image and model:
:class:`PrefixKeeper` keeps them in sequence 0 after an answer, does them ahead of the
question when an image arrives (:meth:`PrefixKeeper.ensure` from
:meth:`LlamaBackend.prepare`), and reads them from the
:class:`~stagewise.models.inference.prefix_cache.PrefixCache` instead of encoding where an
entry exists. Each step is always one evaluation of the same tokens, so every path ends
with the same cells in the same places, and an answer is the same whichever way its image
got there.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage
from stagewise.models.inference.mtmd_prompt import TokenizedPrompt
from stagewise.models.inference.prefix_cache import PrefixCache, prefix_key
from stagewise.models.reasoning.search_backend import PrefixReport

__all__ = ["PrefixKeeper", "common_start", "image_key", "images_key"]

def common_start(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """The tokens ``a`` and ``b`` both start with."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return tuple(a[:n])


def image_key(image: PreparedImage) -> tuple[int, int, str]:
    """What identifies the pixels handed to libmtmd."""
    return image.width, image.height, hashlib.sha256(image.rgb).hexdigest()


def images_key(images: Sequence[PreparedImage]) -> tuple[int, int, str]:
    """What identifies one question's images: :func:`image_key` for one; for several,
    their count, 0, and a digest of each one's key in order."""
    if len(images) == 1:
        return image_key(images[0])
    keys = "|".join(":".join(map(str, image_key(image))) for image in images)
    return len(images), 0, hashlib.sha256(keys.encode()).hexdigest()


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
        self._shared_pos = 0
        self._after: tuple[int, ...] = ()
        self._unsaved: tuple[dict[str, object], float] | None = None

    @property
    def kept(self) -> tuple[object, ...] | None:
        """The key of the prefix sequence 0 holds, or None."""
        return self._kept

    @property
    def end_pos(self) -> int:
        """The next position after what sequence 0 holds: the image, then the after
        tokens."""
        return self._shared_pos + len(self._after)

    def holds(self, key: tuple[object, ...]) -> bool:
        return self._kept == key

    def forget(self) -> None:
        """Sequence 0 no longer holds a prefix (it was cleared, or a failure left it
        half-written)."""
        self._kept = None
        self._after = ()
        self._unsaved = None

    def ensure(self, prompt: TokenizedPrompt, key: tuple[object, ...], *,
               after: Sequence[int] = (), save_now: bool) -> PrefixReport:
        """Make sequence 0 hold ``prompt`` up to its image's end, then the text tokens
        ``after`` it, and nothing else.

        Kept from before, the image stays; else every sequence is cleared and it is read
        from the disk cache, or encoded (and written to the cache now with ``save_now``,
        or at :meth:`save` otherwise: a question's first token does not wait for the
        disk). The after tokens stay where sequence 0 (or the entry read) holds exactly
        them; else they are evaluated again, in one step, so that their cells are the
        same whichever way they got there.

        Args:
            prompt: The prompt, its image in it.
            key: What identifies the prompt up to the image's end in memory (the image's
                :func:`image_key` and the chunks before it).
            after: Text tokens that follow the image in every question's prompt.
            save_now: Write an encode to the cache at once.

        Raises:
            Cancelled: The engine's cancel event was set; nothing is kept.
            EngineError: The encode failed; nothing is kept.
        """
        after, engine = tuple(after), self.engine
        if self._kept == key and self.last is not None:
            start = time.perf_counter()
            try:
                self._write_after(after)
            except BaseException:
                self.forget()
                engine.clear()
                raise
            self.last = PrefixReport("memory", time.perf_counter() - start,
                                     self.last.encode_s, self.last.saved)
            return self.last
        self.forget()
        engine.clear()
        disk_key = prefix_key(engine, key[0], key[1:]) if self.cache is not None else None
        try:
            if self.cache is not None and disk_key is not None:
                hit = self.cache.load(engine, disk_key, self.SEQ)
                if hit is not None:
                    self._kept, self._shared_pos = key, hit.n_pos - len(hit.after)
                    self._after = hit.after
                    self.cache_loads += 1
                    start = time.perf_counter()
                    if self._write_after(after) and len(after) > len(hit.after):
                        self._unsaved = (disk_key, hit.encode_s)  # keep the longer after
                    seconds = hit.seconds + time.perf_counter() - start
                    self.cache_load_s += seconds
                    self.last = PrefixReport("cache", seconds, hit.encode_s, True)
                    if save_now and self._unsaved is not None:
                        self.save()
                    return self.last
            start = time.perf_counter()
            engine.eval_prefix(prompt, self.SEQ)
            self._kept, self._shared_pos = key, prompt.shared_pos
            self._write_after(after)
            seconds = time.perf_counter() - start
        except BaseException:
            self.forget()
            engine.clear()
            raise
        saved = False
        if disk_key is not None:
            self._unsaved = (disk_key, seconds)
            if save_now:
                saved = self.save()
        self.last = PrefixReport("encoded", seconds, seconds, saved)
        return self.last

    def _write_after(self, after: tuple[int, ...]) -> bool:
        """Make sequence 0 hold exactly ``after`` after the image; whether it changed."""
        if after == self._after:
            return False
        engine = self.engine
        engine.remove_seq(self.SEQ, self._shared_pos, -1)
        self._after = ()
        if after:
            engine.eval_tokens([(self.SEQ, self._shared_pos, after)])
            engine.stats.prompt_tokens += len(after)
            self._after = after
        return True

    @property
    def unsaved(self) -> bool:
        """An encode waits to be written to the cache (:meth:`save`)."""
        return self._unsaved is not None and self._kept is not None

    def save(self) -> bool:
        """Write the prefix encoded last to the cache, if it is not there yet and sequence
        0 holds it alone (call it after an answer, once the other sequences are gone)."""
        if self._unsaved is None or self.cache is None or self._kept is None:
            return False
        disk_key, encode_s = self._unsaved
        self._unsaved = None
        saved = self.cache.save(self.engine, disk_key, self.SEQ, self.end_pos, encode_s,
                                self._after)
        if saved and self.last is not None:
            self.last = PrefixReport(self.last.origin, self.last.seconds, self.last.encode_s,
                                     True)
        return saved
