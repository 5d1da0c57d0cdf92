target_compile_definitions(${name} PRIVATE IC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
