/* The synthetic test images of capi_test.c and capi_test_cpp.cpp; tests/test_capi.py
 * computes the same values. */
#ifndef OCR_DEPLOY_TESTS_SYNTHETIC_H
#define OCR_DEPLOY_TESTS_SYNTHETIC_H

#include <stdint.h>

/* Channel c (0 = R, 1 = G, 2 = B) of pixel (y, x) of image n. */
static inline uint8_t channel_value(unsigned n, unsigned y, unsigned x, unsigned c)
{
    return (uint8_t)((x * (7 + c) + y * (13 + 2 * c) + ((x * y) >> 3) + n * 31 + c * 50) & 255);
}

#endif
