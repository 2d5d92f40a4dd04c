"""DKT, SAKT, AKT and simpleKT: configs (recipe fields) and the modules they build.

Every module maps ``(question_bl, concept_bl, response_bl, mask_bl)`` to ``logit_bl``, the
logit of answering question ``t`` right from the answers before ``t``: position ``t`` never
sees response ``t`` or anything later (``tests/test_knowledge_tracing.py`` checks it for every
registered tracer). pyKT feeds the same models shifted sequences and reads predictions from
position 1 on; the unshifted form is equivalent and keeps one convention for every model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from rectk import registry
from rectk.contracts import KnowledgeTracerPlugin, KTBuildContext
from rectk.recipe import registered
from rectk_plugins.encoders.layers import dropout

from .attention import KTTransformerLayer, causal


def _check(cfg, *, heads: bool = True) -> None:
    if getattr(cfg, "layers", 1) < 1:
        raise ValueError(f"layers must be at least 1, got {cfg.layers!r}")
    if heads and cfg.heads < 1:
        raise ValueError(f"heads must be at least 1, got {cfg.heads!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {cfg.dropout!r}")


def _interactions(concept_bl: jax.Array, response_bl: jax.Array, num_concepts: int) -> jax.Array:
    """DKT's and SAKT's interaction ids: concept ``c`` answered right is ``c + C``."""
    return concept_bl + num_concepts * response_bl.astype(concept_bl.dtype)


def _shift_right(x_bl: jax.Array) -> jax.Array:
    """Position ``t`` holds what was at ``t - 1``; position 0 holds zeros."""
    return jnp.pad(x_bl, ((0, 0), (1, 0)) + ((0, 0),) * (x_bl.ndim - 2))[:, :-1]


# ---- DKT ------------------------------------------------------------------------------------


class DKTModule(nnx.Module):
    """An LSTM over interaction embeddings. The input half of every gate is looked up from a
    table over the 2C interaction ids, outside the recurrence; the scan carries only
    ``h @ W_h``, where the sequential part of the time goes."""

    def __init__(self, cfg: DKT, ctx: KTBuildContext):
        rngs, d = ctx.rngs, ctx.dim
        self.cfg, self.num_concepts = cfg, ctx.num_concepts
        self.emb = nnx.Embed(2 * ctx.num_concepts, d, rngs=rngs)
        self.gates_in = nnx.Linear(d, 4 * d, rngs=rngs)  # input -> (i, f, g, o), with bias
        self.gates_h = nnx.Linear(d, 4 * d, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(d, ctx.num_concepts, rngs=rngs)

    def __call__(self, question_bl, concept_bl, response_bl, mask_bl, *, rngs=None):
        del question_bl
        # the input gates of every interaction id: ``gates_in(emb(id))`` is row ``id`` of
        # ``gates_in(emb.embedding)``, so a [2C, 4D] table replaces a [B*L, D] x [D, 4D] product
        # (and its two gradient products), half of the step's arithmetic at C=100, D=200
        gates_ig = self.gates_in(self.emb.embedding[...])
        ids_bl = _interactions(concept_bl, response_bl, self.num_concepts)
        gx_lbg = jnp.take(gates_ig, ids_bl.T, axis=0)  # [L, B, 4D]
        w_h = self.gates_h.kernel[...]
        b, d = concept_bl.shape[0], w_h.shape[0]

        def step(carry, gx_bg):
            c_bd, h_bd = carry
            i, f, g, o = jnp.split(gx_bg + h_bd @ w_h.astype(h_bd.dtype), 4, axis=-1)
            c_bd = jax.nn.sigmoid(f) * c_bd + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_bd = jax.nn.sigmoid(o) * jnp.tanh(c_bd)
            return (c_bd, h_bd), h_bd

        zeros = jnp.zeros((b, d), gx_lbg.dtype)
        _, h_lbd = jax.lax.scan(step, (zeros, zeros), gx_lbg)
        h_bld = h_lbd.swapaxes(0, 1)  # answers are left-aligned: padding only follows them
        h_bld = _shift_right(h_bld)  # the state after answers < t
        h_bld = dropout(h_bld, self.cfg.dropout, rngs)
        logits_blc = self.out(h_bld)
        return jnp.take_along_axis(logits_blc, concept_bl[..., None], axis=-1)[..., 0]


@registered(registry.knowledge_tracers, "dkt")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DKT(KnowledgeTracerPlugin):
    """Deep knowledge tracing (Piech et al., NeurIPS 2015): an LSTM over (concept, response)
    interactions; a linear layer gives every concept's logit, read at the next concept."""

    dropout: float = 0.2

    def __post_init__(self):
        _check(self, heads=False)

    def build(self, ctx: KTBuildContext) -> DKTModule:
        return DKTModule(self, ctx)


# ---- SAKT -----------------------------------------------------------------------------------


class SAKTModule(nnx.Module):
    def __init__(self, cfg: SAKT, ctx: KTBuildContext):
        rngs = ctx.rngs
        self.cfg, self.num_concepts = cfg, ctx.num_concepts
        d = ctx.dim
        self.interaction = nnx.Embed(2 * ctx.num_concepts, d, rngs=rngs)
        self.exercise = nnx.Embed(ctx.num_concepts, d, rngs=rngs)
        self.position = nnx.Embed(ctx.max_len, d, rngs=rngs)
        self.layers = nnx.List(
            [
                KTTransformerLayer(d, cfg.heads, d, monotonic=False, kq_same=False, rngs=rngs)
                for _ in range(cfg.layers)
            ]
        )
        self.pred = nnx.Linear(d, 1, rngs=rngs)

    def __call__(self, question_bl, concept_bl, response_bl, mask_bl, *, rngs=None):
        del question_bl
        length = concept_bl.shape[1]
        x_bld = self.interaction(_interactions(concept_bl, response_bl, self.num_concepts))
        x_bld = x_bld + self.position(jnp.arange(length))[None]
        q_bld = self.exercise(concept_bl)
        allowed = causal(length, strict=True)[None] & mask_bl[:, None, :]
        for layer in self.layers:
            q_bld = layer(
                q_bld, x_bld, x_bld, allowed, apply_pos=True, rate=self.cfg.dropout, rngs=rngs
            )
        return self.pred(dropout(q_bld, self.cfg.dropout, rngs))[..., 0]


@registered(registry.knowledge_tracers, "sakt")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SAKT(KnowledgeTracerPlugin):
    """Self-attentive knowledge tracing (Pandey & Karypis, EDM 2019): the next exercise attends
    to the past interactions (with learned positions)."""

    layers: int = 1
    heads: int = 8
    dropout: float = 0.2

    def __post_init__(self):
        _check(self)

    def build(self, ctx: KTBuildContext) -> SAKTModule:
        return SAKTModule(self, ctx)


# ---- AKT and simpleKT: Rasch-model embeddings, attention over past answers -------------------


class RaschEmbedding(nnx.Module):
    """AKT's Rasch-model embeddings: question ``x_t = c_{c_t} + mu_{q_t} d_{c_t}`` and answer
    ``y_t = c_{c_t} + r_{r_t} + mu_{q_t} (f_{r_t} + d_{c_t})``: a concept vector moved along
    the concept's variation by the question's scalar difficulty ``mu`` (absent without
    questions distinct from concepts). ``rasch_answers=False`` (simpleKT's default in pyKT)
    keeps the answers at ``c_{c_t} + r_{r_t}``."""

    def __init__(self, ctx: KTBuildContext, *, use_questions: bool, rasch_answers: bool = True):
        rngs, d = ctx.rngs, ctx.dim
        # N(0, 1), as pyKT's ``nn.Embedding``; Flax's default (std 1 / sqrt(D)) makes the
        # initial attention scores D times smaller, near-uniform and slow to learn, and lets
        # simpleKT's fixed positions (entries of size ~1) drown the concept vectors.
        init = nnx.initializers.normal(stddev=1.0)
        self.concept = nnx.Embed(ctx.num_concepts, d, embedding_init=init, rngs=rngs)
        self.answer = nnx.Embed(2, d, embedding_init=init, rngs=rngs)
        if use_questions:
            self.concept_var = nnx.Embed(ctx.num_concepts, d, embedding_init=init, rngs=rngs)
            self.answer_var = (
                nnx.Embed(2, d, embedding_init=init, rngs=rngs) if rasch_answers else None
            )
            self.difficulty: nnx.Embed | None = nnx.Embed(
                ctx.num_questions, 1, embedding_init=nnx.initializers.zeros_init(), rngs=rngs
            )
        else:  # assigned once: NNX refuses a module where a static None stood
            self.difficulty = None

    def __call__(self, question_bl, concept_bl, response_bl) -> tuple[jax.Array, jax.Array]:
        r_bl = response_bl.astype(jnp.int32)
        x = self.concept(concept_bl)
        y = x + self.answer(r_bl)
        if self.difficulty is not None:
            mu = self.difficulty(question_bl)
            d_c = self.concept_var(concept_bl)
            x = x + mu * d_c
            if self.answer_var is not None:
                y = y + mu * (self.answer_var(r_bl) + d_c)
        return x, y


class _OutputMLP(nnx.Module):
    """pyKT's output block: ``[h, x] -> final_fc -> 256 -> 1`` with ReLU and dropout."""

    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(2 * dim, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, 256, rngs=rngs)
        self.l3 = nnx.Linear(256, 1, rngs=rngs)

    def __call__(self, h_bld, x_bld, rate, rngs):
        z = dropout(jax.nn.relu(self.l1(jnp.concatenate([h_bld, x_bld], -1))), rate, rngs)
        z = dropout(jax.nn.relu(self.l2(z)), rate, rngs)
        return self.l3(z)[..., 0]


class AKTModule(nnx.Module):
    """AKT (``monotonic``) or simpleKT: question and answer encoders, then a knowledge
    retriever whose query at ``t`` attends to the questions before ``t`` with the encoded
    answers as values."""

    def __init__(self, cfg: AKT | SimpleKT, ctx: KTBuildContext, *, monotonic: bool):
        rngs, d = ctx.rngs, ctx.dim
        self.cfg, self.monotonic = cfg, monotonic
        use_q = ctx.has_questions if cfg.use_questions == "auto" else cfg.use_questions
        self.embed = RaschEmbedding(ctx, use_questions=use_q, rasch_answers=monotonic)
        inner = cfg.inner or 4 * d

        def layer():
            return KTTransformerLayer(
                d, cfg.heads, inner, monotonic=monotonic, kq_same=True, rngs=rngs
            )

        # AKT: ``layers`` answer-encoder layers, then ``layers`` pairs of (question self-
        # attention, retriever); simpleKT: ``layers`` retriever layers only.
        self.answer_layers = nnx.List([layer() for _ in range(cfg.layers if monotonic else 0)])
        self.question_layers = nnx.List([layer() for _ in range(cfg.layers if monotonic else 0)])
        self.retriever_layers = nnx.List([layer() for _ in range(cfg.layers)])
        self.output = _OutputMLP(d, cfg.final_fc, rngs=rngs)

    def __call__(self, question_bl, concept_bl, response_bl, mask_bl, *, rngs=None):
        rate = self.cfg.dropout
        x, y = self.embed(question_bl, concept_bl, response_bl)
        length = concept_bl.shape[1]
        real = mask_bl[:, None, :]
        upto = causal(length, strict=False)[None] & real
        before = causal(length, strict=True)[None] & real
        for enc in self.answer_layers:  # answers up to t (values for later queries only)
            y = enc(y, y, y, upto, apply_pos=True, rate=rate, rngs=rngs)
        h = x
        if self.monotonic:
            for ask, retrieve in zip(self.question_layers, self.retriever_layers, strict=True):
                h = ask(h, h, h, upto, apply_pos=False, rate=rate, rngs=rngs)
                h = retrieve(h, h, y, before, apply_pos=True, rate=rate, rngs=rngs)
        else:  # simpleKT: fixed sinusoidal positions on both streams (its only sense of order)
            pos_ld = _sinusoid(length, x.shape[-1]).astype(x.dtype)[None]
            h, y = h + pos_ld, y + pos_ld
            for retrieve in self.retriever_layers:
                h = retrieve(h, h, y, before, apply_pos=True, rate=rate, rngs=rngs)
        return self.output(h, x, rate, rngs)


def _sinusoid(length: int, dim: int) -> jax.Array:
    """``[L, D]`` sine (even columns) and cosine (odd) positions, as pyKT's simpleKT (its
    ``CosinePositionalEmbedding``, not trained)."""
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    angle = pos * jnp.exp(jnp.arange(0, dim, 2, dtype=jnp.float32) * -(math.log(10000.0) / dim))
    return jnp.stack([jnp.sin(angle), jnp.cos(angle)], -1).reshape(length, -1)[:, :dim]


def _check_transformer(cfg) -> None:
    _check(cfg)
    if cfg.inner < 0 or cfg.final_fc < 1:
        raise ValueError("inner must be >= 0 (0 = 4 x dim) and final_fc at least 1")
    if cfg.use_questions not in (True, False, "auto"):
        raise ValueError(f"use_questions must be true, false or 'auto', got {cfg.use_questions!r}")


@registered(registry.knowledge_tracers, "akt")
@dataclasses.dataclass(frozen=True, kw_only=True)
class AKT(KnowledgeTracerPlugin):
    """Context-aware attentive knowledge tracing (Ghosh, Heffernan & Lan, KDD 2020): Rasch-
    model embeddings, monotonic attention (decaying with the distance to past answers) in an
    answer encoder, a question encoder and a knowledge retriever. ``use_questions``: a Rasch
    difficulty per question; ``"auto"``, as pyKT, where the data set names questions apart
    from their concepts."""

    layers: int = 1
    heads: int = 8
    inner: int = 0  # feed-forward width (0 = 4 x dim)
    final_fc: int = 512
    dropout: float = 0.2
    use_questions: bool | Literal["auto"] = "auto"

    def __post_init__(self):
        _check_transformer(self)

    def build(self, ctx: KTBuildContext) -> AKTModule:
        return AKTModule(self, ctx, monotonic=True)


@registered(registry.knowledge_tracers, "simplekt")
@dataclasses.dataclass(frozen=True, kw_only=True)
class SimpleKT(KnowledgeTracerPlugin):
    """simpleKT (Liu, Liu, Chen, Huang & Luo, ICLR 2023): AKT's Rasch-model embeddings and a
    plain causal transformer whose query at ``t`` attends to the questions before ``t`` with
    the answers as values (ordinary dot-product attention), both streams carrying fixed
    sinusoidal positions. ``use_questions`` as AKT's; the difficulty moves the questions only,
    as pyKT's default simpleKT."""

    layers: int = 2
    heads: int = 4
    inner: int = 0
    final_fc: int = 256
    dropout: float = 0.1
    use_questions: bool | Literal["auto"] = "auto"

    def __post_init__(self):
        _check_transformer(self)

    def build(self, ctx: KTBuildContext) -> AKTModule:
        return AKTModule(self, ctx, monotonic=False)
