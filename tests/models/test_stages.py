"""Tests for stagewise.models.stages: the parser, stopping points, grammars and prompt
text."""

from __future__ import annotations

import ctypes
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.reasoning.stage_grammar import answer_grammar, stage_grammar
from stagewise.models.stages import (
    PROMPTED_INSTRUCTION,
    STAGES,
    ParsedAnswer,
    Stage,
    StageDelta,
    StageParser,
    parse_answer,
    sentence_end,
    stage_end,
    user_text,
)

S, C, R, K = Stage.SUMMARY, Stage.CAPTION, Stage.REASONING, Stage.CONCLUSION
WELL_FORMED = (
    "<SUMMARY>I will count the cats.</SUMMARY>\n\n"
    "<CAPTION>Two cats on a sofa.</CAPTION>\n\n"
    "<REASONING>There are two cats. So the answer is 2.</REASONING>\n\n"
    "<CONCLUSION>2</CONCLUSION>"
)

# An independent definition of a tag, to check the parser's hand-written scanner against.
TAG_RE = re.compile(
    r"<[ \t]{0,3}(?:(/)[ \t]{0,3})?(summary|caption|reasoning|conclusion)[ \t]{0,3}>",
    re.IGNORECASE | re.ASCII,
)


def feed_chunks(chunks: Iterable[str]) -> tuple[StageParser, list[StageDelta]]:
    parser = StageParser()
    deltas: list[StageDelta] = []
    for chunk in chunks:
        deltas += parser.feed(chunk)
    deltas += parser.finish()
    return parser, deltas


def state(parser: StageParser) -> tuple[object, ...]:
    return (parser.contents, parser.opened, parser.closed, parser.current, parser.stray)


def joined(deltas: list[StageDelta], stage: Stage | None) -> str:
    return "".join(d.text for d in deltas if d.stage is stage)


# --------------------------------------------------------------------------------------------
# Stage, StageMode, prompt text


def test_stage_properties() -> None:
    assert STAGES == (S, C, R, K)
    assert S.tag == "SUMMARY"
    assert S.open_tag == "<SUMMARY>"
    assert K.close_tag == "</CONCLUSION>"
    assert R.title == "Reasoning"
    assert [s.next for s in STAGES] == [C, R, K, None]


def test_stage_mode_is_a_string_enum() -> None:
    assert StageMode("native") is StageMode.NATIVE
    assert StageMode.PROMPTED == "prompted"


def test_user_text() -> None:
    assert user_text("How many cats?", StageMode.NATIVE) == "How many cats?"
    prompted = user_text("How many cats?", StageMode.PROMPTED)
    assert prompted == PROMPTED_INSTRUCTION + "\n\nQuestion: How many cats?"


def test_prompted_instruction_names_the_tags_in_order() -> None:
    positions = [PROMPTED_INSTRUCTION.index(s.open_tag) for s in STAGES]
    assert positions == sorted(positions)
    for stage in STAGES:
        assert stage.close_tag in PROMPTED_INSTRUCTION
    assert "letter" in PROMPTED_INSTRUCTION


# --------------------------------------------------------------------------------------------
# The parser on chosen inputs


def test_well_formed_answer() -> None:
    answer = parse_answer(WELL_FORMED)
    assert answer.stages == {
        S: "I will count the cats.",
        C: "Two cats on a sofa.",
        R: "There are two cats. So the answer is 2.",
        K: "2",
    }
    assert answer.complete
    assert answer.conclusion == "2"
    assert answer.stray == ""


def test_streaming_one_character_at_a_time() -> None:
    parser, deltas = feed_chunks(WELL_FORMED)
    assert parser.contents[C] == "Two cats on a sofa."
    assert joined(deltas, C) == "Two cats on a sofa."
    assert joined(deltas, None) == "\n\n" * 3
    assert parser.closed == set(STAGES)
    assert parser.current is None


def test_partial_tag_is_held_back_until_resolved() -> None:
    parser = StageParser()
    assert parser.feed("<SUMMARY>plan</SUMM") == [StageDelta(S, "plan")]
    assert parser.current is S
    assert parser.feed("ARY>") == []
    assert parser.current is None
    assert parser.closed == {S}
    assert parser.feed("\n<") == [StageDelta(None, "\n")]
    assert parser.feed("CAP") == []
    assert parser.feed("TION>The") == [StageDelta(C, "The")]


def test_held_back_text_that_is_not_a_tag_is_released() -> None:
    parser = StageParser()
    parser.feed("<CAPTION>x <")
    assert parser.contents[C] == "x "
    assert parser.feed("5 y") == [StageDelta(C, "<5 y")]
    parser.feed(" </CAPTIONS")
    assert parser.contents[C] == "x <5 y </CAPTIONS"


def test_finish_releases_a_trailing_partial_tag_as_text() -> None:
    parser = StageParser()
    parser.feed("<SUMMARY>abc</SUMM")
    assert parser.finish() == [StageDelta(S, "</SUMM")]
    assert parser.contents[S] == "abc</SUMM"
    assert parser.current is None
    assert parser.closed == set()


def test_lenient_tags_case_and_blanks() -> None:
    answer = parse_answer(
        "<summary>a</Summary>< CAPTION >b</ caption><Reasoning>c< / REASONING >"
        "<\tconclusion\t>d</CONCLUSION   >"
    )
    assert answer.stages == {S: "a", C: "b", R: "c", K: "d"}
    assert answer.complete


def test_too_many_blanks_or_newlines_are_not_tags() -> None:
    answer = parse_answer("<SUMMARY>a<    /SUMMARY>b</SUMMARY\n>c")
    assert answer.stages[S] == "a<    /SUMMARY>b</SUMMARY\n>c"
    assert not answer.closed


def test_non_ascii_letters_do_not_make_tags() -> None:
    # "ſ".upper() == "S": such a tag must not be recognised.
    answer = parse_answer("<ſUMMARY>x")
    assert answer.stray == "<ſUMMARY>x"


def test_open_twice_while_open_is_ignored() -> None:
    answer = parse_answer("<SUMMARY>a<SUMMARY>b</SUMMARY>")
    assert answer.stages[S] == "ab"
    assert answer.closed == {S}


def test_reopened_stage_appends_after_a_newline() -> None:
    parser, deltas = feed_chunks(["<SUMMARY>a</SUMMARY><CAPTION>c</CAPTION><SUMMARY>b</SUMMARY>"])
    assert parser.contents[S] == "a\nb"
    assert joined(deltas, S) == "a\nb"
    assert parser.closed == {S, C}


def test_reopened_stage_ending_in_whitespace_gets_no_separator() -> None:
    answer = parse_answer("<SUMMARY>a </SUMMARY><SUMMARY>b</SUMMARY>")
    assert answer.stages[S] == "a b"


def test_reopened_stage_is_open_again() -> None:
    parser, _ = feed_chunks(["<SUMMARY>a</SUMMARY><SUMMARY>b"])
    assert S not in parser.closed
    assert S in parser.opened


def test_close_without_open_is_dropped() -> None:
    answer = parse_answer("hello</SUMMARY><CAPTION>x</CAPTION>")
    assert answer.stray == "hello"
    assert answer.stages[S] == ""
    assert answer.closed == {C}


def test_mismatched_close_is_dropped() -> None:
    parser, _ = feed_chunks(["<SUMMARY>a</CAPTION>b"])
    assert parser.contents[S] == "ab"
    assert parser.current is None
    assert parser.closed == set()


def test_other_open_tag_closes_the_current_stage() -> None:
    parser, _ = feed_chunks(["<SUMMARY>a<CAPTION>b</CAPTION>"])
    assert parser.contents[S] == "a"
    assert parser.contents[C] == "b"
    assert parser.closed == {S, C}


def test_stages_out_of_order_are_kept() -> None:
    answer = parse_answer("<CONCLUSION>B</CONCLUSION><SUMMARY>s</SUMMARY>")
    assert answer.conclusion == "B"
    assert answer.stages[S] == "s"
    assert not answer.complete


def test_text_outside_tags() -> None:
    parser, deltas = feed_chunks(
        ["Sure! Here it is.\n<SUMMARY>a</SUMMARY>  \n  <CAPTION>b</CAPTION> Done."]
    )
    assert parser.stray == "Sure! Here it is.\nDone."
    assert joined(deltas, None) == "Sure! Here it is.\n  \n   Done."


def test_unclosed_stage_at_the_end() -> None:
    parser = StageParser()
    parser.feed("<SUMMARY>a</SUMMARY><CAPTION>two cats")
    assert parser.current is C
    parser.finish()
    assert parser.current is None
    assert parser.contents[C] == "two cats"
    assert C not in parser.closed
    answer = parse_answer("<SUMMARY>a</SUMMARY><CAPTION>two cats")
    assert answer.stages[C] == "two cats"
    assert not answer.complete
    assert answer.conclusion == ""


def test_nested_junk() -> None:
    answer = parse_answer("<<SUMMARY>>plan<</SUMMARY>>")
    assert answer.stages[S] == ">plan<"
    assert answer.stray == "<\n>"
    assert answer.closed == {S}


def test_empty_input() -> None:
    parser, deltas = feed_chunks([])
    assert deltas == []
    assert parser.stray == ""
    assert parse_answer("") == ParsedAnswer(
        stages=dict.fromkeys(STAGES, ""), closed=frozenset(), stray=""
    )
    assert StageParser().feed("") == []


def test_unicode() -> None:
    text = "<SUMMARY>猫は何匹？ 🐈‍⬛</SUMMARY><CONCLUSION>２ — ça va</CONCLUSION>"
    parser, _ = feed_chunks(text)
    assert parser.contents[S] == "猫は何匹？ 🐈‍⬛"
    assert parser.contents[K] == "２ — ça va"


def test_missing_stages_are_empty_strings() -> None:
    answer = parse_answer("<CONCLUSION> A </CONCLUSION>")
    assert set(answer.stages) == set(STAGES)
    assert answer.stages[S] == ""
    assert answer.conclusion == "A"


# --------------------------------------------------------------------------------------------
# The parser on generated inputs


FRAGMENTS = [
    *(s.open_tag for s in STAGES),
    *(s.close_tag for s in STAGES),
    "<summary>",
    "</Caption>",
    "< REASONING >",
    "</ conclusion\t>",
    "<    SUMMARY>",
    "<",
    "</",
    "<<",
    ">",
    ">>",
    "SUMM",
    "ARY>",
    "<SUMMA",
    "RY",
    "CONCLUSION",
    "/",
    " ",
    "\t",
    "\n",
    "\n\n",
    "cat",
    "two cats.",
    "x < 5",
    "x<5",
    "? ",
    "é",
    "🐈",
    "猫",
    "ſ",
    "\r\n",
]
texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)


@st.composite
def chunkings(draw: st.DrawFn, text_strategy: st.SearchStrategy[str] = texts) -> list[str]:
    text = draw(text_strategy)
    cuts = draw(st.lists(st.integers(0, len(text)), max_size=12))
    bounds = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def reference_parse(text: str) -> tuple[dict[Stage, str], set[Stage]]:
    """A whole-text parser built on TAG_RE with the documented rules, as an oracle."""
    contents = dict.fromkeys(STAGES, "")
    closed: set[Stage] = set()
    current: Stage | None = None
    pieces = TAG_RE.split(text)  # text, slash, name, text, slash, name, ...
    for index in range(0, len(pieces), 3):
        if current is not None:
            contents[current] += pieces[index]
        if index + 2 >= len(pieces):
            break
        slash, stage = pieces[index + 1], Stage(pieces[index + 2].lower())
        if slash and stage is current:
            closed.add(stage)
            current = None
        elif not slash and stage is not current:
            if current is not None:
                closed.add(current)
            closed.discard(stage)
            if contents[stage] and not contents[stage][-1].isspace():
                contents[stage] += "\n"
            current = stage
    return contents, closed


@settings(max_examples=400)
@given(chunkings())
def test_chunking_does_not_change_the_result(chunks: list[str]) -> None:
    whole, whole_deltas = feed_chunks(["".join(chunks)])
    parts, part_deltas = feed_chunks(chunks)
    assert state(parts) == state(whole)
    for stage in (*STAGES, None):
        assert joined(part_deltas, stage) == joined(whole_deltas, stage)


@settings(max_examples=400)
@given(chunkings())
def test_deltas_add_up_to_contents_and_never_hold_a_tag(chunks: list[str]) -> None:
    parser, deltas = feed_chunks(chunks)
    for stage in STAGES:
        assert joined(deltas, stage) == parser.contents[stage]
    for delta in deltas:
        assert delta.text
        assert TAG_RE.search(delta.text) is None


@settings(max_examples=400)
@given(texts)
def test_parser_agrees_with_a_regex_reference(text: str) -> None:
    contents, closed = reference_parse(text)
    parser, _ = feed_chunks([text])
    assert parser.contents == contents
    assert parser.closed == closed


content_text = st.text(
    alphabet=st.characters(blacklist_characters="<", blacklist_categories=("Cs",)), max_size=30
)


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[dict[Stage, str], str]:
    contents = {stage: draw(content_text) for stage in STAGES}
    separators = [draw(st.sampled_from(["", "\n", "\n\n", " \n"])) for _ in STAGES]
    text = "".join(
        f"{sep}{stage.open_tag}{contents[stage]}{stage.close_tag}"
        for sep, stage in zip(separators, STAGES, strict=True)
    )
    return contents, text


@settings(max_examples=300)
@given(well_formed(), st.lists(st.integers(0, 400), max_size=10))
def test_well_formed_contents_round_trip(
    case: tuple[dict[Stage, str], str], cuts: list[int]
) -> None:
    contents, text = case
    bounds = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    parser, _ = feed_chunks(text[a:b] for a, b in itertools.pairwise(bounds))
    assert parser.contents == contents
    assert parser.closed == set(STAGES)
    assert parser.stray == ""
    answer = parse_answer(text)
    assert answer.complete
    assert answer.stages == {stage: value.strip() for stage, value in contents.items()}


@settings(max_examples=200)
@given(texts)
def test_stop_points_never_raise_and_stay_in_range(text: str) -> None:
    for stage in STAGES:
        end = stage_end(text, stage)
        assert end is None or 0 < end <= len(text)
    end = sentence_end(text)
    assert end is None or 0 < end <= len(text)


# --------------------------------------------------------------------------------------------
# stage_end and sentence_end


def test_stage_end() -> None:
    text = "<SUMMARY>a</SUMMARY>\n<CAPTION>b</CAPTION>"
    assert stage_end(text, S) == text.index("\n")
    assert stage_end(text, C) == len(text)
    assert stage_end(text, R) is None
    assert stage_end("plan</summary >more", S) == len("plan</summary >")
    assert stage_end("plan</SUMM", S) is None
    assert stage_end("<SUMMARY>x", S) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The cat is black. It sleeps.", "The cat is black. "),
        ("Is it? Yes.", "Is it? "),
        ("Wow! Great", "Wow! "),
        ("One line\nTwo", "One line\n"),
        ("It ends.\nNext", "It ends.\n"),
        ("\n\n<CAPTION>Two cats. More", "\n\n<CAPTION>Two cats. "),
        ("\n  \nA cat\n", "\n  \nA cat\n"),
        ("The end</SUMMARY>\n", "The end</SUMMARY>"),
        ("</CAPTION>\n\n<REASONING>", "</CAPTION>"),
        ("Pi is 3.14 exactly. Yes", "Pi is 3.14 exactly. "),
        ("x < 5. Then", "x < 5. "),
    ],
)
def test_sentence_end(text: str, expected: str) -> None:
    end = sentence_end(text)
    assert end is not None
    assert text[:end] == expected


@pytest.mark.parametrize(
    "text", ["", "The cat", "The cat.", "3.14", "\n\n", "<CAPTION>\n", "a</CAP"]
)
def test_sentence_not_finished(text: str) -> None:
    assert sentence_end(text) is None


# --------------------------------------------------------------------------------------------
# Grammars


_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[a-z][a-z0-9-]*|\{\d+(?:,\d*)?\}|[()|*+?]|\s+'
)


def gbnf_to_regex(grammar: str) -> re.Pattern[str]:
    """Translate the non-recursive GBNF subset the grammars use into a Python regex."""
    rules = {}
    for line in grammar.strip().splitlines():
        name, _, body = line.partition(" ::= ")
        assert re.fullmatch(r"[a-z][a-z0-9-]*", name), name
        rules[name] = body

    def expand(name: str, depth: int = 0) -> str:
        assert depth < 20, "recursive grammar"
        out, pos, body = [], 0, rules[name]
        while pos < len(body):
            match = _TOKEN.match(body, pos)
            assert match, f"cannot read {body[pos:]!r}"
            token, pos = match.group(), match.end()
            if token.startswith('"'):
                out.append(re.escape(token[1:-1].encode().decode("unicode_escape")))
            elif token[0].isalpha():
                out.append(f"(?:{expand(token, depth + 1)})")
            elif not token.isspace():
                out.append(token)  # classes, groups, | and quantifiers read the same in Python
        return "".join(out)

    return re.compile(expand("root"), re.DOTALL)


def test_grammars_name_the_tags_in_order() -> None:
    grammar = answer_grammar()
    tags = [t for s in STAGES for t in (s.open_tag, s.close_tag)]
    positions = [grammar.index(f'"{tag}"') for tag in tags]
    assert positions == sorted(positions)
    for stage in STAGES:
        single = stage_grammar(stage)
        assert f'"{stage.open_tag}"' in single
        assert f'"{stage.close_tag}"' in single
        assert single.index(stage.open_tag) < single.index(stage.close_tag)
        assert all(other.open_tag not in single for other in STAGES if other is not stage)
        opened = stage_grammar(stage, opened=True)
        assert stage.open_tag not in opened
        assert stage.close_tag in opened


def test_answer_grammar_from_a_later_stage() -> None:
    grammar = answer_grammar(R)
    assert S.open_tag not in grammar
    assert C.open_tag not in grammar
    assert grammar.index(R.open_tag) < grammar.index(K.open_tag)
    with pytest.raises(ValueError, match="before"):
        answer_grammar(K, last=S)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<SUMMARY>plan</SUMMARY>", True),
        ("\n\n<SUMMARY>plan</SUMMARY>", True),
        ("  \n <SUMMARY> plan\n more </SUMMARY>", True),
        ("<SUMMARY>x<5 and y<=2</SUMMARY>", True),
        ("\n\n\n<SUMMARY>plan</SUMMARY>", False),
        ("<SUMMARY></SUMMARY>", False),
        ("<SUMMARY> \n </SUMMARY>", False),
        ("<SUMMARY>x < 5</SUMMARY>", True),
        ("<SUMMARY>a <b> tag</SUMMARY>", True),
        ("<SUMMARY>a </ b and </i></SUMMARY>", True),
        ("<SUMMARY><</SUMMARY>", True),
        ("<SUMMARY>x </SUMM</SUMMARY>", True),
        ("<SUMMARY>x </SUMMARYX</SUMMARY>", True),
        ("<SUMMARY>plan</CAPTION></SUMMARY>", False),
        ("<SUMMARY>a<CAPTION>b</SUMMARY>", False),
        ("<SUMMARY>a</SUMMARY>b</SUMMARY>", False),
        ("<SUMMARY>plan</SUMMARY>\n", False),
        ("plan</SUMMARY>", False),
        ("<summary>plan</summary>", False),
    ],
)
def test_stage_grammar_language(text: str, ok: bool) -> None:
    assert bool(gbnf_to_regex(stage_grammar(S)).fullmatch(text)) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("plan</CAPTION>", True),
        ("</CAPTION>", True),
        ("\n</CAPTION>", True),
        ("a<b</CAPTION>", True),
        ("<CAPTION>plan</CAPTION>", False),
        ("a</CAPTION></CAPTION>", False),
    ],
)
def test_opened_stage_grammar_language(text: str, ok: bool) -> None:
    assert bool(gbnf_to_regex(stage_grammar(C, opened=True)).fullmatch(text)) is ok


def test_answer_grammar_language() -> None:
    pattern = gbnf_to_regex(answer_grammar())
    assert pattern.fullmatch(WELL_FORMED)
    assert pattern.fullmatch(WELL_FORMED.replace("\n", ""))
    assert not pattern.fullmatch(WELL_FORMED.replace("<CAPTION>Two cats on a sofa.</CAPTION>", ""))
    assert not pattern.fullmatch(WELL_FORMED + "\nThanks!")
    rest = WELL_FORMED[WELL_FORMED.index("sofa") :]
    assert gbnf_to_regex(answer_grammar(C, opened=True)).fullmatch(rest)


@settings(max_examples=200)
@given(well_formed())
def test_text_the_answer_grammar_allows_parses_completely(
    case: tuple[dict[Stage, str], str],
) -> None:
    contents, text = case
    if gbnf_to_regex(answer_grammar()).fullmatch(text):
        answer = parse_answer(text)
        assert answer.complete
        assert answer.stages == {stage: value.strip() for stage, value in contents.items()}


@pytest.fixture(scope="module")
def llama_vocab(request: pytest.FixtureRequest) -> Iterator[object]:
    """The vocabulary of the tiny test model, loaded through llama.cpp's C API."""
    lc = pytest.importorskip("llama_cpp.llama_cpp")
    try:
        pair = request.getfixturevalue("tiny_pair")
    except pytest.FixtureLookupError:
        pytest.skip("no tiny_pair fixture in tests/conftest.py")
    model = lc.llama_model_load_from_file(str(pair.model).encode(), lc.llama_model_default_params())
    assert model, "llama.cpp could not load the tiny model"
    try:
        yield lc.llama_model_get_vocab(model)
    finally:
        lc.llama_model_free(model)


def llama_grammar_accepts(vocab: object, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write exactly ``text``, then stop."""
    from llama_cpp import llama_cpp as lc

    sampler = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, grammar
    try:
        data = text.encode()
        tokens = (lc.llama_token * (len(data) + 8))()
        count = lc.llama_tokenize(vocab, data, len(data), tokens, len(tokens), False, True)
        assert count >= 0
        for token in [*tokens[:count], lc.llama_vocab_eos(vocab)]:
            candidate = lc.llama_token_data(token, 0.0, 0.0)
            array = lc.llama_token_data_array(ctypes.pointer(candidate), 1, -1, False)
            lc.llama_sampler_apply(sampler, ctypes.byref(array))
            if candidate.logit == float("-inf"):
                return False
            if token != lc.llama_vocab_eos(vocab):
                lc.llama_sampler_accept(sampler, token)  # only ever an allowed token
        return True
    finally:
        lc.llama_sampler_free(sampler)


def all_grammars() -> list[str]:
    grammars = [answer_grammar(), answer_grammar(R, opened=True)]
    for stage in STAGES:
        grammars += [stage_grammar(stage), stage_grammar(stage, opened=True)]
    return grammars


def test_grammars_compile_in_llama_cpp(llama_vocab: object) -> None:
    from llama_cpp import llama_cpp as lc

    broken = lc.llama_sampler_init_grammar(llama_vocab, b"root ::= undefined-rule", b"root")
    assert not broken  # so a non-NULL sampler below means the grammar parsed
    for grammar in all_grammars():
        sampler = lc.llama_sampler_init_grammar(llama_vocab, grammar.encode(), b"root")
        assert sampler, grammar
        lc.llama_sampler_free(sampler)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<SUMMARY>plan</SUMMARY>", True),
        ("\n\n<SUMMARY>plan</SUMMARY>", True),
        (" \n\t<SUMMARY> x<5 y<=2\n</SUMMARY>", True),
        ("\n\n\n<SUMMARY>plan</SUMMARY>", False),
        ("<SUMMARY> </SUMMARY>", False),
        ("<SUMMARY>x < 5</SUMMARY>", True),
        ("<SUMMARY>a <b> tag, and </ alone</SUMMARY>", True),
        ("<SUMMARY>a</CAPTION>b</SUMMARY>", False),
        ("<SUMMARY>plan</SUMMARY>\n", False),
        ("<summary>plan</summary>", False),
    ],
)
def test_llama_cpp_reads_the_stage_grammar_as_intended(
    llama_vocab: object, text: str, ok: bool
) -> None:
    assert llama_grammar_accepts(llama_vocab, stage_grammar(S), text) is ok
    assert bool(gbnf_to_regex(stage_grammar(S)).fullmatch(text)) is ok


def test_llama_cpp_reads_the_answer_grammars_as_intended(llama_vocab: object) -> None:
    assert llama_grammar_accepts(llama_vocab, answer_grammar(), WELL_FORMED)
    assert not llama_grammar_accepts(llama_vocab, answer_grammar(), WELL_FORMED + " ")
    rest = WELL_FORMED[WELL_FORMED.index("sofa") :]
    assert llama_grammar_accepts(llama_vocab, answer_grammar(C, opened=True), rest)
    assert llama_grammar_accepts(llama_vocab, stage_grammar(C, opened=True), "</CAPTION>")


def test_angle_brackets_the_grammar_allows_stay_in_their_stage() -> None:
    content = "x < 5, a <b> tag, </ alone and </SUMM"
    text = "".join(f"{s.open_tag}{content if s is S else 'ok'}{s.close_tag}" for s in STAGES)
    assert gbnf_to_regex(answer_grammar()).fullmatch(text)
    answer = parse_answer(text)
    assert answer.complete
    assert answer.stages[S] == content


REAL_OUTPUTS = Path(__file__).resolve().parents[1] / "data" / "real-outputs"


@pytest.mark.parametrize("name", ["tags.txt", "markers.txt"])
def test_published_outputs_of_the_released_model_parse_to_four_stages(name: str) -> None:
    text = (REAL_OUTPUTS / name).read_text(encoding="utf-8")
    answer = parse_answer(text)
    assert answer.complete, answer
    assert all(answer.stages[stage] for stage in STAGES)
    assert not answer.stray
    assert "stage)" not in " ".join(answer.stages.values())
    for size in (1, 3, 7):  # streamed in pieces, the same
        parser = StageParser()
        for i in range(0, len(text), size):
            parser.feed(text[i:i + size])
        parser.finish()
        assert parser.answer() == answer


def test_markers_end_a_stage_as_close_tags_do() -> None:
    text = "(here begins the CAPTION stage) A rabbit. (HERE ENDS THE CAPTION STAGE) more"
    assert text[: stage_end(text, C)].endswith("STAGE)")
    assert stage_end("(Here ends the CAPTION stag", C) is None
    assert parse_answer("(Here begins the summary) x").stages[S] == ""


def test_a_native_stage_closed_before_it_is_opened_is_not_ended():
    """A model that writes ``</CAPTION>`` first has not written a caption: the close tag
    ends nothing (the stop test of a stage the model opens itself)."""
    from stagewise.models.stages import opened_stage_end

    caption = Stage.CAPTION
    assert opened_stage_end("</CAPTION>", caption) is None
    assert opened_stage_end("\n\n</CAPTION>", caption) is None
    assert opened_stage_end("</caption >", caption) is None
    assert opened_stage_end("<CAPTION>A red circle.</CAPTION>", caption) == 32
    assert opened_stage_end("<CAPTION></CAPTION>", caption) == 19  # opened, then closed
    assert opened_stage_end("</CAPTION>\n<CAPTION>Two.</CAPTION>", caption) == 34
    # a tail of a longer candidate, with text before the tag, ends as stage_end says
    assert opened_stage_end("ircles on the left.</CAPTION>", caption) == \
        stage_end("ircles on the left.</CAPTION>", caption)
    # the stage-level search uses it for a native stage, and stage_end for a prompted one
    from stagewise.models.reasoning.search_settings import SearchSettings
    from stagewise.models.reasoning.segments import stage_segment

    native = stage_segment(caption, SearchSettings(), StageMode.NATIVE, "<SUMMARY>x</SUMMARY>")
    prompted = stage_segment(caption, SearchSettings(), StageMode.PROMPTED, "")
    assert native.stop("</CAPTION>") is None and prompted.stop("</CAPTION>") == 10
