"""The tiny GPT-2 shape every backend test builds (pt, tf and parity share it)."""

TINY = dict(vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=98, eos_token_id=98)
