"""Hugging Face chat templates, rendered in a Jinja sandbox.

A GGUF file carries its model's chat template (``tokenizer.chat_template``) as Jinja
source written by whoever published the model: it is untrusted input. It is rendered
here the way ``transformers`` renders it (``ImmutableSandboxedEnvironment`` with
``trim_blocks``, ``lstrip_blocks`` and the ``loopcontrols`` extension; the globals
``raise_exception`` and ``strftime_now``; a ``tojson`` filter that does not escape HTML),
with three differences that keep a hostile or broken template harmless:

* touching an unsafe attribute (``''.__class__``, ``__globals__`` ...) fails at once
  instead of quietly giving an empty string, and ``*`` / ``**`` cannot build huge values;
* the template source is limited to :data:`MAX_TEMPLATE_CHARS` and the output to
  :data:`MAX_OUTPUT_CHARS` (rendering stops as soon as the output is too long);
* every failure is a :class:`ChatTemplateError` (a
  :class:`~stagewise.models.errors.StagewiseError`) whose message says what went wrong.

``{% generation %}`` blocks (used by some templates to mark assistant text for
training) are accepted and render their content, as in ``transformers``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stagewise.models.errors import StagewiseError

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_TEMPLATE_CHARS",
    "ChatTemplateError",
    "render_chat",
]

MAX_TEMPLATE_CHARS = 256 * 1024
"""Longer templates are refused (real ones are at most a few tens of KB)."""

MAX_OUTPUT_CHARS = 1024 * 1024
"""Rendering stops with an error once the output grows past this many characters."""


class ChatTemplateError(StagewiseError):
    """The model's chat template is invalid, refused the conversation, or broke the rules."""


class _TemplateRaised(Exception):
    """``raise_exception(...)`` was called by the template."""


def _raise_exception(message: object = "") -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Sequence[str] | None = None, sort_keys: bool = False) -> str:
    """Like transformers' ``tojson``: plain ``json.dumps``, no HTML escaping."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=tuple(separators) if separators else None, sort_keys=sort_keys)


class _GenerationBlocks(Extension):
    """Accepts ``{% generation %}...{% endgeneration %}`` and renders the body unchanged."""

    tags = frozenset({"generation"})

    def parse(self, parser: jinja2.parser.Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The transformers sandbox, but unsafe attribute access fails instead of going quiet,
    and ``*`` / ``**`` cannot build values far larger than any prompt."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__} object is not allowed")

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any,
                   right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (isinstance(seq, (str, list, tuple)) and isinstance(count, int)
                        and len(seq) * count > MAX_OUTPUT_CHARS):
                    raise SecurityError("a repeated value would be longer than any prompt")
        elif (operator == "**" and isinstance(left, int) and isinstance(right, int)
              and abs(right) > 64 and abs(left) > 1):
            raise SecurityError("an exponent this large is not allowed")
        return super().call_binop(context, operator, left, right)


@functools.cache
def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True,
                   extensions=["jinja2.ext.loopcontrols", _GenerationBlocks])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    try:
        return _environment().from_string(source)
    except TemplateSyntaxError as error:
        raise ChatTemplateError(
            f"the model's chat template is not valid Jinja (line {error.lineno}: {error.message})"
        ) from None
    except (TemplateError, RecursionError, MemoryError) as error:
        raise ChatTemplateError(f"the model's chat template cannot be compiled ({error})") from None


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    **context: Any,
) -> str:
    """Render ``messages`` with a Hugging Face chat template, in the sandbox.

    Args:
        template: The Jinja source (``tokenizer.chat_template``).
        messages: ``{"role": ..., "content": ...}`` dicts; content is a string or a list
            of parts such as ``{"type": "image"}`` and ``{"type": "text", "text": ...}``.
        add_generation_prompt: End with the opening of the assistant's turn.
        **context: Further template variables (``bos_token``, ``eos_token``,
            ``enable_thinking`` ...). ``tools`` and ``documents`` default to None.

    Returns:
        The rendered prompt text.

    Raises:
        ChatTemplateError: The template is too long or invalid, called
            ``raise_exception``, tried to leave the sandbox, failed while rendering, or
            produced more than :data:`MAX_OUTPUT_CHARS` characters.
    """
    if not isinstance(template, str) or not template.strip():
        raise ChatTemplateError("the model has no chat template")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ChatTemplateError(
            f"the model's chat template is {len(template):,} characters long; templates "
            f"longer than {MAX_TEMPLATE_CHARS:,} characters are refused")
    compiled = _compile(template)
    variables: dict[str, Any] = {"tools": None, "documents": None}
    variables.update(context)
    variables["messages"] = [dict(m) for m in messages]
    variables["add_generation_prompt"] = add_generation_prompt
    pieces: list[str] = []
    size = 0
    try:
        for piece in compiled.generate(**variables):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise ChatTemplateError(
                    f"the model's chat template produced more than {MAX_OUTPUT_CHARS:,} "
                    "characters; rendering was stopped")
            pieces.append(piece)
    except ChatTemplateError:
        raise
    except _TemplateRaised as error:
        raise ChatTemplateError(
            f"the model's chat template refused the conversation: {error}") from None
    except SecurityError as error:
        raise ChatTemplateError(f"the model's chat template did something its sandbox "
                                f"does not allow ({error})") from None
    except (TemplateError, RecursionError, MemoryError, OverflowError) as error:
        raise ChatTemplateError(f"the model's chat template failed ({error})") from None
    except Exception as error:  # a template can raise anything Python operators raise
        raise ChatTemplateError(
            f"the model's chat template failed ({type(error).__name__}: {error})") from None
    return "".join(pieces)
