"""Model parts of the segmenter: backbones, pixel decoder, transformer decoder."""
