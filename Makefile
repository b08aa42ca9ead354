# The two commands of README.md:
#   make demo   - install what is missing, then broker + central + an edge agent on a generated clip
#   make test   - install what is missing, then run the whole test suite
# Works on a fresh Debian 12 / Raspberry Pi OS (bookworm) machine; uses sudo when not root.

PYTHON ?= python3
VENV   ?= .venv
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# On a Pi, picamera2 comes from apt (python3-picamera2): let the venv see it.
VENV_FLAGS := $(shell [ -d /usr/lib/python3/dist-packages/picamera2 ] && echo --system-site-packages)
APT_PACKAGES := mosquitto python3-venv fonts-dejavu-core chromium

.PHONY: demo test setup system-packages clean
demo: setup
	$(VENV)/bin/alpr-central demo

test: setup
	$(VENV)/bin/python -m pytest

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

clean:
	rm -rf $(VENV) demo-data .pytest_cache
