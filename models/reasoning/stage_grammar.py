"""GBNF grammars that keep a prompted model's answer in the four-stage format.

A stage's content may be any text in which no stage tag appears; the grammar then asks
for the close tag, so a prompted model cannot skip, repeat or reorder stages.
"""

from __future__ import annotations

from stagewise.models.stages import STAGES, Stage

__all__ = ["answer_grammar", "stage_grammar"]


def _tag_free_rules() -> str:
    """GBNF rules for stage content: any text in which no stage tag appears.

    Every tag starts with ``<`` and has no other ``<``, so text is free of tags exactly
    when each ``<`` in it is followed by a ``<``-free piece (``seg``) that does not begin
    with the rest of a tag. ``seg`` walks a trie of those rests: at each node the piece
    may end, leave the trie with any other character (then anything but ``<``), or go on
    along a child; a child that would complete a tag is not offered. So ``x < 5``,
    ``a <b> tag``, ``</`` and ``</SUMMARYX`` are content, while ``</SUMMARY>`` (or any other
    stage tag) is not: only the exact close tag of the open stage ends it.
    """
    rests = [tag[1:] for stage in STAGES for tag in (stage.open_tag, stage.close_tag)]
    names: dict[str, str] = {}
    rules: list[str] = []

    def node(prefix: str) -> str:
        if prefix in names:
            return names[prefix]
        name = f"seg-{len(names)}" if prefix else "seg"
        names[prefix] = name
        nexts = sorted({r[len(prefix)] for r in rests if r.startswith(prefix) and r != prefix})
        alternatives = ['""', f"[^{''.join(nexts)}<] [^<]*"]
        for char in nexts:
            if prefix + char not in rests:  # a completed tag is never offered
                alternatives.append(f'"{char}" {node(prefix + char)}')
        rules.append(f"{name} ::= {' | '.join(alternatives)}")
        return name

    node("")
    return "\n".join(sorted(rules, key=lambda rule: (len(rule.split()[0]), rule)))


_GRAMMAR_HELPERS = r"""
lead ::= [ \t]{0,4} ("\n" [ \t]{0,4}){0,2}
text ::= [ \t\n]* ([^< \t\n] [^<]* | "<" seg) ("<" seg)*
rest ::= [^<]* ("<" seg)*
""" + _tag_free_rules() + "\n"
"""Shared GBNF rules.

``lead``: blanks and at most two newlines before an open tag. ``text``: stage content with at
least one non-blank character and no stage tag. ``rest``: the rest of an already opened
stage, possibly empty. ``seg``: see :func:`_tag_free_rules`.
"""


def _stage_rule(stage: Stage, *, opened: bool) -> str:
    """The GBNF rule for one stage; mid-stage when ``opened``."""
    close = f'"{stage.close_tag}"'
    if opened:
        return f"{stage.value} ::= rest {close}"
    return f'{stage.value} ::= "{stage.open_tag}" text {close}'


def stage_grammar(stage: Stage, *, opened: bool = False) -> str:
    """A GBNF grammar (root rule ``root``) for one stage.

    Args:
        stage: The stage to generate.
        opened: True when generation continues inside the stage (its open tag and maybe some
            content are already in the prompt): the grammar is then only the rest of the
            content and the close tag.

    Returns:
        A grammar forcing: optional blanks and at most two newlines, the open tag, content with
        at least one non-blank character and no tag, the close tag. Nothing may follow.
    """
    return answer_grammar(stage, opened=opened, last=stage)


def answer_grammar(
    first: Stage = Stage.SUMMARY, *, opened: bool = False, last: Stage = Stage.CONCLUSION
) -> str:
    """A GBNF grammar (root rule ``root``) for the stages from ``first`` to ``last``, in order.

    Args:
        first: The first stage to generate.
        opened: True when generation continues inside ``first`` (see :func:`stage_grammar`).
        last: The last stage to generate (the conclusion for a whole answer).

    Returns:
        The grammar; each stage follows the rules of :func:`stage_grammar`, and stages are
        separated by blanks and at most two newlines.

    Raises:
        ValueError: If ``last`` comes before ``first``.
    """
    start, stop = STAGES.index(first), STAGES.index(last)
    if stop < start:
        raise ValueError(f"{last.tag} comes before {first.tag}")
    stages = STAGES[start : stop + 1]
    body = " lead ".join(stage.value for stage in stages)
    root = f"root ::= {body}" if opened else f"root ::= lead {body}"
    rules = [root]
    rules += [_stage_rule(stage, opened=opened and stage is first) for stage in stages]
    return "\n".join(rules) + "\n" + _GRAMMAR_HELPERS.lstrip("\n")
