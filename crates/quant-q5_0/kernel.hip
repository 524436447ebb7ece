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
    // Runs: values l and l + 16 are the low and high nibbles of qs[l] with bits l and l + 16 of
    // qh; a unit reads E bytes of qs and qh once and decodes both.
    static constexpr uint32_t R = 2u, S = 16u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const float d = p[0];
        const uint32_t qh = qf_ld_u32(s8, base + 2u);
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 6u + j0 + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 2u; ++r) {
                // Low four bits from the nibbles, the fifth from qh (bit e of qh for value e).
                const uint32_t q = ((b >> (4u * r)) & 0x0F0F0F0Fu) |
                                   qf_bits_to_bit4(qh >> (j0 + 4u * w + 16u * r));
                // ggml: (float)(q - 16) * d
                v[r][4u * w + 0u] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<0u>(q)), d);
                v[r][4u * w + 1u] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<1u>(q)), d);
                v[r][4u * w + 2u] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<2u>(q)), d);
                v[r][4u * w + 3u] = QF_MUL(qf_magic_minus<16u>(qf_magic_byte<3u>(q)), d);
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q5_0, q5_0_block)
