"""sql/analyst_examples.sql, read as a list of questions: each block's `-- name:`, `-- question:`
and `-- columns:` lines, then its query. The tests run every one as the analyst role."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from flows.load import SQL_DIR

EXAMPLES_PATH = SQL_DIR / "analyst_examples.sql"
_BLOCK = re.compile(r"^-- name: ", re.MULTILINE)
_FIELD = re.compile(r"^-- (name|question|columns): *(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Example:
    name: str
    question: str
    columns: tuple[str, ...]
    query: str


def load_examples(path: Path = EXAMPLES_PATH) -> list[Example]:
    """Every example of the file, in order. A block without its question, columns or query, or
    with a name used twice, is an error: the file is read by people and by the tests alike."""
    text = path.read_text()
    starts = [m.start() for m in _BLOCK.finditer(text)]
    examples = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        block = text[start:end]
        fields = dict(_FIELD.findall(block))
        query = "\n".join(line for line in block.splitlines() if not line.startswith("--")).strip()
        name = fields.get("name", "").strip()
        if not (fields.get("question") and fields.get("columns") and query.endswith(";")):
            raise ValueError(f"{path.name}: example {name!r} needs a question, columns and query;")
        examples.append(
            Example(
                name=name,
                question=fields["question"].strip(),
                columns=tuple(c.strip() for c in fields["columns"].split(",")),
                query=query.rstrip(";").strip(),
            )
        )
    names = [e.name for e in examples]
    if len(set(names)) != len(names):
        raise ValueError(f"{path.name}: an example name is used twice")
    return examples
