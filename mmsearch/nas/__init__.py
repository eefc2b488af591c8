"""MMnas-style one-shot architecture search: specs, supernet, strategies, derivation, derived nets.

Typical search loop (the recipe in :mod:`mmsearch.recipes` owns data, schedule, checkpoints)::

    supernet = Supernet(SupernetConfig(net=NetConfig(vocab_size=V)))
    head = build_head("vqa", supernet.config.net.hidden, num_answers=A)     # mmsearch.tasks
    objective = make_objective("vqa", num_answers=A).loss_from_outputs     # (outputs, batch) -> (loss, logs)
    w_opt, a_opt = make_weight_optimizer(supernet, head), make_arch_optimizer(supernet)
    weight_step(supernet, head, objective, train_batch, w_opt, clip=1.0, warmup=epoch < 20)
    arch_step(supernet, head, objective, val_batch, a_opt)                 # every k weight steps
    spec = supernet.derive(epoch=epoch)                                    # argmax + probs per block
    entropy = arch_entropy(supernet.alpha_state())                         # convergence / collapse
    outputs = supernet(val_batch, head)                                    # the argmax architecture
    net = DerivedNet(spec, supernet.config)                                # retrain from scratch

Fusion designs (the six interaction patterns, :mod:`mmsearch.nas.stream_spec`): ``FusionSpec``
lists blocks per stream (text, image, both, joint); ``build_derived(spec, net)`` builds the fixed
network of any spec; ``pattern_spec("co_attention")`` loads a shipped pattern. ``SupernetConfig(...,
search_space="fusion")`` + ``build_supernet(config)`` searches where and how the streams fuse
(:mod:`mmsearch.nas.fusion_supernet`); the steps and strategies above work on it unchanged.

(ITM: run the objective's ``prepare(run, batch)`` first, then step on the batch it returns.)
Exact resume: ``supernet.state_dict()`` carries the strategy's sampling RNG; save both
optimisers' state dicts and the global torch RNG next to it.
"""
from mmsearch.nas.arch_spec import (
    DEFAULT_POOLS,
    ArchSpec,
    block_entropy,
    load_arch_spec,
    mcan_prior_spec,
    named_spec,
    named_specs,
    random_spec,
    save_arch_spec,
)
from mmsearch.nas.derive import arch_entropy, block_probabilities, derive
from mmsearch.nas.derived import DerivedNet
from mmsearch.nas.mixed_op import ChainPlan, MixedOp, PathPlan
from mmsearch.nas.net_config import NetConfig, StrategySettings, SupernetConfig
from mmsearch.nas.strategy_base import STRATEGIES, SearchStrategy
from mmsearch.nas import proxyless, darts, spos, fair  # noqa: F401,I001  (registers the strategies, MMnas first)
from mmsearch.nas.steps import (
    arch_step,
    make_arch_optimizer,
    make_weight_optimizer,
    network_weights,
    train_step,
    weight_step,
)
from mmsearch.nas.supernet import Supernet, initial_alphas
from mmsearch.nas.stream_spec import (
    PATTERNS,
    Block,
    FusionSpec,
    load_spec,
    pattern_spec,
    save_spec,
    shipped_spec,
    shipped_spec_names,
    spec_from_dict,
)
from mmsearch.nas.stream_net import StreamNet, build_derived
from mmsearch.nas.fusion_supernet import FusionSupernet, build_supernet, load_stream_net_from_supernet

__all__ = [
    "DEFAULT_POOLS",
    "PATTERNS",
    "Block",
    "FusionSpec",
    "FusionSupernet",
    "build_supernet",
    "load_stream_net_from_supernet",
    "StreamNet",
    "build_derived",
    "load_spec",
    "pattern_spec",
    "save_spec",
    "shipped_spec",
    "shipped_spec_names",
    "spec_from_dict",
    "STRATEGIES",
    "ArchSpec",
    "ChainPlan",
    "DerivedNet",
    "MixedOp",
    "NetConfig",
    "PathPlan",
    "SearchStrategy",
    "Supernet",
    "StrategySettings",
    "SupernetConfig",
    "arch_entropy",
    "block_entropy",
    "arch_step",
    "block_probabilities",
    "derive",
    "initial_alphas",
    "load_arch_spec",
    "make_arch_optimizer",
    "make_weight_optimizer",
    "mcan_prior_spec",
    "named_spec",
    "named_specs",
    "network_weights",
    "random_spec",
    "save_arch_spec",
    "train_step",
    "weight_step",
]
