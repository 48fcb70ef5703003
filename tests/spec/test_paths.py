"""fedmist.spec.paths: manifest urls relative to the manifest's folder, --path-map by whole components."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedmist.spec.paths import is_remote, normalize_path_map, resolve_import_url, resolve_url


def test_remote_urls_and_empty_ones_are_left_alone() -> None:
    assert is_remote("s3://bucket/x") and not is_remote("/data/x")
    assert resolve_url("s3://bucket/../x", Path("/m"), {"/": "/y"}) == "s3://bucket/../x"
    assert resolve_url("", Path("/m")) == ""


def test_relative_urls_follow_the_manifest_folder() -> None:
    assert resolve_url("data/../mnist", Path("/jobs/a")) == "/jobs/a/mnist"


def test_the_path_map_re_roots_by_the_longest_whole_component_prefix() -> None:
    path_map = normalize_path_map({"/data/": "/srv", "/data/1": "rel/one"}, cwd=Path("/home/u"))
    assert path_map == {"/data": "/srv", "/data/1": "/home/u/rel/one"}
    assert resolve_url("/data/1/COCO", Path("/m"), path_map) == "/home/u/rel/one/COCO"
    assert resolve_url("/data/2/x", Path("/m"), path_map) == "/srv/2/x"
    assert resolve_url("/data", Path("/m"), path_map) == "/srv"
    assert resolve_url("/database/x", Path("/m"), path_map) == "/database/x"  # not a component match
    assert resolve_url("/other//a/./b", Path("/m"), path_map) == "/other/a/b"


def test_an_empty_source_maps_the_root() -> None:
    assert normalize_path_map({"": "/new"}, cwd=Path("/")) == {"/": "/new"}
    assert resolve_url("/a/b", Path("/m"), {"/": "/new"}) == "/new/a/b"


def test_import_urls_keep_the_import_path_and_resolve_host_path_options() -> None:
    assert resolve_import_url("pkg.mod:load", Path("/m")) == "pkg.mod:load"
    assert resolve_import_url("pkg.mod:load?root=./pngs&split=edge1&abs=/data/x", Path("/jobs/a"),
                              {"/data": "/srv"}) == "pkg.mod:load?root=/jobs/a/pngs&split=edge1&abs=/srv/x"


def test_a_url_that_is_not_an_import_path_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        resolve_import_url("/not/an/import", Path("/m"))
    assert str(info.value) == "dataset loader '/not/an/import' must look like 'package.module:name'"
