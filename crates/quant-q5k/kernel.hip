// Q5_K dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Super-block (176 bytes, 256 values): d (f16), dmin (f16), scales[12] (eight 6-bit scales and
// eight 6-bit mins, packed as ggml's get_scale_min_k4 reads them), qh[32] (bit 4 of every quant:
// bit s of qh[l] for value 32s + l), qs[128] (bits 0..3: value 64g + l in the low nibble of
// qs[32g + l], value 64g + 32 + l in its high nibble). ggml computes, in this order and with a
// rounding after each operation:
//     d1 = d * sc;  m1 = dmin * m;  y = d1 * (float)q - m1
// The pre-pass computes (d1, m1) of the 8 sub-blocks once per block. A 5-bit quant is a byte of
// a word below 2^7, so the magic-number trick converts it exactly.
#include "qf_portability.h"

#ifndef Q5_K_BPG  // overridable for tuning experiments (-DQ5_K_BPG=...)
#define Q5_K_BPG 32u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q5_k_block {
    static constexpr uint32_t BB = 176u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = Q5_K_BPG;
    static constexpr uint32_t NP = 16u;  // (d1, m1) of each of the 8 sub-blocks
    // Pre-pass value k: d * sc[k / 2] for even k, dmin * m[k / 2] for odd k.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t j = k >> 1;
        const uint32_t sb = base + 4u;  // scales[12]
        uint32_t v;
        if ((k & 1u) == 0u) {
            // sc of ggml's get_scale_min_k4
            v = j < 4u ? (s8[sb + j] & 63u)
                       : ((s8[sb + j + 4u] & 0xFu) | ((uint32_t)(s8[sb + j - 4u] >> 6) << 4));
            return QF_MUL(qf_ld_f16(s8, base), (float)v);
        }
        // m of ggml's get_scale_min_k4
        v = j < 4u ? (s8[sb + j + 4u] & 63u)
                   : ((uint32_t)(s8[sb + j + 4u] >> 4) | ((uint32_t)(s8[sb + j] >> 6) << 4));
        return QF_MUL(qf_ld_f16(s8, base + 2u), (float)v);
    }
    // Runs: in half n, the values 128n + 32r + l (r = 0..3, sub-block 4n + r) take their fifth
    // bit from qh[l] (bit 4n + r), and each pair of them shares a byte of qs (low and high
    // nibbles of qs[64n + 32(r / 2) + l]); a unit reads E bytes of qh once and of two quarters
    // of qs once, and decodes all four runs (R = 8 would leave half the threads of a group idle).
    static constexpr uint32_t R = 4u, S = 32u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const uint32_t n = j0 / 128u;
        const uint32_t l = j0 % 32u;
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t qh = qf_ld_u32(s8, base + 16u + l + 4u * w);
#pragma unroll
            for (uint32_t c = 0; c < 2u; ++c) {
                const uint32_t ql = qf_ld_u32(s8, base + 48u + 64u * n + 32u * c + l + 4u * w);
#pragma unroll
                for (uint32_t h = 0; h < 2u; ++h) {
                    const uint32_t r = 2u * c + h;
                    const uint32_t s = 4u * n + r;  // sub-block
                    // Low or high nibbles; bit s of each qh byte moved to bit 4.
                    const uint32_t q =
                        ((ql >> (4u * h)) & 0x0F0F0F0Fu) | (((qh >> s) & 0x01010101u) << 4);
                    const float d1 = p[2u * s], m1 = p[2u * s + 1u];
                    // ggml: d1 * q - m1
                    v[r][4u * w + 0u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<0u>(q))), m1);
                    v[r][4u * w + 1u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<1u>(q))), m1);
                    v[r][4u * w + 2u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<2u>(q))), m1);
                    v[r][4u * w + 3u] = QF_SUB(QF_MUL(d1, qf_magic_minus<0u>(qf_magic_byte<3u>(q))), m1);
                }
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q5_k, q5_k_block)
