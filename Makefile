# The two commands of the README's quick start. Each installs what it needs
# (system packages with apt-get, Python packages into .venv) and is idempotent.
VENV := .venv
SYSTEM_PACKAGES := libespeak-ng1 libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins \
  chromium chromium-driver redis-server
CODE := voicestream tests benchmarks

.PHONY: demo test bench setup system-packages

demo: setup
	$(VENV)/bin/voicestream say --source demo --out demo.wav
	@echo "listen to it: paplay demo.wav (or aplay, or open it in any audio player)"

test: setup
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy voicestream
	$(VENV)/bin/pytest

bench: setup
	$(VENV)/bin/pip install -q -e '.[dev,piper,listen,bench]'
	$(VENV)/bin/python benchmarks/chunker.py
	$(VENV)/bin/voicestream bench --out benchmarks/results

setup: system-packages $(VENV)/.installed

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[dev,piper,listen]'
	touch $@
