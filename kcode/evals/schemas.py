"""The official SWE-bench file formats as JSON schemas: predictions (``preds.jsonl``), the
per-instance ``report.json`` and the run summary; and :func:`load_predictions`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from kcode.errors import KcodeError

__all__ = ["INSTANCE_REPORT_SCHEMA", "PREDICTION_SCHEMA", "PredictionsError", "RUN_SUMMARY_SCHEMA", "load_predictions", "validate"]


class PredictionsError(KcodeError):
    """A predictions file that cannot be read; the message names the entry."""


PREDICTION_SCHEMA = {
    "type": "object",
    "required": ["instance_id", "model_patch"],
    "properties": {
        "instance_id": {"type": "string", "minLength": 1},
        "model_name_or_path": {"type": ["string", "null"]},
        "model_patch": {"type": ["string", "null"]},
    },
}

_SUCCESS_FAILURE = {
    "type": "object",
    "required": ["success", "failure"],
    "properties": {"success": {"type": "array", "items": {"type": "string"}}, "failure": {"type": "array", "items": {"type": "string"}}},
}

INSTANCE_REPORT_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["patch_is_None", "patch_exists", "patch_successfully_applied", "resolved"],
        "properties": {
            "patch_is_None": {"type": "boolean"},
            "patch_exists": {"type": "boolean"},
            "patch_successfully_applied": {"type": "boolean"},
            "resolved": {"type": "boolean"},
            "tests_status": {
                "type": "object",
                "required": ["FAIL_TO_PASS", "PASS_TO_PASS", "FAIL_TO_FAIL", "PASS_TO_FAIL"],
                "additionalProperties": _SUCCESS_FAILURE,
            },
        },
    },
}

_IDS = {"type": "array", "items": {"type": "string"}}
_COUNT = {"type": "integer", "minimum": 0}
RUN_SUMMARY_SCHEMA = {
    "type": "object",
    "required": [
        "total_instances", "submitted_instances", "completed_instances", "resolved_instances", "unresolved_instances",
        "empty_patch_instances", "error_instances", "completed_ids", "incomplete_ids", "empty_patch_ids", "submitted_ids",
        "resolved_ids", "unresolved_ids", "error_ids", "schema_version",
    ],
    "properties": {
        **{k: _COUNT for k in ("total_instances", "submitted_instances", "completed_instances", "resolved_instances",
                               "unresolved_instances", "empty_patch_instances", "error_instances")},
        **{k: _IDS for k in ("completed_ids", "incomplete_ids", "empty_patch_ids", "submitted_ids", "resolved_ids",
                             "unresolved_ids", "error_ids")},
        "schema_version": {"const": 2},
    },
}


def validate(document: object, schema: dict, what: str) -> None:
    """Raises PredictionsError naming ``what`` and the first violation."""
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise PredictionsError(f"{what}: {exc.message}" + (f" (at {where})" if where else "")) from None


def load_predictions(path: Path | str) -> dict[str, str]:
    """{instance_id: model_patch} from ``preds.jsonl`` or a ``.json`` list or mapping (the
    official forms); each entry is checked against the official schema. A null patch
    counts as empty."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: no such predictions file")
    text = path.read_text()
    entries: list[tuple[str, object]] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append((f"{path.name} line {n}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise PredictionsError(f"{path.name} line {n}: not JSON: {exc}") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"{path}: not JSON: {exc}") from None
        if isinstance(data, dict):
            data = [{"instance_id": k, **v} if isinstance(v, dict) else v for k, v in data.items()]
        if not isinstance(data, list):
            raise PredictionsError(f"{path}: expected a list or a mapping of predictions")
        entries = [(f"{path.name} entry {n}", row) for n, row in enumerate(data, 1)]
    else:
        raise PredictionsError(f"{path}: predictions must be .jsonl or .json")
    out: dict[str, str] = {}
    for where, row in entries:
        validate(row, PREDICTION_SCHEMA, where)
        assert isinstance(row, dict)
        if row["instance_id"] in out:
            raise PredictionsError(f"{where}: duplicate instance_id {row['instance_id']}")
        out[row["instance_id"]] = row["model_patch"] or ""
    return out
