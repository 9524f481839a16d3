"""A text-only reply from a loaded engine: one user turn, no image, one sequence.

The search never asks this way; the evaluation's grader does
(:mod:`stagewise.models.evaluation.grader`): VLMEvalKit sends its grading prompts to a
text-only chat model, and a vision model answers them with its chat template and no image,
as the reasoning check (:func:`stagewise.models.reasoning.llama_judging.check`) asks its
text-only question.
"""

from __future__ import annotations

from stagewise.models.errors import EngineError
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.sampling import GREEDY, Sampler, SamplingSettings

__all__ = ["generate_text"]


def generate_text(engine: Engine, prompt: str, *, max_tokens: int,
                  sampling: SamplingSettings = GREEDY, seed: int = 0, seq: int = 0) -> str:
    """The model's reply to ``prompt`` as the user's turn, text only.

    The prompt goes through the model's chat template without an image and is tokenized
    as plain text (a prompt spelling ``<|im_end|>`` cannot end the turn). The reply stops
    at the end of the assistant's turn, after ``max_tokens`` tokens, or where the context
    is full. Sequence ``seq`` is used and left empty.

    Args:
        engine: The loaded engine.
        prompt: The user's text.
        max_tokens: The most tokens the reply may have.
        sampling: How tokens are picked (greedy by default).
        seed: The sampler's seed (sampling only).
        seq: The sequence to use.

    Returns:
        The reply, without the turn's end, blanks at its ends stripped.

    Raises:
        EngineError: The prompt alone fills the context, or llama.cpp failed.
        Cancelled: The engine's cancel event was set.
    """
    tokens = engine.tokenize_plain(engine.chat_prompt(prompt, with_image=False), (prompt,),
                                   add_special=True)
    room = engine.n_ctx - len(tokens)
    if room < 1:
        raise EngineError(f"the prompt needs {len(tokens)} tokens but the context holds "
                          f"{engine.n_ctx}: raise the context size")
    engine.remove_seq(seq)
    sampler = Sampler(engine.vocab, sampling, seed)
    reply = bytearray()
    try:
        index = engine.eval_tokens([(seq, 0, tokens)])[seq]
        position = len(tokens)
        for _ in range(min(max_tokens, room)):
            token = sampler.sample(engine.ctx, index)
            if engine.is_eog(token):
                break
            reply += engine.piece(token)
            if position >= engine.n_ctx:
                break
            index = engine.eval_tokens([(seq, position, [token])])[seq]
            position += 1
    finally:
        sampler.close()
        engine.remove_seq(seq)
    return reply.decode("utf-8", "replace").strip()
