# tests: fragment of the top-level Makefile. Sub-fragments per owner may be added as tests/<name>.mk.
-include $(wildcard tests/*.mk)
