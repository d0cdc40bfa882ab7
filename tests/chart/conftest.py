"""Fixtures of the chart tests: the cached tools, helm with a scratch home,
and one real control plane per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.control_plane import ControlPlane
from tests.chart.helm import Helm
from tests.chart.kube import Kube
from tests.chart.tools import k8s_tools


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    return k8s_tools()


@pytest.fixture(scope="session")
def helm(tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm for offline work (lint, template)."""
    return Helm(tools["helm"], tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def control_plane(tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    plane = ControlPlane(tools, tmp_path_factory.mktemp("control-plane"))
    plane.start()
    failed = request.session.testsfailed
    try:
        yield plane
    finally:
        if request.session.testsfailed > failed:
            print(plane.logs())  # shown with the failure report
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    assert control_plane.kube is not None
    return control_plane.kube


@pytest.fixture(scope="session")
def cluster_helm(helm: Helm, control_plane: ControlPlane) -> Helm:
    """helm talking to the control plane."""
    return Helm(helm.binary, helm.home, control_plane.kubeconfig)
