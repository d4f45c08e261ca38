"""The one cross-framework tolerance of the project, for tests and for `gpt2-convert --verify` alike.

Two backends (or two files) agree when max |a - b| <= PARITY_RTOL * max |reference| in fp32. Kept in the core so
that the tests and the converter cannot drift apart (transformers' PT-TF tolerance crept from 1e-5 to 2e-4).
"""

PARITY_RTOL = 1e-4
