"""A corpus of bad input, each case through the real ``stagewise ask`` in its own process.

Files (images, models, projectors) and flag sets a person or a script could hand over.
Every case must end with one clear line and its exit code: 2 for bad input (argparse's
usage and error, or ``stagewise: error: …``), never a traceback, never a signal. A few
cases that are odd but valid must answer (exit 0).

The remote family: servers that misbehave, each fault of :mod:`tests.remote_fake` in both
dialects (llama-server's and the OpenAI-compatible one), and addresses that cannot be
used. Each must end in one clear line and exit 2, and its run be kept in the history as
"failed", never "finished".
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from stagewise.models.build.tiny_vlm import TinyPair
from stagewise.models.storage.history import History
from tests.models.test_images import write_header_only_png
from tests.remote_fake import MODEL, FakeServer

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "How many circles?"


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    exit_code: int = 2
    words: tuple[str, ...] = ()  # what the error line must name
    history: str | None = None  # how its run must be kept in the history


@dataclass(frozen=True)
class Files:
    pair: TinyPair
    image: Path
    folder: Path


def _files(tmp: Path, pair: TinyPair, image: Path) -> dict[str, Path]:
    """The bad files, written once."""
    made: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        made[name] = tmp / name
        made[name].write_bytes(data)

    png = image.read_bytes()
    write("empty.png", b"")
    write("text.png", b"this is not a picture\n" * 20)
    write("truncated.png", png[: len(png) // 3])
    write("pdf.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    write("svg.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    write("html.webp", b"<!doctype html><title>404</title>")
    write_header_only_png(tmp / "bomb.png", 60000, 60000)
    made["bomb.png"] = tmp / "bomb.png"
    jpeg = tmp / "whole.jpg"
    Image.open(image).convert("RGB").save(jpeg, quality=90)
    write("truncated.jpg", jpeg.read_bytes()[:200])
    write("garbage.gif", b"GIF89a" + os.urandom(300))
    (tmp / "folder.png").mkdir(exist_ok=True)
    made["folder.png"] = tmp / "folder.png"
    tiny = tmp / "one-pixel.png"
    Image.new("RGB", (1, 1), "red").save(tiny)
    made["one-pixel.png"] = tiny
    made["not-utf8"] = tmp / os.fsdecode(b"caf\xe9 \xff.png")
    made["not-utf8"].write_bytes(png)
    write("question.txt", b"How many circles, asked from a file?\n")
    write("long-question.txt", ("How many circles? " * 8000).encode())  # over 128 KiB
    model = pair.model.read_bytes()
    write("truncated.gguf", model[: len(model) // 2])
    write("header-only.gguf", model[:64])
    write("not-gguf.gguf", b"NOTGGUF!" + os.urandom(4096))
    write("empty.gguf", b"")
    write("wrong-version.gguf", b"GGUF" + struct.pack("<I", 99) + model[8:])
    write("garbage-weights.gguf", _garbage_weights(pair.model))
    return made


def _garbage_weights(model: Path) -> bytes:
    """The model with every tensor's bytes set to 0xFF (NaN in f32 and f16)."""
    from gguf import GGUFReader

    data = bytearray(model.read_bytes())
    start = GGUFReader(model).data_offset
    data[start:] = b"\xff" * (len(data) - start)
    return bytes(data)


def _cases(files: dict[str, Path], pair: TinyPair, image: Path) -> list[Case]:
    m = ("--model", str(pair.model), "--mmproj", str(pair.mmproj))
    img = ("--image", str(image))
    q = ("--question", QUESTION)
    base = (*m, *img, *q, "--max-stage-tokens", "16")
    cases = [
        # numbers out of range or not numbers
        *(Case(f"ctx {v}", (*base, "--ctx", v), words=("--ctx",))
          for v in ("1", "32", "-5", "abc", "999999999")),  # 0 is auto
        *(Case(f"temperature {v}", (*base, "--temperature", v), words=("--temperature",))
          for v in ("-1", "nan", "inf", "3", "abc")),
        *(Case(f"top-p {v}", (*base, "--top-p", v), words=("--top-p",))
          for v in ("5", "nan", "-0.1")),
        *(Case(f"gpu-layers {v}", (*base, "--gpu-layers", v), words=("--gpu-layers",))
          for v in ("-7", "1000000")),
        *(Case(f"seed {v}", (*base, "--seed", v), words=("--seed",))
          for v in ("-1", str(2**64), "x")),
        *(Case(f"beam {v}", (*base, "--beam", v), words=("--beam",))
          for v in ("0", "17", "two")),
        *(Case(f"max-stage-tokens {v}", (*m, *img, *q, "--max-stage-tokens", v),
               words=("--max-stage-tokens",)) for v in ("0", "-3", "100000")),
        *(Case(f"threads {v}", (*base, "--threads", v), words=("--threads",))
          for v in ("0", "-1", "100000")),
        Case("retrace cutoff nan", (*base, "--retrace-cutoff", "nan"),
             words=("--retrace-cutoff",)),
        Case("unknown strategy", (*base, "--strategy", "greedy"), words=("--strategy",)),
        Case("unknown selection", (*base, "--select", "vote"), words=("--select",)),
        Case("unknown stage mode", (*base, "--stage-mode", "both"), words=("--stage-mode",)),
        Case("no image", (*m, *q), words=("--image",)),
        Case("no question", (*m, *img), words=("--question",)),
        # questions
        Case("empty question", (*m, *img, "--question", ""), words=("empty",)),
        Case("blank question", (*m, *img, "--question", "  \t "), words=("empty",)),
        Case("question not UTF-8", (*m, *img, "--question", os.fsdecode(b"caf\xe9?")),
             words=("UTF-8",)),
        # images
        Case("missing image", (*m, "--image", str(files["empty.png"].with_name("nope.png")),
                               *q)),
        *(Case(f"image {name}", (*m, "--image", str(files[name]), *q))
          for name in ("empty.png", "text.png", "truncated.png", "pdf.jpg", "svg.png",
                       "html.webp", "bomb.png", "truncated.jpg", "garbage.gif",
                       "folder.png")),
        Case("image /dev/null", (*m, "--image", "/dev/null", *q)),
        # models and projectors
        Case("missing model", ("--model", str(files["empty.gguf"].with_name("no.gguf")),
                               *img, *q)),
        *(Case(f"model {name}", ("--model", str(files[name]), "--mmproj", str(pair.mmproj),
                                 *img, *q))
          for name in ("truncated.gguf", "header-only.gguf", "not-gguf.gguf", "empty.gguf",
                       "wrong-version.gguf")),
        Case("model is a folder", ("--model", str(files["folder.png"]), *img, *q)),
        Case("projector as the model", ("--model", str(pair.mmproj), "--mmproj",
                                        str(pair.mmproj), *img, *q)),
        Case("model as the projector", ("--model", str(pair.model), "--mmproj",
                                        str(pair.model), *img, *q)),
        *(Case(f"projector {name}", ("--model", str(pair.model), "--mmproj", str(files[name]),
                                     *img, *q))
          for name in ("truncated.gguf", "not-gguf.gguf", "empty.gguf")),
        Case("garbage weights", ("--model", str(files["garbage-weights.gguf"]), "--mmproj",
                                 str(pair.mmproj), *img, *q, "--max-stage-tokens", "16"),
             words=("damaged",)),
        Case("unknown library id", ("--model", "no-such-model-id", *img, *q)),
        Case("retrace scorer without its model", (*base, "--strategy", "retrace",
                                                  "--scorer", "model"),
             words=("--scorer-model",)),
        Case("scorer model missing", (*base, "--strategy", "retrace", "--scorer", "model",
                                      "--scorer-model", str(files["empty.gguf"]))),
        # servers
        Case("server not a url", (*img, *q, "--server", "localhost:8080"), words=("http",)),
        Case("nothing at the server", (*img, *q, "--server", "http://127.0.0.1:9"),
             words=("nothing answers",)),
        Case("server and model", (*base, "--server", "http://127.0.0.1:9"),
             words=("--server",)),
        Case("openai server without a model name", (*img, *q, "--server", "http://127.0.0.1:9",
                                                    "--server-kind", "openai"),
             words=("--server-model",)),
        # odd but valid
        Case("one-pixel image", (*m, "--image", str(files["one-pixel.png"]), *q,
                                 "--max-stage-tokens", "16"), exit_code=0),
        Case("control-token text in the question",
             (*m, *img, "--question", "<|im_end|> how many? <image>", "--max-stage-tokens",
              "16"), exit_code=0),
        Case("greedy", (*base, "--temperature", "0"), exit_code=0),
        Case("a question spelling the media marker",
             (*m, *img, "--question", "What is <__media__> here?", "--max-stage-tokens", "16"),
             exit_code=0, history="finished"),
        Case("an image name that is not UTF-8",
             (*m, "--image", str(files["not-utf8"]), "--question", "Named in Latin-1?",
              "--max-stage-tokens", "16"),
             exit_code=0, history="finished"),
        Case("a question from a file", (*m, *img, "--question-file",
                                        str(files["question.txt"]), "--max-stage-tokens", "16"),
             exit_code=0, history="finished"),
        Case("a question from a file over 128 KiB",
             (*m, *img, "--question-file", str(files["long-question.txt"])),
             words=("tokens", "context")),
        Case("a missing question file", (*m, *img, "--question-file",
                                         str(files["question.txt"].with_name("none.txt"))),
             words=("--question-file",)),
        Case("a question file not UTF-8", (*m, *img, "--question-file",
                                           str(files["pdf.jpg"])),
             words=("--question-file", "UTF-8")),
    ]
    return cases


STALLS = ("comments", "empty-events", "drip")
REMOTE_WORDS: dict[str, str] = {
    "cut": "closed the connection mid-answer",
    "cut-late": "closed the connection mid-answer",
    "no-end": "",  # its words depend on the dialect
    "html": "answered a web page",
    "html-as-events": "not a stream of server-sent events",
    "bad-chunk": "closed the connection mid-answer",
    "error-event": "reported an error: the slot crashed",
    "html-error": "HTTP 500",
    "index-text": "index is not a whole number",
    "logprob-text": "logprob is not a number",
    "tokens-text": "is not a list",
    "choices-text": "is not",
    "deep": "nested",
    "not-json": "not JSON",
    "props-types": "is not",
    "start-types": "is not",
    "comments": "sent no text for 1.5 s",
    "empty-events": "sent no text for 1.5 s",
    "drip": "sent no text for 1.5 s",
    "endless": "sent more than the 16 tokens asked for",
    "big-event": "an event over the 1 MiB",
}


def _remote_cases(fake: FakeServer, image: Path) -> list[Case]:
    """Each server fault in both dialects, and addresses that cannot be used."""
    cases = []
    for kind in ("llama-server", "openai"):
        for fault, words in REMOTE_WORDS.items():
            if fault == "no-end":
                words = "mid-answer" if kind == "llama-server" else "no finish reason"
            args = ["--image", str(image), "--question", f"{kind} {fault}?", "--server",
                    fake.url(fault, kind), "--server-kind", kind, "--stage-mode", "native",
                    "--beam", "1"]
            if kind == "openai":
                args += ["--server-model", MODEL]
            if fault in STALLS:
                args += ["--server-timeout", "1.5"]
            if fault == "endless":
                args += ["--max-stage-tokens", "16"]
            history = None if fault in ("props-types",) else "failed"  # refused at connect
            cases.append(Case(f"{kind} {fault}", tuple(args), words=(words,), history=history))
    for address, words in (("http://[::1", "brackets"), ("http://127.0.0.1:99999", "99999"),
                           ("http://127.0.0.1:abc", "'abc'"),
                           ("http://ana:s3cret@[::1", "brackets")):
        cases.append(Case(f"address {address}", ("--image", str(image), "--question", "Hi?",
                                                 "--server", address),
                          words=("is not a server address", words)))
    return cases


def run_case(case: Case, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAGEWISE_DATA_DIR": str(data_dir), "STAGEWISE_API_KEY": ""}
    return subprocess.run([sys.executable, "-m", "stagewise.desktop.cli", "ask", *case.args],
                          capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


def check(case: Case, done: subprocess.CompletedProcess[str]) -> str | None:
    """What is wrong with how ``case`` ended, or None."""
    where = f"{case.name}: exit {done.returncode}\n{done.stderr[-800:]}"
    if done.returncode < 0 or done.returncode > 128:
        return f"killed by a signal: {where}"
    if "Traceback" in done.stderr:
        return f"a traceback: {where}"
    if done.returncode != case.exit_code:
        return f"expected exit {case.exit_code}: {where}"
    if case.exit_code == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not (last.startswith("stagewise: error: ") or last.startswith("stagewise ask: error: ")):
        return f"no error line: {where}"
    if len(last) > 400 or (last.startswith("stagewise: error") and len(lines) > 1):
        return f"more than one clear line: {where}"
    missing = [w for w in case.words if w not in last]
    return f"the line does not name {missing}: {where}" if missing else None


def test_the_bad_input_corpus(tiny_pair, image_file, tmp_path):
    files = _files(tmp_path, tiny_pair, image_file)
    cases = _cases(files, tiny_pair, image_file)
    assert len(cases) >= 60
    problems = run_corpus(cases, tmp_path / "data")
    assert not problems, "\n\n".join(problems)


def test_the_remote_bad_input_corpus(image_file, tmp_path):
    with FakeServer() as fake:
        cases = _remote_cases(fake, image_file)
        assert len(cases) >= 40
        problems = run_corpus(cases, tmp_path / "data")
    assert not problems, "\n\n".join(problems)


def run_corpus(cases: list[Case], data: Path) -> list[str]:
    """Run the cases, two at a time; what went wrong with them (none when all is well)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: (c, run_case(c, data)), cases))
    problems = [p for case, done in results if (p := check(case, done))]
    with History(data / "history") as history:
        kept = {entry.question: entry.status for entry in history.entries(limit=10_000)}
    for case in cases:
        if case.history is not None and kept.get(_question(case)) != case.history:
            problems.append(f"{case.name}: kept as {kept.get(_question(case))!r} in the "
                            f"history, not {case.history!r}")
    return problems


def _question(case: Case) -> str | None:
    """The question a case asks (its first ``--question``)."""
    args = list(case.args)
    if "--question" in args:
        return args[args.index("--question") + 1]
    if "--question-file" in args:
        question = Path(args[args.index("--question-file") + 1]).read_text()
        return question.removesuffix("\n")
    return None


def _wait_for_library(pid: int, name: str, timeout: float = 30.0) -> bool:
    """Wait until the process has mapped a shared library called ``name`` (it is then
    past the interpreter's start and inside stagewise's imports); False if it ended."""
    maps = Path(f"/proc/{pid}/maps")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if name in maps.read_text():
                return True
        except OSError:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_ctrl_c_while_ask_is_starting_is_one_line(tiny_pair, image_file, tmp_path):
    """Ctrl+C while ask is loading, before it has set its own handler: once llama.cpp's
    library is mapped (imports under way), and a little later (the model loading)."""
    outcomes = []
    for delay in (0.0, 0.02, 0.1):
        process = subprocess.Popen(
            [sys.executable, "-m", "stagewise.desktop.cli", "ask", "--model",
             str(tiny_pair.model), "--mmproj", str(tiny_pair.mmproj), "--image",
             str(image_file), "--question", QUESTION],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "STAGEWISE_DATA_DIR": str(tmp_path / "data")})
        if _wait_for_library(process.pid, "libllama"):
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        outcomes.append((delay, process.returncode, err))
    for delay, code, err in outcomes:
        assert "Traceback" not in err, (delay, err)
        assert code in (0, 130), (delay, code, err)


@pytest.mark.parametrize("flag", ["--ctx", "--seed", "--threads", "--max-stage-tokens"])
def test_eval_checks_its_numbers_too(flag, tmp_path):
    done = subprocess.run([sys.executable, "-m", "stagewise.desktop.cli", "eval", "--demo",
                           flag, "-3"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert flag in done.stderr.splitlines()[-1]
