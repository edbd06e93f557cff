# proto: the wire contracts (*.proto, compiled into libgen.a by the
# top-level Makefile) and the gRPC C core layer (rpc.h), the only code
# that includes grpc/: rpc_server.c, rpc_client.c, rpc_tls.c (PEM,
# credentials, peer identity) and rpc_common.c (code names, library
# references, gRPC logs), sharing rpc_int.h.
$(B)/librpc.a: $(call objs,proto/rpc_common.c proto/rpc_tls.c \
    proto/rpc_server.c proto/rpc_client.c)
LIBS_librpc := -lgrpc -lgpr -lssl -lcrypto
LIBS_libgen := -lprotobuf-c
