# edgepbx — `make run` starts the appliance on the demo office, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
CONFIG ?= appliance/demo-office.yaml
STAMP := $(VENV)/.installed

PORTAL_DIR ?= var/portal
PORTAL_PORT ?= 8800

BOARD ?= x86

.PHONY: setup debian-packages pjsua2 run portal image bundle test bench check clean

# Debian packages first (PJSIP's build needs them), then the venv, then our own PJSIP build.
setup: debian-packages $(STAMP) pjsua2

debian-packages:
	@scripts/install-debian-packages.sh

# pjsua2 from the PJSIP that scripts/build-pjsip.sh builds (cached: seconds when unchanged).
pjsua2: $(STAMP)
	@scripts/build-pjsip.sh $(VENV)/bin/python

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

run: setup
	$(VENV)/bin/edgepbx run --config $(CONFIG)

# The cloud portal on SQLite under var/portal (docs/cloud.md); DATABASE_URL=postgresql://... for PostgreSQL.
portal: setup
	$(VENV)/bin/edgepbx-portal run --data-dir $(PORTAL_DIR) --port $(PORTAL_PORT) $(if $(DATABASE_URL),--database-url $(DATABASE_URL))

# The appliance image (image/README.md): build/image/edgepbx-$(BOARD).img.xz and .sha256.
image: setup
	image/build.sh $(BOARD)

# The signed RAUC update bundle of that image: build/image/edgepbx-$(BOARD).raucb (`edgepbx update` on a box).
bundle: setup
	image/bundle.sh $(BOARD)

# The fast tier for daily work (README: under 3 minutes on 2 cores): the import layers
# (.importlinter), the demo config, the unit tests and the quick system tests through a real
# Kamailio and feature server. `make test` runs everything, as CI does.
CHECK_TESTS ?= tests/test_call_logic.py tests/test_config.py tests/test_config_edit.py tests/test_sealing.py tests/test_dialplan.py tests/test_templates.py \
	tests/test_calls.py tests/test_pickup.py tests/test_sip_signalling.py

check: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/edgepbx check --config $(CONFIG)
	$(VENV)/bin/python -m pytest -q --durations=5 $(CHECK_TESTS)

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q --durations=15 tests

bench: setup
	$(VENV)/bin/python bench/bench_calls.py
	$(VENV)/bin/python bench/bench_provisioning.py
	$(VENV)/bin/python bench/bench_pickup.py
	$(VENV)/bin/python bench/bench_transfer.py

clean:
	rm -rf $(VENV) var
