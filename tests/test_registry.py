import dataclasses
from typing import ClassVar

import pytest

from rectk import registry
from rectk.contracts import (
    BaselinePlugin,
    DatasetPlugin,
    EncoderPlugin,
    EncoderTraits,
    HeadPlugin,
    LossPlugin,
    Metric,
    TaskPlugin,
)
from rectk.errors import PluginError
from rectk.registry import Registry


def test_register_and_get():
    reg: Registry = Registry("widget")

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a
    assert "a" in reg
    assert reg.names() == ["a"]


def test_duplicate_name_rejected():
    reg: Registry = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(PluginError, match="registered twice"):

        @reg.register("a")
        def other():
            return 2


def test_unknown_name_lists_known_and_close_matches():
    reg: Registry = Registry("widget")
    reg.register("sasrec")(lambda: 1)
    reg.register("gru4rec")(lambda: 1)
    with pytest.raises(PluginError) as err:
        reg.get("sasrek")
    msg = str(err.value)
    assert "unknown widget 'sasrek'" in msg
    assert "gru4rec, sasrec" in msg
    assert "Did you mean 'sasrec'" in msg


def test_failed_plugin_import_is_recorded_not_raised():
    assert registry.load_module("rectk_no_such_module_xyz") is False
    assert "rectk_no_such_module_xyz" in registry.failed_plugins()
    reg: Registry = Registry("widget")
    with pytest.raises(PluginError, match=r"failed to import: .*rectk_no_such_module_xyz"):
        reg.get("x")
    registry._FAILED.pop("rectk_no_such_module_xyz")


def test_builtin_plugins_arrive_through_entry_points():
    assert "sasrec" in registry.encoders
    assert "dot" in registry.heads
    assert "softmax_ce" in registry.losses
    assert "id" in registry.item_towers
    assert {"university_courses", "atomic", "csv", "sequences"} <= set(registry.datasets.names())
    assert {"recall", "ndcg", "mrr"} <= set(registry.metrics.names())
    assert "next_item" in registry.tasks
    assert registry.encoders.origin("sasrec").startswith("rectk_plugins.")


# ---------------------------------------------------------------------------------------------
# Contracts, checked at registration.
# ---------------------------------------------------------------------------------------------


def _refusal(reg: Registry, obj, name: str = "x") -> str:
    with pytest.raises(PluginError) as err:
        reg.register(name)(obj)
    assert name not in reg._entries  # nothing half-registered
    return str(err.value)


def test_encoder_with_the_old_build_signature_is_refused_with_one_clear_message():
    reg: Registry = Registry("encoder", contract=EncoderPlugin)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class DecayConfig(EncoderPlugin):
        def build(self, *, dim, max_len):
            raise NotImplementedError

    msg = _refusal(reg, DecayConfig, "decay")
    assert msg == (
        "encoder 'decay' (tests.test_registry.test_encoder_with_the_old_build_signature_is_"
        "refused_with_one_clear_message.<locals>.DecayConfig) breaks the encoder contract: "
        "build(self, ctx: BuildContext) expected, found build(self, *, dim, max_len); "
        "subclass rectk.contracts.EncoderPlugin"
    )


def test_missing_members_are_named():
    reg: Registry = Registry("encoder", contract=EncoderPlugin)

    class Bare:
        pass

    msg = _refusal(reg, Bare)
    assert "traits missing" in msg and "build(self, ctx: BuildContext) missing" in msg


def test_abstract_build_left_unimplemented_is_named():
    reg: Registry = Registry("head", contract=HeadPlugin)

    class Lazy(HeadPlugin):
        pass

    assert "build(self, ctx: BuildContext) not implemented (abstract)" in _refusal(reg, Lazy)


def test_traits_must_be_encoder_traits_and_not_loose_attributes():
    reg: Registry = Registry("encoder", contract=EncoderPlugin)

    class Dict(EncoderPlugin):
        traits = ("variable_length",)  # type: ignore[assignment]

        def build(self, ctx):
            raise NotImplementedError

    assert "traits must be an instance of EncoderTraits" in _refusal(reg, Dict)

    class Loose(EncoderPlugin):
        bidirectional: ClassVar[bool] = True

        def build(self, ctx):
            raise NotImplementedError

    msg = _refusal(reg, Loose)
    assert "declare traits = EncoderTraits(bidirectional=...) instead" in msg

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Field(EncoderPlugin):  # a recipe field of that name is the plugin's own business
        bidirectional: bool = False
        traits = EncoderTraits(variable_length=True)

        def build(self, ctx):
            raise NotImplementedError

    assert reg.register("field")(Field) is Field


def test_loss_call_must_take_every_contract_keyword_and_prepare_comes_from_the_protocol():
    reg: Registry = Registry("loss", "losses", contract=LossPlugin)

    class Short(LossPlugin):
        def __call__(self, *, head, user_nd, table_vd, target_n):
            raise NotImplementedError

    msg = _refusal(reg, Short)
    assert "found __call__(self, *, head, user_nd, table_vd, target_n)" in msg
    assert "__call__(self, *, head: Any, user_nd: jax.Array" in msg

    class NoPrepare:  # the right call, but not a LossPlugin: prepare is missing
        def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key):
            raise NotImplementedError

    assert "prepare(self, *, item_counts: np.ndarray) missing" in _refusal(reg, NoPrepare)

    class Extra(LossPlugin):  # extra keywords with defaults are fine
        def __call__(self, *, head, user_nd, table_vd, target_n, weight_n, key, scale=1.0):
            raise NotImplementedError

    assert reg.register("extra")(Extra) is Extra


def test_metrics_are_functions_of_ranks_and_k():
    reg: Registry = Registry("metric", contract=Metric, form="function")

    def precision(ranks, k):
        return (ranks < k) / k

    assert reg.register("precision")(precision) is precision
    msg = _refusal(reg, lambda ranks: ranks)
    assert "expected, found <lambda>(ranks)" in msg
    assert "a metric is a function metric(ranks: np.ndarray, k: int)" in msg
    assert "a callable expected" in _refusal(reg, 3)


def test_dataset_baseline_and_task_signatures():
    datasets: Registry = Registry("dataset", contract=DatasetPlugin)

    class NeedsPath(DatasetPlugin):
        def load(self, path):
            raise NotImplementedError

    assert "load(self) expected, found load(self, path)" in _refusal(datasets, NeedsPath)
    assert "a class expected" in _refusal(datasets, NeedsPath())

    baselines: Registry = Registry("baseline", contract=BaselinePlugin)

    class NoSeed(BaselinePlugin):
        def item_scores(self, *, train_items, vocab_size):
            raise NotImplementedError

    assert "item_scores(self, *, train_items: np.ndarray" in _refusal(baselines, NoSeed)

    tasks: Registry = Registry("task", contract=TaskPlugin)

    class BadCheck(TaskPlugin):
        def check(self):
            raise NotImplementedError

    assert "check(self, config: Any) expected, found check(self)" in _refusal(tasks, BadCheck)

    class Fine(TaskPlugin):
        @staticmethod
        def train_transform(*, vocab_size):
            return None

    assert tasks.register("fine")(Fine) is Fine


def test_every_builtin_plugin_keeps_its_contract():
    assert not [m for m in registry.failed_plugins() if m.startswith("rectk_plugins")]
    for kind, reg in registry.ALL.items():
        for name in reg.names():
            assert not registry.contract_problems(reg.get(name), reg.contract, form=reg.form), (
                f"{kind}:{name}"
            )


BROKEN = """
import dataclasses

from rectk import registry
from rectk.recipe import registered


@registered(registry.encoders, "decay_broken")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DecayConfig:
    def build(self, *, dim, max_len):
        raise NotImplementedError
"""
BROKEN_MESSAGE = (
    "PluginError: encoder 'decay_broken' (rectk_broken_plugin.DecayConfig) breaks the encoder "
    "contract: traits missing; build(self, ctx: BuildContext) expected, found build(self, *, "
    "dim, max_len); subclass rectk.contracts.EncoderPlugin"
)


def test_rectk_plugins_reports_a_contract_breaking_plugin(tmp_path, monkeypatch, capsys):
    """A module registering a plugin that breaks its contract fails to import; ``rectk
    plugins`` lists it with the registry's message, and the other plugins stay available."""
    import json
    import os
    import subprocess
    import sys

    from rectk import cli

    (tmp_path / "rectk_broken_plugin.py").write_text(BROKEN)
    info = tmp_path / "rectk_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rectk-broken-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text("[rectk.plugins]\nbroken = rectk_broken_plugin\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "rectk.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # a failed plugin is an error status
    listing = json.loads(proc.stdout)
    assert listing["failed"] == {"rectk_broken_plugin": BROKEN_MESSAGE}
    assert "sasrec" in listing["registered"]["encoders"]
    assert "decay_broken" not in listing["registered"]["encoders"]

    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert registry.load_module("rectk_broken_plugin") is False
        assert cli.main(["plugins"]) == 1
    finally:
        registry._FAILED.pop("rectk_broken_plugin", None)
        registry._LOADED.discard("rectk_broken_plugin")
    out = capsys.readouterr().out
    failed = out.split("failed to import:\n", 1)[1]  # earlier tests may have failed plugins too
    assert f"  rectk_broken_plugin: {BROKEN_MESSAGE}\n" in failed
