"""fedmist.imports: import paths resolve or fail with one line naming the setting, path and fix."""

from __future__ import annotations

import abc
import os
import sys
from pathlib import Path

import pytest

from fedmist.imports import (
    ImportPathError,
    import_callable,
    import_object,
    import_subclass,
    is_import_path,
    module_root,
    parse_query,
    path_of,
    python_path_env,
    search_path,
    split_import_path,
)


def test_import_path_syntax() -> None:
    assert is_import_path("pkg.mod:Class.build?x=1") and is_import_path(" mod:f ")
    assert not is_import_path("/data/x") and not is_import_path("s3://b/k") and not is_import_path("mod:")
    assert split_import_path("pkg.mod:Class.build?a=1&b=2") == ("pkg.mod", "Class.build", "a=1&b=2")
    assert split_import_path("mod:f") == ("mod", "f", "")
    with pytest.raises(ImportPathError, match=r"^model factory 'nope' must look like 'package.module:name'$"):
        split_import_path("nope", "model factory")


def test_query_options() -> None:
    assert parse_query("a=1&&b=x=y&c=") == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ImportPathError, match=r"^loader: option 'flag' must look like name=value$"):
        parse_query("a=1&flag", "loader")
    with pytest.raises(ImportPathError, match=r"^loader: option '1a=2' must look like name=value$"):
        parse_query("1a=2", "loader")


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "ut_userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import abc\nVALUE = 3\n"
        "def make():\n    return 1\n"
        "class Base(abc.ABC):\n    @abc.abstractmethod\n    def run(self): ...\n"
        "class Impl(Base):\n    def run(self): return 2\n")
    (pkg / "broken.py").write_text("raise RuntimeError('bad\\nsecond line')\n")
    return tmp_path


def test_objects_import_from_the_search_path_and_failures_are_one_line(tmp_path: Path) -> None:
    folder = _package(tmp_path)
    with search_path([folder]):
        assert str(folder.resolve()) in sys.path
        assert import_object("ut_userpkg.mod:VALUE") == 3
        assert import_callable("ut_userpkg.mod:make", "model factory")() == 1
        base = import_object("ut_userpkg.mod:Base")
        assert import_subclass("ut_userpkg.mod:Impl", base, "trainer").__name__ == "Impl"
        assert module_root(base) == str(folder.resolve())
        cases = [
            (lambda: import_callable("ut_userpkg.mod:VALUE", "model factory"),
             "model factory 'ut_userpkg.mod:VALUE' is a int, not a callable"),
            (lambda: import_object("ut_userpkg.mod:missing", "loader"),
             "loader 'ut_userpkg.mod:missing': module 'ut_userpkg.mod' has no attribute 'missing'"),
            (lambda: import_object("ut_userpkg.broken:x", "loader"),
             "loader 'ut_userpkg.broken:x': importing 'ut_userpkg.broken' failed: RuntimeError: bad"),
            (lambda: import_subclass("ut_userpkg.mod:Base", base, "trainer"),
             "trainer 'ut_userpkg.mod:Base' is abstract: implement run"),
            (lambda: import_subclass("ut_userpkg.mod:make", abc.ABC, "trainer"),
             "trainer 'ut_userpkg.mod:make' must be a subclass of abc.ABC, got a function"),
        ]
        for call, message in cases:
            with pytest.raises(ImportPathError) as info:
                call()
            assert str(info.value) == message
    assert str(folder.resolve()) not in sys.path
    for name in ("ut_userpkg.mod", "ut_userpkg.broken", "ut_userpkg"):
        sys.modules.pop(name, None)


def test_a_missing_module_says_where_to_put_it() -> None:
    with pytest.raises(ImportPathError) as info:
        import_object("ut_no_such_pkg_x:f", "strategy")
    assert str(info.value) == ("strategy 'ut_no_such_pkg_x:f': cannot import module 'ut_no_such_pkg_x' (No module "
                               "named 'ut_no_such_pkg_x'); put the package beside the job file, in the current "
                               "folder or on PYTHONPATH")


def module_level() -> None:
    """A function a worker process can import."""


def test_path_of_names_module_level_objects_and_refuses_the_rest() -> None:
    assert path_of(module_level) == f"{__name__}:module_level"
    with pytest.raises(ImportPathError) as info:
        path_of(lambda: None, "model factory")
    assert str(info.value) == (f"model factory {__name__}.test_path_of_names_module_level_objects_and_refuses_the_"
                               "rest.<locals>.<lambda> is a lambda or nested definition; worker processes can only "
                               "import module-level functions and classes")
    with pytest.raises(ImportPathError, match=r"^loader 3 has no module-level name"):
        path_of(3, "loader")


def test_python_path_puts_job_folders_first_without_duplicates(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join(["/x", "", str(tmp_path)])}
    assert python_path_env([tmp_path], env) == os.pathsep.join([str(tmp_path.resolve()), "/x"])
    assert python_path_env([], {}) == ""
