import pytest

from rectk import registry
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
