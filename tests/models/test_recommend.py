"""Which catalogue model the first run suggests, on machines of several sizes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stagewise.models.hardware import Device, Hardware
from stagewise.models.library.catalogue import CatalogueEntry, load_catalogue
from stagewise.models.library.installed import rough_fit
from stagewise.models.library.recommend import CPU_PARAMS_LIMIT, params_billions, recommend

GB = 1000**3


def _machine(ram_gb: float, gpu_gb: float = 0) -> Hardware:
    devices = (Device("CPU", "a CPU", "cpu", int(ram_gb * GB), int(ram_gb * GB)),)
    if gpu_gb:
        devices += (Device("CUDA0", "a GPU", "gpu", int(gpu_gb * GB), int(gpu_gb * GB)),)
    return Hardware(devices=devices, gpu_offload=bool(gpu_gb), ram_total=int(ram_gb * GB),
                    ram_available=int(ram_gb * GB), cpu_count=8)


@pytest.fixture(scope="module")
def catalogue() -> tuple[CatalogueEntry, ...]:
    return load_catalogue()


def test_params_are_read_as_billions() -> None:
    assert params_billions("2.2B") == 2.2
    assert params_billions("500M") == 0.5
    assert params_billions("") is None and params_billions("about 3") is None


def test_a_laptop_without_a_gpu_gets_the_largest_light_model_that_fits(catalogue) -> None:
    laptop = _machine(8)
    choice = recommend(catalogue, laptop)
    assert choice is not None and rough_fit(choice.total_bytes, laptop)
    assert not choice.thinking and not choice.local
    assert params_billions(choice.params) <= CPU_PARAMS_LIMIT
    # nothing light, direct and fitting is larger
    for entry in catalogue:
        if (not entry.local and not entry.thinking and rough_fit(entry.total_bytes, laptop)
                and params_billions(entry.params) <= CPU_PARAMS_LIMIT):
            assert entry.total_bytes <= choice.total_bytes


def test_a_gpu_machine_gets_the_largest_model_that_fits(catalogue) -> None:
    choice = recommend(catalogue, _machine(32, gpu_gb=24))
    assert choice is not None
    assert choice.total_bytes == max(e.total_bytes for e in catalogue
                                     if not e.local and not e.thinking)
    assert params_billions(choice.params) > CPU_PARAMS_LIMIT  # the 7B, on a GPU


def test_a_small_machine_gets_a_small_model_or_none(catalogue) -> None:
    small = _machine(2.5)
    choice = recommend(catalogue, small)
    assert choice is not None and choice.total_bytes * 1.2 <= small.ram_available
    assert recommend(catalogue, _machine(0.5)) is None


def test_a_thinking_model_only_when_nothing_else_fits(catalogue) -> None:
    direct = next(e for e in catalogue if not e.local and not e.thinking and e.total_bytes)
    thinking = replace(direct, id="thinking", thinking=True)
    huge = replace(direct, id="huge", model=replace(direct.model, size=10**13))
    machine = _machine(16)
    assert recommend((thinking, direct), machine) is direct
    assert recommend((thinking, huge), machine) is thinking


def test_unknown_sizes_and_local_entries_are_never_suggested(catalogue) -> None:
    unknown = [e for e in catalogue if e.total_bytes == 0]
    assert unknown  # the catalogue has some: sizes read from the hub at download time
    assert recommend(tuple(unknown), _machine(64, gpu_gb=80)) is None
