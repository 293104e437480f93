"""The distill layer: teacher completions, their quality filters, and the pairs kept for SFT."""
