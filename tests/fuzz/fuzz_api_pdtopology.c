/* libFuzzer target: lib/api pdtopology decoding of untrusted JSON; the body is shared by every kind. */
#include "fuzz_api_kind.h"

IC_FUZZ_API_KIND(pdtopology)
