from __future__ import annotations

import os

from kcode.tools import default_tools


def test_read_file_numbers_lines_and_reports_total(call):
    result = call("read_file", path="calc/__init__.py")
    assert not result.is_error
    assert "(lines 1-6 of 6)" in result.output
    assert "2\t    return a - b" in result.output
    assert result.data["total_lines"] == 6


def test_read_file_pages_with_offset_and_limit(call, calc_repo):
    (calc_repo / "big.txt").write_text("".join(f"line {n}\n" for n in range(1, 1001)))
    result = call("read_file", path="big.txt", offset=500, limit=3)
    assert "(lines 500-502 of 1000); continue with offset=503" in result.output
    assert "501\tline 501" in result.output
    assert "line 503" not in result.output


def test_read_file_refuses_binary_and_missing_and_outside(call, calc_repo, tmp_path):
    (calc_repo / "blob.bin").write_bytes(b"\x00\x01\x02" * 10)
    assert "binary file" in call("read_file", path="blob.bin").output
    missing = call("read_file", path="nope.py")
    assert missing.is_error and "no such file" in missing.output
    # a guessed path gets the files of its folder, or the closest tracked paths
    guessed = call("read_file", path="calc/ordinal.py").output
    assert "calc/ordinal.py: no such file. Files in calc/: calc/__init__.py" in guessed, guessed
    assert "Did you mean: calc/__init__.py?" in call("read_file", path="calcs/__init__.py").output
    outside = call("read_file", path="../../etc/passwd")
    assert outside.is_error and "outside the repository" in outside.output
    (tmp_path / "secret.txt").write_text("s3cret")
    os.symlink(tmp_path / "secret.txt", calc_repo / "link.txt")
    linked = call("read_file", path="link.txt")
    assert linked.is_error and "outside the repository" in linked.output and "s3cret" not in linked.output


def test_list_files_honours_gitignore(call, calc_repo):
    (calc_repo / "build").mkdir()
    (calc_repo / "build" / "junk.txt").write_text("x")
    (calc_repo / ".gitignore").write_text("build/\n")
    (calc_repo / "new.py").write_text("x = 1\n")  # untracked, not ignored: listed
    result = call("list_files")
    assert "calc/__init__.py" in result.output and "new.py" in result.output
    assert "junk.txt" not in result.output
    only_tests = call("list_files", pattern="test_*")
    assert only_tests.output.splitlines()[1:] == ["tests/test_calc.py"]


def test_write_file_creates_parents_and_refuses_git_dir(call, calc_repo):
    result = call("write_file", path="pkg/sub/mod.py", content="x = 1\n")
    assert not result.is_error and (calc_repo / "pkg/sub/mod.py").read_text() == "x = 1\n"
    refused = call("write_file", path=".git/hooks/pre-commit", content="evil")
    assert refused.is_error and not (calc_repo / ".git/hooks/pre-commit").exists()


def test_bad_arguments_explain_the_schema(call):
    result = call("read_file", file="calc/__init__.py")
    assert result.is_error
    assert "Invalid arguments for read_file" in result.output
    assert "path: Field required" in result.output and '"required":["path"]' in result.output


def test_unknown_tool_lists_the_available_ones(call):
    result = call("open_file", path="x")
    assert result.is_error and "Unknown tool 'open_file'" in result.output and "read_file" in result.output


def test_every_tool_has_a_description_and_object_schema():
    for spec in default_tools().specs():
        assert len(spec.description) > 40, spec.name
        assert spec.parameters["type"] == "object"
        assert "$defs" not in spec.parameters and "title" not in spec.parameters


def test_invented_absolute_path_gets_a_suggestion(call):
    result = call("read_file", path="/path/to/test_calc.py")
    assert result.is_error and "Did you mean: tests/test_calc.py?" in result.output
