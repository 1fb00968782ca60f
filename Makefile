# Two commands on a fresh machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-lock
DEV_STAMP := $(VENV)/.installed-dev-lock
CODE := bot actions channels extensions integrations ops tests bench
RASA_DATA := data/nlu data/stories data/rules
WEBCHAT := channels/webchat
WEBCHAT_VENDOR := channels/static/webchat/vendor
WEBCHAT_STAMP := $(WEBCHAT_VENDOR)/.installed-lock
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export RASA_TELEMETRY_ENABLED := false

.PHONY: run run-cluster test test-unit lint format train shell eval bench advisor content-check validate setup setup-dev webchat browser nginx lock clean

run: setup
	@$(PY) -m bot run

# Production profile on this machine: two Rasa replicas + action server on PostgreSQL and Redis,
# behind nginx on port 5005 (DATABASE_URL and REDIS_URL default to the local services).
run-cluster: setup
	@command -v nginx >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } || true
	@$(PY) -m bot cluster

test: setup-dev validate lint browser nginx
	$(PY) -m pytest

test-unit: setup-dev
	$(PY) -m pytest -m "not model"

# The style and type gate (pyproject.toml): ruff's formatter and linter over every Python file,
# and mypy on bot/.
lint: setup-dev
	$(PY) -m ruff format --check $(CODE)
	$(PY) -m ruff check $(CODE)
	$(PY) -m mypy

format: setup-dev
	$(PY) -m ruff format $(CODE)
	$(PY) -m ruff check --fix $(CODE)

train: setup
	$(PY) -m bot train

shell: setup
	@$(PY) -m bot shell

eval: setup
	$(PY) -m bot eval

# Benchmark against Rasa's reference bot (about 30 min on 2 cores): bench/results.md and charts.
bench: setup
	$(PY) bench/run.py

# Create an advisor account: make advisor NAME=usuario
advisor: setup
	@test -n "$(NAME)" || { echo "Uso: make advisor NAME=usuario"; exit 1; }
	@$(PY) -m bot advisors add "$(NAME)"

content-check: setup
	$(PY) -m bot content-check

validate: setup
	$(PY) -m bot content-check
	$(PY) -m rasa data validate --fail-on-warnings --data $(RASA_DATA) --domain domain.yml --config config.yml

setup: $(STAMP) webchat

# Test and lint tools (requirements-dev.lock), never in the production image.
setup-dev: setup $(DEV_STAMP)

# The web chat's browser libraries (socket.io client; axe-core for the tests) from the pinned
# package-lock.json into channels/static/webchat/vendor/, which the server serves: no CDN at run
# time. Only when the package-lock changes.
webchat: $(WEBCHAT_STAMP)

$(WEBCHAT_STAMP): $(WEBCHAT)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "Falta npm (Node.js) para preparar el chat web: instálelo, por ejemplo 'apt-get install nodejs npm'."; exit 1; }
	cd $(WEBCHAT) && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(WEBCHAT_VENDOR)
	cp $(WEBCHAT)/node_modules/socket.io-client/dist/socket.io.min.js $(WEBCHAT)/node_modules/axe-core/axe.min.js $(WEBCHAT_VENDOR)/
	@touch $@

# Browser tests drive Debian's Chromium (no browser downloads). Installed here when we are root.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Instalando Chromium (paquete de Debian) para las pruebas en navegador…"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Aviso: sin Chromium; las pruebas en navegador se omitirán (instale el paquete 'chromium')."; fi; \
	fi

# The deploy tests run the real nginx (TLS, rate limits, allowlist) with a certificate made by openssl.
# Installed here when we are root; without them those tests check the configuration as text only.
nginx:
	@if ! command -v nginx >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Instalando nginx y openssl (paquetes de Debian) para las pruebas del despliegue…"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light openssl >/dev/null \
	      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx openssl >/dev/null; \
	  else echo "Aviso: sin nginx u openssl; las pruebas del proxy se omitirán."; fi; \
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

$(DEV_STAMP): requirements-dev.lock $(STAMP)
	$(PY) -m pip install --quiet -r requirements-dev.lock
	@touch $(DEV_STAMP)

# Re-resolve the direct dependencies and pin the full set (runtime, then the development tools on top).
lock: | $(PY)
	$(PY) -m pip install --quiet -r requirements.in
	$(PY) -m pip freeze --exclude-editable > requirements.lock
	$(PY) -m pip install --quiet -r requirements-dev.in
	$(PY) -m pip freeze --exclude-editable | grep -vxFf requirements.lock > requirements-dev.lock

clean:
	rm -rf $(VENV) models .pytest_cache .mypy_cache .ruff_cache reports $(WEBCHAT)/node_modules $(WEBCHAT_VENDOR)
