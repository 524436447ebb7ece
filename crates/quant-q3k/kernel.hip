// Q3_K dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Super-block (110 bytes, 256 values): hmask[32] (high bits), qs[64] (low 2 bits), scales[12]
// (sixteen 6-bit scales stored as sc + 32), d (f16). Value e has low bits
// (qs[32 * (e / 128) + e % 32] >> 2k) & 3 with k = (e % 128) / 32, high bit
// (hmask[e % 32] >> (e / 32)) & 1, and scale k' = e / 16, whose stored 6 bits are
// low4 = (scales[k' % 8] >> 4 * (k' / 8)) & 0xF and hi2 = (scales[8 + k' % 4] >> 2 * (k' / 4)) & 3.
// ggml computes, in this order and with a rounding after each operation:
//     dl = d * (float)(raw - 32);  y = dl * (float)(low - (high ? 0 : 4))
//
// The pre-pass computes dl of the 16 sub-blocks once per block. Four consecutive values j..j+3
// (j a multiple of 4) lie in one sub-block and come from four consecutive bytes of qs and of
// hmask at the same shifts: low | high << 2 is the quant plus 4 (0..7) in each byte, and the
// magic-number trick with bias 4 turns it into the float of the quant exactly.
#include "qf_portability.h"

#ifndef Q3_K_BPG  // overridable for tuning experiments (-DQ3_K_BPG=...)
#define Q3_K_BPG 32u  // super-blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q3_k_block {
    static constexpr uint32_t BB = 110u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = Q3_K_BPG;
    static constexpr uint32_t NP = 16u;
    // dl of sub-block k.
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        // Nibble k / 8 of scales[k % 8]; bit pair k / 4 of scales[8 + k % 4] (read as the
        // word scales[8..12], so that no load goes past the block).
        const uint32_t lo = qf_ld_u32(s8, base + 96u + (k & 7u));
        const uint32_t hi = qf_ld_u32(s8, base + 104u);
        const uint32_t raw = ((lo >> (4u * (k >> 3))) & 0xFu) |
                             (((hi >> (8u * (k & 3u) + 2u * (k >> 2))) & 3u) << 4);
        return QF_MUL(qf_ld_f16(s8, base + 108u), (float)((int32_t)raw - 32));
    }
    // Runs: in half n, values 128n + 32r + l (r = 0..3) are the four 2-bit fields of
    // qs[32n + l] with bits 4n + r of hmask[l]; a unit reads E bytes of qs and of hmask once and
    // decodes all four.
    static constexpr uint32_t R = 4u, S = 32u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const uint32_t n = j0 / 128u;
        const uint32_t l = j0 % 32u;
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t b = qf_ld_u32(s8, base + 32u + 32u * n + l + 4u * w);
            const uint32_t hm = qf_ld_u32(s8, base + l + 4u * w);
#pragma unroll
            for (uint32_t r = 0; r < 4u; ++r) {
                const uint32_t low = (b >> (2u * r)) & 0x03030303u;
                const uint32_t high = (hm >> (4u * n + r)) & 0x01010101u;
                const uint32_t q = low | (high << 2);  // quant + 4, per byte
                const float dl = p[8u * n + 2u * r + l / 16u];
                // ggml: dl * (low - (high ? 0 : 4))
                v[r][4u * w + 0u] = QF_MUL(dl, qf_magic_minus<4u>(qf_magic_byte<0u>(q)));
                v[r][4u * w + 1u] = QF_MUL(dl, qf_magic_minus<4u>(qf_magic_byte<1u>(q)));
                v[r][4u * w + 2u] = QF_MUL(dl, qf_magic_minus<4u>(qf_magic_byte<2u>(q)));
                v[r][4u * w + 3u] = QF_MUL(dl, qf_magic_minus<4u>(qf_magic_byte<3u>(q)));
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q3_k, q3_k_block)
