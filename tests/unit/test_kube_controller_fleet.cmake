# Links the controller's reconciler sources (no main.c) for pure-function tests.
target_sources(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/controller/resources.c
               ${CMAKE_SOURCE_DIR}/src/controller/cachebackend.c
               ${CMAKE_SOURCE_DIR}/src/controller/poller.c ${CMAKE_SOURCE_DIR}/src/controller/push.c
               ${CMAKE_SOURCE_DIR}/src/controller/nodelocal.c
               ${CMAKE_SOURCE_DIR}/src/controller/fleet.c
               ${CMAKE_SOURCE_DIR}/src/controller/prompttemplates.c
               ${CMAKE_CURRENT_SOURCE_DIR}/controller_shims.c)
target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/controller)
target_link_libraries(${name} PRIVATE ic_api ic_chattemplate PkgConfig::XXHASH PkgConfig::CURL
                      PkgConfig::JANSSON PkgConfig::OPENSSL m)
