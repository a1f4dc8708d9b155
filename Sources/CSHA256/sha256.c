/*
 * SHA-256 compression with the CPU's SHA-256 instructions. Each function is compiled for its
 * instruction set alone (a target attribute), so the binary still runs on CPUs without them: the
 * caller asks csha256_hardware_available() first and otherwise uses the Swift implementation.
 */

#include "csha256.h"

const uint32_t csha256_round_constants[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

bool csha256_hardware_available(void) {
    unsigned eax, ebx, ecx, edx;
    /* Leaf 1 ECX: SSSE3 (bit 9, pshufb) and SSE4.1 (bit 19); leaf 7 EBX bit 29: SHA. */
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    if (!(ecx & (1u << 9)) || !(ecx & (1u << 19))) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (ebx & (1u << 29)) != 0;
}

/*
 * sha256rnds2 does two rounds on the working variables split as {A,B,E,F} and {C,D,G,H} (A and C
 * in the highest lane), taking W+K for both rounds from the low two lanes of its third operand;
 * after two rounds the old {A,B,E,F} is the new {C,D,G,H}. sha256msg1/msg2 compute four schedule
 * words at a time: msg1 adds σ0 of the next word to each of W[t-16…t-13], msg2 adds σ1 of
 * W[t-2] once W[t-7] has been added (the W[t-7] quartet straddles two registers: alignr).
 */
__attribute__((target("sha,ssse3,sse4.1")))
void csha256_compress(uint32_t state[8], const uint8_t *blocks, size_t count) {
    /* Big-endian message words into lanes. */
    const __m128i byteswap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    /* state lanes (low first): A B C D | E F G H  →  ABEF lanes F E B A, CDGH lanes H G D C. */
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0x1b);
    __m128i hgfe = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1b);
    __m128i abef = _mm_unpackhi_epi64(hgfe, dcba);
    __m128i cdgh = _mm_unpacklo_epi64(hgfe, dcba);

    for (; count > 0; count--, blocks += 64) {
        const __m128i abef_start = abef, cdgh_start = cdgh;
        /* w[g % 4] holds schedule words 4g…4g+3 while they are needed. */
        __m128i w[4];
        /* Unrolled, so that w[] lives in registers. */
#pragma clang loop unroll(full)
        for (int g = 0; g < 16; g++) {
            __m128i words;
            if (g < 4) {
                words = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(blocks + 16 * g)), byteswap);
            } else {
                __m128i sum = _mm_sha256msg1_epu32(w[g % 4], w[(g + 1) % 4]);
                sum = _mm_add_epi32(sum, _mm_alignr_epi8(w[(g + 3) % 4], w[(g + 2) % 4], 4));
                words = _mm_sha256msg2_epu32(sum, w[(g + 3) % 4]);
            }
            w[g % 4] = words;
            __m128i wk = _mm_add_epi32(words, _mm_load_si128((const __m128i *)&csha256_round_constants[4 * g]));
            __m128i next = _mm_sha256rnds2_epu32(cdgh, abef, wk);
            cdgh = abef;
            abef = next;
            next = _mm_sha256rnds2_epu32(cdgh, abef, _mm_shuffle_epi32(wk, 0x0e));
            cdgh = abef;
            abef = next;
        }
        abef = _mm_add_epi32(abef, abef_start);
        cdgh = _mm_add_epi32(cdgh, cdgh_start);
    }

    dcba = _mm_unpackhi_epi64(cdgh, abef);
    hgfe = _mm_unpacklo_epi64(cdgh, abef);
    _mm_storeu_si128((__m128i *)&state[0], _mm_shuffle_epi32(dcba, 0x1b));
    _mm_storeu_si128((__m128i *)&state[4], _mm_shuffle_epi32(hgfe, 0x1b));
}

#elif defined(__aarch64__)
#include <arm_neon.h>
#include <sys/auxv.h>

/* The kernel's HWCAP_SHA2: the CPU has the SHA-256 instructions of the Crypto Extension. */
bool csha256_hardware_available(void) {
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}

/*
 * sha256h does four rounds and returns the new {A,B,C,D}; sha256h2 returns the new {E,F,G,H} and
 * needs the {A,B,C,D} from before those rounds. sha256su0 adds σ0 of the next word to each of
 * W[t-16…t-13]; sha256su1 adds W[t-7] and σ1(W[t-2]), finishing four schedule words.
 */
__attribute__((target("sha2")))
void csha256_compress(uint32_t state[8], const uint8_t *blocks, size_t count) {
    uint32x4_t abcd = vld1q_u32(&state[0]);
    uint32x4_t efgh = vld1q_u32(&state[4]);

    for (; count > 0; count--, blocks += 64) {
        const uint32x4_t abcd_start = abcd, efgh_start = efgh;
        /* w[g % 4] holds schedule words 4g…4g+3 while they are needed. */
        uint32x4_t w[4];
        /* Unrolled, so that w[] lives in registers. */
#pragma clang loop unroll(full)
        for (int g = 0; g < 16; g++) {
            uint32x4_t words;
            if (g < 4) {
                words = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(blocks + 16 * g)));
            } else {
                words = vsha256su1q_u32(vsha256su0q_u32(w[g % 4], w[(g + 1) % 4]), w[(g + 2) % 4], w[(g + 3) % 4]);
            }
            w[g % 4] = words;
            const uint32x4_t wk = vaddq_u32(words, vld1q_u32(&csha256_round_constants[4 * g]));
            const uint32x4_t abcd_before = abcd;
            abcd = vsha256hq_u32(abcd, efgh, wk);
            efgh = vsha256h2q_u32(efgh, abcd_before, wk);
        }
        abcd = vaddq_u32(abcd, abcd_start);
        efgh = vaddq_u32(efgh, efgh_start);
    }

    vst1q_u32(&state[0], abcd);
    vst1q_u32(&state[4], efgh);
}

#else
/* Other architectures: SHA256 uses its Swift rounds only. */
bool csha256_hardware_available(void) { return false; }

void csha256_compress(uint32_t state[8], const uint8_t *blocks, size_t count) {
    (void)state;
    (void)blocks;
    (void)count;
}
#endif
