// MXFP4 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_kvalues_mxfp4 (int8, 16 values: the E2M1 values doubled) comes from quant-tables' fragment,
// prepended to this file.
//
// Block (17 bytes, 32 values): e (E8M0 byte) then qs[16]; value j (0..15) is coded by the low
// nibble of qs[j], value j + 16 by its high nibble. ggml computes
//     d = ggml_e8m0_to_fp32_half(e);  y = (float)kvalues_mxfp4[code] * d
// with d built from its bits (2^(e-128); subnormal for e < 2, which the build keeps: no flush to
// zero). The table is copied once per launch into shared memory as floats (every int8 converts
// exactly, code 8's 0 to +0.0), so a lookup is one shared-memory read.
#include "qf_portability.h"

#ifndef MXFP4_BPG  // overridable for tuning experiments (-DMXFP4_BPG=...)
#define MXFP4_BPG 256u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

__shared__ float s_mxfp4_values[16];

struct mxfp4_block {
    static constexpr uint32_t BB = 17u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = MXFP4_BPG;
    static constexpr uint32_t NP = 1u;
    // The 16 table values, one per thread: a group has at least 64 threads, so one pass does
    // (a strided loop would only add a trip count, which AMD's compiler divides out).
    QF_DEVICE static void init() {
        if (threadIdx.x < 16u) s_mxfp4_values[threadIdx.x] = (float)qf_kvalues_mxfp4[threadIdx.x];
    }
    // ggml_e8m0_to_fp32_half(e)
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        const uint32_t e = qf_ld_u32(s8, base) & 0xFFu;
        const uint32_t bits = e < 2u ? (0x00200000u << e) : ((e - 1u) << 23);
        return qf_u32_as_f32(bits);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        // Values 0..15 are the low nibbles of qs[0..15], values 16..31 their high nibbles.
        const uint32_t q = (qf_ld_u32(s8, base + 1u + (j % 16u)) >> ((j / 16u) * 4u)) & 0x0F0F0F0Fu;
        // ggml: kvalues_mxfp4[code] * d
        v[0] = QF_MUL(s_mxfp4_values[q & 0xFu], d);
        v[1] = QF_MUL(s_mxfp4_values[(q >> 8) & 0xFu], d);
        v[2] = QF_MUL(s_mxfp4_values[(q >> 16) & 0xFu], d);
        v[3] = QF_MUL(s_mxfp4_values[q >> 24], d);
    }
};

QF_DEQUANT_ENTRIES(mxfp4, mxfp4_block)
