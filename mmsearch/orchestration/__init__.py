"""The only Ray code in mmsearch: recipes run many times under Ray Tune (and Ray Train, Ray Data).

Modules (import them directly; this package imports nothing eagerly):

- ``settings``: the ``tune`` config section (``TuneSettings``), plain dataclasses, no Ray.
- storage locations and the preflight live in ``mmsearch.storage`` (Ray-free, shared with data, recipes and the report).
- ``search_space``: search spaces from config data, validated against the recipe's config.
- ``asha``: scheduler validation and the rung ladder; ``asha_state``: ASHA whose rung records
  survive ``Tuner.restore``.
- ``tune_context``: the recipe ``RunContext`` over ``ray.tune`` and ``as_tune_trainable``.
- ``experiment``: ``plan_experiment`` (everything checked before Ray), ``run_plan`` / ``run_experiment`` (idempotent: resumes an existing experiment) and summaries.
- ``summary``: ``experiment_summary.json``; ``metrics``: live gauges for the Ray dashboard.
- ``cluster``: join a running cluster or start Ray locally (``RAY_AUTH_MODE`` made explicit).
- ``credentials``: AWS credentials never go into a Ray runtime env (Tune copies them by default).
- ``checkpoints``: checkpoint manifests, and the fallback that gives every resumed trial a
  checkpoint that exists (a driver killed with ``kill -9``).
- resume only from experiment storage nobody else can write (Tune unpickles it): ``mmsearch.storage.trust``.
"""
