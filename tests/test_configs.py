"""Every pretraining config file builds, and refuses a preset it does not define."""

import importlib

import pytest


@pytest.mark.parametrize("name", ["demo", "mtat", "ssl", "sl"])
def test_unknown_preset_is_refused(name):
  module = importlib.import_module(f"configs.{name}")
  assert module.get_config().data.batch_size > 0
  with pytest.raises(ValueError, match=rf"configs/{name}\.py.*'no_such_preset'"):
    module.get_config("no_such_preset")
