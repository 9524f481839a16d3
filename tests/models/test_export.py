"""Exports of real runs (tiny model, saved in a real history), parsed back."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from stagewise.models.errors import StagewiseError
from stagewise.models.events import AnswerFinished, Event
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.images import PreparedImage, load_image
from stagewise.models.reasoning.llama_backend import LlamaBackend
from stagewise.models.reasoning.search import SearchSettings, StageSearch
from stagewise.models.stages import STAGES, Stage
from stagewise.models.storage.export import export, to_json
from stagewise.models.storage.export_html import to_html
from stagewise.models.storage.export_markdown import to_markdown
from stagewise.models.storage.history import History, StoredRun

TRICKY = 'Is <b>this</b> a "red" circle & a *square* | [link](x)?'
FAILURE = "<script>alert('boom')</script> out of memory"


def search(engine: Engine, image: PreparedImage, question: str,
           **settings: object) -> list[Event]:
    options = {"beam": 2, "select": "judge", "max_stage_tokens": 8, "max_judge_tokens": 6,
               "seed": 4, **settings}
    events = list(StageSearch(LlamaBackend(engine), SearchSettings(**options)).run(image, question))
    assert isinstance(events[-1], AnswerFinished)
    return events


def save(history: History, path: Path, image: PreparedImage, question: str,
         events: list[Event]) -> int:
    run_id = history.start(image, path.read_bytes(), path.name, question, "tiny.gguf",
                           {"beam": 2})
    for event in events:
        history.record(run_id, event)
    return run_id


@pytest.fixture(scope="module")
def runs(engine: Engine, image: PreparedImage, image_file: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[StoredRun]]:
    """A judged stage-level run, a best-of-N run on a JPEG, and a failed run."""
    folder = tmp_path_factory.mktemp("export_history")
    photo_file = folder / "photo.jpg"
    Image.new("RGB", (40, 30), (200, 40, 40)).save(photo_file, "JPEG")
    photo = load_image(photo_file)
    with History(folder / "history") as history:
        ids = [
            save(history, image_file, image, TRICKY, search(engine, image, TRICKY)),
            save(history, photo_file, photo, "What colour?",
                 search(engine, photo, "What colour?", strategy="best-of-n")),
        ]
        failed = save(history, image_file, image, "Will it fail?", [])
        history.fail(failed, FAILURE)
        ids.append(failed)
        yield [history.load(i) for i in ids]


class _Page(HTMLParser):
    """Collects tags, attributes and text of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)

    def all(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]


def parse_html(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# --------------------------------------------------------------------------------------------


def test_json_export_holds_every_run(runs, tmp_path):
    path = export(runs, tmp_path / "runs.json")
    assert path == tmp_path / "runs.json"
    data = strict_json(path.read_text(encoding="utf-8"))
    assert data["format"] == "stagewise-export" and data["version"] == 1
    assert len(data["runs"]) == 3
    for item, run in zip(data["runs"], runs, strict=True):
        assert item["id"] == run.entry.id
        assert item["created"] == run.entry.created.isoformat()
        assert (item["question"], item["model"]) == (run.entry.question, "tiny.gguf")
        assert (item["status"], item["error"]) == (run.entry.status, run.error)
        assert item["image"] == {"name": run.image_name, "sha256": run.sha256,
                                 "file": run.image_path.name}
        assert item["settings"] == {"beam": 2}
        assert item["result"] == json.loads(json.dumps(run.result.to_json()))
    assert data["runs"][0]["question"] == TRICKY
    assert data["runs"][1]["image"]["file"].endswith(".jpg")
    assert data["runs"][2]["error"] == FAILURE
    assert to_json(runs) == path.read_text(encoding="utf-8")


def test_json_export_is_strict_json_even_for_a_candidate_without_tokens(runs):
    result = runs[0].result
    empty = dataclasses.replace(result.candidates[0], n_tokens=0, mean_logprob=float("-inf"))
    odd = dataclasses.replace(runs[0], result=dataclasses.replace(
        result, candidates=(empty, *result.candidates[1:])))
    data = strict_json(to_json([odd]))
    first = data["runs"][0]["result"]["candidates"]["summary"][0]
    assert first["mean_logprob"] is None


def test_html_export_is_standalone_escaped_and_embeds_the_images(runs, tmp_path):
    path = export(runs, tmp_path / "runs.html")
    text = path.read_text(encoding="utf-8")
    page = parse_html(text)
    tags = {tag for tag, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "b" not in tags  # the question's <b> is text
    for _, attrs in page.tags:
        for name in ("src", "href"):
            assert attrs.get(name) is None or attrs[name].startswith("data:")
    images = page.all("img")
    assert len(images) == 3
    for attrs, run in zip(images, runs, strict=True):
        mime, _, payload = attrs["src"].removeprefix("data:").partition(";base64,")
        assert base64.b64decode(payload, validate=True) == run.image_path.read_bytes()
        assert mime == ("image/jpeg" if run.image_path.suffix == ".jpg" else "image/png")
        assert attrs["alt"] == run.image_name
    words = "".join(page.text)
    assert TRICKY in words and FAILURE in words
    assert "prefers-color-scheme: dark" in page.style
    assert "Content-Security-Policy" in {a.get("http-equiv") for a in page.all("meta")}
    for run in runs:
        assert run.result.conclusion.strip() in words
    assert len(page.all("details")) == sum(len({c.segment for c in r.result.candidates})
                                           for r in runs)
    assert len(page.all("li")) == sum(len(r.result.candidates) for r in runs)
    headers = sum(len({v.segment for v in r.result.verdicts}) for r in runs)
    assert len(page.all("tr")) == headers + sum(len(r.result.verdicts) for r in runs)
    assert to_html(runs) == text


def test_markdown_export_links_copies_of_the_images(runs, tmp_path):
    path = export(runs, tmp_path / "my export.md")
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert len(links) == 3
    for link, run in zip(links, runs, strict=True):
        assert not link.startswith(("/", "file:"))
        copy = path.parent / unquote(link)
        assert copy.parent == tmp_path / "my export-images"
        assert copy.read_bytes() == run.image_path.read_bytes()
    assert len(list((tmp_path / "my export-images").iterdir())) == 2  # one file per image
    for stage in STAGES:
        assert len(re.findall(f"^### {stage.title}$", text, re.MULTILINE)) == 3
    assert text.count("**Candidate ") == sum(len(r.result.candidates) for r in runs)
    assert text.count("| Round ") == sum(len(r.result.verdicts) for r in runs)
    assert "<b>" not in text and "\\<b\\>this\\</b\\>" in text
    assert "failed: \\<script\\>" in text
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_markdown_without_a_folder_links_the_stored_images(runs):
    text = to_markdown(runs[:1])
    assert f"]({runs[0].image_path.resolve().as_uri()})" in text


def test_a_missing_image_is_noted_not_fatal(runs, tmp_path):
    gone = dataclasses.replace(runs[0], image_path=tmp_path / "gone.png")
    assert "no longer stored" in to_html([gone])
    assert "no longer stored" in export([gone], tmp_path / "gone.md").read_text()
    assert not (tmp_path / "gone-images").exists()


def test_the_format_comes_from_the_suffix_unless_given(runs, tmp_path):
    assert parse_html(export(runs, tmp_path / "a.htm").read_text()).all("img")
    assert export(runs, tmp_path / "a.markdown").read_text().startswith("# Stagewise export")
    out = export(runs, tmp_path / "a.txt", "json")
    assert strict_json(out.read_text())["format"] == "stagewise-export"
    with pytest.raises(StagewiseError, match=r"\.md, \.html or \.json"):
        export(runs, tmp_path / "a.pdf")
    with pytest.raises(StagewiseError, match="unknown export format"):
        export(runs, tmp_path / "a.json", "pdf")  # type: ignore[arg-type]
    assert not (tmp_path / "a.pdf").exists()


def test_export_replaces_a_file_and_reports_what_it_cannot_write(runs, tmp_path):
    path = tmp_path / "runs.json"
    path.write_text("old")
    export(runs[:1], path)
    assert len(strict_json(path.read_text())["runs"]) == 1
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StagewiseError, match="could not export"):
        export(runs, blocker / "runs.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "runs.json"]


def test_exports_show_candidates_without_stage_tags_and_name_judged_candidates():
    from stagewise.models.events import Candidate, Verdict
    from stagewise.models.storage.export_view import candidate_text, verdict_parts

    def cand(unit: Stage | None, text: str) -> Candidate:
        return Candidate(unit, 0, 0, text, 5, -0.1, "closed")

    assert candidate_text(cand(Stage.CAPTION, "<CAPTION> A red circle. </CAPTION>")) == \
        "A red circle."
    assert candidate_text(cand(Stage.CAPTION, " A red circle. </CAPTION>")) == "A red circle."
    whole = "<SUMMARY> Count. </SUMMARY><CAPTION> Two. </CAPTION><REASONING> So 2. " \
            "</REASONING><CONCLUSION> 2 </CONCLUSION>"
    assert candidate_text(cand(None, whole)) == \
        "Summary: Count.\nCaption: Two.\nReasoning: So 2.\nConclusion: 2"
    verdict = Verdict(Stage.CAPTION, 0, 0, 2, 0, 0, "response 2 is right", "", False)
    pair, winner, reason = verdict_parts(verdict)
    assert (pair, winner, reason) == ("Round 1: candidate 3 vs 1", "candidate 1",
                                      "candidate 1 is right")


def test_an_export_is_named_after_its_question_and_day(runs):
    from stagewise.models.storage.export_view import suggested_name

    day = runs[1].entry.created.strftime("%Y-%m-%d")
    assert suggested_name([runs[1]]) == f"stagewise-what-colour-{day}.md"
    assert suggested_name(runs, ".html") == f"stagewise-3-questions-{day}.html"
    assert suggested_name([]) == "stagewise.md"


def test_a_long_question_gives_an_export_name_a_file_system_takes(runs, tmp_path):
    """Six words of 55 letters made a 330-character name: "File name too long"."""
    import dataclasses

    from stagewise.models.storage.export_view import suggested_name

    long = dataclasses.replace(runs[1], entry=dataclasses.replace(
        runs[1].entry, question=" ".join(["x" * 55] * 6)))
    name = suggested_name([long], ".html")
    assert len(name.encode()) <= 100 and name.endswith(".html")
    (tmp_path / name).write_text("ok")  # the file system takes it
