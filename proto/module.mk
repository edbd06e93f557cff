# proto: fragment of the top-level Makefile (owner: rpc helper).
# Every proto/*.proto is compiled into libgen.a by the top-level Makefile.
