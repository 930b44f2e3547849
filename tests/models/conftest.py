"""The tiny pipelines and media of the family tests, built once per test session."""

from __future__ import annotations

import pytest
import tiny_families


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory):
    return tiny_families.build_pipelines(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="session")
def manifests(tmp_path_factory):
    return tiny_families.build_manifests(tmp_path_factory.mktemp("media"))
