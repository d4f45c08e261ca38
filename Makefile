PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install test bench model

# torch and tensorflow are pinned: an unpinned torch pulls gigabytes of CUDA wheels.
install:
	$(PIP) install --quiet torch==2.13.0 tensorflow-cpu==2.21.0
	$(PIP) install --quiet -e ".[torch,tf,serve,train,test]"
	@# The web app's browser tests drive Debian's Chromium (Playwright's own browser download fails offline).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test:
	$(PYTHON) -m pytest -q tests

bench:
	$(PYTHON) bench/run_all.py

# The bundled model (src/gpt2_core/bundled_model; its card says how it did): Debian's linux-doc-6.12 text ->
# gpt2-train in two phases (300 steps on 128-token blocks, then 400 on 256-token blocks, which also trains
# positions 128-255) -> float16 + card. One thread: on a shared 2-core machine two threads ran half as fast.
MODEL_DATA = --data 'build/kdoc/train/*.txt' --val-data 'build/kdoc/val/*.txt' --eval-every 50 --eval-batches 4 \
	--save-every 50 --seed 1337 --no-progress
MODEL_TRAIN = gpt2-train --config gpt2 --n-layer 6 --n-embd 128 --n-head 4 --n-positions 256 $(MODEL_DATA) \
	--block-size 128 --batch-size 8 --steps 300 --learning-rate 2e-3 --min-lr 2e-4 --warmup-steps 20 \
	--out build/bundled-run
MODEL_TUNE = gpt2-train --model build/bundled-run $(MODEL_DATA) --block-size 256 --batch-size 4 --steps 400 \
	--learning-rate 1e-3 --min-lr 1e-4 --warmup-steps 10 --out build/bundled-run2

model:
	$(PYTHON) tools/extract_kernel_docs.py --out build/kdoc
	rm -rf build/bundled-run build/bundled-run2
	OMP_NUM_THREADS=1 $(PYTHON) -m gpt2_core.cli_train $(wordlist 2,1000,$(MODEL_TRAIN))
	OMP_NUM_THREADS=1 $(PYTHON) -m gpt2_core.cli_train $(wordlist 2,1000,$(MODEL_TUNE))
	$(PYTHON) tools/make_bundled_model.py --run build/bundled-run2 --data build/kdoc --out src/gpt2_core/bundled_model \
		--command "$(MODEL_TRAIN) && $(MODEL_TUNE)"
