"""The demo data generator: deterministic, realistic, and valid under the domain rules."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date

from domain.commands import (
    ImportViews,
    LinkRelated,
    PublishStatement,
    RecordView,
    ReviseStatement,
    TagStatement,
    WithdrawStatement,
)
from domain.demo import demo_commands
from domain.events import Tagged
from domain.handlers import StatementHandlers
from tests.domain.memory_event_log import InMemoryEventLog


def test_same_arguments_give_the_same_commands_whatever_the_global_random_state() -> None:
    random.seed(1)
    first = list(demo_commands(40, 2_000, seed=7))
    random.seed(2)
    second = list(demo_commands(40, 2_000, seed=7))
    assert first == second
    assert first != list(demo_commands(40, 2_000, seed=8))


def test_counts_and_views_add_up() -> None:
    commands = list(demo_commands(120, 50_000, seed=3))
    kinds = Counter(type(c) for c in commands)
    assert kinds[PublishStatement] == 120
    assert kinds[TagStatement] == 120
    assert kinds[LinkRelated] > 0
    assert kinds[ImportViews] > 0
    assert kinds[RecordView] > 0
    total = sum(c.count for c in commands if isinstance(c, ImportViews)) + kinds[RecordView]
    assert total == 50_000
    # Bulk counts keep the number of commands far below the number of views.
    assert len(commands) < 5_000


def test_data_looks_like_a_newsroom() -> None:
    commands = list(demo_commands(300, 100_000, seed=11))
    publishes = [c for c in commands if isinstance(c, PublishStatement)]
    assert len({c.statement_id for c in publishes}) == 300
    assert len({c.slug for c in publishes}) == 300
    ministers = Counter(c.minister.id for c in publishes if c.minister is not None)
    assert len(ministers) >= 4
    # Titles change over the years: some minister's statements record two titles.
    titles: dict[str, set[str]] = {}
    for c in publishes:
        if c.minister is not None:
            titles.setdefault(c.minister.id, set()).add(c.minister.title)
    assert any(len(held) > 1 for held in titles.values())
    assert ministers.most_common(1)[0][0] == "sergey-lavrov"
    years = {c.occurred_on.year for c in publishes}
    assert len(years) >= 8
    assert min(c.occurred_on for c in publishes) >= date(2008, 1, 1)
    assert len({c.kind for c in publishes}) >= 5
    topics = Counter(t for c in commands if isinstance(c, TagStatement) for t in c.topics)
    (_top, top_count), *_ = topics.most_common()
    assert top_count > 5 * topics.most_common()[-1][1]
    views = Counter[str]()
    for c in commands:
        if isinstance(c, ImportViews):
            views[c.statement_id] += c.count
        elif isinstance(c, RecordView):
            views[c.statement_id] += 1
    ranked = [count for _, count in views.most_common()]
    # Skewed: the top 10% of statements get most of the views.
    assert sum(ranked[:30]) > sum(ranked) / 2


async def test_demo_commands_all_pass_the_rules() -> None:
    log = InMemoryEventLog()
    handlers = StatementHandlers(log)
    commands = list(demo_commands(150, 5_000, seed=5))
    withdrawn: set[str] = set()
    for command in commands:
        assert command.statement_id not in withdrawn
        await handlers.handle(command)
        if isinstance(command, WithdrawStatement):
            withdrawn.add(command.statement_id)
    tagged = [e for e in log.all_events if isinstance(e.event, Tagged)]
    assert len(tagged) >= 150
    assert any(isinstance(c, ReviseStatement) for c in commands)


def test_nothing_for_no_statements() -> None:
    assert list(demo_commands(0, 1_000, seed=1)) == []
