"""Training: Hungarian matching and the set-prediction losses of the segmenter."""
