"""The plugin keeps rectk's encoder contract (rectk's conformance checks, at tiny shapes)."""

from rectk_decay_encoder.encoder import DecayConfig

from rectk.testing import check_encoder


def test_decay_encoder_keeps_the_encoder_contract():
    check_encoder(DecayConfig())
    check_encoder(DecayConfig(initial_decay=0.3))
