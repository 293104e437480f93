"""Student training: the trainer program (runs alone on a GPU node too), its data loading, presets and
the train/checkpoints asset (in `assets.py`, the only module here that imports Dagster)."""
