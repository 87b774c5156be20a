"""The paper's section 4: pooled features of a trained network reused for new tasks (linear probes and their
CAMs, concept detectors, fine-grained crops, class-specific units)."""
