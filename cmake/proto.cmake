# Generates protobuf-c code for every .proto under proto/ into the build tree (library ic_proto)
# and embeds a descriptor set (with imports) so the server can answer gRPC reflection.
file(GLOB_RECURSE IC_PROTOS RELATIVE ${CMAKE_SOURCE_DIR}/proto ${CMAKE_SOURCE_DIR}/proto/*.proto)
set(IC_PROTO_OUT ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${IC_PROTO_OUT})
set(IC_PROTO_SRCS)
set(IC_PROTO_ABS)
foreach(p ${IC_PROTOS})
  string(REGEX REPLACE "\\.proto$" "" base ${p})
  list(APPEND IC_PROTO_SRCS ${IC_PROTO_OUT}/${base}.pb-c.c)
  list(APPEND IC_PROTO_ABS ${CMAKE_SOURCE_DIR}/proto/${p})
  add_custom_command(
    OUTPUT ${IC_PROTO_OUT}/${base}.pb-c.c ${IC_PROTO_OUT}/${base}.pb-c.h
    COMMAND ${PROTOC_C} --proto_path=${CMAKE_SOURCE_DIR}/proto --c_out=${IC_PROTO_OUT} ${p}
    DEPENDS ${CMAKE_SOURCE_DIR}/proto/${p}
    COMMENT "protoc-c ${p}")
endforeach()

set(IC_DESC_BIN ${IC_PROTO_OUT}/descriptor_set.bin)
set(IC_DESC_C ${IC_PROTO_OUT}/descriptor_set.c)
add_custom_command(
  OUTPUT ${IC_DESC_BIN}
  COMMAND ${PROTOC} --proto_path=${CMAKE_SOURCE_DIR}/proto --include_imports
          --descriptor_set_out=${IC_DESC_BIN} ${IC_PROTOS}
  DEPENDS ${IC_PROTO_ABS}
  COMMENT "protoc descriptor set")
add_custom_command(
  OUTPUT ${IC_DESC_C}
  COMMAND ${CMAKE_COMMAND} -DIN=${IC_DESC_BIN} -DOUT=${IC_DESC_C} -DSYM=ic_proto_descriptor_set
          -P ${CMAKE_SOURCE_DIR}/cmake/embed.cmake
  DEPENDS ${IC_DESC_BIN} ${CMAKE_SOURCE_DIR}/cmake/embed.cmake)

add_library(ic_proto STATIC ${IC_PROTO_SRCS} ${IC_DESC_C})
target_include_directories(ic_proto PUBLIC ${IC_PROTO_OUT})
target_link_libraries(ic_proto PUBLIC PkgConfig::PROTOBUF_C)
# protoc-c output is not ours to keep warning-free.
target_compile_options(ic_proto PRIVATE -Wno-error -Wno-unused-parameter)
