# Two commands on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lock
RASA_DATA := data/nlu data/stories data/rules
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export RASA_TELEMETRY_ENABLED := false

.PHONY: run test test-unit train shell eval advisor content-check validate setup browser lock clean

run: setup
	@$(PY) -m bot run

test: setup validate browser
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not model"

train: setup
	$(PY) -m bot train

shell: setup
	@$(PY) -m bot shell

eval: setup
	$(PY) -m bot eval

# Create an advisor account: make advisor NAME=usuario
advisor: setup
	@test -n "$(NAME)" || { echo "Uso: make advisor NAME=usuario"; exit 1; }
	@$(PY) -m bot advisors add "$(NAME)"

content-check: setup
	$(PY) -m bot content-check

validate: setup
	$(PY) -m bot content-check
	$(PY) -m rasa data validate --fail-on-warnings --data $(RASA_DATA) --domain domain.yml --config config.yml

setup: $(STAMP)

# Browser tests drive Debian's Chromium (no browser downloads). Installed here when we are root.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Instalando Chromium (paquete de Debian) para las pruebas en navegador…"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Aviso: sin Chromium; las pruebas en navegador se omitirán (instale el paquete 'chromium')."; fi; \
	fi

# Python 3.10 is required by Rasa 3.6: python3.10 on PATH if it runs, else pyenv's.
$(PY):
	@py=""; \
	if python3.10 -c 'import sys' >/dev/null 2>&1; then py=python3.10; \
	else for candidate in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10; do \
	  if [ -x "$$candidate" ]; then py=$$candidate; fi; done; fi; \
	if [ -z "$$py" ]; then \
	  echo "Falta Python 3.10 (Rasa 3.6 no funciona con 3.11+). Instálelo, por ejemplo: 'pyenv install 3.10' o 'apt-get install python3.10 python3.10-venv'."; \
	  exit 1; fi; \
	echo "Creando $(VENV) con $$py"; \
	$$py -m venv $(VENV)

# Dependencies are installed again only when requirements.lock changes.
$(STAMP): requirements.lock | $(PY)
	$(PY) -m pip install --quiet --upgrade "pip<25"
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $(STAMP)

# Re-resolve the direct dependencies and pin the full set.
lock: | $(PY)
	$(PY) -m pip install --quiet -r requirements.in
	$(PY) -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) models .pytest_cache reports
