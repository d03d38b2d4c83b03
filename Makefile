# The two commands from README.md. Both set up what they need (idempotent) and then run.
.PHONY: demo test test-fast bench
demo:
	tests/env/bootstrap.sh demo $(ARGS)
test:
	tests/env/bootstrap.sh test $(ARGS)
# Developers: the fast tests only (no ComfyUI server, no browser).
test-fast:
	tests/env/bootstrap.sh test -m "not slow" $(ARGS)
# Benchmarks (never timed asserts): results go to docs/benchmarks.md.
bench:
	tests/env/bootstrap.sh setup-test
	.venv-test/bin/python tests/bench/run_all.py $(ARGS)
