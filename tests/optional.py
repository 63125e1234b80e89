"""Optional parts a newcomer's `make test` may lack: tests that need them skip with these
reasons, and CI (which installs everything and sets CXR_TESTS_NO_SKIP=1) fails on any skip."""

NEEDS_TORCH = "needs torch, the train extra: pip install -e '.[train]' (CI installs it)"
