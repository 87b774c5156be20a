"""The wsolevaluation protocol (Choe et al., CVPR 2020): per-map math, the component-tree kernels, the one
accumulator, split metadata and score-map files."""
