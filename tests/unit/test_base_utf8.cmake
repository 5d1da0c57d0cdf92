# utf8proc is the oracle ic_utf8_valid is checked against.
pkg_check_modules(TEST_UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
target_link_libraries(${name} PRIVATE PkgConfig::TEST_UTF8PROC)
