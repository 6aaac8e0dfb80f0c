"""PredRNN (v1), PredRNN-v2 and the action-conditioned v2 in pure JAX/Equinox."""
