"""The raw layer: seed pack, generator, user files, validation → raw/prompts, raw/rejects."""
