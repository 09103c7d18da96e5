"""Every setting is declared once in config.py, and start-up checks each by its kind."""

import config
from capture import settings


def test_every_kind_of_setting_has_one_check():
    assert set(settings.CHECKS) == set(config.KINDS)


def test_config_holds_exactly_the_declared_settings_with_their_defaults():
    names = [setting.name for setting in config.SETTINGS]
    assert len(names) == len(set(names))
    assert {name for name in dir(config.Config) if name.isupper()} == set(names)
    for setting in config.SETTINGS:
        assert getattr(config.Config, setting.name) == setting.default

