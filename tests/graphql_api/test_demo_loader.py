"""The demo loader's waves: commands that depend on each other never run side by side."""

from __future__ import annotations

from domain.commands import WithdrawStatement
from domain.demo import demo_commands
from graphql_api.service_layer.demo_loader import WAVE, _waves


def test_withdrawals_run_in_waves_of_their_own_after_everything_before_them() -> None:
    # 300 statements: the last wave of links would otherwise hold the withdrawals too.
    commands = list(demo_commands(300, 1000, 1))
    waves = list(_waves(iter(commands), WAVE))
    assert [command for wave in waves for command in wave] == commands
    assert all(len(wave) <= WAVE for wave in waves)
    mixed = [wave for wave in waves if len({isinstance(c, WithdrawStatement) for c in wave}) > 1]
    assert not mixed
    assert any(isinstance(wave[0], WithdrawStatement) for wave in waves)
