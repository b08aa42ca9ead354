# The two commands of README.md:
#   make demo   - install what is missing, then broker + central + an edge agent on a generated clip
#   make test   - install what is missing, then run the whole test suite
# Works on a fresh Debian 12 / Raspberry Pi OS (bookworm) machine; uses sudo when not root.

PYTHON ?= python3
VENV   ?= .venv
# The fallback TFLite runtime (tflite-runtime, numpy < 2, OpenCV 4: the edge-legacy extra)
# cannot share a venv with ai-edge-litert; make test builds it apart where it installs.
LEGACY ?= .venv-legacy
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# On a Pi, picamera2 comes from apt (python3-picamera2): let the venv see it.
VENV_FLAGS := $(shell [ -d /usr/lib/python3/dist-packages/picamera2 ] && echo --system-site-packages)
APT_PACKAGES := mosquitto python3-venv fonts-dejavu-core chromium shellcheck rauc squashfs-tools postgresql

.PHONY: demo test setup system-packages legacy-runtime clean
demo: setup
	$(VENV)/bin/alpr-central demo

test: setup legacy-runtime
	ALPR_LEGACY_PYTHON="$(CURDIR)/$(LEGACY)/bin/python" $(VENV)/bin/python -m pytest

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[edge,central,dev]"
	touch $@

# Best effort: where no tflite-runtime wheel exists (Python >= 3.12, some boards) the
# legacy-runtime test skips and says so.
legacy-runtime: $(VENV)/.installed
	@if [ ! -f $(LEGACY)/.installed ] || [ setup.cfg -nt $(LEGACY)/.installed ]; then \
	  { $(PYTHON) -m venv $(LEGACY) && $(LEGACY)/bin/python -m pip install -q --upgrade pip && \
	    $(LEGACY)/bin/python -m pip install -q -e ".[edge-legacy]" && touch $(LEGACY)/.installed; } || \
	  { rm -rf $(LEGACY); echo "tflite-runtime does not install here: the legacy-runtime test will skip"; }; \
	fi

clean:
	rm -rf $(VENV) $(LEGACY) demo-data .pytest_cache
