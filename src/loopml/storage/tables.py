"""Tabular files: reading CSV/Parquet sources, writing dataset versions as Parquet, DuckDB SQL over them.

This is the only module that does table IO with pyarrow and DuckDB, so the file format, its
determinism and the query engine can change in one place.

Parquet versions are written **deterministically** (same rows -> same bytes): no pandas index or
pandas metadata, fixed compression and row-group size. A version's identity is the sha256 of
these bytes, so re-ingesting the same rows is recognised as the same version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from loopml.errors import NotFoundError, ValidationError

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW_GROUP_SIZE = 256 * 1024
#: contract dtype -> Parquet/Arrow type (everything else is inferred from the pandas dtype)
_ARROW_TYPES = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "category": pa.string(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_NULL_TEXT = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]


def source_format(path: str | Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name (``.gz``/``.bz2`` CSVs are fine)."""
    name = str(path).lower()
    for suffix in (".gz", ".bz2", ".zst"):
        name = name.removesuffix(suffix)
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ValidationError(
        f"cannot tell the format of {str(path)!r}: name it *.csv (or .csv.gz, .tsv) or *.parquet."
    )


def read_source(path: str | Path, *, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    CSV columns listed in ``text_columns`` are read as text, not type-inferred, so the contract
    decides how to convert them ("007" stays "007" in a str column, "12x" becomes one bad row in
    an int column instead of turning the whole column into text).
    """
    path = Path(path)
    fmt = source_format(path)
    if not path.is_file():
        raise NotFoundError(
            f"input file {str(path)!r} does not exist; check the path (relative to {Path.cwd()})."
        )
    try:
        if fmt == "parquet":
            return pq.read_table(path).to_pandas(date_as_object=False)
        delimiter = "\t" if str(path).lower().removesuffix(".gz").endswith(".tsv") else ","
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(text_columns, pa.string()),
                null_values=_NULL_TEXT,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        return table.to_pandas(date_as_object=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as exc:
        hint = (
            "check it is a Parquet file (not renamed CSV) and not truncated"
            if fmt == "parquet"
            else "check it is UTF-8, comma-separated (tab for .tsv), with a header row and the same number of fields on every line"
        )
        raise ValidationError(
            f"cannot read {fmt.upper()} file {str(path)!r}: {_first_line(exc)}; {hint}."
        ) from None


def write_parquet(frame: pd.DataFrame, path: str | Path, dtypes: Mapping[str, str]) -> int:
    """Write ``frame`` to ``path`` deterministically with contract ``dtypes``; return its size in bytes."""
    write_table(to_arrow(frame, dtypes), path, dtypes)
    return Path(path).stat().st_size


def to_arrow(frame: pd.DataFrame, dtypes: Mapping[str, str]) -> pa.Table:
    """``frame`` as an Arrow table with the contract's types and no pandas metadata (the stored form)."""
    fields = []
    for name in frame.columns:
        arrow_type = _ARROW_TYPES.get(dtypes.get(name, ""))
        fields.append(pa.field(name, arrow_type) if arrow_type is not None else None)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if all(f is not None for f in fields):
        table = table.cast(pa.schema(fields))
    return table.replace_schema_metadata(None)


def write_table(table: pa.Table, sink: str | Path | pa.NativeFile, dtypes: Mapping[str, str]) -> None:
    """Write an Arrow table with the fixed options that make equal rows give equal bytes."""
    pq.write_table(
        table,
        sink,
        compression="zstd",
        # Dictionary-encode only low-cardinality kinds; trying it on ids and timestamps costs ~30 % write time.
        use_dictionary=[n for n in table.column_names if dtypes.get(n) in ("str", "category", "bool")]
        or False,
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
        store_schema=False,
    )


def arrow_schema(columns: Sequence[tuple[str, str]]) -> pa.Schema:
    """The stored Arrow schema for contract ``(name, dtype)`` pairs."""
    return pa.schema([pa.field(name, _ARROW_TYPES[dtype]) for name, dtype in columns])


def read_parquet(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a stored version back; unknown ``columns`` are a ValidationError naming the real ones."""
    schema = pq.read_schema(path)
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise ValidationError(
                f"unknown column(s) {', '.join(unknown)}; this version has: {', '.join(schema.names)}."
            )
    return pq.read_table(path, columns=list(columns) if columns is not None else None).to_pandas()


def query(sql: str, views: Mapping[str, str | Path | Sequence[str | Path]]) -> pd.DataFrame:
    """Run ``sql`` in a fresh in-memory DuckDB with one view per ``{view_name: parquet_path}``.

    A view may also be a list of Parquet paths (a partitioned dataset): it reads their union, with
    columns matched by name so partitions written under an older contract still line up.
    """
    import duckdb

    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError("sql: give a query, e.g. SELECT count(*) FROM my_dataset.")
    con = duckdb.connect(":memory:")
    try:
        for name, path in views.items():
            quoted = '"' + name.replace('"', '""') + '"'
            if isinstance(path, (str, Path)):
                source = f"read_parquet({_sql_text(path)})"
            else:
                source = f"read_parquet([{', '.join(_sql_text(p) for p in path)}], union_by_name = true)"
            con.execute(f"CREATE VIEW {quoted} AS SELECT * FROM {source}")
        try:
            result = con.execute(sql)
        except duckdb.Error as exc:
            known = ", ".join(sorted(views)) or "none"
            raise ValidationError(
                f"SQL failed: {_first_line(exc)}. Datasets visible to this query: {known} "
                '(refer to a version as "name@3" in double quotes).'
            ) from None
        if result.description is None:
            return pd.DataFrame()
        return result.df()
    finally:
        con.close()


def _sql_text(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return re.split(r"\n", text, maxsplit=1)[0] if text else type(exc).__name__
