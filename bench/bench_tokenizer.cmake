target_compile_definitions(${name} PRIVATE IC_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
# The prompt_text lookup figures run the real service logic in-process.
target_sources(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_lookup.c)
target_link_libraries(${name} PRIVATE ic_prompt ic_svc ic_index ic_proto)
