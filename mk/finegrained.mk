# The paper's section 4 on GAP features: fine-grained recognition with CAM crops (the CUB table) and
# class-specific units. Backbone: MODEL (a registered network with packaged weights, default EfficientNet-Lite0,
# ImageNet, offline) or CKPT=path/to/last.ckpt (a `camexp train` checkpoint).
#
#   make finegrained DATASET=synthloc                      # the embedded SynthLoc set (data/synthloc; its 10 classes
#                                                          # differ by body texture/colour and head: fine-grained)
#   make finegrained DATASET=cub DATA=/path/CUB_200_2011   # the paper's experiment (official layout, docs/datasets.md)
#   make units DATASET=synthloc CKPT=lightning_logs/synthloc_gap/version_0/checkpoints/last.ckpt
#   make units DATASET=cub DATA=/path/CUB_200_2011 ARGS="--classes 0 1 2 --wandb"
#
# Without CKPT, `units` ranks by a linear SVM on the dataset's own classes (--svm): an ImageNet classifier's
# classes are not the dataset's. ARGS come last: key=value overrides first, then command options, e.g.
# ARGS="data.num_workers=0 --input-size 128 --split test" (the overrides continue the --data list).
# Features are cached in lightning_logs/feature_cache (keyed by weights and images): a second run is instant.

MODEL ?= efficientnet_lite0
FG_DATASET = $(or $(DATASET),synthloc)
FG_BACKBONE = $(or $(CKPT),$(MODEL))
# synthloc: the embedded default experiment's set; any other name: experiments/datasets/<name>.yaml (+ DATA as root)
FG_DATA = $(if $(filter synthloc,$(FG_DATASET)),experiments/synthloc_gap.yaml,experiments/datasets/$(FG_DATASET).yaml) \
	$(if $(DATA),data.root=$(DATA))
FG_OUT = lightning_logs

.PHONY: finegrained units fg-check-data

# CUB is not embedded: without DATA (and without data/cub) stop at once, saying what the folder must hold.
fg-check-data:
	@test -f "$(firstword $(FG_DATA))" || { echo "make: no dataset overlay $(firstword $(FG_DATA)) for \
	DATASET=$(FG_DATASET); known: synthloc $$(ls experiments/datasets | sed 's/\.yaml//' | tr '\n' ' ')" >&2; exit 2; }
	@if [ "$(FG_DATASET)" = cub ] && [ -z "$(DATA)" ] && [ ! -d data/cub ]; then \
	echo "make: DATASET=cub needs DATA=/path/to/CUB_200_2011 (or the set in data/cub), a folder in the official \
CUB-200-2011 layout: images.txt, image_class_labels.txt, train_test_split.txt, bounding_boxes.txt, classes.txt \
and images/<class>/<file>.jpg (segmentations/ optional). DATASET=synthloc runs on the embedded set." >&2; exit 2; fi

finegrained: fg-check-data $(STAMP)  ## linear SVM on full images vs CAM-box crops vs GT-box crops (DATASET=synthloc, or cub DATA=...)
	$(CAMEXP) finegrained $(FG_BACKBONE) --out $(FG_OUT)/finegrained_$(FG_DATASET) --data $(FG_DATA) $(ARGS)

units: fg-check-data $(STAMP)  ## class-specific units: top units per class, their images and patches, top-k CAMs
	$(CAMEXP) units $(FG_BACKBONE) --out $(FG_OUT)/units_$(FG_DATASET) $(if $(CKPT),,--svm) --data $(FG_DATA) \
		$(ARGS)
