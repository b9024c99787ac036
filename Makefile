# gradatim: `make demo` and `make test` each do all set-up on a fresh machine (Debian + Rust +
# CPython with pip): system packages, Python packages, a release build of the extension, then run.

# Everything runs in a virtual environment the Makefile owns (VENV), installed from the checked-in
# locks (requirements/*.lock: exact versions with hashes, produced by `make lock` from the loose
# requirements/*.in), never from the machine's own site-packages.
HOST_PYTHON ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# CPython 3.11 on x86-64 Linux: the machines CI and the demo run on (README, "Locked versions")
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
UV_COMPILE := $(UV) pip compile --quiet --generate-hashes $(LOCK_TARGET)
UV_SYNC := $(UV) pip sync --quiet --require-hashes --python $(PYTHON)
WHEELS := target/wheels
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

# Some sandboxes have /dev/null as a regular file that keeps what is written to it (pytest's log
# file handler, for one, writes there). cargo hands /dev/null to rustc's target probe as its
# source, so a log line there fails the build ("unknown start of token"): empty it before cargo.
EMPTY_DEVNULL := test -c /dev/null || : > /dev/null

.PHONY: all demo test test-rust test-python stress bench lint fmt sysdeps venv deps-demo deps-test lock testdata build clean

all: test

## The main job: the loader on the embedded phantom data, the image pipeline on a real
## radiograph (pydicom-data's RG1_UNCR.dcm), then difficulty -> CURE and RRGCL runs of a tiny
## model -> evaluation, with metrics.json, a checkpoint and plots in out/demo/.
demo: sysdeps deps-demo build
	$(PYTHON) -m gradatim demo --out out/demo/radiograph.png --train-out out/demo

## cargo tests of the core, then pytest (oracles: OpenCV, NumPy, pydicom, torch).
test: sysdeps deps-test testdata build test-rust test-python

test-rust:
	@$(EMPTY_DEVNULL)
	cargo test -p gradatim-core --release

test-python:
	$(PYTHON) -m pytest -q

## Property tests exploring far more examples than `make test` (hypothesis "stress" profile), and
## the long stress runs: 1,000 abandoned iterators, >= 20 SIGKILLs with exact resume, hung reads.
stress: sysdeps deps-test testdata build
	HYPOTHESIS_PROFILE=stress $(PYTHON) -m pytest -q -m "not slow" tests/test_sampling.py \
	  tests/test_loader.py tests/test_loader_dropin.py tests/test_warp.py tests/test_flip_draw_normalize.py \
	  tests/test_warp_cubic.py tests/test_resize_cubic.py tests/test_augment_cure.py
	GRADATIM_STRESS=long $(PYTHON) -m pytest -q tests/test_stress.py tests/test_hostile_files.py

## Fuzzing (libFuzzer through cargo-fuzz, nightly toolchain): every decoder entry (JPEG, PNG,
## DICOM incl. RLE, JPEG-LS and JPEG 2000, and the JPEG-LS and JPEG 2000 codestreams inside
## DICOM), the manifest reader, the box-text parsers and the pre-decoded
## cache (index and shard bytes; seeded with real caches), seeded with the
## real test images installed by `testdata`/`deps-test`; then the Parquet manifest reader (pyarrow,
## from Python) by fuzz/parquet_mutate.py (mutants read in a child under a 2 GiB address-space
## cap and a 10 s cap; findings in fuzz/artifacts/parquet/). FUZZ_S seconds per target; a memory cap
## (-rss_limit_mb) and a per-input time cap (-timeout) turn bombs into findings as well as
## crashes. Findings land in fuzz/artifacts/TARGET/; each becomes a regression test.
FUZZ_S ?= 600
FUZZ_TARGETS := decode_jpeg decode_png decode_dicom decode_dicom_jpegls decode_dicom_j2k manifest manifest_packed box_text cache_index
FUZZ_FLAGS = -max_total_time=$(FUZZ_S) -rss_limit_mb=3072 -malloc_limit_mb=8192 -timeout=10 -max_len=262144 -print_final_stats=1
.PHONY: fuzz
fuzz: sysdeps deps-test testdata build
	@rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(PYTHON) -W ignore fuzz/seeds.py fuzz/corpus
	@$(EMPTY_DEVNULL)
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  cargo +nightly fuzz run -O $$t corpus/$$t -- $(FUZZ_FLAGS) || exit 1; \
	done
	$(PYTHON) fuzz/parquet_mutate.py --seconds $(FUZZ_S)

## Throughput benchmarks (baseline and gradatim in one run; results in benches/results/).
bench: sysdeps deps-test testdata build
	$(PYTHON) benches/image_ops.py
	$(PYTHON) benches/sampling.py
	$(PYTHON) benches/loader_throughput.py
	$(PYTHON) benches/loader_remote.py
	$(PYTHON) benches/manifest_scale.py
	$(PYTHON) benches/train_startup.py
	$(PYTHON) benches/difficulty.py

## The curricula's effect (README, "Does a curriculum help?"): every arm x 3 seeds on the phantom
## data, same budget; table and plot in out/experiment/. About 16 minutes on 2 cores.
.PHONY: experiment
experiment: sysdeps deps-demo build
	$(PYTHON) -m gradatim experiment docs/experiment/curricula.toml

## CI guard (after `make test`): a short loader benchmark on generated radiograph JPEGs; prints
## every ratio and fails only on a gross regression (gradatim < 0.5x torch DataLoader + OpenCV).
.PHONY: bench-ci
bench-ci: deps-test build
	$(PYTHON) benches/loader_throughput.py --quick --min-ratio-b 0.5 --out target/bench-ci/loader.json

## Lint, run by CI after the tests: formatting, clippy on every target (tests included), ruff, and
## the hand-written stubs checked against the built extension.
lint: deps-test build
	@$(EMPTY_DEVNULL)
	cargo fmt --all -- --check
	cargo clippy -p gradatim-core -p gradatim-python --all-targets -- -D warnings
	$(PYTHON) -m ruff check python tests benches fuzz
	$(PYTHON) -m ruff format --check python tests benches fuzz
	$(PYTHON) -m mypy.stubtest gradatim._core --ignore-disjoint-bases --allowlist .ci/stubtest-allowlist.txt

fmt:
	cargo fmt --all
	$(PYTHON) -m ruff format python tests benches fuzz

# libjpeg-turbo is vendored and built by cmake, with nasm for its SIMD kernels; CharLS (DICOM
# JPEG-LS) is vendored C++ built by cmake, so a C++ compiler too.
sysdeps:
	@command -v cmake >/dev/null && command -v nasm >/dev/null && command -v g++ >/dev/null || \
	  { apt-get update -qq && $(APT_INSTALL) cmake nasm g++; }

# A virtual environment with the locked installer in it (pip checks uv's hash).
venv: $(UV)
$(UV): requirements/bootstrap.lock
	test -x $(PYTHON) || $(HOST_PYTHON) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r requirements/bootstrap.lock
	touch $(UV)

# `uv pip sync` makes the environment exactly the lock (what is not in it is removed, the
# extension too: every target that uses it depends on `build`, which reinstalls it).
deps-demo: venv
	$(UV_SYNC) requirements/demo.lock requirements/bootstrap.lock

deps-test: venv
	$(UV_SYNC) requirements/test.lock requirements/nodeps.lock requirements/bootstrap.lock
	$(UV) pip install --quiet --require-hashes --no-deps --python $(PYTHON) \
	  --target target/oracles/opencv-next -r requirements/opencv-next.lock

## The declared floors, tested: a second virtual environment (.venv-floor) from
## requirements/floor.lock (torch 2.6, numpy 2.0, transformers 4.56, peft 0.13, accelerate 1.0,
## lightning 2.4, torchdata 0.11, pyarrow 16, ...: the minimums pyproject.toml declares), the
## same extension wheel (abi3), and the tests that exercise those libraries. CI runs it after
## `make test`; the environment is rebuilt only when its lock changes.
FLOOR_VENV := .venv-floor
FLOOR_PYTHON := $(FLOOR_VENV)/bin/python
FLOOR_TESTS := tests/test_loader.py tests/test_loader_dropin.py tests/test_loader_clients.py \
  tests/test_sampling.py tests/test_sampling_sources.py tests/test_train_loop.py \
  tests/test_train_attention.py tests/test_train_curricula.py tests/test_train_gradients.py \
  tests/test_train_logging.py tests/test_train_multitask_step.py tests/test_train_learns.py \
  tests/test_predict.py tests/test_evaluate.py tests/test_evaluate_baselines.py \
  tests/test_evaluate_clinical.py tests/test_manifest_packed.py \
  tests/test_manifest_schema_agreement.py tests/test_difficulty_cli.py tests/test_difficulty_io.py \
  tests/test_difficulty_itas.py tests/test_difficulty_vns_gap.py tests/test_curriculum_rrgcl.py \
  tests/test_curriculum_plot.py tests/test_pretrain.py
.PHONY: test-floors
test-floors: sysdeps testdata build $(FLOOR_VENV)/.synced
	$(FLOOR_VENV)/bin/uv pip install --quiet --no-deps --reinstall --python $(FLOOR_PYTHON) \
	  $(WHEELS)/gradatim-*.whl
	$(FLOOR_PYTHON) -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning $(FLOOR_TESTS)

$(FLOOR_VENV)/.synced: requirements/floor.lock requirements/nodeps.lock requirements/bootstrap.lock
	test -x $(FLOOR_PYTHON) || $(HOST_PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
	  -r requirements/bootstrap.lock
	$(FLOOR_VENV)/bin/uv pip sync --quiet --require-hashes --python $(FLOOR_PYTHON) \
	  requirements/floor.lock requirements/nodeps.lock requirements/bootstrap.lock
	touch $@

## Re-resolve every lock from requirements/*.in (the newest versions the .in ranges allow); the
## demo lock is resolved inside the test lock, so the two never disagree. Review the diff, run
## `make test`, commit the .in and .lock files together.
lock: venv
	$(UV_COMPILE) requirements/bootstrap.in -o requirements/bootstrap.lock
	$(UV_COMPILE) requirements/test.in -o requirements/test.lock
	$(UV_COMPILE) requirements/demo.in -c requirements/test.lock -o requirements/demo.lock
	$(UV_COMPILE) --no-deps requirements/nodeps.in -o requirements/nodeps.lock
	$(UV_COMPILE) --no-deps requirements/opencv-next.in -o requirements/opencv-next.lock
	rm -f requirements/floor.lock  # re-resolved from scratch: the free packages at their newest
	$(UV_COMPILE) requirements/floor.in -o requirements/floor.lock

# Real images that no one here made (Debian): JPEG variants and large photos. Best effort: the
# tests that need them skip with a reason when they are missing.
testdata:
	@test -d /usr/share/libjxl-testdata && test -d /usr/share/wallpapers/Autumn || \
	  { apt-get update -qq && $(APT_INSTALL) libjxl-testdata plasma-workspace-wallpapers; } || \
	  { if [ "$$CI" = true ]; then echo "testdata: install failed (fatal in CI)"; exit 1; fi; \
	    echo "testdata: Debian test images unavailable; their tests will skip"; }

# Release build of the extension, installed into the virtual environment.
build:
	@$(EMPTY_DEVNULL)
	rm -rf $(WHEELS)
	$(PYTHON) -m maturin build --release --quiet -i $(PYTHON) --out $(WHEELS)
	$(UV) pip install --quiet --no-deps --reinstall --python $(PYTHON) $(WHEELS)/gradatim-*.whl

clean:
	cargo clean
	rm -rf $(WHEELS) $(VENV) $(FLOOR_VENV)
