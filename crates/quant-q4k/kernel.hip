// Q4_K dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one super-block decodes.
//
// Super-block (144 bytes, 256 values): d (f16), dmin (f16), scales[12] (eight 6-bit scales and
// eight 6-bit mins, packed as ggml's get_scale_min_k4 reads them), qs[128] (4-bit quants).
// Values come in four chunks of 64: chunk c uses qs[32c .. 32c+31], its first 32 values the low
// nibbles with scale/min pair 2c, the next 32 the high nibbles with pair 2c+1. ggml computes,
// in this order and with a rounding after each operation:
//     d1 = d * sc;  m1 = dmin * m;  y = d1 * q - m1
// The pre-pass computes (d1, m1) of the eight sub-blocks once per super-block.
#include "qf_portability.h"

#ifndef Q4_K_BPG  // overridable for tuning experiments (-DQ4_K_BPG=...)
#define Q4_K_BPG 32u  // super-blocks staged per group (check_contract holds src/kernel.rs to it)
#endif

struct q4_k_block {
    static constexpr uint32_t BB = 144u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = Q4_K_BPG;
    static constexpr uint32_t NP = 16u;  // (d1, m1) of each 32-value sub-block
    // Pre-pass value k: d * sc of sub-block k / 2 (k even) or dmin * m (k odd), with ggml's
    // get_scale_min_k4 on the 12 scale bytes at base + 4.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t j = k / 2u;
        const uint8_t* sc = s8 + base + 4u;
        uint32_t s, m;
        if (j < 4u) {
            s = sc[j] & 63u;
            m = sc[j + 4u] & 63u;
        } else {
            s = (sc[j + 4u] & 0xFu) | ((sc[j - 4u] >> 6) << 4);
            m = (sc[j + 4u] >> 4) | ((sc[j] >> 6) << 4);
        }
        return (k % 2u == 0u) ? QF_MUL(qf_ld_f16(s8, base), (float)s)
                              : QF_MUL(qf_ld_f16(s8, base + 2u), (float)m);
    }
    // Runs: in chunk c of 64 values, l and l + 32 are the low and high nibbles of
    // qs[32c + l]; a unit reads E bytes of qs once and decodes both (sub-blocks 2c and 2c + 1).
    static constexpr uint32_t R = 2u, S = 32u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const uint32_t c = j0 / 64u;
        const uint32_t l = j0 % 32u;
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 16u + 32u * c + l + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 2u; ++r) {
                const uint32_t q = (b >> (4u * r)) & 0x0F0F0F0Fu;
                const float d1 = p[2u * (2u * c + r)], m1 = p[2u * (2u * c + r) + 1u];
                // ggml: d1 * q - m1
                v[r][4u * w + 0u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<0u>(q))), m1);
                v[r][4u * w + 1u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<1u>(q))), m1);
                v[r][4u * w + 2u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<2u>(q))), m1);
                v[r][4u * w + 3u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<3u>(q))), m1);
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q4_k, q4_k_block)
