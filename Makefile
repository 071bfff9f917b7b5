# make install — .venv with the project (editable) and its test tools; quick when done
# make demo    — train and evaluate a small model on the generated `shapes` set
# make demo-ssgrl — the same with SSGRL's head
# make demo-heads — the same with ML-Decoder's head (query-based, the field's newest)
# make test    — the test suite (two pytest-xdist workers, one thread each: ~8 min on 2 cores)
# make fuzz    — the config fuzzing tests with a large budget (random examples each run)
# make bench   — benchmarks (ratios against a baseline measured in the same run; the first
#                run writes ~1 GB of synthetic annotations to the cache and the SSGRL
#                baseline needs ~17 GB of memory)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo demo-ssgrl demo-heads test fuzz bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[test,export,report]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/mlcore train configs/demo.yaml --overwrite
	$(VENV)/bin/mlcore evaluate configs/demo.yaml

demo-ssgrl: install
	$(PY) -m mlcore_builtins.shapes.vectors runs/demo_ssgrl/label_vectors.npy
	$(VENV)/bin/mlcore train configs/demo_ssgrl.yaml --overwrite
	$(VENV)/bin/mlcore evaluate configs/demo_ssgrl.yaml

demo-heads: install
	$(VENV)/bin/mlcore train configs/demo_ml_decoder.yaml --overwrite
	$(VENV)/bin/mlcore evaluate configs/demo_ml_decoder.yaml

test: install
	$(PY) -m pytest -q -n 2 --dist worksteal

fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/test_config_fuzz.py

bench: install
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done
	@echo "(benchmarks/gpu_check.sh is the CUDA check, for a machine with a GPU)"

clean:
	rm -rf $(VENV) runs build *.egg-info
