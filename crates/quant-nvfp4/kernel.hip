// NVFP4 dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_kvalues_mxfp4 (int8, 16 values: the E2M1 values doubled) comes from quant-tables' fragment,
// prepended to this file.
//
// Block (36 bytes, 64 values): d[4] (UE4M3 bytes, one per sub-block of 16 values) then qs[32];
// sub-block s uses qs[8s .. 8s+8]: value 16s + j (j < 8) is coded by the low nibble of
// qs[8s + j], value 16s + j + 8 by its high nibble. ggml's CPU computes
//     d = ggml_ue4m3_to_fp32(d[s]);  y = (float)kvalues_mxfp4[code] * d
// (its CUDA path decodes the scale differently; the CPU is the definition). The pre-pass decodes
// the four scales once per block, exactly (every step of ggml's decoding is exact: the f32 is
// built from its bits for exp > 0, and man * 2^-9 is an exact product). The table is copied once
// per launch into shared memory as floats (every int8 converts exactly, code 8's 0 to +0.0).
#include "qf_portability.h"

#ifndef NVFP4_BPG  // overridable for tuning experiments (-DNVFP4_BPG=...)
#define NVFP4_BPG 128u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

__shared__ float s_nvfp4_values[16];

struct nvfp4_block {
    static constexpr uint32_t BB = 36u;
    static constexpr uint32_t QK = 64u;
    static constexpr uint32_t BPG = NVFP4_BPG;
    static constexpr uint32_t NP = 4u;  // the scale of each sub-block
    // The 16 table values, one per thread: a group has at least 64 threads, so one pass does
    // (a strided loop would only add a trip count, which AMD's compiler divides out).
    QF_DEVICE static void init() {
        if (threadIdx.x < 16u) s_nvfp4_values[threadIdx.x] = (float)qf_kvalues_mxfp4[threadIdx.x];
    }
    // Pre-pass value s: ggml_ue4m3_to_fp32(d[s]).
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t s) {
        const uint32_t x = (qf_ld_u32(s8, base) >> (8u * s)) & 0xFFu;
        if (x == 0u || x == 0x7Fu) return 0.0f;
        const uint32_t exp = (x >> 3) & 0xFu;
        const uint32_t man = x & 7u;
        float raw;
        if (exp == 0u) {
            raw = QF_MUL((float)man, qf_u32_as_f32(0x3B000000u));  // ldexpf(man, -9): exact
        } else {
            // ldexpf(1 + man/8, exp - 7): biased exponent exp + 120, mantissa man << 20
            raw = qf_u32_as_f32(((exp + 120u) << 23) | (man << 20));
        }
        return QF_MUL(raw, 0.5f);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const uint32_t s = j / 16u;  // sub-block
        const uint32_t l = j % 16u;  // 0, 4, 8 or 12
        const float d = p[s];
        // Values 0..7 of the sub-block are low nibbles, values 8..15 high nibbles.
        const uint32_t q =
            (qf_ld_u32(s8, base + 4u + 8u * s + (l % 8u)) >> ((l / 8u) * 4u)) & 0x0F0F0F0Fu;
        // ggml: kvalues_mxfp4[code] * d
        v[0] = QF_MUL(s_nvfp4_values[q & 0xFu], d);
        v[1] = QF_MUL(s_nvfp4_values[(q >> 8) & 0xFu], d);
        v[2] = QF_MUL(s_nvfp4_values[(q >> 16) & 0xFu], d);
        v[3] = QF_MUL(s_nvfp4_values[q >> 24], d);
    }
};

QF_DEQUANT_ENTRIES(nvfp4, nvfp4_block)
