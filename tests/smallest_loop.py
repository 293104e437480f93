"""The loop at its smallest, for tests that run it end to end through Dagster.

1 seed prompt per cell, a 1-step `tiny` student, 1 eval prompt per cell, 32-token answers, 4 prompts bought for
round 1, whose min_improvement no lift can meet (so the loop stops there)."""

SMALLEST_LOOP_CONFIG = {
    "ops": {
        "distill__completions": {"config": {"per_cell": 1}},
        "train__checkpoints": {"config": {"preset": "tiny", "max_steps": 1, "batch_size": 4, "max_seq_len": 256}},
        "eval__prompts": {"config": {"per_cell": 1}},
        "eval__predictions": {"config": {"max_tokens": 32, "include_teacher": False}},
        "feedback_loop": {"config": {"default_threshold": 3.5, "prompts_per_round": 4, "min_improvement": 10.0}},
    }
}
