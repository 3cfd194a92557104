"""Slugs: normalization of display names and titles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.slugs import (
    MAX_SLUG_LENGTH,
    is_valid_slug,
    slug_problem,
    slugify,
    title_slug,
    truncate_slug,
)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Middle East", "middle-east"),
        ("  Middle   East  ", "middle-east"),
        ("MIDDLE-EAST", "middle-east"),
        ("Iran's nuclear programme", "irans-nuclear-programme"),
        ("Lavrov’s remarks", "lavrovs-remarks"),
        ("Café Société", "cafe-societe"),
        ("Ближний Восток", "blizhniy-vostok"),
        ("Сергей Лавров", "sergey-lavrov"),
        ("Щёлково", "shchyolkovo"),
        ("Straße", "strasse"),
        ("Øresund", "oresund"),
        ("İstanbul", "istanbul"),
        ("Σύρια", "σύρια"),
        ("中东", "中东"),
        ("G20 summit, 2014", "g20-summit-2014"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_title_slugs_are_cut_at_a_word_boundary() -> None:
    title = "Comment by Russian Foreign Minister Sergey Lavrov " * 5
    slug = title_slug(title)
    assert len(slug) <= 100
    assert slug.startswith("comment-by-russian-foreign-minister-sergey-lavrov-comment")
    assert not slug.endswith("-")
    assert title.lower().replace(" ", "-").startswith(slug)


def test_truncate_without_boundary() -> None:
    assert truncate_slug("abcdef", 3) == "abc"
    assert truncate_slug("ab-cdef", 4) == "ab"
    assert truncate_slug("ab-cd", 10) == "ab-cd"


def test_slug_validation() -> None:
    assert is_valid_slug("middle-east")
    assert slug_problem("") == "it is empty"
    assert "canonical" in (slug_problem("Middle-East") or "")
    assert "canonical" in (slug_problem("middle--east") or "")
    assert "at most" in (slug_problem("a" * (MAX_SLUG_LENGTH + 1)) or "")


@given(st.text())
def test_slugify_is_idempotent_and_gives_valid_slugs(text: str) -> None:
    slug = slugify(text)
    assert slugify(slug) == slug
    assert not slug.startswith("-")
    assert not slug.endswith("-")
    assert "--" not in slug
    if slug and len(slug) <= MAX_SLUG_LENGTH:
        assert is_valid_slug(slug)
