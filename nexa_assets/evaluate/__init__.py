"""The eval layer: the versioned rubric, an LLM judge and an offline structural judge behind one verdict."""
