// Q1_0 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes.
//
// Block (18 bytes, 128 values): d (f16, little-endian) then qs[16], one bit per value, least
// significant bit first (value j is bit j % 8 of qs[j / 8]). ggml computes y[j] = bit ? d : -d:
// a choice between d and d with its sign bit flipped, no arithmetic, so no rounding at all. The
// kernel flips the sign bit with an integer xor where the value's bit is clear.
#include "qf_portability.h"

#ifndef Q1_0_BPG  // overridable for tuning experiments (-DQ1_0_BPG=...)
#define Q1_0_BPG 64u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

struct q1_0_block {
    static constexpr uint32_t BB = 18u;
    static constexpr uint32_t QK = 128u;
    static constexpr uint32_t BPG = Q1_0_BPG;
    static constexpr uint32_t NP = 1u;
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t d = qf_f32_as_u32(p[0]);
        // Bits j .. j+3: one nibble of qs[j / 8] (j is a multiple of 4).
        const uint32_t clear = ~(qf_ld_u32(s8, base + 2u + (j >> 3)) >> (j & 7u));
        v[0] = qf_u32_as_f32(d ^ ((clear & 1u) << 31));
        v[1] = qf_u32_as_f32(d ^ (((clear >> 1) & 1u) << 31));
        v[2] = qf_u32_as_f32(d ^ (((clear >> 2) & 1u) << 31));
        v[3] = qf_u32_as_f32(d ^ (((clear >> 3) & 1u) << 31));
    }
};

QF_DEQUANT_ENTRIES(q1_0, q1_0_block)
