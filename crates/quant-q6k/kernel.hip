// Q6_K dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one super-block decodes.
//
// Super-block (210 bytes, 256 values): ql[128] (low 4 bits), qh[64] (high 2 bits),
// scales[16] (int8), d (f16). Values come in two halves of 128; in half n, for l in 0..31:
//     y[l]      from ql[64n + l]      low nibble,  qh[32n + l] bits 0-1, scale 8n + l/16 + 0
//     y[l + 32] from ql[64n + l + 32] low nibble,  qh[32n + l] bits 2-3, scale 8n + l/16 + 2
//     y[l + 64] from ql[64n + l]      high nibble, qh[32n + l] bits 4-5, scale 8n + l/16 + 4
//     y[l + 96] from ql[64n + l + 32] high nibble, qh[32n + l] bits 6-7, scale 8n + l/16 + 6
// with q = (nibble | bits << 4) - 32 and, as ggml computes it, y = (d * scale) * q, rounded
// after each multiplication. The pre-pass computes d * scale of the 16 scales once; a unit reads
// ql[l], ql[l + 32] and qh[l] once and writes the four values they make (runs of 32).
#include "qf_portability.h"

#ifndef Q6_K_BPG  // overridable for tuning experiments (-DQ6_K_BPG=...)
#define Q6_K_BPG 32u  // super-blocks staged per group (check_contract holds src/kernel.rs to it)
#endif

struct q6_k_block {
    static constexpr uint32_t BB = 210u;
    static constexpr uint32_t QK = 256u;
    static constexpr uint32_t BPG = Q6_K_BPG;
    static constexpr uint32_t NP = 16u;  // d * scales[k]
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t k) {
        return QF_MUL(qf_ld_f16(s8, base + 208u), (float)(int32_t)(int8_t)s8[base + 192u + k]);
    }
    // Runs: in half n, the values l, l + 32, l + 64 and l + 96 share ql[l], ql[l + 32] and
    // qh[l]; a unit decodes E consecutive l of all four (the vectors ggml's loop writes).
    static constexpr uint32_t R = 4u, S = 32u;
    template <uint32_t E>
    QF_DEVICE static void decode_runs(const uint8_t* s8, uint32_t base, const float* p,
                                      uint32_t j0, float (*v)[8]) {
        const uint32_t n = j0 / 128u;  // half
        const uint32_t l = j0 % 32u;
        const float* ds = p + 8u * n + l / 16u;  // + 2 * run
#pragma unroll
        for (uint32_t w = 0; w < E / 4u; ++w) {
            const uint32_t a = qf_ld_u32(s8, base + 64u * n + l + 4u * w);         // ql[l..]
            const uint32_t b = qf_ld_u32(s8, base + 64u * n + 32u + l + 4u * w);   // ql[l+32..]
            const uint32_t h = qf_ld_u32(s8, base + 128u + 32u * n + l + 4u * w);  // qh[l..]
            const uint32_t q[4] = {
                (a & 0x0F0F0F0Fu) | ((h & 0x03030303u) << 4),
                (b & 0x0F0F0F0Fu) | ((h & 0x0C0C0C0Cu) << 2),
                ((a >> 4) & 0x0F0F0F0Fu) | (h & 0x30303030u),
                ((b >> 4) & 0x0F0F0F0Fu) | ((h >> 2) & 0x30303030u),
            };
#pragma unroll
            for (uint32_t r = 0; r < 4u; ++r) {
                // ggml: (d * scale) * (q - 32)
                v[r][4u * w + 0u] = QF_MUL(ds[2u * r], qf_magic_minus<32u>(qf_magic_byte<0u>(q[r])));
                v[r][4u * w + 1u] = QF_MUL(ds[2u * r], qf_magic_minus<32u>(qf_magic_byte<1u>(q[r])));
                v[r][4u * w + 2u] = QF_MUL(ds[2u * r], qf_magic_minus<32u>(qf_magic_byte<2u>(q[r])));
                v[r][4u * w + 3u] = QF_MUL(ds[2u * r], qf_magic_minus<32u>(qf_magic_byte<3u>(q[r])));
            }
        }
    }
};

QF_DEQUANT_ENTRIES(q6_k, q6_k_block)
