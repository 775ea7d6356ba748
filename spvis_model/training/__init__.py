"""Training: Hungarian matching and set losses (matcher, criterion), the stage-1 segmenter task,
the stage-2 tracker task, and the trainer (DDP, exact resume, logs) behind `spvis train`."""
