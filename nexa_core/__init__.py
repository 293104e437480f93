"""Pure, IO-free domain functions every layer shares: text keys, the cells, the prompt templates, pricing, the
quality filters, the rubric and the structural judge. Imports nothing from nexa_resources or nexa_assets."""
