#ifndef KPROBE_RUN_CSHA256_H
#define KPROBE_RUN_CSHA256_H

/*
 * SHA-256 block compression with the CPU's SHA-256 instructions: x86-64 SHA extensions (SHA-NI)
 * or the ARMv8 Cryptographic Extension. Only the compression function lives here; padding,
 * buffering and the portable fallback are KprobeSupport.SHA256's.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FIPS 180-4 §4.2.2: the 64 round constants (also the Swift rounds' table). */
extern const uint32_t csha256_round_constants[64];

/* Whether this CPU (and this build's architecture) has the instructions csha256_compress uses.
   Cheap, but callers should ask once: it runs cpuid / reads the auxiliary vector. */
bool csha256_hardware_available(void);

/* Compresses `count` whole 64-byte blocks at `blocks` into `state` (H0…H7, native-endian words,
   as FIPS 180-4 numbers them). Call only when csha256_hardware_available() said true. */
void csha256_compress(uint32_t state[8], const uint8_t *blocks, size_t count);

#endif
