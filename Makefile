# make run: a working demo at http://127.0.0.1:5000/p/demo
# make test: the whole test suite
# make test-fast: the suite without the slow tests (browser, processes, load)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi

.PHONY: run test test-fast clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

run: $(BIN)/.installed
	$(FLASK) init
	CAPTURE_SCHEDULER=embedded $(FLASK) run --host 127.0.0.1 --port 5000

test: $(BIN)/.installed
	$(BIN)/python -m pytest

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache

# make bench: the performance benchmark (bench/run.py; BENCH_ARGS="--quick", "--only optin" …)
.PHONY: bench
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# make docs: rewrite the parts of docs/ written from code (settings, commands, package map)
.PHONY: docs
docs: $(BIN)/.installed
	$(BIN)/python docs/generate.py

# make translations: bring the catalogues in capture/translations/ up to date with the
# texts in the code and compile them (docs/develop/translations.md)
.PHONY: translations
translations: $(BIN)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext --add-location=file --sort-output \
		--project=Capture -o capture/translations/messages.pot .
	$(BIN)/pybabel update -i capture/translations/messages.pot -d capture/translations \
		--no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d capture/translations --statistics
