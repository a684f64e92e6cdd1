# One-command entry points. Every target that needs the environment creates it first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PyPI's torch wheels for Linux bring the CUDA libraries (~3 GB), GPU or not. On a CPU-only
# machine that reaches the PyTorch index: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install demo test lint bench weights data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev,reference]'
	# taming's PyPI package pins an ancient torch/pytorch-lightning: its modules need none of that.
	$(BIN)/python -m pip install -q --no-deps taming-transformers-rom1504==0.0.6
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python train.py experiment=demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Fetch LPIPS's VGG16 and torch-fidelity's Inception (hash-checked) on a machine with
# network; copy $(DEST)/hub to compute nodes and set TORCH_HOME there.
weights: $(STAMP)
	$(BIN)/python -m dcvq.weights $(if $(DEST),--dest $(DEST))

# Fetch (apt-get download, ~200 MB from the Debian mirror) and prepare dataset=photos and
# dataset=fashion_mnist into $$DCVQ_DATA (default ~/.cache/dcvq/data) or DEST; idempotent.
data: $(STAMP)
	$(BIN)/python -m dcvq.data.prepare $(if $(DEST),--dest $(DEST))

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
