// IQ4_NL dequantization kernels (HIP and CUDA, one source), on the shared skeleton of
// qf_portability.h (qf_dequant): this file says only how one block decodes. The table
// qf_kvalues_iq4nl (int8, 16 values) comes from quant-tables' fragment, prepended to this file.
//
// Block (18 bytes, 32 values): d (f16, little-endian) then qs[16]; value j (0..15) is indexed by
// the low nibble of qs[j], value j + 16 by its high nibble. ggml computes
// y = d * (float)kvalues_iq4nl[index] with one rounding. The table is copied once per launch into
// shared memory as floats (every int8 converts exactly), so a lookup is one shared-memory read.
#include "qf_portability.h"

#ifndef IQ4_NL_BPG  // overridable for tuning experiments (-DIQ4_NL_BPG=...)
#define IQ4_NL_BPG 256u  // blocks staged per group (check_contract holds src/lib.rs to it)
#endif

__shared__ float s_iq4nl_values[16];

struct iq4_nl_block {
    static constexpr uint32_t BB = 18u;
    static constexpr uint32_t QK = 32u;
    static constexpr uint32_t BPG = IQ4_NL_BPG;
    static constexpr uint32_t NP = 1u;
    // The 16 table values, one per thread: a group has at least 64 threads, so one pass does
    // (a strided loop would only add a trip count, which AMD's compiler divides out).
    QF_DEVICE static void init() {
        if (threadIdx.x < 16u) s_iq4nl_values[threadIdx.x] = (float)qf_kvalues_iq4nl[threadIdx.x];
    }
    QF_DEVICE static float pre(const uint8_t* s8, uint32_t base, uint32_t) {
        return qf_ld_f16(s8, base);
    }
    QF_DEVICE static void decode4(const uint8_t* s8, uint32_t base, const float* p, uint32_t j,
                                  float* v) {
        const float d = p[0];
        // Values 0..15 are the low nibbles of qs[0..15], values 16..31 their high nibbles.
        const uint32_t q = (qf_ld_u32(s8, base + 2u + (j % 16u)) >> ((j / 16u) * 4u)) & 0x0F0F0F0Fu;
        // ggml: d * kvalues_iq4nl[index]
        v[0] = QF_MUL(d, s_iq4nl_values[q & 0xFu]);
        v[1] = QF_MUL(d, s_iq4nl_values[(q >> 8) & 0xFu]);
        v[2] = QF_MUL(d, s_iq4nl_values[(q >> 16) & 0xFu]);
        v[3] = QF_MUL(d, s_iq4nl_values[q >> 24]);
    }
};

QF_DEQUANT_ENTRIES(iq4_nl, iq4_nl_block)
