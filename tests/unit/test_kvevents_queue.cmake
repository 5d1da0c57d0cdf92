# The subscriber's op queue is program code (src/subscriber); compile it into its unit test.
target_sources(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/subscriber/queue.c)
target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/subscriber)
