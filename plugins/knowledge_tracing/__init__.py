"""Knowledge tracers: a learner's answers -> the probability of answering the next question
right (the ``knowledge_tracers`` registry; contract ``rectk.contracts.KnowledgeTracerPlugin``).

DKT (Piech et al., NeurIPS 2015), SAKT (Pandey & Karypis, EDM 2019), AKT (Ghosh, Heffernan &
Lan, KDD 2020) and simpleKT (Liu et al., ICLR 2023), each as pyKT implements it, in one
unshifted form: the logit at position t predicts response t from the answers before t.
"""

from .attention import KTAttention, KTTransformerLayer
from .models import AKT, DKT, SAKT, SimpleKT

__all__ = ["AKT", "DKT", "SAKT", "KTAttention", "KTTransformerLayer", "SimpleKT"]
