# proto: fragment of the top-level Makefile (owner: rpc helper).
# Every proto/*.proto is compiled into libgen.a by the top-level Makefile.
#
# librpc: the gRPC C core layer (proto/rpc.h).  Its unit test talks over
# real sockets with the well-known wrapper types as messages; the echo
# server is the peer of the Node.js interop script (t0100).

$(B)/librpc.a: $(call objs,proto/rpc.c)

$(B)/tests/test-rpc: $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
UNIT_TESTS += $(B)/tests/test-rpc

$(B)/tests/rpc-echo-server: $(call objs,tests/rpc/echo-server.c) \
    $(B)/librpc.a $(B)/libgen.a $(B)/libbase.a
	@mkdir -p $(@D)
	$(LINK)

E2E_TESTS += tests/e2e/t0100-rpc-node-interop.sh
# The e2e scripts use the echo server; `make test-e2e` builds it first.
test-e2e: $(B)/tests/rpc-echo-server
