"""One network config for both MMnas recipes, strategy settings in one place: the recipes' ``model``
sections are :class:`~mmsearch.nas.NetConfig` field for field (the search's adds only the search
space), and the search section is the :class:`~mmsearch.nas.StrategySettings` a supernet is built with."""
from __future__ import annotations

import dataclasses

import pytest

from mmsearch.config import ConfigError, load_config
from mmsearch.data.task_data import TaskInfo
from mmsearch.nas import NetConfig, StrategySettings, SupernetConfig
from mmsearch.recipes.model_config import ModelConfig
from mmsearch.recipes.search.config import SearchConfig, SearchModelConfig, SearchSettings, resolve_config, supernet_config
from mmsearch.recipes.train_derived.config import TrainDerivedConfig

DATA_DECIDED = {"text_input", "vocab_size", "word_dim", "text_state_dim", "region_dim"}
INFO = TaskInfo(task="vqa", region_dim=40, vocab_size=50, text_state_dim=24, num_answers=13, answers=tuple("abcdefghijklm"))


def _defaults(cls: type) -> dict[str, object]:
    """``{field: default}`` of a config dataclass (pydantic's view: a ``Field(default=...)`` unwrapped)."""
    fields = cls.__pydantic_fields__
    assert list(fields) == [f.name for f in dataclasses.fields(cls)]
    return {name: info.default for name, info in fields.items()}


def test_model_section_is_the_net_config_field_for_field():
    ours, net = _defaults(ModelConfig), _defaults(NetConfig)
    assert set(ours) == set(net)
    # the data decides these (None until resolved); MMnas's final training is 512 wide, its search 256
    assert ours == {**net, **dict.fromkeys(DATA_DECIDED), "hidden": 512} and net["hidden"] == 256
    assert type(TrainDerivedConfig().model) is ModelConfig  # derived training uses it as it is


def test_search_model_section_adds_only_the_search_space():
    ours, base = _defaults(SearchModelConfig), _defaults(ModelConfig)
    supernet = _defaults(SupernetConfig)
    space = set(supernet) - {"net", "seed"} - set(_defaults(StrategySettings))
    assert issubclass(SearchModelConfig, ModelConfig) and set(ours) == set(base) | space
    assert {name for name in base if ours[name] != base[name]} == {"hidden"} and ours["hidden"] == _defaults(NetConfig)["hidden"]
    assert all(ours[name] == supernet[name] for name in space)


def test_the_supernet_takes_the_strategy_settings_from_the_search_section():
    assert issubclass(SearchSettings, StrategySettings) and issubclass(SupernetConfig, StrategySettings)
    changes = {"strategy": "spos", "warmup_sampling": "uniform", "spos_momentum": 0.3}
    assert all(_defaults(StrategySettings)[k] != v for k, v in changes.items())  # every field set away from its default
    cfg = resolve_config(load_config(SearchConfig, {"model": {"hidden": 64}, "search": changes, "seed": 5}), INFO)
    supernet = supernet_config(cfg)
    assert {k: getattr(supernet, k) for k in changes} == changes and supernet.seed == 5
    assert supernet.net == cfg.model.net_config(text_input="tokens") and supernet.net.hidden == 64


@pytest.mark.parametrize("cls", [SearchConfig, TrainDerivedConfig])
@pytest.mark.parametrize(("override", "named"), [
    ("model.hidden=-1", "model.hidden: Input should be greater than 0"),
    ("model.dropout=1.5", "model.dropout: Input should be less than 1"),
    ("model.hidden=100", "model: Value error, hidden (100) must be a multiple of head_dim (64)"),
    ("model.vocab_size=0", "model.vocab_size: Input should be greater than 0"),
])
def test_both_model_sections_name_the_key(cls, override, named):
    with pytest.raises(ConfigError) as err:
        load_config(cls, {}, [override])
    assert named in str(err.value)


def test_strategy_errors_name_the_key_in_the_search_section_and_the_supernet_config():
    with pytest.raises(ConfigError, match=r"search\.strategy: Value error, unknown strategy 'enas'; known strategies: proxyless"):
        load_config(SearchConfig, {}, ["search.strategy=enas"])
    with pytest.raises(ConfigError, match=r"search\.spos_momentum: Input should be less than or equal to 1"):
        load_config(SearchConfig, {}, ["search.spos_momentum=2"])
    with pytest.raises(ConfigError, match=r"\n  strategy: Value error, unknown strategy 'enas'"):
        load_config(SupernetConfig, {"net": {"vocab_size": 10}, "strategy": "enas"})
