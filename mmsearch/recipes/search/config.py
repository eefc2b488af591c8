"""Config of the one-shot supernet search recipe (``mmsearch.recipes.search.run_search``).

Sections: ``data`` (which precomputed task data, how the training split is divided), ``model``
(the supernet: widths, depths, candidate pools, architecture-weight init), ``head`` (the task
head; defaults to the data's task), ``search`` (strategy, epochs, warm-up, the alternating
optimisation, learning rates, batch sizes), ``eval`` (per-epoch validation of the derived
architecture), plus ``seed`` and ``output_dir``. Defaults are MMnas's search settings (H=256,
12 + 18 blocks, 100 epochs with 20 warm-up epochs, one architecture step per 5 weight steps,
Adam 4e-4 with a 3-epoch warm-up for the weights, Adam 0.1 with betas (0, 0.999) for the
architecture weights); ``configs/search/*.yaml`` are small configs for a CPU.

What the data decides is left unset here and filled by :func:`resolve_config` from the data's
:class:`~mmsearch.data.task_data.TaskInfo`: ``model.text_input`` (= ``data.text_input``),
``model.vocab_size``, ``model.text_state_dim``, ``model.region_dim``, ``model.word_dim`` (the width
of pretrained embedding rows, if the data has them) and the VQA head's ``num_answers``. A value
set in the config must agree with the data. The resolved config is what every run writes.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from mmsearch.config import config_dataclass, field_names, replace
from mmsearch.tasks import HeadConfig, primary_metric
from mmsearch.nas import StrategySettings, SupernetConfig, initial_alphas
from mmsearch.nas.arch_spec import DEFAULT_POOLS, canonical_pool
from mmsearch.nas.fusion_supernet import fusion_initial_alphas
from mmsearch.nas.stream_spec import DEFAULT_FUSION_POOL, fusion_pool
from mmsearch.recipes.model_config import ModelConfig
from mmsearch.recipes.resolve import check_task_agreement, checked, data_sizes
from mmsearch.data.task_data import TaskDataConfig, TaskInfo

_NET_SECTION = frozenset(field_names(ModelConfig))


@config_dataclass
class SearchModelConfig(ModelConfig):
    """The supernet: the network (:class:`~mmsearch.recipes.model_config.ModelConfig`, at MMnas's
    search width) plus the search space, flat (:class:`~mmsearch.nas.SupernetConfig`'s fields)."""

    hidden: int = Field(default=256, gt=0)  # width H (MMnas search: 256)
    # The search space. "mmnas": MMnas's encoder-decoder (enc_pool / dec_pool); "fusion": every
    # block of both stages (enc_depth, then dec_depth blocks) picks a stream:op from fusion_pool --
    # where the modalities interact and how (mmsearch.nas.fusion_supernet).
    search_space: Literal["mmnas", "fusion"] = "mmnas"
    fusion_pool: tuple[str, ...] = DEFAULT_FUSION_POOL
    enc_depth: int = Field(default=12, ge=1)
    dec_depth: int = Field(default=18, ge=1)
    enc_pool: tuple[str, ...] = DEFAULT_POOLS["enc"]
    dec_pool: tuple[str, ...] = DEFAULT_POOLS["dec"]
    alpha_init: Literal["uniform", "mcan_prior"] = "mcan_prior"
    prior_strength: float = Field(default=1.0, ge=0.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        for chain in ("enc", "dec"):
            try:
                canonical_pool(chain, getattr(self, f"{chain}_pool"))
            except (KeyError, ValueError) as err:
                raise ValueError(f"{chain}_pool: {err}") from None
        try:
            fusion_pool(self.fusion_pool)
        except (KeyError, ValueError) as err:
            raise ValueError(f"fusion_pool: {err}") from None
        # Stand-in data sizes: every check of SupernetConfig and of the MCAN prior against the
        # pools runs now, before any data is read.
        probe = self.supernet_config(text_input=self.text_input or "tokens", probe=True)
        try:
            (fusion_initial_alphas if self.search_space == "fusion" else initial_alphas)(probe)
        except ValueError as err:
            raise ValueError(f"alpha_init: {err}") from None

    def supernet_config(self, *, text_input: str, strategy: StrategySettings = StrategySettings(), seed: int = 0,
                        probe: bool = False) -> SupernetConfig:
        """The nas config: this network and search space, ``strategy``'s settings (the search
        section), ``seed``. ``probe``: stand-in values for the sizes the data decides (validation only)."""
        space = {name: getattr(self, name) for name in field_names(SearchModelConfig) if name not in _NET_SECTION}
        net = self.net_config(text_input=text_input, probe=probe)
        return checked(SupernetConfig, {"net": net, **space, **strategy.strategy_settings(), "seed": seed})


@config_dataclass
class SearchSettings(StrategySettings):
    """The strategy (:class:`~mmsearch.nas.StrategySettings`: ``strategy``, ``warmup_sampling``,
    ``spos_momentum``) and the alternating optimisation (MMnas: ``search_vqa.py``)."""

    epochs: int = Field(default=100, ge=1)  # MMnas VQA / VG: 100, ITM: 200
    warmup_epochs: int = Field(default=20, ge=0)  # first epochs with the architecture weights frozen
    arch_every: int = Field(default=5, ge=1)  # one architecture step after every k weight steps of an epoch
    batch_size: int = Field(default=64, ge=1)  # weight-step batch ("weights" part)
    arch_batch_size: int = Field(default=64, ge=1)  # architecture-step batch ("arch" part)
    drop_last: bool = True  # skip each pass's last, smaller batch
    max_steps_per_epoch: Optional[int] = Field(default=None, ge=1)  # cap on weight steps per epoch (smoke runs)
    weight_lr: float = Field(default=4e-4, gt=0.0)  # MMnas: 4e-4 (ITM 1e-4)
    # Multipliers of weight_lr in epochs 1, 2, ... (MMnas: 1/4, 1/2, 3/4 of lr in epochs 1-3), then 1.
    weight_lr_warmup: tuple[float, ...] = (0.25, 0.5, 0.75)
    weight_lr_decay_epochs: tuple[int, ...] = ()  # from each of these epochs on, multiply by decay_rate
    weight_lr_decay_rate: float = Field(default=0.2, gt=0.0)
    weight_betas: tuple[float, float] = (0.9, 0.98)
    weight_eps: float = Field(default=1e-9, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    arch_lr: float = Field(default=0.1, gt=0.0)  # MMnas: Adam(0.1, betas (0, 0.999)) on the alphas
    arch_betas: tuple[float, float] = (0.0, 0.999)
    grad_clip: Optional[float] = Field(default=1.0, gt=0.0)  # max grad norm of the weights (None = off)
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    # "auto": bf16 autocast on a GPU that supports it, fp32 on CPUs (bf16 matmul is slow there)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_threads: Optional[int] = Field(default=None, ge=1)  # torch intra-op threads (None = torch's default)

    def __post_init__(self) -> None:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"search.warmup_epochs ({self.warmup_epochs}) must be smaller than search.epochs ({self.epochs}): "
                "the architecture weights would never be trained"
            )
        if any(m <= 0 for m in self.weight_lr_warmup):
            raise ValueError(f"search.weight_lr_warmup multipliers must be positive, got {list(self.weight_lr_warmup)}")
        if any(e < 1 for e in self.weight_lr_decay_epochs):
            raise ValueError(f"search.weight_lr_decay_epochs are 1-based epochs, got {list(self.weight_lr_decay_epochs)}")
        for key in ("weight_betas", "arch_betas"):
            if not all(0.0 <= b < 1.0 for b in getattr(self, key)):
                raise ValueError(f"search.{key} must be in [0, 1), got {list(getattr(self, key))}")


@config_dataclass
class SearchEvalSettings:
    """Validation of the derived (argmax) architecture with the supernet's weights, every epoch."""

    batch_size: int = Field(default=128, ge=1)
    max_samples: Optional[int] = Field(default=None, ge=1)  # cap on validation samples (None = the whole split)


@config_dataclass
class SearchConfig:
    data: TaskDataConfig = TaskDataConfig()
    model: SearchModelConfig = SearchModelConfig()
    head: Optional[HeadConfig] = None  # None = the defaults of the data's task head
    search: SearchSettings = SearchSettings()
    eval: SearchEvalSettings = SearchEvalSettings()
    seed: int = 0  # initialisation, data order, path sampling and dropout all derive from it (MMnas: 888)
    output_dir: str = ""  # run directory without a context ("" = runs/search_<task>_<strategy>_seed<seed>)

    def __post_init__(self) -> None:
        check_task_agreement(self.head, self.data, self.model.text_input)

    @property
    def primary_metric(self) -> str:
        """The task's validation metric (higher is better), reported as ``val_metric``."""
        return primary_metric(self.data.task)

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/search_{self.data.task}_{self.search.strategy}_seed{self.seed}"


def supernet_config(cfg: SearchConfig) -> SupernetConfig:
    """The :class:`~mmsearch.nas.SupernetConfig` of a resolved search config (see :func:`resolve_config`)."""
    return cfg.model.supernet_config(text_input=cfg.data.text_input, strategy=cfg.search, seed=cfg.seed)


def resolve_config(cfg: SearchConfig, info: TaskInfo) -> SearchConfig:
    """``cfg`` with the data-dependent sizes filled from ``info``; a set value must agree with it."""
    changes, head = data_sizes(cfg.model, cfg.head, cfg.data, info)
    return replace(cfg, model=replace(cfg.model, **changes), head=head, output_dir=cfg.run_dir)


def weight_lr(settings: SearchSettings, epoch: int) -> float:
    """Learning rate of the network weights in 1-based ``epoch`` (constant within an epoch).

    Warm-up multipliers for the first epochs (MMnas: 1/4, 1/2, 3/4), then the base rate, times
    ``decay_rate`` for every decay epoch reached. A pure function of the epoch, so a resumed run
    needs no scheduler state.
    """
    if epoch < 1:
        raise ValueError(f"epochs are 1-based, got {epoch}")
    lr = settings.weight_lr
    if epoch <= len(settings.weight_lr_warmup):
        lr *= settings.weight_lr_warmup[epoch - 1]
    for decay_epoch in settings.weight_lr_decay_epochs:
        if epoch >= decay_epoch:
            lr *= settings.weight_lr_decay_rate
    return lr


__all__ = [
    "SearchConfig",
    "SearchEvalSettings",
    "SearchModelConfig",
    "SearchSettings",
    "resolve_config",
    "supernet_config",
    "weight_lr",
]
