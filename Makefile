# One command each for the demo and the tests; both do all set-up themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed-$(TORCH_VERSION)

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"
	@# setuptools prints a generic advisory (BuildBackendWarning, a UserWarning) on every editable install of a
	@# flat layout ("be careful with folders ... with the same name as your package"); nothing to act on here
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install -q -e ".[mpi,test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q tests

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(if $(QUICK),MD_STEPS=2000 ,)bash examples/demo.sh

clean:
	rm -rf $(VENV) demo_out
