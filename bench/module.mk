# bench: fragment of the top-level Makefile.  Owners add bench/<name>.mk.
-include $(filter-out bench/module.mk,$(wildcard bench/*.mk))
