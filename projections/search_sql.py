"""The SQL of a search: FTS5's snippet and match on SQLite, and on PostgreSQL the same
``bm25`` formula FTS5 computes, from the same inputs, so both databases rank a result alike.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, TSQUERY

from projections.search_text import TS_CONFIG, SearchTerms, term_operands

SNIPPET_START: Final = "<mark>"
SNIPPET_END: Final = "</mark>"
SNIPPET_ELLIPSIS: Final = "…"
SNIPPET_TOKENS: Final = 32  # FTS5 allows at most 64
HEADLINE_OPTIONS: Final = (
    f"StartSel={SNIPPET_START}, StopSel={SNIPPET_END}, MaxWords=35, MinWords=15, "
    f'MaxFragments=2, FragmentDelimiter=" {SNIPPET_ELLIPSIS} "'
)
#: bm25 weights of the FTS5 columns (statement_id, title, body): a title hit counts tenfold.
BM25_WEIGHTS: Final = (0.0, 10.0, 1.0)
#: FTS5's bm25 parameters (fixed in its source).
_BM25_K1: Final = "1.2"
_BM25_B: Final = "0.75"
# ts_rank_cd sums the weights of a term's occurrences, {D, C, B, A} with the title under A and the
# body under B; a weight may not exceed 1, so these are the bm25 weights over _TF_SCALE.
_TF_SCALE: Final = max(BM25_WEIGHTS)
_TF_WEIGHTS: Final = (
    f"'{{0,0,{BM25_WEIGHTS[2] / _TF_SCALE},{BM25_WEIGHTS[1] / _TF_SCALE}}}'::real[]"
)


def _f8(value: Any) -> Any:
    """A double precision value: PostgreSQL computes with the C doubles FTS5 uses."""
    if isinstance(value, str):
        return sa.literal_column(f"CAST({value} AS DOUBLE PRECISION)", DOUBLE_PRECISION)
    return sa.cast(value, DOUBLE_PRECISION)


def _to_tsquery(config: str, operand: str) -> Any:
    return sa.func.to_tsquery(
        sa.literal_column(f"'{config}'::regconfig"), sa.literal(operand), type_=TSQUERY
    )


def _all_of(queries: Sequence[Any]) -> Any:
    return functools.reduce(lambda a, b: a.op("&&")(b), queries)


def _any_of(queries: Sequence[Any]) -> Any:
    return functools.reduce(lambda a, b: a.op("||")(b), queries)


@dataclass(frozen=True, slots=True)
class PgSearch:
    """A search's terms as PostgreSQL ``tsquery`` values, and FTS5's bm25 over them.

    ``params`` is a one-row CTE, computed once per statement: ``q_all`` (every term, as FTS5
    matches them); ``headline`` (any term, through the stemming configuration: ``ts_headline``
    marks each word that matches one, and stems every word of the text, the short ones FTS5
    leaves alone included); for each term ``q<i>`` (the term alone) and ``idf<i>`` (its inverse
    document frequency, as FTS5 computes it); and ``avgdl``, the average statement length.
    """

    params: sa.CTE
    count: int

    def columns(self, index: sa.Table) -> list[Any]:
        """Per hit: each term's weighted occurrences (FTS5's "aFreq"), its idf, and avgdl."""
        p = self.params.c
        weights: Any = sa.literal_column(_TF_WEIGHTS)
        occurrences = [
            sa.func.round(
                _f8(sa.func.ts_rank_cd(weights, index.c.document, p[f"q{i}"])) * _f8(str(_TF_SCALE))
            ).label(f"tf{i}")
            for i in range(self.count)
        ]
        return [*occurrences, *(p[f"idf{i}"] for i in range(self.count)), p.avgdl]

    def bm25(self, hits: sa.Subquery) -> Any:
        """FTS5's bm25() score over :meth:`columns`, operation for operation."""
        k1, b = _f8(_BM25_K1), _f8(_BM25_B)
        norm = k1 * (_f8("1.0") - b + b * _f8(hits.c.length) / hits.c.avgdl)
        score: Any = None
        for i in range(self.count):
            freq = hits.c[f"tf{i}"]
            term = hits.c[f"idf{i}"] * ((freq * (k1 + _f8("1.0"))) / (freq + norm))
            score = term if score is None else score + term
        return score


def pg_search_for(index: sa.Table, stats: sa.Table, terms: SearchTerms) -> PgSearch:
    operands = term_operands(terms)
    count = len(operands)
    # OFFSET 0 keeps the subquery whole, so each tsquery is a value the counts below refer to.
    q = (
        sa.select(
            *(_to_tsquery(c, o).label(f"q{i}") for i, (c, o) in enumerate(operands)),
            _all_of([_to_tsquery(c, o) for c, o in operands]).label("q_all"),
            _any_of([_to_tsquery(TS_CONFIG, o) for _, o in operands]).label("headline"),
        )
        .offset(0)
        .subquery("q")
    )
    counted = index.alias("counted")
    # Each term's number of matching statements, from the GIN index.
    found = (
        sa.select(
            q,
            *(
                sa.select(sa.func.count())
                .select_from(counted)
                .where(counted.c.document.op("@@")(q.c[f"q{i}"]))
                .scalar_subquery()
                .label(f"n{i}")
                for i in range(count)
            ),
        )
        .cte("search_terms")
        .prefix_with("MATERIALIZED")
    )

    def idf(i: int) -> Any:
        # log((N - n + 0.5) / (n + 0.5)), or 1e-6 where that is not positive (a term in more
        # than half the statements), as in FTS5.
        n = found.c[f"n{i}"]
        x = sa.func.ln((_f8(stats.c.documents - n) + _f8("0.5")) / (_f8(n) + _f8("0.5")))
        return sa.case((x > 0, x), else_=_f8("1e-6")).label(f"idf{i}")

    params = (
        sa.select(
            *(found.c[f"q{i}"] for i in range(count)),
            found.c.q_all,
            found.c.headline,
            *(idf(i) for i in range(count)),
            (_f8(stats.c.tokens) / _f8(stats.c.documents)).label("avgdl"),
        )
        .select_from(found.outerjoin(stats, sa.true()))
        .cte("search_params")
        .prefix_with("MATERIALIZED")
    )
    return PgSearch(params, count)


def fts_table(index: sa.Table) -> Any:
    # FTS5 takes the table itself as MATCH's left side and as its functions' first argument.
    return sa.literal_column(f'"{index.name}"')
