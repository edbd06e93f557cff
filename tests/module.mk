# tests: fragment of the top-level Makefile.  Owners may add tests/<name>.mk.
-include $(filter-out tests/module.mk,$(wildcard tests/*.mk))
