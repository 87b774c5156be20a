# The paper's section 4 on generic features (docs: camexp probe --help, camexp text-demo --help).
#
#   make probe                                   # EfficientNet-Lite0 (ImageNet weights) features of SynthLoc at 224 px
#                                                # (7x7 maps): linear SVMs, their CAMs scored as `camexp train` does
#   make probe PROBE_SIZE=128                    # ~3x faster; 4x4 maps, whose boxes lose to the centre baseline
#   make probe PROBE_FEATURES=lightning_logs/synthloc_gap/version_0/checkpoints/last.ckpt   # a trained GAP network
#   make probe DATASET=cub DATA=/data/CUB_200_2011   # any data overlay in experiments/datasets (cub, indoor67,
#                                                # sun397, places365 ...): DATA sets data.root
#   make text-demo                               # generated text on photo crops: a text detector with hard-negative
#                                                # mining, its CAM boxes against the text boxes (224 px, 200 images)
#
# Features are cached in lightning_logs/feature_cache (keyed by the weights and the images): a second run is
# instant up to the SVMs. The probe's SynthLoc set (600 train / 200 val, 128 px) lives in data/synthloc_probe, apart
# from the set `make train` uses; ARGS="key=value ..." override the data config.

PROBE_FEATURES ?= efficientnet_lite0
PROBE_SIZE ?= 224
PROBE_DATA = $(if $(DATASET),experiments/datasets/$(DATASET).yaml $(if $(DATA),data.root=$(DATA)),\
	experiments/synthloc_gap.yaml data.root=data/synthloc_probe data.synth.n_train=600 data.synth.n_val=200)
PROBE_OUT = lightning_logs/probe$(if $(DATASET),_$(DATASET))

.PHONY: probe text-demo

probe: $(STAMP)  ## linear SVMs on EfficientNet-Lite0 features and the CAMs of their weights (SynthLoc; DATASET=cub DATA=...)
	$(CAMEXP) probe --features $(PROBE_FEATURES) $(if $(filter efficientnet_lite0,$(PROBE_FEATURES)),--input-size \
		$(PROBE_SIZE)) --data $(PROBE_DATA) $(ARGS) --out $(PROBE_OUT)

text-demo: $(STAMP)  ## weakly supervised text detector (hard-negative mining) on generated text, CAM vs centre box (minutes)
	$(CAMEXP) text-demo --out lightning_logs/text_demo
