"""Ground truth for the architecture search, and how well an estimator ranks against it (Ray-free).

* :mod:`.sample`: the fixed, seeded sample of architectures an oracle trains (MCAN and MMnas's
  prior always included, the rest distinct uniform draws from the search's pools);
* :mod:`.oracle`: the oracle file (``bench/results/arch_oracle_<task>.json``: per architecture
  its spec, val and test mean +- std over training seeds, parameters, training CPU-seconds) and
  :func:`score_estimator`: Kendall's tau against the oracle's val means, top-1 and top-k regret
  on test;
* :mod:`.shortlist`: the jobs' shortlist stage as pure functions: its config section, the top-k
  distinct candidates plus anchors, the winner on val, and the search's agreement and entropy.
"""
from mmsearch.evaluation.oracle import OracleArch, load_oracle, mean_std, score_estimator
from mmsearch.evaluation.sample import arch_key, mcan_spec, oracle_sample
from mmsearch.evaluation.shortlist import ShortlistSettings, pick_winner, shortlist_candidates

__all__ = [
    "OracleArch",
    "ShortlistSettings",
    "arch_key",
    "load_oracle",
    "mcan_spec",
    "mean_std",
    "oracle_sample",
    "pick_winner",
    "score_estimator",
    "shortlist_candidates",
]
