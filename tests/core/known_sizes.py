"""Published facts about the five released GPT-2 checkpoints, for tests (numbers nobody here computed)."""

PARAMETER_COUNTS = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "distilgpt2": 81_912_576,
}
