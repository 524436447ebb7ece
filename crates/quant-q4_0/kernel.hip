// Q4_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (18 bytes, 32 values): d (f16, little-endian) then qs[16]; value j (0..15) is
// (qs[j] & 0xF) - 8, value j + 16 is (qs[j] >> 4) - 8, each times d. ggml computes
// y = (float)(q - 8) * d with one rounding; so do we (the magic-number conversion gives
// q - 8 exactly).
#include "qf_portability.h"

#ifndef Q4_0_BPG  // overridable for tuning experiments (-DQ4_0_BPG=...)
#define Q4_0_BPG 256u  // blocks staged per group (check_contract holds src/kernel.rs to it)
#endif

struct q4_0_block {
    static constexpr uint32_t BB = 18u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = Q4_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    // Runs: values l and l + 16 are the low and high nibbles of qs[l]; a unit reads E bytes
    // of qs once and decodes both.
    static constexpr uint32_t R = 2u, S = 16u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const float d = p[0];
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 2u + j0 + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 2u; ++r) {
                const uint32_t q = (b >> (4u * r)) & 0x0F0F0F0Fu;
                // ggml: (float)(q - 8) * d
                v[r][4u * w + 0u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<0u>(q)), d);
                v[r][4u * w + 1u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<1u>(q)), d);
                v[r][4u * w + 2u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<2u>(q)), d);
                v[r][4u * w + 3u] = QF_MUL(qf_magic_minus<8u>(qf_magic_byte<3u>(q)), d);
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q4_0, q4_0_block)
