/* libFuzzer target: lib/api cacheindex decoding of untrusted JSON; the body is shared by every kind. */
#include "fuzz_api_kind.h"

IC_FUZZ_API_KIND(cacheindex)
