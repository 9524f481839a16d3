"""Shared pytest fixtures.

Fixtures that build model files are session-scoped: each is built once per test
run into a temporary folder. Add new shared fixtures here; keep them small.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from stagewise.models.build.llama_server import RunningServer
from stagewise.models.build.tiny_vlm import TINY, TinyPair, write_tiny_pair
from stagewise.models.disk.paths import CONFIG_DIR_ENV, DATA_DIR_ENV, PREFIX_CACHE_DIR_ENV
from stagewise.models.inference.engine import Engine
from stagewise.models.inference.engine_settings import EngineSettings
from stagewise.models.inference.images import PreparedImage, load_image
from tests.library_fixtures import served_catalogue  # noqa: F401 (a shared fixture)


@pytest.fixture(scope="session", autouse=True)
def _private_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test, and every process a test starts, out of the user's folders."""
    envs = (DATA_DIR_ENV, CONFIG_DIR_ENV, PREFIX_CACHE_DIR_ENV)
    old = {env: os.environ.get(env) for env in envs}
    for env in old:
        os.environ[env] = str(tmp_path_factory.mktemp(env.lower()))
    yield
    for env, value in old.items():
        if value is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = value


_prefix_caches = itertools.count()


@pytest.fixture(autouse=True)
def _private_prefix_cache(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test, and every process it starts, keeps encoded images in a folder of its own
    (made on first use): none reads what another test's model encoded."""
    folder = tmp_path_factory.getbasetemp() / f"prefix-cache-{next(_prefix_caches)}"
    monkeypatch.setenv(PREFIX_CACHE_DIR_ENV, str(folder))


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> TinyPair:
    """The TINY random-weight text model and projector (about 2 MB), written once."""
    return write_tiny_pair(tmp_path_factory.mktemp("tiny_pair"), TINY)


@pytest.fixture(scope="session")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PNG with a few coloured shapes."""
    path = tmp_path_factory.mktemp("images") / "shapes.png"
    image = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40, 40), fill="red")
    draw.rectangle((50, 20, 90, 60), fill="blue")
    image.save(path)
    return path


@pytest.fixture(scope="session")
def image(image_file: Path) -> PreparedImage:
    return load_image(image_file)


@pytest.fixture(scope="module")
def engine(tiny_pair: TinyPair) -> Iterator[Engine]:
    """One engine on the tiny pair, shared by a test module (loading costs ~50 ms)."""
    with Engine(tiny_pair.model, tiny_pair.mmproj,
                EngineSettings(n_ctx=4096, n_seq_max=12, threads=2)) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shipped demo pair served by llama-server (built from the vendored sources) on
    loopback, one per test module."""
    from stagewise.models.build.llama_server import serve
    from stagewise.models.library.demo import demo_pair

    pair = demo_pair()
    assert pair is not None
    with serve(pair.model, pair.mmproj, tmp_path_factory.mktemp("server")) as running:
        yield running


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    """Write the running test's id where ``.ci/run`` reads it after a crash of pytest."""
    trace = os.environ.get("STAGEWISE_TEST_TRACE")
    if trace:
        Path(trace).write_text(nodeid + "\n")
