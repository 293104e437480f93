"""The SFT layer: passing pairs packaged as TRL-ready chat rows, deduplicated and decontaminated."""
