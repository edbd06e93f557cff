# bench: fragment of the top-level Makefile.
-include $(wildcard bench/*.mk)
