target_link_libraries(${name} PRIVATE PkgConfig::JANSSON Threads::Threads)
