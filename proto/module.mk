# proto: the wire contracts (*.proto, compiled into libgen.a by the
# top-level Makefile) and the gRPC C core layer (rpc.h), the only code
# that includes grpc/.
$(B)/librpc.a: $(call objs,proto/rpc.c)
LIBS_librpc := -lgrpc -lgpr -lssl -lcrypto
LIBS_libgen := -lprotobuf-c
