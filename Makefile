# fedmist: `make demo` runs the main job from a fresh machine; `make test` runs the tests.
PY ?= .venv/bin/python
VENV_STAMP = .venv/.installed
FMNIST ?= /usr/share/datasets/fashion-mnist
DEMO_DIR ?= demo

.PHONY: venv demo test bench clean api-docs

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,kube,kube-test,yolo,ray]'
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

$(FMNIST)/train-images-idx3-ubyte.gz:
	@echo "Fashion-MNIST not found in $(FMNIST); installing Debian's dataset-fashion-mnist" >&2
	apt-get update -q && apt-get install -y -q dataset-fashion-mnist

demo: venv $(FMNIST)/train-images-idx3-ubyte.gz
	$(PY) -m fedmist data split --source $(FMNIST) --out $(DEMO_DIR)/data --public 10000 --edges 25000,25000 --seed 0
	$(PY) -m fedmist pretrain --data $(DEMO_DIR)/data/public --out $(DEMO_DIR)/pretrained/lenet5.pth
	$(PY) -m fedmist run -f examples/mnist-mistnet/job.yaml --path-map /data=$(DEMO_DIR)/data --path-map /pretrained=$(DEMO_DIR)/pretrained --path-map /model=$(DEMO_DIR)/model --workdir $(DEMO_DIR)/run

test: venv
	$(PY) -m pytest -q tests

# docs/API.md: the Python API reference, generated from the docstrings (tests/api checks it is current)
api-docs: venv
	$(PY) -m fedmist.apidoc docs/API.md

clean:
	rm -rf $(DEMO_DIR) runs .pytest_cache
