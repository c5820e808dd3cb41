"""A tool's parameter schema is made once per parameter model; each caller gets its own copy."""

from __future__ import annotations

from kcode.tools import default_tools
from kcode.tools.base import parameters_schema


def test_each_caller_gets_its_own_copy_of_the_schema():
    tool = default_tools().get("edit_file")
    first = parameters_schema(tool.Params)
    first["properties"].clear()
    first["mutated"] = True
    again = parameters_schema(tool.Params)
    assert "mutated" not in again and again["properties"]
    assert again == tool.spec().parameters
