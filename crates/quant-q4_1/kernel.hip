// Q4_1 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (20 bytes, 32 values): d (f16), m (f16), qs[16]. Byte j of qs holds value j in its low
// nibble and value j + 16 in its high nibble. ggml computes y = (float)q * d + m, rounding the
// product and then the sum (QF_MUL then QF_ADD: never an FMA). A nibble becomes a float
// exactly through the magic-number trick: the byte q (0..15) put under the exponent of 2^23
// gives 2^23 + q, and subtracting 2^23 leaves q.
#include "qf_portability.h"

#ifndef Q4_1_BPG  // overridable for tuning experiments (-DQ4_1_BPG=...)
#define Q4_1_BPG 256u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q4_1_block {
    static constexpr uint32_t BB = 20u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = Q4_1_BPG;
    static constexpr uint32_t NP = 2u;  // d, m
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        return qf_ld_f16(s8, base + 2u * k);
    }
    // Runs: values l and l + 16 are the low and high nibbles of qs[l]; a unit reads E bytes
    // of qs once and decodes both.
    static constexpr uint32_t R = 2u, S = 16u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const float d = p[0];
        const float m = p[1];
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 4u + j0 + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 2u; ++r) {
                const uint32_t q = (b >> (4u * r)) & 0x0F0F0F0Fu;
                // ggml: x * d + m
                v[r][4u * w + 0u] = QF_ADD(QF_MUL(qf_magic_minus<0u>(qf_magic_byte<0u>(q)), d), m);
                v[r][4u * w + 1u] = QF_ADD(QF_MUL(qf_magic_minus<0u>(qf_magic_byte<1u>(q)), d), m);
                v[r][4u * w + 2u] = QF_ADD(QF_MUL(qf_magic_minus<0u>(qf_magic_byte<2u>(q)), d), m);
                v[r][4u * w + 3u] = QF_ADD(QF_MUL(qf_magic_minus<0u>(qf_magic_byte<3u>(q)), d), m);
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q4_1, q4_1_block)
