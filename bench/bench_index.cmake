target_link_libraries(${name} PRIVATE Threads::Threads m)
