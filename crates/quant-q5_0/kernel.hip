// Q5_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (22 bytes, 32 values): d (f16), qh (u32, little-endian, at byte 2), qs[16] (at byte 6).
// Value e has its fifth bit in bit e of qh and its low four bits in the low nibble of qs[e]
// (e < 16) or the high nibble of qs[e - 16] (e >= 16). ggml computes y = (float)(q - 16) * d
// with one rounding. The 5-bit q (0..31) becomes (float)(q - 16) exactly through the
// magic-number trick: the byte q under the exponent of 2^23 gives 2^23 + q, and subtracting
// 2^23 + 16 leaves q - 16.
#include "qf_portability.h"

#ifndef Q5_0_BPG  // overridable for tuning experiments (-DQ5_0_BPG=...)
#define Q5_0_BPG 256u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q5_0_block {
    static constexpr uint32_t BB = 22u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = Q5_0_BPG;
    static constexpr uint32_t NP = 1u;  // d
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        // Low four bits of values j..j+3: the low nibbles of qs[j..j+3] (j < 16) or the high
        // nibbles of qs[j-16..j-13] (j >= 16).
        const uint32_t w = qf_ld_u32(s8, base + 6u + (j & 15u));
        const uint32_t lo = (w >> (j & 16u ? 4u : 0u)) & 0x0F0F0F0Fu;
        // Fifth bits: bits j..j+3 of qh, each moved to bit 4 of its byte.
        const uint32_t h = qf_ld_u32(s8, base + 2u) >> j;
        const uint32_t hi = ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) |
                            ((h & 8u) << 25);
        const uint32_t q = lo | hi;  // four bytes, each 0..31
        v[0] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<0u>(q)), d);
        v[1] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<1u>(q)), d);
        v[2] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<2u>(q)), d);
        v[3] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<3u>(q)), d);
    }
};

QF_DEQUANT_ENTRIES(q5_0, q5_0_block)
