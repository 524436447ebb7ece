// Q2_K dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Super-block (84 bytes, 256 values): scales[16] (low nibble: 4-bit scale, high nibble: 4-bit
// min, one byte per 16 values), qs[64] (2-bit quants), d (f16), dmin (f16). Value e reads bits
// 2k, 2k+1 (k = (e % 128) / 32) of qs[32 * (e / 128) + e % 32] and uses sub-block s = e / 16.
// ggml computes, in this order and with a rounding after each operation:
//     dl = d * (sc & 0xF);  ml = dmin * (sc >> 4);  y = dl * q - ml
//
// The pre-pass computes (dl, ml) of the 16 sub-blocks once per block: p[2s] = dl, p[2s+1] = ml.
// Four consecutive values j..j+3 (j a multiple of 4) lie in one sub-block and come from four
// consecutive quant bytes at the same shift: one 32-bit load, one shift, one mask, and the
// magic-number trick turns each 2-bit field into its float exactly.
#include "qf_portability.h"

#ifndef Q2_K_BPG  // overridable for tuning experiments (-DQ2_K_BPG=...)
#define Q2_K_BPG 32u  // super-blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q2_k_block {
    static constexpr uint32_t BB = 84u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = Q2_K_BPG;
    static constexpr uint32_t NP = 32u;
    // k = 2s: dl of sub-block s; k = 2s + 1: its ml.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        const uint32_t sc = qf_ld_u32(s8, base + (k >> 1)) & 0xFFu;
        if ((k & 1u) == 0u) return QF_MUL(qf_ld_f16(s8, base + 80u), (float)(sc & 0xFu));
        return QF_MUL(qf_ld_f16(s8, base + 82u), (float)(sc >> 4));
    }
    // Runs: in half n, values 128n + 32r + l (r = 0..3) are the four 2-bit fields of
    // qs[32n + l]; a unit reads E bytes of qs once and decodes all four.
    static constexpr uint32_t R = 4u, S = 32u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const uint32_t n = j0 / 128u;
        const uint32_t l = j0 % 32u;
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 16u + 32u * n + l + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 4u; ++r) {
                const uint32_t q = (b >> (2u * r)) & 0x03030303u;
                const uint32_t s = 8u * n + 2u * r + l / 16u;  // sub-block of 16
                const float dl = p[2u * s], ml = p[2u * s + 1u];
                // ggml: dl * q - ml
                v[r][4u * w + 0u] = QF_SUB(QF_MUL(dl, qf_magic_minus<0u>(qf_magic_byte<0u>(q))), ml);
                v[r][4u * w + 1u] = QF_SUB(QF_MUL(dl, qf_magic_minus<0u>(qf_magic_byte<1u>(q))), ml);
                v[r][4u * w + 2u] = QF_SUB(QF_MUL(dl, qf_magic_minus<0u>(qf_magic_byte<2u>(q))), ml);
                v[r][4u * w + 3u] = QF_SUB(QF_MUL(dl, qf_magic_minus<0u>(qf_magic_byte<3u>(q))), ml);
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q2_k, q2_k_block)
