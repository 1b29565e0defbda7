"""A small dbt-like runner: every `*.sql` file in the models directory is one model.

In a model file:
- leading `--` comment lines are its description;
- `{{ config(materialized='table' | 'view', tests={...}) }}` chooses how it is built and declares its tests;
- `{{ ref('other_model') }}` and `{{ source('raw_files') }}` name its inputs (the dependency graph);
- `{{ var('name') }}` inserts a threshold from `vars.yaml` beside the models, as a SQL literal;
- `{{ var_by_language('name') }}` inserts a per-language threshold: the var is a mapping from language to
  value with a `default` key, rendered as a `CASE language ...` expression (null = the rule is off there).

Declared tests: `unique: [cols]`, `not_null: [cols]`, `accepted_values: {col: [values]}`, `min_rows: n`.
Errors name the file and line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import yaml

VARS_FILE = "vars.yaml"
_CONFIG_BLOCK = re.compile(r"\{\{\s*config\s*\(.*?\)\s*\}\}", re.S)
_MODEL_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class SqlModelError(ValueError):
    """A model cannot be parsed or run; the message starts with `file:line:`."""


@dataclass(frozen=True)
class ModelTest:
    kind: str  # unique | not_null | accepted_values | min_rows
    column: str | None
    argument: Any = None

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.column}" if self.column else self.kind

    def failing_rows_sql(self, table: str) -> str:
        """A query counting the rows that break the test (0 means it passes)."""
        col = f'"{self.column}"' if self.column else ""
        if self.kind == "unique":
            return (
                f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM {table} "
                f"WHERE {col} IS NOT NULL GROUP BY {col})"
            )
        if self.kind == "not_null":
            return f"SELECT count(*) FROM {table} WHERE {col} IS NULL"
        if self.kind == "accepted_values":
            values = ", ".join(sql_literal(v) for v in self.argument)
            return f"SELECT count(*) FROM {table} WHERE {col} IS NOT NULL AND {col} NOT IN ({values})"
        if self.kind == "min_rows":
            return f"SELECT CASE WHEN count(*) >= {int(self.argument)} THEN 0 ELSE 1 END FROM {table}"
        raise AssertionError(self.kind)

    def describe(self) -> str:
        if self.kind == "min_rows":
            return f"at least {self.argument} rows"
        if self.kind == "accepted_values":
            return f"{self.column} in {list(self.argument)}"
        return f"{self.column} is {self.kind.replace('_', ' ')}"


@dataclass(frozen=True)
class SqlModel:
    name: str
    path: Path
    template: str  # the SQL with the config block blanked out (line numbers preserved)
    description: str
    materialized: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    vars: tuple[str, ...]
    tests: tuple[ModelTest, ...] = field(default=())
    columns: tuple[tuple[str, str], ...] = field(default=())  # (column, what it means), from config(columns=...)

    def column_description(self, column: str) -> str | None:
        return dict(self.columns).get(column)

    @property
    def code_version(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()[:12]

    def render(self, variables: Mapping[str, Any]) -> str:
        return _render(self.path, self.template, _env(), variables, record=None)


def sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def _env() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _line_of(text: str, needle: str) -> int:
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 1


def _render(
    path: Path,
    template: str,
    env: jinja2.Environment,
    variables: Mapping[str, Any],
    record: dict[str, list[str]] | None,
) -> str:
    def ref(name: str) -> str:
        if record is not None:
            record["refs"].append(name)
        return f'"{name}"'

    def source(name: str) -> str:
        if record is not None:
            record["sources"].append(name)
        return f'"{name}"'

    def lookup(name: str) -> Any:
        if record is not None:
            record["vars"].append(name)
            return None
        if name not in variables:
            raise SqlModelError(f"{path}:{_line_of(template, name)}: var('{name}') is not defined in {VARS_FILE}")
        return variables[name]

    def var(name: str) -> str:
        value = lookup(name)
        if isinstance(value, dict):
            raise SqlModelError(
                f"{path}:{_line_of(template, name)}: var('{name}') is a mapping; use var_by_language('{name}')"
            )
        return "NULL" if record is not None else sql_literal(value)

    def var_by_language(name: str, column: str = "language") -> str:
        value = lookup(name)
        if record is not None:
            return "NULL"
        if not isinstance(value, dict) or "default" not in value:
            raise SqlModelError(
                f"{path}:{_line_of(template, name)}: var_by_language('{name}') needs a mapping with a 'default' key "
                f"in {VARS_FILE}"
            )
        cases = " ".join(
            f"WHEN {sql_literal(lang)} THEN {sql_literal(v)}" for lang, v in value.items() if lang != "default"
        )
        default = sql_literal(value["default"])
        return f"(CASE {column} {cases} ELSE {default} END)" if cases else default

    try:
        return env.from_string(template).render(ref=ref, source=source, var=var, var_by_language=var_by_language)
    except jinja2.TemplateSyntaxError as exc:
        raise SqlModelError(f"{path}:{exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise SqlModelError(f"{path}: {exc.message}") from None


def _parse_config(path: Path, text: str) -> tuple[str, dict[str, Any]]:
    blocks = list(_CONFIG_BLOCK.finditer(text))
    if len(blocks) > 1:
        raise SqlModelError(f"{path}:{_line_of(text, blocks[1].group(0))}: more than one config() block")
    if not blocks:
        return text, {}
    block = blocks[0]
    captured: dict[str, Any] = {}

    def config(**kwargs: Any) -> str:
        captured.update(kwargs)
        return ""

    line = text.count("\n", 0, block.start()) + 1
    try:
        _env().from_string(block.group(0)).render(config=config)
    except jinja2.TemplateError as exc:
        raise SqlModelError(f"{path}:{line}: bad config(): {exc}") from None
    # Blank the block but keep its newlines so that DuckDB's line numbers still point into the file.
    blank = "\n" * block.group(0).count("\n")
    return text[: block.start()] + blank + text[block.end() :], captured


def _parse_tests(path: Path, spec: Any) -> tuple[ModelTest, ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict):
        raise SqlModelError(f"{path}: config tests must be a mapping")
    tests: list[ModelTest] = []
    for kind, value in spec.items():
        if kind in ("unique", "not_null"):
            tests += [ModelTest(kind, col) for col in ([value] if isinstance(value, str) else value)]
        elif kind == "accepted_values":
            tests += [ModelTest(kind, col, tuple(vals)) for col, vals in value.items()]
        elif kind == "min_rows":
            tests.append(ModelTest(kind, None, int(value)))
        else:
            raise SqlModelError(f"{path}: unknown test {kind!r} (known: unique, not_null, accepted_values, min_rows)")
    return tuple(tests)


def _parse_columns(path: Path, spec: Any) -> tuple[tuple[str, str], ...]:
    if spec is None:
        return ()
    if not isinstance(spec, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in spec.items()):
        raise SqlModelError(f"{path}: config columns must map column names to descriptions (strings)")
    return tuple(spec.items())


def parse_model(path: Path) -> SqlModel:
    name = path.stem
    if not _MODEL_NAME.match(name):
        raise SqlModelError(f"{path}:1: model file names must be lower_snake_case identifiers")
    text = path.read_text(encoding="utf-8")
    template, config = _parse_config(path, text)
    description_lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        description_lines.append(stripped[2:].strip())
    record: dict[str, list[str]] = {"refs": [], "sources": [], "vars": []}
    _render(path, template, _env(), {}, record)
    materialized = config.get("materialized", "table")
    if materialized not in ("table", "view"):
        raise SqlModelError(f"{path}: materialized must be 'table' or 'view', not {materialized!r}")
    return SqlModel(
        name=name,
        path=path,
        template=template,
        description=" ".join(description_lines).strip() or f"SQL model {name}",
        materialized=materialized,
        refs=tuple(dict.fromkeys(record["refs"])),
        sources=tuple(dict.fromkeys(record["sources"])),
        vars=tuple(dict.fromkeys(record["vars"])),
        tests=_parse_tests(path, config.get("tests")),
        columns=_parse_columns(path, config.get("columns")),
    )


def load_vars(sql_dir: Path) -> dict[str, Any]:
    path = sql_dir / VARS_FILE
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SqlModelError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise SqlModelError(f"{path}: expected a mapping of variable names to values")
    return data


def load_models(sql_dir: Path, known_sources: set[str] | None = None) -> dict[str, SqlModel]:
    """All models of a directory in dependency order; refs, sources and vars are checked up front."""
    if not sql_dir.is_dir():
        raise SqlModelError(f"{sql_dir}: SQL models directory does not exist")
    models = {m.name: m for m in (parse_model(p) for p in sorted(sql_dir.glob("*.sql")))}
    variables = load_vars(sql_dir)
    for model in models.values():
        text = model.path.read_text(encoding="utf-8")
        for ref in model.refs:
            if ref not in models:
                raise SqlModelError(f"{model.path}:{_line_of(text, ref)}: ref('{ref}') names no model")
        for src in model.sources:
            if known_sources is not None and src not in known_sources:
                raise SqlModelError(
                    f"{model.path}:{_line_of(text, src)}: source('{src}') is not one of {sorted(known_sources)}"
                )
        for name in model.vars:
            if name not in variables:
                raise SqlModelError(f"{model.path}:{_line_of(text, name)}: var('{name}') is not defined in {VARS_FILE}")
    try:
        order = list(TopologicalSorter({m.name: set(m.refs) for m in models.values()}).static_order())
    except CycleError as exc:
        raise SqlModelError(f"{sql_dir}: models depend on each other in a cycle: {exc.args[1]}") from None
    return {name: models[name] for name in order}


@dataclass(frozen=True)
class ModelRun:
    row_count: int
    columns: list[tuple[str, str]]


def run_model(con: duckdb.DuckDBPyConnection, model: SqlModel, variables: Mapping[str, Any]) -> ModelRun:
    """(Re)build one model as a table or view; errors name the model's file."""
    body = model.render(variables).rstrip().rstrip(";")
    kind = "TABLE" if model.materialized == "table" else "VIEW"
    # Same first line as the file, so DuckDB's "LINE n" is the file's line n.
    statement = f'CREATE OR REPLACE {kind} "{model.name}" AS ' + body
    try:
        con.execute(statement)
        row_count = con.execute(f'SELECT count(*) FROM "{model.name}"').fetchone()
        columns = con.execute(f'DESCRIBE "{model.name}"').fetchall()
    except duckdb.Error as exc:
        line = re.search(r"LINE (\d+):", str(exc))
        where = f"{model.path}:{line.group(1)}" if line else str(model.path)
        raise SqlModelError(f"{where}: {type(exc).__name__}: {exc}") from None
    produced = [c[0] for c in columns]
    undocumented = [name for name, _ in model.columns if name not in produced]
    if undocumented:
        raise SqlModelError(
            f"{model.path}: config columns describes {', '.join(undocumented)}, which the model does not produce "
            f"(its columns: {', '.join(produced)})"
        )
    return ModelRun(row_count=int(row_count[0]) if row_count else 0, columns=[(c[0], c[1]) for c in columns])


def run_test(con: duckdb.DuckDBPyConnection, model: SqlModel, test: ModelTest) -> int:
    """How many rows break a declared test (0 = pass)."""
    row = con.execute(test.failing_rows_sql(f'"{model.name}"')).fetchone()
    return int(row[0]) if row else 0
