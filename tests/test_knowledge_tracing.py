"""Knowledge tracers: the conformance check catches a leak, and AKT's monotonic attention
matches pyKT's formula in NumPy. (Every registered tracer passes ``check_knowledge_tracer``
in tests/test_plugins.py.)"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rectk.contracts import KnowledgeTracerPlugin, KTBuildContext
from rectk.testing import check_knowledge_tracer
from rectk_plugins.knowledge_tracing import KTAttention
from rectk_plugins.knowledge_tracing.attention import causal


class _Leaky(nnx.Module):
    """Reads response t at position t: what the check must refuse."""

    def __init__(self, ctx: KTBuildContext):
        self.w = nnx.Param(jnp.ones(()))

    def __call__(self, question_bl, concept_bl, response_bl, mask_bl, *, rngs=None):
        return self.w[...] * response_bl.astype(jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Leaky(KnowledgeTracerPlugin):
    def build(self, ctx: KTBuildContext) -> _Leaky:
        return _Leaky(ctx)


def test_the_check_refuses_a_tracer_that_sees_its_own_answer():
    with pytest.raises(AssertionError, match="leaks into its own prediction"):
        check_knowledge_tracer(Leaky())


def _pykt_monotonic(q, k, v, mask, gamma):
    """pyKT's ``attention`` (akt.py) for one head in NumPy: scores, the distance effect,
    the mask and the zero-padded first row."""
    d = q.shape[-1]
    scores = q @ k.T / math.sqrt(d)
    length = scores.shape[0]
    masked = np.where(mask, scores, -1e32)
    p = np.exp(masked - masked.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True) * mask
    cum, total = np.cumsum(p, -1), p.sum(-1, keepdims=True)
    pos = np.arange(length)
    dist = np.sqrt(np.clip((total - cum) * np.abs(pos[None] - pos[:, None]), 0, None))
    g = -np.log1p(np.exp(gamma))
    scores = scores * np.clip(np.exp(dist * g), 1e-5, 1e5)
    scores = np.where(mask, scores, -1e32)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    p[~mask.any(-1)] = 0.0
    return p @ v


def test_monotonic_attention_matches_pykt_formula():
    dim, length = 4, 6
    attn = KTAttention(dim, 1, monotonic=True, kq_same=True, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, length, dim)).astype(np.float32)
    y = rng.normal(size=(1, length, dim)).astype(np.float32)
    allowed = np.asarray(causal(length, strict=True))
    got = np.asarray(
        attn(jnp.asarray(x), jnp.asarray(x), jnp.asarray(y), jnp.asarray(allowed)[None])
    )
    wq, bq = np.asarray(attn.q.kernel[...]), np.asarray(attn.q.bias[...])
    wv, bv = np.asarray(attn.v.kernel[...]), np.asarray(attn.v.bias[...])
    wo, bo = np.asarray(attn.out.kernel[...]), np.asarray(attn.out.bias[...])
    q = x[0] @ wq + bq
    v = y[0] @ wv + bv
    gamma = float(np.asarray(attn.gammas[...])[0, 0])
    want = _pykt_monotonic(q, q, v, allowed, gamma) @ wo + bo
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_dkt_equals_a_textbook_lstm_in_numpy():
    """DKT looks its input gates up from a table over the interaction ids; it must give what
    embedding -> LSTM -> linear -> the next concept's logit computes."""
    from rectk_plugins.knowledge_tracing.models import DKT

    num_concepts, dim, b, length = 7, 5, 3, 6
    ctx = KTBuildContext(
        dim=dim, num_questions=1, num_concepts=num_concepts, max_len=8, rngs=nnx.Rngs(0)
    )
    model = DKT(dropout=0.0).build(ctx)
    rng = np.random.default_rng(1)
    concept = rng.integers(1, num_concepts, (b, length))
    response = rng.integers(0, 2, (b, length))
    got = np.asarray(model(None, jnp.asarray(concept), jnp.asarray(response), None))

    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    emb = np.asarray(model.emb.embedding[...])
    w_in, b_in = np.asarray(model.gates_in.kernel[...]), np.asarray(model.gates_in.bias[...])
    w_h = np.asarray(model.gates_h.kernel[...])
    w_out, b_out = np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])
    want = np.zeros((b, length))
    for r in range(b):
        h, c = np.zeros(dim), np.zeros(dim)
        for t in range(length):
            # the logit of answer t from the state after answers < t
            want[r, t] = (h @ w_out + b_out)[concept[r, t]] if t else b_out[concept[r, t]]
            a = emb[concept[r, t] + num_concepts * response[r, t]] @ w_in + b_in + h @ w_h
            i, f, g, o = np.split(a, 4)
            c = sig(f) * c + sig(i) * np.tanh(g)
            h = sig(o) * np.tanh(c)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_simplekt_positions_are_pykts_sinusoid():
    from rectk_plugins.knowledge_tracing.models import _sinusoid

    length, dim = 7, 6
    pos = np.arange(length)[:, None]
    div = np.exp(np.arange(0, dim, 2) * -(math.log(10000.0) / dim))
    want = np.zeros((length, dim))
    want[:, 0::2], want[:, 1::2] = np.sin(pos * div), np.cos(pos * div)
    np.testing.assert_allclose(np.asarray(_sinusoid(length, dim)), want, atol=1e-6)


@pytest.mark.parametrize("name", ["akt", "simplekt"])
def test_rasch_embeddings_with_questions(name):
    """With question ids the tracer passes the conformance check, and its embeddings start
    N(0, 1) as pyKT's (PyTorch's default): at Flax's default (std 1/sqrt(D)) the first
    attention scores are D times smaller and simpleKT's fixed positions, entries of size ~1,
    drown the concepts."""
    from rectk import registry

    config = registry.knowledge_tracers.get(name)(use_questions=True, heads=4)
    check_knowledge_tracer(config)
    ctx = KTBuildContext(dim=256, num_questions=50, num_concepts=100, max_len=8, rngs=nnx.Rngs(0))
    model = config.build(ctx)
    # pyKT's simpleKT moves only the questions by their difficulty, AKT the answers too
    tables = ("concept", "answer", "concept_var") + (("answer_var",) if name == "akt" else ())
    assert (model.embed.answer_var is None) == (name == "simplekt")
    for table in tables:
        std = float(np.asarray(getattr(model.embed, table).embedding[...]).std())
        assert 0.9 < std < 1.1, f"{table}: std {std:.3f}, want about 1"
    assert not np.asarray(model.embed.difficulty.embedding[...]).any()  # Rasch mu starts at 0


@pytest.mark.parametrize("name", ["akt", "simplekt"])
@pytest.mark.parametrize("has_questions", [True, False])
def test_rasch_difficulty_follows_the_data_by_default(name, has_questions):
    """``use_questions = "auto"``: a difficulty per question exactly where the data set names
    questions apart from their concepts, as pyKT (``n_pid > 0``)."""
    from rectk import registry

    cls = registry.knowledge_tracers.get(name)
    ctx = dict(dim=8, num_questions=50, num_concepts=10, max_len=8, has_questions=has_questions)
    model = cls(heads=2).build(KTBuildContext(**ctx, rngs=nnx.Rngs(0)))
    assert (model.embed.difficulty is not None) == has_questions
    forced = cls(heads=2, use_questions=False).build(KTBuildContext(**ctx, rngs=nnx.Rngs(0)))
    assert forced.embed.difficulty is None
    with pytest.raises(ValueError, match="use_questions must be true, false or 'auto'"):
        cls(use_questions="yes")
