"""Shared test fixtures: where the shared data lives, a skip when it is absent, and one_thread.

The tests mirror the package: ``cli/`` (xcli: commands, I/O, serving), ``families/`` (each family
against the reference), ``tokenization/``, ``generation/``, ``tasks/``, ``training/`` and ``core/``
(loading, conversion, quantization, kernels, layers). The helper modules (``compare``, ``oracle``,
``task_fixtures`` ...) stay here; every test folder is importable by module name, so a test file
may use another's builders (``from test_training import build``).

Every test runs its commands in process (or in the processes it starts): an ``xcli serve`` the
user left running on the default socket, or named by ``XCLI_SERVER``, is out of the tests' reach
(the runtime folder where the default socket is looked for is a fresh empty one).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
for _folder in sorted(Path(__file__).parent.iterdir()):
    if _folder.is_dir() and _folder.name.isidentifier() and not _folder.name.startswith("_"):
        sys.path.insert(0, str(_folder))
SHARED_DATA = Path(os.environ.get("XCLI_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (clone the project with ../shared beside it)")
    return path


@pytest.fixture(scope="session", autouse=True)
def no_server_of_the_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in ("XDG_RUNTIME_DIR", "XCLI_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    os.environ.pop("XCLI_SERVER", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def registry_left_as_found() -> Iterator[None]:
    """No test leaves the model registry changed (a toy or fake family registers through monkeypatch)."""
    from xcli_models.registry import FAMILIES

    before = dict(FAMILIES)
    yield
    assert FAMILIES == before, f"the test left the model registry changed: {sorted(FAMILIES.keys() ^ before.keys())}"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module: tiny models gain nothing from threads, and lose much to them on a busy machine.

    Opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def torch_int8_kernels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Int8 weight-only layers made in the test use torch's kernels, not xcli's own (xcli_models.native)."""
    from xcli_models import native

    monkeypatch.setenv(native.SWITCH, "0")
    native._load.cache_clear()
    yield
    monkeypatch.undo()
    native._load.cache_clear()


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The weight shapes of the products that went through oneDNN (``xcli_models.kernels``)."""
    from xcli_models import kernels

    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch is built without oneDNN")
    assert kernels.onednn_available()
    calls: list[tuple[int, ...]] = []
    real = kernels._linear

    def counting(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(w.shape))
        return real(x, w, bias)

    monkeypatch.setattr(kernels, "_linear", counting)
    return calls


@pytest.fixture
def native_products(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The weight shapes of the products that went to xcli's float32 kernel (``kernels.Route``)."""
    from xcli_models import kernels

    calls: list[tuple[int, ...]] = []
    real = kernels._f32_rows

    def counting(found: object, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        calls.append(tuple(w.shape))
        return real(found, x, w, bias)

    monkeypatch.setattr(kernels, "_f32_rows", counting)
    return calls
