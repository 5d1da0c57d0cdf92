target_link_libraries(${name} PRIVATE ic_kvevents)
