"""The plugin-author kit: conformance checks a plugin's own tests call (see
docs/writing-a-plugin.md), and that rectk's tests apply to every registered plugin.

>>> from rectk.testing import check_encoder
>>> from rectk_plugins.encoders.mean_pool import MeanPoolConfig
>>> check_encoder(MeanPoolConfig())  # raises AssertionError saying what broke, if anything
"""

from rectk.testing.conformance import (
    CHECKS,
    TINY_FIELDS,
    check_baseline,
    check_dataset,
    check_encoder,
    check_head,
    check_item_tower,
    check_knowledge_tracer,
    check_list_metric,
    check_loss,
    check_metric,
    check_planner,
    check_registered,
    check_reranked,
    check_reranker,
    check_task,
    tiny_catalogue,
    tiny_config,
    tiny_context,
    tiny_plan_graph,
    tiny_rerank_context,
    tiny_scorer,
)

__all__ = [
    "CHECKS",
    "TINY_FIELDS",
    "check_baseline",
    "check_dataset",
    "check_encoder",
    "check_head",
    "check_item_tower",
    "check_knowledge_tracer",
    "check_list_metric",
    "check_loss",
    "check_metric",
    "check_planner",
    "check_registered",
    "check_reranked",
    "check_reranker",
    "check_task",
    "tiny_catalogue",
    "tiny_config",
    "tiny_context",
    "tiny_plan_graph",
    "tiny_rerank_context",
    "tiny_scorer",
]
