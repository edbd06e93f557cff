# proto: fragment of the top-level Makefile (see its header).
